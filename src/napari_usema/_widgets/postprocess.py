"""The Post-process section: watershed sliders that re-make the labels from cached probabilities.

The watershed runs on a worker thread (0.4 s for a 2048² image, more for a stack), so the sliders stay
smooth; a value that arrives while it runs is computed next, and a result for a superseded value is
dropped: the latest slider value wins.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSlider, Label, SpinBox
from napari.qt.threading import FunctionWorker, create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer

from napari_usema._widgets.layers import is_edited, mark_written, write_owned_labels
from napari_usema._widgets.segment import SegmentSection
from napari_usema._widgets.state import SegmentationState
from napari_usema.inference.object_size import watershed_at_size
from napari_usema.postprocess.config import WatershedConfig
from napari_usema.postprocess.linking import StackLinks
from napari_usema.postprocess.watershed import instances_from_probabilities


class PostprocessSection(Container):
    """Live watershed parameters. No network run: only the cached probabilities are re-used."""

    def __init__(self, segment: SegmentSection, debounce_ms: int = 120) -> None:
        ws = segment.watershed
        self.segment = segment
        self.mode = ComboBox(label="Mode", choices=["watershed", "connected-components"], value=ws.mode)
        self.interior = FloatSlider(label="Interior threshold", value=ws.interior_threshold, min=0.05, max=0.95, step=0.01)
        self.foreground = FloatSlider(label="Foreground threshold", value=ws.foreground_threshold, min=0.05, max=0.95, step=0.01)
        self.min_size = SpinBox(label="Minimum size (px)", value=ws.min_size, min=0, max=100_000)
        self.fill_holes = CheckBox(text="Fill holes", value=ws.fill_holes)
        self.status = Label(label="")
        super().__init__(widgets=[self.mode, self.interior, self.foreground, self.min_size, self.fill_holes, self.status])
        self.status.native.setWordWrap(True)
        self.native.layout().addStretch()  # keep the controls together at the top
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(debounce_ms)  # a drag emits many values: recompute for the latest one
        self._timer.timeout.connect(self.apply)
        self.worker: FunctionWorker | None = None  # the re-tuning running now, if any
        for widget in (self.mode, self.interior, self.foreground, self.min_size, self.fill_holes):
            widget.changed.connect(self._schedule)
        self._pending: WatershedConfig | None = None
        segment.segmented.connect(self._on_segmented)
        segment.model_changed.connect(self._on_model)
        self._sync_enabled(None)
        if segment.loaded is not None:
            self._on_model(segment.loaded)

    def config(self) -> WatershedConfig:
        return WatershedConfig(
            self.mode.value, self.interior.value, self.foreground.value, self.min_size.value, self.fill_holes.value
        )

    def _on_model(self, loaded: Any) -> None:
        """Start from the new model's tuned settings; the labels on screen stay as they are."""
        ws = loaded.metadata.watershed()
        pairs = [
            (self.mode, ws.mode),
            (self.interior, ws.interior_threshold),
            (self.foreground, ws.foreground_threshold),
            (self.min_size, ws.min_size),
            (self.fill_holes, ws.fill_holes),
        ]
        for widget, value in pairs:
            with widget.changed.blocked():
                widget.value = value
        self.segment.watershed = ws

    def _on_segmented(self, state: SegmentationState) -> None:
        self._sync_enabled(state)

    def _sync_enabled(self, state: SegmentationState | None) -> None:
        usable = state is not None and state.probabilities is not None and state.loaded.metadata.task == "instance"
        for widget in (self.mode, self.interior, self.foreground, self.min_size, self.fill_holes):
            widget.enabled = usable
        if usable:
            self.status.value = "Move a slider: the labels follow, without running the network again."
        elif state is None:
            self.status.value = "Segment an image first."
        elif state.loaded.metadata.task != "instance":
            self.status.value = "Semantic models have no watershed to tune."
        elif state.probabilities is None:
            self.status.value = "The image is too large to keep probabilities for live tuning."

    def _schedule(self, *_: Any) -> None:
        self.segment.watershed = self.config()  # the next Segment run uses these values too
        self._timer.start()

    def apply(self) -> FunctionWorker | None:
        """Recompute the labels for the current values on a worker thread (queued behind one that runs)."""
        state = self.segment.state
        if state is None or state.probabilities is None or state.loaded.metadata.task != "instance":
            return None
        if self.worker is not None:
            return None  # _on_finished starts the latest values when the running one ends
        config = self.config()
        # min_size means pixels at the model's object size, as in the run (watershed_at_size).
        config_here = watershed_at_size(config, state.size)
        self.worker = create_worker(_relabel, state.probabilities, config_here, state.links, state.axes)
        self.worker.returned.connect(lambda result, c=config, s=state: self._show(result, c, s))
        self.worker.errored.connect(lambda err: show_error(f"Re-tuning failed: {err}"))
        self.worker.finished.connect(self._on_finished)
        self._pending = config
        self.worker.start()
        return self.worker

    def _on_finished(self) -> None:
        self.worker = None
        if self.config() != self._pending:  # the sliders moved while it ran
            self.apply()

    def _show(self, result: tuple[np.ndarray, float], config: WatershedConfig, state: SegmentationState) -> None:
        labels, elapsed = result
        if config != self.config() or state is not self.segment.state:
            return  # superseded: a newer value (or a new segmentation) follows
        labels, _ = state.layer_labels(labels)  # laid out as the image layer is
        layer = state.labels
        if layer in self.segment.viewer.layers and is_edited(layer):
            # Painted corrections are the user's: keep them and show the new labels beside them.
            name = f"{layer.name} (re-tuned)"
            layer = write_owned_labels(self.segment.viewer, labels, name, state.image, force_new=True, transform=state.transform)
            show_info(f"{state.labels.name} has your edits, so the re-tuned labels went to {layer.name}")
            self.segment.state = dataclasses.replace(state, labels=layer)
        else:
            layer.data = labels
            mark_written(layer)
        self.status.value = f"{int(labels.max())} objects, re-computed in {elapsed:.2f} s"


def _relabel(probabilities: np.ndarray, config: WatershedConfig, links: StackLinks, axes: str) -> tuple[np.ndarray, float]:
    """Labels of ``axes`` from cached ``([T][Z] 3, H, W)`` probabilities, stitched/tracked as the run
    was, and the seconds it took (on a worker)."""
    start = time.perf_counter()
    lead = probabilities.shape[:-3]
    planes = probabilities.reshape(-1, *probabilities.shape[-3:])
    labels = np.stack([instances_from_probabilities(p, config) for p in planes]).reshape(*lead, *planes.shape[-2:])
    if links:
        labels = links.apply(labels, axes)
    return labels, time.perf_counter() - start
