"""``usema predict``'s inputs: the files a run takes, where each one's outputs go, and how each one is
read (axes, channel, stack links), all checked before any work (:func:`check_input`)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the heavy modules load when a run starts, not for `usema --help`
    from napari_usema.inference.axes import AxesReading
    from napari_usema.inference.planning import PlanePlan
    from napari_usema.inference.tiling import TilingConfig
    from napari_usema.io.checkpoint import LoadedModel
    from napari_usema.io.image_info import ImageInfo
    from napari_usema.postprocess.linking import StackLinks


def collect_inputs(inputs: list[Path]) -> list[Path]:
    """Files as given, folders expanded to their images; missing paths are an error."""
    from napari_usema.io.images import is_zarr, list_images

    files: list[Path] = []
    for item in inputs:
        if is_zarr(item):  # an OME-Zarr image is a folder, but one image
            files.append(item)
        elif item.is_dir():
            files.extend(list_images(item, zarr=True))
            subfolders = sorted(p.name for p in item.iterdir() if p.is_dir() and not is_zarr(p))
            if subfolders:
                print(f"usema predict: not looking into the subfolders of {item}: {', '.join(subfolders)}", file=sys.stderr)
        elif item.exists():
            files.append(item)
        else:
            raise FileNotFoundError(f"input {item} does not exist")
    stems = [output_stem(f) for f in files]
    clash = sorted({s for s in stems if stems.count(s) > 1})
    if clash:
        raise ValueError(f"two inputs would both be written as {clash[0]}.tif; segment them into different --out folders")
    if not files:
        raise FileNotFoundError("no image files found in the inputs")
    return files


def output_stem(path: Path) -> str:
    """The name of ``path``'s outputs: ``cells.ome.tif`` and ``cells.ome.zarr`` become ``cells``."""
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return stem[:-4] if stem.lower().endswith(".ome") else stem


def output_paths(path: Path, args: argparse.Namespace) -> list[Path]:
    """``path``'s outputs in ``--out``: ``NAME.tif``, then ``NAME_probabilities.tif`` with
    ``--probabilities`` and ``NAME_measurements.csv`` with ``--measurements``, and last ``NAME.json``,
    the provenance record (``io/provenance.py``), in that order."""
    name = output_stem(path)
    wanted = {".tif": True, "_probabilities.tif": args.probabilities, "_measurements.csv": args.measurements, ".json": True}
    return [args.out / f"{name}{suffix}" for suffix, asked in wanted.items() if asked]


def plan_outputs(files: list[Path], args: argparse.Namespace) -> dict[Path, list[Path]]:
    """Each input's output files, checked before any work; inputs whose outputs exist are left out
    with ``--skip-existing``.

    Raises:
        OutputError: an output is an input file (never replaced), a folder, exists without
            ``--overwrite``, or cannot be written.
    """
    from napari_usema.io.outputs import check_output, refuse_inputs

    if args.overwrite and args.skip_existing:
        raise ValueError("--overwrite and --skip-existing contradict each other: choose one")
    every = {f: output_paths(f, args) for f in files}
    refuse_inputs([o for outputs in every.values() for o in outputs], files)  # first: never suggest --overwrite on an input
    planned = {}
    for f, outputs in every.items():
        if args.skip_existing and all(o.exists() for o in outputs):
            continue
        for o in outputs:
            check_output(o, overwrite=args.overwrite or args.skip_existing, what="output")
        planned[f] = outputs
    return planned


@dataclass(frozen=True)
class InputPlan:
    """One input, opened lazily and read: what to segment, and how."""

    image: Any
    info: ImageInfo
    reading: AxesReading
    channel: int | None
    plan: PlanePlan
    links: StackLinks

    def describe(self, name: str) -> str | None:
        """A line saying how the input is read, when there is more to it than one gray or colour image."""
        from napari_usema.io.image_info import describe

        parts = list(self.info.notes)
        if self.plan.axes not in ("YX", "YXC") or self.info.channel_names or self.reading.note:
            parts.append(f"{name}: {describe(self.info)}; read as {self.reading.axes} ({self.reading.source})")
        if self.channel is not None and self.channel < len(self.info.channel_names):
            parts.append(f"segmenting channel {self.channel} ({self.info.channel_names[self.channel]})")
        if self.reading.note:
            parts.append(self.reading.note)
        return "; ".join(parts) or None


def check_input(loaded: LoadedModel, path: Path, tiling: TilingConfig, args: argparse.Namespace) -> InputPlan:
    """Everything about ``path`` that can be checked without running the network (the file is read lazily)."""
    from napari_usema.inference.axes import read_axes
    from napari_usema.inference.channels import ChannelError, resolve_channel
    from napari_usema.inference.object_size import size_factor
    from napari_usema.inference.planning import LARGE_PLANE_PIXELS, plan_links, plan_planes
    from napari_usema.inference.rescale import scaled_shape
    from napari_usema.inference.tiling import effective_tile
    from napari_usema.io.image_info import open_image
    from napari_usema.postprocess.linking import StackLinks

    image, info = open_image(path, level=args.level)
    channel = resolve_channel(args.channel, info.channel_names)
    meta = loaded.metadata
    shape = tuple(image.shape)
    reading = read_axes(
        shape, meta.input_channels, given=args.axes, file_axes=info.axes, file_colour=info.colour, channel=channel
    )
    if channel not in (None, 0) and "C" not in reading.standard(shape):  # 0 is a gray image's one channel
        raise ChannelError(f"--channel {args.channel}: the image, read as {reading.axes}, has no channel axis")
    known = args.diameter if args.diameter != "auto" else None  # auto: the size is known after the first pass
    try:
        plan = plan_planes(meta, shape, tiling, channel, size_factor(meta, known), reading)
    except ChannelError as err:
        if not info.channel_names:
            raise
        listed = ", ".join(f"{i}: {name}" for i, name in enumerate(info.channel_names))
        raise ChannelError(f"{err}; its channels are {listed}") from None
    if args.diameter == "auto":
        size_factor(meta, 1.0)  # a model without a recorded diameter cannot estimate one
    if args.track_iou is not None and not args.track:
        raise ValueError("--track-iou sets tracking's threshold: add --track")
    links = StackLinks(args.stitch, (args.track_iou or 0.25) if args.track else None)
    reading, links = plan_links(plan, links, meta.task, streamed=False)
    for scale in plan.scales:
        effective_tile(scaled_shape(plan.shape, scale), tiling)
    if plan.large and args.probabilities:
        raise ValueError(f"--probabilities is not available for planes over {LARGE_PLANE_PIXELS:,} pixels")
    if plan.large and args.measurements:  # the labels of such planes stay on disk, written in bands
        raise ValueError(f"--measurements is not available for planes over {LARGE_PLANE_PIXELS:,} pixels")
    if plan.large and plan.stacked:
        raise ValueError(f"stacks of planes over {LARGE_PLANE_PIXELS:,} pixels are not supported: segment one plane at a time")
    return InputPlan(image, info, reading, channel, plan, links)
