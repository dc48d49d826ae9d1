"""The USEMA network in pure PyTorch: no I/O, no napari, no Qt.

Names are imported on first use, so reading a checkpoint's config (``model.config``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .attention import AttentionTap, AttentionWeights, SEMAAttention
    from .blocks import ResidualBlock, SEMABlock
    from .config import PRESETS, USEMAConfig, preset
    from .unet import USEMA, build_model, count_parameters, on_device

_HOMES = {
    "AttentionTap": "attention",
    "AttentionWeights": "attention",
    "SEMAAttention": "attention",
    "ResidualBlock": "blocks",
    "SEMABlock": "blocks",
    "PRESETS": "config",
    "USEMAConfig": "config",
    "preset": "config",
    "USEMA": "unet",
    "build_model": "unet",
    "count_parameters": "unet",
    "on_device": "unet",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


__all__ = [
    "PRESETS",
    "USEMA",
    "AttentionTap",
    "AttentionWeights",
    "ResidualBlock",
    "SEMAAttention",
    "SEMABlock",
    "USEMAConfig",
    "build_model",
    "count_parameters",
    "on_device",
    "preset",
]
