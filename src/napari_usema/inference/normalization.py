"""Intensity normalisation: a recipe stored in each checkpoint, so inference repeats training exactly.

Statistics are measured once per image (on a strided subsample for large, lazily read images) and
then applied tile by tile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_usema.io.metadata import NormalizationRecipe

# Normalised inputs are clipped to +-this: real images stay within a few units, and an extreme outlier
# must not overflow the network into NaN.
INPUT_LIMIT = 1000.0
# Past this many pixels per channel the statistics come from a strided subsample.
_MAX_STAT_PIXELS = 4_000_000


@dataclass(frozen=True)
class IntensityStats:
    """Per-channel affine map ``(x - offset) / scale`` measured on one image.

    Attributes:
        offset: ``(C,)`` float32, the value that maps to 0 (the low percentile); missing pixels (NaN,
            inf) take it, so they read as the image's dark background.
        scale: ``(C,)`` float32, positive.
        constant: Every channel holds a single value: the image has no contrast, so nothing in it can
            be segmented (normalising it would amplify nothing into something).
    """

    offset: np.ndarray
    scale: np.ndarray
    constant: bool = False

    def apply(self, tile: np.ndarray) -> np.ndarray:
        """Normalise a ``(C, h, w)`` tile to float32; non-finite pixels become 0 (the low percentile)."""
        floating = np.issubdtype(tile.dtype, np.floating)
        with np.errstate(over="ignore"):  # beyond float32's range: inf, then treated as missing below
            tile = tile.astype(np.float32, copy=False)
        if floating:
            finite = np.isfinite(tile)
            if not finite.all():
                tile = np.where(finite, tile, self.offset[:, None, None])
        with np.errstate(over="ignore"):
            out = (tile - self.offset[:, None, None]) / self.scale[:, None, None]
        # Outliers far beyond the percentile range (1e30 on a flat image) would overflow the network.
        return np.clip(out, -INPUT_LIMIT, INPUT_LIMIT, out=out)


def _subsample(channel_first: Any) -> np.ndarray:
    """A strided view of a ``(C, H, W)`` array with at most ~_MAX_STAT_PIXELS pixels per channel."""
    h, w = channel_first.shape[-2:]
    step = max(1, int(np.ceil(np.sqrt(h * w / _MAX_STAT_PIXELS))))
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf: missing, like NaN
        return np.asarray(channel_first[:, ::step, ::step], dtype=np.float32)


def measure(image: Any, recipe: NormalizationRecipe) -> IntensityStats:
    """Measure the statistics of a ``(C, H, W)`` image (numpy, or any lazily sliced array).

    Non-finite pixels (NaN, inf) are left out of the statistics.

    Raises:
        ValueError: when a channel has no finite pixel at all.
    """
    sample = _subsample(image)
    c = sample.shape[0]
    flat = sample.reshape(c, -1)
    finite = np.isfinite(flat)
    empty = np.flatnonzero(~finite.any(axis=1))
    if flat.shape[1] == 0:
        raise ValueError("the image has no pixels")
    if len(empty):
        raise ValueError(f"channel {int(empty[0])} of the image has no finite value: every pixel is NaN or infinite")
    flat = np.where(finite, flat, np.nan).astype(np.float64)
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
    constant = bool((highest == lowest).all())
    return IntensityStats(offset.astype(np.float32), scale.astype(np.float32), constant)


def count_non_finite(array: Any, rows: int = 1024) -> int:
    """NaN and infinite pixels of a float array (numpy or lazily sliced), counted in bands of rows."""
    if not np.issubdtype(np.dtype(array.dtype), np.floating):
        return 0
    with np.errstate(over="ignore"):
        return sum(
            int(np.count_nonzero(~np.isfinite(np.asarray(array[y : y + rows], np.float32))))
            for y in range(0, array.shape[0], rows)
        )


def fill_non_finite(plane: np.ndarray, recipe: NormalizationRecipe) -> np.ndarray:
    """An in-memory ``(H, W[, C])`` plane with NaN/inf replaced by each channel's low percentile, as
    :meth:`IntensityStats.apply` does per tile (needed before resizing, which would spread them)."""
    plane = np.asarray(plane)
    if not np.issubdtype(plane.dtype, np.floating) or np.isfinite(plane).all():
        return plane
    channels = plane[..., None] if plane.ndim == 2 else plane
    out = channels.astype(np.float32, copy=True)
    for ch in range(out.shape[-1]):
        values = out[..., ch]
        finite = np.isfinite(values)
        if finite.any():
            low = np.percentile(values[finite], recipe.low if recipe.method == "percentile" else 0)
            values[~finite] = low
    return out[..., 0] if plane.ndim == 2 else out


def normalize(image: np.ndarray, recipe: NormalizationRecipe) -> np.ndarray:
    """Measure and apply in one go, for in-memory ``(C, H, W)`` images."""
    return measure(image, recipe).apply(image)
