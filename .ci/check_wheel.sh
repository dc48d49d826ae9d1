#!/usr/bin/env bash
# The wheel, installed alone in a fresh venv: npe2 accepts its manifest, and the bundled weights
# and samples load from site-packages (not from the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf dist /tmp/usema-wheel-venv
.venv/bin/python -m pip install -q build
.venv/bin/python -m build --wheel -q >/dev/null
python3 -m venv /tmp/usema-wheel-venv
/tmp/usema-wheel-venv/bin/python -m pip install -q "torch==2.13.0" dist/napari_usema-*.whl
cd /tmp
/tmp/usema-wheel-venv/bin/npe2 validate napari-usema
/tmp/usema-wheel-venv/bin/python - <<'PY'
import napari_usema.io.bundled as bundled
from napari_usema._sample_data import load_colonoscopy, load_nuclei
from napari_usema.io.checkpoint import load_checkpoint

folder = bundled.weights_dir()
assert "site-packages" in str(folder), folder
for name in bundled.available_models():
    loaded = load_checkpoint(bundled.resolve_model(name))
    print(f"wheel: bundled model {name!r} loads from {folder} ({loaded.metadata.task})")
assert bundled.available_models(), "no bundled model in the wheel"
print("wheel: samples", load_nuclei().shape, load_colonoscopy().shape)
PY
