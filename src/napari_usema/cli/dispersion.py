"""``usema dispersion``: attention maps at chosen points and the dispersion experiment, as files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _side(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"a crop side is a number of pixels >= 2, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def _point(text: str) -> tuple[int, int]:
    try:
        y, x = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a point is y,x in pixels, got {text!r}") from None
    return y, x


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dispersion", help="attention maps and dispersion statistics (full attention vs SEMA) as files")
    p.add_argument("--model", required=True, help="checkpoint or bundled name")
    p.add_argument("--image", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--points", nargs="*", type=_point, default=[], metavar="Y,X", help="query pixels for attention maps")
    p.add_argument(
        "--crops", nargs="+", type=_side, default=[16, 32, 64, 128, 256, 512], help="crop sides in pixels (N at stage 0 = side²)"
    )
    p.add_argument("--budget", type=float, default=60.0, help="seconds after which full attention stops growing")
    p.add_argument("--eps", type=_non_negative, default=0.5, help="'near uniform' means |N x score - 1| <= eps")
    p.add_argument("--channel", type=int)
    p.add_argument("--device", default="cpu")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from napari_usema.analysis.attention_maps import at_model_scale, query_attention
    from napari_usema.analysis.dispersion import experiment
    from napari_usema.analysis.dispersion_report import head_mean, write_report
    from napari_usema.inference.devices import select_device
    from napari_usema.inference.predictor import ImageSource
    from napari_usema.io.bundled import resolve_model
    from napari_usema.io.checkpoint import load_checkpoint
    from napari_usema.io.images import read_image

    loaded = load_checkpoint(resolve_model(args.model), device=select_device(args.device))
    image = read_image(args.image)
    source = ImageSource.prepare(image, loaded.metadata.input_channels, loaded.metadata.normalization, args.channel)
    h, w = source.shape
    # Measured as the network sees the image: a model with an input scale works on a resized copy.
    chw, queries = at_model_scale(source.read(0, h, 0, w), loaded.metadata.input_scale, list(args.points))
    points = {p: query_attention(loaded.model, chw, q) for p, q in zip(args.points, queries, strict=True)}
    steps = []
    for step in experiment(loaded.model, chw, sorted(args.crops), budget_s=args.budget, eps=args.eps):
        steps.append(step)
        full = f"{head_mean(step.full[0], 'normalized_entropy'):.3f} ({step.seconds_full:.1f} s)" if step.full else step.note
        sema = f"{head_mean(step.sema[0], 'normalized_entropy'):.3f}" if step.sema else step.note
        print(f"crop {step.crop}: stage-0 entropy/log N  SEMA {sema}  full {full}", file=sys.stderr)
    settings = {
        "model": str(loaded.path),
        "image": str(args.image),
        "crops": args.crops,
        "budget_s": args.budget,
        "eps": args.eps,
        "device": args.device,
    }
    for path in write_report(args.out, steps, settings, points, overwrite=args.overwrite):
        print(f"wrote {path}", file=sys.stderr)
    return 0
