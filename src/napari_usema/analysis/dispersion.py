"""Attention dispersion (paper Sec. 2.1, Eq. 2, Fig. 1), measured on a trained model and real images.

For every query, the softmax row over its N keys is summarised by: entropy / log N (1 = uniform),
N x max score (1 = uniform, N = one-hot), the fraction of scores within eps of 1/N, and a histogram of
N x score. The experiment swaps each SEMA stage's window attention for full softmax attention over
the whole crop and grows the crop, to show full attention flattening towards 1/N as N grows while
SEMA's windows stay focused.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..model import USEMA, AttentionTap

HIST_EDGES = np.linspace(0.0, 5.0, 51)  # N x score; the last bin also takes everything above 5


@dataclass
class RowStats:
    """Running sums of the dispersion statistics of many softmax rows, for one head."""

    rows: int = 0
    entropy_sum: float = 0.0
    n_max_sum: float = 0.0
    near: int = 0
    scores: int = 0
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(len(HIST_EDGES) - 1, np.int64))

    def add(self, probs: Tensor, valid: Tensor, eps: float) -> None:
        """``probs``: ``(R, N)`` softmax rows (0 on invalid keys); ``valid``: ``(R, N)`` bool."""
        n = valid.sum(-1).clamp_min(1).float()  # (R,)
        keep = n > 1
        probs, valid, n = probs[keep].float(), valid[keep], n[keep]
        if not len(n):
            return
        plogp = torch.where(probs > 0, probs * probs.clamp_min(1e-30).log(), torch.zeros_like(probs))
        self.entropy_sum += float((-plogp.sum(-1) / n.log()).sum())
        self.n_max_sum += float((probs.max(-1).values * n).sum())
        relative = (probs * n[:, None])[valid]  # N x score over real keys
        self.near += int(((relative - 1).abs() <= eps).sum())
        self.scores += int(relative.numel())
        clipped = relative.clamp(max=float(HIST_EDGES[-1]) - 1e-6).cpu().numpy()
        self.histogram += np.histogram(clipped, bins=HIST_EDGES)[0]
        self.rows += len(n)

    def summary(self) -> dict[str, object]:
        rows = max(self.rows, 1)
        return {
            "normalized_entropy": self.entropy_sum / rows,
            "n_times_max": self.n_max_sum / rows,
            "near_uniform_fraction": self.near / max(self.scores, 1),
            "rows": self.rows,
            "histogram": self.histogram.tolist(),
        }


def row_statistics(probs: np.ndarray, eps: float = 0.5) -> dict[str, object]:
    """Statistics of ``(R, N)`` softmax rows (all keys real); for tests and small cases."""
    stats = RowStats()
    t = torch.as_tensor(probs)
    stats.add(t, torch.ones_like(t, dtype=torch.bool), eps)
    return stats.summary()


class _Probe:
    """Receives (q, k, mask) from one attention module and accumulates per-head statistics."""

    def __init__(self, heads: int, eps: float, budget: int = 2**24) -> None:
        self.stats = [RowStats() for _ in range(heads)]
        self.eps, self.budget = eps, budget  # budget: scores held at once, per head
        self.keys_per_row = 0

    def __call__(self, q: Tensor, k: Tensor, mask: Tensor | None) -> None:
        # q, k: (B*nW, heads, T, d); mask: (B*nW, 1, 1, T) True on real keys, or None.
        n_win, heads, t, _ = q.shape
        scale = q.shape[-1] ** -0.5
        key_valid = torch.ones(n_win, t, dtype=torch.bool, device=q.device) if mask is None else mask[:, 0, 0]
        self.keys_per_row = int(key_valid.sum(-1).max())
        group = max(1, self.budget // (t * t))  # windows per pass (many small ones, or one big one in chunks)
        rows = t if group > 1 else min(t, max(1, self.budget // t))
        for w0 in range(0, n_win, group):
            kv = key_valid[w0 : w0 + group]  # (g, T)
            for r0 in range(0, t, rows):
                qc = q[w0 : w0 + group, :, r0 : r0 + rows].float()  # (g, heads, r, d)
                logits = (qc @ k[w0 : w0 + group].float().transpose(-2, -1)) * scale  # (g, heads, r, T)
                logits = logits.masked_fill(~kv[:, None, None, :], float("-inf"))
                probs = logits.softmax(-1)
                valid = kv[:, None, :].expand(-1, probs.shape[2], -1).reshape(-1, t)  # (g*r, T)
                for h in range(heads):
                    self.stats[h].add(probs[:, h].reshape(-1, t), valid, self.eps)


def measure(model: USEMA, image_chw: np.ndarray, *, full: bool, eps: float = 0.5) -> list[dict[str, object]]:
    """Per-stage, per-head statistics of all queries of ``image_chw`` ``(C, H, W)``; with ``full`` every
    stage attends over the whole crop (for this call only)."""
    probes = [_Probe(stage.sema.attn.num_heads, eps) for stage in model.encoder]

    def on_scores(stage: int, q: Tensor, k: Tensor, mask: Tensor | None) -> None:
        probes[stage](q, k, mask)

    device = next(model.parameters()).device
    tap = AttentionTap(on_scores=on_scores, full=full)  # this call only: the network is not changed
    with torch.inference_mode():
        model(torch.from_numpy(np.ascontiguousarray(image_chw, np.float32))[None].to(device), tap=tap)
    h, w = image_chw.shape[1:]
    out = []
    for s, probe in enumerate(probes):
        tokens = -(-h // 2**s) * -(-w // 2**s)
        kind = "full" if (full or s == len(probes) - 1) else "window"
        out.append(
            {
                "stage": s,
                "kind": kind,
                "tokens": tokens,
                "keys_per_row": probe.keys_per_row,
                "heads": [st.summary() for st in probe.stats],
            }
        )
    return out


@dataclass(frozen=True)
class ExperimentStep:
    """One crop of the experiment: the statistics of SEMA and of full attention at that size."""

    crop: int
    sema: list[dict[str, object]]
    full: list[dict[str, object]] | None
    seconds_full: float | None
    note: str = ""


def centre_crop(image_chw: np.ndarray, side: int, centre: tuple[int, int] | None = None) -> np.ndarray:
    _, h, w = image_chw.shape
    cy, cx = centre or (h // 2, w // 2)
    y0 = int(np.clip(cy - side // 2, 0, max(h - side, 0)))
    x0 = int(np.clip(cx - side // 2, 0, max(w - side, 0)))
    return image_chw[:, y0 : y0 + side, x0 : x0 + side]


def experiment(
    model: USEMA,
    image_chw: np.ndarray,
    crops: list[int],
    *,
    budget_s: float = 60.0,
    eps: float = 0.5,
    centre: tuple[int, int] | None = None,
) -> Iterator[ExperimentStep]:
    """Grow a centred crop through ``crops`` (sides in pixels: N at stage 0 is side²), measuring SEMA
    and full attention at each; full attention stops once a crop took, or the next would take
    (about 16x the time), more than ``budget_s``."""
    seconds = None
    for side in crops:
        crop = centre_crop(image_chw, side, centre)
        if min(crop.shape[1:]) < side:
            yield ExperimentStep(side, [], None, None, f"skipped: the image is smaller than {side} px")
            break
        sema = measure(model, crop, full=False, eps=eps)
        if seconds is not None and seconds * 16 > budget_s:
            yield ExperimentStep(side, sema, None, None, f"full attention skipped: predicted over {budget_s:g} s")
            continue
        start = time.perf_counter()
        full = measure(model, crop, full=True, eps=eps)
        seconds = time.perf_counter() - start
        yield ExperimentStep(side, sema, full, seconds)
