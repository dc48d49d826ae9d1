"""Tiled inference figures: tiler overhead, MONAI's sliding window at equal settings, megapixels/s,
and the post-process time behind napari's live sliders.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import numpy as np
import torch

from ..inference.channels import ChannelPlan
from ..inference.devices import select_device
from ..inference.normalization import IntensityStats
from ..inference.predictor import ArraySink, ImageSource, predict_tiles
from ..inference.tiling import TilingConfig, effective_tile, tile_grid
from ..model import build_model, preset


def _emit(**figure: Any) -> None:
    print(json.dumps({"bench": "tiling", **figure}), flush=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _source(image: np.ndarray) -> ImageSource:
    return ImageSource(image, ChannelPlan(None, (0,)), IntensityStats(np.zeros(1, np.float32), np.ones(1, np.float32)))


def _model(name: str, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(preset(name, in_channels=1)).to(device).eval()


def time_tiled(model: torch.nn.Module, image: np.ndarray, tiling: TilingConfig) -> float:
    """Wall seconds of one full tiled inference (probabilities into memory)."""
    sink = ArraySink(3, image.shape)
    start = time.perf_counter()
    for _ in predict_tiles(model, _source(image), sink, tiling):
        pass
    return time.perf_counter() - start


def bare_batch_seconds(model: torch.nn.Module, tile: int, batch: int, device: torch.device, repeats: int = 3) -> float:
    """Median seconds of one forward pass of a ``batch`` of tiles, with softmax, no tiler around it."""
    x = torch.randn(batch, 1, tile, tile, device=device)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            _sync(device)
            t0 = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                model(x).float().softmax(1)
            _sync(device)
            if i:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def overhead(model_name: str, size: int, tiling: TilingConfig) -> dict[str, Any]:
    """(a) wall time / (batches x bare forward time of one batch)."""
    device = select_device(tiling.device)
    model = _model(model_name, device)
    image = np.random.default_rng(0).normal(size=(size, size)).astype(np.float32)
    tile = effective_tile(image.shape, tiling)
    tiles = len(tile_grid(image.shape, tile, tiling.overlap))
    batches = -(-tiles // tiling.batch)
    bare = bare_batch_seconds(model, tile[0], tiling.batch, device)
    wall = time_tiled(model, image, tiling)
    return {
        "figure": "overhead",
        "model": model_name,
        "image": size,
        "tile": tiling.tile,
        "overlap": tiling.overlap,
        "batch": tiling.batch,
        "batches": batches,
        "bare_batch_s": round(bare, 4),
        "wall_s": round(wall, 3),
        "ratio": round(wall / (batches * bare), 3),
        "target": "<= 1.15",
        "device": str(device),
        # The last batch may be partly empty; this stricter ratio charges only full-batch equivalents.
        "tiles": tiles,
        "ratio_per_tile": round(wall / (tiles / tiling.batch * bare), 3),
    }


def versus_monai(model_name: str, size: int, tiling: TilingConfig, repeats: int = 2) -> dict[str, Any]:
    """(b) the same model, image, tile, overlap and batch through MONAI's sliding_window_inference."""
    try:
        from monai.inferers import sliding_window_inference
    except ImportError:
        return {"figure": "monai", "skipped": "monai is not installed (pip install monai in the benchmark environment)"}
    device = select_device(tiling.device)
    model = _model(model_name, device)
    image = np.random.default_rng(0).normal(size=(size, size)).astype(np.float32)
    ours = time_tiled(model, image, tiling)

    def predictor(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return model(x).float().softmax(1)

    x = torch.from_numpy(image)[None, None].to(device)

    def theirs_once() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            sliding_window_inference(
                x, (tiling.tile, tiling.tile), tiling.batch, predictor, overlap=tiling.overlap, mode="gaussian"
            ).cpu()
        _sync(device)
        return time.perf_counter() - start

    # Alternate the two, so that a slow spell of the machine hits both; compare the best of each.
    ours_runs, theirs_runs = [ours], []
    for _ in range(repeats):
        theirs_runs.append(theirs_once())
        ours_runs.append(time_tiled(model, image, tiling))
    theirs_runs.append(theirs_once())
    ours, theirs = min(ours_runs), min(theirs_runs)
    return {
        "figure": "monai",
        "model": model_name,
        "image": size,
        "tile": tiling.tile,
        "overlap": tiling.overlap,
        "batch": tiling.batch,
        "ours_runs_s": [round(t, 3) for t in ours_runs],
        "monai_runs_s": [round(t, 3) for t in theirs_runs],
        "ours_s": round(ours, 3),
        "monai_s": round(theirs, 3),
        "ratio": round(ours / theirs, 3),
        "target": "<= 1.0",
        "device": str(device),
    }


def throughput(model_name: str, size: int, tiling: TilingConfig) -> dict[str, Any]:
    """(c) megapixels per second of tiled inference."""
    device = select_device(tiling.device)
    model = _model(model_name, device)
    image = np.random.default_rng(0).normal(size=(size, size)).astype(np.float32)
    time_tiled(model, image[:512, :512], tiling)  # warm-up: kernels, caches
    wall = time_tiled(model, image, tiling)
    return {
        "figure": "throughput",
        "model": model_name,
        "image": size,
        "tile": tiling.tile,
        "overlap": tiling.overlap,
        "batch": tiling.batch,
        "wall_s": round(wall, 3),
        "mpix_per_s": round(size * size / 1e6 / wall, 3),
        "device": str(device),
    }


def postprocess_time(size: int = 2048, repeats: int = 3) -> dict[str, Any]:
    """Seconds for the watershed post-process of a ``size``² image from cached probabilities."""
    from ..postprocess.watershed import instances_from_probabilities
    from ..training.data import instance_targets

    rng = np.random.default_rng(0)
    labels = np.zeros((size, size), np.int32)
    yy, xx = np.mgrid[-12:13, -12:13]
    disk = yy**2 + xx**2 <= 144
    k = 0
    for cy in range(16, size - 16, 30):
        for cx in range(16, size - 16, 30):
            k += 1
            y, x = cy + rng.integers(-3, 4), cx + rng.integers(-3, 4)
            labels[y - 12 : y + 13, x - 12 : x + 13][disk] = k
    target = instance_targets(labels)
    probs = np.stack([(target == c).astype(np.float32) for c in range(3)])
    probs = np.clip(probs + rng.normal(0, 0.05, probs.shape).astype(np.float32), 0, 1)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = instances_from_probabilities(probs)
        times.append(time.perf_counter() - t0)
    return {
        "bench": "postprocess",
        "image": size,
        "objects": int(out.max()),
        "true_objects": k,
        "median_s": round(statistics.median(times), 3),
        "target": "<= 1.0",
    }


def main(
    figures: list[str], model_name: str, size: int, tiling: TilingConfig, throughput_model: str, throughput_size: int
) -> None:
    if "overhead" in figures:
        _emit(**overhead(model_name, size, tiling))
    if "monai" in figures:
        _emit(**versus_monai(model_name, size, tiling))
    if "throughput" in figures:
        _emit(
            **throughput(
                throughput_model,
                throughput_size,
                TilingConfig(tile=256, overlap=0.5, batch=tiling.batch, device=tiling.device, fit=False),
            )
        )
