"""Intensity normalisation: a recipe stored in each checkpoint, so inference repeats training exactly.

Statistics are measured once per image (on a strided subsample for large, lazily read images) and
then applied tile by tile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_usema.io.metadata import NormalizationRecipe

# Past this many pixels per channel the statistics come from a strided subsample.
_MAX_STAT_PIXELS = 4_000_000


@dataclass(frozen=True)
class IntensityStats:
    """Per-channel affine map ``(x - offset) / scale`` measured on one image."""

    offset: np.ndarray  # (C,) float32
    scale: np.ndarray  # (C,) float32

    def apply(self, tile: np.ndarray) -> np.ndarray:
        """Normalise a ``(C, h, w)`` tile to float32."""
        tile = tile.astype(np.float32, copy=False)
        return (tile - self.offset[:, None, None]) / self.scale[:, None, None]


def _subsample(channel_first: Any) -> np.ndarray:
    """A strided view of a ``(C, H, W)`` array with at most ~_MAX_STAT_PIXELS pixels per channel."""
    h, w = channel_first.shape[-2:]
    step = max(1, int(np.ceil(np.sqrt(h * w / _MAX_STAT_PIXELS))))
    return np.asarray(channel_first[:, ::step, ::step], dtype=np.float32)


def measure(image: Any, recipe: NormalizationRecipe) -> IntensityStats:
    """Measure the statistics of a ``(C, H, W)`` image (numpy, or any lazily sliced array)."""
    sample = _subsample(image)
    c = sample.shape[0]
    flat = sample.reshape(c, -1)
    if recipe.method == "percentile":
        lo, hi = np.percentile(flat, [recipe.low, recipe.high], axis=1)
        offset, scale = lo, hi - lo
    elif recipe.method == "zscore":
        offset, scale = flat.mean(axis=1), flat.std(axis=1)
    else:
        offset, scale = np.zeros(c), np.ones(c)
    # A constant channel (an empty frame, a saturated one) must not divide by zero.
    scale = np.where(scale > 1e-6, scale, 1.0)
    return IntensityStats(offset.astype(np.float32), scale.astype(np.float32))


def normalize(image: np.ndarray, recipe: NormalizationRecipe) -> np.ndarray:
    """Measure and apply in one go, for in-memory ``(C, H, W)`` images."""
    return measure(image, recipe).apply(image)
