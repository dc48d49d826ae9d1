"""Connected components of a mask read in bands of rows, numbered as on the whole image.

A slide larger than memory is labelled one band at a time: each band is labelled on its own, pieces
that touch across a band border are joined (a graph's connected components), and components are
numbered 1..N in the raster order of their first pixel, exactly as ``scipy.ndimage.label`` and
``skimage.measure.label`` number them on the whole mask. Band labels are recomputed when asked for,
so only the piece tables stay in memory.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

MaskRows = Callable[[int, int], np.ndarray]  # (r0, r1) -> the (r1 - r0, W) bool mask of those rows
# Images up to this many pixels keep their band labels (int32: 64 MB) instead of recomputing them.
CACHE_PIXELS = 2**24


class BandedComponents:
    """The connected components of a ``(height, W)`` mask given band by band.

    Args:
        mask: Returns the mask of rows ``r0..r1``.
        height: Rows of the image.
        band: Rows per band (any height gives the same components).
        connectivity: 1: 4-neighbours; 2: 8-neighbours.

    Attributes:
        count: Number of components.
        sizes: ``(count + 1,)`` pixels per component id (index 0: background, 0).
        border: ``(count + 1,)`` whether each component touches the image's edge.
    """

    def __init__(self, mask: MaskRows, height: int, band: int, connectivity: int = 1) -> None:
        if band < 1:
            raise ValueError(f"band must be at least 1 row, got {band}")
        self.mask, self.height, self.band = mask, height, band
        self.structure = ndi.generate_binary_structure(2, connectivity)
        self.offsets: list[int] = []  # piece ids of band k start after offsets[k]
        self._cache: dict[int, np.ndarray] | None = None
        piece_sizes, edges_a, edges_b, on_edge = [np.zeros(1, np.int64)], [], [], []
        previous_last: np.ndarray | None = None
        total = 0
        for r0 in range(0, height, band):
            pieces, n = self._label(r0, total)
            if r0 == 0 and height * pieces.shape[1] <= CACHE_PIXELS:  # decided once: every band cached, or none
                self._cache = {}
            if self._cache is not None:
                self._cache[r0] = pieces
            self.offsets.append(total)
            on_edge += [pieces[:, 0], pieces[:, -1]]
            on_edge += ([pieces[0]] if r0 == 0 else []) + ([pieces[-1]] if r0 + band >= height else [])
            piece_sizes.append(np.bincount(pieces.ravel(), minlength=total + n + 1)[total + 1 :])
            if previous_last is not None:
                a, b = _touching(previous_last, pieces[0], connectivity)
                edges_a.append(a)
                edges_b.append(b)
            previous_last, total = pieces[-1].copy(), total + n
        sizes = np.concatenate(piece_sizes)
        a = np.concatenate([np.zeros(0, np.int64), *edges_a])
        b = np.concatenate([np.zeros(0, np.int64), *edges_b])
        graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(total + 1, total + 1))
        # scipy numbers components by their lowest node: piece 0 (background) is component 0, and the
        # others follow the piece whose first pixel comes first in raster order.
        _, self.component = connected_components(graph, directed=False)  # piece id -> component id
        self.component = self.component.astype(np.int64)
        self.count = int(self.component.max())
        self.sizes = np.bincount(self.component, weights=sizes, minlength=self.count + 1).astype(np.int64)
        self.sizes[0] = 0
        self.border = np.zeros(self.count + 1, bool)
        self.border[self.component[np.concatenate(on_edge)]] = True
        self.border[0] = False

    def _label(self, r0: int, offset: int) -> tuple[np.ndarray, int]:
        """Piece ids (``offset`` + 1, ...) of the band starting at ``r0``, 0 outside the mask."""
        mask = self.mask(r0, min(r0 + self.band, self.height))
        pieces = np.empty(mask.shape, np.int32)  # 2^31 pieces would be 8 GB of tables: never reached
        n = ndi.label(mask, self.structure, output=pieces)
        if offset:
            pieces[pieces > 0] += offset
        return pieces, int(n)

    def labels(self, r0: int, r1: int, table: np.ndarray | None = None) -> np.ndarray:
        """Component ids of any rows ``r0..r1``, ``(r1 - r0, W)`` int64, mapped through ``table``
        (component id -> new id, see :meth:`keep`) when given."""
        lookup = self.component if table is None else table[self.component]
        rows = []
        for b0 in range(r0 // self.band * self.band, r1, self.band):
            pieces = self._cache[b0] if self._cache is not None else self._label(b0, self.offsets[b0 // self.band])[0]
            rows.append(lookup[pieces[max(r0 - b0, 0) : min(r1 - b0, pieces.shape[0])]])
        return np.concatenate(rows)

    def keep(self, keep: np.ndarray) -> np.ndarray:
        """A table for :meth:`labels` that keeps the components where ``keep`` (``(count + 1,)`` bool)
        is true, renumbered 1..K in their order, and sends the others to 0."""
        keep = np.asarray(keep, bool).copy()
        keep[0] = False
        return (np.cumsum(keep) * keep).astype(np.int64)


def _touching(above: np.ndarray, below: np.ndarray, connectivity: int) -> tuple[np.ndarray, np.ndarray]:
    """Piece pairs that touch across a band border: ``above`` is the last row of one band, ``below``
    the first row of the next."""
    pairs = [(above, below)]
    if connectivity == 2:  # diagonal neighbours too
        pairs += [(above[:-1], below[1:]), (above[1:], below[:-1])]
    a = np.concatenate([p[(p > 0) & (q > 0)] for p, q in pairs])
    b = np.concatenate([q[(p > 0) & (q > 0)] for p, q in pairs])
    return a, b
