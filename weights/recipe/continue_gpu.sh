#!/usr/bin/env bash
# Second stage of the GPU recipe: continue the best nuclei and polyps runs of train_gpu.sh with a new,
# lower cosine (a warm restart; seed 1), side by side on the same GPU, then store them in fp16.
# Usage: weights/recipe/continue_gpu.sh DATA_ROOT OUT_DIR [MINUTES]   (RUN_DIR as for train_gpu.sh)
set -uo pipefail
cd "$(dirname "$0")/../.."
data=$1
out=$2
minutes=${3:-3.2}
run=${RUN_DIR:-/tmp/usema-runs}
usema=(python -m napari_usema.cli.main train --preset small --in-channels 3 --steps 100000 --patch 256 --batch 16
  --minutes "$minutes" --seed 1)
"${usema[@]}" --out "$run/polyps2.safetensors" --data "$data/endoscopy" --task semantic --class-names background,polyp \
  --input-scale 0.5 --train-list weights/splits/polyps_train.txt --val-list weights/splits/polyps_val.txt --val-every 200 \
  --lr 7e-4 --init "$run/polyps.safetensors" >"$run/polyps2.out" 2>&1 &
"${usema[@]}" --out "$run/nuclei2.safetensors" --data "$data/microscopy" --task instance \
  --train-list weights/splits/nuclei_train.txt --val-list weights/splits/nuclei_val.txt --val-every 100 \
  --lr 3e-4 --invert-probability 0.25 --init "$run/nuclei_scratch.safetensors" >"$run/nuclei2.out" 2>&1 &
wait
for name in polyps2 nuclei2; do
  python weights/recipe/bundle.py "$run/$name.safetensors" "$out/$name.safetensors"
  cp "$run/$name.log.jsonl" "$out/"
done
