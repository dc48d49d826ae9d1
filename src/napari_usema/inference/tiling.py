"""Tile geometry for sliding-window inference: pure functions, no tensors.

Tile placement follows nnU-Net's ``compute_steps_for_sliding_window``: tiles are evenly spread so the
first is flush with the top/left edge and the last with the bottom/right edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .._checks import boolean, in_range
from ..io.metadata import check_scales

PRECISIONS = ("auto", "fp32")  # TilingConfig.precision: bf16 where native, or always fp32


@dataclass(frozen=True)
class TilingConfig:
    """How an image is cut into tiles and how tiles are run.

    Attributes:
        tile: Tile side in pixels: with ``fit``, the largest; without, every tile's (clamped to the image
            when ``clamp_tile``: :func:`effective_tile`).
        overlap: Fraction of ``tile`` that neighbouring tiles share at least (0 <= overlap < 1).
        batch: Tiles per forward pass; 0: sized to the device (:func:`auto_batch`: 1 on the CPU, as many
            as fit the GPU's free memory on CUDA).
        tta: Average over the 4 mirrorings (test-time augmentation).
        scales: Multi-scale test-time augmentation: factors on the model's own input scale. The image is
            run once at each (``1.0``: the model's scale) and the probabilities, resized back to the image,
            are averaged, so objects of sizes the model rarely saw in training are seen at least once
            nearer a familiar size. ``(1.0,)``: one pass; None: the model's own choice
            (``CheckpointMetadata.test_scales``).
        device: ``auto`` (cuda, then mps, then cpu), or a torch device name.
        fit: Fit the tiles to the image (:func:`fitted_side`): the fewest tiles of at most ``tile`` that
            cover it with the overlap, shrunk evenly, so little is computed twice; an image no larger than
            ``tile`` is one tile. Off by default: every InstanceNorm and the global mean of SEMA see one
            tile at a time, and the bundled models, trained on 256-pixel patches, lose accuracy on tiles
            of other sizes (README §6: F1 0.853 -> 0.798 with tiles fitted up to 512).
        clamp_tile: Without ``fit``, fit the tile to an image axis shorter than it (instead of refusing the
            image) or at most ``overlap_pixels`` (and an eighth of the tile) longer: one tile along that
            axis, not two that nearly coincide (:func:`effective_tile`).
        compile: Run the network through ``torch.compile`` (off by default: its first batches take minutes
            to compile, which pays only on long GPU runs; ``benchmarks/gpu.sh`` measures it).
        sigma_scale: Gaussian weight's sigma as a fraction of the tile side.
        precision: ``auto``: bf16 where the device computes it natively (CUDA GPUs with bf16, CPUs with
            AVX512-BF16 or AMX: :func:`~napari_usema.inference.devices.uses_bf16`), fp32 elsewhere;
            ``fp32``: always full precision.
    """

    tile: int = 256
    overlap: float = 0.125
    batch: int = 0
    tta: bool = False
    scales: tuple[float, ...] | None = None
    device: str = "auto"
    fit: bool = False
    clamp_tile: bool = True
    compile: bool = False
    sigma_scale: float = 0.125
    precision: str = "auto"

    def __post_init__(self) -> None:
        in_range("tile", self.tile, 16, integer=True)
        in_range("overlap", self.overlap, 0, 1, high_open=True)
        in_range("batch", self.batch, 0, integer=True)
        boolean("tta", self.tta)
        boolean("fit", self.fit)
        boolean("clamp_tile", self.clamp_tile)
        boolean("compile", self.compile)
        in_range("sigma_scale", self.sigma_scale, 0, low_open=True)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}")
        if not isinstance(self.device, str):
            raise ValueError(f"device must be a name such as 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.scales is not None:
            object.__setattr__(self, "scales", check_scales(self.scales))

    @property
    def overlap_pixels(self) -> int:
        """The overlap in pixels: a fraction of ``tile`` (the largest tile when tiles are fitted), less
        than the tile itself."""
        return min(round(self.tile * self.overlap), self.tile - 1)


class TileSizeError(ValueError):
    """The image is smaller than the requested tile."""


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles along one axis of ``length`` pixels.

    The step is at most ``tile * (1 - overlap)``; tiles are spread evenly, the first at 0 and the
    last flush with the end. Requires ``tile <= length``.
    """
    return _spread(length, tile, max(1, int(tile * (1 - overlap))))


def _spread(length: int, tile: int, max_step: int) -> list[int]:
    """``tile_starts`` with the largest step in pixels."""
    if tile > length:
        raise TileSizeError(f"tile {tile} is larger than the axis ({length} pixels)")
    n = math.ceil((length - tile) / max_step) + 1
    if n == 1:
        return [0]
    step = (length - tile) / (n - 1)
    return [round(step * i) for i in range(n)]


def fitted_side(length: int, largest: int, overlap: int, multiple: int = 16) -> int:
    """The tile side along an axis of ``length`` pixels: as few tiles as sides of ``largest`` would need
    to cover it overlapping by ``overlap`` pixels, each shrunk to the smallest side (a multiple of
    ``multiple``, the network's own padding step) that still covers it with that overlap.

    A 2048-pixel axis with ``largest`` 512 and ``overlap`` 32 takes 5 tiles of 448 (2240 pixels computed)
    where fixed tiles of 512 would take 5 of 512 (2560); an axis no longer than ``largest`` is one tile.
    """
    if length <= largest:
        return length
    n = math.ceil((length - overlap) / (largest - overlap))
    side = math.ceil((length + (n - 1) * overlap) / n)
    return min(largest, length, math.ceil(side / multiple) * multiple)


def tile_grid(shape: tuple[int, int], tile: tuple[int, int], overlap: float) -> list[tuple[int, int]]:
    """``(y, x)`` starts of every tile, row-major (all tiles of a row before the next row)."""
    ys = tile_starts(shape[0], tile[0], overlap)
    xs = tile_starts(shape[1], tile[1], overlap)
    return [(y, x) for y in ys for x in xs]


def effective_tile(shape: tuple[int, int], config: TilingConfig) -> tuple[int, int]:
    """The tile size actually used on a ``shape`` plane: fitted to it (``config.fit``), or
    ``config.tile``, where ``clamp_tile`` allows fitted per axis to an axis shorter than it or at most
    one overlap (and an eighth of the tile) longer (tile 256, overlap 32: a 260 x 347 image takes tiles of
    260 x 256).

    Raises:
        TileSizeError: fixed tiles (no ``fit``, no ``clamp_tile``) larger than the image.
    """
    h, w = shape
    if config.fit:
        return fitted_side(h, config.tile, config.overlap_pixels), fitted_side(w, config.tile, config.overlap_pixels)
    if not config.clamp_tile and (h < config.tile or w < config.tile):
        raise TileSizeError(
            f"the image is {h}x{w} pixels, smaller than the {config.tile}-pixel tile: "
            f"use a tile of at most {min(h, w)} (e.g. --tile {max(16, min(h, w) // 16 * 16)})"
        )
    if not config.clamp_tile:
        return config.tile, config.tile
    # An axis at most one overlap longer than the tile is one tile along it: a second tile there would
    # compute nearly all of the first again (the 260-row sample: one 260-row tile, not two 256-row tiles
    # 4 rows apart). Both validation figures held: nuclei F1 0.852 -> 0.851, polyps DSC 0.852 -> 0.853.
    # At most an eighth of the tile (32 px at 256): only that was measured, and a larger overlap must not
    # make whole images one tile (up to 384 px, polyps lost 0.005 DSC).
    reach = config.tile + min(config.overlap_pixels, config.tile // 8)
    return (h if h <= reach else config.tile), (w if w <= reach else config.tile)


def plan_tiles(shape: tuple[int, int], config: TilingConfig) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """The tile size and every tile's ``(y, x)`` start, row-major, on a ``shape`` plane."""
    th, tw = effective_tile(shape, config)
    if not config.fit:
        return (th, tw), tile_grid(shape, (th, tw), config.overlap)
    ys = _spread(shape[0], th, max(1, th - config.overlap_pixels))
    xs = _spread(shape[1], tw, max(1, tw - config.overlap_pixels))
    return (th, tw), [(y, x) for y in ys for x in xs]


def batch_count(shape: tuple[int, int], config: TilingConfig) -> int:
    """Forward passes (batches of tiles) that sliding-window inference makes over a ``shape`` plane
    (batch 0, not yet resolved for a device, counts one tile a pass, as the CPU runs)."""
    _, starts = plan_tiles(shape, config)
    return math.ceil(len(starts) / max(config.batch, 1))


@lru_cache(maxsize=8)
def gaussian_weight(tile: tuple[int, int], sigma_scale: float = 0.125) -> np.ndarray:
    """Blending weights for one tile: a Gaussian centred on the tile, normalised to max 1.

    Edges keep a small positive weight so every covered pixel has a positive total weight. Cached:
    the array is shared, treat it as read-only.
    """
    axes = []
    for n in tile:
        coords = np.arange(n, dtype=np.float64) - (n - 1) / 2
        axes.append(np.exp(-0.5 * (coords / max(n * sigma_scale, 1e-6)) ** 2))
    weight = np.outer(axes[0], axes[1])
    weight /= weight.max()
    weight = np.maximum(weight, 1e-3).astype(np.float32)
    weight.setflags(write=False)
    return weight


def row_bands(starts: list[tuple[int, int]]) -> list[tuple[int, list[int]]]:
    """Group tile starts by row: ``[(y, [x, ...]), ...]`` in increasing y."""
    rows: dict[int, list[int]] = {}
    for y, x in starts:
        rows.setdefault(y, []).append(x)
    return sorted(rows.items())
