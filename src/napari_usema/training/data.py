"""Training samples: normalised images with class targets, and augmented patch sampling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from skimage import segmentation

from ..inference.channels import plan_channels
from ..inference.normalization import normalize
from ..inference.rescale import resize_image, resize_labels
from ..io.images import as_label_image, find_pairs, read_image
from ..io.metadata import CheckpointMetadata, NormalizationRecipe
from ..postprocess.measure import median_diameter
from .config import AugmentConfig


@dataclass
class Sample:
    """One training image.

    Attributes:
        name: File stem.
        image: ``(C, H, W)`` float32, normalised.
        target: ``(H, W)`` uint8 class ids (0 background, 1 interior, 2 boundary for instances).
        labels: ``(H, W)`` the original masks (instance ids or class ids), for validation.
        region: ``(H, W)`` bool: where the loss counts (all True unless a fine-tune region is set).
    """

    name: str
    image: np.ndarray
    target: np.ndarray
    labels: np.ndarray
    region: np.ndarray


def make_sample(
    name: str,
    image: np.ndarray,
    labels: np.ndarray,
    *,
    task: str,
    in_channels: int,
    recipe: NormalizationRecipe,
    channel: int | None = None,
    region: np.ndarray | None = None,
    scale: float = 1.0,
    classes: int | None = None,
    binarize: bool = False,
) -> Sample:
    """Build a :class:`Sample` from a raw image ``(H, W[, C])`` and its masks ``(H, W)``.

    ``scale`` resizes all three first (the model's ``input_scale``), exactly as inference will.
    ``classes`` (semantic tasks): the model's class count, which the mask ids must fit; ``binarize``
    makes every non-zero id class 1 (for masks stored as 0/255).
    """
    labels = check_labels(name, labels, np.asarray(image).shape[:2], task, classes, binarize)
    if scale != 1:
        image = resize_image(image, scale)
        labels = resize_labels(labels, image.shape[:2])
        region = None if region is None else resize_labels(np.asarray(region, bool), image.shape[:2])
    plan = plan_channels(image.shape, in_channels, channel)
    chw = normalize(plan.take(image), recipe)
    target = instance_targets(labels) if task == "instance" else labels.astype(np.uint8)
    region = np.ones(labels.shape, bool) if region is None else np.asarray(region, bool)
    return Sample(name, chw, target, labels, region)


def check_labels(
    name: str, labels: np.ndarray, shape: tuple[int, ...], task: str, classes: int | None = None, binarize: bool = False
) -> np.ndarray:
    """Masks as a ``(H, W)`` integer array that fits the task, or a ``ValueError`` saying what is wrong
    and what to do. RGB masks with identical channels are read as one."""
    labels = np.asarray(labels)
    if labels.shape[:2] != tuple(shape) or labels.ndim > 3:
        raise ValueError(f"{name}: labels {labels.shape} do not match the image {tuple(shape)}: give one 2-D mask per image")
    labels = as_label_image(labels, name)
    if task != "semantic":
        return labels
    if binarize:
        return (labels > 0).astype(np.uint8)
    ids = np.unique(labels)
    if classes is not None and ids.max() >= classes:
        found = ", ".join(str(int(i)) for i in ids[:8]) + (", ..." if len(ids) > 8 else "")
        hint = (
            "masks stored as 0/255: pass --binarize to read every non-zero id as class 1"
            if set(ids.tolist()) <= {0, 255} and classes == 2
            else f"{len(ids)} distinct ids look like instance labels; train an instance model (--task instance)"
            if len(ids) > classes + 1
            else "give class ids only"
        )
        raise ValueError(f"{name}: the masks hold ids {found}; this model's classes are 0..{classes - 1}: {hint}")
    return labels


def load_folder(
    data_dir: str | Path,
    names: Sequence[str] | None,
    *,
    task: str,
    in_channels: int,
    recipe: NormalizationRecipe,
    scale: float = 1.0,
    classes: int | None = None,
    binarize: bool = False,
) -> list[Sample]:
    """Load the pairs of a ``DIR/images`` + ``DIR/masks`` folder, optionally only ``names`` (see
    :func:`make_sample` for ``classes`` and ``binarize``)."""
    pairs = find_pairs(data_dir)
    if names is not None:
        unknown = sorted(set(names) - set(pairs))
        if unknown:
            raise ValueError(f"{len(unknown)} listed names are not in {data_dir}, e.g. {unknown[0]}")
        pairs = {n: pairs[n] for n in names}
    return [
        make_sample(
            n,
            read_image(i),
            read_image(m),
            task=task,
            in_channels=in_channels,
            recipe=recipe,
            scale=scale,
            classes=classes,
            binarize=binarize,
        )
        for n, (i, m) in pairs.items()
    ]


def read_name_list(path: str | Path) -> list[str]:
    """Names from a text file, one per line (blank lines and ``#`` comments skipped)."""
    lines = Path(path).read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


class PatchSampler:
    """Draws augmented ``patch x patch`` crops from samples, oversampling foreground.

    Args:
        samples: The images to draw from.
        patch: Side of the square patch.
        augment: Augmentations (None: none).
        foreground_oversample: Probability that a patch is centred on a foreground pixel. Where a
            sample is trusted only in a region (a fine-tune on corrections), the other patches are
            centred in that region.
    """

    def __init__(
        self, samples: Sequence[Sample], patch: int, augment: AugmentConfig | None, foreground_oversample: float = 0.33
    ) -> None:
        if not samples:
            raise ValueError("no training samples")
        self.samples, self.patch, self.augment = list(samples), patch, augment
        self.foreground_oversample = foreground_oversample
        self._foreground = [np.argwhere((s.target > 0) & s.region) for s in self.samples]
        # A fine-tune on corrections trusts a few regions of an image: every patch is centred in one, or
        # most patches would carry no loss at all (weight 0 everywhere).
        self._trusted = [np.argwhere(s.region) if not s.region.all() else None for s in self.samples]

    def draw(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One patch of sample ``index``: image ``(C, P, P)``, target ``(P, P)``, weight ``(P, P)``."""
        sample = self.samples[index % len(self.samples)]
        aug = self.augment
        scale = rng.uniform(*aug.scale_range) if aug else 1.0
        size = max(8, round(self.patch / scale))  # crop this much, then resize to the patch
        fg = self._foreground[index % len(self.samples)]
        centre = None
        trusted = self._trusted[index % len(self.samples)]
        if len(fg) and rng.random() < self.foreground_oversample:
            centre = fg[rng.integers(len(fg))]
        elif trusted is not None and len(trusted):
            centre = trusted[rng.integers(len(trusted))]
        image, target, weight = _crop(sample, size, centre, rng)
        if size != self.patch:
            image, target, weight = _resize(image, target, weight, self.patch)
        if aug:
            image, target, weight = _augment(image, target, weight, aug, rng)
        return image, target, weight

    def batch(self, indices: Sequence[int], rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stack patches: images ``(B, C, P, P)``, targets ``(B, P, P)`` long, weights ``(B, P, P)``."""
        parts = [self.draw(i, rng) for i in indices]
        images, targets, weights = (np.stack(p) for p in zip(*parts, strict=True))
        return torch.from_numpy(images), torch.from_numpy(targets).long(), torch.from_numpy(weights)


def _crop(sample: Sample, size: int, centre: np.ndarray | None, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """A ``size``-sided crop (zero-padded, weight 0 outside the image), around ``centre`` if given."""
    _, h, w = sample.image.shape
    if centre is None:
        y0, x0 = rng.integers(0, max(h - size, 0) + 1), rng.integers(0, max(w - size, 0) + 1)
    else:
        y0 = int(np.clip(centre[0] - size // 2 + rng.integers(-size // 4, size // 4 + 1), 0, max(h - size, 0)))
        x0 = int(np.clip(centre[1] - size // 2 + rng.integers(-size // 4, size // 4 + 1), 0, max(w - size, 0)))
    ys, xs = slice(y0, y0 + size), slice(x0, x0 + size)
    image, target = sample.image[:, ys, xs], sample.target[ys, xs]
    weight = sample.region[ys, xs].astype(np.float32)
    ph, pw = size - image.shape[1], size - image.shape[2]
    if ph or pw:
        image = np.pad(image, ((0, 0), (0, ph), (0, pw)))
        target = np.pad(target, ((0, ph), (0, pw)))
        weight = np.pad(weight, ((0, ph), (0, pw)))
    return image, target, weight


def _resize(image: np.ndarray, target: np.ndarray, weight: np.ndarray, patch: int) -> tuple[np.ndarray, ...]:
    img = F.interpolate(
        torch.from_numpy(np.ascontiguousarray(image))[None], size=(patch, patch), mode="bilinear", align_corners=False
    )
    tw = torch.from_numpy(np.stack([target.astype(np.float32), weight]))[None]
    tw = F.interpolate(tw, size=(patch, patch), mode="nearest")[0]
    return img[0].numpy(), tw[0].numpy().astype(np.uint8), tw[1].numpy()


def _augment(
    image: np.ndarray, target: np.ndarray, weight: np.ndarray, aug: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    k = int(rng.integers(4)) if aug.rot90 else 0
    flip = aug.flips and rng.random() < 0.5

    def geometric(a: np.ndarray) -> np.ndarray:
        a = np.rot90(a, k, axes=(-2, -1))
        return a[..., ::-1] if flip else a

    image, target, weight = geometric(image), geometric(target), geometric(weight)
    if aug.blur_probability and rng.random() < aug.blur_probability:
        image = ndi.gaussian_filter(image, sigma=(0, *(rng.uniform(0.5, 1.5),) * 2))
    if aug.invert_probability and rng.random() < aug.invert_probability:  # no draw when off: recipes repeat
        image = 1 - image
    if aug.colour:  # no draw when off: recipes repeat
        channels = (image.shape[0], 1, 1)
        gain = rng.uniform(1 - aug.colour, 1 + aug.colour, channels)
        image = image * gain + rng.uniform(-aug.colour, aug.colour, channels) / 2
    if aug.intensity:
        contrast = rng.uniform(1 - aug.intensity, 1 + aug.intensity)
        brightness = rng.uniform(-aug.intensity, aug.intensity) / 2
        image = image * contrast + brightness
    if aug.noise:
        image = image + rng.normal(0, aug.noise * rng.random(), image.shape).astype(np.float32)
    return (np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(target), np.ascontiguousarray(weight))


def instance_targets(labels: np.ndarray) -> np.ndarray:
    """3-class training targets from instance labels, as in the NeurIPS 2022 baselines.

    Boundary = the inner boundary of each instance; interior = the rest of the instance.

    Returns:
        ``(H, W)`` uint8: 0 background, 1 interior, 2 boundary.
    """
    boundary = segmentation.find_boundaries(labels, mode="inner")
    target = np.zeros(labels.shape, dtype=np.uint8)
    target[labels > 0] = 1
    target[boundary & (labels > 0)] = 2
    return target


def trained_diameter(samples: Sequence[Sample], metadata: CheckpointMetadata) -> float | None:
    """The median object diameter of the samples' masks, in the images' own pixels (the samples were
    resized by the model's input scale), rounded; the model's own where the masks hold no object.

    A model fine-tuned on large cells so records their size, and keeps working at it.
    """
    semantic = metadata.task == "semantic"
    measured = median_diameter([s.labels for s in samples], semantic=semantic)
    return metadata.object_diameter if measured is None else round(measured / metadata.input_scale, 2)
