"""Fine-tuning a checkpoint on a user's corrected labels (click-to-correct), never over its parent."""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..inference.image_kind import count_kinds, kind_of_array, trained_kinds
from ..io import outputs
from ..io.checkpoint import LoadedModel
from .config import FINETUNE_DEFAULTS, TrainingConfig
from .data import Sample, make_sample, trained_diameter
from .trainer import TrainingProgress, train


@dataclass
class CorrectedPair:
    """One image with labels the user corrected.

    Attributes:
        image: ``(H, W)`` or ``(H, W, C)`` raw intensities.
        labels: ``(H, W)`` instance ids (instance models) or class ids (semantic models).
        region: ``(H, W)`` bool, where the labels are trusted; None: everywhere.
        name: Shown in provenance.
    """

    image: np.ndarray
    labels: np.ndarray
    region: np.ndarray | None = None
    name: str = "image"


def _kinds_after(parent: LoadedModel, pairs: Sequence[CorrectedPair]) -> dict[str, int] | None:
    """The parent's training image kinds plus those of the corrected images: what the fine-tuned model
    has seen, for its warning on images unlike them. None where the parent's are unknown: a few
    corrected images are not all it has seen."""
    inherited = trained_kinds(parent)
    if inherited is None:
        return None
    own = count_kinds(kind for kind in map(kind_of_array, (p.image for p in pairs)) if kind is not None)
    return {k: inherited.get(k, 0) + own.get(k, 0) for k in {*inherited, *own}}


class FinetuneError(ValueError):
    """The fine-tune cannot start: empty labels, a shape mismatch, or an output that would overwrite."""


def versioned_path(parent: Path, folder: Path | None = None) -> Path:
    """The first free ``NAME.ftN.safetensors`` beside ``parent`` (or in ``folder``); ``parent`` may be a
    checkpoint or a BioImage.IO package (``nuclei.zip`` -> ``nuclei.ft1.safetensors``)."""
    folder = folder or parent.parent
    base = re.sub(r"(\.ft\d+)?\.(safetensors|zip)$", "", parent.name)
    n = 1
    while (folder / f"{base}.ft{n}.safetensors").exists():
        n += 1
    return folder / f"{base}.ft{n}.safetensors"


def check_output(parent: Path | None, out: Path, overwrite: bool) -> None:
    """Refuse to write over the parent, ever, and over any existing file unless ``overwrite``; check
    that ``out`` names a ``.safetensors`` file in a writable folder (before any training)."""
    if parent is not None and Path(out).resolve() == Path(parent).resolve():
        raise FinetuneError(f"the fine-tuned model must not replace its parent {parent.name}; choose another --out")
    outputs.check_output(
        out, overwrite=overwrite, inputs=[parent] if parent else [], suffix=".safetensors", what="fine-tuned model"
    )


def make_samples(
    parent: LoadedModel, pairs: Sequence[CorrectedPair], channel: int | None = None, binarize: bool = False
) -> list[Sample]:
    """Turn corrected pairs into training samples, checking each has something to learn from."""
    meta = parent.metadata
    samples = []
    for i, pair in enumerate(pairs):
        labels = np.asarray(pair.labels)
        region = None if pair.region is None else np.asarray(pair.region, bool)
        if labels.shape != np.asarray(pair.image).shape[:2]:
            raise FinetuneError(f"{pair.name}: labels {labels.shape} do not match the image {np.asarray(pair.image).shape[:2]}")
        if region is not None and region.shape != labels.shape:
            raise FinetuneError(f"{pair.name}: the corrected region {region.shape} does not match the labels {labels.shape}")
        if region is not None and not region.any():
            raise FinetuneError(f"{pair.name}: the corrected region is empty; paint or draw the region you corrected")
        inside = labels if region is None else labels[region]
        if not np.any(inside):
            raise FinetuneError(f"{pair.name}: the labels are empty; paint some objects before fine-tuning")
        samples.append(
            make_sample(
                pair.name or f"image{i}",
                np.asarray(pair.image),
                labels,
                task=meta.task,
                in_channels=meta.input_channels,
                recipe=meta.normalization,
                channel=channel,
                region=region,
                scale=meta.input_scale,
                classes=len(meta.class_names),
                binarize=binarize,
            )
        )
    if not samples:
        raise FinetuneError("no image/label pairs to fine-tune on")
    return samples


def finetune(
    parent: LoadedModel,
    pairs: Sequence[CorrectedPair],
    out: str | Path,
    config: TrainingConfig = FINETUNE_DEFAULTS,
    *,
    channel: int | None = None,
    overwrite: bool = False,
    binarize: bool = False,
) -> Iterator[TrainingProgress]:
    """Train a copy of ``parent`` on ``pairs`` and save it to ``out`` with provenance naming the parent.

    The parent's weights and file are never modified.
    """
    out = Path(out)
    check_output(parent.path, out, overwrite)
    samples = make_samples(parent, pairs, channel, binarize)
    model = copy.deepcopy(parent.model).train()
    metadata = dataclasses.replace(parent.metadata, object_diameter=trained_diameter(samples, parent.metadata))
    metadata = metadata.with_provenance(
        parent=str(parent.path) if parent.path else None,
        parent_provenance=parent.metadata.provenance,
        data=[s.name for s in samples],
        kind="fine-tune",
        image_kinds=_kinds_after(parent, pairs),
    )
    yield from train(samples, [], metadata, config, out, init_model=model)
