#!/usr/bin/env bash
# The CPU recipe of the earlier (session 2) `nuclei` model; the bundled one comes from train_gpu.sh. Resumable: run it again to continue from RUN/nuclei.state.pt.
# Usage: weights/recipe/train_nuclei.sh [RUN_DIR]   (default ../runs/nuclei beside the repository)
set -euo pipefail
cd "$(dirname "$0")/../.."
run=${1:-../runs/nuclei}
mkdir -p "$run"
usema train --data ../shared/data/microscopy --task instance --preset small --in-channels 3 \
  --out "$run/nuclei.safetensors" \
  --train-list weights/splits/nuclei_train.txt --val-list weights/splits/nuclei_val.txt \
  --steps 1500 --patch 128 --batch 8 --lr 1e-3 --val-every 100 --seed 0 --resume 2> >(tee -a "$run/stderr.log" >&2)
python weights/recipe/bundle.py "$run/nuclei.safetensors" "$run/nuclei.fp16.safetensors"  # copy into weights/ to bundle it
