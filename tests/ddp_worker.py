"""Run by test_training.py under torchrun: trains a few steps and saves this rank's weights."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from napari_usema.io.metadata import CheckpointMetadata, NormalizationRecipe
from napari_usema.model import build_model, preset
from napari_usema.training.data import AugmentConfig, make_sample
from napari_usema.training.distributed import init_world, shutdown
from napari_usema.training.trainer import TrainingConfig, train


def main(out_dir: Path) -> None:
    world = init_world("cpu")
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    samples = []
    for i in range(4):
        labels = np.zeros((48, 48), np.int32)
        for k in range(1, 4):
            y, x = rng.integers(6, 42, 2)
            labels[y - 4 : y + 4, x - 4 : x + 4] = k
        image = (labels > 0).astype(np.float32) + rng.normal(0, 0.1, labels.shape).astype(np.float32)
        samples.append(make_sample(f"s{i}", image, labels, task="instance", in_channels=1, recipe=NormalizationRecipe()))
    config = preset("tiny")
    metadata = CheckpointMetadata(config, "instance")
    schedule = TrainingConfig(steps=4, patch=32, batch=2, val_every=0, device="cpu", augment=AugmentConfig(), warmup_steps=1)
    torch.manual_seed(world.rank)  # different starting weights: DDP must broadcast rank 0's
    model = build_model(config)
    losses = [p.loss for p in train(samples, [], metadata, schedule, out_dir / "ddp.safetensors", init_model=model, world=world)]
    torch.save({"state": model.state_dict(), "losses": losses}, out_dir / f"rank{world.rank}.pt")
    shutdown(world)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
