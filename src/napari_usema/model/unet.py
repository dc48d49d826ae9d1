"""The USEMA network: a residual-conv UNet with a SEMA block in every encoder stage."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import AttentionTap
from .blocks import ResidualBlock, SEMABlock
from .config import USEMAConfig


class EncoderStage(nn.Module):
    """Residual blocks (the first strided below the top stage), then a SEMA block.

    The bottleneck stage's SEMA block uses full softmax attention instead of windows.
    """

    def __init__(self, config: USEMAConfig, stage: int) -> None:
        super().__init__()
        self.index = stage
        width = config.widths[stage]
        in_ch = config.in_channels if stage == 0 else config.widths[stage - 1]
        blocks = [ResidualBlock(in_ch, width, stride=1 if stage == 0 else 2)]
        blocks += [ResidualBlock(width, width) for _ in range(config.encoder_blocks - 1)]
        self.convs = nn.Sequential(*blocks)
        is_bottleneck = stage == config.num_stages - 1
        self.sema = SEMABlock(
            width,
            config.heads(stage),
            config.window_size,
            mode="full" if is_bottleneck else "window",
            global_mean=config.global_mean,
            mlp_ratio=config.mlp_ratio,
            rope_base=config.rope_base,
        )

    def forward(self, x: Tensor, valid_hw: tuple[int, int], tap: AttentionTap | None = None) -> Tensor:
        return self.sema(self.convs(x), valid_hw, tap=tap, stage=self.index)


class DecoderStage(nn.Module):
    """Transposed conv x2, concatenation with the skip, residual blocks, and a 1x1 head."""

    def __init__(self, config: USEMAConfig, stage: int) -> None:
        super().__init__()
        width, below = config.widths[stage], config.widths[stage + 1]
        self.up = nn.ConvTranspose2d(below, width, kernel_size=2, stride=2, bias=False)
        blocks = [ResidualBlock(2 * width, width)]
        blocks += [ResidualBlock(width, width) for _ in range(config.decoder_blocks - 1)]
        self.convs = nn.Sequential(*blocks)
        self.head = nn.Conv2d(width, config.out_channels, 1) if (stage == 0 or config.deep_supervision) else None

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.convs(torch.cat([self.up(x), skip], dim=1))  # (B, 2C, H, W) -> (B, C, H, W)


class USEMA(nn.Module):
    """UNet with Scalable Efficient Mamba-like Attention.

    ``forward(x)`` maps ``(B, in_channels, H, W)`` to logits ``(B, out_channels, H, W)`` for any
    H and W: the input is zero-padded to what the stages need, padded tokens are masked out of
    attention, and the output is cropped back.
    """

    def __init__(self, config: USEMAConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = nn.ModuleList(EncoderStage(config, s) for s in range(config.num_stages))
        self.decoder = nn.ModuleList(DecoderStage(config, s) for s in range(config.num_stages - 1))

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """Input size after padding: multiples of the divisor, and big enough that the bottleneck
        is at least 2x2 (InstanceNorm needs more than one value per channel)."""
        div = self.config.divisor
        return max(math.ceil(height / div), 2) * div, max(math.ceil(width / div), 2) * div

    def forward(self, x: Tensor, *, deep_supervision: bool = False, tap: AttentionTap | None = None) -> Tensor | list[Tensor]:
        """Segment.

        Args:
            x: ``(B, in_channels, H, W)`` normalised image.
            deep_supervision: Return the logits of every decoder scale, finest first:
                ``[(B, K, H, W), (B, K, ceil(H/2), ceil(W/2)), ...]`` (needs ``config.deep_supervision``).
            tap: Instrumentation of the encoder's attentions for this call only (attention maps,
                dispersion); the network itself is never changed to be read.

        Returns:
            ``(B, out_channels, H, W)`` logits, or the list above.
        """
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected input of shape (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        if deep_supervision and not self.config.deep_supervision:
            raise ValueError("this model was built without deep supervision heads")
        h, w = x.shape[-2:]
        hp, wp = self.padded_size(h, w)
        x = F.pad(x, (0, wp - w, 0, hp - h))  # (B, C_in, Hp, Wp)
        if x.device.type == "cpu":
            # Channels-last all the way on the CPU: oneDNN's convolutions prefer it, and the SEMA blocks'
            # (B, H, W, C) tokens are then views, not copies (with the blocks' layout-keeping norm: 4 x 256² tiles
            # 1.38x faster; README §6).
            x = x.contiguous(memory_format=torch.channels_last)

        skips = []
        for s, stage in enumerate(self.encoder):
            valid = (math.ceil(h / 2**s), math.ceil(w / 2**s))  # real tokens at this scale
            x = stage(x, valid, tap)  # (B, widths[s], Hp / 2^s, Wp / 2^s)
            skips.append(x)

        outputs: list[Tensor] = []
        x = skips.pop()
        for s in reversed(range(len(self.decoder))):
            stage = self.decoder[s]
            x = stage(x, skips[s])  # (B, widths[s], Hp / 2^s, Wp / 2^s)
            if stage.head is not None and (deep_supervision or s == 0):
                logits = stage.head(x)[..., : math.ceil(h / 2**s), : math.ceil(w / 2**s)].contiguous()
                outputs.append(logits)
        outputs.reverse()  # finest first
        return outputs if deep_supervision else outputs[0]


def build_model(config: USEMAConfig) -> USEMA:
    """Build a freshly initialised network from its config."""
    return USEMA(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def on_device(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` itself if its weights are on ``device``, else a copy there. The given network is
    never moved: another thread may be running it.

    A USEMA copy is built from its config and filled from the weights, so a GPU-to-CPU copy (the
    fallback after running out of GPU memory) allocates nothing more on the GPU.
    """
    weight = next(model.parameters(), None)
    if weight is None:  # nothing to move (a function wrapped as a module)
        return model
    current = weight.device
    if current == device or (device.index is None and current.type == device.type):
        return model
    if isinstance(model, USEMA):
        twin = USEMA(model.config).to(device)
        twin.load_state_dict(model.state_dict())
        return twin.train(model.training)
    return copy.deepcopy(model).to(device)
