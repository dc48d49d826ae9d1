"""Provenance beside every result: which model and settings made it, so it can be made again.

``usema predict`` writes ``NAME.json`` beside ``NAME.tif``, and napari's save of a USEMA labels layer
(with this plugin's writer) writes the same record beside the file. A record holds:

- the model: its name, file, sha256 and task;
- the versions of napari-usema, PyTorch, NumPy and Python;
- every option in effect: tiling (tile, overlap, batch, mirror TTA, scales, device, precision, and the
  precision that ``auto`` chose on this machine: bf16 or fp32), the watershed,
  the object diameter, channel, axes, stack links, resolution level;
- the input: its file, sha256 and shape;
- the time taken, and when;
- ``command``: the ``usema predict`` line that makes the same labels again (on the same device; on CPU
  exactly, on a CPU of the same kind: ``--precision fp32`` where fp32 ran, ``auto`` where bf16 did).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import platform
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .outputs import atomic_write

RECORD_VERSION = 1


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """The sha256 of a file (or of every file of a folder, such as an OME-Zarr, in name order, each
    framed by its relative path and size). Cached by path, size and modification time: a folder run
    hashes its model once."""
    path = Path(path).resolve()
    stat = path.stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns, chunk)


@functools.lru_cache(maxsize=256)
def _sha256(path_text: str, size: int, mtime_ns: int, chunk: int) -> str:
    path = Path(path_text)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(f"{file.relative_to(path).as_posix()}\0{file.stat().st_size}\0".encode())
        with open(file, "rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import numpy
    import torch

    try:
        ours = version("napari-usema")
    except PackageNotFoundError:  # run from a source tree that was never installed
        ours = "unknown"
    return {
        "napari-usema": ours,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def predict_command(input_path: str | Path, model: str | Path, out: str | Path, options: dict[str, Any]) -> list[str]:
    """The ``usema predict`` argument list that applies ``options`` (as :func:`result_record` keeps
    them) to ``input_path``: every setting explicit, so later changes of a default do not change it."""
    tiling, watershed = options["tiling"], options["watershed"]
    argv = ["usema", "predict", str(input_path), "--model", str(model), "--out", str(out)]
    argv += ["--device", str(tiling["device"]), "--overlap", repr(tiling["overlap"]), "--batch", str(tiling["batch"])]
    if tiling.get("fit"):
        argv += ["--max-tile", str(tiling["tile"])]
    elif options.get("tile_given"):
        argv += ["--tile", str(tiling["tile"])]
    argv += ["--scales", ",".join(repr(float(s)) for s in tiling["scales"])]
    if tiling["tta"]:
        argv.append("--tta")
    if tiling.get("compile"):
        argv.append("--compile")
    if options.get("precision_used") is not None:  # records from before the option have none
        # What ran: fp32 anywhere it did (so the line gives fp32 on any machine), else auto (bf16 where native).
        argv += ["--precision", "fp32" if options["precision_used"] == "fp32" else str(tiling.get("precision", "auto"))]
    if options.get("channel") is not None:
        argv += ["--channel", str(options["channel"])]
    if options.get("axes"):
        argv += ["--axes", str(options["axes"])]
    if options.get("level"):
        argv += ["--level", str(options["level"])]
    if options.get("diameter") is not None:
        argv += ["--diameter", repr(float(options["diameter"]))]
    links = options.get("links") or {}
    if links.get("stitch") is not None:
        argv += ["--stitch", repr(links["stitch"])]
    if links.get("track") is not None:
        argv += ["--track", "--track-iou", repr(links["track"])]
    if options.get("task") == "instance":
        argv += ["--mode", watershed["mode"], "--interior-threshold", repr(watershed["interior_threshold"])]
        argv += ["--foreground-threshold", repr(watershed["foreground_threshold"]), "--min-size", str(watershed["min_size"])]
        if not watershed["fill_holes"]:
            argv.append("--no-fill-holes")
    return argv


def result_record(
    *,
    model_name: str,
    model_path: str | Path | None,
    task: str,
    options: dict[str, Any],
    input_path: str | Path | None,
    input_shape: Sequence[int],
    seconds: float,
    command: list[str] | None = None,
    input_sha256: str | None = None,
    hash_files: bool = True,
) -> dict[str, Any]:
    """One result's provenance (see the module's docstring). ``options`` holds ``tiling`` and
    ``watershed`` as dicts (:func:`jsonable` of the configs) and the run's other settings.
    ``hash_files``: hash the model and input files now (False leaves it to :func:`add_hashes`, e.g.
    when a record is only saved later, off napari's drawing thread)."""
    return {
        "record_version": RECORD_VERSION,
        "written_by": "napari-usema",
        "model": {
            "name": model_name,
            "file": str(Path(model_path).resolve()) if model_path else None,
            "sha256": file_sha256(model_path) if hash_files and model_path and Path(model_path).exists() else None,
            "task": task,
        },
        "versions": versions(),
        "options": options,
        "input": {
            "file": str(Path(input_path).resolve()) if input_path else None,
            "sha256": input_sha256
            or (file_sha256(input_path) if hash_files and input_path and Path(input_path).exists() else None),
            "shape": [int(n) for n in input_shape],
        },
        "seconds": round(float(seconds), 3),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": shlex.join(command) if command else None,
    }


def add_hashes(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with the sha256 of its model and input files filled in where they exist."""
    out = json.loads(json.dumps(record))
    for part in ("model", "input"):
        file = out[part].get("file")
        if file and not out[part].get("sha256") and Path(file).exists():
            out[part]["sha256"] = file_sha256(file)
    return out


def jsonable(config: Any) -> dict[str, Any]:
    """A settings dataclass (``TilingConfig``, ``WatershedConfig``) as JSON-ready values."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def write_record(path: str | Path, record: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write ``record`` as indented JSON, whole or not at all (never over a file unless ``overwrite``)."""
    with atomic_write(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    return Path(path)
