"""From class probabilities to labels: seeded watershed instances, or argmax classes.

One code path serves an image in memory and a slide on disk: probabilities are post-processed as
uint8 (0..255, as the slide path stores them) and band by band (:class:`BandedComponents`), so both
give the same labels. Runs from cached probabilities only, so napari's sliders can re-run it live.

The algorithm, for a ``(3, H, W)`` map of (background, interior, boundary) probabilities:

- ``connected-components``: the NeurIPS 2022 baseline, ``label(remove_small_objects(remove_small_holes(
  interior > t), min_size))``: 4-connected holes under 64 pixels are filled, 4-connected objects under
  ``min_size`` dropped, and objects labelled with 8-connectivity. Exact at any band height.
- ``watershed``: seeds are the 4-connected regions of ``interior > t`` with at least ``min_size`` pixels
  (numbered image-wide); they are flooded over ``interior + boundary > t_fg``, highest probability
  first (equal probabilities go to the seed first in raster order), each band of rows seeing ``halo``
  rows beyond its border (exact for every flooded region that fits in the halo); then holes, background
  regions enclosed by one label, are filled image-wide.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from skimage import segmentation

from .components import BandedComponents
from .config import WatershedConfig

BAND = 1024  # rows per band at most; the flood of two bands runs on two threads
# Pixels per band at most: skimage's watershed needs tens of bytes a pixel, and two bands flood at once.
# On 3,072 x 20,000 px the post-process alone added 2.08 GB in 1,024-row bands and 1.22 GB in 419-row ones
# (benchmarks/postprocess_memory.py); up to 8,192 pixels wide the bands keep all 1,024 rows.
BAND_PIXELS = 1024 * 8192


def band_rows(width: int) -> int:
    """Rows per band for an image ``width`` pixels wide: :data:`BAND`, fewer for wide slides (at least 128).
    The same for slides and images in memory, so both give the same labels."""
    return max(128, min(BAND, BAND_PIXELS // max(width, 1)))


HALO = 64  # rows beyond a band's border that its flood sees: more than a nucleus or a cell is tall
HOLE_SIZE = 64  # connected-components mode fills holes under this many pixels (skimage's default)
T = TypeVar("T")


def quantise(probability: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] as uint8 0..255, the precision the post-process works at."""
    return np.round(np.clip(probability, 0, 1) * 255).astype(np.uint8)


def instances_from_probabilities(
    probs: np.ndarray, config: WatershedConfig = WatershedConfig(), *, band: int | None = None
) -> np.ndarray:
    """Instance labels from ``(3, H, W)`` probabilities (background, interior, boundary).

    Returns:
        ``(H, W)`` labels 1..N (uint16, or uint32 past 65,535 objects), 0 = background.
    """
    if probs.ndim != 3 or probs.shape[0] != 3:
        raise ValueError(f"expected (3, H, W) probabilities, got shape {probs.shape}")
    out = np.zeros(probs.shape[1:], np.uint32)
    count = instances(quantise(probs[1]), quantise(probs[1] + probs[2]), out, config, band=band)
    return out.astype(np.uint16 if count <= np.iinfo(np.uint16).max else np.uint32, copy=False)


def instances(
    interior: Any,
    foreground: Any,
    out: Any,
    config: WatershedConfig = WatershedConfig(),
    *,
    band: int | None = None,
    halo: int = HALO,
) -> int:
    """Instance labels of a whole image, band by band; returns the instance count.

    Args:
        interior: ``(H, W)`` uint8 interior probability (0..255), any sliceable array (numpy, zarr).
        foreground: ``(H, W)`` uint8 interior + boundary probability.
        out: ``(H, W)`` integer array to write labels into (memory, memmap or zarr).
        config: The post-process settings (thresholds in [0, 1]).
        band: Rows per band (None: :func:`band_rows` of the width).
        halo: Rows beyond a band that its flood sees (see the module docstring).
    """
    h = interior.shape[0]
    band = band_rows(int(interior.shape[1])) if band is None else band
    seed_threshold = config.interior_threshold * 255

    def seed_mask(r0: int, r1: int) -> np.ndarray:
        return np.asarray(interior[r0:r1]) > seed_threshold

    if config.mode == "connected-components":
        return _connected_components(seed_mask, h, out, config.min_size, band)
    seeds = BandedComponents(seed_mask, h, band)
    table = seeds.keep(seeds.sizes >= max(config.min_size, 1))
    count = int(table.max())
    _check_capacity(out, count)
    threshold = config.foreground_threshold * 255

    def flood(r0: int) -> tuple[int, np.ndarray]:
        r1 = min(r0 + band, h)
        a, b = max(r0 - halo, 0), min(r1 + halo, h)
        labels = _flood(np.asarray(foreground[a:b]), seeds.labels(a, b, table), threshold, first_row=a)
        return r0, labels[r0 - a : r1 - a]

    for r0, labels in _in_order(flood, range(0, h, band)):
        out[r0 : r0 + labels.shape[0]] = labels
    if config.fill_holes:
        fill_holes(out, band=band)
    return count


