"""The settings of training and fine-tuning, apart from the machinery that runs them: the command
line builds its options and their help from these without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from .._checks import in_range
from ..postprocess.config import WatershedConfig


@dataclass(frozen=True)
class AugmentConfig:
    """Random augmentations applied to each training patch."""

    flips: bool = True
    rot90: bool = True
    scale_range: tuple[float, float] = (0.7, 1.4)
    intensity: float = 0.2  # brightness and contrast jitter
    blur_probability: float = 0.2
    noise: float = 0.05
    # Inverting a patch (x -> 1 - x after normalisation) shows a model trained on bright-on-dark
    # fluorescence what dark-on-bright nuclei (stained tissue, bright-field) look like.
    invert_probability: float = 0.0
    # Per-channel gain and offset (x -> x * U(1-c, 1+c) + U(-c, c) / 2 per channel), on top of the shared
    # intensity jitter: RGB frames from other cameras and stains differ in colour balance. 0: off.
    colour: float = 0.0

    def __post_init__(self) -> None:
        low, high = self.scale_range
        in_range("scale_range low", low, 0, low_open=True)
        in_range("scale_range high", high, low)
        in_range("intensity", self.intensity, 0)
        in_range("blur_probability", self.blur_probability, 0, 1)
        in_range("noise", self.noise, 0)
        in_range("invert_probability (--invert-probability)", self.invert_probability, 0, 1)
        in_range("colour (--colour-jitter)", self.colour, 0, 1)


@dataclass(frozen=True)
class TrainingConfig:
    """Defaults for training from scratch; fine-tuning overrides a few (see finetune.py)."""

    steps: int = 2000
    patch: int = 256
    batch: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float = 12.0
    foreground_oversample: float = 0.33
    val_every: int = 200  # 0: validate and save only at the end
    seed: int = 0
    device: str = "auto"
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    watershed: WatershedConfig = field(default_factory=WatershedConfig)
    val_tile: int = 512
    save_state: bool = True  # also write NAME.last.safetensors and the resumable NAME.state.pt
    # Keep the first N encoder stages fixed: their full-resolution backward pass dominates a step's
    # cost on a CPU, and low-level features transfer well (used by fine-tuning).
    frozen_encoder_stages: int = 0
    # Stop after this many seconds of training (validation included), whichever of this and ``steps``
    # comes first; the learning-rate schedule follows the same clock. None: steps alone.
    time_budget_s: float | None = None

    def __post_init__(self) -> None:
        in_range("steps", self.steps, 1, integer=True)
        in_range("patch", self.patch, 16, integer=True)
        in_range("batch", self.batch, 1, integer=True)
        in_range("lr", self.lr, 0, low_open=True)
        in_range("weight_decay", self.weight_decay, 0)
        in_range("warmup_steps", self.warmup_steps, 0, integer=True)
        in_range("grad_clip", self.grad_clip, 0, low_open=True)
        in_range("foreground_oversample", self.foreground_oversample, 0, 1)
        in_range("val_every", self.val_every, 0, integer=True)
        in_range("val_tile", self.val_tile, 16, integer=True)
        in_range("frozen_encoder_stages", self.frozen_encoder_stages, 0, integer=True)
        if self.time_budget_s is not None:
            in_range("time_budget_s", self.time_budget_s, 0, low_open=True)


# Chosen with benchmarks/finetune_transfer.py and benchmarks/finetune_speed.py (see README): every
# stage trains (colour and contrast must adapt when the user's images differ from the training data);
# a rate well below training-from-scratch's 1e-3 adapts the pre-trained features instead of
# overwriting them; and one 128-pixel patch a step is the most context that keeps 100 steps of the
# `small` preset within a minute on a 2-core CPU (larger patches helped more but took longer).
FINETUNE_DEFAULTS = TrainingConfig(
    steps=100,
    patch=128,
    batch=1,
    lr=3e-4,
    warmup_steps=5,
    val_every=0,
    foreground_oversample=0.5,
    save_state=False,
    frozen_encoder_stages=0,
    augment=AugmentConfig(scale_range=(0.8, 1.25)),
)
