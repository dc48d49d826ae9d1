"""``usema bench``: benchmarks that print one JSON line per figure."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure speed and memory; prints one JSON line per figure")
    which = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    a = which.add_parser("attention", help="SEMA vs full softmax attention, 32² to 512² tokens")
    a.add_argument("--device", default="auto")
    a.add_argument("--sides", type=int, nargs="+", default=[32, 64, 128, 256, 512], help="token grid sides")
    a.add_argument("--budget", type=float, default=10.0, help="seconds after which full attention stops")
    a.set_defaults(handler=_attention)


def _attention(args: argparse.Namespace) -> int:
    from napari_usema.benchmarks.attention import main

    main(args.device, args.sides, args.budget)
    return 0
