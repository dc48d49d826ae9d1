"""Tiled inference: a generator that runs a model tile by tile and hands finished rows to a sink.

Accumulators hold only a band of tile rows (never a full-image float array per class), so the
image, and the output, can be larger than memory when they live on disk (TIFF, zarr, dask).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from ..io.metadata import NormalizationRecipe
from ..model import on_device
from .channels import ChannelPlan, plan_channels
from .devices import OutOfMemoryError, auto_batch, autocast, select_device
from .normalization import IntensityStats, measure
from .tiling import TilingConfig, gaussian_weight, plan_tiles

COMPILE_BACKEND = "inductor"  # torch.compile's default; tests swap in "eager" to check the path quickly


@dataclass(frozen=True)
class InferenceProgress:
    """One step of a long inference: ``done`` of ``total`` batches of plane ``plane`` of ``planes``."""

    done: int
    total: int
    plane: int = 0
    planes: int = 1
    message: str = ""

    @property
    def fraction(self) -> float:
        return (self.plane + self.done / max(self.total, 1)) / self.planes


class ImageSource:
    """A 2-D plane read lazily, tile by tile, in model channels and normalised.

    Args:
        array: ``(H, W)`` or ``(H, W, C)``: numpy, memory-mapped, zarr or dask.
        plan: Which source channels feed the model.
        stats: Normalisation measured on the whole plane.
    """

    def __init__(self, array: Any, plan: ChannelPlan, stats: IntensityStats) -> None:
        self.array, self.plan, self.stats = array, plan, stats

    @classmethod
    def prepare(cls, array: Any, in_channels: int, recipe: NormalizationRecipe, channel: int | None = None) -> ImageSource:
        plan = plan_channels(tuple(array.shape), in_channels, channel)
        view = _ChannelFirstView(array, plan)
        return cls(array, plan, measure(view, recipe))

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.array.shape[0]), int(self.array.shape[1])

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The normalised ``(C, y1 - y0, x1 - x0)`` float32 block."""
        return self.stats.apply(self.plan.take(np.asarray(self.array[y0:y1, x0:x1])))


class _ChannelFirstView:
    """Presents an ``(H, W[, C])`` array as ``(C, H, W)`` for strided statistics sampling."""

    def __init__(self, array: Any, plan: ChannelPlan) -> None:
        self.array, self.plan = array, plan
        self.shape = (len(plan.pick), int(array.shape[0]), int(array.shape[1]))

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        _, ys, xs = key
        return self.plan.take(np.asarray(self.array[ys, xs]))


class BandSink(Protocol):
    """Receives finished rows of class probabilities, top to bottom."""

    def write(self, y0: int, probs: np.ndarray) -> None:
        """``probs``: ``(K, rows, W)`` float32 for image rows ``y0 .. y0 + rows``."""


class _Runner:
    """Runs batches of tiles through the model, with TTA and out-of-memory recovery.

    The model is only read: where it is not on ``device`` a copy is, so callers sharing it are unaffected.
    """

    def __init__(
        self, model: torch.nn.Module, device: torch.device, tta: bool, batch: int, compiled: bool = False, precision: str = "auto"
    ) -> None:
        self.model, self.device, self.tta, self.batch = on_device(model, device), device, tta, batch
        self.precision = precision
        if compiled:  # a compiled wrapper: the network itself is not changed
            self.model = torch.compile(self.model, backend=COMPILE_BACKEND, dynamic=False)
        self.notes: list[str] = []

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        """``(B, C, h, w)`` float32 -> ``(B, K, h, w)`` float32 softmax probabilities."""
        while True:
            try:
                return np.concatenate([self._forward(tiles[i : i + self.batch]) for i in range(0, len(tiles), self.batch)])
            except OutOfMemoryError:
                torch.cuda.empty_cache()
                if self.batch > 1:
                    self.batch //= 2
                    self.notes.append(f"GPU out of memory: retrying with batch {self.batch}")
                elif self.device.type != "cpu":
                    self.device = torch.device("cpu")
                    self.model = on_device(getattr(self.model, "_orig_mod", self.model), self.device)  # uncompiled
                    self.notes.append("GPU out of memory even at batch 1: continuing on the CPU")
                else:
                    raise

    @torch.inference_mode()
    def _forward(self, tiles: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(tiles)).to(self.device)
        flips = [(), (-1,), (-2,), (-2, -1)] if self.tta else [()]
        total = None
        for dims in flips:
            xi = x.flip(dims) if dims else x
            with autocast(self.device, self.precision):
                logits = self.model(xi)
            probs = logits.float().softmax(dim=1)
            probs = probs.flip(dims) if dims else probs
            total = probs if total is None else total + probs
        return (total / len(flips)).cpu().numpy()


