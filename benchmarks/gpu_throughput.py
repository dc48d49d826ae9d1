"""Network throughput on a GPU, in megapixels a second, for the settings the speed issue names.

    python benchmarks/gpu_throughput.py [--quick] [--out FILE.jsonl]

One JSON line per figure (and to ``--out``):
- ``network``: the ``paper`` and ``small`` presets (random weights: speed does not depend on them) at
  tiles of 256 and 512, batches 4 to 64, in fp32 and bf16, NCHW and channels-last, eager and
  ``torch.compile``; bare forward passes after a warm-up, and the peak GPU memory of each;
- ``monai``: MONAI's SwinUNETR and BasicUNet (2-D) through MONAI's ``sliding_window_inference`` on a
  4096² image at tile 256, batch 16, bf16 — and USEMA through the same function, so all three are timed
  by one loop.

Each figure is the median of a few timed repeats after warm-up, synchronised with the GPU. Nothing here
runs on a CPU-only machine: ``--device cpu --quick`` exercises the code paths (tests do not).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from napari_usema.model import USEMA, preset

GRID = {"preset": ["small", "paper"], "tile": [256, 512], "batch": [4, 16, 64]}


def timed(run: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of ``run`` after two warm-up calls."""
    for _ in range(2):
        run()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None


def network_figure(name: str, tile: int, batch: int, dtype: torch.dtype, channels_last: bool, compiled: bool,
                   device: torch.device, repeats: int) -> dict:  # fmt: skip
    model = USEMA(preset(name, in_channels=3, out_channels=3)).to(device).eval()
    x = torch.randn(batch, 3, tile, tile, device=device)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    run_model = torch.compile(model, dynamic=False) if compiled else model
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    @torch.inference_mode()
    def run() -> object:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            return run_model(x)

    started = time.perf_counter()
    run()  # the first call compiles
    first = time.perf_counter() - started
    seconds = timed(run, device, repeats)
    return {
        "figure": "network", "preset": name, "tile": tile, "batch": batch, "dtype": str(dtype).removeprefix("torch."),
        "channels_last": channels_last, "compile": compiled, "mpix_per_s": round(batch * tile * tile / seconds / 1e6, 2),
        "step_ms": round(seconds * 1e3, 2), "first_call_s": round(first, 1), "peak_gb": peak_gb(device),
    }  # fmt: skip


def monai_figures(side: int, device: torch.device, repeats: int) -> list[dict]:
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import BasicUNet, SwinUNETR

    nets = {
        "usema_paper": USEMA(preset("paper", in_channels=3, out_channels=3)),
        "usema_small": USEMA(preset("small", in_channels=3, out_channels=3)),
        "monai_swinunetr": SwinUNETR(in_channels=3, out_channels=3, spatial_dims=2, feature_size=48),
        "monai_basicunet": BasicUNet(spatial_dims=2, in_channels=3, out_channels=3),
    }
    image = torch.randn(1, 3, side, side, device=device)
    out = []
    for name, net in nets.items():
        net = net.to(device).eval()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        @torch.inference_mode()
        def run(net=net) -> object:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                return sliding_window_inference(image, (256, 256), 16, net, overlap=0.25, mode="gaussian")

        seconds = timed(run, device, repeats)
        out.append({
            "figure": "monai", "network": name, "image": side, "tile": 256, "batch": 16, "overlap": 0.25,
            "mpix_per_s": round(side * side / seconds / 1e6, 2), "seconds": round(seconds, 2), "peak_gb": peak_gb(device),
        })  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="one setting of each kind, tiny sizes (a smoke test)")
    parser.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    args = parser.parse_args()
    device = torch.device(args.device)
    repeats = 2 if args.quick else 5
    grid = {"preset": ["small"], "tile": [64], "batch": [2]} if args.quick else GRID
    lines: list[dict] = []

    def emit(line: dict) -> None:
        line["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        print(json.dumps(line), flush=True)
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(line) + "\n")
        lines.append(line)

    bf16 = torch.bfloat16 if device.type == "cuda" else torch.float32
    for name in grid["preset"]:
        for tile in grid["tile"]:
            for batch in grid["batch"]:
                for dtype, channels_last in ((torch.float32, False), (bf16, False), (bf16, True)):
                    emit(network_figure(name, tile, batch, dtype, channels_last, False, device, repeats))
        # torch.compile once a preset, at the setting eager ran best (its compile takes a minute or more).
        best = max((x for x in lines if x["figure"] == "network" and x["preset"] == name), key=lambda x: x["mpix_per_s"])
        dtype = torch.bfloat16 if best["dtype"] == "bfloat16" else torch.float32
        try:
            emit(network_figure(name, best["tile"], best["batch"], dtype, best["channels_last"], True, device, repeats))
        except Exception as error:  # a compiler missing or failing is a figure too
            emit({"figure": "network", "preset": name, "compile": True, "error": f"{type(error).__name__}: {error}"[:300]})
    try:
        for line in monai_figures(256 if args.quick else 4096, device, repeats):
            emit(line)
    except ImportError as error:
        emit({"figure": "monai", "error": f"MONAI is not installed: {error}"})


if __name__ == "__main__":
    main()
