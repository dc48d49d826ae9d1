"""``usema info``: what a checkpoint or preset holds, as JSON."""

from __future__ import annotations

import argparse
import json

from napari_usema.io.bundled import resolve_model


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print a checkpoint's or preset's config, metadata and parameter count as JSON")
    p.add_argument("model", nargs="?", help="a .safetensors checkpoint or a bundled model name (nuclei, polyps)")
    p.add_argument("--preset", help="describe a preset instead (paper, paper-w32, small, tiny)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from napari_usema.io.checkpoint import load_checkpoint
    from napari_usema.model import build_model, count_parameters, preset

    if (args.model is None) == (args.preset is None):
        raise ValueError("give either a checkpoint (usema info CKPT) or --preset NAME")
    if args.preset:
        config = preset(args.preset)
        report = {"preset": args.preset, "parameters": count_parameters(build_model(config)), "config": config.to_dict()}
    else:
        path = resolve_model(args.model)
        loaded = load_checkpoint(path)
        report = {
            "path": str(path),
            "parameters": count_parameters(loaded.model),
            "config": loaded.metadata.config.to_dict(),
            "metadata": loaded.metadata.to_dict(),
        }
    print(json.dumps(report, indent=2))
    return 0
