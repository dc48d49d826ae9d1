#!/usr/bin/env bash
# The global_mean ablation of the model card: one short nuclei recipe trained twice, with and without
# the arithmetic mean of V in SEMA attention; data, split, seed, steps and augmentation are equal.
# The recipe is that of benchmarks/finetune_transfer.py's base (fluorescence images of the training
# split, half the patches inverted, 150 steps of batch 8 at 128 px), so the with-mean arm can also be
# taken from that benchmark's run directory. Both arms are scored the same way: usema predict on the
# validation split, then usema evaluate.
# Usage: weights/recipe/ablation_global_mean.sh [RUN_DIR] [STEPS]   (defaults ../runs/ablation, 150)
set -euo pipefail
cd "$(dirname "$0")/../.."
run=${1:-../runs/ablation}
steps=${2:-150}
mkdir -p "$run"
python - "$run/fluorescence_train.txt" <<'PY'
import json, sys
kinds = {e["name"]: e["modality"] for e in json.load(open("../shared/data/microscopy/manifest.json"))}
names = [n.strip() for n in open("weights/splits/nuclei_train.txt") if n.strip() and not n.startswith("#")]
open(sys.argv[1], "w").write("\n".join(n for n in names if kinds[n].startswith("fluorescence")) + "\n")
PY
for arm in with-mean no-mean; do
  flag=""
  [ "$arm" = no-mean ] && flag="--no-global-mean"
  if [ ! -f "$run/$arm.safetensors" ]; then
    usema train --data ../shared/data/microscopy --task instance --preset small --in-channels 3 $flag \
      --out "$run/$arm.safetensors" --train-list "$run/fluorescence_train.txt" \
      --invert-probability 0.5 --steps "$steps" --patch 128 --batch 8 --lr 1e-3 --val-every 0 --seed 0 --resume
  fi
  rm -rf "$run/$arm-pred"
  usema predict $(sed -e '/^#/d' -e 's|^|../shared/data/microscopy/images/|; s|$|.tif|' weights/splits/nuclei_val.txt) \
    --model "$run/$arm.safetensors" --out "$run/$arm-pred"
  usema evaluate --pred "$run/$arm-pred" --truth ../shared/data/microscopy/masks \
    --names weights/splits/nuclei_val.txt --json "$run/$arm-eval.json" | tail -n 1
done
