"""Small matplotlib canvases embedded in dock widgets, in napari's colours, with a hint until there is data."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.settings import get_settings
from napari.utils.theme import get_theme
from qtpy.QtCore import QSize
from qtpy.QtWidgets import QSizePolicy

from napari_usema.analysis.dispersion import HIST_EDGES, ExperimentStep
from napari_usema.analysis.dispersion_report import head_mean

LOSS_HINT = "The loss curve appears here once fine-tuning starts."


class _Canvas(FigureCanvasQTAgg):
    """A canvas that asks for its minimum height only. matplotlib's own ``sizeHint`` is the figure's current
    size, so a canvas the layout once stretched would keep asking for that height, and a dock tab laid out
    by height-for-width (wrapped labels) would then scroll instead of fitting."""

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(super().sizeHint().width(), self.minimumHeight())


class ThemedPlot:
    """A figure on a Qt canvas that follows napari's theme (the viewer's, or the settings' without one).

    Subclasses draw into ``self.figure`` and call :meth:`style` on each axes they make; :meth:`show_hint`
    replaces everything with one centred sentence, for the time before there is anything to plot.
    """

    def __init__(self, hint: str, viewer: Any = None, *, figsize: tuple[float, float] = (3.2, 1.8), min_height: int = 140):
        self.viewer = viewer
        self.hint = hint
        self.hint_text: Any = None  # the matplotlib Text of the hint while it is shown, else None
        self.figure = Figure(figsize=figsize, tight_layout=True)
        self.canvas = _Canvas(self.figure)
        self.canvas.setMinimumHeight(min_height)
        # Expanding: the plot takes what room the dock has left, down to min_height, so the rest fits.
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.colours = self._theme_colours()
        self._theme_event = viewer.events.theme if viewer is not None else get_settings().appearance.events.theme
        self._theme_event.connect(self._on_theme)
        # A theme change after the dock closed must not reach a deleted canvas.
        self.canvas.destroyed.connect(lambda *_: self._theme_event.disconnect(self._on_theme))

    # --- theme ----------------------------------------------------------------------------------
    def _theme_colours(self) -> dict[str, str]:
        """Hex colours of the current napari theme: ``background``, ``text``, ``grid`` and two line colours."""
        name = self.viewer.theme if self.viewer is not None else get_settings().appearance.theme
        theme = get_theme(name)
        dark = theme.type == "dark"
        return {
            "background": theme.background.as_hex(),
            "text": theme.text.as_hex(),
            "grid": theme.secondary.as_hex(),
            # Two curves that stand out on either background (matplotlib's defaults are dim on dark).
            "first": "#ffb74d" if dark else "#d9480f",
            "second": "#4fc3f7" if dark else "#1c5fa8",
        }

    def _on_theme(self, _: Any = None) -> None:
        self.colours = self._theme_colours()
        self.redraw()

    def redraw(self) -> None:
        """Draw the current content again (after a theme change); subclasses override."""
        self.show_hint()

    def style(self, axes: Axes) -> None:
        """Theme colours for one axes: its background, spines, ticks, labels, title and legend."""
        c = self.colours
        axes.set_facecolor(c["background"])
        for spine in axes.spines.values():
            spine.set_color(c["grid"])
        axes.tick_params(colors=c["text"], labelsize=7)
        axes.xaxis.label.set_color(c["text"])
        axes.yaxis.label.set_color(c["text"])
        axes.title.set_color(c["text"])
        legend = axes.get_legend()
        if legend is not None:
            legend.get_frame().set_facecolor(c["background"])
            legend.get_frame().set_edgecolor(c["grid"])
            for text in legend.get_texts():
                text.set_color(c["text"])

    def _start(self) -> None:
        """An empty figure in the theme's background (the canvas too, so no white border shows)."""
        self.figure.clear()
        self.figure.set_facecolor(self.colours["background"])
        self.hint_text = None

    def show_hint(self) -> None:
        """Only the hint, centred: the plot has no data yet."""
        self._start()
        self.hint_text = self.figure.text(
            0.5, 0.5, self.hint, ha="center", va="center", wrap=True, fontsize=9, color=self.colours["text"]
        )
        self.canvas.draw_idle()


