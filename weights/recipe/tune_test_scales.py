"""Choose a semantic model's multi-scale test-time augmentation on *training* frames and store it in it.

Each factor in ``--factors`` is run once per frame (probabilities resized back to the frame); every
non-empty subset of factors is then scored by the mean foreground DSC of its averaged probabilities,
which is exactly what ``usema predict --scales`` computes. The validation split stays untouched: it
only measures the result.

Usage:
    python weights/recipe/tune_test_scales.py CKPT --data ../shared/data/endoscopy \
        --names NAMES.txt [--factors 0.8,1,1.25] [--out CKPT2]

Prints the table (mean DSC per subset) and writes the best subset into ``CKPT2``'s metadata
(``test_scales``; default: CKPT itself, rewritten in place with its weights unchanged).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np

from napari_usema.analysis.metrics import dice
from napari_usema.inference.pipeline import drive, segment
from napari_usema.inference.tiling import TilingConfig
from napari_usema.io.checkpoint import load_checkpoint, save_checkpoint
from napari_usema.io.images import find_pairs, read_image
from napari_usema.training.data import read_name_list


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--names", type=Path, required=True, help="training frames to choose on")
    parser.add_argument("--factors", default="0.8,1,1.25", help="candidate factors on the model's scale")
    parser.add_argument("--out", type=Path, help="where to write the tuned checkpoint (default: CKPT)")
    args = parser.parse_args()

    loaded = load_checkpoint(args.checkpoint)
    if loaded.metadata.task != "semantic":
        raise SystemExit("this recipe scores foreground DSC: semantic models only")
    factors = [float(f) for f in args.factors.split(",")]
    pairs = find_pairs(args.data)
    names = read_name_list(args.names)
    # Foreground probability of each frame at each factor, kept as uint8 to hold hundreds of frames.
    truth, fg = {}, {f: {} for f in factors}
    for i, name in enumerate(names):
        image_path, mask_path = pairs[name]
        image, truth[name] = read_image(image_path), read_image(mask_path) > 0
        for f in factors:
            probs = drive(segment(loaded, image, TilingConfig(scales=(f,)), keep_probabilities=True)).probabilities
            fg[f][name] = np.round(probs[1] * 255).astype(np.uint8)
        if i % 25 == 0:
            print(f"{i + 1}/{len(names)} frames", flush=True)
    table = {}
    for r in range(1, len(factors) + 1):
        for subset in itertools.combinations(factors, r):
            scores = [dice(truth[n], np.mean([fg[f][n].astype(np.float32) for f in subset], 0) > 127.5) for n in names]
            table[subset] = float(np.mean(scores))
            print(f"scales {','.join(f'{f:g}' for f in subset):16s} mean DSC {table[subset]:.4f}", flush=True)
    best = max(table, key=table.get)
    meta = dataclasses.replace(loaded.metadata, test_scales=tuple(sorted(best)))
    meta = meta.with_provenance(
        test_scales_tuned_on=f"{args.names.name} ({len(names)} frames), mean DSC {table[best]:.4f} "
        f"against {table.get((1.0,), float('nan')):.4f} in one pass"
    )
    half = loaded.metadata.provenance.get("storage") == "float16"  # bundled files stay fp16 (bundle.py)
    out = save_checkpoint(args.out or args.checkpoint, loaded.model, meta, half=half)
    print(json.dumps({"checkpoint": str(out), "test_scales": list(meta.test_scales), "train_dsc": round(table[best], 4)}))


if __name__ == "__main__":
    main()
