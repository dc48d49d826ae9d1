"""From class probabilities to labels: seeded watershed instances, or argmax classes.

Runs from cached probabilities only, so napari's sliders can re-run it live without the network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage as ndi
from skimage import measure, segmentation

Mode = Literal["watershed", "connected-components"]


@dataclass(frozen=True)
class WatershedConfig:
    """Parameters of the instance post-process.

    Attributes:
        mode: ``watershed`` floods seeds over the foreground; ``connected-components`` labels the
            interior as the NeurIPS 2022 cell-segmentation baselines do.
        interior_threshold: Seeds are interior probability above this.
        foreground_threshold: Instances grow over interior + boundary probability above this.
        min_size: Seeds (and, in connected-components mode, objects) smaller than this many pixels
            are dropped.
        fill_holes: Fill holes inside each instance.
    """

    mode: Mode = "watershed"
    interior_threshold: float = 0.5
    foreground_threshold: float = 0.5
    min_size: int = 16
    fill_holes: bool = True

    def replace(self, **changes: object) -> WatershedConfig:
        return dataclasses.replace(self, **changes)


def _label_dtype(count: int) -> type:
    return np.uint16 if count <= np.iinfo(np.uint16).max else np.uint32


def instances_from_probabilities(probs: np.ndarray, config: WatershedConfig = WatershedConfig()) -> np.ndarray:
    """Instance labels from ``(3, H, W)`` probabilities (background, interior, boundary).

    Returns:
        ``(H, W)`` labels 1..N (uint16, or uint32 past 65,535 objects), 0 = background.
    """
    if probs.ndim != 3 or probs.shape[0] != 3:
        raise ValueError(f"expected (3, H, W) probabilities, got shape {probs.shape}")
    interior = probs[1]
    if config.mode == "connected-components":
        # Exactly the NeurIPS 2022 baseline: label(remove_small_objects(remove_small_holes(p > t), 16)).
        mask = ~remove_small_regions(~(interior > config.interior_threshold), 64)  # skimage's hole default
        labels = measure.label(remove_small_regions(mask, config.min_size))
    else:
        seeds = remove_small_regions(interior > config.interior_threshold, config.min_size)
        markers, _ = ndi.label(seeds)
        foreground = (probs[1] + probs[2]) > config.foreground_threshold
        foreground |= seeds
        labels = segmentation.watershed(-(probs[1] + probs[2]), markers, mask=foreground)
        if config.fill_holes:
            labels = fill_label_holes(labels)
    labels, _, _ = segmentation.relabel_sequential(labels)
    return labels.astype(_label_dtype(int(labels.max())), copy=False)


def remove_small_regions(mask: np.ndarray, min_size: int) -> np.ndarray:
    """Drop 4-connected regions smaller than ``min_size`` pixels (skimage's
    ``remove_small_objects(min_size=...)``, whose keyword changed across versions)."""
    if min_size <= 1:
        return mask
    regions, _ = ndi.label(mask)
    sizes = np.bincount(regions.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[regions]


def fill_label_holes(labels: np.ndarray) -> np.ndarray:
    """Fill holes inside each instance (a hole is background enclosed by one label)."""
    out = labels.copy()
    for index, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        own = labels[sl] == index
        filled = ndi.binary_fill_holes(own)
        holes = filled & ~own & (labels[sl] == 0)
        out[sl][holes] = index
    return out


def classes_from_probabilities(probs: np.ndarray) -> np.ndarray:
    """Semantic labels: argmax over ``(K, H, W)`` probabilities, as uint8 class ids."""
    if probs.ndim != 3:
        raise ValueError(f"expected (K, H, W) probabilities, got shape {probs.shape}")
    return probs.argmax(axis=0).astype(np.uint8)


def instance_targets(labels: np.ndarray) -> np.ndarray:
    """3-class training targets from instance labels, as in the NeurIPS 2022 baselines.

    Boundary = the inner boundary of each instance; interior = the rest of the instance.

    Returns:
        ``(H, W)`` uint8: 0 background, 1 interior, 2 boundary.
    """
    boundary = segmentation.find_boundaries(labels, mode="inner")
    target = np.zeros(labels.shape, dtype=np.uint8)
    target[labels > 0] = 1
    target[boundary & (labels > 0)] = 2
    return target
