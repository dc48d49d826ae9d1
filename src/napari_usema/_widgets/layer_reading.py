"""Reading an image layer's axes and channels for the Segment section: what the Axes and Channel
boxes offer, and the layer as the engine reads it (:func:`napari_usema.inference.axes.read_axes`)."""

from __future__ import annotations

from typing import Any

from napari.layers import Image

from napari_usema.inference.axes import AxesReading, candidate_axes, read_axes

AUTO = "auto"


def layer_array(layer: Image) -> Any:
    """The full-resolution data of an image layer (level 0 of a multiscale pyramid)."""
    return layer.data[0] if layer.multiscale else layer.data


def axes_choices(layer: Image | None) -> list[str]:
    """The readings of ``layer``'s shape (the Axes box), with the one its metadata says."""
    if layer is None:
        return [AUTO]
    ndim = layer_array(layer).ndim
    if layer.rgb:  # colour last: only the stack axes before Y and X are open
        choices = [AUTO, *(a for a in candidate_axes(ndim) if a.endswith("YXC"))]
    else:
        choices = [AUTO, *candidate_axes(ndim)]
    said = layer.metadata.get("axes")
    if isinstance(said, str) and said not in choices and len(said) == ndim:
        choices.append(said)
    return choices


def channel_choices(layer: Image, reading: AxesReading) -> list[tuple[str, Any]]:
    """The channels of ``reading``'s C axis (the Channel box), by name where the layer's metadata has them."""
    choices: list[tuple[str, Any]] = [(AUTO, AUTO)]
    shape = tuple(layer_array(layer).shape)
    if "C" in reading.standard(shape):
        names = tuple(layer.metadata.get("channel_names") or ())
        count = shape[reading.axes.index("C")]
        choices += [(f"{i}: {names[i]}" if len(names) == count else str(i), i) for i in range(count)]
    return choices


def read_layer(layer: Image, chosen: str | None, model_channels: int, channel: int | None) -> AxesReading:
    """``layer``'s axes: ``chosen`` (the Axes box), else its metadata's, else napari's RGB, else a guess."""
    shape = tuple(layer_array(layer).shape)
    said = layer.metadata.get("axes")
    file_axes = said if isinstance(said, str) and len(said) == len(shape) else None
    if layer.rgb and chosen is None and file_axes is None:  # napari's RGB: colour last, the rest stacks
        stacks = {3: "", 4: "Z", 5: "TZ"}.get(len(shape))
        if stacks is None:
            raise ValueError(f"an RGB layer of {len(shape)} dimensions: choose its axes in the Axes box")
        chosen = stacks + "YXC"
    return read_axes(shape, model_channels, given=chosen, file_axes=file_axes, file_colour=layer.rgb, channel=channel)


def plane_data(layer: Image, reading: AxesReading) -> Any:
    """``layer`` as one 2-D image ``(H, W)`` or ``(H, W, C)`` read by ``reading``.

    Raises:
        ValueError: the layer reads as a stack.
    """
    data = layer_array(layer)
    standard = reading.standard(tuple(data.shape))
    if standard not in ("YX", "YXC"):
        raise ValueError(f"{layer.name} reads as {standard}, a stack; this works on one 2-D image (choose one plane)")
    return reading.standardise(data)
