"""Map an image's layout (grayscale, RGB, multichannel) to the channels a model reads.

A 3-channel model repeats a grayscale image to 3 channels, so one nuclei model serves fluorescence
(grayscale) and stained tissue (RGB). A 1-channel model takes a grayscale image, or one channel
that the user picks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class ChannelError(ValueError):
    """The image's channels do not fit the model."""


@dataclass(frozen=True)
class ChannelPlan:
    """Which source channels feed the model, and how.

    Attributes:
        channel_axis: Axis of the source that holds channels (None for grayscale ``(H, W)``).
        pick: Source channel indices, in model order; a grayscale image repeats index 0.
    """

    channel_axis: int | None
    pick: tuple[int, ...]

    def take(self, block: Any) -> np.ndarray:
        """Turn a source block ``(h, w)`` or ``(h, w, C)`` into a model block ``(C_model, h, w)``."""
        block = np.asarray(block)
        if self.channel_axis is None:
            return np.repeat(block[None], len(self.pick), axis=0)
        return np.moveaxis(block, self.channel_axis, 0)[list(self.pick)]


def plan_channels(shape: tuple[int, ...], model_channels: int, channel: int | None = None, *, colour: bool = True) -> ChannelPlan:
    """Decide how a 2-D image of ``shape`` (``(H, W)`` or ``(H, W, C)``) feeds a model.

    Args:
        shape: Shape of one 2-D plane, channels last when present.
        model_channels: The model's input channels (1 or 3).
        channel: A channel chosen by the user, for multichannel images.
        colour: Whether the channels are colour samples (RGB, RGBA), which a 3-channel model takes as
            they are; other channels (fluorescence, named so by the file or the user's axes) need one
            picked, so that nuclei are never looked for in a marker channel unasked.

    Raises:
        ChannelError: with what to do, when the image and the model do not fit.
    """
    if len(shape) == 2:
        if channel not in (None, 0):
            raise ChannelError(f"the image is grayscale; channel {channel} does not exist")
        return ChannelPlan(None, (0,) * model_channels)
    if len(shape) != 3:
        raise ChannelError(f"expected a 2-D image (H, W) or (H, W, C), got shape {tuple(shape)}")
    n = shape[-1]
    if channel is not None:
        if not 0 <= channel < n:
            raise ChannelError(f"the image has {n} channels; channel {channel} does not exist (0..{n - 1})")
        return ChannelPlan(2, (channel,) * model_channels)
    if n == 1:
        return ChannelPlan(2, (0,) * model_channels)
    if not colour:
        raise ChannelError(
            f"the image has {n} channels, not colour samples: pick the one to segment with --channel "
            f"(0..{n - 1}, or its name; the Channel box in napari)"
        )
    if n == model_channels:
        return ChannelPlan(2, tuple(range(n)))
    if model_channels == 3 and n == 4:  # RGBA: drop alpha
        return ChannelPlan(2, (0, 1, 2))
    kind = "1 (grayscale)" if model_channels == 1 else f"{model_channels} (RGB), or 1 (grayscale)"
    raise ChannelError(
        f"the image has {n} channels; the model expects {kind}: pick a channel with --channel (the Channel box in napari)"
    )


def resolve_channel(choice: int | str | None, names: tuple[str, ...] = ()) -> int | None:
    """The index of the channel the user chose by index or by name (``names``: the file's, in order).

    Raises:
        ChannelError: a name the file does not have (its names are listed), or a name for a file
            that names none.
    """
    if choice is None or isinstance(choice, int):
        return choice
    text = str(choice).strip()
    if text.lstrip("-").isdigit() and text not in names:  # a channel named "488" is chosen by name
        return int(text)
    matches = [i for i, name in enumerate(names) if name == text] or [
        i for i, name in enumerate(names) if name.casefold() == text.casefold()
    ]
    if len(matches) == 1:
        return matches[0]
    if not names:
        raise ChannelError(f"channel {text!r}: this image does not name its channels; give the channel's index (0, 1, ...)")
    if len(matches) > 1:
        raise ChannelError(f"channel {text!r}: the image has {len(matches)} channels of that name; give the index instead")
    listed = ", ".join(f"{i}: {name}" for i, name in enumerate(names))
    raise ChannelError(f"no channel named {text!r} in this image; its channels are {listed}")
