"""Planning one segmentation before any work: the image's axes and planes, each pass's resize, the
stack links, and every refusal of what cannot be done (:func:`plan_planes`, :func:`plan_links`).

The pipeline (:mod:`napari_usema.inference.pipeline`), the command line and napari all plan through
here, so they accept and refuse the same images with the same messages.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..io.metadata import CheckpointMetadata
from ..postprocess.linking import StackLinks
from .axes import STACK_LETTERS, AxesReading, read_axes
from .channels import plan_channels
from .tiling import TilingConfig

# Planes with more pixels than this are post-processed band by band from files on disk.
LARGE_PLANE_PIXELS = 8192 * 8192
NO_LINKS = StackLinks()  # every plane on its own


@dataclass(frozen=True)
class PlanePlan:
    """How every plane of one image is segmented, decided (and checked) before any work starts.

    Attributes:
        reading: The image's axes (:func:`napari_usema.inference.axes.read_axes`).
        axes: The standard axes the pipeline works in, e.g. ``"ZYXC"`` (:meth:`AxesReading.standard`).
        stack_shape: Sizes of the stack axes (T, Z) in that order; ``()`` for one 2-D image.
        shape: ``(H, W)`` of each plane.
        scales: Each pass's resize factor (the model's input scale times the multi-scale factors).
    """

    reading: AxesReading
    axes: str
    stack_shape: tuple[int, ...]
    shape: tuple[int, int]
    scales: tuple[float, ...]

    @property
    def stacked(self) -> bool:
        return bool(self.stack_shape)

    @property
    def planes(self) -> int:
        return int(np.prod(self.stack_shape, dtype=np.int64))

    @property
    def label_axes(self) -> str:
        return self.axes.replace("C", "")

    @property
    def large(self) -> bool:
        return self.shape[0] * self.shape[1] > LARGE_PLANE_PIXELS

    @property
    def rescaled(self) -> bool:
        return self.scales != (1.0,)


def plan_planes(
    meta: CheckpointMetadata,
    shape: tuple[int, ...],
    tiling: TilingConfig,
    channel: int | None,
    size: float = 1.0,
    axes: AxesReading | str | None = None,
) -> PlanePlan:
    """Read the axes and the passes of an image of ``shape``; refuse what cannot be done.

    ``size``: the object-size factor (:func:`napari_usema.inference.object_size.size_factor`), on top
    of the model's input scale and multi-scale factors. ``axes``: a reading, the user's axes string,
    or None to guess them from the shape (:func:`read_axes`).
    """
    shape = tuple(int(n) for n in shape)
    reading = axes if isinstance(axes, AxesReading) else read_axes(shape, meta.input_channels, given=axes, channel=channel)
    standard = reading.standard(shape)
    sizes = dict(zip(reading.axes, shape, strict=True))
    stack_shape = tuple(sizes[a] for a in standard if a in STACK_LETTERS)
    h, w = sizes["Y"], sizes["X"]
    if h == 0 or w == 0 or 0 in shape:
        raise ValueError(f"the image is empty: its shape is {shape}")
    plane_shape = (h, w, sizes["C"]) if "C" in standard else (h, w)
    plan_channels(plane_shape, meta.input_channels, channel, colour=reading.colour)
    factors = meta.test_scales if tiling.scales is None else tiling.scales
    scales = tuple(meta.input_scale * size * f for f in factors)
    plan = PlanePlan(reading, standard, stack_shape, (h, w), scales)
    if plan.large and plan.rescaled:
        why = (
            "the object diameter resizes images"
            if size != 1
            else f"this model resizes images by {meta.input_scale:g}"
            if meta.input_scale != 1
            else "multi-scale TTA resizes images"
        )
        raise ValueError(
            f"{why}, which napari-usema does only for planes up to {LARGE_PLANE_PIXELS:,} pixels; "
            f"this one has {h * w:,}: crop it or resize it yourself"
        )
    if max(plan.scales) > 4:
        raise ValueError(
            f"the model's scale {meta.input_scale:g}, the object-size factor {size:.3g} and the multi-scale factor "
            f"{max(factors):g} would resize the image by {max(plan.scales):.3g}; at most 4 (is the diameter right?)"
        )
    if min(plan.scales) < 1 / 16:
        raise ValueError(f"the image would be shrunk by {min(plan.scales):.3g}; at least 1/16 (is the diameter right?)")
    resized = h * w * max(plan.scales) ** 2
    if not plan.large and resized > LARGE_PLANE_PIXELS:
        raise ValueError(
            f"resized by {max(plan.scales):.3g}, this {h}x{w} plane would have {resized:,.0f} pixels, more than the "
            f"{LARGE_PLANE_PIXELS:,} napari-usema resizes in memory: crop it, or check the diameter"
        )
    return plan


def plan_links(plan: PlanePlan, links: StackLinks, task: str, streamed: bool) -> tuple[AxesReading, StackLinks]:
    """The plan's reading and the links that apply to it, checked before any work.

    A guessed stack (Z or T) reads as time points for tracking alone. A link along an axis of size 1
    (one time point, one plane) has nothing to join and is dropped. ``streamed``: the labels go to a
    caller's ``labels_out``.

    Raises:
        ValueError: links for a semantic model or streamed labels, along an axis the image does not
            have, or tracking of Z-stacks that are not stitched (their ids are per plane).
    """
    if not links:
        return plan.reading, links
    if task != "instance":
        raise ValueError("stitching and tracking join instances: they are for instance models, not class maps")
    if streamed:
        raise ValueError("stitching and tracking work on labels in memory; leave labels_out out")
    reading, label_axes = plan.reading, plan.label_axes
    if reading.source == "guessed" and label_axes == "ZYX" and links.track is not None:
        if links.stitch is not None:
            raise ValueError(
                f"this {plan.planes}-plane stack has one stack axis, read from its shape: stitch it (Z) or track it (T), "
                "not both; give its axes (--axes, the Axes box in napari) if it has both"
            )
        note = f"read the {plan.planes} planes as time points (T) to track objects across them; --axes to say otherwise"
        reading = dataclasses.replace(reading, axes=reading.axes.replace("Z", "T"), note=note)
        label_axes = "TYX"
    stored = reading.axes.replace("C", "")  # with the axes of size 1 that the pipeline drops
    links.check(stored)
    effective = StackLinks(
        links.stitch if "Z" in label_axes else None,  # one plane: nothing to stitch
        links.track if "T" in label_axes else None,  # one time point: nothing to track
    )
    if effective.track is not None and "Z" in label_axes and effective.stitch is None:
        raise ValueError(
            "tracking a Z-stack per time point follows 3-D objects, whose ids are per plane until stitched: "
            "stitch the planes too (--stitch IOU, or 'stitch Z and track T' in napari)"
        )
    return reading, effective
