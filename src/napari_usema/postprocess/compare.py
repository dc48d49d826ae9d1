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
from .linking import match

ADDED, REMOVED = 1, 2  # the values of change_mask


@dataclass(frozen=True)
class LabelChanges:
    """Ids of the objects a run added (in the new labels) and removed (in the old), and how many it kept."""

    added: tuple[int, ...]
    removed: tuple[int, ...]
    kept: int

    def summary(self) -> str:
        """``"5 added, 3 removed, 140 kept"``, or ``"no object changed"``."""
        if not self.added and not self.removed:
            return f"no object changed ({self.kept} kept)"
        return f"{len(self.added)} added, {len(self.removed)} removed, {self.kept} kept"


def compare_labels(before: np.ndarray, after: np.ndarray, iou_threshold: float = 0.5) -> LabelChanges:
    """The objects of ``after`` that ``before`` did not have, and the other way round.

    Args:
        before, after: Label images of one shape (any number of dimensions), 0 = background.
        iou_threshold: Objects overlapping at least this much are one object, kept.
    """
    in_range("iou_threshold", iou_threshold, 0, 1, low_open=True)
    before, after = np.asarray(before), np.asarray(after)
    if before.shape != after.shape:
        raise ValueError(f"the label images differ in shape: {before.shape} and {after.shape}")
    partners = match(before, after, iou_threshold)  # {after id: before id}
    ids_after = np.unique(after[after > 0])
    ids_before = np.unique(before[before > 0])
    kept_before = set(partners.values())
    added = tuple(int(i) for i in ids_after if int(i) not in partners)
    removed = tuple(int(i) for i in ids_before if int(i) not in kept_before)
    return LabelChanges(added, removed, len(partners))


def change_mask(before: np.ndarray, after: np.ndarray, changes: LabelChanges) -> np.ndarray:
    """uint8 of the labels' shape: :data:`ADDED` on the added objects, :data:`REMOVED` where the removed
    ones were (an added object wins where they overlap), 0 elsewhere."""
    mask = np.zeros(np.shape(after), np.uint8)
    mask[np.isin(before, changes.removed)] = REMOVED
    mask[np.isin(after, changes.added)] = ADDED
    return mask
