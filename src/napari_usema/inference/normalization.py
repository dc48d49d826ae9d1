"""Intensity normalisation: a recipe stored in each checkpoint, so inference repeats training exactly.

Statistics are measured once per image (on a strided subsample for large, lazily read images) and
then applied tile by tile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..io.metadata import NormalizationRecipe

# Normalised inputs are clipped to +-this: real images stay within a few units, and an extreme outlier
# must not overflow the network into NaN.
INPUT_LIMIT = 1000.0
# Past this many pixels per channel the statistics come from a strided subsample.
_MAX_STAT_PIXELS = 4_000_000


@dataclass(frozen=True)
class IntensityStats:
    """Per-channel affine map ``(x - offset) / scale`` measured on one image.

    Attributes:
        offset: ``(C,)`` float64, the value that maps to 0 (the low percentile); missing pixels (NaN,
            inf) take it, so they read as the image's dark background.
        scale: ``(C,)`` float64, positive.
        constant: Every channel holds a single value: the image has no contrast, so nothing in it can
            be segmented (normalising it would amplify nothing into something).
    """

    offset: np.ndarray
    scale: np.ndarray
    constant: bool = False

    def apply(self, tile: np.ndarray) -> np.ndarray:
        """Normalise a ``(C, h, w)`` tile to float32; non-finite pixels become 0 (the low percentile).

        float64 images are normalised in float64, so values beyond float32's range stay finite."""
        wide = tile.dtype == np.float64
        tile = tile.astype(np.float64 if wide else np.float32, copy=False)
        offset, scale = self.offset.astype(tile.dtype)[:, None, None], self.scale.astype(tile.dtype)[:, None, None]
        if np.issubdtype(tile.dtype, np.floating):
            finite = np.isfinite(tile)
            if not finite.all():
                tile = np.where(finite, tile, offset)
        with np.errstate(over="ignore"):
            out = (tile - offset) / scale
        # Outliers far beyond the percentile range (1e30 on a flat image) would overflow the network.
        return np.clip(out, -INPUT_LIMIT, INPUT_LIMIT).astype(np.float32, copy=False)


def _stride(channel_first: Any) -> int:
    """The stride that leaves at most ~_MAX_STAT_PIXELS pixels per channel of a ``(C, H, W)`` array."""
    h, w = channel_first.shape[-2:]
    return max(1, int(np.ceil(np.sqrt(h * w / _MAX_STAT_PIXELS))))


def _subsample(channel_first: Any, step: int) -> np.ndarray:
    """A strided view of a ``(C, H, W)`` array, as float64 (exact for every integer and float image)."""
    return np.asarray(channel_first[:, ::step, ::step], dtype=np.float64)


def _is_constant(channel_first: Any, low: np.ndarray, high: np.ndarray, step: int, rows: int = 1024) -> bool:
    """Whether every channel of ``(C, H, W)`` holds one value: the sample's answer, confirmed on every
    pixel (band by band) where the sample was strided and could have missed a few bright objects."""
    if not (high == low).all():
        return False
    if step == 1:
        return True
    for y in range(0, channel_first.shape[1], rows):
        block = np.asarray(channel_first[:, y : y + rows], dtype=np.float64)
        if (np.isfinite(block) & (block != low[:, None, None])).any():
            return False
    return True


def measure(image: Any, recipe: NormalizationRecipe) -> IntensityStats:
    """Measure the statistics of a ``(C, H, W)`` image (numpy, or any lazily sliced array).

    Non-finite pixels (NaN, inf) are left out of the statistics.

    Raises:
        ValueError: when a channel has no finite pixel at all.
    """
    step = _stride(image)
    sample = _subsample(image, step)
    c = sample.shape[0]
    flat = sample.reshape(c, -1)
    finite = np.isfinite(flat)
    empty = np.flatnonzero(~finite.any(axis=1))
    if flat.shape[1] == 0:
        raise ValueError("the image has no pixels")
    if len(empty):
        raise ValueError(f"channel {int(empty[0])} of the image has no finite value: every pixel is NaN or infinite")
    flat = np.where(finite, flat, np.nan)
    lowest, highest = np.nanmin(flat, axis=1), np.nanmax(flat, axis=1)
    if recipe.method == "percentile":
        offset, top = np.nanpercentile(flat, [recipe.low, recipe.high], axis=1)
        scale = top - offset
        # Percentiles can coincide on a sparse image (a few bright pixels on black): fall back on its range.
        scale = np.where(scale > 0, scale, highest - lowest)
    elif recipe.method == "zscore":
        offset, scale = np.nanmean(flat, axis=1), np.nanstd(flat, axis=1)
    else:
        offset, scale = np.zeros(c), np.ones(c)
    scale = np.where(scale > 0, scale, 1.0)  # a constant channel must not divide by zero
    constant = _is_constant(image, lowest, highest, step)
    return IntensityStats(offset.astype(np.float64), scale.astype(np.float64), constant)


def count_non_finite(array: Any, rows: int = 1024) -> int:
    """NaN and infinite pixels of a float array (numpy or lazily sliced), counted in bands of rows."""
    if not np.issubdtype(np.dtype(array.dtype), np.floating):
        return 0
    return sum(int(np.count_nonzero(~np.isfinite(np.asarray(array[y : y + rows])))) for y in range(0, array.shape[0], rows))


def fill_non_finite(plane: np.ndarray, stats: IntensityStats, pick: tuple[int, ...]) -> np.ndarray:
    """An in-memory ``(H, W[, C])`` plane with NaN/inf replaced as :meth:`IntensityStats.apply` replaces
    them in tiles (by each channel's ``offset``, which maps to 0), for a pass that resizes the plane
    first: resizing would spread them. ``pick``: the source channel of each model channel."""
    plane = np.asarray(plane)
    if not np.issubdtype(plane.dtype, np.floating) or np.isfinite(plane).all():
        return plane
    channels = plane[..., None] if plane.ndim == 2 else plane
    fill = np.zeros(channels.shape[-1], channels.dtype)
    for model_channel, source_channel in enumerate(pick):
        fill[source_channel if plane.ndim == 3 else 0] = stats.offset[model_channel]
    out = np.where(np.isfinite(channels), channels, fill)
    return out[..., 0] if plane.ndim == 2 else out


def normalize(image: np.ndarray, recipe: NormalizationRecipe) -> np.ndarray:
    """Measure and apply in one go, for in-memory ``(C, H, W)`` images."""
    return measure(image, recipe).apply(image)