class LossPlot(ThemedPlot):
    """A live training-loss curve; redraws at most every few steps to stay cheap.

    ``viewer`` (optional, for backward compatibility) makes it follow that viewer's theme; without one it
    follows napari's theme setting.
    """

    def __init__(self, redraw_every: int = 2, viewer: Any = None, hint: str = LOSS_HINT) -> None:
        super().__init__(hint, viewer)
        self.redraw_every = redraw_every
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.axes: Axes | None = None
        self.line: Any = None
        self.clear()

    def clear(self) -> None:
        """Forget the curve and show the hint."""
        self.steps.clear()
        self.losses.clear()
        self.axes = self.line = None
        self.show_hint()

    def redraw(self) -> None:
        if not self.steps:
            self.show_hint()
            return
        self._start()
        self.axes = self.figure.add_subplot(111)
        self.axes.set_xlabel("training step", fontsize=8)
        self.axes.set_ylabel("loss (lower: better)", fontsize=8)  # short: the canvas is low
        (self.line,) = self.axes.plot(self.steps, self.losses, color=self.colours["first"])
        self.style(self.axes)
        self.canvas.draw_idle()

    def add(self, step: int, loss: float) -> None:
        self.steps.append(step)
        self.losses.append(loss)
        if self.line is None:  # the first point replaces the hint with axes
            self.redraw()
        elif len(self.steps) % self.redraw_every == 0:
            self.line.set_data(self.steps, self.losses)
            self.axes.relim()
            self.axes.autoscale_view()
            self.canvas.draw_idle()


DISPERSION_HINT = (
    "Press 'Measure spread' to plot here how evenly the model's attention spreads as the crop grows. "
    "To see where it looks from one pixel, tick the first box and click the image."
)


class DispersionPlot(ThemedPlot):
    """Left: how evenly attention spreads (entropy / log N) against N at stage 0, SEMA's windows vs full
    attention. Right: the histogram of N x score at the largest crop measured both ways."""

    def __init__(self, viewer: Any = None, hint: str = DISPERSION_HINT) -> None:
        super().__init__(hint, viewer, figsize=(4.2, 2.2), min_height=130)
        self.steps: list[ExperimentStep] = []
        self.show_hint()

    def show(self, steps: list[ExperimentStep]) -> None:
        """Plot ``steps`` (the hint again when none has a SEMA measurement)."""
        self.steps = list(steps)
        self.redraw()

    def redraw(self) -> None:
        rows = [s for s in self.steps if s.sema]
        if not rows:
            self.show_hint()
            return
        self._start()
        c = self.colours
        ax, hx = self.figure.add_subplot(121), self.figure.add_subplot(122)
        tokens = [s.sema[0]["tokens"] for s in rows]
        ax.plot(tokens, [head_mean(s.sema[0], "normalized_entropy") for s in rows], "o-", color=c["first"], label="SEMA")
        both = [s for s in rows if s.full]
        if both:
            spread = [head_mean(s.full[0], "normalized_entropy") for s in both]
            ax.plot([s.full[0]["tokens"] for s in both], spread, "s--", color=c["second"], label="full")
            centres = (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2
            for label, stats, colour in (("SEMA", both[-1].sema[0], c["first"]), ("full", both[-1].full[0], c["second"])):
                hist = np.sum([h["histogram"] for h in stats["heads"]], axis=0).astype(float)
                hx.plot(centres, hist / max(hist.sum(), 1), color=colour, label=label)
            hx.axvline(1.0, color=c["grid"], lw=0.8, ls=":")
            hx.set_title(f"crop {both[-1].crop} px", fontsize=8)
            hx.legend(fontsize=7)
        ax.set_xscale("log", base=2)  # tokens are always positive: the log axis has its ticks
        ax.set_xlabel("positions compared (N)", fontsize=8)
        ax.set_ylabel("spread (1 = even)", fontsize=8)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.legend(fontsize=7)
        hx.set_xlabel("weight ÷ even share (1/N)", fontsize=8)
        hx.set_ylabel("fraction", fontsize=8)
        for axes in (ax, hx):
            self.style(axes)
        self.canvas.draw_idle()
