"""``usema export``: a checkpoint as a BioImage.IO package, an ONNX graph or a TorchScript file, for other tools."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from napari_usema.io.bundled import resolve_model


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a checkpoint as a BioImage.IO package (ilastik, deepImageJ, QuPath, Fiji), an ONNX graph or TorchScript",
    )
    p.add_argument("model", help="a .safetensors checkpoint or a bundled model name (nuclei, polyps)")
    p.add_argument(
        "--format", choices=list(SUFFIXES), required=True,
        help="bioimageio: a .zip package; onnx: a graph of free height and width; torchscript: a network for tiles of --tile",
    )  # fmt: skip
    p.add_argument("--out", required=True, type=Path, help="the file to write, e.g. nuclei.zip, nuclei.onnx or nuclei.pt")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument(
        "--sample", type=Path,
        help="bioimageio: the image whose 256x256 crop is the package's test input (default: the bundled sample of the "
        "model's kind of image)",
    )  # fmt: skip
    p.add_argument("--no-onnx", action="store_true", help="bioimageio: PyTorch weights only (no ONNX entry; faster)")
    p.add_argument(
        "--tile", type=int, default=256,
        help="torchscript: the tile side in pixels the file takes (a trace keeps the size it was made at; default 256)",
    )  # fmt: skip
    p.add_argument(
        "--no-check", action="store_true", help="onnx, torchscript: skip running the file beside PyTorch before keeping it"
    )
    p.set_defaults(handler=run)


SUFFIXES = {"bioimageio": ".zip", "onnx": ".onnx", "torchscript": ".pt"}


def run(args: argparse.Namespace) -> int:
    from napari_usema.io.checkpoint import load_checkpoint
    from napari_usema.io.outputs import check_output

    path = resolve_model(args.model)
    suffix = SUFFIXES[args.format]
    inputs = [path, *([args.sample] if args.sample else [])]  # never written over, even with --overwrite
    check_output(args.out, overwrite=args.overwrite, suffix=suffix, what=f"{args.format} export", inputs=inputs)
    _check_extras(args.format)  # before the model loads and the long work starts
    loaded = load_checkpoint(path)
    start = time.perf_counter()
    if args.format == "bioimageio":
        _bioimageio(loaded, args, path)
    elif args.format == "onnx":
        _onnx(loaded, args)
    else:
        _torchscript(loaded, args)
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f} s")
    return 0


def _check_extras(fmt: str) -> None:
    """A one-line error naming the extra to install, when the exporters' libraries are missing."""
    from napari_usema.interop.onnx_export import missing_modules

    if fmt == "torchscript":
        return  # torch alone
    needed = ["onnx", "onnxscript", "onnxruntime"] + (["bioimageio.spec"] if fmt == "bioimageio" else [])
    if missing := missing_modules(*needed):
        extra = "bioimageio" if fmt == "bioimageio" else "export"
        raise ValueError(f'--format {fmt} needs {", ".join(missing)}: pip install "napari-usema[{extra}]"')


def _bioimageio(loaded, args: argparse.Namespace, path: Path) -> None:
    from napari_usema.interop.bioimageio_export import export_bioimageio
    from napari_usema.io.images import read_image

    sample = read_image(args.sample) if args.sample else _default_sample(loaded)
    name = Path(str(args.model)).stem if Path(str(args.model)).suffix else str(args.model)
    export_bioimageio(loaded, args.out, sample=sample, name=name, overwrite=args.overwrite, onnx=not args.no_onnx)
    print(f"test it with: bioimageio test {args.out}")


def _default_sample(loaded):
    """The bundled sample of a kind the model was trained on (colour frames for colour-only models)."""
    from napari_usema._sample_data import load_colonoscopy, load_nuclei
    from napari_usema.inference.image_kind import trained_kinds

    kinds = trained_kinds(loaded) or {}
    if kinds and not any(kind.startswith("grey") for kind in kinds):
        return load_colonoscopy()
    return load_nuclei()


def _onnx(loaded, args: argparse.Namespace) -> None:
    from napari_usema.interop.onnx_export import TOLERANCE, check_onnx, export_onnx, size_step
    from napari_usema.io.outputs import atomic_write

    meta = loaded.metadata
    with atomic_write(args.out, overwrite=args.overwrite) as tmp:  # kept only once it is checked
        export_onnx(loaded, tmp, overwrite=True)
        print(
            f"input 'image' (B, {meta.input_channels}, H, W), normalised float32, H and W multiples of "
            f"{size_step(meta.config)}; output 'logits' (B, {len(meta.class_names)}, H, W)"
        )
        if not args.no_check:
            worst = check_onnx(loaded, tmp)
            if worst > TOLERANCE:
                raise ValueError(f"the ONNX graph differs from PyTorch by {worst:.1e} (> {TOLERANCE:g}); nothing was written")
            print(f"ONNX Runtime agrees with PyTorch to {worst:.1e} (tolerance {TOLERANCE:g})")


def _torchscript(loaded, args: argparse.Namespace) -> None:
    from napari_usema.interop.torchscript_export import TOLERANCE, check_torchscript, export_torchscript
    from napari_usema.io.outputs import atomic_write

    meta = loaded.metadata
    with atomic_write(args.out, overwrite=args.overwrite) as tmp:  # kept only once it is checked
        export_torchscript(loaded, tmp, tile=args.tile, overwrite=True)
        print(
            f"input (B, {meta.input_channels}, {args.tile}, {args.tile}), normalised float32 (other sizes are refused); "
            f"output the logits (B, {len(meta.class_names)}, {args.tile}, {args.tile})"
        )
        if not args.no_check:
            _, worst = check_torchscript(loaded, tmp)
            if worst > TOLERANCE:
                raise ValueError(f"TorchScript differs from PyTorch by {worst:.1e} (> {TOLERANCE:g}); nothing was written")
            print(f"TorchScript agrees with PyTorch to {worst:.1e} (tolerance {TOLERANCE:g}) and refuses other sizes")
