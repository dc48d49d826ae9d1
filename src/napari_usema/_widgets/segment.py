"""The Segment section: pick a model and an image, run tiled inference in the background, show labels."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton
from napari.layers import Image, Labels
from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_error, show_info
from psygnal import Signal

from napari_usema._help import HELP
from napari_usema._widgets.changes import previous_labels, report_changes
from napari_usema._widgets.jobs import JobBar, JobProgress, JobSlot
from napari_usema._widgets.layer_reading import AUTO, axes_choices, channel_choices, layer_array, plane_data, read_layer
from napari_usema._widgets.layers import STYLES, checksum, class_colours, spatial_transform, write_owned_labels
from napari_usema._widgets.model_choice import ModelMemory, describe_model, fit_text, kind_key, suggested_model
from napari_usema._widgets.run_options import RunOptions
from napari_usema._widgets.segment_choices import BROWSE, STACKS, summary
from napari_usema._widgets.state import Inputs, SegmentationState
from napari_usema._widgets.writer import RECORD, run_record
from napari_usema.inference.axes import AxesReading
from napari_usema.inference.object_size import size_factor
from napari_usema.inference.pipeline import SegmentationResult, estimate_diameter, segment
from napari_usema.inference.planning import NO_LINKS, plan_links, plan_planes
from napari_usema.inference.predictor import InferenceProgress
from napari_usema.inference.tiling import TilingConfig
from napari_usema.io.bundled import available_models, resolve_model
from napari_usema.io.checkpoint import LoadedModel, load_checkpoint
from napari_usema.postprocess.config import WatershedConfig
from napari_usema.postprocess.linking import StackLinks


class SegmentSection(Container):
    """Model, image, device and tiling choices; Segment and Cancel; progress in napari's activity dock."""

    segmented = Signal(object)  # SegmentationState
    model_changed = Signal(object)  # LoadedModel

    def __init__(
        self,
        viewer: Any,
        watershed: WatershedConfig | None = None,
        jobs: JobSlot | None = None,
        memory: ModelMemory | None = None,
    ) -> None:
        self.memory = memory or ModelMemory()  # the last model used on each kind of image
        self.jobs = jobs or JobSlot()  # one long job at a time on this model, across all tabs
        self.viewer = viewer
        self.watershed = watershed or WatershedConfig()
        self.loaded: LoadedModel | None = None
        self.state: SegmentationState | None = None
        self.worker: GeneratorWorker | None = None
        self.job_bar = JobBar()  # Cancel, and the bar with the time left
        self._progress = JobProgress("USEMA segmentation", self.job_bar)
        self._extra_models: dict[str, Path] = {}
        self._suggested: set[int] = set()  # the layers (by id) already given their default model
        self.model = ComboBox(label="Model", choices=self._model_choices, tooltip=HELP["model"])
        self.checkpoint = FileEdit(
            label="Checkpoint",
            filter="*.safetensors *.zip",
            visible=False,
            tooltip="a .safetensors checkpoint (usema train, a fine-tune) or a usema export .zip package",
        )
        self.info = Label(label="")
        self.fit = Label(label="", visible=False)  # a warning when the image is unlike the model's training images
        self.image = ComboBox(label="Image", choices=self._image_layers, nullable=True, tooltip="the image layer to segment")
        self.axes = ComboBox(
            label="Axes", choices=self._axes_choices,
            tooltip=HELP["axes"],
        )  # fmt: skip
        self.channel = ComboBox(label="Channel", choices=self._channel_choices, tooltip=HELP["channel"])
        self.stacks = ComboBox(
            label="Stacks",
            choices=list(STACKS),
            value=STACKS[0],
            tooltip="one id per object across planes",
        )
        self.link_iou = FloatSpinBox(
            label="Stack IoU", value=0.25, min=0.01, max=1.0, step=0.05,
            tooltip=HELP["link_iou"],
        )  # fmt: skip
        self.run_options = RunOptions()  # folded away: device, tiling, TTA, extra layers
        o = self.run_options
        self.device, self.tile, self.overlap, self.batch, self.tta = o.device, o.tile, o.overlap, o.batch, o.tta
        self.multiscale, self.show_probabilities, self.new_layer, self.mark_changes = (
            o.multiscale, o.show_probabilities, o.new_layer, o.mark_changes,
        )  # fmt: skip
        self.diameter = FloatSpinBox(
            label="Object diameter (px)", value=0.0, min=0.0, max=5000.0, step=1.0,
            tooltip=HELP["diameter"],
        )  # fmt: skip
        self.estimate_button = PushButton(
            text="Estimate diameter",
            tooltip="measure the objects' diameter with a first pass, and fill the box",
        )
        self.style = ComboBox(
            label="Show labels as", choices=list(STYLES), value="fill",
            tooltip="fill: objects coloured in; outline: their borders only, so the image shows through",
        )  # fmt: skip
        self.run_button = PushButton(text="Segment", tooltip="run the model on the image, in the background")
        self.cancel_button = self.job_bar.cancel
        self.status = Label(label="")
        super().__init__(widgets=[
            self.model, self.checkpoint, self.info, self.image, self.fit, self.axes, self.channel, self.stacks, self.link_iou,
            self.diameter, self.estimate_button, self.style, self.run_button, self.job_bar, self.status,
        ])  # fmt: skip
        self.info.native.setWordWrap(True)
        self.fit.native.setWordWrap(True)
        self.fit.native.setStyleSheet("color: #d98c00")  # amber, readable on dark and light themes: a caution
        self.status.native.setWordWrap(True)
        self.native.layout().insertWidget(self.index(self.style) + 1, self.run_options.fold)  # a Qt fold among magicgui rows
        self.native.layout().addStretch()  # keep the controls together at the top
        self.link_iou.visible = False  # only when planes are joined
        self.stacks.changed.connect(lambda choice: setattr(self.link_iou, "visible", choice != STACKS[0]))
        self.model.changed.connect(self._on_model_choice)
        self.checkpoint.changed.connect(lambda path: self.use_checkpoint(Path(path)))
        self.image.changed.connect(self._on_image)
        self.style.changed.connect(lambda _: self._show_style())
        self.axes.changed.connect(lambda _: (self.channel.reset_choices(), self._check_fit()))
        self.channel.changed.connect(lambda _: self._check_fit())
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

    def _axes_choices(self, _: Any = None) -> list[str]:
        return axes_choices(self.image.value)

    def _channel_choices(self, _: Any = None) -> list[tuple[str, Any]]:
        layer = self.image.value
        if layer is None or layer.rgb:
            return [(AUTO, AUTO)]
        try:
            reading = self._reading(layer, 0)  # as if a channel were chosen: the guess lists its channels
        except ValueError:
            return [(AUTO, AUTO)]
        return channel_choices(layer, reading)

    def _on_image(self, layer: Image | None) -> None:
        """A new layer: offer its readings, starting from what its metadata says, and its channels."""
        self.axes.reset_choices()
        said = layer.metadata.get("axes") if layer is not None else None
        self.axes.value = said if said in self.axes.choices else AUTO
        self.channel.reset_choices()
        choice = suggested_model(layer, self._model_choices(), self.memory, self._suggested, busy=self.jobs.busy)
        if choice is not None and choice != self.model.value:
            self.model.value = choice  # loads it, and checks the fit
        else:
            self._check_fit()

    def _check_fit(self) -> None:
        """Warn, before anything runs, when the model never saw an image of this one's kind."""
        self.fit.value = fit_text(self.loaded, self.image.value, self.plane_data)
        self.fit.visible = bool(self.fit.value)

    def _reading(self, layer: Image, channel: int | None) -> AxesReading:
        """The layer's axes: the Axes box's, else the layer's metadata, else a guess from the shape."""
        channels = self.loaded.metadata.input_channels if self.loaded is not None else 1
        return read_layer(layer, None if self.axes.value in (AUTO, None) else self.axes.value, channels, channel)

    def plane_data(self, layer: Image) -> Any:
        """The layer as one 2-D image ``(H, W)`` or ``(H, W, C)``, its axes read as for Segment (for
        fine-tuning, corrections and attention, which work on one plane)."""
        return plane_data(layer, self._reading(layer, None))

    def transform_for(self, layer: Image, out_axes: str) -> dict[str, Any]:
        """``scale`` and ``translate`` for a layer of ``out_axes`` (e.g. ``"YX"``) laid over ``layer``."""
        try:
            return spatial_transform(layer, self._reading(layer, None).axes, out_axes)
        except ValueError:  # a shape that reads no way: its last axes, as napari would align them
            return spatial_transform(layer)

    def stack_links(self) -> StackLinks:
        choice, iou = self.stacks.value, self.link_iou.value
        return StackLinks(stitch=iou if "stitch" in choice else None, track=iou if "track" in choice else None)

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
        self.loaded = loaded
        meta = loaded.metadata
        self.info.value, self.info.tooltip = describe_model(loaded)
        self._check_fit()
        # Start from the model's own multi-scale choice, as the post-process starts from its tuned values.
        self.run_options.use_scales(meta.test_scales)
        self.jobs.refresh()  # Estimate needs a model that records its objects' diameter
        self.model_changed.emit(loaded)

    # --- running -------------------------------------------------------------------------------
    def tiling(self) -> TilingConfig:
        return self.run_options.tiling()

    def _knows_its_diameter(self) -> bool:
        return self.loaded is not None and self.loaded.metadata.object_diameter is not None

    def _inputs(self, *, links: bool = True) -> Inputs | None:
        """The image layer, its data, axes, channel and stack links, checked; None (and a notification) if refused."""
        layer, channel = self.image.value, self.channel.value
        channel = None if channel in (AUTO, None) else int(channel)
        try:
            if self.loaded is None:
                raise ValueError("choose a model first")
            if layer is None:
                raise ValueError("there is no image layer to segment: open an image first")
            data = layer_array(layer)
            meta = self.loaded.metadata
            size = size_factor(meta, self.diameter.value or None)
            reading = self._reading(layer, channel)
            plan = plan_planes(meta, tuple(data.shape), self.tiling(), channel, size, reading)
            stack_links = self.stack_links() if links else NO_LINKS
            reading, stack_links = plan_links(plan, stack_links, meta.task, streamed=False)
        except ValueError as err:
            show_error(str(err))
            return None
        if reading.note:
            show_info(f"{layer.name}: {reading.note}")
        return Inputs(layer, data, channel, reading, stack_links, plan.large)

    def run(self) -> GeneratorWorker | None:
        """Start segmentation in a worker thread; returns the worker (None if the input is refused)."""
        if self.jobs.refuse() or (inputs := self._inputs()) is None:
            return None
        layer = inputs.layer
        self.worker = create_worker(
            segment, self.loaded, inputs.data, self.tiling(), self.watershed,
            channel=inputs.channel, keep_probabilities=not inputs.large, diameter=self.diameter.value or None,
            axes=inputs.reading, links=inputs.links,
        )  # fmt: skip
        self.worker.yielded.connect(self._on_progress)
        # The result is the model's that ran, whatever the Model box says by the time it arrives.
        run = {"channel": inputs.channel, "device": self.device.value, "loaded": self.loaded, "tiling": self.tiling()}
        run.update(started=time.perf_counter(), watershed=self.watershed)  # as they were when it ran
        self.worker.returned.connect(lambda result, img=layer, r=inputs.reading: self._on_result(result, img, r, **run))
        choice, kind = self.model.value, kind_key(layer)
        self.worker.returned.connect(lambda _: self._remember(kind, choice))
        self.worker.errored.connect(lambda err: show_error(f"Segmentation failed: {err}"))
        self.worker.aborted.connect(lambda: self._set_status("Cancelled: no layer was changed."))
        self.worker.finished.connect(self._on_finished)
        self._set_status(f"Segmenting {layer.name}…")
        return self.jobs.start(self.worker, "Segmentation")

    def _remember(self, kind: str, choice: str | None) -> None:
        """After a run that finished: the model for the next image of this kind."""
        if choice not in (None, BROWSE):
            self.memory.remember(kind, choice)

    def estimate(self) -> GeneratorWorker | None:
        """Estimate the objects' diameter with a first pass at the model's scale; fills the box."""
        if self.jobs.refuse() or (inputs := self._inputs(links=False)) is None:
            return None
        layer = inputs.layer
        self.worker = create_worker(
            estimate_diameter, self.loaded, inputs.data, self.tiling(), self.watershed,
            channel=inputs.channel, axes=inputs.reading,
        )  # fmt: skip
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

    def _on_result(
        self,
        result: SegmentationResult,
        image: Image,
        reading: AxesReading | None = None,
        channel: int | None = None,
        device: str = "cpu",
        loaded: LoadedModel | None = None,
        tiling: TilingConfig | None = None,
        started: float | None = None,
        watershed: WatershedConfig | None = None,
    ) -> None:
        loaded = loaded or self.loaded
        assert loaded is not None
        suffix = "labels" if result.task == "instance" else "classes"
        kwargs: dict[str, Any] = {}
        if result.task == "semantic":
            kwargs["features"] = {"class": list(result.class_names)}
        shape = tuple(layer_array(image).shape)
        reading = reading or self._reading(image, None)
        state = SegmentationState(
            image, None, result.probabilities, loaded, result.size, result.axes, result.links,
            placement=(reading, shape, image.rgb),
        )  # fmt: skip
        data, layer_axes = state.layer_labels(np.asarray(result.labels))
        # The labels lie over the image, axis for axis: its pixel size and origin on each.
        transform = spatial_transform(image, reading.axes, layer_axes)
        before = previous_labels(self.viewer, self.state, image) if result.task == "instance" else None
        labels = write_owned_labels(
            self.viewer, data, f"{image.name} {suffix}", image, force_new=self.new_layer.value, transform=transform, **kwargs
        )
        labels.metadata["usema_model"] = str(loaded.path) if loaded.path else "in-memory model"
        labels.metadata["axes"] = layer_axes
        ran = dict(channel=channel, axes=reading.axes, seconds=time.perf_counter() - started if started else 0.0)
        settings = (tiling or self.tiling(), watershed or self.watershed)
        labels.metadata[RECORD] = run_record(loaded, image, *settings, result, **ran)
        if result.task == "semantic":
            # napari's default palette puts dark red on reddish tissue; these stand out on any image.
            labels.colormap = DirectLabelColormap(color_dict=class_colours(len(result.class_names)))
        self._show_style(labels)
        if self.show_probabilities.value and result.probabilities is not None:
            name = f"{image.name} probabilities"
            probs, probability_axes = reading.unstandardise(
                np.moveaxis(result.probabilities, -3, 0), shape, leading="K", rgb=image.rgb
            )
            if name in self.viewer.layers:
                self.viewer.layers[name].data = probs
            else:
                self.viewer.add_image(
                    probs, name=name, colormap="magma", opacity=0.6, visible=False,
                    **spatial_transform(image, reading.axes, probability_axes),
                )  # fmt: skip
        # Corrections check the image is still the one segmented (the probabilities are its).
        fingerprint = checksum(layer_array(image)) if result.probabilities is not None else None
        self.state = dataclasses.replace(
            state, labels=labels, transform=transform, image_checksum=fingerprint, channel=channel, device=device
        )
        changed = report_changes(self.viewer, before, result, self.state, labels, mark=self.mark_changes.value)
        self._set_status(f"{summary(result)} in {labels.name}{changed}")
        self.segmented.emit(self.state)

    def _show_style(self, labels: Labels | None = None) -> None:
        """Fill or outline the labels (the Show labels as box), on the last run's layer by default."""
        if labels is None:
            labels = self.state.labels if self.state is not None else None
        if labels is None or labels not in self.viewer.layers:
            return
        contour, opacity = STYLES[self.style.value]
        labels.contour, labels.opacity = contour, opacity

    def _on_finished(self) -> None:
        self._progress.close()
        self.worker = None

    def _set_status(self, text: str) -> None:
        self.status.value = text
