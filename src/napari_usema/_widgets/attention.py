"""The Attention explorer: click a pixel to see where every head looks; plot attention dispersion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, Container, FileEdit, FloatSpinBox, Label, PushButton, Widget
from napari.layers import Image
from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QMessageBox, QSizePolicy

from napari_usema._widgets.attention_text import (
    EXPLAIN_STAGES,
    SLIDER,
    Plane,
    dispersion_text,
    maps_text,
    mean_weight_text,
    plane_caption,
    planes_of,
)
from napari_usema._widgets.jobs import JobBar, JobProgress
from napari_usema._widgets.plot import DispersionPlot
from napari_usema._widgets.segment import SegmentSection
from napari_usema.analysis.attention_maps import StageAttention, at_model_scale, query_attention, stack_maps
from napari_usema.analysis.dispersion import ExperimentStep, experiment
from napari_usema.analysis.dispersion_report import report_targets, write_report
from napari_usema.inference.predictor import ImageSource
from napari_usema.inference.rescale import resize_probabilities

CAPTURE_SIDE = 512  # maps are computed on a crop of at most this side around the clicked pixel
POINTS = "attention queries"
MAPS = "attention maps"


def _normalised_block(loaded: Any, data: Any, channel: int | None, box: tuple[int, int, int, int]) -> np.ndarray:
    """``(C, h, w)`` normalised block ``box = (y0, y1, x0, x1)``; statistics come from the whole image.
    Runs in the worker: measuring a large image's percentiles must not stall the GUI thread."""
    meta = loaded.metadata
    source = ImageSource.prepare(np.asarray(data), meta.input_channels, meta.normalization, channel)
    return source.read(*box)


def _attention_job(loaded: Any, data: Any, channel: int | None, box: tuple[int, int, int, int], point: tuple[int, int]):
    chw, (query,) = at_model_scale(_normalised_block(loaded, data, channel, box), loaded.metadata.input_scale, [point])
    yield "capturing"
    return query_attention(loaded.model, chw, query)


def _dispersion_job(loaded: Any, data: Any, channel: int | None, box: tuple[int, int, int, int], crops: list[int], budget: float):
    chw, _ = at_model_scale(_normalised_block(loaded, data, channel, box), loaded.metadata.input_scale)
    steps = []
    for step in experiment(loaded.model, chw, crops, budget_s=budget):
        steps.append(step)
        yield step
    return steps


def _row(*widgets: Widget) -> Container:
    """Widgets side by side, without the label column (a compact tab fits napari's default window)."""
    row = Container(widgets=list(widgets), layout="horizontal", labels=False)
    row.margins = (0, 0, 0, 0)
    return row


def _paragraph(text: str = "", tooltip: str | None = None) -> Label:
    """A full-width label that wraps, for sentences rather than field names."""
    label = Label(value=text, tooltip=tooltip)
    label.native.setWordWrap(True)
    # magicgui makes labels Fixed: a wrapped sentence would then insist on the width it first had and
    # push the tab wider than the dock. Preferred + height-for-width: it takes the dock's width and wraps.
    policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
    policy.setHeightForWidth(True)
    label.native.setSizePolicy(policy)
    return label


