"""Results out: a table of per-object measurements of instance labels, or of per-class areas of class
maps, and the table as a CSV file.

A table is what :func:`skimage.measure.regionprops_table` returns: a dict of equal-length numpy
columns, which ``pandas.DataFrame(table)`` and napari's ``Labels.features`` take as they are. The columns
are renamed for a spreadsheet (``centroid_y``, not ``centroid-0``) and are the same whether or not there
is an object, so an empty image gives a table with zero rows and every column.

Stacks (``[T][Z] H, W``, the pipeline's label axes) are measured plane by plane, in 2-D, with one
column per stack axis (``t``, ``z``) saying which plane a row is from: without stitching an id means a
different object in each plane, and a stitched 3-D object gets one row per plane it crosses, under
one id. Coordinates are pixels of the plane, ``(y, x)``; with a pixel size the physical columns come
too (``area_um2``, ``centroid_y_um``, ``centroid_x_um``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io.outputs import atomic_write, check_output

Table = dict[str, np.ndarray]

# regionprops_table's names -> ours. Bounding boxes are skimage's: min inclusive, max exclusive.
OBJECT_COLUMNS = {
    "label": "label",
    "area": "area",
    "centroid-0": "centroid_y",
    "centroid-1": "centroid_x",
    "bbox-0": "bbox_y_min",
    "bbox-1": "bbox_x_min",
    "bbox-2": "bbox_y_max",
    "bbox-3": "bbox_x_max",
    "eccentricity": "eccentricity",
}
PROPERTIES = ("label", "area", "centroid", "bbox", "eccentricity")
PHYSICAL_COLUMNS = ("area_um2", "centroid_y_um", "centroid_x_um")
CLASS_COLUMNS = ("class_id", "class", "pixels", "area_fraction")
INTEGER_COLUMNS = {"label", "area", "bbox_y_min", "bbox_x_min", "bbox_y_max", "bbox_x_max", "class_id", "pixels", "t", "z"}


def measure_objects(
    labels: Any,
    image: Any | None = None,
    *,
    axes: str | None = None,
    channel_names: Sequence[str] = (),
    pixel_size: tuple[float, float] | None = None,
) -> Table:
    """One row per object (per plane of a stack): label, area, centroid, bounding box, eccentricity,
    the mean intensity of each image channel, and physical area and centroid where the pixel size is known.

    Args:
        labels: Instance ids ``(H, W)``, or a stack ``([T][Z] H, W)``; 0 is background.
        image: The intensities of the same pixels, ``([T][Z] H, W)`` or ``([T][Z] H, W, C)``; None: no
            intensity columns.
        axes: The labels' axes in the pipeline's order, ``"YX"``, ``"ZYX"``, ``"TYX"`` or ``"TZYX"``
            (:attr:`SegmentationResult.axes`); None reads a 2-D array as ``"YX"``.
        channel_names: One per image channel: the intensity columns are ``mean_intensity_NAME``; without
            them ``mean_intensity_0``, ``mean_intensity_1``...
        pixel_size: ``(y, x)`` in micrometres (:attr:`ImageInfo.pixel_size`).

    Raises:
        ValueError: labels that are not integers >= 0, axes that do not fit them, an image whose planes
            are not the labels', channel names that do not match its channels, or a pixel size that is
            not two positive numbers; all before any measuring.
    """
    from skimage.measure import regionprops_table

    axes, stack = _check_labels(labels, axes)
    image, names = _check_image(image, labels, channel_names)
    pixel_size = _check_pixel_size(pixel_size)
    columns = _object_columns(stack, names, pixel_size)
    properties = PROPERTIES + (("intensity_mean",) if names else ())
    parts: list[Table] = []
    for index in np.ndindex(*labels.shape[:-2]):  # one empty index for a 2-D image
        plane = np.asarray(labels[index])
        if not plane.any():
            continue
        intensity = None if image is None else _channels_last(np.asarray(image[index]))
        found = regionprops_table(plane.astype(np.uint8) if plane.dtype == bool else plane, intensity, properties=properties)
        part = {ours: found[theirs] for theirs, ours in OBJECT_COLUMNS.items()}
        part["area"] = part["area"].astype(np.int64)  # a pixel count (skimage gives it as a float)
        part.update({name: found[f"intensity_mean-{i}"] for i, name in enumerate(names)})
        parts.append(_with_stack_and_units(part, stack, index, pixel_size))
    return _stacked(parts, columns)


def measure_classes(
    classes: Any,
    class_names: Sequence[str],
    *,
    axes: str | None = None,
    pixel_size: tuple[float, float] | None = None,
) -> Table:
    """One row per class (per plane of a stack), background included: its id and name, its pixels, its
    share of the plane (``area_fraction``, the shares sum to 1), and ``area_um2`` where the pixel size
    is known. A semantic model's class map has no objects to measure one by one.

    Args:
        classes: Class ids ``(H, W)`` or ``([T][Z] H, W)``, each below ``len(class_names)``.
        class_names: The model's classes, background first.
        axes, pixel_size: As for :func:`measure_objects`.

    Raises:
        ValueError: a class id without a name, and the refusals of :func:`measure_objects`.
    """
    axes, stack = _check_labels(classes, axes)
    pixel_size = _check_pixel_size(pixel_size)
    k = len(class_names)
    if k == 0:
        raise ValueError("class_names is empty: give the model's class names, background first")
    highest = int(np.max(classes)) if np.prod(classes.shape) else 0
    if highest >= k:
        raise ValueError(f"the class map holds class {highest}, but there are {k} class names ({', '.join(class_names)})")
    columns = [*stack, *CLASS_COLUMNS, *(["area_um2"] if pixel_size else [])]
    parts: list[Table] = []
    for index in np.ndindex(*classes.shape[:-2]):
        plane = np.asarray(classes[index])
        pixels = np.bincount(plane.ravel().astype(np.int64), minlength=k)
        part = {
            "class_id": np.arange(k),
            "class": np.array(class_names, dtype=object),
            "pixels": pixels,
            "area_fraction": pixels / max(plane.size, 1),
        }
        for axis, at in zip(stack, index, strict=True):
            part[axis] = np.full(k, at)
        if pixel_size:
            part["area_um2"] = pixels * (pixel_size[0] * pixel_size[1])
        parts.append(part)
    return _stacked(parts, columns)


def write_csv(table: Table, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``table`` as CSV at ``path`` (a header row, then one row per object); whole or not at all.

    Raises:
        OutputError: ``path`` does not end in ``.csv``, is a folder, exists without ``overwrite``, or
            cannot be written; checked before anything is written.
        ValueError: columns of different lengths.
    """
    lengths = {name: len(column) for name, column in table.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"the table's columns differ in length: {lengths}")
    path = check_output(path, overwrite=overwrite, suffix=".csv", what="measurements")
    rows = zip(*(np.asarray(column).tolist() for column in table.values()), strict=True)  # Python numbers: repr round-trips
    with atomic_write(path, overwrite=overwrite) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(table)
            writer.writerows(rows)
    return path


