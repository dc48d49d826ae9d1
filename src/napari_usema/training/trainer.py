"""The training loop, as a generator of progress records (one per step) so callers can cancel.

AdamW with warm-up and cosine decay, Dice + CE with deep supervision, gradient clipping, autocast on
CUDA, DistributedDataParallel under torchrun, periodic saves, resume, and the best checkpoint chosen
on the validation metric (F1 at IoU 0.5 for instances, DSC for semantic classes).

A run is bounded by steps and, optionally, by wall-clock seconds (``time_budget_s``): the cosine then
follows whichever runs out first, so a "train for 5 minutes" run still ends at a low learning rate.
On an accelerator, the next batches are drawn on background threads while the device computes the current one.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from napari_usema.analysis.metrics import instance_f1, semantic_scores
from napari_usema.inference.devices import autocast
from napari_usema.inference.predictor import predict_probabilities
from napari_usema.inference.tiling import TilingConfig
from napari_usema.io.checkpoint import save_checkpoint
from napari_usema.io.metadata import CheckpointMetadata
from napari_usema.model import USEMA, build_model
from napari_usema.postprocess.config import WatershedConfig
from napari_usema.postprocess.watershed import classes_from_probabilities, instances_from_probabilities
from napari_usema.training.data import AugmentConfig, PatchSampler, Sample
from napari_usema.training.distributed import World, agree_on_max, barrier, rank_device
from napari_usema.training.losses import deep_supervision_loss

# Batches drawn ahead on an accelerator, each on its own thread.
_PREFETCH_THREADS = 4


@dataclass(frozen=True)
class TrainingConfig:
    """Defaults for training from scratch; fine-tuning overrides a few (see finetune.py)."""

    steps: int = 2000
    patch: int = 256
    batch: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float = 12.0
    foreground_oversample: float = 0.33
    val_every: int = 200  # 0: validate and save only at the end
    seed: int = 0
    device: str = "auto"
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    watershed: WatershedConfig = field(default_factory=WatershedConfig)
    val_tile: int = 512
    save_state: bool = True  # also write NAME.last.safetensors and the resumable NAME.state.pt
    # Keep the first N encoder stages fixed: their full-resolution backward pass dominates a step's
    # cost on a CPU, and low-level features transfer well (used by fine-tuning).
    frozen_encoder_stages: int = 0
    # Stop after this many seconds of training (validation included), whichever of this and ``steps``
    # comes first; the learning-rate schedule follows the same clock. None: steps alone.
    time_budget_s: float | None = None


@dataclass(frozen=True)
class TrainingProgress:
    """One training step; ``val_metric`` is set on the steps that validated."""

    step: int
    steps: int
    loss: float
    lr: float
    seconds: float
    val_metric: float | None = None
    best_metric: float | None = None
    event: str = "step"


def output_paths(out: Path) -> tuple[Path, Path]:
    """The periodic ``NAME.last.safetensors`` and resumable ``NAME.state.pt`` beside ``out``."""
    stem = out.name.removesuffix(".safetensors")
    return out.with_name(stem + ".last.safetensors"), out.with_name(stem + ".state.pt")


def validate(
    model: USEMA, samples: Sequence[Sample], metadata: CheckpointMetadata, config: TrainingConfig, device: torch.device
) -> float:
    """Mean F1@0.5 (instance) or mean foreground DSC (semantic) over ``samples``."""
    tiling = TilingConfig(tile=config.val_tile, overlap=0.25, batch=1, device=str(device))
    scores = []
    model.eval()
    for sample in samples:
        probs = predict_probabilities(model, sample.image, tiling)
        if metadata.task == "instance":
            scores.append(instance_f1(sample.labels, instances_from_probabilities(probs, config.watershed)).f1)
        else:
            ids = list(range(1, len(metadata.class_names)))
            scores.append(semantic_scores(sample.labels, classes_from_probabilities(probs), ids)["dsc"]["mean"])
    model.train()
    return float(np.mean(scores))


def steps_for_epochs(epochs: float, images: int, batch: int, world_size: int = 1) -> int:
    """Optimiser steps for ``epochs`` passes over ``images`` training images, one patch from each a pass.

    Under torchrun each process draws ``batch`` patches a step from its own share of the images (the
    distributed sampler pads the shares to equal length), so a pass takes ceil(images / world_size) / batch steps.
    """
    per_process = math.ceil(images / world_size)
    return max(1, math.ceil(epochs * per_process / batch))


def schedule_factor(config: TrainingConfig, step: int, seconds: float) -> float:
    """Learning-rate multiplier: linear warm-up over steps, then a cosine over the run's progress.

    Progress is the larger of the fraction of steps done and (with a time budget) of time spent.
    """
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    if config.time_budget_s:
        progress = max(progress, seconds / config.time_budget_s)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def train(
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample],
    metadata: CheckpointMetadata,
    config: TrainingConfig,
    out: str | Path,
    *,
    init_model: USEMA | None = None,
    resume: bool = False,
    world: World = World(),
) -> Iterator[TrainingProgress]:
    """Train and save ``out`` (the best on validation; the last when there is no validation set).

    Args:
        train_samples: Images to draw patches from.
        val_samples: Images to score every ``config.val_every`` steps (may be empty).
        metadata: Written into every checkpoint (provenance gains steps and metrics).
        config: Hyper-parameters.
        out: The ``.safetensors`` to write; ``NAME.last.safetensors`` and ``NAME.state.pt`` go beside it.
        init_model: Start from these weights (fine-tuning) instead of a fresh network.
        resume: Continue from ``NAME.state.pt`` if it exists.
        world: The torchrun world; only rank 0 validates and writes.
    """
    out = Path(out)
    _, state_path = output_paths(out)
    device = rank_device(world, config.device)
    torch.manual_seed(config.seed)
    model = init_model if init_model is not None else build_model(metadata.config)
    model = model.to(device).train()
    for stage in model.encoder[: config.frozen_encoder_stages]:
        stage.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = _adamw(trainable, config)
    start, best, history, spent = 0, -1.0, [], 0.0
    if resume and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, best, history = int(state["step"]), float(state["best"]), list(state["history"])
        spent = float(state.get("seconds", 0.0))  # absent in states written before time budgets
    net: torch.nn.Module = DistributedDataParallel(model) if world.distributed else model
    sampler = PatchSampler(train_samples, config.patch, config.augment, config.foreground_oversample)
    order = _IndexStream(len(train_samples), world, config.seed)

    def batch_plan(step: int) -> tuple[list[int], np.random.Generator]:
        """The images and the random stream of one step (per step: resumed runs repeat)."""
        return order.take(config.batch, step), np.random.default_rng([config.seed, world.rank, step])

    began = time.perf_counter() - spent
    # On a CPU the drawing would only compete with the network for the same cores (measured: 18%
    # slower), so it stays inline there.
    ahead = _PREFETCH_THREADS if device.type != "cpu" else 0
    batches = _batch_stream(sampler, batch_plan, start, config.steps, ahead)
    with closing(batches):
        for step, batch in enumerate(batches, start):
            images, targets, weights = (t.to(device, non_blocking=True) for t in batch)
            seconds = time.perf_counter() - began
            if config.time_budget_s is not None:
                # The clock sets the rate: ranks must agree on it, or their weights drift apart.
                seconds = agree_on_max(seconds, world)
            for group in optimizer.param_groups:
                group["lr"] = config.lr * schedule_factor(config, step, seconds)
            with autocast(device):
                outputs = net(images, deep_supervision=metadata.config.deep_supervision)
            outputs = outputs if isinstance(outputs, list) else [outputs]
            loss = deep_supervision_loss(outputs, targets, weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
            optimizer.step()
            done = step + 1
            out_of_time = config.time_budget_s is not None and seconds >= config.time_budget_s
            record = TrainingProgress(
                done, config.steps, float(loss.detach()), optimizer.param_groups[0]["lr"], time.perf_counter() - began
            )
            history.append({"step": done, "loss": record.loss})
            if (config.val_every > 0 and done % config.val_every == 0) or done == config.steps or out_of_time:
                record, best = _checkpoint_step(model, val_samples, metadata, config, out, record, best, history, world, device)
                if world.is_main and config.save_state:
                    torch.save(
                        {
                            "model": model.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "step": done,
                            "best": best,
                            "history": history,
                            "seconds": time.perf_counter() - began,
                        },
                        state_path,
                    )
                barrier(world)
            yield record
            if out_of_time:
                break


def _batch_stream(
    sampler: PatchSampler,
    plan: Callable[[int], tuple[list[int], np.random.Generator]],
    start: int,
    stop: int,
    ahead: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The batches of steps ``start..stop-1``, the same whether drawn inline or ahead.

    With ``ahead`` > 0, that many batches are drawn on as many threads while the caller trains on the
    current one. One thread would be a bottleneck: a batch of 32 polyp patches takes ~0.17 s of a core,
    about as long as an H200 step of the ``small`` preset (5.9 steps/s measured). The numpy, scipy and
    torch calls of the drawing release the GIL. ``plan`` is called on the caller's thread only, in step
    order (the index stream keeps state).
    """
    if not ahead:
        for step in range(start, stop):
            yield sampler.batch(*plan(step))
        return
    with ThreadPoolExecutor(max_workers=ahead) as pool:
        upcoming: deque[Future] = deque(pool.submit(sampler.batch, *plan(s)) for s in range(start, min(start + ahead, stop)))
        try:
            for step in range(start, stop):
                batch = upcoming.popleft().result()
                if step + ahead < stop:
                    upcoming.append(pool.submit(sampler.batch, *plan(step + ahead)))
                yield batch
        finally:  # stopped early (time budget, cancel): drop what was queued
            for pending in upcoming:
                pending.cancel()


