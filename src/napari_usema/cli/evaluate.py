"""``usema evaluate``: score predicted labels against ground truth, per image and on average."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="F1@0.5 for instances, DSC and NSD for classes; files matched by name")
    p.add_argument("--pred", required=True, type=Path, help="folder of predicted labels")
    p.add_argument("--truth", required=True, type=Path, help="folder of ground-truth masks")
    p.add_argument("--task", choices=["instance", "semantic"], help="default: semantic if every prediction is uint8")
    p.add_argument("--json", type=Path, help="write per-image and mean metrics here")
    p.add_argument("--tolerance", type=float, default=2.0, help="NSD tolerance in pixels (default 2)")
    p.add_argument("--names", type=Path, help="only evaluate the names listed in this file (e.g. a validation split)")
    p.add_argument(
        "--exclude-border",
        action="store_true",
        help="also score instances as the NeurIPS 2022 challenge does, without the objects within 2 px of the image "
        "edge in truth and prediction (reported separately)",
    )
    p.set_defaults(handler=run)


def match_files(
    pred_dir: Path, truth_dir: Path, names: list[str] | None
) -> tuple[dict[str, tuple[Path, Path]], list[str], list[str]]:
    """Pairs by file stem, plus the stems missing from the predictions and the extra ones."""
    from napari_usema.io.images import list_images

    preds = {p.stem: p for p in list_images(pred_dir) if not p.stem.endswith("_probabilities")}
    truths = {p.stem: p for p in list_images(truth_dir)}
    if names is not None:
        truths = {n: truths[n] for n in names if n in truths}
        preds = {n: p for n, p in preds.items() if n in set(names)}
    missing = sorted(set(truths) - set(preds))
    extra = sorted(set(preds) - set(truths))
    pairs = {n: (preds[n], truths[n]) for n in sorted(set(preds) & set(truths))}
    return pairs, missing, extra


def evaluate_pairs(pairs: dict[str, tuple[Path, Path]], task: str | None, tolerance: float, exclude_border: bool = False) -> dict:
    """Per-image scores and their means; with ``exclude_border`` also the challenge's border-free F1."""
    from napari_usema.analysis.metrics import instance_f1, semantic_scores, without_border_objects
    from napari_usema.io.images import read_image

    loaded = {n: (read_image(p), read_image(t)) for n, (p, t) in pairs.items()}
    if task is None:
        task = "semantic" if all(p.dtype == np.uint8 for p, _ in loaded.values()) else "instance"
    per_image: dict[str, dict] = {}
    # One class list for every image, so per-class means are over the same classes.
    class_ids = sorted(set().union(*(np.unique(a).tolist() for pair in loaded.values() for a in pair)) - {0}) or [1]
    for name, (pred, truth) in loaded.items():
        if pred.shape != truth.shape:
            raise ValueError(f"{name}: prediction {pred.shape} and truth {truth.shape} differ in shape")
        if task == "instance":
            per_image[name] = instance_f1(truth, pred).to_dict()
        else:
            per_image[name] = semantic_scores(truth, pred, class_ids, tolerance)
    report = {"task": task, "mean": _means(per_image, task), "per_image": per_image}
    if exclude_border and task == "instance":
        border = {
            name: instance_f1(without_border_objects(truth), without_border_objects(pred)).to_dict()
            for name, (pred, truth) in loaded.items()
        }
        report["excluding_border"] = {"mean": _means(border, task), "per_image": border}
    return report


def _means(per_image: dict[str, dict], task: str) -> dict:
    if not per_image:
        return {}
    if task == "instance":
        return {k: float(np.mean([s[k] for s in per_image.values()])) for k in ("f1", "precision", "recall")}
    out: dict[str, dict[str, float]] = {}
    for metric in ("dsc", "nsd"):
        keys = sorted({k for s in per_image.values() for k in s[metric]})
        out[metric] = {k: float(np.mean([s[metric][k] for s in per_image.values() if k in s[metric]])) for k in keys}
    return out


def run(args: argparse.Namespace) -> int:
    from napari_usema._checks import in_range
    from napari_usema.io.outputs import atomic_write
    from napari_usema.training.data import read_name_list

    in_range("--tolerance", args.tolerance, 0)
    names = read_name_list(args.names) if args.names else None
    pairs, missing, extra = match_files(args.pred, args.truth, names)
    for stem in missing:
        print(f"missing prediction: {stem}", file=sys.stderr)
    for stem in extra:
        print(f"extra prediction without truth: {stem}", file=sys.stderr)
    if not pairs:
        raise FileNotFoundError(f"no prediction in {args.pred} has a truth file of the same name in {args.truth}")
    report = evaluate_pairs(pairs, args.task, args.tolerance, args.exclude_border)
    report.update(missing=missing, extra=extra)
    _print_table(report)
    if args.json:
        with atomic_write(args.json, overwrite=True) as temporary:
            temporary.write_text(json.dumps(report, indent=2))
    return 0


def _print_table(report: dict) -> None:
    if report["task"] == "instance":
        print(f"{'image':<40} {'F1':>6} {'prec':>6} {'recall':>6} {'TP':>5} {'FP':>5} {'FN':>5}")
        for name, s in report["per_image"].items():
            print(
                f"{name:<40} {s['f1']:6.3f} {s['precision']:6.3f} {s['recall']:6.3f} "
                f"{s['true_positives']:5d} {s['false_positives']:5d} {s['false_negatives']:5d}"
            )
        m = report["mean"]
        print(
            f"{'mean (' + str(len(report['per_image'])) + ' images)':<40} {m['f1']:6.3f} {m['precision']:6.3f} {m['recall']:6.3f}"
        )
        if "excluding_border" in report:
            b = report["excluding_border"]["mean"]
            print(f"{'mean without 2-px border objects':<40} {b['f1']:6.3f} {b['precision']:6.3f} {b['recall']:6.3f}")
    else:
        print(f"{'image':<40} {'DSC':>6} {'NSD':>6}")
        for name, s in report["per_image"].items():
            print(f"{name:<40} {s['dsc']['mean']:6.3f} {s['nsd']['mean']:6.3f}")
        m = report["mean"]
        print(f"{'mean (' + str(len(report['per_image'])) + ' images)':<40} {m['dsc']['mean']:6.3f} {m['nsd']['mean']:6.3f}")