def intensity_columns(count: int, channel_names: Sequence[str] = ()) -> list[str]:
    """The mean-intensity columns for ``count`` channels: named after the channels where given; a name
    that repeats (two channels a file calls "GFP") gets its channel's index, ``mean_intensity_GFP_2``.

    Raises:
        ValueError: names that are not one per channel.
    """
    names = [str(n) for n in channel_names]
    if names and len(names) != count:
        raise ValueError(f"{len(names)} channel names ({', '.join(names)}) for an image of {count} channel(s)")
    repeated = {n for n in names if names.count(n) > 1}
    names = [f"{n}_{i}" if n in repeated else n for i, n in enumerate(names)]
    return [f"mean_intensity_{name}" for name in (names or range(count))]


def _check_labels(labels: Any, axes: str | None) -> tuple[str, list[str]]:
    """The labels' axes and their stack columns (``["t", "z"]``...), checked."""
    if not (hasattr(labels, "shape") and hasattr(labels, "dtype")):
        raise ValueError(f"labels must be an array, got {type(labels).__name__}")
    dtype = np.dtype(labels.dtype)
    if not (np.issubdtype(dtype, np.integer) or dtype.kind == "b"):
        raise ValueError(f"labels hold {dtype} values; expected integer ids (0 for background)")
    ndim = len(labels.shape)
    axes = "YX" if axes is None and ndim == 2 else axes
    if axes is None:
        raise ValueError(f"labels of shape {tuple(labels.shape)} are a stack: say its axes (ZYX, TYX or TZYX)")
    if axes not in ("YX", "ZYX", "TYX", "TZYX"):
        raise ValueError(f"labels axes {axes!r}: expected YX, ZYX, TYX or TZYX (the stack axes, then Y and X)")
    if len(axes) != ndim:
        raise ValueError(f"labels axes {axes!r} name {len(axes)} axes, but the labels have shape {tuple(labels.shape)}")
    if np.issubdtype(dtype, np.signedinteger) and labels.size and int(np.min(labels)) < 0:
        raise ValueError("labels hold negative ids; ids are 0 (background) and up")
    return axes, [a.lower() for a in axes[:-2]]


