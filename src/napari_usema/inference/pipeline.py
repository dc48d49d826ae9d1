"""From an image (2-D, RGB, multichannel, or a Z/T stack) to labels, plane by plane.

``segment`` is a generator: it yields :class:`InferenceProgress` per batch of tiles and returns a
:class:`SegmentationResult`. Planes up to :data:`~napari_usema.inference.planning.LARGE_PLANE_PIXELS`
get their probabilities in memory;
larger ones stream them: class ids straight into the output, or uint8 instance probabilities into
chunked files on disk that the post-process reads band by band, so a slide larger than RAM works.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..io.checkpoint import LoadedModel
from ..io.metadata import CheckpointMetadata
from ..postprocess.config import WatershedConfig
from ..postprocess.linking import StackLinks
from ..postprocess.measure import median_diameter
from ..postprocess.watershed import classes_from_probabilities, instances, quantise
from .axes import AxesReading
from .devices import select_device
from .normalization import count_non_finite, fill_non_finite
from .object_size import AUTO, Diameter, check_diameter, factor_for_estimate, size_factor, watershed_at_size
from .planning import NO_LINKS, PlanePlan, plan_links, plan_planes
from .predictor import ArraySink, ClassSink, ImageSource, InferenceProgress, predict_tiles, with_batch
from .rescale import resize_image, resize_probabilities, scaled_shape
from .tiling import TilingConfig, batch_count

Progress = Generator[InferenceProgress, None, None]
ESTIMATE_DOWN_TO = 2.0  # the diameter estimate's first pass finds objects down to half the model's size


@dataclass
class SegmentationResult:
    """Labels ``([T][Z] H, W)``, and probabilities ``([T][Z] K, H, W)`` if kept.

    ``axes``: the labels' axes (``"YX"``, ``"ZYX"``, ``"TZYX"``...): the image's, less its channels.
    """

    labels: Any
    probabilities: np.ndarray | None
    task: str
    class_names: tuple[str, ...]
    notes: list[str] = field(default_factory=list)
    size: float = 1.0  # the object-size factor the image was resized by (watershed_at_size re-tunes with it)
    axes: str = "YX"
    links: StackLinks = NO_LINKS  # what joined the objects of neighbouring planes


def segment(
    loaded: LoadedModel,
    image: Any,
    tiling: TilingConfig = TilingConfig(),
    watershed: WatershedConfig | None = None,
    *,
    channel: int | None = None,
    keep_probabilities: bool = False,
    labels_out: Any | None = None,
    diameter: Diameter = None,
    axes: AxesReading | str | None = None,
    links: StackLinks = NO_LINKS,
) -> Generator[InferenceProgress, None, SegmentationResult]:
    """Segment every plane of ``image``; yields progress per batch, returns the result.

    Args:
        loaded: The model and its metadata (only read: other threads may use it at the same time).
        image: Any array (numpy, memmap, zarr, dask): a 2-D image, colour or multichannel, or a stack
            of them over Z and/or T, in any axis order that ``axes`` names.
        tiling: Tile, overlap, batch, mirror and multi-scale TTA (``scales`` None: the model's own
            ``test_scales``), and device.
        watershed: Instance post-processing (ignored for semantic models); None: the model's own
            tuned settings (``metadata.watershed()``).
        channel: Source channel for multichannel images.
        keep_probabilities: Also return ``([T][Z] K, H, W)`` float32 probabilities (in memory).
        labels_out: Where to write labels (e.g. a memory-mapped TIFF); default a new numpy array.
        diameter: The objects' diameter in pixels, to resize the image to the model's object size
            (``metadata.object_diameter``); ``"auto"`` estimates it with a first pass at the model's
            own scale (:func:`estimate_diameter`); None: the objects are the model's size.
        axes: The image's axes as stored, e.g. ``"CYX"``: a reading made with the file's metadata
            (:func:`napari_usema.inference.axes.read_axes`), the user's string, or None to read them
            from the shape (and announce the reading in the notes).
        links: Stitch objects over Z and/or track them over T (instance models; in memory). A stack
            whose axes were guessed (Z or T) is read as time points for ``links.track``.
    """
    image = _check_arguments(loaded, image, tiling, channel, watershed)
    diameter = check_diameter(diameter)
    meta = loaded.metadata
    watershed = meta.watershed() if watershed is None else watershed
    notes: list[str] = []
    # The axes and channels are read (and refused) before any work, at the model's own scale.
    first = plan_planes(meta, tuple(image.shape), tiling, channel, 1.0, axes)
    reading, links = plan_links(first, links, meta.task, labels_out is not None)
    if reading.note and not isinstance(axes, AxesReading):  # a caller that made the reading announced it
        notes.append(reading.note)
        yield InferenceProgress(0, 1, 0, first.planes, message=notes[-1])
    if diameter == AUTO:
        size_factor(meta, 1.0)  # refuse a model without a recorded diameter before the first pass
        estimate = yield from estimate_diameter(loaded, image, tiling, watershed, channel=channel, axes=reading)
        size = factor_for_estimate(meta, estimate)
        notes.append(_estimate_note(meta, estimate, size))
        yield InferenceProgress(0, 1, 0, first.planes, message=notes[-1])
    else:
        size = size_factor(meta, diameter)
    plan = plan_planes(meta, tuple(image.shape), tiling, channel, size, reading)
    watershed = watershed_at_size(watershed, size)
    image = plan.reading.standardise(image)
    own_output = labels_out is None
    expected = (*plan.stack_shape, *plan.shape)
    if not own_output and tuple(labels_out.shape) != expected:
        raise ValueError(f"labels_out has shape {tuple(labels_out.shape)}; this image's labels are {expected}")
    if own_output:
        labels_out = np.zeros(expected, np.uint8 if meta.task == "semantic" else np.uint32)
    k = meta.config.out_channels
    probabilities = np.zeros((*plan.stack_shape, k, *plan.shape), np.float32) if keep_probabilities else None
    network = loaded.on(select_device(tiling.device))
    job = _PlaneJob(network, meta, tiling, watershed, channel, plan)
    for z, index in enumerate(np.ndindex(*plan.stack_shape)):  # one empty index for a 2-D image
        # A 2-D image is passed whole, not as image[()], which would read a zarr slide into memory.
        plane, out = (image[index], labels_out[index]) if index else (image, labels_out)
        for progress in job.run(plane, out, probabilities, index):
            if progress.message:
                notes.append(progress.message)
            yield InferenceProgress(progress.done, progress.total, z, plan.planes, progress.message)
    if links:  # in memory: plan_links refused a caller's labels_out
        labels_out = links.apply(labels_out, plan.label_axes)
    if own_output and meta.task == "instance" and labels_out.max() <= np.iinfo(np.uint16).max:
        labels_out = labels_out.astype(np.uint16)  # uint16 unless there are more than 65,535 objects
    return SegmentationResult(labels_out, probabilities, meta.task, meta.class_names, notes, size, plan.label_axes, links)


def estimate_diameter(
    loaded: LoadedModel,
    image: Any,
    tiling: TilingConfig = TilingConfig(),
    watershed: WatershedConfig | None = None,
    *,
    channel: int | None = None,
    axes: AxesReading | str | None = None,
) -> Generator[InferenceProgress, None, float | None]:
    """The median diameter, in the image's pixels, of the objects a first pass finds at the model's own
    scale (one pass, no multi-scale); None when it finds none. A generator, like :func:`segment`.

    The first pass keeps seeds down to a quarter of ``min_size``, as objects half the model's size
    have (:func:`watershed_at_size`): with the model's own limit, the smallest nuclei of a 0.5x image
    go unseen and the estimate comes out too large (mean F1@0.5 0.825 against 0.840 at 0.5x,
    ``benchmarks/object_size.py``).
    """
    watershed = watershed_at_size(loaded.metadata.watershed() if watershed is None else watershed, ESTIMATE_DOWN_TO)
    one_pass = dataclasses.replace(tiling, scales=(1.0,))
    first = yield from segment(loaded, image, one_pass, watershed, channel=channel, axes=axes)
    labels = np.asarray(first.labels)
    planes = list(labels.reshape(-1, *labels.shape[-2:]))
    return median_diameter(planes, semantic=loaded.metadata.task == "semantic")


def _estimate_note(meta: CheckpointMetadata, estimate: float | None, size: float) -> str:
    if estimate is None:
        return "diameter auto: the first pass found no object, so the image was not resized"
    trained = f"the model's objects measure {meta.object_diameter:.1f} px"
    if size == 1:
        return f"diameter auto: objects measure about {estimate:.1f} px and {trained}: no resizing needed"
    return f"diameter auto: objects measure about {estimate:.1f} px and {trained}: image resized by {size:.2f}"


def _check_arguments(loaded: Any, image: Any, tiling: Any, channel: Any, watershed: Any = None) -> Any:
    """The image as an array, or a specific error for arguments of the wrong kind."""
    if not isinstance(loaded, LoadedModel):
        raise TypeError(f"segment() takes a LoadedModel (load_checkpoint(...)), got {type(loaded).__name__}")
    if not isinstance(tiling, TilingConfig):
        raise TypeError(f"tiling must be a TilingConfig, got {type(tiling).__name__}")
    if watershed is not None and not isinstance(watershed, WatershedConfig):
        raise TypeError(f"watershed must be a WatershedConfig (or None: the model's own), got {type(watershed).__name__}")
    if channel is not None and (isinstance(channel, bool) or not isinstance(channel, int | np.integer)):
        raise TypeError(f"channel must be an integer index or None, got {channel!r}")
    if image is None:
        raise TypeError("image is None; give an array (numpy, memory-mapped, zarr or dask)")
    if isinstance(image, list | tuple):
        try:
            image = np.asarray(image)
        except ValueError:
            raise ValueError("the image is a ragged list (rows of different lengths); give a rectangular array") from None
    if not (hasattr(image, "shape") and hasattr(image, "dtype") and hasattr(image, "__getitem__")):
        raise TypeError(f"image must be an array (numpy, memory-mapped, zarr or dask), got {type(image).__name__}")
    if np.dtype(image.dtype) == bool:
        image = np.asarray(image, np.uint8)
    if not (np.issubdtype(np.dtype(image.dtype), np.integer) or np.issubdtype(np.dtype(image.dtype), np.floating)):
        raise ValueError(f"the image holds {np.dtype(image.dtype)} values; expected integer or floating-point intensities")
    return image


@dataclass(frozen=True)
class _PlaneJob:
    """The network passes and the post-process of one plane."""

    network: nn.Module
    meta: CheckpointMetadata
    tiling: TilingConfig
    watershed: WatershedConfig
    channel: int | None
    plan: PlanePlan

    def run(self, plane: Any, labels_out: Any, probabilities: np.ndarray | None, index: tuple[int, ...]) -> Progress:
        """Write the labels of ``plane`` into ``labels_out`` (and its probabilities into ``probabilities[index]``)."""
        keep = probabilities is not None
        source = self._source(plane)  # the plane's statistics, measured once
        missing = count_non_finite(plane)
        if missing:
            note = f"{missing:,} NaN or infinite pixels read as the image's background level (what normalisation maps to 0)"
            yield InferenceProgress(0, 1, message=note)
        if source.stats.constant:  # nothing to find, and nothing to run the network on
            labels_out[:] = 0
            if keep:
                probabilities[index] = 0
                probabilities[(*index, 0)] = 1  # background
            yield InferenceProgress(1, 1, message="no contrast: every pixel has the same value, so there are no objects")
            return
        if self.plan.rescaled or (not self.plan.large and (keep or self.meta.task == "instance")):
            probs = yield from self._probabilities(plane, source)  # (K, H, W)
            if keep:
                probabilities[index] = probs
            self._labels_from(probs, labels_out)
        elif self.meta.task == "semantic":  # class ids streamed straight into the output
            yield from predict_tiles(self.network, source, ClassSink(labels_out), self.tiling)
        else:
            yield from self._instances_on_disk(source, labels_out)

    def _source(self, plane: Any) -> ImageSource:
        return ImageSource.prepare(plane, self.meta.input_channels, self.meta.normalization, self.channel)

    def _probabilities(self, plane: Any, source: ImageSource) -> Generator[InferenceProgress, None, np.ndarray]:
        """``(K, H, W)`` probabilities of the plane, averaged over each pass's resize factor; ``source``:
        the plane as it is, for a pass at scale 1."""
        shape = self.plan.shape
        sizes = [scaled_shape(shape, s) for s in self.plan.scales]
        passes = [with_batch(self.tiling, size, self.network) for size in sizes]  # one batch for counting and running
        totals = [batch_count(size, tiling) for size, tiling in zip(sizes, passes, strict=True)]
        probs: np.ndarray | None = None  # the first pass, then the sum of all passes
        for i, scale in enumerate(self.plan.scales):
            this_pass = source
            if scale != 1:  # resizing would spread NaN to its neighbours: fill it first, as tiles are filled
                filled = fill_non_finite(plane, source.stats, source.plan.pick)
                this_pass = self._source(resize_image(filled, scale))
            sink = ArraySink(self.meta.config.out_channels, this_pass.shape)
            for p in predict_tiles(self.network, this_pass, sink, passes[i]):
                # One progress count across all passes, so a bar fills once.
                yield InferenceProgress(sum(totals[:i]) + p.done, sum(totals), message=p.message)
            resized = resize_probabilities(sink.out, shape)
            # Summing into the first pass keeps one full-size array, as a single pass needs anyway.
            probs = resized if probs is None else np.add(probs, resized, out=probs)
        assert probs is not None
        if len(self.plan.scales) > 1:
            probs /= len(self.plan.scales)
        return probs

    def _labels_from(self, probs: np.ndarray, labels_out: Any) -> None:
        if self.meta.task == "semantic":
            labels_out[:] = classes_from_probabilities(probs)
        else:
            instances(quantise(probs[1]), quantise(probs[1] + probs[2]), labels_out, self.watershed)

    def _instances_on_disk(self, source: ImageSource, labels_out: Any) -> Progress:
        """Stream uint8 interior and foreground probabilities to disk, then label them band by band."""
        with tempfile.TemporaryDirectory(prefix="usema-") as tmp:
            interior = disk_array(Path(tmp) / "interior.zarr", source.shape, np.uint8)
            foreground = disk_array(Path(tmp) / "foreground.zarr", source.shape, np.uint8)
            yield from predict_tiles(self.network, source, _InstanceSink(interior, foreground), self.tiling)
            instances(interior, foreground, labels_out, self.watershed)


class _InstanceSink:
    """Keeps interior and foreground probability as uint8 (0..255), the post-process's precision."""

    def __init__(self, interior: Any, foreground: Any) -> None:
        self.interior, self.foreground = interior, foreground

    def write(self, y0: int, probs: np.ndarray) -> None:
        rows = slice(y0, y0 + probs.shape[1])
        self.interior[rows] = quantise(probs[1])
        self.foreground[rows] = quantise(probs[1] + probs[2])


def disk_array(path: Path, shape: tuple[int, int], dtype: Any, rows: int = 512) -> Any:
    """A chunked array on disk (zarr) that reads and writes through files, not memory maps, so
    only the rows in use count towards resident memory."""
    import zarr

    return zarr.open_array(str(path), mode="w", shape=shape, chunks=(rows, shape[1]), dtype=dtype)


def drive(gen: Generator[InferenceProgress, None, Any], on_progress: Callable[[InferenceProgress], None] | None = None) -> Any:
    """Run a progress generator to the end and return its result."""
    while True:
        try:
            progress = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(progress)
