"""Building blocks of USEMA: the residual conv block and the SEMA block."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import AttentionMode, AttentionTap, SEMAAttention


class InstanceNorm2d(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` (affine, no running statistics) that keeps a channels-last input on the CPU
    channels-last: there it is computed as a group norm of one channel a group (the same parameters, so
    checkpoints are unchanged), where ``instance_norm`` copies to the standard layout and back around
    every convolution (the CPU runs the network channels-last: :meth:`USEMA.forward`). Its variance is
    taken in one fp32 pass: logits move by up to ~1e-3 against ``instance_norm``, and neither bundled
    model's validation figure moved (F1 0.853, DSC 0.853). Elsewhere (CUDA, MPS, the standard layout)
    it is ``instance_norm``."""

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu" and x.is_contiguous(memory_format=torch.channels_last):
            return F.group_norm(x, x.shape[1], self.weight, self.bias, self.eps)
        return super().forward(x)


class ResidualBlock(nn.Module):
    """Two 3x3 convs with InstanceNorm and LeakyReLU, and a residual add (nnU-Net style).

    ``(B, C_in, H, W) -> (B, C_out, H / stride, W / stride)``. Convs have no bias: InstanceNorm
    removes it anyway.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = InstanceNorm2d(out_channels, affine=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = InstanceNorm2d(out_channels, affine=True)
        self.act = nn.LeakyReLU(0.01, inplace=True)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.skip = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                InstanceNorm2d(out_channels, affine=True),
            )

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return self.act(y + self.skip(x))


def depthwise_conv(dim: int) -> nn.Conv2d:
    return nn.Conv2d(dim, dim, 3, padding=1, groups=dim)


def plus_depthwise(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``x + conv(x)`` for a 3x3 depthwise ``conv``, as one convolution whose kernel has 1 added at its
    centre: the same sum, without another pass over ``x`` (the kernel is made per call; the module is
    never changed)."""
    identity = torch.zeros_like(conv.weight)
    identity[:, :, 1, 1] = 1
    return F.conv2d(x, conv.weight + identity, conv.bias, padding=1, groups=conv.groups)


class FeedForward(nn.Sequential):
    """``Linear -> GELU -> Linear`` on channel-last tokens."""

    def __init__(self, dim: int, ratio: float) -> None:
        hidden = int(dim * ratio)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class SEMABlock(nn.Module):
    """The SEMA block (paper Fig. 2), on the Mamba-like macro structure of MLLA.

    ``x + cpe1(x)`` -> LayerNorm -> two branches: gate ``SiLU(Linear)`` and main
    ``Linear -> depthwise conv -> SiLU -> SEMA attention``; their product is projected and added to
    the shortcut; then ``+ cpe2``, then ``+ FFN(LayerNorm)``. ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        *,
        mode: AttentionMode = "window",
        global_mean: bool = True,
        mlp_ratio: float = 4.0,
        rope_base: float = 10000.0,
    ) -> None:
        super().__init__()
        self.cpe1 = depthwise_conv(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.gate = nn.Linear(dim, dim)
        self.in_proj = nn.Linear(dim, dim)
        self.dwc = depthwise_conv(dim)
        self.act = nn.SiLU()
        self.attn = SEMAAttention(dim, num_heads, window_size, mode=mode, global_mean=global_mean, rope_base=rope_base)
        self.out_proj = nn.Linear(dim, dim)
        self.cpe2 = depthwise_conv(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, mlp_ratio)

    def forward(
        self, x: Tensor, valid_hw: tuple[int, int] | None = None, *, tap: AttentionTap | None = None, stage: int = 0
    ) -> Tensor:
        """``x``: ``(B, C, H, W)``; ``valid_hw``: the real (unpadded) corner of the grid; ``tap``: this
        call's instrumentation, which hears of this block as encoder stage ``stage``."""
        x = plus_depthwise(self.cpe1, x)  # x + cpe1(x)
        tokens = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        h = self.norm1(tokens)
        gate = self.act(self.gate(h))  # (B, H, W, C)
        main = self.in_proj(h).permute(0, 3, 1, 2)  # (B, C, H, W)
        main = self.act(self.dwc(main)).permute(0, 2, 3, 1)  # (B, H, W, C)
        main = self._attend(main, valid_hw, tap, stage)  # (B, H, W, C)
        tokens = tokens + self.out_proj(main * gate)
        x = tokens.permute(0, 3, 1, 2)  # (B, C, H, W)
        x = plus_depthwise(self.cpe2, x)  # x + cpe2(x)
        tokens = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        tokens = tokens + self.mlp(self.norm2(tokens))
        x = tokens.permute(0, 3, 1, 2)  # (B, C, H, W), channels-last in memory
        # The CPU runs channels-last (a view, no copy); CUDA and MPS keep the layout they were measured in.
        return x if x.device.type == "cpu" else x.contiguous()

    def _attend(self, main: Tensor, valid_hw: tuple[int, int] | None, tap: AttentionTap | None, stage: int) -> Tensor:
        if tap is None:
            return self.attn(main, valid_hw)
        mode = "full" if tap.full else None
        probe = None
        if tap.on_scores is not None:
            on_scores = tap.on_scores

            def probe(q: Tensor, k: Tensor, mask: Tensor | None) -> None:
                on_scores(stage, q, k, mask)

        if tap.on_weights is None:
            return self.attn(main, valid_hw, mode=mode, probe=probe)
        main, weights = self.attn(main, valid_hw, return_weights=True, mode=mode, probe=probe)
        tap.on_weights(stage, weights)
        return main
