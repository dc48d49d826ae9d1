"""Dice + cross-entropy with deep supervision, the paper's (and nnU-Net's) loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def dice_ce_loss(logits: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Soft Dice (foreground classes, batch-wise) plus pixel-weighted cross-entropy.

    Args:
        logits: ``(B, K, H, W)``.
        target: ``(B, H, W)`` class ids.
        weight: ``(B, H, W)`` 1 where the loss counts, 0 elsewhere (padding, uncorrected regions).
    """
    logits = logits.float()
    ce = F.cross_entropy(logits, target, reduction="none")  # (B, H, W)
    ce = (ce * weight).sum() / weight.sum().clamp_min(1.0)
    probs = logits.softmax(dim=1)  # (B, K, H, W)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()  # (B, K, H, W)
    w = weight[:, None]
    dims = (0, 2, 3)
    intersection = (probs * onehot * w).sum(dims)
    denominator = ((probs + onehot) * w).sum(dims)
    dice = (2 * intersection + 1e-5) / (denominator + 1e-5)  # (K,)
    return ce + (1 - dice[1:].mean())


def deep_supervision_loss(outputs: list[Tensor], target: Tensor, weight: Tensor) -> Tensor:
    """Weighted sum over scales, finest first, weights halving per scale and summing to 1.

    Targets are downsampled by taking every 2^s-th pixel (nearest), which gives exactly the
    ``ceil(H / 2^s)`` grid of each head.
    """
    scale_weights = torch.tensor([0.5**s for s in range(len(outputs))])
    scale_weights = scale_weights / scale_weights.sum()
    total = outputs[0].new_zeros((), dtype=torch.float32)
    for s, (logits, sw) in enumerate(zip(outputs, scale_weights, strict=True)):
        step = 2**s
        t, w = target[:, ::step, ::step], weight[:, ::step, ::step]
        total = total + sw * dice_ce_loss(logits, t, w)
    return total
