"""What a new run changed: the objects it added and removed against the labels it replaces.

Two runs on one image give objects of new ids, so objects are compared by overlap: an object of the new
labels that matches one of the old at IoU >= 0.5 (one to one, Hungarian, as ``linking.match``) was
*kept*; an unmatched new object was *added*, an unmatched old one *removed*. A nucleus the new model
draws a little differently is kept; one it now splits in two counts as one removed and two added.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._checks import in_range
from .linking import iou_pairs, match

ADDED, REMOVED = 1, 2  # the values of compare_labels' mask


@dataclass(frozen=True)
class LabelChanges:
    """How many objects a run added (in the new labels), removed (from the old) and kept."""

    added: int
    removed: int
    kept: int

    def summary(self) -> str:
        """``"5 added, 3 removed, 140 kept"``, or ``"no object changed (140 kept)"``."""
        if not self.added and not self.removed:
            return f"no object changed ({self.kept} kept)"
        return f"{self.added} added, {self.removed} removed, {self.kept} kept"


def compare_labels(
    before: np.ndarray, after: np.ndarray, iou_threshold: float = 0.5, *, frame_ndim: int | None = None
) -> tuple[LabelChanges, np.ndarray]:
    """The objects of ``after`` that ``before`` did not have, and the other way round.

    Args:
        before, after: Label images of one shape (any number of dimensions), 0 = background.
        iou_threshold: Objects overlapping at least this much are one object, kept.
        frame_ndim: The number of trailing axes that share one set of ids, compared as one frame (2 for
            a stack whose planes were segmented apart, where an id means another object in each plane;
            3 for Z-stacks stitched per time point); None: the whole array.

    Returns:
        The counts, and a uint8 mask of the labels' shape: :data:`ADDED` on the added objects,
        :data:`REMOVED` where the removed ones were (an added object wins where they overlap).
    """
    in_range("iou_threshold", iou_threshold, 0, 1, low_open=True)
    before, after = np.asarray(before), np.asarray(after)
    if before.shape != after.shape:
        raise ValueError(f"the label images differ in shape: {before.shape} and {after.shape}")
    mask = np.zeros(after.shape, np.uint8)
    if frame_ndim is None or before.ndim <= frame_ndim:
        counts = _compare(before, after, iou_threshold, mask)
        return LabelChanges(*counts), mask
    total = np.zeros(3, np.int64)
    for index in np.ndindex(before.shape[: before.ndim - frame_ndim]):
        total += _compare(before[index], after[index], iou_threshold, mask[index])
    return LabelChanges(*(int(n) for n in total)), mask


def _compare(before: np.ndarray, after: np.ndarray, iou_threshold: float, mask: np.ndarray) -> tuple[int, int, int]:
    """(added, removed, kept) of one pair of label arrays; marks ``mask`` in place."""
    partners = _partners(before, after, iou_threshold)  # {after id: before id}
    ids_after = np.unique(after[after > 0])
    ids_before = np.unique(before[before > 0])
    added = np.setdiff1d(ids_after, np.fromiter(partners, np.int64, len(partners)))
    removed = np.setdiff1d(ids_before, np.fromiter(partners.values(), np.int64, len(partners)))
    mask[np.isin(before, removed)] = REMOVED
    mask[np.isin(after, added)] = ADDED
    return len(added), len(removed), len(partners)


def _partners(before: np.ndarray, after: np.ndarray, iou_threshold: float) -> dict[int, int]:
    """One-to-one pairs at IoU >= ``iou_threshold``. From 0.5 up an object can reach it with one partner
    only (ties at exactly 0.5 aside, settled by IoU then id), so no assignment problem is solved: a slide
    of 60,000 nuclei costs its pairs, not a 60,000² matrix."""
    if iou_threshold < 0.5:
        return match(before, after, iou_threshold)
    pid, cid, iou = iou_pairs(before, after)
    keep = iou >= iou_threshold
    order = np.lexsort((pid[keep], -iou[keep]))
    pairs: dict[int, int] = {}
    taken: set[int] = set()
    for p, c in zip(pid[keep][order].tolist(), cid[keep][order].tolist(), strict=True):
        if c not in pairs and p not in taken:
            pairs[c] = p
            taken.add(p)
    return pairs
