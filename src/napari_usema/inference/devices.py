"""Which device runs the network, and the reduced precision that pays on it.

Training and inference both call :func:`autocast`: on a GPU a model is trained and run at the same precision;
on the CPU it trains in fp32 and runs in bf16 where the CPU computes it natively.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from .tiling import PRECISIONS

# torch.OutOfMemoryError is new in torch 2.5; older releases (we support >= 2.2) raise the CUDA class,
# which 2.5 made an alias of it.
OutOfMemoryError: type[Exception] = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; any other name is checked and returned."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    here = ", ".join(available_devices())
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}; this machine has: {here}") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"napari-usema does not run on {device.type!r} devices; this machine has: {here}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device 'cuda' was asked for, but this PyTorch sees no CUDA GPU; this machine has: {here}")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"there is no GPU {device}; this machine has {torch.cuda.device_count()} (cuda:0 ...)")
    if device.type == "mps" and "mps" not in here:
        raise ValueError(f"device 'mps' was asked for, but MPS is not available here; this machine has: {here}")
    return device


# Peak activation memory of a forward pass, per pixel of a tile and channel of the network's top stage:
# measured 2.0 kB a pixel for the `small` preset (32 channels) in fp32 on the CPU, at 256 to 1056 pixels.
ACTIVATION_BYTES = 64
AUTO_BATCH_MAX = 64


def auto_batch(
    device: torch.device, tile_pixels: int, top_channels: int, *, free_bytes: int | None = None, precision: str = "auto"
) -> int:
    """Tiles a forward pass takes when the batch is left to the device: 1 on the CPU and MPS (batching
    saves nothing there, and memory is the user's RAM); on CUDA as many as half the GPU's free memory
    holds at the measured activation cost (bf16 halves it), at most :data:`AUTO_BATCH_MAX`. A guess
    that proves too large is halved when the GPU runs out of memory (``_Runner``)."""
    if device.type != "cuda":
        return 1
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    per_tile = tile_pixels * top_channels * ACTIVATION_BYTES / (2 if uses_bf16(device, precision) else 1)
    return int(max(1, min(AUTO_BATCH_MAX, free_bytes * 0.5 // per_tile)))


def available_devices() -> list[str]:
    """Device names that work on this machine, ``auto`` first."""
    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return names


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), asked of PyTorch once per process.
    Without it bf16 is emulated, and measured 15x slower than fp32 (README §6)."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(probe is not None and bool(probe()) for probe in probes)


def _cuda_has_native_bf16() -> bool:
    """bf16 in the GPU's hardware (Ampere and later); torch >= 2.3 otherwise counts emulation too."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch < 2.3 has no such argument, and counts only native bf16
        return torch.cuda.is_bf16_supported()


def uses_bf16(device: torch.device, precision: str = "auto", *, training: bool = False) -> bool:
    """Whether the network runs in bf16 on ``device``. ``auto``: on CUDA GPUs that support it, and for
    inference on CPUs with native bf16 (:func:`cpu_has_native_bf16`: 1.7x faster a tile there, with
    validation figures within 0.003 of fp32; README §6); ``fp32``: never.

    Training steps on the CPU stay fp32 (``training``): bf16 fine-tuning there has not been measured for
    accuracy. Validation during training is inference, and runs as inference does."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "fp32":
        return False
    if device.type == "cuda":
        return _cuda_has_native_bf16()
    return device.type == "cpu" and not training and cpu_has_native_bf16()


def precision_used(device: torch.device | str, precision: str = "auto") -> str:
    """``bf16`` or ``fp32``: what inference with ``precision`` runs at on ``device`` (for provenance)."""
    return "bf16" if uses_bf16(select_device(str(device)), precision) else "fp32"


def autocast(device: torch.device, precision: str = "auto", *, training: bool = False) -> Any:
    """bf16 autocast where :func:`uses_bf16` says it pays; full precision everywhere else.

    Training and inference share this, so a model runs on a GPU at the precision it was trained at. fp16 is
    never used: without a gradient scaler its small gradients underflow, so GPUs without bf16 run in fp32.
    """
    enabled = uses_bf16(device, precision, training=training)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
