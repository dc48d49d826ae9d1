"""One identity per object across a stack: Z planes stitched into 3-D objects, frames tracked over time.

Both link neighbouring frames the same way: every object of a frame is matched to at most one object
of the frame before by intersection over union, one to one, with the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``) over the pairs whose IoU reaches the threshold. A matched
object takes the id of its partner; any other object gets a new id, never one used before, so an
object that leaves (or is missed for a frame) ends its track and its id is not given to another.

- ``stitch``: as cellpose's ``stitch_threshold``, but one to one, so two nuclei side by side in one
  plane never merge into one 3-D object.
- ``track``: as stardist-napari's timelapse option, frame to frame without gap closing. Frames may
  be 2-D or 3-D (a stitched Z-stack per time point).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .._checks import in_range

WHERE = " (--axes, or the Axes box in napari)"


def iou_pairs(previous: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of objects of two frames that overlap, and their IoU.

    Args:
        previous, current: Label frames of one shape (any number of dimensions), 0 = background.

    Returns:
        ``(previous_ids, current_ids, iou)``, three 1-D arrays of one length.
    """
    p, c = previous.ravel().astype(np.int64), current.ravel().astype(np.int64)
    both = (p > 0) & (c > 0)
    n_current = int(c.max(initial=0)) + 1
    keys, inter = np.unique(p[both] * n_current + c[both], return_counts=True)
    pid, cid = keys // n_current, keys % n_current
    area_p = np.bincount(p, minlength=int(p.max(initial=0)) + 1)
    area_c = np.bincount(c, minlength=n_current)
    return pid, cid, inter / (area_p[pid] + area_c[cid] - inter)


def match(previous: np.ndarray, current: np.ndarray, iou_threshold: float) -> dict[int, int]:
    """``{current id: previous id}`` of the one-to-one matching that maximises the summed IoU over the
    pairs with IoU >= ``iou_threshold``."""
    pid, cid, iou = iou_pairs(previous, current)
    keep = iou >= iou_threshold
    pid, cid, iou = pid[keep], cid[keep], iou[keep]
    if not len(iou):
        return {}
    rows, pid_index = np.unique(pid, return_inverse=True)
    cols, cid_index = np.unique(cid, return_inverse=True)
    cost = np.zeros((len(rows), len(cols)))
    cost[pid_index, cid_index] = iou
    from scipy.optimize import linear_sum_assignment  # here: scipy.optimize takes 0.3 s to import, and only links need it

    r, c = linear_sum_assignment(cost, maximize=True)
    good = cost[r, c] >= iou_threshold  # pairs that did not overlap enough are zeros in the matrix
    return {int(cols[j]): int(rows[i]) for i, j in zip(r[good], c[good], strict=True)}


def link(frames: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Relabel ``frames`` ``(N, ...)`` so that matched objects of neighbouring frames share an id.

    Returns:
        Labels of the same shape (uint16, or uint32 past 65,535 ids); ids run 1, 2, ... in order of
        first appearance.
    """
    in_range("iou_threshold", iou_threshold, 0, 1, low_open=True)
    frames = np.asarray(frames)
    if frames.ndim < 2:
        raise ValueError(f"expected a stack of label frames (N, ...), got shape {frames.shape}")
    out = np.zeros(frames.shape, np.uint32)
    next_id = 1
    for n, frame in enumerate(frames):
        ids = np.unique(frame[frame > 0])
        table = np.zeros(int(frame.max(initial=0)) + 1, np.uint32)
        matched = match(out[n - 1], _sequential(frame, ids), iou_threshold) if n else {}
        # A matched object takes its partner's (already linked) id; the rest get new ids, in id order.
        fresh = [i for i in range(1, len(ids) + 1) if i not in matched]
        for position, object_id in enumerate(ids, start=1):
            if position in matched:
                table[object_id] = matched[position]
        table[ids[[f - 1 for f in fresh]]] = np.arange(next_id, next_id + len(fresh), dtype=np.uint32)
        next_id += len(fresh)
        out[n] = table[frame]
    return out.astype(np.uint16) if next_id - 1 <= np.iinfo(np.uint16).max else out


def _sequential(frame: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``frame`` with its ids replaced by their rank 1..N among ``ids``."""
    table = np.zeros(int(frame.max(initial=0)) + 1, np.int64)
    table[ids] = np.arange(1, len(ids) + 1)
    return table[frame]


def stitch(labels: np.ndarray, iou_threshold: float, *, z_axis: int = 0) -> np.ndarray:
    """Join per-plane objects of ``labels`` into 3-D objects along ``z_axis`` (``(Z, H, W)`` by default;
    with a leading T axis, ``z_axis=1`` stitches each time point's stack on its own)."""
    labels = np.asarray(labels)
    if z_axis == 0:
        return link(labels, iou_threshold)
    stacks = [stitch(s, iou_threshold) for s in _along(labels, z_axis)]
    return _restack(stacks, labels.shape)


def track(labels: np.ndarray, iou_threshold: float = 0.25) -> np.ndarray:
    """Give each object of ``labels`` ``(T, ...)`` one id across frames: 2-D frames, or 3-D frames whose
    planes were stitched first (ids per plane would join unrelated objects)."""
    return link(labels, iou_threshold)


def _along(labels: np.ndarray, axis: int) -> Iterator[np.ndarray]:
    """The sub-arrays before ``axis``, each with ``axis`` first: for (T, Z, H, W) and axis 1, each (Z, H, W)."""
    lead = labels.shape[:axis]
    for index in np.ndindex(*lead):
        yield labels[index]


def _restack(stacks: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    dtype = np.result_type(*[s.dtype for s in stacks])
    return np.stack(stacks).astype(dtype).reshape(shape)


@dataclass(frozen=True)
class StackLinks:
    """Which stack axes get one identity per object: ``stitch`` (IoU threshold over Z) and ``track``
    (IoU threshold over T); None leaves that axis plane by plane.

    The CLI's ``--stitch IOU``/``--track``, napari's Stacks box and checkpoints' users share it, and the
    napari post-process re-applies it when the watershed is re-tuned.
    """

    stitch: float | None = None
    track: float | None = None

    def __post_init__(self) -> None:
        for name in ("stitch", "track"):
            value = getattr(self, name)
            if value is not None:
                in_range(f"the {name} IoU threshold", value, 0, 1, low_open=True)

    def __bool__(self) -> bool:
        return self.stitch is not None or self.track is not None

    def check(self, axes: str) -> None:
        """Refuse links along an axis that labels of ``axes`` (e.g. ``"ZYX"``) do not have."""
        if self.stitch is not None and "Z" not in axes:
            raise ValueError(f"stitching joins objects over Z, and these labels' axes are {axes}: give axes with a Z{WHERE}")
        if self.track is not None and "T" not in axes:
            raise ValueError(f"tracking links objects over T, and these labels' axes are {axes}: give axes with a T{WHERE}")

    def apply(self, labels: np.ndarray, axes: str) -> np.ndarray:
        """``labels`` of ``axes`` (standard order, ``[T][Z]YX``) with objects stitched and/or tracked."""
        self.check(axes)
        if self.stitch is not None:
            labels = stitch(labels, self.stitch, z_axis=axes.index("Z"))
        if self.track is not None:
            labels = track(labels, self.track)
        return labels
