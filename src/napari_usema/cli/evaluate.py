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
    p.add_argument("--overwrite", action="store_true", help="replace the --json report if it exists")
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
    preds = _by_stem([p for p in _images(pred_dir) if not p.stem.endswith("_probabilities")], "predictions")
    truths = _by_stem(_images(truth_dir), "truth files")
    if names is not None:
        if not names:
            raise ValueError("the --names file lists no names (one image name per line, without its extension)")
        if not set(names) & set(truths):
            raise ValueError(f"none of the {len(names)} listed names is in {truth_dir}, e.g. {names[0]!r} (check --names)")
        truths = {n: truths[n] for n in names if n in truths}
        preds = {n: p for n, p in preds.items() if n in set(names)}
    missing = sorted(set(truths) - set(preds))
    extra = sorted(set(preds) - set(truths))
    pairs = {n: (preds[n], truths[n]) for n in sorted(set(preds) & set(truths))}
    return pairs, missing, extra


def _images(folder: Path) -> list[Path]:
    from napari_usema.io.images import list_images

    return list_images(folder)


def _by_stem(paths: list[Path], what: str) -> dict[str, Path]:
    """Files by name without extension; two files of one name (``a.tif``, ``a.png``) are an error."""
    found: dict[str, Path] = {}
    for path in paths:
        if path.stem in found:
            raise ValueError(f"two {what} share the name {path.stem!r}: {found[path.stem].name} and {path.name}; keep one")
        found[path.stem] = path
    return found


def read_labels(path: Path, what: str):
    """An integer label image; float, negative or multichannel files get a specific error."""
    from napari_usema.io.images import as_label_image, read_image

    return as_label_image(read_image(path), f"{what} {path.name}")


def choose_task(loaded: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[str, str]:
    """The task when ``--task`` is not given, and why: class ids are uint8 and few; instance labels are
    wider (``usema predict`` writes uint16/uint32) or many."""
    wide = [n for n, (p, _) in loaded.items() if p.dtype != np.uint8]
    if wide:
        return "instance", f"{wide[0]} is {loaded[wide[0]][0].dtype}"
    most = max(len(np.unique(p)) for p, _ in loaded.values())
    if most > 16:
        return "instance", f"a uint8 prediction holds {most} distinct ids, more than class maps have"
    return "semantic", f"every prediction is uint8 with at most {most} distinct ids"


def evaluate_pairs(pairs: dict[str, tuple[Path, Path]], task: str | None, tolerance: float, exclude_border: bool = False) -> dict:
    """Per-image scores and their means; with ``exclude_border`` also the challenge's border-free F1."""
    from napari_usema.analysis.metrics import instance_f1, semantic_scores, without_border_objects

    loaded = {n: (read_labels(p, "prediction"), read_labels(t, "truth")) for n, (p, t) in pairs.items()}
    if task is None:
        task, why = choose_task(loaded)
        print(f"scoring as {task}: {why} (--task instance|semantic to choose)", file=sys.stderr)
    if task == "semantic":
        loaded = _binary_truth_as_class_one(loaded)
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


def _binary_truth_as_class_one(loaded: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """Binary truth masks stored as 0/255 against 0/1 predictions: 255 is read as class 1, with a notice."""
    truth_ids = set().union(*(np.unique(t).tolist() for _, t in loaded.values()))
    pred_ids = set().union(*(np.unique(p).tolist() for p, _ in loaded.values()))
    if 255 in truth_ids and truth_ids <= {0, 255} and pred_ids <= {0, 1}:
        print("truth masks hold 0/255 and predictions 0/1: reading 255 as class 1", file=sys.stderr)
        return {n: (p, (t > 0).astype(np.uint8)) for n, (p, t) in loaded.items()}
    return loaded


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
    from napari_usema.io.outputs import atomic_write, check_output
    from napari_usema.training.data import read_name_list

    in_range("--tolerance", args.tolerance, 0)
    if args.json:
        check_output(args.json, overwrite=args.overwrite, suffix=".json", what="--json report")
    if args.names and not args.names.is_file():
        raise FileNotFoundError(f"--names {args.names} does not exist (a text file of image names, one per line)")
    if args.pred.resolve() == args.truth.resolve():
        raise ValueError(f"--pred and --truth are the same folder ({args.pred}): every prediction would be its own truth")
    names = read_name_list(args.names) if args.names else None
    pairs, missing, extra = match_files(args.pred, args.truth, names)
    for stem in missing:
        print(f"missing prediction: {stem}", file=sys.stderr)
    for stem in extra:
        print(f"extra prediction without truth: {stem}", file=sys.stderr)
    if not pairs:
        raise FileNotFoundError(f"no prediction in {args.pred} has a truth file of the same name in {args.truth}")
    report = evaluate_pairs(pairs, args.task, args.tolerance, args.exclude_border)
    if args.exclude_border and report["task"] != "instance":
        print("usema evaluate: --exclude-border applies to instance scores; semantic scores are unchanged", file=sys.stderr)
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