class AttentionExplorer(Container):
    """Uses the model chosen in the Segment section it is given (no hidden shared state)."""

    def __init__(self, viewer: Any, segment: SegmentSection) -> None:
        self.viewer, self.segment = viewer, segment
        self.worker: GeneratorWorker | None = None
        self.stages: list[StageAttention] = []
        self.planes: list[Plane] = []
        self.steps: list[ExperimentStep] = []
        self.points: dict[tuple[int, int], list[StageAttention]] = {}
        self._points_of: tuple[Any, Any] | None = None  # the (image layer, model) the points were clicked with
        self.job_bar = JobBar()  # Cancel, and the bar with the time left
        self._progress = JobProgress("USEMA attention", self.job_bar, eta=False)  # each crop costs ~16x the last
        self._total = 0
        self.pick = CheckBox(
            text="Click the image to see where the model looks", value=False,
            tooltip="each click adds a stack of maps: where every attention head looks from that pixel",
        )  # fmt: skip
        self.effective = CheckBox(
            text="Add the whole-image average to the maps",
            value=False,
            tooltip="'Effective attention': the window's scores plus the global-mean weight (1/N) every position gets",
        )
        self.plane = _paragraph(tooltip=EXPLAIN_STAGES)
        self.mean_info = _paragraph()
        self.budget = FloatSpinBox(
            value=60.0, min=1.0, max=3600.0, tooltip="full attention is slow on large crops: it stops growing after this"
        )
        self.dispersion_button = PushButton(
            text="Measure spread",
            tooltip="On ever larger crops of the view, compare how evenly SEMA's windows and full attention spread",
        )
        self.cancel_button = self.job_bar.cancel
        self.status = _paragraph()
        self.folder = FileEdit(mode="d", value=Path.home() / "usema-dispersion", tooltip="the folder Export writes into")
        self.export_button = PushButton(
            text="Export files", tooltip="dispersion.json, the two plots (after a measurement), one TIFF per clicked pixel"
        )
        super().__init__(
            labels=False,
            widgets=[
                self.pick,
                self.effective,
                self.plane,
                self.mean_info,
                _row(self.dispersion_button, Label(value="limit"), self.budget),
                self.job_bar,
                self.status,
                _row(Label(value="Export to"), self.folder),
                self.export_button,
            ],
        )
        self.plane.visible = self.mean_info.visible = False  # until there are maps to describe
        self.margins = (6, 6, 6, 6)
        self.native.layout().setSpacing(4)  # compact: the whole tab fits napari's default window
        self.budget.native.setSuffix(" s")
        self.plot = DispersionPlot(viewer)
        self.native.layout().insertWidget(7, self.plot.canvas)  # between the status and Export
        self.pick.changed.connect(self._toggle_pick)
        self.effective.changed.connect(lambda _: self._show_maps())
        self.dispersion_button.changed.connect(self.run_dispersion)
        # Export too: while a measurement runs its steps are partial.
        segment.jobs.register([self.dispersion_button, self.export_button], self.cancel_button)
        self.export_button.changed.connect(self.export)
        viewer.dims.events.point.connect(self._show_plane_name)
        viewer.layers.events.removed.connect(self._show_plane_name)
        # The viewer outlives a closed dock: stop its events reaching widgets Qt has deleted.
        self.native.destroyed.connect(lambda *_: self._disconnect_viewer())

    def _disconnect_viewer(self) -> None:
        self.viewer.dims.events.point.disconnect(self._show_plane_name)
        self.viewer.layers.events.removed.disconnect(self._show_plane_name)

    # --- inputs ---------------------------------------------------------------------------------
    def _image(self) -> Image:
        layer = self.segment.image.value
        if layer is None or self.segment.loaded is None:
            raise ValueError("choose a model and an image in the Segment tab first")
        return layer

    def _channel(self) -> int | None:
        return None if self.segment.channel.value == "auto" else int(self.segment.channel.value)

    # --- clicking -------------------------------------------------------------------------------
    def _toggle_pick(self, on: bool) -> None:
        callbacks = self.viewer.mouse_drag_callbacks
        if on and self._on_click not in callbacks:
            callbacks.append(self._on_click)
        elif not on and self._on_click in callbacks:
            callbacks.remove(self._on_click)

    def _on_click(self, viewer: Any, event: Any) -> None:
        try:
            layer = self._image()
        except ValueError as err:
            show_error(str(err))
            return
        y, x = (int(np.rint(v)) for v in layer.world_to_data(event.position)[-2:])
        self.query((y, x))

    def query(self, point: tuple[int, int]) -> GeneratorWorker | None:
        """Compute the attention maps of ``point`` (image pixels) in the background."""
        if self.segment.jobs.refuse():
            return None
        try:
            layer = self._image()
            h, w = self.segment.plane_data(layer).shape[:2]
            if not (0 <= point[0] < h and 0 <= point[1] < w):
                raise ValueError(f"the point {point} is outside the image")
        except ValueError as err:
            show_error(str(err))
            return None
        y0 = int(np.clip(point[0] - CAPTURE_SIDE // 2, 0, max(h - CAPTURE_SIDE, 0)))
        x0 = int(np.clip(point[1] - CAPTURE_SIDE // 2, 0, max(w - CAPTURE_SIDE, 0)))
        box = (y0, min(y0 + CAPTURE_SIDE, h), x0, min(x0 + CAPTURE_SIDE, w))
        self._add_point(layer, point)
        data, target = self.segment.plane_data(layer), (point[0] - y0, point[1] - x0)
        loaded = self.segment.loaded
        worker = create_worker(_attention_job, loaded, data, self._channel(), box, target)
        scale = loaded.metadata.input_scale  # of this model, even if another is chosen while it runs
        worker.returned.connect(
            lambda stages, p=point, b=box, img=layer, s=scale, m=loaded: self._on_maps(stages, p, b, img, s, m)
        )
        return self._start(worker, f"Finding where the model looks from pixel {point}…")

    def _add_point(self, image: Image, point: tuple[int, int]) -> None:
        if POINTS not in self.viewer.layers:
            self.viewer.add_points(
                np.empty((0, 2)), name=POINTS, size=6, face_color="cyan", **self.segment.transform_for(image, "YX")
            )
        layer = self.viewer.layers[POINTS]
        layer.data = np.concatenate([layer.data, [point]])

    def _on_maps(
        self,
        stages: list[StageAttention],
        point: tuple[int, int],
        box: tuple[int, ...],
        image: Image,
        scale: float,
        loaded: Any = None,
    ) -> None:
        self.stages, self._box, self._image_layer, self._point = stages, box, image, point
        self.planes = planes_of(stages, scale)
        if self._points_of != (image, loaded):  # another image or model: its earlier clicks are not this one's
            self.points.clear()
            self._points_of = (image, loaded)
        self.points[point] = stages
        self._show_maps()
        self.mean_info.value, self.mean_info.tooltip = mean_weight_text(stages)
        self.mean_info.visible = True

    def _show_maps(self) -> None:
        if not self.stages:
            return
        stack, names = stack_maps(self.stages, effective=self.effective.value)
        y0, y1, x0, x1 = self._box
        ch, cw = y1 - y0, x1 - x0
        stack = resize_probabilities(stack, (ch, cw))  # a model with an input scale answers at its own size
        k = stack.shape[0]
        image = self._image_layer
        h, w = self.segment.plane_data(image).shape[:2]
        full = np.zeros((k, h, w), np.float32)
        # Each plane is scaled to its own maximum: heads and stages differ by orders of magnitude
        # (1/256 in a window, 1/N at the bottleneck), and one contrast range would hide most of them.
        # Export writes the raw scores.
        peaks = stack.reshape(k, -1).max(axis=1)
        full[:, y0 : y0 + ch, x0 : x0 + cw] = stack / np.where(peaks > 0, peaks, 1)[:, None, None]
        if MAPS in self.viewer.layers:
            self.viewer.layers[MAPS].data = full
        else:
            self._add_maps_layer(full, image)
        self.viewer.layers[MAPS].metadata["planes"] = names
        self.viewer.layers[MAPS].contrast_limits = (0.0, 1.0)
        self.status.value = maps_text(k, self._point, self.viewer.layers[MAPS].axis_labels[0] == SLIDER)
        self._show_plane_name()

    def _add_maps_layer(self, data: np.ndarray, image: Image) -> None:
        """The ``(K, H, W)`` maps over ``image``; its plane axis is named for napari's slider when no other
        layer uses that axis (napari shares one slider, and its name, per axis across layers)."""
        transform = self.segment.transform_for(image, "KYX")  # K: one plane per stage and head
        own_axis = all(layer.ndim < data.ndim for layer in self.viewer.layers)
        labels = {"axis_labels": (SLIDER, *image.axis_labels[-2:])} if own_axis else {}
        self.viewer.add_image(data, name=MAPS, colormap="inferno", blending="additive", opacity=0.8, **transform, **labels)

    def _show_plane_name(self, _: Any = None) -> None:
        """Name the map the viewer shows now ("stage 2 · head 1"): follows the slider, via the viewer's
        current point mapped into the maps layer's own pixels."""
        if MAPS not in self.viewer.layers or not self.planes:
            self.plane.visible = False
            return
        layer = self.viewer.layers[MAPS]
        k = min(layer.data.shape[0], len(self.planes))
        index = int(np.clip(np.rint(layer.world_to_data(self.viewer.dims.point)[0]), 0, k - 1))
        self.plane.value = plane_caption(self.planes, index)
        self.plane.visible = True

    # --- dispersion -----------------------------------------------------------------------------
    def _view_box(self, layer: Image) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` of the largest square in view, centred on it (napari's public
        ``Layer.corner_pixels``: the field of view in the layer's pixels)."""
        h, w = self.segment.plane_data(layer).shape[:2]
        (top, left), (bottom, right) = (np.asarray(c[-2:], int) for c in layer.corner_pixels)
        bottom, right = bottom + 1, right + 1  # the corners are the last pixels in view, inclusive
        top, bottom = int(np.clip(top, 0, h)), int(np.clip(bottom, 0, h))
        left, right = int(np.clip(left, 0, w)), int(np.clip(right, 0, w))
        side = max(1, min(bottom - top, right - left))
        cy, cx = (top + bottom) // 2, (left + right) // 2
        y0, x0 = int(np.clip(cy - side // 2, 0, h - side)), int(np.clip(cx - side // 2, 0, w - side))
        return y0, y0 + side, x0, x0 + side

    def run_dispersion(self) -> GeneratorWorker | None:
        if self.segment.jobs.refuse():
            return None
        try:
            layer = self._image()
            box = self._view_box(layer)
        except ValueError as err:
            show_error(str(err))
            return None
        crops = [2**k for k in range(4, 14) if 2**k <= box[1] - box[0]]
        if not crops:
            show_error("zoom out: the view is smaller than 16 pixels")
            return None
        self.steps = []
        worker = create_worker(
            _dispersion_job, self.segment.loaded, self.segment.plane_data(layer), self._channel(), box, crops, self.budget.value
        )
        worker.yielded.connect(self._on_step)
        worker.returned.connect(self._on_dispersion_done)
        return self._start(worker, f"Measuring attention spread on crops of {crops[0]}…{crops[-1]} px…", total=len(crops))

    def _on_step(self, step: Any) -> None:
        if not isinstance(step, ExperimentStep):
            return
        self.steps.append(step)
        self._progress.advance(self._total)
        self.plot.show(self.steps)

    def _on_dispersion_done(self, steps: list[ExperimentStep]) -> None:
        self.steps = steps
        self.plot.show(steps)
        text, exact = dispersion_text(steps)
        self.status.value = f"{text}\n{exact}" if exact else text  # the second line: the exact statistics

    def export(self) -> list[Path] | None:
        """Write the same files as ``usema dispersion`` into the chosen folder: all of them, or none.

        After clicks alone that is ``dispersion.json`` and one TIFF per clicked pixel; the plots need a
        spread measurement. Files already there are replaced only when the user says so.
        """
        if not self.steps and not self.points:
            show_error(
                "Nothing to export yet: tick 'Click the image to see where the model looks' and click a "
                "pixel, or press 'Measure spread' first."
            )
            return None
        out = Path(self.folder.value)
        existing = [path for path in report_targets(out, self.steps, self.points) if path.exists()]
        if existing and not self._confirm_replace(existing):
            self.status.value = f"Export cancelled: nothing was written to {out}."
            return None
        image, loaded = self._points_of if self.points and self._points_of else (self.segment.image.value, self.segment.loaded)
        settings = {
            "model": str(loaded.path) if loaded is not None else None,
            "image": image.name if image is not None else None,
            "budget_s": self.budget.value,
        }
        try:
            paths = write_report(out, self.steps, settings, self.points, overwrite=bool(existing))
        except (ValueError, OSError) as err:
            show_error(f"Nothing was exported: {err}")
            return None
        missing = "" if any(p.suffix == ".png" for p in paths) else " The plots need 'Measure spread' first."
        show_info(f"Wrote {', '.join(p.name for p in paths)} to {out}.{missing}")
        return paths

    def _confirm_replace(self, existing: list[Path]) -> bool:
        """Ask before replacing files of an earlier export."""
        names = ", ".join(p.name for p in existing[:4]) + (" …" if len(existing) > 4 else "")
        answer = QMessageBox.question(
            self.native,
            "Replace files?",
            f"{existing[0].parent} already holds {names}. Replace them?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    # --- worker plumbing ------------------------------------------------------------------------
    def _start(self, worker: GeneratorWorker, message: str, total: int = 0) -> GeneratorWorker:
        self.worker = worker
        self._total = total
        self._progress.set(0, total)
        worker.errored.connect(lambda err: show_error(f"Attention failed: {err}"))
        worker.aborted.connect(lambda: setattr(self.status, "value", "Cancelled."))
        worker.finished.connect(self._on_finished)
        self.status.value = message
        return self.segment.jobs.start(worker, "Attention")

    def _on_finished(self) -> None:
        self._progress.close()
        self.worker = None
