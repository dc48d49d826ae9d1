"""The Post-process section: watershed sliders that re-make the labels from cached probabilities."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSlider, Label, SpinBox
from napari.utils.notifications import show_info
from qtpy.QtCore import QTimer

from napari_usema._widgets.layers import checksum, is_edited, write_owned_labels
from napari_usema._widgets.segment import SegmentationState, SegmentSection
from napari_usema.postprocess.config import WatershedConfig
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
        for widget in (self.mode, self.interior, self.foreground, self.min_size, self.fill_holes):
            widget.changed.connect(self._schedule)
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
        if state is None:
            self.status.value = "Segment an image first."
        elif state.loaded.metadata.task != "instance":
            self.status.value = "Semantic models have no watershed to tune."
        elif state.probabilities is None:
            self.status.value = "The image is too large to keep probabilities for live tuning."

    def _schedule(self, *_: Any) -> None:
        self.segment.watershed = self.config()  # the next Segment run uses these values too
        self._timer.start()

    def apply(self) -> float | None:
        """Recompute the labels now; returns the seconds it took (None when nothing to do)."""
        state = self.segment.state
        if state is None or state.probabilities is None or state.loaded.metadata.task != "instance":
            return None
        config = self.config()
        start = time.perf_counter()
        probs = state.probabilities
        labels = (
            np.stack([instances_from_probabilities(p, config) for p in probs])
            if probs.ndim == 4
            else instances_from_probabilities(probs, config)
        )
        elapsed = time.perf_counter() - start
        layer = state.labels
        if layer in self.segment.viewer.layers and is_edited(layer):
            # Painted corrections are the user's: keep them and show the new labels beside them.
            layer = write_owned_labels(self.segment.viewer, labels, f"{layer.name} (re-tuned)", state.image, force_new=True)
            show_info(f"{state.labels.name} has your edits, so the re-tuned labels went to {layer.name}")
            state = dataclasses.replace(state, labels=layer)
            self.segment.state = state
        else:
            layer.data = labels
            layer.metadata["usema_checksum"] = checksum(layer.data)
        self.status.value = f"{int(labels.max())} objects, re-computed in {elapsed:.2f} s"
        return elapsed
