"""Object sizes: the median object diameter of a label image, as cellpose and StarDist users set it.

An object's diameter is that of the disk with its area, ``2 * sqrt(area / pi)`` (cellpose's
``diameters``). Objects cut by the image edge are counted too: they are a fair share of a small image.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from scipy import ndimage as ndi


def object_areas(labels: np.ndarray, *, semantic: bool = False) -> np.ndarray:
    """Pixel areas of the objects of ``labels`` ``(H, W)``: instance ids, or for ``semantic`` class
    maps the connected regions of every non-zero class."""
    labels = np.asarray(labels)
    if semantic:
        regions = np.zeros(labels.shape, np.int64)
        count = 0
        for cid in np.unique(labels[labels > 0]):
            pieces, n = ndi.label(labels == cid)
            regions[pieces > 0] = pieces[pieces > 0] + count
            count += n
        labels = regions
    counts = np.bincount(labels.ravel().astype(np.int64))[1:]
    return counts[counts > 0]


def median_diameter(label_images: Iterable[np.ndarray], *, semantic: bool = False) -> float | None:
    """The median diameter, in pixels, of all objects of ``label_images`` taken together; None when
    there is no object."""
    areas = [object_areas(labels, semantic=semantic) for labels in label_images]
    areas = np.concatenate(areas) if areas else np.zeros(0)
    if not len(areas):
        return None
    return float(2 * math.sqrt(float(np.median(areas)) / math.pi))
