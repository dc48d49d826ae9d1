#!/usr/bin/env bash
# The CPU recipe of the earlier (session 2) `polyps` model; the bundled one comes from train_gpu.sh. Resumable: run it again to continue from RUN/polyps.state.pt.
# Half resolution (--input-scale 0.5): a Kvasir frame (~530x620) becomes ~265x310, so one 256-pixel
# patch sees most of a polyp and its surroundings, at a quarter of the compute.
# Usage: weights/recipe/train_polyps.sh [RUN_DIR] [STEPS]   (defaults ../runs/polyps beside the repository, 700)
set -euo pipefail
cd "$(dirname "$0")/../.."
run=${1:-../runs/polyps}
steps=${2:-700}
mkdir -p "$run"
usema train --data ../shared/data/endoscopy --task semantic --class-names background,polyp --preset small \
  --in-channels 3 --input-scale 0.5 --out "$run/polyps.safetensors" \
  --train-list weights/splits/polyps_train.txt --val-list weights/splits/polyps_val.txt \
  --steps "$steps" --patch 256 --batch 2 --lr 1e-3 --val-every 100 --seed 0 --resume 2> >(tee -a "$run/stderr.log" >&2)
python weights/recipe/bundle.py "$run/polyps.safetensors" "$run/polyps.fp16.safetensors"  # copy into weights/ to bundle it
