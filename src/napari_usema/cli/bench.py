"""``usema bench``: benchmarks that print one JSON line per figure."""

from __future__ import annotations

import argparse
import json


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure speed and memory; prints one JSON line per figure")
    which = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    a = which.add_parser("attention", help="SEMA vs full softmax attention, 32² to 512² tokens")
    a.add_argument("--device", default="auto")
    a.add_argument("--sides", type=int, nargs="+", default=[32, 64, 128, 256, 512], help="token grid sides")
    a.add_argument("--budget", type=float, default=10.0, help="seconds after which full attention stops")
    a.set_defaults(handler=_attention)

    t = which.add_parser("tiling", help="tiler overhead, MONAI comparison, megapixels per second")
    t.add_argument(
        "--figures", nargs="+", default=["overhead", "monai", "throughput"], choices=["overhead", "monai", "throughput"]
    )
    t.add_argument("--device", default="auto")
    t.add_argument("--model", default="small", help="preset for overhead and MONAI figures (default small)")
    t.add_argument("--size", type=_side, default=1024, help="image side for overhead and MONAI figures (default 1024)")
    t.add_argument("--tile", type=int, default=256)
    t.add_argument("--overlap", type=float, default=0.25)
    t.add_argument("--batch", type=int, default=4)
    t.add_argument("--throughput-model", default="paper")
    t.add_argument("--throughput-size", type=_side, default=4096, help="image side for megapixels/s (default 4096)")
    t.set_defaults(handler=_tiling)

    pp = which.add_parser("postprocess", help="watershed time from cached probabilities (napari's live sliders)")
    pp.add_argument("--size", type=_side, default=2048, help="image side (default 2048)")
    pp.set_defaults(handler=_postprocess)


def _attention(args: argparse.Namespace) -> int:
    from napari_usema.benchmarks.attention import main

    main(args.device, args.sides, args.budget)
    return 0


def _tiling(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise ValueError(f"--batch must be an integer >= 1 for this benchmark (equal batches), got {args.batch}")
    from napari_usema.benchmarks.tiling import main
    from napari_usema.inference.tiling import TilingConfig

    tiling = TilingConfig(tile=args.tile, overlap=args.overlap, batch=args.batch, device=args.device, fit=False)  # equal tiles
    main(args.figures, args.model, args.size, tiling, args.throughput_model, args.throughput_size)
    return 0


def _postprocess(args: argparse.Namespace) -> int:
    from napari_usema.benchmarks.tiling import postprocess_time

    print(json.dumps(postprocess_time(args.size)), flush=True)
    return 0


def _side(text: str) -> int:
    value = int(text)
    if value < 16:
        raise argparse.ArgumentTypeError(f"an image side is a number of pixels >= 16, got {text}")
    return value
