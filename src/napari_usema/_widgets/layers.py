"""Translating between napari layers and engine arrays, without any science."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
from napari.layers import Image, Labels, Layer, Shapes

# The Show labels as box: (contour width, opacity) of the labels layer.
STYLES = {"fill": (0, 0.6), "outline": (3, 1.0)}
# Class colours that stand out on fluorescence, stained tissue and endoscopy alike (class 0 transparent).
CLASS_COLOURS = ("yellow", "cyan", "magenta", "lime", "orange", "deepskyblue", "white", "red")


def class_colours(count: int) -> dict[Any, str]:
    """napari ``DirectLabelColormap`` colours for ``count`` classes, background transparent."""
    colours: dict[Any, str] = {None: "transparent", 0: "transparent"}
    colours.update({k: CLASS_COLOURS[(k - 1) % len(CLASS_COLOURS)] for k in range(1, count)})
    return colours


def checksum(data: Any) -> int:
    """A cheap fingerprint of a layer's data, to tell whether the user edited it since we wrote it."""
    return zlib.crc32(np.ascontiguousarray(np.asarray(data)).view(np.uint8))


def spatial_transform(image: Image, axes: str | None = None, out_axes: str | None = None) -> dict[str, Any]:
    """``scale`` and ``translate`` for a layer laid over ``image``: of each of ``out_axes`` (the labels'
    axes, e.g. ``"ZYX"``), read from ``image``'s axis of that letter in ``axes`` (its own, e.g. ``"CZYX"``);
    an axis the image does not have (the classes of probabilities, K) gets scale 1. Without axes, the
    image's last axes, as many as the image has spatial ones."""
    if axes is None or out_axes is None:
        n = image.ndim
        return {"scale": tuple(image.scale[-n:]), "translate": tuple(image.translate[-n:])}
    own = axes[: image.ndim]  # an RGB layer's colour axis is not one of its dims
    scale = dict(zip(own, image.scale, strict=True))
    translate = dict(zip(own, image.translate, strict=True))
    return {
        "scale": tuple(float(scale.get(a, 1.0)) for a in out_axes),
        "translate": tuple(float(translate.get(a, 0.0)) for a in out_axes),
    }


def write_owned_labels(
    viewer: Any,
    data: np.ndarray,
    name: str,
    image: Image,
    *,
    force_new: bool = False,
    transform: dict[str, Any] | None = None,
    **kwargs: Any,
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
        layer = viewer.add_labels(data, name=free, **(transform or spatial_transform(image)), **kwargs)
    layer.metadata["usema_image_layer"] = image  # the layer itself, not its name: names change
    mark_written(layer)
    return layer


def mark_written(layer: Labels) -> None:
    """Record what the plugin wrote into ``layer``: its checksum (to tell edits), and for a 2-D layer a
    copy, from which fine-tuning finds what was corrected (clicks and brush alike)."""
    layer.metadata["usema_checksum"] = checksum(layer.data)
    layer.metadata["usema_written"] = np.array(layer.data, copy=True) if np.ndim(layer.data) == 2 else None


def standard_labels(data: Any, layer_axes: str | None, axes: str) -> np.ndarray:
    """A labels layer's data laid out as ``layer_axes`` (e.g. ``"ZCYX"``, its C of size 1, as
    :meth:`SegmentationState.layer_labels` lays labels over their image) back in the engine's ``axes``
    (e.g. ``"ZYX"``); without ``layer_axes`` the data is taken to be in ``axes`` already.

    Raises:
        ValueError: the layer's data no longer fits ``layer_axes``.
    """
    data = np.asarray(data)
    layer_axes = layer_axes or axes
    if len(layer_axes) != data.ndim or not set(axes) <= set(layer_axes):
        raise ValueError(f"the labels layer is {data.shape}, not laid out as {layer_axes}: segment the image again")
    extra = [i for i, a in enumerate(layer_axes) if a not in axes]
    if any(data.shape[i] != 1 for i in extra):
        raise ValueError(f"the labels layer is {data.shape}: its {layer_axes} axes outside {axes} are not of size 1")
    kept = "".join(a for a in layer_axes if a in axes)
    return np.transpose(data.reshape([n for i, n in enumerate(data.shape) if i not in extra]), [kept.index(a) for a in axes])


def set_measurements(layer: Labels, table: dict[str, np.ndarray], measured: int) -> bool:
    """Keep ``table`` (measured on data of checksum ``measured``) with ``layer``, and show it as the
    layer's ``features``, one row per id (napari's ``index`` column maps ids to rows, so hovering over
    an object shows its row). False where ids repeat (the planes of a stack): no features then.
    """
    layer.metadata["usema_measurements"] = (measured, table)
    key = "label" if "label" in table else "class_id"
    ids = table[key]
    if len(np.unique(ids)) != len(ids):
        return False  # the layer keeps what it had (a class map's names, as the Segment section set them)
    layer.features = {"index": ids, **table}
    return True


def measurements_of(layer: Labels) -> dict[str, np.ndarray] | None:
    """The table :func:`set_measurements` kept with ``layer``, if its data has not changed since."""
    kept = layer.metadata.get("usema_measurements")
    return kept[1] if kept is not None and kept[0] == checksum(layer.data) else None


def corrected_pair_parts(layer: Labels) -> tuple[np.ndarray, np.ndarray] | None:
    """``(written, now)`` of a 2-D plugin-made labels layer that was edited since; None otherwise."""
    written = layer.metadata.get("usema_written")
    if written is None or not is_edited(layer):
        return None
    now = np.asarray(layer.data)
    return (written, now) if written.shape == now.shape else None


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
