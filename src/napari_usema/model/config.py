"""The one place that holds the network's hyper-parameters and its named presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class USEMAConfig:
    """Hyper-parameters of a USEMA network; a checkpoint rebuilds its network from this.

    Attributes:
        in_channels: Image channels the network reads (1 grayscale, 3 RGB).
        out_channels: Classes it predicts (3 for instance models: background, interior, boundary).
        widths: Channels of each encoder stage, top to bottom; the last stage is the bottleneck.
        head_dim: Channels per attention head (heads = width // head_dim, at least 1).
        window_size: Side of the square windows of SEMA attention, in tokens.
        global_mean: Add the arithmetic mean of V over all tokens (the paper's Eq. 5); off for the
            "window attention only" ablation.
        encoder_blocks: Residual blocks per encoder stage (the first one strided from stage 2 on).
        decoder_blocks: Residual blocks per decoder stage, after the skip concatenation.
        mlp_ratio: Hidden width of the SEMA block's feed-forward, relative to its input.
        rope_base: Base of the rotary position embedding's frequencies.
        deep_supervision: Build a 1x1 head at every decoder scale, not only the finest.
    """

    in_channels: int = 1
    out_channels: int = 3
    widths: tuple[int, ...] = (32, 64, 128, 256)
    head_dim: int = 32
    window_size: int = 16
    global_mean: bool = True
    encoder_blocks: int = 2
    decoder_blocks: int = 1
    mlp_ratio: float = 4.0
    rope_base: float = 10000.0
    deep_supervision: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if len(self.widths) < 2:
            raise ValueError(f"USEMA needs at least 2 stages (an encoder stage and a bottleneck), got widths={self.widths}")
        for name in ("in_channels", "out_channels", "head_dim", "window_size", "encoder_blocks", "decoder_blocks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if any(w < 1 for w in self.widths):
            raise ValueError(f"widths must be positive, got {self.widths}")
        if self.in_channels < 1 or self.out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be >= 1, got {self.in_channels} and {self.out_channels}")
        if self.window_size < 1:
            raise ValueError(f"window_size must be >= 1, got {self.window_size}")
        for width in self.widths:
            heads = max(1, width // self.head_dim)
            if width % heads or (width // heads) % 4:
                raise ValueError(
                    f"width {width} with head_dim {self.head_dim} gives heads of {width / heads:g} channels; "
                    "2-D RoPE needs a head size divisible by 4"
                )

    @property
    def num_stages(self) -> int:
        return len(self.widths)

    @property
    def divisor(self) -> int:
        """Input sides are padded to a multiple of this (one halving per stage below the first)."""
        return 2 ** (self.num_stages - 1)

    def heads(self, stage: int) -> int:
        return max(1, self.widths[stage] // self.head_dim)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["widths"] = list(self.widths)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> USEMAConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; known keys are {sorted(known)}")
        if not isinstance(data, dict):
            raise ValueError(f"the model config must be a JSON object, got {type(data).__name__}")
        widths = data.get("widths", ())
        if not isinstance(widths, list | tuple) or not all(isinstance(w, int) and not isinstance(w, bool) for w in widths):
            raise ValueError(f"widths must be a list of integers, got {widths!r}")
        return cls(**{k: (tuple(v) if k == "widths" else v) for k, v in data.items()})

    def replace(self, **changes: Any) -> USEMAConfig:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, USEMAConfig] = {
    # 50.3M parameters, the paper reports 52M; window 16 as for its microscopy and endoscopy runs.
    "paper": USEMAConfig(widths=(32, 64, 128, 256, 512, 576), window_size=16, decoder_blocks=2),
    # The paper's setting for abdominal MRI.
    "paper-w32": USEMAConfig(widths=(32, 64, 128, 256, 512, 576), window_size=32, decoder_blocks=2),
    # 7.9M parameters, the size of the bundled weights: trains on a CPU, infers quickly everywhere.
    "small": USEMAConfig(widths=(32, 64, 128, 192, 256), window_size=16, decoder_blocks=1),
    # For tests only: seconds to build, milliseconds to run.
    "tiny": USEMAConfig(widths=(8, 16, 16), head_dim=8, window_size=4, encoder_blocks=1, decoder_blocks=1, mlp_ratio=2.0),
}


def preset(name: str, **overrides: Any) -> USEMAConfig:
    """Return the named preset, with `overrides` applied (e.g. ``in_channels=3``)."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
    return base.replace(**overrides)
