"""The Attention explorer: click a pixel to see where every head looks; plot attention dispersion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, Container, FileEdit, FloatSpinBox, Label, PushButton
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Image
from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils.notifications import show_error, show_info

from napari_usema._widgets.jobs import JobProgress
from napari_usema._widgets.segment import SegmentSection
from napari_usema.analysis.attention_maps import StageAttention, at_model_scale, query_attention, stack_maps
from napari_usema.analysis.dispersion import ExperimentStep, experiment
from napari_usema.analysis.dispersion_report import head_mean, write_report
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


class AttentionExplorer(Container):
    """Uses the model chosen in the Segment section it is given (no hidden shared state)."""

    def __init__(self, viewer: Any, segment: SegmentSection) -> None:
        self.viewer, self.segment = viewer, segment
        self.worker: GeneratorWorker | None = None
        self.stages: list[StageAttention] = []
        self.steps: list[ExperimentStep] = []
        self.points: dict[tuple[int, int], list[StageAttention]] = {}
        self._progress = JobProgress("USEMA attention")
        self._total = 0
        self.pick = CheckBox(text="Pick query points by clicking the image", value=False)
        self.effective = CheckBox(text="Add the global-mean weight (effective attention)", value=False)
        self.mean_info = Label(label="")
        self.budget = FloatSpinBox(label="Time budget (s)", value=60.0, min=1.0, max=3600.0)
        self.dispersion_button = PushButton(text="Dispersion for the current view")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.folder = FileEdit(label="Export to", mode="d", value=Path.home() / "usema-dispersion")
        self.export_button = PushButton(text="Export files")
        self.status = Label(label="")
        super().__init__(
            widgets=[
                self.pick,
                self.effective,
                self.mean_info,
                self.budget,
                self.dispersion_button,
                self.cancel_button,
                self.folder,
                self.export_button,
                self.status,
            ]
        )
        self.mean_info.native.setWordWrap(True)
        self.status.native.setWordWrap(True)
        self.native.layout().addStretch()  # keep the controls together at the top
        self.figure = Figure(figsize=(4.2, 2.4), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        self.native.layout().insertWidget(6, self.canvas)
        self.pick.changed.connect(self._toggle_pick)
        self.effective.changed.connect(lambda _: self._show_maps())
        self.dispersion_button.changed.connect(self.run_dispersion)
        segment.jobs.register([self.dispersion_button], self.cancel_button)
        self.export_button.changed.connect(self.export)

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
        worker = create_worker(_attention_job, self.segment.loaded, data, self._channel(), box, target)
        worker.returned.connect(lambda stages, p=point, b=box, img=layer: self._on_maps(stages, p, b, img))
        return self._start(worker, f"Attention of pixel {point}…")

    def _add_point(self, image: Image, point: tuple[int, int]) -> None:
        if POINTS not in self.viewer.layers:
            self.viewer.add_points(
                np.empty((0, 2)), name=POINTS, size=6, face_color="cyan", **self.segment.transform_for(image, "YX")
            )
        layer = self.viewer.layers[POINTS]
        layer.data = np.concatenate([layer.data, [point]])

    def _on_maps(self, stages: list[StageAttention], point: tuple[int, int], box: tuple[int, ...], image: Image) -> None:
        self.stages, self._box, self._image_layer = stages, box, image
        self.points[point] = stages
        self._show_maps()
        self.mean_info.value = "Global-mean weight per token: " + ", ".join(
            f"stage {s.stage}: {s.mean_weight:.2e}" for s in stages if s.kind == "window"
        )

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
        transform = self.segment.transform_for(image, "KYX")  # K: one plane per stage and head
        if MAPS in self.viewer.layers:
            self.viewer.layers[MAPS].data = full
        else:
            self.viewer.add_image(full, name=MAPS, colormap="inferno", blending="additive", opacity=0.8, **transform)
        self.viewer.layers[MAPS].metadata["planes"] = names
        self.viewer.layers[MAPS].contrast_limits = (0.0, 1.0)
        self.status.value = (
            f"{k} maps (stage x head, each scaled to its maximum); the first slider browses {names[0]} … {names[-1]}"
        )

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
        return self._start(worker, f"Dispersion on crops of {crops[0]}…{crops[-1]} px…", total=len(crops))

    def _on_step(self, step: Any) -> None:
        if not isinstance(step, ExperimentStep):
            return
        self.steps.append(step)
        self._progress.advance(self._total)
        self.plot()

    def _on_dispersion_done(self, steps: list[ExperimentStep]) -> None:
        self.steps = steps
        both = [s for s in steps if s.full]
        if both:
            last = both[-1]
            self.status.value = (
                f"Largest crop with full attention: {last.crop} px (N = {last.full[0]['tokens']} at stage 0). "
                f"entropy/log N: SEMA {head_mean(last.sema[0], 'normalized_entropy'):.4f}, "
                f"full {head_mean(last.full[0], 'normalized_entropy'):.4f}; "
                f"N x max: SEMA {head_mean(last.sema[0], 'n_times_max'):.2f}, full {head_mean(last.full[0], 'n_times_max'):.2f}"
            )

    def plot(self) -> None:
        """Entropy / log N against N at stage 0 (SEMA vs full attention), and the histogram of N x
        score at the largest crop measured with both."""
        from napari_usema.analysis.dispersion import HIST_EDGES

        self.figure.clear()
        ax, hx = self.figure.add_subplot(121), self.figure.add_subplot(122)
        rows = [s for s in self.steps if s.sema]
        ax.plot(
            [s.sema[0]["tokens"] for s in rows], [head_mean(s.sema[0], "normalized_entropy") for s in rows], "o-", label="SEMA"
        )
        both = [s for s in rows if s.full]
        if both:
            ax.plot(
                [s.full[0]["tokens"] for s in both],
                [head_mean(s.full[0], "normalized_entropy") for s in both],
                "s--",
                label="full",
            )
            centres = (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2
            for label, stats in (("SEMA", both[-1].sema[0]), ("full", both[-1].full[0])):
                hist = np.sum([h["histogram"] for h in stats["heads"]], axis=0).astype(float)
                hx.plot(centres, hist / max(hist.sum(), 1), label=label)
            hx.axvline(1.0, color="k", lw=0.6, ls=":")
            hx.set_title(f"crop {both[-1].crop} px", fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("N (tokens, stage 0)", fontsize=8)
        ax.set_ylabel("entropy / log N", fontsize=8)
        ax.ticklabel_format(axis="y", useOffset=False)
        hx.set_xlabel("N x score", fontsize=8)
        for a in (ax, hx):
            a.tick_params(labelsize=7)
            a.legend(fontsize=7)
        self.canvas.draw_idle()

    def export(self) -> list[Path] | None:
        """Write the same files as ``usema dispersion`` into the chosen folder."""
        if not self.steps and not self.points:
            show_error("nothing to export yet: click a point or compute the dispersion first")
            return None
        try:
            settings = {
                "model": str(self.segment.loaded.path),
                "image": self.segment.image.value.name,
                "budget_s": self.budget.value,
            }
            paths = write_report(Path(self.folder.value), self.steps, settings, self.points)
        except (ValueError, OSError) as err:
            show_error(str(err))
            return None
        show_info(f"Wrote {len(paths)} files to {self.folder.value}")
        return paths

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
