"""The Post-process section: watershed sliders that re-make the labels from cached probabilities.

The watershed runs on a worker thread (0.4 s for a 2048² image, more for a stack), so the sliders stay
smooth; a value that arrives while it runs is computed next, and a result for a superseded value is
dropped: the latest slider value wins.

Results out: after every run and every re-tuning, the labels are measured on a worker too
(:mod:`napari_usema.analysis.measurements`, 2 s for 4,600 objects at 2048²); the table becomes the
layer's ``features`` (hovering over an object shows its row), and Save measurements… writes it as CSV.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSlider, Label, PushButton, SpinBox
from napari.qt.threading import FunctionWorker, create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog, QMessageBox, QWidget

from napari_usema._help import HELP
from napari_usema._widgets.layer_reading import layer_array
from napari_usema._widgets.layers import (
    checksum,
    is_edited,
    mark_written,
    measurements_of,
    set_measurements,
    standard_labels,
    write_owned_labels,
)
from napari_usema._widgets.segment import SegmentSection
from napari_usema._widgets.state import SegmentationState
from napari_usema._widgets.writer import RECORD, retuned
from napari_usema.analysis.measurements import measure_classes, measure_objects, write_csv
from napari_usema.inference.object_size import watershed_at_size
from napari_usema.inference.planning import LARGE_PLANE_PIXELS
from napari_usema.io.outputs import OutputError, OutputExistsError, check_output
from napari_usema.postprocess.config import WatershedConfig
from napari_usema.postprocess.linking import StackLinks
from napari_usema.postprocess.watershed import instances_from_probabilities


class PostprocessSection(Container):
    """Live watershed parameters. No network run: only the cached probabilities are re-used."""

    def __init__(self, segment: SegmentSection, debounce_ms: int = 120) -> None:
        ws = segment.watershed
        self.segment = segment
        self.mode = ComboBox(label="Mode", choices=["watershed", "connected-components"], value=ws.mode, tooltip=HELP["mode"])
        self.interior = FloatSlider(
            label="Interior threshold",
            value=ws.interior_threshold,
            min=0.05,
            max=0.95,
            step=0.01,
            tooltip=HELP["interior_threshold"],
        )
        self.foreground = FloatSlider(
            label="Foreground threshold", value=ws.foreground_threshold, min=0.05, max=0.95, step=0.01,
            tooltip=HELP["foreground_threshold"],
        )  # fmt: skip
        self.min_size = SpinBox(label="Minimum size (px)", value=ws.min_size, min=0, max=100_000, tooltip=HELP["min_size"])
        self.fill_holes = CheckBox(text="Fill holes", value=ws.fill_holes, tooltip=HELP["fill_holes"])
        self.status = Label(label="")
        self.save_button = PushButton(
            text="Save measurements…", enabled=False,
            tooltip="a CSV with one row per object: label, area, centroid, bounding box, eccentricity, mean intensity",
        )  # fmt: skip
        self.results = Label(label="")
        super().__init__(widgets=[
            self.mode, self.interior, self.foreground, self.min_size, self.fill_holes, self.status,
            self.save_button, self.results,
        ])  # fmt: skip
        self.status.native.setWordWrap(True)
        self.results.native.setWordWrap(True)
        self.native.layout().addStretch()  # keep the controls together at the top
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(debounce_ms)  # a drag emits many values: recompute for the latest one
        self._timer.timeout.connect(self.apply)
        self.worker: FunctionWorker | None = None  # the re-tuning running now, if any
        for widget in (self.mode, self.interior, self.foreground, self.min_size, self.fill_holes):
            widget.changed.connect(self._schedule)
        self._pending: WatershedConfig | None = None
        self.measuring: FunctionWorker | None = None  # the measurement running now, if any
        self._to_measure: SegmentationState | None = None  # the next one: the latest labels win
        self._save_to: tuple[Path, bool] | None = None  # a save waiting for its measurement
        self._shown: SegmentationState | None = None  # the run the status describes
        self.save_button.changed.connect(self._on_save_clicked)
        segment.segmented.connect(self._on_segmented)
        segment.model_changed.connect(self._on_model)
        # From the Segment section's state, not from None: a run may have ended before this section was
        # made, or without its signal reaching here; reset_choices (every layer change) re-reads it too.
        self._sync_enabled(segment.state)
        if segment.loaded is not None:
            self._on_model(segment.loaded)

    def reset_choices(self, *_: Any) -> None:
        """napari calls this when layers change: re-read the last run (its layer may be gone)."""
        super().reset_choices()
        if self.segment.state is not self._shown:
            self._on_segmented(self.segment.state)
        self.save_button.enabled = self._labels_layer() is not None

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

    def _on_segmented(self, state: SegmentationState | None) -> None:
        self._sync_enabled(state)
        if state is not None:
            self.measure(state)

    def _sync_enabled(self, state: SegmentationState | None) -> None:
        self._shown = state
        usable = state is not None and state.probabilities is not None and state.loaded.metadata.task == "instance"
        for widget in (self.mode, self.interior, self.foreground, self.min_size, self.fill_holes):
            widget.enabled = usable
        self.save_button.enabled = self._labels_layer() is not None
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
        labels, layer_axes = state.layer_labels(labels)  # laid out as the image layer is
        layer = original = state.labels
        if layer in self.segment.viewer.layers and is_edited(layer):
            # Painted corrections are the user's: keep them and show the new labels beside them.
            name = f"{layer.name} (re-tuned)"
            layer = write_owned_labels(self.segment.viewer, labels, name, state.image, force_new=True, transform=state.transform)
            show_info(f"{state.labels.name} has your edits, so the re-tuned labels went to {layer.name}")
            layer.metadata["axes"] = layer_axes  # where measure() finds the engine's axes again
            state = self.segment.state = dataclasses.replace(state, labels=layer)
            self._shown = state
        else:
            layer.data = labels
            mark_written(layer)
        if layer is not original and RECORD in original.metadata:  # the re-tuned copy of an edited layer
            layer.metadata[RECORD] = copy.deepcopy(original.metadata[RECORD])
        retuned(layer, config)  # its provenance names the watershed that made it
        self.status.value = f"{int(labels.max())} objects, re-computed in {elapsed:.2f} s"
        self.measure(state)

    # --- results out ---------------------------------------------------------------------------
    def _labels_layer(self) -> Any:
        """The last run's labels layer, while it is open."""
        state = self.segment.state
        return state.labels if state is not None and state.labels in self.segment.viewer.layers else None

    def measure(self, state: SegmentationState) -> FunctionWorker | None:
        """Measure ``state``'s labels layer as it is now on a worker; the table becomes its features.
        One at a time: labels that arrive meanwhile are measured next, and only the latest."""
        self._to_measure = state
        if self.measuring is not None:
            return None  # _on_measuring_finished starts the latest
        state, self._to_measure = self._to_measure, None
        layer = state.labels
        if layer is None or layer not in self.segment.viewer.layers:
            return None
        try:
            job = measurement_job(state)
        except ValueError as err:
            self.results.value = f"Not measured: {err}"
            return None
        measured = checksum(layer.data)  # results for labels that changed meanwhile are dropped
        self.measuring = create_worker(job)
        self.measuring.returned.connect(lambda table, s=state, c=measured: self._on_measured(table, s, c))
        self.measuring.errored.connect(self._on_measuring_failed)
        self.measuring.finished.connect(self._on_measuring_finished)
        self.results.value = f"Measuring {layer.name}…"
        self.measuring.start()
        return self.measuring

    def _on_measuring_failed(self, err: Exception) -> None:
        self._save_to = None  # a waiting save would otherwise go out with some later measurement
        show_error(f"Measuring the labels failed: {err}")

    def _on_measuring_finished(self) -> None:
        self.measuring = None
        if self._to_measure is not None:
            self.measure(self._to_measure)

    def _on_measured(self, table: dict[str, np.ndarray], state: SegmentationState, measured: int) -> None:
        layer = state.labels
        if state is not self.segment.state or layer not in self.segment.viewer.layers or checksum(layer.data) != measured:
            if self._save_to is not None and self._to_measure is None:
                self._to_measure = self.segment.state  # a waiting save gets the labels as they are now
            return  # superseded: newer labels are measured next
        keyed = set_measurements(layer, table, measured)
        rows = len(next(iter(table.values()), ()))
        what = "objects" if "label" in table else "class areas"
        hover = "hover over one to see its row" if keyed else "per plane: ids repeat, so napari shows no features"
        self.results.value = f"{rows} {what} measured ({hover}); Save measurements… writes them as CSV."
        if self._save_to is not None:
            path, overwrite = self._save_to
            self._save_to = None
            self._write(layer, table, path, overwrite)

    def _on_save_clicked(self) -> None:
        layer = self._labels_layer()
        if layer is None:
            show_error("segment an image first: the measurements are of the last Segment run's labels")
            return
        path, overwrite = ask_csv_path(self.native, suggested_path(self.segment.state))
        if path is not None:
            self.save_measurements(path, overwrite=overwrite)

    def save_measurements(self, path: str | Path, *, overwrite: bool = False) -> bool:
        """Write the measurements of the last run's labels layer (edits included) to ``path`` (a CSV);
        measured first on a worker if the labels changed since. False (and a notification) if refused:
        an existing file is replaced only with ``overwrite``."""
        layer = self._labels_layer()
        try:
            if layer is None:
                raise ValueError("segment an image first: the measurements are of the last Segment run's labels")
            path = check_output(path, overwrite=overwrite, suffix=".csv", what="measurements")
        except OutputExistsError:
            show_error(f"{Path(path).name} exists: choose another name, or agree to replace it when the dialog asks")
            return False
        except (OutputError, ValueError) as err:
            show_error(str(err))
            return False
        table = measurements_of(layer)
        if table is not None:
            return self._write(layer, table, path, overwrite)
        self._save_to = (path, overwrite)  # written by _on_measured
        if self.measure(self.segment.state) is None and self.measuring is None:  # refused: the line says why
            self._save_to = None
            show_error(f"Could not save the measurements: {self.results.value}")
            return False
        return True

    def _write(self, layer: Any, table: dict[str, np.ndarray], path: Path, overwrite: bool) -> bool:
        try:
            write_csv(table, path, overwrite=overwrite)
        except (OutputError, OSError) as err:
            show_error(f"Could not save the measurements: {err}")
            return False
        rows = len(next(iter(table.values()), ()))
        self.results.value = f"Saved {rows} rows of {layer.name} to {path}"
        show_info(f"Measurements of {layer.name} saved to {path}")
        return True


