"""Object size: the bundled nuclei model on validation images resized by 0.5 and 2, with and without
``--diameter auto`` (and with the true diameter, for reference). Prints one JSON line per figure.

    python benchmarks/object_size.py [--model nuclei] [--scales 0.5,1,2] [--data ../shared/data/microscopy]

Images are resized with the package's own ``resize_image`` (area average down, bilinear up) and masks
with ``resize_labels`` (nearest), so a 0.5x image holds nuclei of about half the training size.
Scored by mean F1@0.5 over the validation split (``weights/splits/nuclei_val.txt``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from napari_usema.analysis.metrics import instance_f1
from napari_usema.inference.pipeline import drive, segment
from napari_usema.inference.rescale import resize_image, resize_labels
from napari_usema.io.bundled import resolve_model
from napari_usema.io.checkpoint import load_checkpoint
from napari_usema.io.images import find_pairs, read_image
from napari_usema.postprocess.measure import median_diameter
from napari_usema.training.data import read_name_list

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "microscopy")
    parser.add_argument("--names", type=Path, default=ROOT / "weights" / "splits" / "nuclei_val.txt")
    parser.add_argument("--scales", default="0.5,1,2")
    parser.add_argument("--modes", default="none,auto,true")
    args = parser.parse_args()
    loaded = load_checkpoint(resolve_model(args.model))
    pairs = find_pairs(args.data)
    names = read_name_list(args.names)
    for scale in (float(s) for s in args.scales.split(",")):
        images, truths = {}, {}
        for n in names:
            image, truth = read_image(pairs[n][0]), read_image(pairs[n][1])
            images[n] = image if scale == 1 else resize_image(image, scale)
            truths[n] = resize_labels(truth, images[n].shape[:2])
        for mode in args.modes.split(","):
            start, scores, estimates = time.perf_counter(), [], []
            for n in names:
                diameter = {"none": None, "auto": "auto", "true": median_diameter([truths[n]])}[mode]
                result = drive(segment(loaded, images[n], diameter=diameter))
                scores.append(instance_f1(truths[n], np.asarray(result.labels)).f1)
                estimates += [note for note in result.notes if note.startswith("diameter auto")]
            figure = {
                "bench": "object_size",
                "model": args.model,
                "image_scale": scale,
                "diameter": mode,
                "mean_f1": round(float(np.mean(scores)), 5),
                "images": len(names),
                "seconds": round(time.perf_counter() - start, 1),
            }
            if scale != 1 or mode != "none":
                figure["target"] = ">= 0.84 with auto at 0.5 and 2"
            print(json.dumps(figure), flush=True)


if __name__ == "__main__":
    main()
