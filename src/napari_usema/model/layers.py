"""Small pure helpers for token grids: window partitioning, padding masks and 2-D RoPE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def window_partition(x: Tensor, window: int) -> Tensor:
    """Cut a token grid into non-overlapping square windows.

    Args:
        x: ``(B, H, W, C)`` with H and W multiples of ``window``.
        window: Window side in tokens.

    Returns:
        ``(B * H/window * W/window, window * window, C)``, windows in row-major order.
    """
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)  # (B, nH, ws, nW, ws, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)  # (B*nH*nW, ws*ws, C)


def window_reverse(windows: Tensor, window: int, height: int, width: int) -> Tensor:
    """Inverse of :func:`window_partition`.

    Args:
        windows: ``(B * H/window * W/window, window * window, C)``.
        window: Window side in tokens.
        height: H of the grid (a multiple of ``window``).
        width: W of the grid (a multiple of ``window``).

    Returns:
        ``(B, H, W, C)``.
    """
    nh, nw = height // window, width // window
    c = windows.shape[-1]
    x = windows.view(-1, nh, nw, window, window, c)  # (B, nH, nW, ws, ws, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)  # (B, H, W, C)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Zero-pad a ``(B, H, W, C)`` grid at the bottom and right to multiples of ``multiple``."""
    h, w = x.shape[1:3]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    return x


def valid_mask(height: int, width: int, valid_hw: tuple[int, int], device: torch.device) -> Tensor:
    """``(H, W)`` bool grid, True on real tokens: the top-left ``valid_hw`` corner."""
    rows = torch.arange(height, device=device) < valid_hw[0]
    cols = torch.arange(width, device=device) < valid_hw[1]
    return rows[:, None] & cols[None, :]


def exporting() -> bool:
    """True inside ``torch.export`` / ``torch.onnx.export`` (and TorchScript tracing)."""
    is_exporting = getattr(getattr(torch, "compiler", None), "is_exporting", None)
    return bool(is_exporting and is_exporting()) or torch.jit.is_tracing()


def _recording() -> bool:
    """True while torch.compile or an export (:func:`exporting`) records the network."""
    is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(is_compiling and is_compiling()) or exporting()


class RoPE2d(nn.Module):
    """2-D rotary position embedding (RoFormer, axial form).

    The first half of each head's channels rotates with the row index, the second half with the
    column index, so ``<rope(q, p), rope(k, p')>`` depends only on ``p - p'``.
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"2-D RoPE needs a head size divisible by 4, got {head_dim}")
        quarter = head_dim // 4
        inv_freq = base ** (-torch.arange(quarter, dtype=torch.float32) / quarter)  # (d/4,)
        # Derived from the config, so kept out of checkpoints.
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def angles(self, height: int, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """cos and sin tables, each ``(H, W, head_dim / 2)``: rows' angles in the first half, columns' in
        the second. The cosines and sines are taken on the ``(H, d/4)`` and ``(W, d/4)`` angles alone and
        then spread over the grid (not once per token)."""
        inv_freq = self.inv_freq.to(device)
        ang_y = torch.outer(torch.arange(height, device=device, dtype=torch.float32), inv_freq)  # (H, d/4)
        ang_x = torch.outer(torch.arange(width, device=device, dtype=torch.float32), inv_freq)  # (W, d/4)

        def grid(f) -> Tensor:  # (H, W, d/2)
            return torch.cat([f(ang_y)[:, None, :].expand(height, width, -1), f(ang_x)[None].expand(height, width, -1)], -1)

        return grid(torch.cos), grid(torch.sin)

    @staticmethod
    def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """Rotate ``x`` of shape ``(B, H, W, heads, d)`` by tables of shape ``(H, W, d/2)``: each pair
        ``(x1_i, x2_i)`` (the two halves of a head) turns by its angle, in fp32."""
        x1, x2 = x.float().chunk(2, dim=-1)  # each (B, H, W, heads, d/2): rotation pairs (x1_i, x2_i)
        cos, sin = cos[:, :, None, :], sin[:, :, None, :]  # (H, W, 1, d/2)
        if (torch.is_grad_enabled() and x.requires_grad) or _recording():
            first = torch.addcmul(x1 * cos, x2, sin, value=-1)  # x1 cos - x2 sin
            second = torch.addcmul(x1 * sin, x2, cos)  # x1 sin + x2 cos
            return torch.cat([first, second], dim=-1).to(x.dtype)
        # Without autograd (eager inference) the two halves are written in place into one output: the same
        # values, without the copy of a concatenation (this stage ~3.5x faster on the CPU). Graph capture
        # (torch.compile, export) keeps the concatenation: it refuses out= into a non-contiguous half.
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        first, second = out.chunk(2, dim=-1)
        torch.mul(x1, cos, out=first).addcmul_(x2, sin, value=-1)
        torch.mul(x1, sin, out=second).addcmul_(x2, cos)
        return out.to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Apply RoPE to ``(B, H, W, heads, d)`` using each token's grid position."""
        cos, sin = self.angles(x.shape[1], x.shape[2], x.device)
        return self.rotate(x, cos, sin)
