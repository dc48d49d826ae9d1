"""The correction tools, driven by a simulated user on the validation split: F1 before and after, and clicks.

    python benchmarks/click_correct.py [--model nuclei] [--data ../shared/data/microscopy]

For each validation image the bundled model's labels (its defaults, one pass) are corrected by a user
who knows the truth and follows three plain rules, in this order:

1. *Merges*: a predicted object that holds most (>= 50 %) of two or more true nuclei is split with one
   seed per nucleus, at each nucleus's deepest point inside it (``split_object``; one click per seed,
   and one for the *Split at seeds* button).
2. *False objects*: any other predicted object that matches no true nucleus at IoU 0.5 is removed with one
   click (``remove_object``): spurious objects, and misshapen ones, which rule 3 then adds again.
3. *Misses*: every true nucleus still unmatched gets one click at its deepest point (the maximum of its
   distance to its border), if that point is background (``add_object`` on the Correct tab's second look
   around the click, ``with_second_look``); one hidden under another object is left.

The user does not look at the tools' results or try again: it measures the tools, one click per error.
It is an optimistic user (it clicks exactly at each nucleus's deepest point), and the second look's zoom
(``inference/local.py``) was chosen on these same images: read the figures as the tools' ceiling here.
Prints one JSON line per image and a summary line (mean F1 before and after, clicks per 100 true nuclei).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from napari_usema.analysis.metrics import instance_f1
from napari_usema.inference.local import with_second_look
from napari_usema.inference.pipeline import drive, segment
from napari_usema.io.bundled import resolve_model
from napari_usema.io.checkpoint import load_checkpoint
from napari_usema.io.images import find_pairs, read_image
from napari_usema.postprocess.corrections import add_object, remove_object, split_object
from napari_usema.training.data import read_name_list

ROOT = Path(__file__).resolve().parents[1]
ADD_SECONDS: list[float] = []  # the time of each add click (a second look of the network, then the add)


def overlaps(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """``(n_truth + 1, n_pred + 1)`` pixel counts of every (true id, predicted id) pair, ids as indices."""
    n_t, n_p = int(truth.max()) + 1, int(pred.max()) + 1
    return np.bincount(truth.ravel().astype(np.int64) * n_p + pred.ravel(), minlength=n_t * n_p).reshape(n_t, n_p)


def matches(truth: np.ndarray, pred: np.ndarray) -> tuple[set[int], set[int]]:
    """True and predicted ids in a pair with IoU >= 0.5 (such pairs are one to one)."""
    counts = overlaps(truth, pred)
    area_t, area_p = counts.sum(1, keepdims=True), counts.sum(0, keepdims=True)
    iou = counts / np.maximum(area_t + area_p - counts, 1)
    iou[0, :] = iou[:, 0] = 0
    t, p = np.nonzero(iou >= 0.5)
    return set(t.tolist()), set(p.tolist())


def deepest_point(mask: np.ndarray) -> tuple[int, int]:
    """The pixel of ``mask`` farthest from its border."""
    distance = ndi.distance_transform_edt(mask)
    return tuple(int(v) for v in np.unravel_index(np.argmax(distance), mask.shape))  # type: ignore[return-value]


def correct(truth: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, loaded, image) -> tuple[np.ndarray, int]:
    """The simulated user's corrected labels and its number of clicks; adds take the second look of the
    Correct tab (``with_second_look``), as in napari."""
    diameter = loaded.metadata.object_diameter
    clicks = 0
    counts = overlaps(truth, labels)
    area_t = counts.sum(1)
    for pid in range(1, counts.shape[1]):  # 1. merges
        held = [t for t in range(1, counts.shape[0]) if area_t[t] and counts[t, pid] >= 0.5 * area_t[t]]
        if len(held) >= 2:
            seeds = [deepest_point((truth == t) & (labels == pid)) for t in held]
            labels = split_object(labels, probabilities, seeds)
            clicks += len(seeds) + 1  # the seeds, and the Split at seeds button
    _, matched_p = matches(truth, labels)
    for pid in np.unique(labels):  # 2. false objects
        if pid and pid not in matched_p:
            labels = remove_object(labels, deepest_point(labels == pid))
            clicks += 1
    matched_t, _ = matches(truth, labels)
    for t in range(1, int(truth.max()) + 1):  # 3. misses
        if t in matched_t or not (truth == t).any():
            continue
        point = deepest_point(truth == t)
        if labels[point]:  # the click would land on another object: not a one-click fix
            continue
        start = time.perf_counter()
        looked = with_second_look(loaded, image, probabilities, point)
        labels = add_object(labels, looked, point, diameter=diameter)
        ADD_SECONDS.append(time.perf_counter() - start)
        clicks += 1
    return labels, clicks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "microscopy")
    parser.add_argument("--names", type=Path, default=ROOT / "weights" / "splits" / "nuclei_val.txt")
    args = parser.parse_args()
    loaded = load_checkpoint(resolve_model(args.model))
    pairs = find_pairs(args.data)
    before, after, clicks, nuclei, seconds = [], [], 0, 0, 0.0
    for name in read_name_list(args.names):
        image, truth = read_image(pairs[name][0]), read_image(pairs[name][1]).astype(np.int64)
        result = drive(segment(loaded, image, keep_probabilities=True))
        labels = np.asarray(result.labels).astype(np.int64)
        start = time.perf_counter()
        corrected, n = correct(truth, labels, result.probabilities, loaded, image)
        seconds += time.perf_counter() - start
        f1_before, f1_after = instance_f1(truth, labels).f1, instance_f1(truth, corrected).f1
        count = len(np.unique(truth)) - 1
        before.append(f1_before)
        after.append(f1_after)
        clicks += n
        nuclei += count
        print(
            json.dumps(
                {"image": name, "nuclei": count, "f1_before": round(f1_before, 4), "f1_after": round(f1_after, 4), "clicks": n}
            ),
            flush=True,
        )
    summary = {
        "bench": "click_correct",
        "model": args.model,
        "images": len(before),
        "nuclei": nuclei,
        "mean_f1_before": round(float(np.mean(before)), 4),
        "mean_f1_after": round(float(np.mean(after)), 4),
        "clicks_per_100_nuclei": round(100 * clicks / max(nuclei, 1), 1),
        "seconds_per_add_click": round(float(np.median(ADD_SECONDS)), 3) if ADD_SECONDS else None,
        "seconds_per_other_click": round((seconds - sum(ADD_SECONDS)) / max(clicks - len(ADD_SECONDS), 1), 4),
        "target": "F1 >= 0.95 after, <= 25 clicks per 100 nuclei",
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
