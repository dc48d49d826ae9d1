"""Translating between napari layers and engine arrays, without any science."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
from napari.layers import Image, Labels, Layer, Shapes


def checksum(data: Any) -> int:
    """A cheap fingerprint of a layer's data, to tell whether the user edited it since we wrote it."""
    return zlib.crc32(np.ascontiguousarray(np.asarray(data)).view(np.uint8))


def spatial_transform(image: Image) -> dict[str, Any]:
    """``scale`` and ``translate`` of the image's spatial axes, for a Labels layer laid over it."""
    n = image.data.ndim - (1 if image.rgb else 0)
    return {"scale": tuple(image.scale[-n:]), "translate": tuple(image.translate[-n:])}


def write_owned_labels(
    viewer: Any, data: np.ndarray, name: str, image: Image, *, force_new: bool = False, **kwargs: Any
) -> Labels:
    """Put ``data`` into the layer ``name`` that this plugin made earlier, or into a new layer.

    A layer is reused only if it was made by this plugin and nobody has edited it since: painted
    corrections are never overwritten. Otherwise a new layer with a free name is added.
    """
    layer = viewer.layers[name] if name in viewer.layers else None
    reusable = (
        not force_new
        and isinstance(layer, Labels)
        and layer.metadata.get("usema_checksum") == checksum(layer.data)
        and layer.data.shape == data.shape
    )
    if reusable:
        layer.data = data
    else:
        free = name
        k = 2
        while free in viewer.layers:
            free, k = f"{name} [{k}]", k + 1
        layer = viewer.add_labels(data, name=free, **spatial_transform(image), **kwargs)
    layer.metadata["usema_checksum"] = checksum(layer.data)
    return layer


def is_edited(layer: Labels) -> bool:
    """Whether a plugin-made labels layer was painted on since the plugin last wrote it."""
    return layer.metadata.get("usema_checksum") != checksum(layer.data)


def region_mask(layer: Layer | None, shape: tuple[int, int]) -> np.ndarray | None:
    """A ``(H, W)`` bool mask from a Shapes layer (inside any shape) or a Labels layer (non-zero)."""
    if layer is None:
        return None
    if isinstance(layer, Shapes):
        if len(layer.data) == 0:
            raise ValueError(f"the region layer {layer.name!r} has no shapes; draw around what you corrected")
        return np.asarray(layer.to_masks(mask_shape=shape)).any(axis=0)
    if isinstance(layer, Labels):
        mask = np.asarray(layer.data) > 0
        if mask.shape != shape:
            raise ValueError(f"the region layer {layer.name!r} is {mask.shape}, the image is {shape}")
        return mask
    raise ValueError(f"the region layer {layer.name!r} must be a Shapes or Labels layer")
