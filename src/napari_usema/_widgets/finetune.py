"""The Fine-tune section: collect corrected image/label pairs, train in the background, swap the model in."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, SpinBox
from napari.layers import Image, Labels, Shapes
from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils.notifications import show_error, show_info

from napari_usema._help import HELP
from napari_usema._widgets.jobs import JobBar, JobProgress
from napari_usema._widgets.layers import corrected_pair_parts, region_mask
from napari_usema._widgets.plot import LossPlot
from napari_usema._widgets.segment import SegmentSection
from napari_usema.postprocess.corrections import changed_region
from napari_usema.training.finetune import FINETUNE_DEFAULTS, CorrectedPair, check_output, finetune, versioned_path
from napari_usema.training.trainer import TrainingProgress

NO_REGION = "whole image"


class FinetuneSection(Container):
    """Click-to-correct: paint fixes into the labels, add the pair, Fine-tune, then re-segment."""

    def __init__(self, segment: SegmentSection, output_folder: Path | None = None) -> None:
        self.segment = segment
        self.viewer = segment.viewer
        self.pairs: list[CorrectedPair] = []
        self.worker: GeneratorWorker | None = None
        self.saved: Path | None = None
        self.job_bar = JobBar()  # Cancel, and the bar with the time left
        self._progress = JobProgress("USEMA fine-tuning", self.job_bar)
        d = FINETUNE_DEFAULTS
        self.labels_layer = ComboBox(
            label="Corrected labels", choices=self._labels_layers, nullable=True,
            tooltip="for a whole-image pair: the labels layer you corrected (its image is the one it was made from)",
        )  # fmt: skip
        self.region = ComboBox(
            label="Corrected region", choices=self._region_layers, tooltip="train only inside these shapes/labels"
        )
        self.add_button = PushButton(
            text="Add a whole image + labels pair instead",
            tooltip="train on the whole of these labels (inside the region, if one is chosen), not only around your edits",
        )
        self.pairs_info = Label(label="", value="No corrections yet.")
        self.steps = SpinBox(label="Steps", value=d.steps, min=1, max=100_000, tooltip=HELP["steps"])
        self.lr = FloatSpinBox(label="Learning rate", value=d.lr, min=1e-6, max=1e-1, step=1e-4, tooltip=HELP["lr"])
        self.folder = FileEdit(
            label="Save to", mode="d", value=output_folder or Path.home() / "usema-models",
            tooltip="where the fine-tuned model goes: a new versioned file (nuclei.ft1.safetensors, ...), never its parent",
        )  # fmt: skip
        self.run_button = PushButton(text="Fine-tune", tooltip="train a copy of the model on your corrections, in the background")
        self.cancel_button = self.job_bar.cancel
        self.resegment_button = PushButton(
            text="Re-segment with the new model",
            enabled=False,
            tooltip="run the new model on the image; the status says what changed",
        )
        self.plot = LossPlot(viewer=self.viewer)  # follows the viewer's theme
        self.status = Label(label="")
        super().__init__(widgets=[
            self.labels_layer, self.region, self.add_button, self.pairs_info, self.steps, self.lr, self.folder,
            self.run_button, self.job_bar, self.resegment_button, self.status,
        ])  # fmt: skip
        self.pairs_info.native.setWordWrap(True)
        self.status.native.setWordWrap(True)
        self.native.layout().addStretch()  # keep the controls together at the top
        self.native.layout().insertWidget(9, self.plot.canvas)  # a Qt canvas among magicgui widgets
        self.add_button.changed.connect(self.add_pair)
        self.run_button.changed.connect(self.run)
        self.resegment_button.changed.connect(self.segment.run)
        segment.jobs.register([self.run_button], self.cancel_button)
        segment.jobs.register([self.resegment_button], self.cancel_button, usable=lambda: self.saved is not None)

    def reset_choices(self, *_: Any) -> None:
        """Refresh drop-downs and the corrections summary; default to the labels of the last Segment run."""
        super().reset_choices()
        self.pairs_info.value = self.describe_corrections()
        state = self.segment.state
        if self.labels_layer.value is None and state is not None and state.labels in self.viewer.layers:
            self.labels_layer.value = state.labels

    def _labels_layers(self, _: Any = None) -> list[tuple[str, Labels]]:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Labels)]

    def _region_layers(self, _: Any = None) -> list[tuple[str, Any]]:
        layers = [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Shapes | Labels)]
        return [(NO_REGION, None), *layers]

    def add_pair(self) -> bool:
        """Add the Segment section's image with the chosen (corrected) labels; False if refused."""
        image: Image | None = self.segment.image.value
        labels: Labels | None = self.labels_layer.value
        try:
            if image is None:
                raise ValueError("choose the image in the Segment section first")
            if labels is None:
                raise ValueError("there is no labels layer: segment the image, then correct its labels")
            data, truth = np.asarray(self.segment.plane_data(image)), np.asarray(labels.data)
            if truth.shape != data.shape[: truth.ndim] or truth.ndim != 2:
                raise ValueError(f"labels {truth.shape} do not match the 2-D image {data.shape}")
            if not truth.any():
                raise ValueError(f"the labels layer {labels.name!r} is empty: paint some objects first")
            region = region_mask(self.region.value, truth.shape)
            if region is not None and not region.any():
                raise ValueError("the corrected region is empty: draw around what you corrected")
        except ValueError as err:
            show_error(str(err))
            return False
        self.pairs.append(CorrectedPair(data, truth.copy(), region, image.name))
        self.pairs_info.value = self.describe_corrections()
        return True

    def _edited(self) -> list[tuple[Any, np.ndarray, np.ndarray, np.ndarray]]:
        """``(image layer, image plane, written, now)`` of every plugin-made labels layer edited since it
        was written (Correct-tab clicks or napari's brush) whose image layer is still open and fits."""
        edited = []
        for layer in self.viewer.layers:
            parts = corrected_pair_parts(layer) if isinstance(layer, Labels) else None
            source = layer.metadata.get("usema_image_layer") if parts else None
            if parts is None or not any(source is other for other in self.viewer.layers):
                continue  # not edited, or its image was closed
            try:
                image = self.segment.plane_data(source)
            except ValueError:
                continue
            if tuple(image.shape[:2]) == parts[1].shape:  # else the image layer's data was replaced since
                edited.append((source, image, *parts))
        return edited

    def corrections(self) -> tuple[list[CorrectedPair], int]:
        """One pair per edited layer, trained only where the edits are (``changed_region``); and the
        number of objects edited."""
        pairs, objects = [], 0
        for source, image, written, now in self._edited():
            objects += _edited_objects(written, now)
            pairs.append(CorrectedPair(np.asarray(image), now.copy(), changed_region(written, now), source.name))
        return pairs, objects

    def describe_corrections(self) -> str:
        """The summary line; runs on every layer change, so it only counts (no regions, no copies)."""
        if self.pairs:
            return f"{len(self.pairs)} pair(s): " + ", ".join(p.name for p in self.pairs)
        edited = self._edited()
        if not edited:
            return "No corrections yet: fix labels in the Correct tab (or with napari's brush), then Fine-tune."
        objects = sum(_edited_objects(written, now) for _, _, written, now in edited)
        return f"Train on my corrections: {objects} object(s) in {len(edited)} image(s) (only around the edits)."

    def output_path(self) -> Path:
        loaded = self.segment.loaded
        parent = loaded.path if loaded and loaded.path else Path("model.safetensors")
        folder = Path(self.folder.value)
        folder.mkdir(parents=True, exist_ok=True)
        return versioned_path(parent, folder)

    def run(self) -> GeneratorWorker | None:
        """Fine-tune on the collected pairs (or the current pair if none were added)."""
        loaded = self.segment.loaded
        if self.segment.jobs.refuse():
            return None
        if loaded is None:
            show_error("choose a model in the Segment section first")
            return None
        pairs = list(self.pairs) or self.corrections()[0]
        if not pairs and not self.add_pair():
            return None
        pairs = pairs or list(self.pairs)
        out = self.output_path()
        try:
            check_output(loaded.path, out, overwrite=False)
        except ValueError as err:
            show_error(str(err))
            return None
        config = dataclasses.replace(
            FINETUNE_DEFAULTS, steps=self.steps.value, lr=self.lr.value, device=self.segment.device.value
        )
        channel = None if self.segment.channel.value == "auto" else int(self.segment.channel.value)
        self.plot.clear()
        self.worker = create_worker(finetune, loaded, pairs, out, config, channel=channel)
        self.worker.yielded.connect(self._on_step)
        self.worker.returned.connect(lambda _=None, path=out: self._on_saved(path))
        self.worker.errored.connect(lambda err: show_error(f"Fine-tuning failed: {err}"))
        self.worker.aborted.connect(lambda: self._set_status("Cancelled: nothing was saved; the model is unchanged."))
        self.worker.finished.connect(self._on_finished)
        self._set_status(f"Fine-tuning {loaded.path.name if loaded.path else 'the model'} on {len(pairs)} image(s)…")
        return self.segment.jobs.start(self.worker, "Fine-tuning")

    def _on_step(self, record: TrainingProgress) -> None:
        self._progress.set(record.step, record.steps)
        self.plot.add(record.step, record.loss)

    def _on_saved(self, path: Path) -> None:
        self.saved = path
        self.segment.use_checkpoint(path)
        self._set_status(f"Saved {path.name}; it is now the Segment model (the parent is unchanged).")
        show_info(f"Fine-tuned model saved to {path}. Click 'Re-segment with the new model' to see it.")

    def _on_finished(self) -> None:
        self._progress.close()
        self.worker = None

    def _set_status(self, text: str) -> None:
        self.status.value = text


def _edited_objects(written: np.ndarray, now: np.ndarray) -> int:
    """How many objects an edit touched: the ids, before or after, of the pixels that changed."""
    changed = written != now
    return len(np.setdiff1d(np.union1d(written[changed], now[changed]), [0]))
