"""The Segment section's fixed choices (multi-scale TTA, stacks) and its one-line result summary."""

from __future__ import annotations

import numpy as np

from napari_usema.inference.pipeline import SegmentationResult

BROWSE = "Browse for a checkpoint…"
# Multi-scale TTA choices: factors on the model's own scale (TilingConfig.scales). A model that stores
# other factors (CheckpointMetadata.test_scales) adds its own choice.
MULTISCALE = {"off": (1.0,), "0.8x, 1x, 1.25x (~3x slower)": (0.8, 1.0, 1.25)}
# The Stacks box: how objects of neighbouring planes are joined (StackLinks).
STACKS = ("each plane on its own", "stitch Z planes into 3-D objects", "track objects over time (T)", "stitch Z and track T")


def scales_label(scales: tuple[float, ...]) -> str:
    """The Multi-scale TTA choice that stands for ``scales``."""
    named = {v: k for k, v in MULTISCALE.items()}
    return named.get(scales) or ", ".join(f"{f:g}x" for f in scales)


def summary(result: SegmentationResult) -> str:
    """``120 objects``, or each foreground class's share of the image: ``polyp 14.2%``."""
    labels = np.asarray(result.labels)
    if result.task == "instance":
        return f"{int(labels.max())} objects"
    counts = np.bincount(labels.ravel(), minlength=len(result.class_names))
    shares = [f"{name} {100 * counts[i] / labels.size:.1f}%" for i, name in enumerate(result.class_names) if i > 0]
    return ", ".join(shares) or "no foreground class"
