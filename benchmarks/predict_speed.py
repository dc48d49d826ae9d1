"""End-to-end speed of ``usema predict`` against another revision, as a ratio measured in one run.

    python benchmarks/predict_speed.py --compare 9f1cade            # a git revision (checked out aside)
    python benchmarks/predict_speed.py --compare ../old-checkout    # or a folder holding src/napari_usema
    python benchmarks/predict_speed.py --compare ec0f020 --image src/napari_usema/samples/nuclei.tif --repeats 4
                                                                    # the start-up: README's first command

Both versions run the same command, in fresh processes, after one discarded warm-up run each, alternating
(baseline, current, baseline, ...):
``usema predict IMAGE --model MODEL --out DIR`` with the defaults, on a SIDE x SIDE image made by tiling
the bundled nuclei sample (real nuclei). Each version runs its own bundled model (the checkpoint format
has changed since older revisions). Prints one JSON line per run, then one with the best time of each and their ratio
(this machine is shared and noisy: the best of several is the figure), and how well the two label
images agree (F1@0.5 of one against the other: the speed must not come from different answers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
RUN = "import sys, napari_usema.cli.main as m; sys.exit(m.main(sys.argv[1:]))"


def make_image(path: Path, side: int) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from napari_usema._sample_data import load_nuclei

    tile = load_nuclei()
    reps = (-(-side // tile.shape[0]), -(-side // tile.shape[1]))
    tifffile.imwrite(path, np.tile(tile, reps)[:side, :side])


def source_tree(compare: str, work: Path) -> Path:
    """The ``src`` folder of the baseline: a folder given, or the revision checked out in ``work``."""
    given = Path(compare)
    if (given / "src" / "napari_usema").is_dir():
        return given.resolve() / "src"
    checkout = work / "baseline"
    add = ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(checkout), compare]
    subprocess.run(add, check=True, capture_output=True)
    return checkout / "src"


def run(src: Path, image: Path, model: str, out: Path, extra: list[str]) -> float:
    model_file = src.parent / "weights" / f"{model}.safetensors"
    env = dict(os.environ, PYTHONPATH=str(src))
    # Python caches compiled modules (__pycache__) unless told not to; a warm start is measured as on a
    # user's machine, even where the environment (such as this project's sandbox) turns that off.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    command = [sys.executable, "-c", RUN, "predict", str(image), "--model", str(model_file), "--out", str(out), "--overwrite"]
    command += extra
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"usema predict failed under {src}:\n{done.stderr[-2000:]}")
    return seconds


def agreement(a: Path, b: Path) -> float:
    from napari_usema.analysis.metrics import instance_f1

    return float(instance_f1(tifffile.imread(a), tifffile.imread(b)).f1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", required=True, help="a git revision, or a folder holding src/napari_usema")
    parser.add_argument("--side", type=int, default=2048, help="image side in pixels (default 2048)")
    parser.add_argument("--image", type=Path, help="segment this image instead of a SIDE x SIDE one (e.g. the sample)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each version (default 3)")
    parser.add_argument("--model", default="nuclei", help="bundled model name (default nuclei)")
    parser.add_argument("extra", nargs="*", help="further usema predict options for both versions, after --")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="usema-speed-") as folder:
        work = Path(folder)
        image = work / ("image" + (args.image.suffix if args.image else ".tif"))
        if args.image is None:
            make_image(image, args.side)
        else:  # the file's own bytes (its compression changes how it is read)
            shutil.copyfile(args.image, image)
        trees = {"baseline": source_tree(args.compare, work), "current": ROOT / "src"}
        times: dict[str, list[float]] = {name: [] for name in trees}
        try:
            for name, src in trees.items():  # a discarded warm-up: each version's first run compiles its modules
                run(src, image, args.model, work / name, args.extra)
            for repeat in range(args.repeats):
                for name, src in trees.items():
                    seconds = run(src, image, args.model, work / name, args.extra)
                    times[name].append(seconds)
                    line = {"bench": "predict_speed", "version": name, "run": repeat, "seconds": round(seconds, 2)}
                    print(json.dumps(line), flush=True)
            f1 = agreement(work / "baseline" / "image.tif", work / "current" / "image.tif")
        finally:
            if trees["baseline"].parent == work / "baseline":
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / "baseline")], check=False)
        best = {name: min(values) for name, values in times.items()}
        print(json.dumps({
            "bench": "predict_speed", "compare": args.compare, "model": args.model, "options": args.extra,
            "image": str(args.image) if args.image else f"{args.side}x{args.side}", "repeats": args.repeats,
            "baseline_best_s": round(best["baseline"], 2), "current_best_s": round(best["current"], 2),
            "speedup": round(best["baseline"] / best["current"], 3), "labels_f1_current_vs_baseline": round(f1, 4),
            "threads": os.cpu_count(),
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
