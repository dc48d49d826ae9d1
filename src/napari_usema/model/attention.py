"""SEMA attention (paper Eq. 5): window softmax attention plus the arithmetic mean of V.

With ``mode="full"`` the same module computes full softmax attention over the whole grid, as in the
USEMA bottleneck and in the dispersion experiment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from .layers import RoPE2d, exporting, pad_to_multiple, valid_mask, window_partition, window_reverse

AttentionMode = Literal["window", "full"]


@dataclass
class AttentionWeights:
    """Softmax scores of one forward pass, returned only when asked for.

    Attributes:
        scores: ``(B * nWindows, heads, T, T)`` softmax rows (query, key) inside each window; for
            full attention nWindows is 1 and T is the number of grid tokens.
        window: Window side in tokens (the padded grid side for full attention).
        grid_hw: Padded grid size ``(Hp, Wp)`` the windows tile.
        valid_hw: The real tokens: the top-left ``valid_hw`` corner of the grid.
        mean_weight: Weight of every real token in the global-mean term (1 / N_real), 0 when off.
    """

    scores: Tensor
    window: int
    grid_hw: tuple[int, int]
    valid_hw: tuple[int, int]
    mean_weight: float


# Called per forward with (q, k, key_mask): q, k ``(B*nW, heads, T, d)``, key_mask ``(B*nW, 1, 1, T)`` or None.
ScoreProbe = Callable[[Tensor, Tensor, Tensor | None], None]


@dataclass(frozen=True)
class AttentionTap:
    """Instrumentation of the encoder's attentions for one forward call: passed in, never stored.

    A network is never changed to be read: the tap travels with the call, so another thread using the
    same network at the same time runs it unchanged (timm's ``forward_intermediates`` does the same).

    Attributes:
        on_weights: Receives ``(stage, AttentionWeights)`` from every encoder stage; those stages then
            compute their softmax scores explicitly (same output, more memory).
        on_scores: Receives ``(stage, q, k, key_mask)`` (see :data:`ScoreProbe`), to measure the scores
            in chunks without holding them all.
        full: Run every stage with full softmax attention over the whole grid instead of windows (and
            without the global mean, which belongs to window attention): the dispersion experiment.
    """

    on_weights: Callable[[int, AttentionWeights], None] | None = None
    on_scores: Callable[[int, Tensor, Tensor, Tensor | None], None] | None = None
    full: bool = False


class SEMAAttention(nn.Module):
    """Local-global attention over a ``(B, H, W, C)`` token grid.

    Queries and keys come from one linear layer and are rotated with 2-D RoPE; V is the input itself
    (as in MLLA, whose block the input projection precedes); LePE (a depthwise conv on V) is added.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        *,
        mode: AttentionMode = "window",
        global_mean: bool = True,
        rope_base: float = 10000.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by {num_heads} heads")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.window_size = window_size
        self.mode: AttentionMode = mode
        self.global_mean = global_mean
        self.qk = nn.Linear(dim, 2 * dim)
        self.lepe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.rope = RoPE2d(self.head_dim, rope_base)

    def forward(
        self,
        x: Tensor,
        valid_hw: tuple[int, int] | None = None,
        return_weights: bool = False,
        *,
        mode: AttentionMode | None = None,
        probe: ScoreProbe | None = None,
    ) -> Tensor | tuple[Tensor, AttentionWeights]:
        """Attend.

        Args:
            x: ``(B, H, W, C)`` tokens.
            valid_hw: Real tokens are the top-left ``valid_hw`` corner; the rest is padding that is
                masked out of the softmax and of the global mean. None: every token is real.
            return_weights: Compute attention explicitly and also return its softmax scores. The
                default fused path (SDPA) gives the same output without materialising them.
            mode: This call's attention (None: the module's own ``mode``); ``full`` attends over the
                whole grid, without the global mean.
            probe: Called with this call's ``(q, k, key_mask)``, for measurements.

        Returns:
            ``(B, H, W, C)``, and :class:`AttentionWeights` when ``return_weights``.
        """
        b, h, w, c = x.shape
        valid_hw = (h, w) if valid_hw is None else (min(valid_hw[0], h), min(valid_hw[1], w))
        real = valid_mask(h, w, valid_hw, x.device)  # (H, W)
        v = x * real[None, :, :, None].to(x.dtype) if valid_hw != (h, w) else x  # padding never leaks

        # q and k rotate together: the heads of q, then those of k, one RoPE table for both.
        qk = self.rope(self.qk(x).view(b, h, w, 2 * self.num_heads, self.head_dim))  # (B, H, W, 2 heads, d)
        q, k = qk.view(b, h, w, 2 * c).chunk(2, dim=-1)  # each (B, H, W, C)

        mode = self.mode if mode is None else mode
        window = self.window_size if mode == "window" else max(h, w)
        # Whether any window holds padding follows from the sizes alone: a Python answer, so no GPU sync
        # and no break in a torch.compile graph.
        padded = valid_hw != (h, w) or (mode == "window" and bool(h % window or w % window))
        out, scores, grid_hw = self._windowed(q, k, v, real, window, mode, return_weights, probe, padded)  # (B, H, W, C)

        n_real = valid_hw[0] * valid_hw[1]
        mean_weight = 0.0
        if self.global_mean and mode == "window":
            mean_v = v.sum(dim=(1, 2), keepdim=True) / n_real  # (B, 1, 1, C): mean over real tokens
            out = out + mean_v
            mean_weight = 1.0 / n_real
        out = out + self.lepe(v.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # LePE on V, (B, H, W, C)
        if not return_weights:
            return out
        assert scores is not None
        return out, AttentionWeights(scores, window, grid_hw, valid_hw, mean_weight)

    def _windowed(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        real: Tensor,
        window: int,
        mode: AttentionMode,
        return_weights: bool,
        probe: ScoreProbe | None,
        padded: bool = True,
    ) -> tuple[Tensor, Tensor | None, tuple[int, int]]:
        """Softmax attention inside each ``window``-sided window; returns (out, scores, padded grid)."""
        b, h, w, c = q.shape
        heads, d = self.num_heads, self.head_dim
        if mode == "full":  # one window that is exactly the grid: no padding needed
            hp, wp = h, w
            windows = [t.reshape(b, h * w, c) for t in (q, k, v)]  # each (B, N, C)
            key_real = real.reshape(1, h * w)  # (1, N)
        else:
            q, k, v = (pad_to_multiple(t, window) for t in (q, k, v))  # each (B, Hp, Wp, C)
            hp, wp = q.shape[1:3]
            windows = [window_partition(t, window) for t in (q, k, v)]  # each (B*nW, T, C)
            real_p = pad_to_multiple(real[None, :, :, None], window)  # (1, Hp, Wp, 1)
            key_real = window_partition(real_p, window)[..., 0]  # (nW, T)
        qw, kw, vw = (t.view(t.shape[0], t.shape[1], heads, d).transpose(1, 2) for t in windows)  # (B*nW, heads, T, d)

        mask = None
        # While exporting (ONNX, torch.export) the mask is always built: whether a window holds padding
        # depends on the image size, which a graph of dynamic height and width does not know yet.
        if exporting() or padded:
            # A window of padding only would have no key to attend to: let it see itself (cropped later).
            key_real = key_real | ~key_real.any(dim=-1, keepdim=True)
            n_win = key_real.shape[0]
            mask = key_real[None, :, None, None, :].expand(b, n_win, 1, 1, -1).reshape(b * n_win, 1, 1, -1)

        if probe is not None:
            probe(qw, kw, mask)
        scores = None
        if return_weights:
            logits = (qw.float() @ kw.float().transpose(-2, -1)) * d**-0.5  # (B*nW, heads, T, T)
            if mask is not None:
                logits = logits.masked_fill(~mask, float("-inf"))
            scores = logits.softmax(dim=-1)
            ow = (scores @ vw.float()).to(q.dtype)  # (B*nW, heads, T, d)
        else:
            ow = F.scaled_dot_product_attention(qw, kw, vw, attn_mask=mask)  # (B*nW, heads, T, d)
        ow = ow.transpose(1, 2).reshape(ow.shape[0], -1, c)  # (B*nW, T, C)
        if mode == "full":
            out = ow.view(b, h, w, c)
        else:
            out = window_reverse(ow, window, hp, wp)[:, :h, :w]  # (B, H, W, C)
        return out, scores, (hp, wp)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, heads={self.num_heads}, mode={self.mode}, window={self.window_size}, global_mean={self.global_mean}"
        )


def full_attention_reference(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Plain softmax attention ``softmax(q k^T / sqrt(d)) v`` on ``(B, heads, N, d)``; for tests."""
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    return scores.softmax(dim=-1) @ v


__all__ = ["AttentionMode", "AttentionTap", "AttentionWeights", "SEMAAttention", "ScoreProbe", "full_attention_reference"]
