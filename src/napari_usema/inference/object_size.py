"""Object size: images whose objects are larger or smaller than the model's are resized to match.

A model records the median diameter of the objects it was trained on (``object_diameter``); an image
whose objects measure ``diameter`` pixels is resized by ``object_diameter / diameter`` (on top of the
model's own ``input_scale``) before the network, and the labels come back at the image's own size.
This is cellpose's ``diameter`` and StarDist's ``scale``.
"""

from __future__ import annotations

import math
from typing import Literal

from ..io.metadata import CheckpointMetadata
from ..postprocess.config import WatershedConfig

AUTO = "auto"
Diameter = float | Literal["auto"] | None
# An estimate within this ratio of the model's own size leaves the image as it is: resizing by a few
# percent cannot help, and keeps the result identical to running without a diameter.
CLOSE_ENOUGH = 1.1


def check_diameter(diameter: object) -> Diameter:
    """None (the image's objects are the model's size), ``"auto"``, or a positive number of pixels."""
    if diameter is None or diameter == AUTO:
        return diameter  # type: ignore[return-value]
    if isinstance(diameter, bool) or not isinstance(diameter, int | float) or not math.isfinite(diameter) or diameter <= 0:
        raise ValueError(f"diameter must be a number of pixels > 0 or 'auto', got {diameter!r}")
    return float(diameter)


def size_factor(meta: CheckpointMetadata, diameter: float | None) -> float:
    """The resize factor for objects of ``diameter`` pixels (1 for None)."""
    if diameter is None:
        return 1.0
    if meta.object_diameter is None:
        raise ValueError(
            "this model does not record the diameter of the objects it was trained on (a checkpoint older than "
            "format 3): store it with weights/recipe/measure_diameter.py, or leave --diameter out"
        )
    return meta.object_diameter / diameter


def factor_for_estimate(meta: CheckpointMetadata, estimate: float | None) -> float:
    """The factor for an estimated diameter; 1 when there is none or it is close to the model's own."""
    if estimate is None:
        return 1.0
    factor = size_factor(meta, estimate)
    return 1.0 if 1 / CLOSE_ENOUGH <= factor <= CLOSE_ENOUGH else factor


def watershed_at_size(config: WatershedConfig, size: float) -> WatershedConfig:
    """``config`` for labels made at the image's own resolution after a pass resized by ``size``.

    ``min_size`` counts pixels at the model's object size (the tuned value of a checkpoint means that):
    objects half the model's size have a quarter of its pixels, so it is scaled by ``1 / size**2``.
    Without this, a 0.5x image loses most of its small nuclei to the 16-pixel seed limit.
    """
    if size == 1 or config.min_size == 0:
        return config
    return config.replace(min_size=max(1, round(config.min_size / size**2)))
