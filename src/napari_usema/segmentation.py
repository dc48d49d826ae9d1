"""From an image (2-D, RGB, multichannel, or a Z/T stack) to labels, plane by plane.

``segment`` is a generator: it yields :class:`InferenceProgress` per batch of tiles and returns a
:class:`SegmentationResult`. Small planes are post-processed in memory; with a ``workdir`` the
probabilities go to memory-mapped files and instances are made band by band, so a slide larger than
RAM works.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .banded import instances_banded
from .channels import ChannelError
from .checkpoint import LoadedModel
from .inference import ArraySink, ClassSink, ImageSource, InferenceProgress, predict_tiles
from .postprocess import WatershedConfig, classes_from_probabilities, instances_from_probabilities
from .rescale import resize_image, resize_probabilities, scaled_shape
from .tiling import TilingConfig, batch_count

# Planes with more pixels than this are post-processed band by band from files on disk.
LARGE_PLANE_PIXELS = 8192 * 8192


@dataclass(frozen=True)
class Layout:
    """How an array's axes map to (plane, Y, X, channel)."""

    stacked: bool  # a leading Z or T axis
    channels: bool  # a trailing channel axis


def infer_layout(shape: tuple[int, ...], model_channels: int, channel: int | None) -> Layout:
    """Read the axes: ``(Y, X)``, ``(Y, X, C)`` with C <= 4, ``(Z, Y, X)``, or ``(Z, Y, X, C)``.

    Raises:
        ChannelError: for 1-D or 5-D arrays, and 4-D arrays whose channels don't fit the model and
            no channel was chosen.
    """
    nd = len(shape)
    if nd == 2:
        return Layout(False, False)
    if nd == 3:
        return Layout(False, True) if shape[-1] <= 4 else Layout(True, False)
    if nd == 4:
        if channel is None and shape[-1] != model_channels:
            raise ChannelError(
                f"the image is 4-D {tuple(shape)} (read as Z, Y, X, C with {shape[-1]} channels) and the model takes "
                f"{model_channels}: choose a channel with --channel (the Channel box in napari)"
            )
        return Layout(True, True)
    raise ChannelError(f"expected a 2-D image, an RGB image or a stack of them; got {nd} dimensions {tuple(shape)}")


@dataclass
class SegmentationResult:
    """Labels (``(H, W)`` or ``(Z, H, W)``), and probabilities ``([Z,] K, H, W)`` if kept."""

    labels: Any
    probabilities: np.ndarray | None
    task: str
    class_names: tuple[str, ...]
    notes: list[str] = field(default_factory=list)


class _InstanceSink:
    """Keeps interior and foreground probability (uint8, 0..255) for banded post-processing."""

    def __init__(self, interior: Any, foreground: Any) -> None:
        self.interior, self.foreground = interior, foreground

    def write(self, y0: int, probs: np.ndarray) -> None:
        rows = slice(y0, y0 + probs.shape[1])
        self.interior[rows] = np.round(probs[1] * 255).astype(np.uint8)
        self.foreground[rows] = np.round(np.clip(probs[1] + probs[2], 0, 1) * 255).astype(np.uint8)


def segment(
    loaded: LoadedModel,
    image: Any,
    tiling: TilingConfig = TilingConfig(),
    watershed: WatershedConfig | None = None,
    *,
    channel: int | None = None,
    keep_probabilities: bool = False,
    labels_out: Any | None = None,
) -> Generator[InferenceProgress, None, SegmentationResult]:
    """Segment every plane of ``image``; yields progress per batch, returns the result.

    Args:
        loaded: The model and its metadata.
        image: Any array with the layouts of :func:`infer_layout` (numpy, memmap, zarr, dask).
        tiling: Tile, overlap, batch, mirror and multi-scale TTA (``scales`` None: the model's own
            ``test_scales``), and device.
        watershed: Instance post-processing (ignored for semantic models); None: the model's own
            tuned settings (``metadata.watershed()``).
        channel: Source channel for multichannel images.
        keep_probabilities: Also return ``([Z,] K, H, W)`` float32 probabilities (in memory).
        labels_out: Where to write labels (e.g. a memory-mapped TIFF); default a new numpy array.
    """
    meta = loaded.metadata
    watershed = meta.watershed() if watershed is None else watershed
    layout = infer_layout(tuple(image.shape), meta.input_channels, channel)
    planes = image.shape[0] if layout.stacked else 1
    h, w = image.shape[1:3] if layout.stacked else image.shape[:2]
    large = h * w > LARGE_PLANE_PIXELS
    factors = meta.test_scales if tiling.scales is None else tiling.scales
    rescaled = meta.input_scale != 1 or factors != (1.0,)
    if large and rescaled:
        why = f"this model resizes images by {meta.input_scale:g}" if meta.input_scale != 1 else "multi-scale TTA resizes images"
        raise ValueError(
            f"{why}, which napari-usema does only for planes up to "
            f"{LARGE_PLANE_PIXELS:,} pixels; this one has {h * w:,}: crop it or resize it yourself"
        )
    scales = [meta.input_scale * f for f in factors]  # each pass's resize factor
    if max(scales) > 4:
        raise ValueError(
            f"multi-scale factor {max(factors):g} on this model's scale {meta.input_scale:g} "
            f"would resize by {max(scales):g}; at most 4"
        )
    own_output = labels_out is None
    if own_output:
        dtype = np.uint8 if meta.task == "semantic" else np.uint32
        labels_out = np.zeros((planes, h, w) if layout.stacked else (h, w), dtype)
    probabilities = np.zeros((planes, meta.config.out_channels, h, w), np.float32) if keep_probabilities else None
    notes: list[str] = []
    for z in range(planes):
        plane = image[z] if layout.stacked else image
        target = labels_out[z] if layout.stacked else labels_out
        prob_plane = probabilities[z] if probabilities is not None else None
        if rescaled:
            gen = _segment_plane_rescaled(loaded, np.asarray(plane), channel, tiling, scales, watershed, target, prob_plane)
        else:
            source = ImageSource.prepare(plane, meta.input_channels, meta.normalization, channel)
            gen = _segment_plane(loaded, source, tiling, watershed, target, prob_plane, large)
        for progress in _forward(gen, z, planes):
            if progress.message:
                notes.append(progress.message)
            yield progress
    probs = probabilities if (probabilities is None or layout.stacked) else probabilities[0]
    if own_output and meta.task == "instance" and labels_out.max() <= np.iinfo(np.uint16).max:
        labels_out = labels_out.astype(np.uint16)  # uint16 unless there are more than 65,535 objects
    return SegmentationResult(labels_out, probs, meta.task, meta.class_names, notes)


