"""Resampling between an image's pixels and the pixels a model was trained at.

A model's ``input_scale`` (in its checkpoint) says how images are resized before the network: a
polyp model trained at half resolution sees whole polyps in one window and costs a quarter of the
compute. Training, fine-tuning and inference all resize through these functions, so they agree.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def scaled_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """``(H, W)`` after resizing by ``scale`` (at least 1 pixel a side)."""
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def resize_image(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize raw intensities ``(H, W)`` or ``(H, W, C)`` by ``scale``; float32 (float64 for float64
    images, whose values may exceed float32's range), same layout.

    Downsampling averages (``area``), so fine texture does not alias; upsampling is bilinear.
    """
    if scale == 1:
        return np.asarray(image)
    array = np.asarray(image, dtype=np.float64 if np.asarray(image).dtype == np.float64 else np.float32)
    chw = torch.from_numpy(np.ascontiguousarray(array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)))
    size = scaled_shape(array.shape[:2], scale)
    mode = "area" if scale < 1 else "bilinear"
    out = F.interpolate(chw[None], size=size, mode=mode, **({} if mode == "area" else {"align_corners": False}))[0]
    return out[0].numpy() if array.ndim == 2 else np.moveaxis(out.numpy(), 0, -1)


def resize_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of integer labels (instance or class ids) to ``shape``."""
    labels = np.asarray(labels)
    if labels.shape == tuple(shape):
        return labels
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * labels.shape[0] / shape[0]).astype(np.intp), labels.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * labels.shape[1] / shape[1]).astype(np.intp), labels.shape[1] - 1)
    return labels[np.ix_(rows, cols)]


def resize_probabilities(probs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``(K, h, w)`` probabilities to ``(K, *shape)`` float32 (still sum to 1)."""
    if probs.shape[1:] == tuple(shape):
        return probs
    t = torch.from_numpy(np.ascontiguousarray(probs, dtype=np.float32))[None]
    return F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)[0].numpy()
