"""Seconds for one default fine-tune (100 steps of the `small` preset) on the CPU; target <= 60 s.

Usage: python benchmarks/finetune_speed.py [MODEL] [DATA_DIR]   (defaults: nuclei, ../shared/data/microscopy)
Prints one JSON line. The output checkpoint goes to a temporary folder.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from napari_usema.io.bundled import resolve_model
from napari_usema.io.checkpoint import load_checkpoint
from napari_usema.io.images import read_image
from napari_usema.training.finetune import FINETUNE_DEFAULTS, CorrectedPair, finetune


def main(model: str = "nuclei", data: str = "../shared/data/microscopy") -> None:
    name = "dsb2018s1test_0f1f896d9ae5a047"  # an RGB tissue image of the training split
    image = read_image(Path(data) / "images" / f"{name}.tif")
    labels = read_image(Path(data) / "masks" / f"{name}.tif")
    parent = load_checkpoint(resolve_model(model))
    config = FINETUNE_DEFAULTS
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        records = list(finetune(parent, [CorrectedPair(image, labels, None, name)], Path(tmp) / "ft.safetensors", config))
        seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "bench": "finetune_speed",
                "model": model,
                "steps": config.steps,
                "patch": config.patch,
                "batch": config.batch,
                "frozen_encoder_stages": config.frozen_encoder_stages,
                "threads": torch.get_num_threads(),
                "seconds": round(seconds, 1),
                "first_loss": round(records[0].loss, 3),
                "last_loss": round(records[-1].loss, 3),
                "target_s": 60,
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