def _forward(gen: Generator[InferenceProgress, None, None], plane: int, planes: int) -> Generator[InferenceProgress, None, None]:
    for p in gen:
        yield InferenceProgress(p.done, p.total, plane, planes, p.message)


def _segment_plane(
    loaded: LoadedModel,
    source: ImageSource,
    tiling: TilingConfig,
    watershed: WatershedConfig,
    labels_out: Any,
    probabilities: np.ndarray | None,
    large: bool,
) -> Generator[InferenceProgress, None, None]:
    meta = loaded.metadata
    k = meta.config.out_channels
    if meta.task == "semantic" and probabilities is None:
        yield from predict_tiles(loaded.model, source, ClassSink(labels_out), tiling)
        return
    if meta.task == "semantic":
        yield from predict_tiles(loaded.model, source, ArraySink(k, source.shape, probabilities), tiling)
        labels_out[:] = classes_from_probabilities(probabilities)
        return
    if not large:
        sink = ArraySink(k, source.shape, probabilities)
        yield from predict_tiles(loaded.model, source, sink, tiling)
        labels = instances_from_probabilities(sink.out, watershed)
        _check_capacity(labels_out, int(labels.max()))
        labels_out[:] = labels
        return
    with tempfile.TemporaryDirectory(prefix="usema-") as tmp:
        interior = disk_array(Path(tmp) / "interior.zarr", source.shape, np.uint8)
        foreground = disk_array(Path(tmp) / "foreground.zarr", source.shape, np.uint8)
        yield from predict_tiles(loaded.model, source, _InstanceSink(interior, foreground), tiling)
        scaled = watershed.replace(
            interior_threshold=watershed.interior_threshold * 255, foreground_threshold=watershed.foreground_threshold * 255
        )
        count = instances_banded(interior, foreground, labels_out, scaled)
        _check_capacity(labels_out, count)


def _segment_plane_rescaled(
    loaded: LoadedModel,
    plane: np.ndarray,
    channel: int | None,
    tiling: TilingConfig,
    scales: list[float],
    watershed: WatershedConfig,
    labels_out: Any,
    probabilities: np.ndarray | None,
) -> Generator[InferenceProgress, None, None]:
    """Predict the plane resized by each of ``scales``, average the probabilities at full resolution,
    and post-process there."""
    meta = loaded.metadata
    shape = plane.shape[:2]
    sizes = [scaled_shape(shape, s) for s in scales]
    totals = [batch_count(size, tiling) for size in sizes]
    probs: np.ndarray | None = None  # (K, H, W): the first pass, then the sum of all passes
    for i, scale in enumerate(scales):
        small = resize_image(plane, scale)
        source = ImageSource.prepare(small, meta.input_channels, meta.normalization, channel)
        sink = ArraySink(meta.config.out_channels, source.shape, None)
        for p in predict_tiles(loaded.model, source, sink, tiling):
            # One progress count across all passes, so a bar fills once.
            yield InferenceProgress(sum(totals[:i]) + p.done, sum(totals), message=p.message)
        resized = resize_probabilities(sink.out, shape)
        # Summing into the first pass keeps one full-size array, as a single pass needs anyway.
        probs = resized if probs is None else np.add(probs, resized, out=probs)
    assert probs is not None
    if len(scales) > 1:
        probs /= len(scales)
    if probabilities is not None:
        probabilities[:] = probs
    if meta.task == "semantic":
        labels_out[:] = classes_from_probabilities(probs)
        return
    labels = instances_from_probabilities(probs, watershed)
    _check_capacity(labels_out, int(labels.max()))
    labels_out[:] = labels


def disk_array(path: Path, shape: tuple[int, int], dtype: Any, rows: int = 512) -> Any:
    """A chunked array on disk (zarr) that reads and writes through files, not memory maps, so
    only the rows in use count towards resident memory."""
    import zarr

    return zarr.open_array(str(path), mode="w", shape=shape, chunks=(rows, shape[1]), dtype=dtype)


def _check_capacity(out: Any, count: int) -> None:
    limit = np.iinfo(out.dtype).max
    if count > limit:
        raise ValueError(f"{count} instances do not fit the {out.dtype} output (at most {limit})")


def drive(gen: Generator[InferenceProgress, None, Any], on_progress: Callable[[InferenceProgress], None] | None = None) -> Any:
    """Run a progress generator to the end and return its result."""
    while True:
        try:
            progress = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(progress)
