"""The Attention tab's sentences: what each number means to someone who reads images, not networks.

Each function returns the plain sentence for the widget and, where a researcher wants them, the exact
figures in the field's own terms (for a tooltip or a second line). Pure functions: tested without Qt.
"""

from __future__ import annotations

from dataclasses import dataclass

from napari_usema.analysis.attention_maps import StageAttention
from napari_usema.analysis.dispersion import ExperimentStep
from napari_usema.analysis.dispersion_report import head_mean

SLIDER = "map"  # the maps layer's name for its plane axis, shown beside napari's slider

EXPLAIN_STAGES = (
    "The network looks at the image at several levels of detail, its stages: stage 0 at full detail, each "
    "deeper stage at half the detail of the one before (one position covers 2×2, then 4×4 … pixels). Each "
    "stage has a few heads: independent ways of looking, each free to pick out different things."
)


@dataclass(frozen=True)
class Plane:
    """One plane of the attention-map stack: which stage and head it shows, and over what."""

    stage: int
    head: int
    kind: str  # "window" (SEMA's local window) or "full" (the bottleneck, over the whole crop)
    window_px: int  # side of the window in image pixels (the whole crop for "full")

    @property
    def name(self) -> str:
        return f"stage {self.stage} · head {self.head}"

    def describe(self) -> str:
        detail = "full detail" if self.stage == 0 else f"1/{2**self.stage} detail"
        if self.kind == "full":
            return f"the deepest stage: looks over the whole crop, at {detail}"
        return f"looks within a {self.window_px}×{self.window_px}-pixel window, at {detail}"


def planes_of(stages: list[StageAttention], scale: float = 1.0) -> list[Plane]:
    """The planes of ``stack_maps(stages)``, in its order (stage by stage, head by head).

    ``scale`` is the model's input scale: a half-resolution model's window covers twice the pixels.
    """
    planes = []
    for st in stages:
        side = round(st.window * 2**st.stage / scale) if st.kind == "window" else max(st.scores.shape[1:])
        planes.extend(Plane(st.stage, head, st.kind, side) for head in range(st.scores.shape[0]))
    return planes


def plane_caption(planes: list[Plane], index: int) -> str:
    """``"Map 2/20: stage 1 · head 0"`` (numbered as napari's slider shows it, from 0) and, on a second
    line, what that map shows."""
    plane = planes[index]
    return f"Map {index}/{len(planes) - 1}: {plane.name}\n{plane.describe()}"


def mean_weight_text(stages: list[StageAttention]) -> tuple[str, str]:
    """The whole-image average of SEMA, in words; and its exact weights (1/N per stage) for a tooltip."""
    windowed = [s for s in stages if s.kind == "window" and s.mean_weight > 0]
    if not windowed:
        return "This model has no whole-image average: each position sees its window only.", ""
    shares = ", ".join(f"1/{s.tokens:,} at stage {s.stage}" for s in windowed)
    text = f"Plus the whole image's average, each position counting an equal share: {shares} (tiny, but everywhere)."
    exact = (
        "Besides its window, every position also takes in the average of all positions of the image, each "
        "weighted 1/N (N: the number of positions at that stage). Exact global-mean weight per token (1/N): "
        + ", ".join(f"stage {s.stage}: {s.mean_weight:.3e}" for s in windowed)
    )
    return text, exact


def maps_text(count: int, point: tuple[int, int], slider_named: bool) -> str:
    """What the new maps layer holds, and how to browse it."""
    slider = f"the '{SLIDER}' slider" if slider_named else "the first slider"
    return (
        f"{count} maps of pixel {point}, one per stage and head: bright = where that head looks from the pixel "
        f"(each map scaled to its own brightest point). Browse them with {slider} under the image."
    )


def dispersion_text(steps: list[ExperimentStep]) -> tuple[str, str]:
    """How evenly attention spreads, in words, at the largest crop measured both ways; and the exact
    statistics (entropy / log N, N x max score) at stage 0 for a second line."""
    both = [s for s in steps if s.full and s.sema]
    if not both:
        notes = "; ".join(dict.fromkeys(s.note for s in steps if s.note))
        return f"No crop could be measured with full attention{': ' + notes if notes else ''}.", ""
    last = both[-1]
    sema, full = head_mean(last.sema[0], "normalized_entropy"), head_mean(last.full[0], "normalized_entropy")
    if abs(full - sema) < 0.005:
        compare = "about the same"
    else:
        compare = "the whole crop spreads more" if full > sema else "the windows spread more"
    text = (
        f"Attention spread on a {last.crop}-px crop: SEMA's windows {sema:.3f}, whole crop {full:.3f} ({compare}; "
        "1 = even over everything, nothing stands out; lower = more focused)."
    )
    exact = (
        f"entropy/log N {sema:.4f} vs {full:.4f}, N x max {head_mean(last.sema[0], 'n_times_max'):.2f} vs "
        f"{head_mean(last.full[0], 'n_times_max'):.2f} (SEMA vs full, stage 0, N = {last.full[0]['tokens']:,})"
    )
    return text, exact
