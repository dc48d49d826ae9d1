"""What a Segment run leaves behind for the other sections (post-process, corrections, fine-tune), and
what a Segment click runs on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from napari.layers import Image, Labels

from napari_usema.inference.axes import AxesReading
from napari_usema.inference.planning import NO_LINKS
from napari_usema.io.checkpoint import LoadedModel
from napari_usema.postprocess.linking import StackLinks


@dataclass
class SegmentationState:
    """What the last run left for post-processing and fine-tuning."""

    image: Image
    labels: Labels | None  # None only while the result is being laid out
    probabilities: np.ndarray | None  # ([T][Z] K, H, W), None for planes too large to cache
    loaded: LoadedModel
    size: float = 1.0  # the object-size factor of the run (the post-process scales min_size by it)
    axes: str = "YX"  # the labels' axes
    links: StackLinks = NO_LINKS  # re-applied when the post-process is re-tuned
    transform: dict[str, Any] | None = None  # the labels layer's scale and translate
    # How the image was read (its reading, shape, and whether napari shows it as RGB), to lay labels of
    # the standard axes over it axis for axis.
    placement: tuple[AxesReading, tuple[int, ...], bool] | None = None
    image_checksum: int | None = None  # of the image as segmented (None for planes too large to cache)
    channel: int | None = None  # the run's channel, and its device: a correction's second look uses them
    device: str = "cpu"

    def layer_labels(self, labels: np.ndarray) -> tuple[np.ndarray, str]:
        """Labels of the standard axes (``self.axes``) as the labels layer holds them, and its axes."""
        if self.placement is None:
            return labels, self.axes
        reading, shape, rgb = self.placement
        return reading.unstandardise(labels, shape, rgb=rgb)


@dataclass(frozen=True)
class Inputs:
    """What one Segment (or Estimate) click will run on, checked."""

    layer: Image
    data: Any
    channel: int | None
    reading: AxesReading
    links: StackLinks
    large: bool
