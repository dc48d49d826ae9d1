"""Segmentation metrics: instance F1 at IoU 0.5 (NeurIPS 2022 cell challenge), DSC and NSD.

Edge cases are defined, never NaN:

- Instance F1: no object in the truth and none predicted scores 1.0 (nothing to find, nothing wrongly
  found); objects on one side only score 0.0.
- Semantic DSC and NSD: each image is scored over the classes present in its truth or its prediction,
  so a class absent from both neither helps nor hurts; an image where no class is present on either
  side scores 1.0. A class's mean over images counts only the images where it is present.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

BORDER = 2  # pixels: the challenge drops cells that reach this close to the image edge


@dataclass(frozen=True)
class InstanceScore:
    f1: float
    precision: float
    recall: float
    true_positives: int
    false_positives: int
    false_negatives: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def iou_matrix(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU of every truth instance (rows) against every predicted instance (columns).

    Labels need not be consecutive; rows and columns follow the sorted non-zero label values.
    """
    _, t = np.unique(truth, return_inverse=True)
    _, p = np.unique(pred, return_inverse=True)
    t, p = t.reshape(truth.shape), p.reshape(pred.shape)
    t_ids, p_ids = np.unique(truth), np.unique(pred)
    n_t, n_p = len(t_ids), len(p_ids)
    overlap = np.bincount(t.ravel() * n_p + p.ravel(), minlength=n_t * n_p).reshape(n_t, n_p)
    area_t, area_p = overlap.sum(axis=1, keepdims=True), overlap.sum(axis=0, keepdims=True)
    iou = overlap / np.maximum(area_t + area_p - overlap, 1)
    # Drop the background row/column (label 0) where present.
    return iou[int(t_ids[0] == 0) :, int(p_ids[0] == 0) :]


def matched_pairs(iou: np.ndarray, threshold: float = 0.5) -> int:
    """One-to-one matches with IoU >= ``threshold``, by the NeurIPS 2022 challenge's rule.

    The assignment maximises the number of pairs above the threshold first and their total IoU second
    (the challenge's and cellpose's ``_true_positive``: cost ``-(iou >= t) - iou / (2 n)``, whose IoU
    term sums to less than one pair). Maximising total IoU alone can lose a match above the threshold.
    """
    if not iou.size:
        return 0
    n = min(iou.shape)
    rows, cols = linear_sum_assignment(-(iou >= threshold).astype(float) - iou / (2 * n))
    return int((iou[rows, cols] >= threshold).sum())


def instance_f1(truth: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5) -> InstanceScore:
    """F1, precision and recall of instance labels, one-to-one matched at ``iou_threshold``."""
    if truth.shape != pred.shape:
        raise ValueError(f"truth {truth.shape} and prediction {pred.shape} differ in shape")
    iou = iou_matrix(truth, pred)
    n_t, n_p = iou.shape
    if n_t == 0 and n_p == 0:
        return InstanceScore(1.0, 1.0, 1.0, 0, 0, 0)
    tp = matched_pairs(iou, iou_threshold)
    fp, fn = n_p - tp, n_t - tp
    precision = tp / n_p if n_p else 0.0
    recall = tp / n_t if n_t else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn)
    return InstanceScore(f1, precision, recall, tp, fp, fn)


def without_border_objects(labels: np.ndarray, width: int = BORDER) -> np.ndarray:
    """``labels`` without the objects that have a pixel within ``width`` pixels of the image edge.

    The NeurIPS 2022 challenge scores both truth and prediction this way, since a cell cut by the
    image edge cannot be judged (its ``remove_boundary_cells``).
    """
    labels = np.asarray(labels)
    rim = np.ones(labels.shape, bool)
    rim[width : -width or None, width : -width or None] = False
    touching = np.unique(labels[rim])
    return np.where(np.isin(labels, touching[touching > 0]), 0, labels)


def dice(truth: np.ndarray, pred: np.ndarray) -> float:
    """Dice similarity coefficient of two boolean masks; 1.0 when both are empty."""
    t, p = truth.astype(bool), pred.astype(bool)
    total = t.sum() + p.sum()
    return 1.0 if total == 0 else float(2 * (t & p).sum() / total)


def _surface(mask: np.ndarray) -> np.ndarray:
    """Mask pixels with a 4-neighbour outside the mask; the image edge counts as outside."""
    return mask & ~ndi.binary_erosion(mask, border_value=0)


def normalized_surface_distance(truth: np.ndarray, pred: np.ndarray, tolerance: float = 2.0) -> float:
    """NSD: the fraction of both masks' surface pixels that lie within ``tolerance`` of the other's.

    A mask's surface is its pixels with a 4-neighbour outside it (the image edge counts as outside).
    For each surface pixel, the Euclidean distance between pixel centres to the nearest surface pixel
    of the other mask is taken (``scipy.ndimage.distance_transform_edt``), and::

        NSD = (#{p in S_truth : d(p, S_pred) <= tolerance} + #{q in S_pred : d(q, S_truth) <= tolerance})
              / (#S_truth + #S_pred)

    1.0 when both are empty, 0.0 when exactly one is.
    """
    t, p = truth.astype(bool), pred.astype(bool)
    if not t.any() and not p.any():
        return 1.0
    if not t.any() or not p.any():
        return 0.0
    st, sp = _surface(t), _surface(p)
    dist_to_t = ndi.distance_transform_edt(~st)
    dist_to_p = ndi.distance_transform_edt(~sp)
    close = (dist_to_p[st] <= tolerance).sum() + (dist_to_t[sp] <= tolerance).sum()
    return float(close / (st.sum() + sp.sum()))


def semantic_scores(
    truth: np.ndarray, pred: np.ndarray, class_ids: list[int], tolerance: float = 2.0
) -> dict[str, dict[str, float]]:
    """DSC and NSD for each class of ``class_ids`` present in the truth or the prediction, and their means.

    Returns:
        ``{"dsc": {"1": ..., "mean": ...}, "nsd": {"1": ..., "mean": ...}}``, with a key for each present
        class only; ``mean`` is 1.0 when no class is present on either side.
    """
    if truth.shape != pred.shape:
        raise ValueError(f"truth {truth.shape} and prediction {pred.shape} differ in shape")
    out: dict[str, dict[str, float]] = {"dsc": {}, "nsd": {}}
    for cid in class_ids:
        t, p = truth == cid, pred == cid
        if not (t.any() or p.any()):
            continue  # absent from both: not this image's question
        out["dsc"][str(cid)] = dice(t, p)
        out["nsd"][str(cid)] = normalized_surface_distance(t, p, tolerance)
    for key in out:
        values = list(out[key].values())
        out[key]["mean"] = float(np.mean(values)) if values else 1.0
    return out
