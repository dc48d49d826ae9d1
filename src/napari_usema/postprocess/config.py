"""The instance post-process's settings: one frozen dataclass, shared by the CLI, napari and checkpoints."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from .._checks import boolean, in_range, one_of

Mode = Literal["watershed", "connected-components"]
MODES: tuple[Mode, ...] = ("watershed", "connected-components")


@dataclass(frozen=True)
class WatershedConfig:
    """Parameters of the instance post-process.

    Attributes:
        mode: ``watershed`` floods seeds over the foreground; ``connected-components`` labels the
            interior as the NeurIPS 2022 cell-segmentation baselines do.
        interior_threshold: Seeds are interior probability above this.
        foreground_threshold: Instances grow over interior + boundary probability above this.
        min_size: Seeds (and, in connected-components mode, objects) smaller than this many pixels
            are dropped.
        fill_holes: Fill holes inside each instance.
    """

    mode: Mode = "watershed"
    # Neutral defaults that suit a model at any stage of training; a model can carry its own tuned
    # values (CheckpointMetadata.postprocess: the bundled `nuclei` model stores 0.9 / 0.7).
    interior_threshold: float = 0.5
    foreground_threshold: float = 0.5
    min_size: int = 16
    fill_holes: bool = True

    def __post_init__(self) -> None:
        one_of("mode", self.mode, MODES)
        in_range("interior_threshold", self.interior_threshold, 0, 1)
        in_range("foreground_threshold", self.foreground_threshold, 0, 1)
        in_range("min_size", self.min_size, 0, integer=True)
        boolean("fill_holes", self.fill_holes)

    def replace(self, **changes: object) -> WatershedConfig:
        return dataclasses.replace(self, **changes)