def predict_tiles(
    model: torch.nn.Module,
    source: ImageSource,
    sink: BandSink,
    config: TilingConfig = TilingConfig(),
    *,
    plane: int = 0,
    planes: int = 1,
) -> Iterator[InferenceProgress]:
    """Sliding-window inference over one plane, yielding a progress record per batch.

    Tiles are blended with a Gaussian weight; each row of the image goes to ``sink`` as soon as no
    later tile can touch it, so the accumulator spans at most one tile row plus its overlap.
    """
    h, w = source.shape
    config = with_batch(config, (h, w), model)
    (th, tw), starts = plan_tiles((h, w), config)
    weight = gaussian_weight((th, tw), config.sigma_scale)
    runner = _Runner(model, select_device(config.device), config.tta, config.batch, config.compile, config.precision)
    batches = [starts[i : i + config.batch] for i in range(0, len(starts), config.batch)]
    band = _Band(width=w)
    for done, batch in enumerate(batches, start=1):
        tiles = np.stack([source.read(y, y + th, x, x + tw) for y, x in batch])  # (B, C, th, tw)
        probs = runner(tiles)  # (B, K, th, tw)
        for (y, x), p in zip(batch, probs, strict=True):
            band.flush_above(y, sink)
            band.add(y, x, p * weight, weight)
        yield InferenceProgress(done, len(batches), plane, planes, "; ".join(runner.notes))
        runner.notes.clear()
    band.flush_above(h, sink)


def with_batch(config: TilingConfig, shape: tuple[int, int], model: torch.nn.Module) -> TilingConfig:
    """``config`` with its batch resolved for a ``shape`` plane: as given, or (0) sized to the device and
    the plane's tiles (:func:`~napari_usema.inference.devices.auto_batch`)."""
    if config.batch:
        return config
    (th, tw), _ = plan_tiles(shape, config)
    widths = getattr(getattr(model, "config", None), "widths", (32,))
    batch = auto_batch(select_device(config.device), th * tw, widths[0], precision=config.precision)
    return dataclasses.replace(config, batch=batch)


class _Band:
    """Weighted sums for the rows still being accumulated: ``[y0, y0 + rows)``."""

    def __init__(self, width: int) -> None:
        self.width, self.y0 = width, 0
        self.sum: np.ndarray | None = None  # (K, rows, W)
        self.weight = np.zeros((0, width), np.float32)  # (rows, W)

    def add(self, y: int, x: int, weighted: np.ndarray, weight: np.ndarray) -> None:
        k, th, tw = weighted.shape
        if self.sum is None:
            self.sum = np.zeros((k, 0, self.width), np.float32)
        grow = y + th - (self.y0 + self.weight.shape[0])
        if grow > 0:
            self.sum = np.concatenate([self.sum, np.zeros((k, grow, self.width), np.float32)], axis=1)
            self.weight = np.concatenate([self.weight, np.zeros((grow, self.width), np.float32)])
        r = y - self.y0
        self.sum[:, r : r + th, x : x + tw] += weighted
        self.weight[r : r + th, x : x + tw] += weight

    def flush_above(self, y: int, sink: BandSink) -> None:
        """Send rows ``< y`` (final: later tiles start at or below ``y``) to the sink."""
        n = min(y - self.y0, self.weight.shape[0])
        if n <= 0 or self.sum is None:
            return
        sink.write(self.y0, self.sum[:, :n] / self.weight[None, :n])
        self.sum, self.weight = self.sum[:, n:].copy(), self.weight[n:].copy()
        self.y0 += n


class ArraySink:
    """Collects probabilities into an array ``(K, H, W)`` (float32 in memory unless given one)."""

    def __init__(self, classes: int, shape: tuple[int, int], out: Any | None = None) -> None:
        self.out = np.zeros((classes, *shape), np.float32) if out is None else out

    def write(self, y0: int, probs: np.ndarray) -> None:
        self.out[:, y0 : y0 + probs.shape[1]] = probs.astype(self.out.dtype, copy=False)


class ClassSink:
    """Writes the argmax class ids of each band into ``out`` ``(H, W)`` uint8."""

    def __init__(self, out: Any) -> None:
        self.out = out

    def write(self, y0: int, probs: np.ndarray) -> None:
        self.out[y0 : y0 + probs.shape[1]] = probs.argmax(axis=0).astype(np.uint8)


def predict_probabilities(model: torch.nn.Module, image_chw: np.ndarray, config: TilingConfig = TilingConfig()) -> np.ndarray:
    """Convenience for in-memory, already normalised ``(C, H, W)`` images: ``(K, H, W)`` float32."""
    source = ImageSource(
        np.moveaxis(image_chw, 0, -1), ChannelPlan(2, tuple(range(image_chw.shape[0]))), _IDENTITY(image_chw.shape[0])
    )
    k = _output_channels(model)
    sink = ArraySink(k, source.shape)
    for _ in predict_tiles(model, source, sink, config):
        pass
    return sink.out


def _IDENTITY(channels: int) -> IntensityStats:  # noqa: N802 - reads like a constant
    return IntensityStats(np.zeros(channels, np.float32), np.ones(channels, np.float32))


def _output_channels(model: torch.nn.Module) -> int:
    module = getattr(model, "module", model)
    return int(module.config.out_channels)
