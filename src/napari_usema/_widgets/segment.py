"""The Segment section: pick a model and an image, run tiled inference in the background, show labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, SpinBox
from napari.layers import Image, Labels
from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils.notifications import show_error, show_info
from psygnal import Signal

from napari_usema._widgets.jobs import JobProgress, JobSlot
from napari_usema._widgets.layers import spatial_transform, write_owned_labels
from napari_usema.inference.channels import plan_channels
from napari_usema.inference.devices import available_devices
from napari_usema.inference.object_size import size_factor
from napari_usema.inference.pipeline import (
    LARGE_PLANE_PIXELS,
    SegmentationResult,
    channels_last,
    estimate_diameter,
    infer_layout,
    plan_planes,
    segment,
)
from napari_usema.inference.predictor import InferenceProgress
from napari_usema.inference.tiling import TilingConfig
from napari_usema.io.bundled import available_models, resolve_model
from napari_usema.io.checkpoint import LoadedModel, load_checkpoint
from napari_usema.postprocess.config import WatershedConfig

BROWSE = "Browse for a checkpoint…"
AUTO = "auto"
# Multi-scale TTA choices: factors on the model's own scale (TilingConfig.scales). A model that stores
# other factors (CheckpointMetadata.test_scales) adds its own choice.
MULTISCALE = {"off": (1.0,), "0.8x, 1x, 1.25x (~3x slower)": (0.8, 1.0, 1.25)}


def scales_label(scales: tuple[float, ...]) -> str:
    """The Multi-scale TTA choice that stands for ``scales``."""
    named = {v: k for k, v in MULTISCALE.items()}
    return named.get(scales) or ", ".join(f"{f:g}x" for f in scales)


@dataclass
class SegmentationState:
    """What the last run left for post-processing and fine-tuning."""

    image: Image
    labels: Labels
    probabilities: np.ndarray | None  # ([Z,] K, H, W), None for planes too large to cache
    loaded: LoadedModel


def layer_array(layer: Image) -> Any:
    """The full-resolution data of an image layer (level 0 of a multiscale pyramid)."""
    return layer.data[0] if layer.multiscale else layer.data


class SegmentSection(Container):
    """Model, image, device and tiling choices; Segment and Cancel; progress in napari's activity dock."""

    segmented = Signal(object)  # SegmentationState
    model_changed = Signal(object)  # LoadedModel

    def __init__(self, viewer: Any, watershed: WatershedConfig | None = None, jobs: JobSlot | None = None) -> None:
        defaults = TilingConfig()
        self.jobs = jobs or JobSlot()  # one long job at a time on this model, across all tabs
        self.viewer = viewer
        self.watershed = watershed or WatershedConfig()
        self.loaded: LoadedModel | None = None
        self.state: SegmentationState | None = None
        self.worker: GeneratorWorker | None = None
        self._progress = JobProgress("USEMA segmentation")
        self._extra_models: dict[str, Path] = {}
        self.model = ComboBox(label="Model", choices=self._model_choices, tooltip="bundled models, or a checkpoint file")
        self.checkpoint = FileEdit(label="Checkpoint", filter="*.safetensors", visible=False)
        self.info = Label(label="")
        self.image = ComboBox(label="Image", choices=self._image_layers, nullable=True)
        self.channel = ComboBox(label="Channel", choices=[AUTO], tooltip="for images with more channels than the model takes")
        self.device = ComboBox(label="Device", choices=available_devices(), value=defaults.device)
        self.tile = SpinBox(label="Tile", value=defaults.tile, min=16, max=8192, step=16)
        self.overlap = FloatSpinBox(label="Overlap", value=defaults.overlap, min=0.0, max=0.9, step=0.05)
        self.batch = SpinBox(label="Batch", value=defaults.batch, min=1, max=256)
        self.tta = CheckBox(text="Mirror TTA (4x slower)", value=defaults.tta)
        self._scale_choices = dict(MULTISCALE)
        self.multiscale = ComboBox(
            label="Multi-scale TTA", choices=list(self._scale_choices), value="off",
            tooltip="also run at other sizes around the model's own and average: objects of unusual size are found more often",
        )  # fmt: skip
        self.diameter = FloatSpinBox(
            label="Object diameter (px)", value=0.0, min=0.0, max=5000.0, step=1.0,
            tooltip="0: the objects are the model's size; otherwise the image is resized so that objects of this "
            "diameter match the model's (cellpose's diameter)",
        )  # fmt: skip
        self.estimate_button = PushButton(text="Estimate diameter")
        self.show_probabilities = CheckBox(text="Add probability layer", value=False)
        self.new_layer = CheckBox(text="New layer for each run", value=False)
        self.run_button = PushButton(text="Segment")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(label="")
        super().__init__(widgets=[
            self.model, self.checkpoint, self.info, self.image, self.channel, self.device, self.tile, self.overlap,
            self.batch, self.tta, self.multiscale, self.diameter, self.estimate_button, self.show_probabilities,
            self.new_layer, self.run_button, self.cancel_button, self.status,
        ])  # fmt: skip
        self.info.native.setWordWrap(True)
        self.status.native.setWordWrap(True)
        self.native.layout().addStretch()  # keep the controls together at the top
        self.model.changed.connect(self._on_model_choice)
        self.checkpoint.changed.connect(lambda path: self.use_checkpoint(Path(path)))
        self.image.changed.connect(self._on_image)
        self.run_button.changed.connect(self.run)
        self.estimate_button.changed.connect(self.estimate)
        self.jobs.register([self.run_button], self.cancel_button)
        self.jobs.register([self.estimate_button], self.cancel_button, usable=self._knows_its_diameter)
        self._on_model_choice(self.model.value)

    # --- choices -------------------------------------------------------------------------------
    def _model_choices(self, _: Any = None) -> list[str]:
        return [*available_models(), *self._extra_models, BROWSE]

    def _image_layers(self, _: Any = None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image)]

    def reset_choices(self, *_: Any) -> None:
        """Refresh drop-downs; pick the newest image when none is chosen yet."""
        super().reset_choices()
        images = self._image_layers()
        if self.image.value is None and images:
            self.image.value = images[-1][1]

    def _on_image(self, layer: Image | None) -> None:
        choices: list[Any] = [AUTO]
        shape = tuple(layer_array(layer).shape) if layer is not None else ()
        if layer is not None and not layer.rgb and (len(shape) == 4 or (len(shape) == 3 and channels_last(shape))):
            choices += list(range(shape[-1]))
        self.channel.choices = choices

    # --- model ---------------------------------------------------------------------------------
    def _on_model_choice(self, choice: str | None) -> None:
        self.checkpoint.visible = choice == BROWSE
        if choice is None or choice == BROWSE:
            return
        path = self._extra_models.get(choice) or resolve_model(choice)
        self.use_checkpoint(path, select=False)

    def use_checkpoint(self, path: Path, *, select: bool = True) -> None:
        """Load a checkpoint (errors become a notification) and make it the current model."""
        try:
            loaded = load_checkpoint(path)
        except (ValueError, OSError) as err:
            show_error(f"Could not load the model: {err}")
            return
        if select and path.name not in available_models():
            self._extra_models[path.name] = path
            self.model.reset_choices()
            self.model.value = path.name
        self.use_model(loaded)

    def use_model(self, loaded: LoadedModel) -> None:
        """Make ``loaded`` the model for the next runs (it stays loaded between runs)."""
        from napari_usema.model import count_parameters

        self.loaded = loaded
        meta = loaded.metadata
        self.info.value = (
            f"{meta.task}: {', '.join(meta.class_names)} | {meta.input_channels} input channel(s) | "
            f"{count_parameters(loaded.model) / 1e6:.1f}M parameters"
            + (f" | runs at {meta.input_scale:g}x resolution" if meta.input_scale != 1 else "")
            + (f" | objects ~{meta.object_diameter:.0f} px" if meta.object_diameter else "")
        )
        # Start from the model's own multi-scale choice, as the post-process starts from its tuned values.
        label = scales_label(meta.test_scales)
        if label not in self._scale_choices:
            self._scale_choices[label] = meta.test_scales
            self.multiscale.choices = list(self._scale_choices)
        self.multiscale.value = label
        self.jobs.refresh()  # Estimate needs a model that records its objects' diameter
        self.model_changed.emit(loaded)

    # --- running -------------------------------------------------------------------------------
    def tiling(self) -> TilingConfig:
        return TilingConfig(
            tile=self.tile.value,
            overlap=self.overlap.value,
            batch=self.batch.value,
            tta=self.tta.value,
            scales=self._scale_choices[self.multiscale.value],
            device=self.device.value,
        )

    def _knows_its_diameter(self) -> bool:
        return self.loaded is not None and self.loaded.metadata.object_diameter is not None

    def _inputs(self) -> tuple[Image, Any, int | None] | None:
        """The image layer, its data and the channel, checked; None (and a notification) if refused."""
        layer, channel = self.image.value, None if self.channel.value == AUTO else int(self.channel.value)
        try:
            if self.loaded is None:
                raise ValueError("choose a model first")
            if layer is None:
                raise ValueError("there is no image layer to segment: open an image first")
            data = layer_array(layer)
            meta = self.loaded.metadata
            size = size_factor(meta, self.diameter.value or None)
            plan = plan_planes(meta, tuple(data.shape), self.tiling(), channel, size)
            plane_shape = data.shape[1:] if plan.layout.stacked else data.shape
            plan_channels(tuple(plane_shape), meta.input_channels, channel)
        except ValueError as err:
            show_error(str(err))
            return None
        return layer, data, channel

    def run(self) -> GeneratorWorker | None:
        """Start segmentation in a worker thread; returns the worker (None if the input is refused)."""
        if self.jobs.refuse() or (inputs := self._inputs()) is None:
            return None
        layer, data, channel = inputs
        h, w = (
            data.shape[1:3]
            if infer_layout(tuple(data.shape), self.loaded.metadata.input_channels, channel).stacked
            else data.shape[:2]
        )
        keep = h * w <= LARGE_PLANE_PIXELS
        self.worker = create_worker(
            segment, self.loaded, data, self.tiling(), self.watershed,
            channel=channel, keep_probabilities=keep, diameter=self.diameter.value or None,
        )  # fmt: skip
        self.worker.yielded.connect(self._on_progress)
        self.worker.returned.connect(lambda result, img=layer: self._on_result(result, img))
        self.worker.errored.connect(lambda err: show_error(f"Segmentation failed: {err}"))
        self.worker.aborted.connect(lambda: self._set_status("Cancelled: no layer was changed."))
        self.worker.finished.connect(self._on_finished)
        self._set_status(f"Segmenting {layer.name}…")
        return self.jobs.start(self.worker, "Segmentation")

    def estimate(self) -> GeneratorWorker | None:
        """Estimate the objects' diameter with a first pass at the model's scale; fills the box."""
        if self.jobs.refuse() or (inputs := self._inputs()) is None:
            return None
        layer, data, channel = inputs
        self.worker = create_worker(estimate_diameter, self.loaded, data, self.tiling(), self.watershed, channel=channel)
        self.worker.yielded.connect(self._on_progress)
        self.worker.returned.connect(self._on_estimate)
        self.worker.errored.connect(lambda err: show_error(f"Estimating the diameter failed: {err}"))
        self.worker.aborted.connect(lambda: self._set_status("Cancelled: the diameter is unchanged."))
        self.worker.finished.connect(self._on_finished)
        self._set_status(f"Estimating the object diameter in {layer.name}…")
        return self.jobs.start(self.worker, "Estimating the diameter")

    def _on_estimate(self, estimate: float | None) -> None:
        trained = self.loaded.metadata.object_diameter if self.loaded else None
        if estimate is None:
            self._set_status("No object found at the model's own size: set the diameter by hand.")
            return
        self.diameter.value = round(estimate, 1)
        self._set_status(f"Objects measure about {estimate:.1f} px; the model's, {trained:.1f} px. Segment resizes to match.")

    def cancel(self) -> None:
        """Stop the running job (this one, or another tab's) after its current step."""
        self.jobs.cancel()

    def _on_progress(self, p: InferenceProgress) -> None:
        self._progress.set(p.plane * p.total + p.done, p.total * p.planes)
        if p.message:
            show_info(p.message)

    def _on_result(self, result: SegmentationResult, image: Image) -> None:
        assert self.loaded is not None
        suffix = "labels" if result.task == "instance" else "classes"
        kwargs: dict[str, Any] = {}
        if result.task == "semantic":
            kwargs["features"] = {"class": list(result.class_names)}
        labels = write_owned_labels(
            self.viewer, np.asarray(result.labels), f"{image.name} {suffix}", image, force_new=self.new_layer.value, **kwargs
        )
        labels.metadata["usema_model"] = str(self.loaded.path) if self.loaded.path else "in-memory model"
        if self.show_probabilities.value and result.probabilities is not None:
            name = f"{image.name} probabilities"
            if name in self.viewer.layers:
                self.viewer.layers[name].data = result.probabilities
            else:
                self.viewer.add_image(
                    result.probabilities, name=name, colormap="magma", opacity=0.6, visible=False, **spatial_transform(image)
                )
        self.state = SegmentationState(image, labels, result.probabilities, self.loaded)
        self._set_status(f"{_summary(result)} in {labels.name}")
        self.segmented.emit(self.state)

    def _on_finished(self) -> None:
        self._progress.close()
        self.worker = None

    def _set_status(self, text: str) -> None:
        self.status.value = text


def _summary(result: SegmentationResult) -> str:
    """``120 objects``, or each foreground class's share of the image: ``polyp 14.2%``."""
    labels = np.asarray(result.labels)
    if result.task == "instance":
        return f"{int(labels.max())} objects"
    counts = np.bincount(labels.ravel(), minlength=len(result.class_names))
    shares = [f"{name} {100 * counts[i] / labels.size:.1f}%" for i, name in enumerate(result.class_names) if i > 0]
    return ", ".join(shares) or "no foreground class"
