"""Segmentation metrics: instance F1 at IoU 0.5 (NeurIPS 2022 cell challenge), DSC and NSD.

Edge cases are defined, never NaN: an empty prediction against an empty truth scores 1.0 (nothing to
find, nothing wrongly found); one empty side against a non-empty other scores 0.0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment


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


def instance_f1(truth: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5) -> InstanceScore:
    """F1, precision and recall with one-to-one (Hungarian) matching at ``iou_threshold``."""
    if truth.shape != pred.shape:
        raise ValueError(f"truth {truth.shape} and prediction {pred.shape} differ in shape")
    iou = iou_matrix(truth, pred)
    n_t, n_p = iou.shape
    if n_t == 0 and n_p == 0:
        return InstanceScore(1.0, 1.0, 1.0, 0, 0, 0)
    tp = 0
    if n_t and n_p:
        rows, cols = linear_sum_assignment(-iou)
        tp = int((iou[rows, cols] >= iou_threshold).sum())
    fp, fn = n_p - tp, n_t - tp
    precision = tp / n_p if n_p else 0.0
    recall = tp / n_t if n_t else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn)
    return InstanceScore(f1, precision, recall, tp, fp, fn)


def dice(truth: np.ndarray, pred: np.ndarray) -> float:
    """Dice similarity coefficient of two boolean masks; 1.0 when both are empty."""
    t, p = truth.astype(bool), pred.astype(bool)
    total = t.sum() + p.sum()
    return 1.0 if total == 0 else float(2 * (t & p).sum() / total)


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndi.binary_erosion(mask, border_value=0)


def normalized_surface_distance(truth: np.ndarray, pred: np.ndarray, tolerance: float = 2.0) -> float:
    """NSD: the fraction of both masks' surfaces lying within ``tolerance`` pixels of the other's.

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
    """DSC and NSD for each foreground class id, and their means over those classes.

    Returns:
        ``{"dsc": {"1": ..., "mean": ...}, "nsd": {"1": ..., "mean": ...}}``.
    """
    if truth.shape != pred.shape:
        raise ValueError(f"truth {truth.shape} and prediction {pred.shape} differ in shape")
    out: dict[str, dict[str, float]] = {"dsc": {}, "nsd": {}}
    for cid in class_ids:
        out["dsc"][str(cid)] = dice(truth == cid, pred == cid)
        out["nsd"][str(cid)] = normalized_surface_distance(truth == cid, pred == cid, tolerance)
    for key in out:
        values = list(out[key].values())
        out[key]["mean"] = float(np.mean(values)) if values else 1.0
    return out