def _connected_components(seed_mask: Callable[[int, int], np.ndarray], h: int, out: Any, min_size: int, band: int) -> int:
    """The NeurIPS 2022 baseline's labels (see the module docstring), written into ``out``."""
    holes = BandedComponents(lambda r0, r1: ~seed_mask(r0, r1), h, band)
    small = holes.keep(holes.sizes < HOLE_SIZE)

    def filled(r0: int, r1: int) -> np.ndarray:
        return seed_mask(r0, r1) | (holes.labels(r0, r1, small) > 0)

    kept = filled
    if min_size > 1:
        objects = BandedComponents(filled, h, band)
        large = objects.keep(objects.sizes >= min_size)

        def kept(r0: int, r1: int) -> np.ndarray:
            return objects.labels(r0, r1, large) > 0

    final = BandedComponents(kept, h, band, connectivity=2)
    _check_capacity(out, final.count)
    for r0 in range(0, h, band):
        r1 = min(r0 + band, h)
        out[r0:r1] = final.labels(r0, r1)
    return final.count


def fill_holes(labels: Any, *, band: int = BAND) -> None:
    """Fill holes in place: 4-connected background regions that do not touch the image edge and whose
    8-neighbours carry one label only. ``labels`` ``(H, W)`` is read and written band by band."""
    h = labels.shape[0]
    background = BandedComponents(lambda r0, r1: np.asarray(labels[r0:r1]) == 0, h, band)
    enclosed = background.keep(~background.border)  # component id -> 1..K for enclosed ones (a handful), else 0
    if not enclosed.any():
        return
    big = np.iinfo(np.int64).max
    hi = np.zeros(int(enclosed.max()) + 1, np.int64)
    lo = np.full(len(hi), big, np.int64)
    found = []
    for r0 in range(0, h, band):
        regions = background.labels(r0, min(r0 + band, h), enclosed)
        ys, xs = np.nonzero(regions)
        if not len(ys):
            continue
        ids = regions[ys, xs]
        found.append((r0 + ys, xs, ids))
        # The band and one row on each side, read once (enclosed regions never touch the image edge,
        # so all their 8-neighbours lie inside the image and inside these rows).
        top = max(r0 - 1, 0)
        around = np.asarray(labels[top : min(r0 + band + 1, h)]).astype(np.int64)
        for dy, dx in ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)):
            nb = around[r0 - top + ys + dy, xs + dx]
            np.maximum.at(hi, ids, nb)
            np.minimum.at(lo, ids, np.where(nb > 0, nb, big))
    fill = np.where((hi == lo) & (hi > 0), hi, 0)
    fill[0] = 0
    for ys, xs, ids in found:
        add = fill[ids] > 0
        if add.any():
            y0, y1 = int(ys.min()), int(ys.max()) + 1
            rows = np.asarray(labels[y0:y1]).copy()
            rows[ys[add] - y0, xs[add]] = fill[ids[add]]
            labels[y0:y1] = rows


def classes_from_probabilities(probs: np.ndarray) -> np.ndarray:
    """Semantic labels: argmax over ``(K, H, W)`` probabilities, as uint8 class ids."""
    if probs.ndim != 3:
        raise ValueError(f"expected (K, H, W) probabilities, got shape {probs.shape}")
    return probs.argmax(axis=0).astype(np.uint8)


def _flood(foreground: np.ndarray, markers: np.ndarray, threshold: float, first_row: int = 0) -> np.ndarray:
    """Flood labelled seeds over ``foreground > threshold``, highest probability first.

    ``skimage.segmentation.watershed`` from the seeds, with two changes. Only the pixels that can change
    (foreground outside the seeds, and the seeds' rims) enter the flood, which makes it several times
    faster: seeds cover most of a cell. And where seed pixels of equal probability compete, the one
    first in raster order of the whole image wins (skimage would break that tie by its heap's layout,
    which differs between a band and the whole image), so a band labels its objects as the whole image
    would. ``first_row``: the image row of ``foreground``'s first row.
    """
    seeds = markers > 0
    free = (foreground > threshold) & ~seeds
    if not free.any():
        return markers
    rims = seeds & _touches(free)  # seed pixels that touch floodable ones
    # Elevation, low where foreground is likely, with ties between rim pixels broken by raster index;
    # other pixels sort after the rims of their level (skimage floods those in the order it reaches them).
    width = foreground.shape[1]
    elevation = _LEVELS[foreground]  # float64, as skimage floods anyway
    ys, xs = np.nonzero(rims)
    elevation[ys, xs] -= (_TIE_SPAN - 1) - ((first_row + ys) * width + xs)
    labels = segmentation.watershed(elevation, np.where(rims, markers, 0), mask=free | rims)
    return np.where(seeds, markers, labels)


_TIE_SPAN = 2.0**36  # more than the pixels of any image; 255 levels x 2^36 stays exact in float64
_LEVELS = (255 - np.arange(256, dtype=np.float64)) * _TIE_SPAN + (_TIE_SPAN - 1)  # uint8 probability -> elevation


def _touches(mask: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour in ``mask`` (the watershed's own connectivity); slicing is much
    cheaper than a general binary dilation."""
    out = np.zeros_like(mask)
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def _in_order(work: Callable[[int], T], items: Iterable[int], threads: int = 2) -> Iterator[T]:
    """``work(item)`` for each item, computed on ``threads`` threads (skimage and scipy release the
    GIL) and returned in order, never more than ``threads`` ahead of the caller."""
    items = list(items)
    if len(items) == 1:
        yield work(items[0])
        return
    with ThreadPoolExecutor(threads) as pool:
        pending: deque[Future[T]] = deque()
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) >= threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _check_capacity(out: Any, count: int) -> None:
    limit = np.iinfo(out.dtype).max
    if count > limit:
        raise ValueError(f"{count} instances do not fit the {out.dtype} output (at most {limit})")
