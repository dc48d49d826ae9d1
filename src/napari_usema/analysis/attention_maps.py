"""Where each attention head looks: the softmax rows of one query pixel, mapped back to the image.

Capture runs one forward call with an :class:`~napari_usema.model.AttentionTap`: that call's encoder
stages compute their scores explicitly and hand them over. The network is not changed, so a
segmentation running on it at the same time is unaffected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..inference.rescale import resize_image
from ..model import USEMA, AttentionTap, AttentionWeights


def capture_weights(model: USEMA, image_chw: np.ndarray) -> list[AttentionWeights]:
    """Run ``image_chw`` ``(C, H, W)`` once; the :class:`AttentionWeights` of every encoder stage, top first."""
    weights: dict[int, AttentionWeights] = {}
    device = next(model.parameters()).device
    tap = AttentionTap(on_weights=weights.__setitem__)
    with torch.inference_mode():
        model(torch.from_numpy(np.ascontiguousarray(image_chw, np.float32))[None].to(device), tap=tap)
    return [weights[s] for s in sorted(weights)]


@dataclass(frozen=True)
class StageAttention:
    """One stage's attention for one query pixel, in image pixels.

    Attributes:
        stage: Encoder stage (0 = full resolution); the last is the bottleneck.
        kind: ``window`` (SEMA) or ``full`` (bottleneck softmax over all tokens).
        scores: ``(heads, H, W)`` softmax scores of the query's row; zero outside its window. Each
            token's score is spread over the ``2^stage``-sided block of pixels it covers (the map
            shows the score per token, repeated over the token's pixels).
        mean_weight: Weight of every real token in the global-mean term (1/N), 0 without it.
        tokens: N, the number of real tokens at this stage.
        window: Window side in tokens (the grid for full attention).
    """

    stage: int
    kind: str
    scores: np.ndarray
    mean_weight: float
    tokens: int
    window: int

    @property
    def effective(self) -> np.ndarray:
        """Window scores plus the global-mean weight everywhere: what each token contributes."""
        return self.scores + self.mean_weight


def _row_on_grid(weights: AttentionWeights, query: tuple[int, int], full: bool) -> np.ndarray:
    """The query token's softmax row as ``(heads, h_valid, w_valid)`` on the stage's token grid."""
    hp, wp = weights.grid_hw
    vh, vw = weights.valid_hw
    ty, tx = query
    if full:
        row = weights.scores[0, :, ty * wp + tx]  # (heads, N)
        return row.reshape(-1, hp, wp)[:, :vh, :vw].cpu().numpy()
    ws = weights.window
    wy, wx = ty // ws, tx // ws
    index = wy * (wp // ws) + wx
    row = weights.scores[index, :, (ty % ws) * ws + (tx % ws)]  # (heads, ws * ws)
    grid = torch.zeros(row.shape[0], hp, wp)
    grid[:, wy * ws : (wy + 1) * ws, wx * ws : (wx + 1) * ws] = row.reshape(-1, ws, ws)
    return grid[:, :vh, :vw].numpy()


def query_attention(model: USEMA, image_chw: np.ndarray, point: tuple[int, int]) -> list[StageAttention]:
    """Attention of every stage and head for the query pixel ``point = (y, x)``.

    Args:
        model: A USEMA network; it is only read.
        image_chw: ``(C, H, W)`` normalised image (run whole; crop large images first).
        point: Query pixel, inside the image.
    """
    _, h, w = image_chw.shape
    y, x = point
    if not (0 <= y < h and 0 <= x < w):
        raise ValueError(f"the point {point} lies outside the {h}x{w} image")
    captured = capture_weights(model, image_chw)
    stages = []
    last = len(captured) - 1
    for s, weights in enumerate(captured):
        full = s == last
        grid = _row_on_grid(weights, (y >> s, x >> s), full)  # (heads, vh, vw)
        pixels = np.repeat(np.repeat(grid, 2**s, axis=1), 2**s, axis=2)[:, :h, :w]
        tokens = weights.valid_hw[0] * weights.valid_hw[1]
        stages.append(
            StageAttention(
                s, "full" if full else "window", pixels.astype(np.float32), weights.mean_weight, tokens, weights.window
            )
        )
    return stages


def at_model_scale(
    image_chw: np.ndarray, scale: float, points: list[tuple[int, int]] = ()
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The image ``(C, H, W)`` and query points as the network sees them: resized by the model's
    ``input_scale``, as segmentation does (so a half-resolution model's maps show its own windows)."""
    if scale == 1:
        return image_chw, list(points)
    hwc = resize_image(np.moveaxis(image_chw, 0, -1), scale)
    h, w = hwc.shape[:2]
    moved = [(min(int(y * scale), h - 1), min(int(x * scale), w - 1)) for y, x in points]
    return np.ascontiguousarray(np.moveaxis(hwc, -1, 0)), moved


def stack_maps(stages: list[StageAttention], effective: bool = False) -> tuple[np.ndarray, list[str]]:
    """All (stage, head) maps as one ``(K, H, W)`` stack with a name per plane."""
    planes, names = [], []
    for st in stages:
        maps = st.effective if effective else st.scores
        for head, plane in enumerate(maps):
            planes.append(plane)
            names.append(f"stage {st.stage} ({st.kind}) head {head}")
    return np.stack(planes), names
