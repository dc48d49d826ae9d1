"""``usema export``: a checkpoint as an ONNX graph that other tools and runtimes read."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from napari_usema.io.bundled import resolve_model


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a checkpoint as an ONNX graph (dynamic batch, height and width)")
    p.add_argument("model", help="a .safetensors checkpoint or a bundled model name (nuclei, polyps)")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="the format to write (default onnx)")
    p.add_argument("--out", required=True, type=Path, help="the file to write, e.g. nuclei.onnx")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--no-check", action="store_true", help="skip running the graph in ONNX Runtime beside PyTorch")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from napari_usema.interop.onnx_export import TOLERANCE, check_onnx, export_onnx, size_step
    from napari_usema.io.checkpoint import load_checkpoint
    from napari_usema.io.outputs import atomic_write, check_output

    path = resolve_model(args.model)
    check_output(args.out, overwrite=args.overwrite, what="ONNX graph")  # before the (long) export
    loaded = load_checkpoint(path)
    start = time.perf_counter()
    with atomic_write(args.out, overwrite=args.overwrite) as tmp:  # kept only once it is checked
        export_onnx(loaded, tmp, overwrite=True)
        step, meta = size_step(loaded.metadata.config), loaded.metadata
        print(
            f"exported in {time.perf_counter() - start:.0f} s: input 'image' (B, {meta.input_channels}, H, W), normalised "
            f"float32, H and W multiples of {step}; output 'logits' (B, {len(meta.class_names)}, H, W)"
        )
        if not args.no_check:
            worst = check_onnx(loaded, tmp)
            if worst > TOLERANCE:
                raise ValueError(f"the ONNX graph differs from PyTorch by {worst:.1e} (> {TOLERANCE:g}); nothing was written")
            print(f"ONNX Runtime agrees with PyTorch to {worst:.1e} (tolerance {TOLERANCE:g})")
    print(f"wrote {args.out}")
    return 0
