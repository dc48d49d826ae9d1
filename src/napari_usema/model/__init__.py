"""The USEMA network in pure PyTorch: no I/O, no napari, no Qt."""

from __future__ import annotations

from napari_usema.model.attention import AttentionWeights, SEMAAttention
from napari_usema.model.blocks import ResidualBlock, SEMABlock
from napari_usema.model.config import PRESETS, USEMAConfig, preset
from napari_usema.model.unet import USEMA


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
