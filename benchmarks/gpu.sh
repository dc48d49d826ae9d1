#!/usr/bin/env bash
# The GPU figures of the speed issue, in one run (at most 9 minutes on an H100/H200: the timeouts add to 540 s):
#   1. network throughput: `paper` and `small`, tiles 256 and 512, batch 4-64, fp32 / bf16 / channels-last,
#      torch.compile, peak GPU memory (benchmarks/gpu_throughput.py);
#   2. MONAI SwinUNETR and BasicUNet on the same 4096² image through MONAI's sliding window, beside USEMA;
#   3. end to end: `usema predict` of the bundled nuclei model on an 8192² image, batch sized to the GPU.
# Usage: benchmarks/gpu.sh OUT_DIR     (JSON lines in OUT_DIR/gpu.jsonl, logs beside it)
# On the lent machine (no network): carry wheels for what its image lacks (MONAI, zarr, dask, superqt,
# platformdirs...) in .whl/ and this script installs them into /tmp/site first (see the device README).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: benchmarks/gpu.sh OUT_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$out/gpu.txt"

timeout 300 python3 benchmarks/gpu_throughput.py --out "$out/gpu.jsonl" 2>&1 | tee "$out/throughput.log"

python3 - "$out/slide.tif" 8192 <<'PY'
import sys
import numpy as np
import tifffile
from napari_usema._sample_data import load_nuclei
tile = load_nuclei()
side = int(sys.argv[2])
tifffile.imwrite(sys.argv[1], np.tile(tile, (-(-side // tile.shape[0]), -(-side // tile.shape[1])))[:side, :side])
PY
# Each run's wall time measured by Python around it (no `bc` on the device); logs apart.
python3 - "$out" <<'PY'
import json, subprocess, sys, time
out = sys.argv[1]
for name, options in (("eager", ["--batch", "0"]), ("compile", ["--batch", "0", "--compile"])):
    command = [sys.executable, "-m", "napari_usema.cli.main", "predict", f"{out}/slide.tif", "--model", "nuclei",
               "--device", "cuda", *options, "--out", f"{out}/predict_{name}", "--overwrite"]
    start = time.perf_counter()
    with open(f"{out}/predict_{name}.log", "w") as log:
        try:
            rc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=120).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    seconds = time.perf_counter() - start
    line = {"figure": "predict", "image": 8192, "options": options, "rc": rc, "seconds": round(seconds, 1),
            "mpix_per_s": round(8192**2 / seconds / 1e6, 2)}
    print(json.dumps(line), flush=True)
    with open(f"{out}/gpu.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")
PY