def _checkpoint_step(
    model: USEMA,
    val_samples: Sequence[Sample],
    metadata: CheckpointMetadata,
    config: TrainingConfig,
    out: Path,
    record: TrainingProgress,
    best: float,
    history: list,
    world: World,
    device: torch.device,
) -> tuple[TrainingProgress, float]:
    """Validate (rank 0), save the last and, if it improved, the best checkpoint."""
    if not world.is_main:
        return record, best
    last_path, _ = output_paths(out)
    provenance = {"steps": record.step, "training": _jsonable(asdict(config))}
    metric = validate(model, val_samples, metadata, config, device) if val_samples else None
    meta = metadata.with_provenance(**provenance, val_metric=metric)
    if config.save_state:
        save_checkpoint(last_path, model, meta)
    event = "saved"
    if metric is None or metric > best:
        best = metric if metric is not None else best
        save_checkpoint(out, model, meta)
        event = "best"
    history[-1]["val"] = metric
    return TrainingProgress(
        record.step, record.steps, record.loss, record.lr, record.seconds, metric, best if best >= 0 else None, event
    ), best


def _adamw(params: list[torch.nn.Parameter], config: TrainingConfig) -> torch.optim.AdamW:
    """AdamW, fused where this torch supports it (3x faster steps on a CPU: 14 ms against 41 ms for
    the `small` preset), else the default implementation; both compute the same update."""
    try:
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch: no fused kernel for this device
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class _IndexStream:
    """Which images each step draws from: DistributedSampler epochs, cycled, so ranks never share."""

    def __init__(self, n: int, world: World, seed: int) -> None:
        self.sampler = DistributedSampler(range(n), num_replicas=world.size, rank=world.rank, shuffle=True, seed=seed)
        self.per_epoch = len(self.sampler)
        self._epoch, self._order = -1, []

    def take(self, batch: int, step: int) -> list[int]:
        out = []
        for i in range(step * batch, (step + 1) * batch):
            epoch = i // self.per_epoch
            if epoch != self._epoch:
                self.sampler.set_epoch(epoch)
                self._epoch, self._order = epoch, list(self.sampler)
            out.append(self._order[i % self.per_epoch])
        return out
