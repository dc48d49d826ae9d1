"""Files of a dispersion run: ``dispersion.json``, PNG plots, and attention stacks per query point.

Shared by ``usema dispersion`` and the napari Attention explorer's Export, so both write the same.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile

from ..io.outputs import atomic_write, check_output
from .attention_maps import StageAttention, stack_maps
from .dispersion import HIST_EDGES, ExperimentStep

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STATS = (
    ("normalized_entropy", "entropy / log N"),
    ("n_times_max", "N x max score"),
    ("near_uniform_fraction", "fraction within eps of 1/N"),
)


def steps_to_json(steps: list[ExperimentStep]) -> list[dict[str, Any]]:
    return [{"crop": s.crop, "sema": s.sema, "full": s.full, "seconds_full": s.seconds_full, "note": s.note} for s in steps]


def head_mean(stage: dict[str, Any], key: str) -> float:
    return float(np.mean([h[key] for h in stage["heads"]]))


def statistics_figure(steps: list[ExperimentStep], stage: int = 0) -> Figure:
    """Each statistic against N (tokens at ``stage``), full attention vs SEMA's windows."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.2), tight_layout=True)
    rows = [s for s in steps if s.sema]
    for i, (key, title) in enumerate(STATS):
        ax = fig.add_subplot(1, 3, i + 1)
        sema = _finite([(s.sema[stage]["tokens"], head_mean(s.sema[stage], key)) for s in rows])
        full = _finite([(s.full[stage]["tokens"], head_mean(s.full[stage], key)) for s in rows if s.full])
        for points, style, label in ((sema, "o-", "SEMA (window)"), (full, "s--", "full softmax")):
            if points:
                ax.plot(*zip(*points, strict=True), style, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"N (tokens at stage {stage})")
        ax.set_title(title, fontsize=10)
        # A log axis needs a positive value to place its ticks: without one, matplotlib refuses to
        # draw ("Data cannot be log-scaled"), so such a panel stays linear.
        if key == "n_times_max" and any(y > 0 for _, y in sema + full):
            ax.set_yscale("log")
        else:
            ax.ticklabel_format(axis="y", useOffset=False)
        if sema or full:
            ax.legend(fontsize=8)
    return fig


def histogram_figure(steps: list[ExperimentStep], stage: int = 0) -> Figure:
    """Histogram of N x score at the largest crop that has both: scores piling up at 1 = dispersion."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.4), tight_layout=True)
    ax = fig.add_subplot(111)
    both = [s for s in steps if s.full and s.sema]
    centres = (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2
    width = HIST_EDGES[1] - HIST_EDGES[0]
    for label, stats in (("SEMA (window)", both[-1].sema if both else None), ("full softmax", both[-1].full if both else None)):
        if stats is None:
            continue
        hist = np.sum([h["histogram"] for h in stats[stage]["heads"]], axis=0).astype(float)
        ax.bar(centres, hist / max(hist.sum(), 1), width=width, alpha=0.55, label=f"{label}, N={stats[stage]['keys_per_row']}")
    if not both:
        ax.text(0.5, 0.5, "no crop was measured with full attention", ha="center", va="center", transform=ax.transAxes)
    ax.axvline(1.0, color="k", lw=0.8, ls=":")
    ax.set_xlabel("N x score (1 = uniform, 1/N)")
    ax.set_ylabel("fraction of scores")
    ax.set_title(f"stage {stage}, crop {both[-1].crop if both else '-'} px", fontsize=10)
    if both:
        ax.legend(fontsize=8)
    return fig


def _finite(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points with a finite value (a NaN would also leave a log axis without ticks)."""
    return [(x, y) for x, y in points if np.isfinite(y)]


def _save_png(fig: Figure, temporary: Path) -> None:
    fig.savefig(temporary, dpi=110, format="png")


def _write_stack(temporary: Path, point: tuple[int, int], stages: list[StageAttention]) -> None:
    """The (stage, head) window/full score maps of ``point`` as one TIFF, plane names in its description."""
    stack, names = stack_maps(stages)
    meta = {"planes": names, "mean_weight": {f"stage {s.stage}": s.mean_weight for s in stages}, "point": list(point)}
    tifffile.imwrite(temporary, stack, description=json.dumps(meta), photometric="minisblack", metadata=None)


def report_targets(out: Path, steps: list[ExperimentStep], points: dict[tuple[int, int], Any]) -> list[Path]:
    """The files :func:`write_report` writes, ``dispersion.json`` first: the two plots only when a crop
    was measured, and one ``attention_<y>_<x>.tif`` per query point."""
    plots = [out / "dispersion_vs_n.png", out / "dispersion_histogram.png"] if any(s.sema for s in steps) else []
    return [out / "dispersion.json", *plots, *(out / f"attention_{y}_{x}.tif" for y, x in points)]


def write_report(
    out: Path,
    steps: list[ExperimentStep],
    settings: dict[str, Any],
    points: dict[tuple[int, int], list[StageAttention]],
    *,
    overwrite: bool = False,
) -> list[Path]:
    """Write every file of a dispersion run into ``out``; refuses to overwrite unless asked.

    The plots need at least one measured crop; query points alone give the JSON and their stacks.
    The files appear together or not at all: each is written to a temporary name first, and they are
    renamed into place only once every one is complete. Returns the paths, as :func:`report_targets`.
    """
    if not steps and not points:
        raise ValueError("nothing to write: measure the dispersion or query a point first")
    targets = report_targets(out, steps, points)
    for path in targets:
        check_output(path, overwrite=overwrite)
    report = {
        "settings": settings,
        "histogram_edges": HIST_EDGES.tolist(),
        "steps": steps_to_json(steps),
        "points": {
            f"{y},{x}": [{"stage": s.stage, "kind": s.kind, "tokens": s.tokens, "mean_weight": s.mean_weight} for s in st]
            for (y, x), st in points.items()
        },
    }
    created = not out.exists()
    try:
        # ExitStack leaves its contexts last-in first-out: the stacks and plots are renamed into place
        # first and dispersion.json (entered first) last, as it lists the rest. An error anywhere inside
        # reaches every atomic_write, which then deletes its temporary and leaves its path alone.
        with ExitStack() as files:
            temporary = {path: files.enter_context(atomic_write(path, overwrite=overwrite)) for path in targets}
            plots = [path for path in targets if path.suffix == ".png"]
            if plots:
                _save_png(statistics_figure(steps), temporary[plots[0]])
                _save_png(histogram_figure(steps), temporary[plots[1]])
            for (y, x), stages in points.items():
                _write_stack(temporary[out / f"attention_{y}_{x}.tif"], (y, x), stages)
            temporary[targets[0]].write_text(json.dumps(report, indent=1))
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # the folder this call made, left empty: remove it too
        raise
    return targets
