"""Instance post-processing in bands of rows, for images too large to hold as float arrays.

Seeds get image-wide ids: connected components are labelled band by band and merged across band
borders with union-find, so a cell that straddles a border keeps one label. The watershed then runs
on each band with a halo of rows above and below, and keeps the band's own rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .postprocess import WatershedConfig, fill_label_holes, remove_small_regions, seeded_watershed


class _UnionFind:
    def __init__(self) -> None:
        self.parent = np.zeros(1, np.int64)

    def grow(self, n: int) -> None:
        self.parent = np.concatenate([self.parent, np.arange(len(self.parent), n + 1)])

    def find(self, a: int) -> int:
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:  # path compression
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def roots(self) -> np.ndarray:
        return np.array([self.find(i) for i in range(len(self.parent))], np.int64)


def _seed_mask(interior: Any, foreground: Any, r0: int, r1: int, config: WatershedConfig) -> np.ndarray:
    """The seed mask of rows ``r0..r1`` (for connected-components mode: holes filled)."""
    mask = np.asarray(interior[r0:r1]) > config.interior_threshold
    if config.mode == "connected-components":
        mask = ~remove_small_regions(~mask, 64)
    return mask


def label_seeds(interior: Any, foreground: Any, seeds_out: Any, config: WatershedConfig, band: int) -> int:
    """Label seeds image-wide into ``seeds_out`` (uint32, ``(H, W)``); returns the seed count.

    Components smaller than ``config.min_size`` are removed using their image-wide size.
    """
    h = interior.shape[0]
    uf, sizes, offset = _UnionFind(), np.zeros(1, np.int64), 0
    previous_last_row = None
    for r0 in range(0, h, band):
        r1 = min(r0 + band, h)
        labels, n = ndi.label(_seed_mask(interior, foreground, r0, r1, config))
        labels = np.where(labels > 0, labels + offset, 0).astype(np.uint32)
        uf.grow(offset + n)
        sizes = np.concatenate([sizes, np.bincount(labels.ravel(), minlength=offset + n + 1)[offset + 1 :]])
        if previous_last_row is not None:
            touching = (previous_last_row > 0) & (labels[0] > 0)
            for a, b in set(zip(previous_last_row[touching].tolist(), labels[0][touching].tolist(), strict=True)):
                uf.union(a, b)
        seeds_out[r0:r1] = labels
        previous_last_row, offset = labels[-1].copy(), offset + n
    roots = uf.roots()
    root_sizes = np.bincount(roots, weights=sizes, minlength=len(roots))
    keep = (root_sizes >= max(config.min_size, 1)) & (np.arange(len(roots)) > 0)
    new_ids = np.zeros(len(roots), np.uint32)
    new_ids[keep] = np.arange(1, keep.sum() + 1)
    mapping = new_ids[roots]  # old id -> final id (0 for removed seeds)
    for r0 in range(0, h, band):
        seeds_out[r0 : r0 + band] = mapping[np.asarray(seeds_out[r0 : r0 + band])]
    return int(keep.sum())


def instances_banded(
    interior: Any, foreground: Any, out: Any, config: WatershedConfig = WatershedConfig(), *, band: int = 1024, halo: int = 64
) -> int:
    """Instance labels of a whole image, computed band by band; returns the instance count.

    Args:
        interior: ``(H, W)`` interior probability (float in [0, 1], or uint8 0..255 with thresholds
            scaled to match), any sliceable array.
        foreground: ``(H, W)`` interior + boundary probability, same scale.
        out: ``(H, W)`` uint32 array-like to write labels into (memory, memmap or zarr).
        config: Post-processing parameters (same meaning as for whole images).
        band: Rows per band.
        halo: Extra rows above and below each band that the watershed sees; at least the size of
            the largest object, so that objects crossing a border grow as on the whole image.
    """
    halo = min(halo, band)  # the halo above a band must lie within the band before it
    count = label_seeds(interior, foreground, out, config, band)
    if config.mode == "connected-components":
        return count
    h = interior.shape[0]
    previous = None  # the finished labels of the band above, needed as that band's halo is overwritten
    for r0 in range(0, h, band):
        r1 = min(r0 + band, h)
        a, b = max(r0 - halo, 0), min(r1 + halo, h)
        seeds = np.asarray(out[a:b]).copy()
        if previous is not None:  # rows above r0 already hold watershed labels: restore their seeds
            seeds[: r0 - a] = previous
        labels = seeded_watershed(np.asarray(foreground[a:b]), seeds, config.foreground_threshold)
        if config.fill_holes:
            labels = fill_label_holes(labels)
        previous = seeds[max(r1 - halo, 0) - a : r1 - a].copy() if r1 < h else None
        out[r0:r1] = labels[r0 - a : r1 - a]
    return count