def measurement_job(state: SegmentationState) -> Callable[[], dict[str, np.ndarray]]:
    """What measures ``state``'s labels layer as it is now (on a worker), in the engine's axes, with the
    image's intensities while the image still fits and the pixel size where its file recorded one.

    Raises:
        ValueError: the layer's data no longer fits the run's axes, or its planes are over
            :data:`LARGE_PLANE_PIXELS` (``usema predict --measurements`` refuses them too).
    """
    layer, image, axes = state.labels, state.image, state.axes
    labels = standard_labels(layer.data, layer.metadata.get("axes"), axes)
    if labels.shape[-2] * labels.shape[-1] > LARGE_PLANE_PIXELS:  # minutes, and the image read into memory
        raise ValueError(f"planes over {LARGE_PLANE_PIXELS:,} pixels are not measured; crop the image to measure a part")
    pixel_size = image.metadata.get("pixel_size_um") or None  # the reader's, from the file
    if state.loaded.metadata.task == "semantic":
        return partial(measure_classes, labels, state.loaded.metadata.class_names, axes=axes, pixel_size=pixel_size)
    data = layer_array(image)
    data = state.placement[0].standardise(data) if state.placement is not None else data
    if tuple(data.shape[: labels.ndim]) != labels.shape:  # the image layer's data was replaced since
        return partial(measure_objects, labels, axes=axes, pixel_size=pixel_size)
    channels = data.shape[-1] if data.ndim > labels.ndim else 1
    names = tuple(image.metadata.get("channel_names") or ())
    names = names if len(names) == channels else ()
    return partial(measure_objects, labels, data, axes=axes, channel_names=names, pixel_size=pixel_size)


