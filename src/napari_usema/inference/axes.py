"""Which axis of an array is what: T (time), Z (depth), C (channels), Y and X.

An axes string names every dimension of the array as it is stored, e.g. ``"CYX"`` for a two-channel
OME-TIFF or ``"TZCYX"`` for an ImageJ hyperstack. It comes from the file (:mod:`napari_usema.io.image_info`),
from the user (``--axes``, the Axes box in napari), or, where neither says, from the shape; a guess is
announced with the other reading, and a shape that reads two ways the model could take differently is
refused with both named (:func:`read_axes`).

The pipeline works on the *standard* order ``[T][Z]YX[C]``: :meth:`AxesReading.standardise` moves the
axes there (a view for numpy, lazily through dask for zarr) and drops the non-spatial axes of size 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .channels import ChannelError

LETTERS = "TZCYX"
STACK_LETTERS = "TZ"  # the standard order of the stack axes: each time point a Z-stack
Source = Literal["file", "given", "guessed"]


class AxesError(ChannelError):
    """The axes do not fit the array, or the shape alone cannot tell them (a :class:`ChannelError`, as
    front ends report both the same way: what to give instead)."""


def check_axes(axes: str, shape: tuple[int, ...], *, what: str = "--axes") -> str:
    """``axes`` upper-cased, once it names each of the ``len(shape)`` dimensions with one of
    T, Z, C, Y, X (S, a TIFF's samples, reads as C), Y and X included.

    Raises:
        AxesError: naming the letters and the shape that do not fit.
    """
    if not isinstance(axes, str) or not axes:
        raise AxesError(f"{what} must be a string of axis letters such as CYX or TZYX, got {axes!r}")
    letters = axes.strip().upper().replace("S", "C")
    wrong = sorted(set(letters) - set(LETTERS))
    if wrong:
        raise AxesError(f"{what} {axes!r}: {', '.join(wrong)} is not an axis; use T (time), Z, C (channels), Y and X")
    repeated = sorted({a for a in letters if letters.count(a) > 1})
    if repeated:
        raise AxesError(f"{what} {axes!r} names {repeated[0]} twice")
    if "Y" not in letters or "X" not in letters:
        raise AxesError(f"{what} {axes!r} must include Y and X")
    if len(letters) != len(shape):
        raise AxesError(f"{what} {axes!r} names {len(letters)} axes, but the image has {len(shape)} dimensions {tuple(shape)}")
    return letters


def standard_axes(axes: str, shape: tuple[int, ...]) -> str:
    """The standard order ``[T][Z]YX[C]`` of ``axes``, without the non-spatial axes of size 1."""
    kept = {a for a, n in zip(axes, shape, strict=True) if n != 1 or a in "YX"}
    return "".join(a for a in "TZYXC" if a in kept)


@dataclass(frozen=True)
class AxesReading:
    """How an array's dimensions are read.

    Attributes:
        axes: One letter per dimension of the array as stored, e.g. ``"CYX"``.
        source: ``file`` (its metadata), ``given`` (the user) or ``guessed`` (from the shape).
        colour: Whether a C axis holds colour samples (RGB, RGBA) that a 3-channel model takes as
            they are; channels named as such (fluorescence) need one picked instead.
        note: What to tell the user about the reading (a guess and its alternative), if anything.
    """

    axes: str
    source: Source
    colour: bool = False
    note: str | None = None

    def standard(self, shape: tuple[int, ...]) -> str:
        """The axes of :meth:`standardise`'s result, e.g. ``"ZYXC"``."""
        return standard_axes(self.axes, shape)

    def standardise(self, image: Any) -> Any:
        """``image`` with its axes in the standard order; a view for numpy arrays (and small TIFFs decoded
        whole at the first read), a lazy dask array for others (zarr), and the image itself when it is in
        that order already."""
        shape = tuple(image.shape)
        target = self.standard(shape)
        if target == self.axes:
            return image
        from ..io.images import DecodedOnRead

        if isinstance(image, DecodedOnRead):  # small and decoded whole anyway: a numpy view, not dask
            image = np.asarray(image)
        if not isinstance(image, np.ndarray):
            import dask.array as da

            image = image if isinstance(image, da.Array) else da.from_array(image, chunks=_chunks(image))
        drop = tuple(0 if a not in target else slice(None) for a in self.axes)
        kept = "".join(a for a in self.axes if a in target)
        return image[drop].transpose([kept.index(a) for a in target])

    def unstandardise(
        self, labels: np.ndarray, shape: tuple[int, ...], *, leading: str = "", rgb: bool = False
    ) -> tuple[np.ndarray, str]:
        """Labels of the standard axes (:meth:`standard` less C; e.g. ``(T, Z, H, W)``) back in the
        stored order, for a viewer that lines arrays up by their last axes (napari).

        Axes of size 1 come back as size-1 axes and a C axis between others as one of size 1, so every
        axis lines up with the image's; a leading C is left out (it lines up anyway). ``leading``: axes
        of ``labels`` before the standard ones (``"K"`` for probabilities), kept first. ``rgb``: the
        viewer shows the trailing C as colour, not as an axis (napari's RGB layers), so it is left out.

        Returns:
            The array and its axes, e.g. ``"ZCYX"`` with C of size 1.
        """
        standard = leading + self.standard(shape).replace("C", "")
        order = self.axes[:-1] if rgb and self.axes.endswith("C") else self.axes
        order = leading + (order[1:] if order.startswith("C") else order)
        missing = [a for a in order if a not in standard]
        array = labels.reshape(labels.shape + (1,) * len(missing))
        have = standard + "".join(missing)
        return np.transpose(array, [have.index(a) for a in order]), order


def _chunks(image: Any) -> Any:
    chunks = getattr(image, "chunks", None)
    return chunks if isinstance(chunks, tuple) and len(chunks) == image.ndim else "auto"


def read_axes(
    shape: tuple[int, ...],
    model_channels: int,
    *,
    given: str | None = None,
    file_axes: str | None = None,
    file_colour: bool = False,
    channel: int | None = None,
) -> AxesReading:
    """Decide the axes of an array of ``shape``: the user's, else the file's, else a guess from the shape.

    Args:
        shape: The array's shape as stored.
        model_channels: The model's input channels (the guess refuses what it could not feed it).
        given: The user's axes (``--axes``), checked against ``shape``.
        file_axes: The axes in the file's metadata (None where it does not say).
        file_colour: Whether the file's C axis is colour samples (photometric RGB).
        channel: The channel the user chose, if any.

    Raises:
        AxesError: axes that do not fit the shape, or a shape without axes that reads two ways.
    """
    shape = tuple(int(n) for n in shape)
    if given is not None:
        axes = check_axes(given, shape)
        note = None
        if file_axes is not None and file_axes != axes:
            note = f"read {shape} as {axes} (--axes), not as the file's {file_axes}"
        # Colour where the file says so (its RGB samples, wherever the user puts C), or channels last as
        # colour images are stored; channels before Y and X are channels.
        colour = "C" in axes and shape[axes.index("C")] in (3, 4) and (file_colour or axes.endswith("YXC"))
        return AxesReading(axes, "given", colour=colour, note=note)
    if file_axes is not None:
        axes = check_axes(file_axes, shape, what="the file's axes")
        return AxesReading(axes, "file", colour=file_colour and "C" in axes)
    return _guess(shape, model_channels, channel)


def _guess(shape: tuple[int, ...], model_channels: int, channel: int | None) -> AxesReading:
    nd = len(shape)
    if nd == 2:
        return AxesReading("YX", "guessed")
    if nd == 3:
        if _channels_last(shape):
            c = shape[-1]
            # Colour is colour (a model that cannot take it says so); other counts could also be planes.
            fits = c in (1, 3, 4, model_channels) or channel is not None
            if not fits:
                raise AxesError(
                    f"read {shape} as one {shape[0]}x{shape[1]} image with {c} channels (YXC), and the model takes "
                    f"{model_channels}: pick one with --channel (the Channel box in napari); or, if these are "
                    f"{shape[0]} planes of {shape[1]}x{c}, give --axes ZYX"
                )
            note = None if c in (3, 4) else f"read {shape} as {c} channels (YXC); --axes ZYX to read it as {shape[0]} planes"
            return AxesReading("YXC", "guessed", colour=c in (3, 4), note=note)
        return AxesReading(
            "ZYX",
            "guessed",
            note=f"read {shape} as {shape[0]} planes of {shape[1]}x{shape[2]} (Z or T), each segmented on its own; "
            f"--axes CYX to read it as {shape[0]} channels, TYX as time points",
        )
    if nd == 4 and _channels_last(shape[1:]):
        return AxesReading(
            "ZYXC",
            "guessed",
            colour=shape[-1] in (3, 4),
            note=f"read {shape} as {shape[0]} planes (Z or T) of {shape[-1]} channels (ZYXC); --axes to read it otherwise",
        )
    examples = "TZYX, CZYX or ZCYX" if nd == 4 else "TZCYX or TCZYX"
    raise AxesError(
        f"the file does not say which axis of this {nd}-D image {shape} is what: give --axes, e.g. {examples} "
        "(the Axes box in napari)"
    )


def _channels_last(shape: tuple[int, ...]) -> bool:
    """Whether a 3-D ``shape`` reads as ``(Y, X, C)``: at most 4 channels (gray, RGB, RGBA), or up to 16
    on an axis much shorter than the image's sides, as multichannel fluorescence saved channels-last."""
    c = shape[-1]
    return c <= 4 or (c <= 16 and 4 * c <= min(shape[0], shape[1]))


def candidate_axes(ndim: int) -> list[str]:
    """Readings worth offering for an ``ndim``-D array (napari's Axes box): stack and channel letters
    before Y and X, or channels last."""
    from itertools import permutations

    if ndim == 2:
        return ["YX"]
    lead = ["".join(p) for p in permutations("TZC", ndim - 2)]
    last = ["".join(p) + "YXC" for p in permutations("TZ", ndim - 3)]
    return sorted({a + "YX" for a in lead}, key=_preference) + last


def _preference(axes: str) -> tuple[int, str]:
    order = {"ZYX": 0, "TYX": 1, "CYX": 2}
    return (order.get(axes, 3), axes)
