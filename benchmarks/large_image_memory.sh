#!/usr/bin/env bash
# Peak resident memory of `usema predict` on a 20,000 x 20,000 uint8 TIFF on disk (issue: <= 3 GB).
# Usage: benchmarks/large_image_memory.sh [MODEL] [SIDE] [WORKDIR] [extra `usema predict` options...]
#   MODEL defaults to the bundled `nuclei` model; SIDE to 20000; WORKDIR to a fresh temp folder.
# Prints one JSON line with the peak RSS that /usr/bin/time -v reports, and the wall time.
set -euo pipefail
model=${1:-nuclei}
side=${2:-20000}
work=${3:-$(mktemp -d)}
shift $(( $# < 3 ? $# : 3 ))
extra=("$@")
mkdir -p "$work/in" "$work/out"
python - "$work/in/slide.tif" "$side" <<'PY'
import sys
import numpy as np
import tifffile

# Tile real nuclei (a fluorescence image from the package's sample) over the slide, row by row,
# so the input is written without ever holding the whole slide in memory.
from napari_usema._sample_data import load_nuclei
path, side = sys.argv[1], int(sys.argv[2])
tile = load_nuclei()
reps = -(-side // tile.shape[1])
row = np.tile(tile, (1, reps))[:, :side]
out = tifffile.memmap(path, shape=(side, side), dtype=np.uint8)
for y in range(0, side, tile.shape[0]):
    out[y : y + tile.shape[0]] = row[: min(tile.shape[0], side - y)]
out.flush()
PY
/usr/bin/time -v -o "$work/time.txt" usema predict "$work/in/slide.tif" --model "$model" --out "$work/out" --overwrite "${extra[@]}"
peak_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time.txt")
python - "$work/out/slide.tif" "$peak_kb" "$wall" "$side" "$model" "${extra[@]}" <<'PY'
import json, sys
import tifffile
path, peak_kb, wall, side, model = sys.argv[1:6]
with tifffile.TiffFile(path) as tif:
    page = tif.pages[0]
    shape, dtype = page.shape, str(page.dtype)
print(json.dumps({"bench": "large_image_memory", "side": int(side), "model": model, "options": sys.argv[6:], "peak_rss_gb": round(int(peak_kb) / 2**20, 3),
                  "target_gb": 3.0, "wall": wall, "output_shape": shape, "output_dtype": dtype}))
PY
