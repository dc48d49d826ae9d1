"""Choose an instance model's watershed thresholds on its *training* images and store them in it.

The validation split stays untouched: it only measures the result. Probabilities are computed once per
image; the grid re-runs only the watershed.

Usage:
    python weights/recipe/tune_postprocess.py CKPT --data ../shared/data/microscopy \
        --names weights/splits/nuclei_train.txt [--out CKPT2]

Prints the grid (mean F1@0.5 per pair) and writes the best pair into ``CKPT2``'s metadata
(``postprocess``; default: CKPT itself, rewritten in place with its weights unchanged).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np

from napari_usema.analysis.metrics import instance_f1
from napari_usema.inference.pipeline import drive, segment
from napari_usema.io.checkpoint import load_checkpoint, save_checkpoint
from napari_usema.io.images import find_pairs, read_image
from napari_usema.postprocess.watershed import instances_from_probabilities
from napari_usema.training.data import read_name_list

INTERIOR = (0.5, 0.6, 0.7, 0.8, 0.9)
FOREGROUND = (0.3, 0.4, 0.5, 0.6, 0.7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--names", type=Path, required=True, help="the training split's names")
    parser.add_argument("--out", type=Path, help="where to write the tuned checkpoint (default: CKPT)")
    args = parser.parse_args()

    loaded = load_checkpoint(args.checkpoint)
    if loaded.metadata.task != "instance":
        raise SystemExit("only instance models have a watershed to tune")
    pairs = find_pairs(args.data)
    truth, probs = {}, {}
    for name in read_name_list(args.names):
        image_path, mask_path = pairs[name]
        result = drive(segment(loaded, read_image(image_path), keep_probabilities=True))
        truth[name], probs[name] = read_image(mask_path), result.probabilities
    base = loaded.metadata.watershed()
    grid = {}
    for interior, foreground in itertools.product(INTERIOR, FOREGROUND):
        config = base.replace(interior_threshold=interior, foreground_threshold=foreground)
        grid[(interior, foreground)] = float(
            np.mean([instance_f1(truth[n], instances_from_probabilities(probs[n], config)).f1 for n in truth])
        )
        print(f"interior {interior:.1f} foreground {foreground:.1f}: mean F1@0.5 {grid[(interior, foreground)]:.4f}")
    (interior, foreground), best = max(grid.items(), key=lambda kv: kv[1])
    tuned = {"interior_threshold": interior, "foreground_threshold": foreground}
    meta = dataclasses.replace(loaded.metadata, postprocess={**loaded.metadata.postprocess, **tuned})
    meta = meta.with_provenance(postprocess_tuned_on=f"{args.names.name} ({len(truth)} images), mean F1@0.5 {best:.4f}")
    half = loaded.metadata.provenance.get("storage") == "float16"  # bundled files stay fp16 (bundle.py)
    out = save_checkpoint(args.out or args.checkpoint, loaded.model, meta, half=half)
    print(json.dumps({"checkpoint": str(out), "postprocess": tuned, "train_f1": round(best, 4)}))


if __name__ == "__main__":
    main()
