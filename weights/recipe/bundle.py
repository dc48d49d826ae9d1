"""Turn a training checkpoint into a bundled weight file: fp16 storage, provenance kept.

Usage: python weights/recipe/bundle.py RUN/nuclei.safetensors weights/nuclei.safetensors [KEY=VALUE ...]

Each KEY=VALUE is added to (or replaces) the provenance, e.g. ``data=../shared/data/microscopy`` when
the run read a copy of the data elsewhere, or ``init=...`` for a run that started from another.
"""

from __future__ import annotations

import sys
from pathlib import Path

from napari_usema.io.checkpoint import load_checkpoint, save_checkpoint


def main(source: str, target: str, *notes: str) -> None:
    loaded = load_checkpoint(source)
    extra = dict(note.split("=", 1) for note in notes)
    meta = loaded.metadata.with_provenance(bundled_from=Path(source).name, storage="float16", **extra)
    path = save_checkpoint(target, loaded.model, meta, half=True)
    print(
        f"{path}: {path.stat().st_size / 2**20:.1f} MiB, steps {meta.provenance.get('steps')}, "
        f"validation {meta.provenance.get('val_metric')}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