def _check_image(image: Any, labels: Any, channel_names: Sequence[str]) -> tuple[Any, list[str]]:
    """The image (or None) and its intensity columns, checked against the labels' shape."""
    if image is None:
        if channel_names:
            raise ValueError("channel names were given without an image to measure intensities in")
        return None, []
    shape, planes = tuple(image.shape), tuple(labels.shape)
    if shape == planes:
        count = 1
    elif len(shape) == len(planes) + 1 and shape[:-1] == planes:
        count = shape[-1]
    else:
        raise ValueError(f"the image {shape} does not cover the labels {planes}: expected {planes} or {(*planes, 'C')}")
    dtype = np.dtype(image.dtype)
    if not (np.issubdtype(dtype, np.number) or dtype.kind == "b"):
        raise ValueError(f"the image holds {dtype} values; expected intensities")
    return image, intensity_columns(count, channel_names)


def _channels_last(plane: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` intensities of one plane, so that skimage always names its columns
    ``intensity_mean-0``, ``-1``...; booleans as 0 and 1."""
    plane = plane[..., None] if plane.ndim == 2 else plane
    return plane.astype(np.uint8) if plane.dtype == bool else plane


def _check_pixel_size(pixel_size: Any) -> tuple[float, float] | None:
    if pixel_size is None:
        return None
    try:
        y, x = (float(v) for v in pixel_size)
    except (TypeError, ValueError):
        raise ValueError(f"pixel_size must be (y, x) in micrometres, got {pixel_size!r}") from None
    if not (math.isfinite(y) and math.isfinite(x) and y > 0 and x > 0):
        raise ValueError(f"pixel_size must be two positive sizes in micrometres, got {pixel_size!r}")
    return y, x


def _object_columns(stack: list[str], names: list[str], pixel_size: tuple[float, float] | None) -> list[str]:
    return [*stack, *OBJECT_COLUMNS.values(), *names, *(PHYSICAL_COLUMNS if pixel_size else ())]


def _with_stack_and_units(part: Table, stack: list[str], index: tuple[int, ...], pixel_size: Any) -> Table:
    n = len(part["label"])
    for axis, at in zip(stack, index, strict=True):
        part[axis] = np.full(n, at)
    if pixel_size:
        y, x = pixel_size
        part["area_um2"] = part["area"] * (y * x)
        part["centroid_y_um"] = part["centroid_y"] * y
        part["centroid_x_um"] = part["centroid_x"] * x
    return part


def _stacked(parts: list[Table], columns: list[str]) -> Table:
    """The parts one after the other, in ``columns``' order; zero rows of the right types if none."""
    if not parts:
        return {c: np.zeros(0, object if c == "class" else np.int64 if c in INTEGER_COLUMNS else np.float64) for c in columns}
    return {c: np.concatenate([part[c] for part in parts]) for c in columns}
