"""The bundled model's forward in ONNX Runtime against PyTorch fp32, on this CPU, in one run.

    python benchmarks/onnx_speed.py [--model nuclei] [--onnx PATH] [--rounds 5]

Exports the model (or reads ``--onnx``), then times the same batch of 4 tiles of 256² (the tiler's
default) in both, alternating, and prints the best of ``--rounds`` each, their ratio, and the largest
difference of the logits, as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_usema.interop.onnx_export import export_onnx
from napari_usema.io.bundled import resolve_model
from napari_usema.io.checkpoint import load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--onnx", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import onnxruntime

    loaded = load_checkpoint(resolve_model(args.model))
    with tempfile.TemporaryDirectory() as tmp:
        path = args.onnx or export_onnx(loaded, Path(tmp) / "model.onnx")
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x = torch.randn(4, loaded.metadata.input_channels, 256, 256, generator=torch.Generator().manual_seed(0))
        best = {"torch": float("inf"), "onnxruntime": float("inf")}
        for _ in range(args.rounds):
            start = time.perf_counter()
            with torch.no_grad():
                expected = loaded.model(x).numpy()
            best["torch"] = min(best["torch"], time.perf_counter() - start)
            start = time.perf_counter()
            got = session.run(["logits"], {"image": x.numpy()})[0]
            best["onnxruntime"] = min(best["onnxruntime"], time.perf_counter() - start)
    print(json.dumps({
        "bench": "onnx_speed", "model": args.model, "batch": "4 x 256^2", "threads": torch.get_num_threads(),
        "torch_s": round(best["torch"], 3), "onnxruntime_s": round(best["onnxruntime"], 3),
        "speedup": round(best["torch"] / best["onnxruntime"], 2), "max_abs_diff": float(np.abs(got - expected).max()),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