def suggested_path(state: SegmentationState | None) -> Path:
    """``NAME_measurements.csv`` beside the image's file (as ``usema predict --measurements`` names it),
    else in the home folder."""
    image = state.image if state is not None else None
    source = getattr(getattr(image, "source", None), "path", None)
    name = image.name if image is not None else "labels"
    if source:
        folder, name = Path(source).parent, Path(source).name.split(".")[0]
    else:
        folder = Path.home()
    return folder / f"{name}_measurements.csv"


def ask_csv_path(parent: QWidget, suggested: Path) -> tuple[Path | None, bool]:
    """A file dialog for the CSV; ``(path, overwrite)``, overwrite only where the user agreed to
    replace an existing file; ``(None, False)`` when cancelled."""
    # The confirmation is ours, not the dialog's: the name may get its .csv only after the dialog.
    chosen, _ = QFileDialog.getSaveFileName(
        parent, "Save measurements", str(suggested), "CSV (*.csv)", options=QFileDialog.Option.DontConfirmOverwrite
    )
    if not chosen:
        return None, False
    path = Path(chosen)
    path = path if path.suffix == ".csv" else path.with_name(path.name + ".csv")
    if not path.exists():
        return path, False
    answer = QMessageBox.question(parent, "Replace the file?", f"{path} exists. Replace it?")
    return (path, True) if answer == QMessageBox.StandardButton.Yes else (None, False)


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
