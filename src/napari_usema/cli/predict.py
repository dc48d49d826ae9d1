"""``usema predict``: segment files or folders into ``OUT/NAME.tif`` (works under torchrun)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from napari_usema._help import help_text
from napari_usema.cli.inputs import InputPlan, check_input, collect_inputs, plan_outputs
from napari_usema.cli.progress import ProgressBar
from napari_usema.inference.tiling import PRECISIONS, TilingConfig
from napari_usema.postprocess.config import WatershedConfig

if TYPE_CHECKING:
    from napari_usema.inference.pipeline import SegmentationResult
    from napari_usema.io.checkpoint import LoadedModel


def add_parsers(sub: argparse._SubParsersAction) -> None:
    t, ws = TilingConfig(), WatershedConfig()
    p = sub.add_parser("predict", help="segment images into OUT/NAME.tif (instance labels or class ids)")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files or folders of images")
    p.add_argument("--model", required=True, help=help_text("model"))
    p.add_argument("--out", required=True, type=output_folder, help="output folder")
    p.add_argument("--device", default=t.device, help=help_text("device", t.device))
    sizes = p.add_mutually_exclusive_group()
    sizes.add_argument("--tile", type=int, metavar="N", help=help_text("tile", t.tile))
    sizes.add_argument("--max-tile", type=int, metavar="N", help=help_text("max_tile"))
    p.add_argument("--overlap", type=float, default=t.overlap, help=help_text("overlap", t.overlap))
    p.add_argument("--batch", type=int, default=t.batch, help=help_text("batch", t.batch))
    p.add_argument("--tta", action="store_true", help=help_text("tta"))
    p.add_argument("--compile", action="store_true", help=help_text("compile"))
    p.add_argument("--precision", choices=PRECISIONS, default=t.precision, help=help_text("precision", t.precision))
    p.add_argument(
        "--scales",
        type=parse_scales,
        metavar="F,F,...",
        help=help_text("scales") + ", e.g. 0.8,1,1.25; 1: one pass (default: the model's own choice, test_scales in "
        "usema info MODEL)",
    )
    p.add_argument(
        "--channel",
        type=parse_channel,
        metavar="INDEX|NAME",
        help=help_text("channel"),
    )
    p.add_argument(
        "--axes",
        type=parse_axes,
        help=help_text("axes"),
    )
    p.add_argument("--level", type=int, default=0, help="OME-Zarr: the resolution level to segment (default 0, full)")
    s = p.add_argument_group("stacks", "one identity per object across Z planes or time points (instance models)")
    s.add_argument(
        "--stitch",
        type=parse_iou,
        metavar="IOU",
        help=help_text("stitch") + ", e.g. 0.25",
    )
    s.add_argument("--track", action="store_true", help=help_text("track"))
    s.add_argument("--track-iou", type=parse_iou, metavar="IOU", help=help_text("link_iou", 0.25))
    p.add_argument(
        "--diameter",
        type=parse_diameter,
        metavar="PIXELS|auto",
        help=help_text("diameter") + "; auto estimates it from a first pass and prints it (the model's size: "
        "object_diameter in usema info MODEL)",
    )
    p.add_argument("--probabilities", action="store_true", help=help_text("probabilities") + ": OUT/NAME_probabilities.tif")
    p.add_argument(
        "--measurements",
        action="store_true",
        help="also write OUT/NAME_measurements.csv: one row per object (label, area, centroid, bounding box, eccentricity, "
        "mean intensity of each channel, and µm where the file records its pixel size; t/z columns for stacks); for a "
        "semantic model, each class's pixels and share of the image",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (inputs are never replaced)")
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave the inputs whose outputs exist already, e.g. to finish an interrupted folder",
    )
    g = p.add_argument_group(
        "instance post-processing", "defaults: the model's tuned settings (usema info MODEL), else the values shown"
    )
    g.add_argument("--mode", choices=["watershed", "connected-components"], help=help_text("mode", ws.mode))
    g.add_argument("--interior-threshold", type=float, help=help_text("interior_threshold", ws.interior_threshold))
    g.add_argument("--foreground-threshold", type=float, help=help_text("foreground_threshold", ws.foreground_threshold))
    g.add_argument(
        "--min-size",
        type=int,
        help=help_text("min_size", ws.min_size) + "; with --diameter, scaled as the image is",
    )
    g.add_argument("--no-fill-holes", action="store_true", help="do not " + help_text("fill_holes"))
    p.set_defaults(handler=run)


def parse_scales(text: str) -> tuple[float, ...]:
    """``"0.8,1,1.25"`` -> ``(0.8, 1.0, 1.25)``; argparse reports the error as a usage error."""
    from napari_usema.io.metadata import check_scales

    try:
        return check_scales([float(part) for part in text.split(",")])
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated factors in (0, 4] such as 0.8,1,1.25 ({err})") from None


def parse_channel(text: str) -> int | str:
    """A channel index (``2``) or name (``DAPI``)."""
    text = text.strip()
    if not text:
        raise argparse.ArgumentTypeError("an empty --channel; give an index (0, 1, ...) or a channel name")
    if text.lstrip("-").isdigit():
        if int(text) < 0:
            raise argparse.ArgumentTypeError(f"channel {text}: indices start at 0")
        return int(text)
    return text


def parse_axes(text: str) -> str:
    """Axis letters (checked against the image's shape later, per file)."""
    from napari_usema.inference.axes import LETTERS

    letters = text.strip().upper()
    if not letters or set(letters) - set(LETTERS + "S"):
        raise argparse.ArgumentTypeError(f"{text!r}: use the letters T (time), Z, C (channels), Y and X, e.g. CYX")
    return letters


def parse_iou(text: str) -> float:
    """An IoU threshold in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected an IoU threshold in (0, 1], such as 0.25; got {text!r}")
    return value


def output_folder(text: str) -> Path:
    """A non-empty folder name (an empty one would write into the current folder unasked)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty --out; give the folder for the labels")
    return Path(text)


def parse_diameter(text: str) -> float | str:
    """``"auto"`` or a positive number of pixels; argparse reports the error as a usage error."""
    from napari_usema.inference.object_size import check_diameter

    try:
        return check_diameter(text if text == "auto" else float(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a number of pixels > 0 or 'auto' ({err})") from None


def chosen_watershed(model_default: WatershedConfig, args: argparse.Namespace) -> WatershedConfig:
    """The model's post-process with the options given on the command line applied over it."""
    given = {
        "mode": args.mode,
        "interior_threshold": args.interior_threshold,
        "foreground_threshold": args.foreground_threshold,
        "min_size": args.min_size,
        "fill_holes": False if args.no_fill_holes else None,
    }
    return model_default.replace(**{k: v for k, v in given.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    from napari_usema.io.bundled import resolve_model
    from napari_usema.io.checkpoint import load_checkpoint
    from napari_usema.training.distributed import init_world, rank_device, shard, shutdown

    files = collect_inputs(args.inputs)
    planned = plan_outputs(files, args)
    skipped = len(files) - len(planned)
    world = init_world(args.device)
    device = rank_device(world, args.device)
    tiling = TilingConfig(
        tile=next((t for t in (args.tile, args.max_tile) if t is not None), TilingConfig.tile),  # 0 is refused, not 256
        fit=args.max_tile is not None,
        compile=args.compile,
        precision=args.precision,
        overlap=args.overlap,
        batch=args.batch,
        tta=args.tta,
        scales=args.scales,
        device=str(device),
        clamp_tile=args.tile is None,
    )
    loaded = load_checkpoint(resolve_model(args.model))
    watershed = chosen_watershed(loaded.metadata.watershed(), args)
    instance_options = [args.mode, args.interior_threshold, args.foreground_threshold, args.min_size]
    if loaded.metadata.task == "semantic" and (any(o is not None for o in instance_options) or args.no_fill_holes):
        print("usema predict: the watershed options are for instance models; this semantic model ignores them", file=sys.stderr)
    failed: list[str] = []
    mine: dict[Path, InputPlan] = {}
    for path in shard(list(planned), world):  # this rank's inputs, checked before any work
        try:
            mine[path] = check_input(loaded, path, tiling, args)
        except (ValueError, OSError) as err:
            failed.append(f"{path}: {err}")
    if not mine and failed:
        shutdown(world)
        raise ValueError(failed[0] if len(failed) == 1 else f"none of the {len(failed)} inputs can be segmented: {failed[0]}")
    rejected = len(failed)
    bar = ProgressBar(len(mine), f"predict (rank {world.rank})" if world.distributed else "predict", unit="batch")
    try:
        for line in failed:
            bar.note(f"cannot segment {line}")
        if skipped:
            bar.note(f"skipped {skipped} input(s) whose outputs exist (--skip-existing)")
        for i, (path, job) in enumerate(mine.items()):
            bar.reset(1, f"{path.name}")
            if (line := job.describe(path.name)) is not None:
                bar.note(line)
            try:
                found = _predict_one(loaded, job, path, planned[path], tiling, watershed, args, bar)
            except (ValueError, OSError) as err:  # one bad file must not stop a folder: report it, go on
                failed.append(f"{path}: {err}")
                bar.note(f"failed {path.name} ({i + 1}/{len(mine)}): {err}")
                continue
            bar.note(f"wrote {planned[path][0]} ({i + 1}/{len(mine)}): {found}")
    finally:
        bar.close()
        shutdown(world)
    if failed:
        print(f"usema predict: {len(failed)} of {len(mine) + rejected} input(s) failed:", file=sys.stderr)
        for line in failed:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def _predict_one(
    loaded: LoadedModel,
    job: InputPlan,
    path: Path,
    outputs: list[Path],
    tiling: TilingConfig,
    watershed: WatershedConfig,
    args: argparse.Namespace,
    bar: ProgressBar,
) -> str:
    """Segment one input and write its outputs; returns what was found, for the log line."""
    import numpy as np

    from napari_usema.analysis.measurements import write_csv
    from napari_usema.inference.pipeline import disk_array, drive, segment
    from napari_usema.io.image_info import tiff_options
    from napari_usema.io.images import write_labels_banded, write_tiff
    from napari_usema.io.provenance import write_record

    out, replace = outputs[0], args.overwrite or args.skip_existing
    name = path.name
    h, w = job.plan.shape
    started = time.perf_counter()

    def show(p) -> None:
        if p.done == 1:
            bar.reset(p.total, name + (f" plane {p.plane + 1}/{p.planes}" if p.planes > 1 else ""))
        bar.update(p.done)
        if p.message:
            bar.note(f"{name}: {p.message}")

    with tempfile.TemporaryDirectory(prefix="usema-") as tmp:
        labels_out = disk_array(Path(tmp) / "labels.zarr", (h, w), np.uint32) if job.plan.large else None
        result = drive(
            segment(
                loaded,
                job.image,
                tiling,
                watershed,
                channel=job.channel,
                keep_probabilities=args.probabilities,
                labels_out=labels_out,
                diameter=args.diameter,
                axes=job.reading,
                links=job.links,
            ),
            show,
        )
        # Measured before anything is written: a refusal leaves no labels without their table.
        table = measurements(result, job) if args.measurements else None  # check_input refused large planes
        options = tiff_options(job.info, result.axes)
        if job.plan.large:
            count = int(max(np.asarray(result.labels[y : y + 1024]).max() for y in range(0, h, 1024)))
            dtype = np.uint8 if loaded.metadata.task == "semantic" else (np.uint16 if count <= 65535 else np.uint32)
            write_labels_banded(out, result.labels, dtype, overwrite=replace, **options)
            found = f"{count:,} objects" if loaded.metadata.task == "instance" else "class ids"
        else:
            write_tiff(out, result.labels, overwrite=replace, **options)
            found = found_summary(np.asarray(result.labels), loaded.metadata.task, loaded.metadata.class_names)
    if args.probabilities:
        probability_axes = result.axes[:-2] + "CYX"
        options = tiff_options(job.info, probability_axes)
        write_tiff(outputs[1], result.probabilities, overwrite=replace, **options)
    if table is not None:
        write_csv(table, outputs[-2], overwrite=replace)
        found += f"; measurements in {outputs[-2].name}"
    record = provenance(loaded, job, path, result, tiling, watershed, args, time.perf_counter() - started)
    write_record(outputs[-1], record, overwrite=replace)  # last: a record vouches for files that exist
    return found


def provenance(
    loaded: LoadedModel,
    job: InputPlan,
    path: Path,
    result: SegmentationResult,
    tiling: TilingConfig,
    watershed: WatershedConfig,
    args: argparse.Namespace,
    seconds: float,
) -> dict:
    """The record written beside the labels: the model, every option in effect, the input, the time,
    and the ``usema predict`` line that makes the same labels again."""
    import dataclasses

    from napari_usema.inference.devices import precision_used
    from napari_usema.io.provenance import jsonable, predict_command, result_record

    meta = loaded.metadata
    # The diameter in effect (auto resolved to what it measured), so the line re-runs without estimating.
    diameter = meta.object_diameter / result.size if meta.object_diameter and result.size != 1 else None
    used = dataclasses.replace(tiling, scales=meta.test_scales if tiling.scales is None else tiling.scales)
    options = {
        "task": meta.task,
        "tiling": jsonable(used),
        "tile_given": args.tile is not None,
        "precision_used": precision_used(tiling.device, tiling.precision),  # what auto chose on this machine
        "watershed": jsonable(watershed),
        "diameter": diameter,
        "channel": job.channel,
        "axes": job.reading.axes,
        "level": args.level,
        "links": {"stitch": job.links.stitch, "track": job.links.track},
    }
    command = predict_command(path.resolve(), Path(loaded.path).resolve() if loaded.path else args.model, args.out, options)
    return result_record(
        model_name=str(args.model), model_path=loaded.path, task=meta.task, options=options,
        input_path=path, input_shape=tuple(job.image.shape), seconds=seconds, command=command,
    )  # fmt: skip


def measurements(result: SegmentationResult, job: InputPlan) -> dict:
    """The table of ``--measurements``: per object, with the mean intensity of every channel of the
    input (not only the segmented one), or for a class map per class; µm where the file says."""
    import numpy as np

    from napari_usema.analysis.measurements import measure_classes, measure_objects

    labels, pixel_size = np.asarray(result.labels), job.info.pixel_size
    if result.task == "semantic":
        return measure_classes(labels, result.class_names, axes=result.axes, pixel_size=pixel_size)
    image = job.reading.standardise(job.image)  # [T][Z] YX [C], as the labels are
    channels = image.shape[-1] if image.ndim > labels.ndim else 1
    names = job.info.channel_names if len(job.info.channel_names) == channels else ()
    return measure_objects(labels, image, axes=result.axes, channel_names=names, pixel_size=pixel_size)


def found_summary(labels, task: str, class_names: tuple[str, ...]) -> str:
    """``"123 objects"`` (distinct ids over a stack), or each foreground class's share: ``"polyp 14.2%"``."""
    import numpy as np

    if task == "instance":
        return f"{len(np.unique(labels[labels > 0])):,} objects"
    counts = np.bincount(labels.ravel(), minlength=len(class_names))
    shares = [f"{name} {100 * counts[i] / labels.size:.1f}%" for i, name in enumerate(class_names) if i > 0]
    return ", ".join(shares) or "no foreground class"
