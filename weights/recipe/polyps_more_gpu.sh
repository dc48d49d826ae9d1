#!/usr/bin/env bash
# Continue the bundled `polyps` model on a GPU (a warm restart from weights/polyps.safetensors: the
# optimiser state of earlier runs is not kept between machines), then store it in fp16 for bundling.
# One process has the GPU to itself, so the batch is larger than in train_gpu.sh.
# Usage: weights/recipe/polyps_more_gpu.sh DATA_ROOT OUT_DIR [MINUTES] [LR]   (RUN_DIR as for train_gpu.sh)
set -uo pipefail
cd "$(dirname "$0")/../.."
data=$1
out=$2
minutes=${3:-10}
lr=${4:-5e-4}
run=${RUN_DIR:-/tmp/usema-runs}
mkdir -p "$run" "$out"
python -m napari_usema.cli.main train --out "$run/polyps3.safetensors" --init weights/polyps.safetensors \
  --data "$data/endoscopy" --task semantic --class-names background,polyp --preset small --in-channels 3 \
  --input-scale 0.5 --train-list weights/splits/polyps_train.txt --val-list weights/splits/polyps_val.txt \
  --steps 100000 --patch 256 --batch "${BATCH:-32}" --lr "$lr" --minutes "$minutes" --val-every 200 --seed 2 \
  >"$run/polyps3.out" 2>&1
status=$?
[ -f "$run/polyps3.safetensors" ] && python weights/recipe/bundle.py "$run/polyps3.safetensors" "$out/polyps3.safetensors"
cp "$run/polyps3.log.jsonl" "$out/" 2>/dev/null
grep -h '"val_metric": [0-9]' "$run/polyps3.log.jsonl" | cut -c1-160
[ $status -eq 0 ] || tail -30 "$run/polyps3.out"
exit $status
