"""Peak memory of the banded watershed post-process alone, on a wide image of nucleus-sized blobs.

    python benchmarks/postprocess_memory.py --height 3072 --width 20000 --band 1024   # rows as before
    python benchmarks/postprocess_memory.py --height 3072 --width 20000               # band_rows(width)

A proxy for the post-process share of a slide's peak (`benchmarks/large_image_memory.sh` takes ~45 min at
20,000²): the interior and foreground probabilities and the labels are made in memory first, then
``instances`` runs, and the peak RSS it adds over them is printed as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

from napari_usema.postprocess.config import WatershedConfig
from napari_usema.postprocess.watershed import band_rows, instances


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: kB


def blobs(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 interior and foreground probabilities of 24-pixel Gaussian blobs on a grid, 70 % filled."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:24, 0:24]
    blob = np.exp(-((yy - 11.5) ** 2 + (xx - 11.5) ** 2) / 40.0)
    tile = np.zeros((240, 240))
    for y in range(0, 240, 24):
        for x in range(0, 240, 24):
            if rng.random() < 0.7:
                tile[y : y + 24, x : x + 24] = blob
    tile_interior = (tile * 255).astype(np.uint8)
    tile_foreground = np.clip(tile_interior.astype(np.int16) * 2, 0, 255).astype(np.uint8)
    reps = (height // 240 + 1, width // 240 + 1)  # tiled as uint8: no image-sized float temporaries
    return tuple(np.ascontiguousarray(np.tile(t, reps)[:height, :width]) for t in (tile_interior, tile_foreground))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=3072)
    parser.add_argument("--width", type=int, default=20000)
    parser.add_argument("--band", type=int, help="rows per band (default: band_rows(width))")
    args = parser.parse_args()
    interior, foreground = blobs(args.height, args.width)
    out = np.zeros(interior.shape, np.uint32)
    before = peak_gb()
    start = time.perf_counter()
    count = instances(interior, foreground, out, WatershedConfig(), band=args.band)
    print(json.dumps({
        "bench": "postprocess_memory", "height": args.height, "width": args.width,
        "band": args.band or band_rows(args.width), "objects": count, "peak_before_gb": round(before, 3),
        "added_gb": round(peak_gb() - before, 3), "seconds": round(time.perf_counter() - start, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
