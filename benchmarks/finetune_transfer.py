"""Does fine-tuning on a few corrected images fix a kind of image the model handles badly?

Recipe (all on ``../shared/data/microscopy``):
1. A *base* model trained on fluorescence images only (the training split's fluorescence images),
   so it has never seen colour-stained tissue; half its patches are inverted (``invert_probability``
   0.5), the option a user would pick for a model meant for bright and dark nuclei. Trained here
   unless ``--base`` names one.
2. Fine-tuned with the plugin's defaults (``FINETUNE_DEFAULTS``) on 2 H&E / haematoxylin tissue images.
3. Scored (F1 at IoU 0.5, default watershed) on the 7 other tissue images, before and after; and
   against the same network trained from scratch on the same 2 images with the same patches and
   budget, at the fine-tuning rate and at 1e-3 (the better of the two is reported as "scratch").

Usage:
    python benchmarks/finetune_transfer.py [--run-dir ../runs/transfer] [--base CKPT] [--base-steps 150]

The base behind the README's figures was trained on a GPU by ``weights/recipe/train_gpu.sh``
(``transfer_base``: the same fluorescence-only, half-inverted recipe, 7 minutes); pass it with ``--base``.

Prints a table and one JSON line; writes ``RUN_DIR/transfer.json``. The base training is resumable
(``RUN_DIR/base.state.pt``), and an existing ``RUN_DIR/base.safetensors`` is reused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from napari_usema.analysis.metrics import instance_f1
from napari_usema.inference.pipeline import drive, segment
from napari_usema.io.checkpoint import LoadedModel, load_checkpoint
from napari_usema.io.images import read_image
from napari_usema.io.metadata import INSTANCE_CLASSES, CheckpointMetadata, NormalizationRecipe
from napari_usema.model import USEMA, preset
from napari_usema.training.data import AugmentConfig, load_folder, read_name_list
from napari_usema.training.finetune import FINETUNE_DEFAULTS, CorrectedPair, finetune
from napari_usema.training.trainer import TrainingConfig, train

DATA = Path("../shared/data/microscopy")
TRAIN_LIST = Path("weights/splits/nuclei_train.txt")
# The two tissue images of the training split that come first by name; the other seven are the test set.
FINETUNE_IMAGES = ("dsb2018s1test_0f1f896d9ae5a047", "dsb2018s1test_1d9eacb3161f1e2b")


def modalities(data: Path) -> dict[str, str]:
    return {e["name"]: e["modality"] for e in json.loads((data / "manifest.json").read_text())}


def train_base(run_dir: Path, data: Path, steps: int, invert: float) -> Path:
    """A fluorescence-only `small` model (the bundled nuclei recipe, shorter)."""
    out = run_dir / "base.safetensors"
    kinds = modalities(data)
    names = [n for n in read_name_list(TRAIN_LIST) if kinds[n].startswith("fluorescence")]
    recipe = NormalizationRecipe()
    metadata = CheckpointMetadata(
        preset("small", in_channels=3),
        "instance",
        INSTANCE_CLASSES,
        recipe,
        {"data": str(data), "train_names": names, "note": "finetune_transfer base: fluorescence only"},
    )
    samples = load_folder(data, names, task="instance", in_channels=3, recipe=recipe)
    config = TrainingConfig(
        steps=steps, patch=128, batch=8, lr=1e-3, val_every=50, augment=AugmentConfig(invert_probability=invert)
    )
    print(f"training the fluorescence-only base on {len(samples)} images for {steps} steps -> {out}", flush=True)
    for record in train(samples, [], metadata, config, out, resume=True):
        if record.step % 10 == 0:
            print(f"  base step {record.step}/{steps} loss {record.loss:.3f} ({record.seconds:.0f} s)", flush=True)
    return out


def score(model: LoadedModel, pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    return {n: instance_f1(truth, drive(segment(model, image)).labels).f1 for n, (image, truth) in pairs.items()}


def run_finetune(parent: LoadedModel, pairs: list[CorrectedPair], out: Path, config: TrainingConfig) -> tuple[LoadedModel, float]:
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    for _ in finetune(parent, pairs, out, config):
        pass
    return load_checkpoint(out), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, default=Path("../runs/transfer"))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--base", type=Path, help="a fluorescence-only checkpoint to start from (default: train one)")
    parser.add_argument("--base-steps", type=int, default=150)
    parser.add_argument("--base-invert", type=float, default=0.5, help="inversion augmentation of the base (default 0.5)")
    args = parser.parse_args()
    args.run_dir.mkdir(parents=True, exist_ok=True)

    base_path = args.base or args.run_dir / "base.safetensors"
    if args.base is None and not (base_path.exists() and not (args.run_dir / "base.state.pt").exists()):
        base_path = train_base(args.run_dir, args.data, args.base_steps, args.base_invert)
        (args.run_dir / "base.state.pt").unlink(missing_ok=True)  # done: the next run reuses the base
    base = load_checkpoint(base_path)

    kinds = modalities(args.data)
    tissue = sorted(n for n, k in kinds.items() if "tissue" in k)
    test_names = [n for n in tissue if n not in FINETUNE_IMAGES]
    load = lambda n: (read_image(args.data / "images" / f"{n}.tif"), read_image(args.data / "masks" / f"{n}.tif"))  # noqa: E731
    test = {n: load(n) for n in test_names}
    corrected = [CorrectedPair(*load(n), None, n) for n in FINETUNE_IMAGES]

    before = score(base, test)
    tuned, tune_s = run_finetune(base, corrected, args.run_dir / "base.ft.safetensors", FINETUNE_DEFAULTS)
    after = score(tuned, test)
    # The same network, patches and budget without the pre-trained start, at the fine-tuning rate and
    # at training-from-scratch's own rate (1e-3); the better of the two is the bar to beat.
    scratch_arms = {}
    for lr in (FINETUNE_DEFAULTS.lr, TrainingConfig.lr):
        torch.manual_seed(0)
        fresh = LoadedModel(USEMA(base.metadata.config), base.metadata, None)
        scratch_config = dataclasses.replace(FINETUNE_DEFAULTS, frozen_encoder_stages=0, lr=lr)
        model, seconds = run_finetune(fresh, corrected, args.run_dir / f"scratch_lr{lr:g}.safetensors", scratch_config)
        scratch_arms[lr] = (score(model, test), seconds)
    mean = lambda d: float(np.mean(list(d.values())))  # noqa: E731
    scratch_lr = max(scratch_arms, key=lambda lr: mean(scratch_arms[lr][0]))
    from_scratch, scratch_s = scratch_arms[scratch_lr]

    print(f"\n{'tissue test image':34s} {'base':>6s} {'fine-tuned':>10s} {'scratch':>8s}")
    for n in test_names:
        print(f"{n:34s} {before[n]:6.3f} {after[n]:10.3f} {from_scratch[n]:8.3f}")
    print(f"{'mean F1@0.5':34s} {mean(before):6.3f} {mean(after):10.3f} {mean(from_scratch):8.3f}")
    result = {
        "bench": "finetune_transfer",
        "base": str(base_path),
        "base_steps": base.metadata.provenance.get("steps"),
        "finetune_images": list(FINETUNE_IMAGES),
        "test_images": test_names,
        "finetune": {k: getattr(FINETUNE_DEFAULTS, k) for k in ("steps", "patch", "batch", "lr", "frozen_encoder_stages")},
        "threads": torch.get_num_threads(),
        "f1_base": round(mean(before), 3),
        "f1_finetuned": round(mean(after), 3),
        "f1_scratch_same_budget": round(mean(from_scratch), 3),
        "scratch_lr": scratch_lr,
        "f1_scratch_by_lr": {f"{lr:g}": round(mean(arm[0]), 3) for lr, arm in scratch_arms.items()},
        "finetune_seconds": round(tune_s, 1),
        "scratch_seconds": round(scratch_s, 1),
        "per_image": {n: {"base": before[n], "finetuned": after[n], "scratch": from_scratch[n]} for n in test_names},
    }
    (args.run_dir / "transfer.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "per_image"}))


if __name__ == "__main__":
    main()
