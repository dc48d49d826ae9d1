"""One click per error: add, remove, split and merge objects of a label image.

Every function takes ``labels`` ``(H, W)`` (integer ids, 0 background) and returns a new array; the input
is never changed. Clicks are ``(y, x)`` pixel coordinates. A click that does not apply (removing
background, adding on an object, seeds in two objects) raises ``ValueError`` with what to do instead.
``probabilities`` are the model's ``(3, H, W)`` float32 (background, interior, boundary), as
``segment(..., keep_probabilities=True)`` returns them and ``usema predict --probabilities`` writes them.

- :func:`add_object` grows an object from the click over the model's foreground, stopped by boundaries
  and by other objects: a seeded watershed on the interior probability, in which the unlabelled nuclei
  around compete for their own pixels, within a disk of twice the typical diameter. Where the model saw
  almost nothing, the foreground is what it saw around the click relative to the click's own value; where
  it saw nothing at all, a disk of the typical diameter (the median of the objects near the click, else
  the model's ``object_diameter``). All of it in a window around the click: a click costs the same on a
  slide as on a crop.
- :func:`split_object` floods one seed per part inside the object over its interior probability (its
  distance to the background where there are no probabilities), as a *compact* watershed: where a merge
  is one plateau of certain interior, a plain flood hands it to whichever seed reaches it first and can
  leave a seed a few pixels; the compactness term shares a plateau by distance to the seeds.
- :func:`merge_objects` relabels the clicked objects as the first one and closes the thin background
  line the model drew between them.
- :func:`changed_region` is what an edit corrected, plus a margin: what fine-tuning learns from.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage import morphology, segmentation

Point = tuple[int, int]
FOREGROUND = 0.5  # interior + boundary probability above which a pixel is an object's
SEED = 0.5  # interior probability above which unlabelled pixels seed competing nuclei
FAINT = 0.1  # below this foreground at the click, the model saw nothing there: a disk instead
DEFAULT_DIAMETER = 16.0  # pixels, when neither the image's objects nor the model give one
LOOK_AROUND = 128  # the typical diameter is that of the objects within this many pixels of a click
# Weight of the distance to a seed against the probability (0..1) in a split's flood: 0.01 per pixel.
# On the validation merges of benchmarks/click_correct.py the parts at IoU >= 0.5 went from 118 to 133 of
# 150 (anything from 0.003 to 0.03 gave 133-134).
SPLIT_COMPACTNESS = 0.01


def add_object(
    labels: np.ndarray, probabilities: np.ndarray | None, point: Point, *, diameter: float | None = None
) -> np.ndarray:
    """``labels`` with a new object at ``point`` (on background), grown over the model's foreground.

    Args:
        labels: ``(H, W)`` integer ids.
        probabilities: ``(3, H, W)`` (background, interior, boundary), or None for a disk.
        point: ``(y, x)`` of the click.
        diameter: The typical object diameter in pixels (the model's ``object_diameter``), used when
            there are no objects near the click to measure.

    Raises:
        ValueError: outside the image, on an existing object, or probabilities of another shape.
    """
    labels = _check_labels(labels)
    y, x = check_point(point, labels.shape)
    if labels[y, x]:
        raise ValueError(f"({y}, {x}) is on object {int(labels[y, x])}: click on background to add an object")
    if probabilities is not None:
        _check_probabilities(probabilities, labels.shape)
    # Everything happens in a window around the click, so a click costs the same on a slide as on a crop.
    near = _window(labels.shape, (y, x), LOOK_AROUND)
    size = _typical_diameter(labels[near], diameter)
    box = _window(labels.shape, (y, x), int(np.ceil(size)) + 2)
    sub = labels[box]
    here = (y - box[0].start, x - box[1].start)
    free = sub == 0
    within = _disk_mask(sub.shape, here, size)  # twice the typical diameter across
    region = None
    if probabilities is not None:
        interior, foreground = (np.asarray(probabilities[k][box], np.float32) for k in (1, 2))
        foreground = interior + foreground
        seen = foreground[here]
        if seen >= FAINT:
            level = FOREGROUND if seen >= FOREGROUND else 0.5 * seen  # faint nuclei: relative to the click
            region = _grow(interior, foreground >= level, free & within, here)
    if region is None or region.sum() < 4:
        region = _disk_mask(sub.shape, here, size / 2) & free
    new_id = int(labels.max(initial=0)) + 1
    out = _widen(labels, new_id)
    out[box][region] = new_id
    return out


def remove_object(labels: np.ndarray, point: Point) -> np.ndarray:
    """``labels`` without the object at ``point``.

    Raises:
        ValueError: outside the image, or on background.
    """
    labels = _check_labels(labels)
    y, x = check_point(point, labels.shape)
    target = labels[y, x]
    if not target:
        raise ValueError(f"({y}, {x}) is background: there is no object to remove")
    return np.where(labels == target, 0, labels).astype(labels.dtype)


def split_object(labels: np.ndarray, probabilities: np.ndarray | None, seeds: Sequence[Point]) -> np.ndarray:
    """``labels`` with the object under ``seeds`` split into one object per seed (a seeded watershed
    inside it); the part of the first seed keeps the object's id, the others get new ids.

    Raises:
        ValueError: fewer than 2 distinct seeds, a seed on background or outside the image, or seeds
            in different objects.
    """
    labels = _check_labels(labels)
    points = [check_point(p, labels.shape) for p in seeds]
    if len(set(points)) < 2:
        raise ValueError(f"a split needs at least 2 different seeds in one object, got {len(set(points))}")
    ids = {int(labels[p]) for p in points}
    if 0 in ids:
        background = next(p for p in points if labels[p] == 0)
        raise ValueError(f"seed {background} is on background: put every seed inside the object to split")
    if len(ids) > 1:
        raise ValueError(
            f"the seeds are in {len(ids)} different objects ({', '.join(map(str, sorted(ids)))}): split one at a time"
        )
    target = ids.pop()
    box = _bounding_box(labels == target)
    inside = labels[box] == target
    if probabilities is not None:
        _check_probabilities(probabilities, labels.shape)
        elevation = -np.asarray(probabilities[1][box], np.float32)
    else:
        elevation = -ndi.distance_transform_edt(inside)
    markers = np.zeros(inside.shape, np.int32)
    for k, (py, px) in enumerate(points, start=1):
        markers[py - box[0].start, px - box[1].start] = k
    parts = segmentation.watershed(elevation, markers, mask=inside, compactness=SPLIT_COMPACTNESS)
    first_new = int(labels.max(initial=0)) + 1
    out = _widen(labels, first_new + len(points) - 2)
    window = out[box]
    for k in range(2, len(points) + 1):
        window[parts == k] = first_new + k - 2
    return out


def merge_objects(labels: np.ndarray, points: Sequence[Point]) -> np.ndarray:
    """``labels`` with the objects under ``points`` made one, with the first one's id; background
    enclosed between them (the boundary line the model drew) joins it.

    Raises:
        ValueError: a point on background or outside the image, or fewer than 2 distinct objects.
    """
    labels = _check_labels(labels)
    pts = [check_point(p, labels.shape) for p in points]
    on_background = [p for p in pts if labels[p] == 0]
    if on_background:
        raise ValueError(f"{on_background[0]} is background: click on the objects to merge")
    ids = list(dict.fromkeys(int(labels[p]) for p in pts))
    if len(ids) < 2:
        raise ValueError("a merge needs clicks on at least 2 different objects")
    out = labels.copy()
    box = _bounding_box(np.isin(labels, ids), margin=3)
    sub = labels[box]
    merged = np.isin(sub, ids)
    closed = ndi.binary_closing(merged, structure=morphology.disk(2))
    out[box][(closed & (sub == 0)) | merged] = ids[0]
    return out


def changed_region(before: np.ndarray, after: np.ndarray, margin: int = 8) -> np.ndarray:
    """``(H, W)`` bool: the objects an edit touched (in ``before`` or ``after``), grown by ``margin``
    pixels: the region fine-tuning learns from."""
    if before.shape != after.shape:
        raise ValueError(f"the label images differ in shape: {before.shape} and {after.shape}")
    changed = before != after
    touched = np.isin(before, np.unique(before[changed])) | np.isin(after, np.unique(after[changed]))
    touched &= (before > 0) | (after > 0) | changed
    return ndi.binary_dilation(touched | changed, iterations=margin) if margin > 0 else touched | changed


# --- helpers --------------------------------------------------------------------------------------


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"corrections work on one 2-D label image; got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must hold integer ids, got {labels.dtype}")
    if labels.size and np.issubdtype(labels.dtype, np.signedinteger) and labels.min() < 0:
        raise ValueError(f"labels hold negative ids ({int(labels.min())}); ids are 0 (background) and up")
    return labels


def check_point(point: Point, shape: tuple[int, ...]) -> Point:
    """``point`` as whole ``(y, x)`` pixels inside an image of ``shape``, or a ``ValueError`` saying why."""
    try:
        y, x = (round(float(v)) for v in point)
    except (TypeError, ValueError):
        raise ValueError(f"a click is a (y, x) pixel position, got {point!r}") from None
    if not (0 <= y < shape[0] and 0 <= x < shape[1]):
        raise ValueError(f"({y}, {x}) is outside the {shape[0]}x{shape[1]} image")
    return y, x


def _check_probabilities(probabilities: np.ndarray, shape: tuple[int, ...]) -> None:
    if tuple(probabilities.shape) != (3, *shape):
        raise ValueError(
            f"probabilities of shape {tuple(probabilities.shape)} do not fit labels {tuple(shape)}: expected (3, "
            f"{shape[0]}, {shape[1]}); segment the image again"
        )


def _window(shape: tuple[int, ...], centre: Point, radius: int) -> tuple[slice, slice]:
    """The slices of the square of ``radius`` around ``centre``, clipped to the image."""
    return tuple(slice(max(0, c - radius), min(n, c + radius + 1)) for c, n in zip(centre, shape[:2], strict=True))  # type: ignore[return-value]


def _bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, slice]:
    """The slices of ``mask``'s bounding box, grown by ``margin`` and clipped."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    h, w = mask.shape
    return (
        slice(max(0, rows[0] - margin), min(h, rows[-1] + margin + 1)),
        slice(max(0, cols[0] - margin), min(w, cols[-1] + margin + 1)),
    )


def _typical_diameter(labels: np.ndarray, diameter: float | None) -> float:
    """The median diameter of the objects in ``labels`` (counted by ``np.unique``: ids may be sparse and
    large), else ``diameter``, else :data:`DEFAULT_DIAMETER`."""
    _, areas = np.unique(labels[labels > 0], return_counts=True)
    if len(areas):
        return float(2 * np.sqrt(np.median(areas) / np.pi))
    return float(diameter or DEFAULT_DIAMETER)


def _disk_mask(shape: tuple[int, ...], centre: Point, radius: float) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= max(radius, 1.5) ** 2


def _grow(interior: np.ndarray, foreground: np.ndarray, allowed: np.ndarray, point: Point) -> np.ndarray | None:
    """The pixels the click's seed wins in a watershed over ``-interior``, inside ``foreground & allowed``,
    against seeds of the unlabelled nuclei nearby (so one click does not swallow a neighbour)."""
    mask = foreground & allowed
    if not mask[point]:
        return None
    others, _ = ndi.label((interior > SEED) & mask)
    markers = np.where(others > 0, others + 1, 0).astype(np.int32)
    own = others[point]
    if own:  # the click is inside a seed: that seed is the new object's
        markers[others == own] = 1
    markers[point] = 1
    flooded = segmentation.watershed(-interior, markers, mask=mask)
    return flooded == 1


def _widen(labels: np.ndarray, largest: int) -> np.ndarray:
    """A copy of ``labels``, in a wider dtype if it cannot hold ids up to ``largest``."""
    if largest <= np.iinfo(labels.dtype).max:
        return labels.copy()
    return labels.astype(np.uint32 if largest <= np.iinfo(np.uint32).max else np.uint64)
