"""Files of a dispersion run: ``dispersion.json``, PNG plots, and attention stacks per query point.

Shared by ``usema dispersion`` and the napari Attention explorer's Export, so both write the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ..io.outputs import atomic_write, check_output
from .attention_maps import StageAttention, stack_maps
from .dispersion import HIST_EDGES, ExperimentStep

STATS = (
    ("normalized_entropy", "entropy / log N"),
    ("n_times_max", "N x max score"),
    ("near_uniform_fraction", "fraction within eps of 1/N"),
)


def steps_to_json(steps: list[ExperimentStep]) -> list[dict[str, Any]]:
    return [{"crop": s.crop, "sema": s.sema, "full": s.full, "seconds_full": s.seconds_full, "note": s.note} for s in steps]


def head_mean(stage: dict[str, Any], key: str) -> float:
    return float(np.mean([h[key] for h in stage["heads"]]))


def plot_statistics(steps: list[ExperimentStep], path: Path, stage: int = 0) -> Path:
    """Each statistic against N (tokens at ``stage``), full attention vs SEMA's windows."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.2), tight_layout=True)
    rows = [s for s in steps if s.sema]
    for i, (key, title) in enumerate(STATS):
        ax = fig.add_subplot(1, 3, i + 1)
        n = [s.sema[stage]["tokens"] for s in rows]
        ax.plot(n, [head_mean(s.sema[stage], key) for s in rows], "o-", label="SEMA (window)")
        full = [(s.full[stage]["tokens"], head_mean(s.full[stage], key)) for s in rows if s.full]
        if full:
            ax.plot(*zip(*full, strict=True), "s--", label="full softmax")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"N (tokens at stage {stage})")
        ax.set_title(title, fontsize=10)
        if key == "n_times_max":
            ax.set_yscale("log")
        else:
            ax.ticklabel_format(axis="y", useOffset=False)
        ax.legend(fontsize=8)
    with atomic_write(path, overwrite=True) as temporary:
        fig.savefig(temporary, dpi=110, format="png")
    return path


def plot_histograms(steps: list[ExperimentStep], path: Path, stage: int = 0) -> Path:
    """Histogram of N x score at the largest crop that has both: scores piling up at 1 = dispersion."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.4), tight_layout=True)
    ax = fig.add_subplot(111)
    both = [s for s in steps if s.full]
    centres = (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2
    width = HIST_EDGES[1] - HIST_EDGES[0]
    for label, stats in (("SEMA (window)", both[-1].sema if both else None), ("full softmax", both[-1].full if both else None)):
        if stats is None:
            continue
        hist = np.sum([h["histogram"] for h in stats[stage]["heads"]], axis=0).astype(float)
        ax.bar(centres, hist / max(hist.sum(), 1), width=width, alpha=0.55, label=f"{label}, N={stats[stage]['keys_per_row']}")
    ax.axvline(1.0, color="k", lw=0.8, ls=":")
    ax.set_xlabel("N x score (1 = uniform, 1/N)")
    ax.set_ylabel("fraction of scores")
    ax.set_title(f"stage {stage}, crop {both[-1].crop if both else '-'} px", fontsize=10)
    ax.legend(fontsize=8)
    with atomic_write(path, overwrite=True) as temporary:
        fig.savefig(temporary, dpi=110, format="png")
    return path


def write_point_stack(out: Path, point: tuple[int, int], stages: list[StageAttention], *, overwrite: bool) -> Path:
    """``attention_<y>_<x>.tif``: the (stage, head) window/full score maps, names in the description."""
    path = out / f"attention_{point[0]}_{point[1]}.tif"
    stack, names = stack_maps(stages)
    meta = {"planes": names, "mean_weight": {f"stage {s.stage}": s.mean_weight for s in stages}, "point": list(point)}
    with atomic_write(path, overwrite=overwrite) as temporary:
        tifffile.imwrite(temporary, stack, description=json.dumps(meta), photometric="minisblack", metadata=None)
    return path


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
    Each file is written whole or not at all.
    """
    if not steps and not points:
        raise ValueError("nothing to write: measure the dispersion or query a point first")
    plots = [out / "dispersion_vs_n.png", out / "dispersion_histogram.png"] if any(s.sema for s in steps) else []
    targets = [out / "dispersion.json", *plots, *(out / f"attention_{y}_{x}.tif" for y, x in points)]
    for path in targets:
        check_output(path, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "settings": settings,
        "histogram_edges": HIST_EDGES.tolist(),
        "steps": steps_to_json(steps),
        "points": {
            f"{y},{x}": [{"stage": s.stage, "kind": s.kind, "tokens": s.tokens, "mean_weight": s.mean_weight} for s in st]
            for (y, x), st in points.items()
        },
    }
    if plots:
        plot_statistics(steps, plots[0])
        plot_histograms(steps, plots[1])
    stacks = [write_point_stack(out, p, st, overwrite=overwrite) for p, st in points.items()]
    with atomic_write(targets[0], overwrite=overwrite) as temporary:  # last: it lists what the run wrote
        temporary.write_text(json.dumps(report, indent=1))
    return [targets[0], *plots, *stacks]
