"""The USEMA network in pure PyTorch: no I/O, no napari, no Qt."""

from __future__ import annotations

from .attention import AttentionWeights, SEMAAttention
from .blocks import ResidualBlock, SEMABlock
from .config import PRESETS, USEMAConfig, preset
from .unet import USEMA


def build_model(config: USEMAConfig) -> USEMA:
    """Build a freshly initialised network from its config."""
    return USEMA(config)


def count_parameters(model: USEMA) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "PRESETS",
    "USEMA",
    "AttentionWeights",
    "ResidualBlock",
    "SEMAAttention",
    "SEMABlock",
    "USEMAConfig",
    "build_model",
    "count_parameters",
    "preset",
]
