"""The napari reader for OME-TIFF and OME-Zarr: one layer per channel (napari's ``channel_axis``), named
after the file's channels, with the pixel size as the layers' scale and the axes in their metadata,
where the Segment section finds them (its Axes box)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_usema.io.image_info import ImageInfo, open_image
from napari_usema.io.images import DecodedOnRead, ImageReadError, is_zarr

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[str], list[LayerData]] | None:
    """The reader for one OME-TIFF or OME-Zarr path; None for anything else (other readers take it)."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    name = str(path).lower().rstrip("/")
    if name.endswith((".ome.tif", ".ome.tiff")) or (name.endswith(".zarr") and _is_ome_zarr(Path(path))):
        return read_layers
    return None


def _is_ome_zarr(path: Path) -> bool:
    """A zarr store with NGFF multiscales metadata (other zarr stores are left to other readers)."""
    import json

    if not is_zarr(path):
        return False
    for name in ("zarr.json", ".zattrs"):
        try:
            attrs = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        attrs = attrs.get("attributes", attrs)  # zarr v3 keeps them under "attributes"
        if "multiscales" in attrs.get("ome", attrs):
            return True
    return False


def read_layers(path: str) -> list[LayerData]:
    """The image of ``path`` as napari layer data: split by channel unless its channels are colour."""
    try:
        image, info = open_image(Path(path))
    except ImageReadError as err:
        raise ValueError(str(err)) from None
    if isinstance(image, DecodedOnRead):  # a small compressed TIFF: the layer gets its own array
        image = image.read_copy()
    name = Path(str(path).rstrip("/")).name.split(".")[0]
    axes = info.axes
    if axes is None:  # the file does not say: show it as it is, and let the Segment section read it
        return [(image, {"name": name, "metadata": {"source_format": info.format}}, "image")]
    if "C" in axes and info.colour:  # RGB: napari wants the samples last
        order = [i for i, a in enumerate(axes) if a != "C"] + [axes.index("C")]
        data = np.transpose(image, order) if isinstance(image, np.ndarray) else _dask(image).transpose(order)
        kept = "".join(axes[i] for i in order)
        return [(data, {"name": name, "rgb": True, "scale": _scale(kept[:-1], info), "metadata": _meta(kept, info)}, "image")]
    if "C" not in axes:
        return [(image, {"name": name, "scale": _scale(axes, info), "metadata": _meta(axes, info)}, "image")]
    spatial = axes.replace("C", "")
    count = image.shape[axes.index("C")]
    names = list(info.channel_names) if len(info.channel_names) == count else [f"{name} channel {i}" for i in range(count)]
    kwargs = {
        "channel_axis": axes.index("C"),
        "name": names,
        "scale": _scale(spatial, info),
        "metadata": _meta(spatial, info),
        "blending": "additive",
    }
    return [(image if isinstance(image, np.ndarray) else _dask(image), kwargs, "image")]


def _scale(axes: str, info: ImageInfo) -> tuple[float, ...]:
    """Micrometres per pixel on each axis where the file records it; 1 elsewhere."""
    size = {}
    if info.pixel_size:
        size["Y"], size["X"] = info.pixel_size
    if info.z_spacing:
        size["Z"] = info.z_spacing
    return tuple(float(size.get(a, 1.0)) for a in axes)


def _meta(axes: str, info: ImageInfo) -> dict[str, Any]:
    return {"axes": axes, "source_format": info.format, "pixel_size_um": info.pixel_size}


def _dask(array: Any) -> Any:
    import dask.array as da

    return da.from_array(array, chunks=array.chunks if hasattr(array, "chunks") else "auto")
