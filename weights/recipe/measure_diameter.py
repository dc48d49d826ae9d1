"""Store the median object diameter of a model's training masks in its checkpoint (format 3).

The migration for checkpoints written before format 3: they read with an unknown diameter, and this
measures it on the split the model was trained on (never the validation split).

Usage:
    python weights/recipe/measure_diameter.py CKPT --data ../shared/data/microscopy \
        --names weights/splits/nuclei_train.txt [--out CKPT2]

Rewrites CKPT in place (weights unchanged; bundled fp16 files stay fp16) unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from napari_usema.io.checkpoint import load_checkpoint, save_checkpoint
from napari_usema.io.images import find_pairs, read_image
from napari_usema.postprocess.measure import median_diameter
from napari_usema.training.data import read_name_list


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", required=True, type=Path, help="folder with images/ and masks/")
    parser.add_argument("--names", required=True, type=Path, help="the training split")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    loaded = load_checkpoint(args.checkpoint)
    pairs = find_pairs(args.data)
    names = read_name_list(args.names)
    semantic = loaded.metadata.task == "semantic"
    diameter = median_diameter((read_image(pairs[n][1]) for n in names), semantic=semantic)
    meta = dataclasses.replace(loaded.metadata, object_diameter=round(diameter, 2))
    meta = meta.with_provenance(object_diameter_measured_on=f"{args.names.name} ({len(names)} masks)")
    half = loaded.metadata.provenance.get("storage") == "float16"  # bundled files stay fp16 (bundle.py)
    out = save_checkpoint(args.out or args.checkpoint, loaded.model, meta, half=half)
    print(json.dumps({"checkpoint": str(out), "object_diameter": meta.object_diameter, "masks": len(names)}))


if __name__ == "__main__":
    main()
