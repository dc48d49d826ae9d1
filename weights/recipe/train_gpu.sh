#!/usr/bin/env bash
# The GPU recipe of the bundled weights: four `usema train` runs side by side on one GPU, each stopped by
# the clock (--minutes; the learning-rate cosine follows the clock), then stored in fp16 for bundling.
#   nuclei_warm     instance, all modalities, warm start from the CPU-trained nuclei model
#   nuclei_scratch  the same from a fresh network (whichever validates better is bundled)
#   polyps          semantic, half resolution, from a fresh network
#   transfer_base   fluorescence-only nuclei model for benchmarks/finetune_transfer.py --base
# One small model barely loads an H100/H200, so four processes share it (each draws its patches on
# the CPU while the GPU works on the previous batch).
#
# Usage: weights/recipe/train_gpu.sh DATA_ROOT OUT_DIR [MINUTES]
#   DATA_ROOT holds microscopy/ and endoscopy/ (../shared/data); OUT_DIR gets the fp16 checkpoints and logs.
set -uo pipefail
cd "$(dirname "$0")/../.."
data=$1
out=$2
minutes=${3:-7}
run=${RUN_DIR:-/tmp/usema-runs}
mkdir -p "$run" "$out"
usema=(python -m napari_usema.cli.main)
common=(--preset small --in-channels 3 --steps 100000 --patch 256 --batch "${BATCH:-16}" --minutes "$minutes" --seed 0)
nuclei=(--data "$data/microscopy" --task instance --train-list weights/splits/nuclei_train.txt
  --val-list weights/splits/nuclei_val.txt --val-every 100)

launch() {  # NAME ARGS...: one training run in the background, its output in RUN/NAME.out
  local name=$1
  shift
  "${usema[@]}" train --out "$run/$name.safetensors" "${common[@]}" "$@" >"$run/$name.out" 2>&1 &
  pids[$name]=$!
}

declare -A pids
launch nuclei_warm "${nuclei[@]}" --init weights/nuclei.safetensors --lr 5e-4 --invert-probability 0.25
launch nuclei_scratch "${nuclei[@]}" --lr 1e-3 --invert-probability 0.25
launch polyps --data "$data/endoscopy" --task semantic --class-names background,polyp --input-scale 0.5 \
  --train-list weights/splits/polyps_train.txt --val-list weights/splits/polyps_val.txt --val-every 200 --lr 1.5e-3
launch transfer_base --data "$data/microscopy" --task instance --train-list weights/splits/nuclei_train_fluorescence.txt \
  --val-list weights/splits/nuclei_val_fluorescence.txt --val-every 100 --lr 1e-3 --invert-probability 0.5

# Fail fast: a run that dies while loading data or on its first steps is reported at once.
sleep "${FAIL_FAST_S:-60}"
for name in "${!pids[@]}"; do
  if ! kill -0 "${pids[$name]}" 2>/dev/null; then
    echo "== $name stopped early:" && tail -30 "$run/$name.out"
    kill "${pids[@]}" 2>/dev/null
    exit 1
  fi
done
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null

status=0
for name in "${!pids[@]}"; do
  wait "${pids[$name]}" || { echo "== $name failed:"; tail -30 "$run/$name.out"; status=1; }
done
for name in "${!pids[@]}"; do
  [ -f "$run/$name.safetensors" ] && python weights/recipe/bundle.py "$run/$name.safetensors" "$out/$name.safetensors"
  grep -h '"val_metric": [0-9]' "$run/$name.log.jsonl" | tail -3
done
tar czf "$out/logs.tar.gz" -C "$run" $(cd "$run" && ls *.log.jsonl *.out)
exit $status
