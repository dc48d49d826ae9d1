#!/usr/bin/env bash
# Continue a polyps model on a GPU (a warm restart: the optimiser state of earlier runs is not kept
# between machines), then store it in fp16 for bundling. One process has the GPU to itself, so the
# batch is larger than in train_gpu.sh.
# Usage: weights/recipe/polyps_more_gpu.sh DATA_ROOT OUT_DIR [MINUTES] [LR]
#   INIT  the model to continue (default: the bundled weights/polyps.safetensors)
#   NAME  the run's name (default polyps3): OUT_DIR/NAME.safetensors and NAME.log.jsonl
#   BATCH patches per step (default 32); RUN_DIR as for train_gpu.sh
#   EXTRA more usema train options, e.g. "--colour-jitter 0.1" (split on spaces)
# The bundled model was made by two calls (session 4, an H200):
#   INIT=out/polyps2.safetensors NAME=polyps3 polyps_more_gpu.sh DATA out 8.4 6e-4
#   INIT=out/polyps3.safetensors NAME=polyps4 polyps_more_gpu.sh DATA out 3.7 3e-4
set -uo pipefail
cd "$(dirname "$0")/../.."
data=$1
out=$2
minutes=${3:-10}
lr=${4:-5e-4}
init=${INIT:-weights/polyps.safetensors}
name=${NAME:-polyps3}
run=${RUN_DIR:-/tmp/usema-runs}
mkdir -p "$run" "$out"
python -m napari_usema.cli.main train --out "$run/$name.safetensors" --init "$init" \
  --data "$data/endoscopy" --task semantic --class-names background,polyp --preset small --in-channels 3 \
  --input-scale 0.5 --train-list weights/splits/polyps_train.txt --val-list weights/splits/polyps_val.txt \
  --steps 100000 --patch 256 --batch "${BATCH:-32}" --lr "$lr" --minutes "$minutes" --val-every 200 --seed 2 ${EXTRA:-} \
  >"$run/$name.out" 2>&1
status=$?
[ -f "$run/$name.safetensors" ] && python weights/recipe/bundle.py "$run/$name.safetensors" "$out/$name.safetensors"
cp "$run/$name.log.jsonl" "$out/" 2>/dev/null
grep -h '"val_metric": [0-9]' "$run/$name.log.jsonl" | cut -c1-160
[ $status -eq 0 ] || tail -30 "$run/$name.out"
exit $status
