"""``usema predict``: segment files or folders into ``OUT/NAME.tif`` (works under torchrun)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from napari_usema.cli.progress import ProgressBar
from napari_usema.inference.tiling import TilingConfig
from napari_usema.postprocess.config import WatershedConfig


def add_parsers(sub: argparse._SubParsersAction) -> None:
    t, ws = TilingConfig(), WatershedConfig()
    p = sub.add_parser("predict", help="segment images into OUT/NAME.tif (instance labels or class ids)")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files or folders of images")
    p.add_argument("--model", required=True, help="checkpoint (.safetensors) or bundled name: nuclei, polyps")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--device", default=t.device, help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    p.add_argument("--tile", type=int, help=f"tile side in pixels (default {t.tile}, shrunk for smaller images)")
    p.add_argument("--overlap", type=float, default=t.overlap, help=f"tile overlap fraction (default {t.overlap})")
    p.add_argument("--batch", type=int, default=t.batch, help=f"tiles per forward pass (default {t.batch})")
    p.add_argument("--tta", action="store_true", help="average over mirrored copies (4x slower)")
    p.add_argument(
        "--scales",
        type=parse_scales,
        metavar="F,F,...",
        help="multi-scale TTA: run at these factors of the model's scale and average, e.g. 0.8,1,1.25 (about 3x "
        "slower); 1: one pass (default: the model's own choice, test_scales in usema info MODEL)",
    )
    p.add_argument("--channel", type=int, help="channel of a multichannel image to segment")
    p.add_argument("--probabilities", action="store_true", help="also write OUT/NAME_probabilities.tif (K, H, W) float32")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    g = p.add_argument_group(
        "instance post-processing", "defaults: the model's tuned settings (usema info MODEL), else the values shown"
    )
    g.add_argument("--mode", choices=["watershed", "connected-components"], help=f"(default {ws.mode})")
    g.add_argument("--interior-threshold", type=float, help=f"(default {ws.interior_threshold})")
    g.add_argument("--foreground-threshold", type=float, help=f"(default {ws.foreground_threshold})")
    g.add_argument("--min-size", type=int, help=f"smallest seed/object in pixels (default {ws.min_size})")
    g.add_argument("--no-fill-holes", action="store_true")
    p.set_defaults(handler=run)


def parse_scales(text: str) -> tuple[float, ...]:
    """``"0.8,1,1.25"`` -> ``(0.8, 1.0, 1.25)``; argparse reports the error as a usage error."""
    from napari_usema.io.metadata import check_scales

    try:
        return check_scales([float(part) for part in text.split(",")])
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated factors in (0, 4] such as 0.8,1,1.25 ({err})") from None


def collect_inputs(inputs: list[Path]) -> list[Path]:
    """Files as given, folders expanded to their images; missing paths are an error."""
    from napari_usema.io.images import list_images

    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            files.extend(list_images(item))
        elif item.exists():
            files.append(item)
        else:
            raise FileNotFoundError(f"input {item} does not exist")
    stems = [f.stem for f in files]
    clash = sorted({s for s in stems if stems.count(s) > 1})
    if clash:
        raise ValueError(f"two inputs would both be written as {clash[0]}.tif; segment them into different --out folders")
    if not files:
        raise FileNotFoundError("no image files found in the inputs")
    return files


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
    outputs = {f: args.out / f"{f.stem}.tif" for f in files}
    existing = [str(o) for o in outputs.values() if o.exists()]
    if existing and not args.overwrite:
        raise FileExistsError(f"{len(existing)} outputs exist, e.g. {existing[0]}; pass --overwrite to replace them")
    world = init_world(args.device)
    device = rank_device(world, args.device)
    tiling = TilingConfig(
        tile=args.tile or TilingConfig.tile,
        overlap=args.overlap,
        batch=args.batch,
        tta=args.tta,
        scales=args.scales,
        device=str(device),
        clamp_tile=args.tile is None,
    )
    loaded = load_checkpoint(resolve_model(args.model))
    watershed = chosen_watershed(loaded.metadata.watershed(), args)
    mine = shard(files, world)
    bar = ProgressBar(len(mine), f"predict (rank {world.rank})" if world.distributed else "predict", unit="batch")
    try:
        for i, path in enumerate(mine):
            bar.reset(1, f"{path.name}")
            _predict_one(loaded, path, outputs[path], tiling, watershed, args, bar)
            bar.note(f"wrote {outputs[path]} ({i + 1}/{len(mine)})")
    finally:
        bar.close()
        shutdown(world)
    return 0


def _predict_one(
    loaded, path: Path, out: Path, tiling: TilingConfig, watershed: WatershedConfig, args: argparse.Namespace, bar: ProgressBar
) -> None:
    import numpy as np
    import tifffile

    from napari_usema.inference.pipeline import LARGE_PLANE_PIXELS, disk_array, drive, infer_layout, segment
    from napari_usema.io.images import read_image, write_labels, write_labels_banded

    image = read_image(path, lazy=True)
    layout = infer_layout(tuple(image.shape), loaded.metadata.input_channels, args.channel)
    h, w = image.shape[1:3] if layout.stacked else image.shape[:2]
    large = h * w > LARGE_PLANE_PIXELS and not layout.stacked
    if large and args.probabilities:
        raise ValueError(f"{path.name}: --probabilities is not available for planes over {LARGE_PLANE_PIXELS:,} pixels")

    def show(p) -> None:
        if p.done == 1:
            bar.reset(p.total, path.name + (f" plane {p.plane + 1}/{p.planes}" if p.planes > 1 else ""))
        bar.update(p.done)
        if p.message:
            bar.note(f"{path.name}: {p.message}")

    with tempfile.TemporaryDirectory(prefix="usema-") as tmp:
        labels_out = disk_array(Path(tmp) / "labels.zarr", (h, w), np.uint32) if large else None
        result = drive(
            segment(
                loaded,
                image,
                tiling,
                watershed,
                channel=args.channel,
                keep_probabilities=args.probabilities,
                labels_out=labels_out,
            ),
            show,
        )
        if large:
            count = int(max(np.asarray(result.labels[y : y + 1024]).max() for y in range(0, h, 1024)))
            dtype = np.uint8 if loaded.metadata.task == "semantic" else (np.uint16 if count <= 65535 else np.uint32)
            write_labels_banded(out, result.labels, dtype, overwrite=args.overwrite)
        else:
            write_labels(out, result.labels, overwrite=args.overwrite)
    if args.probabilities:
        prob_path = out.with_name(f"{out.stem}_probabilities.tif")
        if prob_path.exists() and not args.overwrite:
            raise FileExistsError(f"{prob_path} exists; pass --overwrite to replace it")
        tifffile.imwrite(prob_path, result.probabilities, compression="zlib", photometric="minisblack")
