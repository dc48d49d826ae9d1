"""Small matplotlib canvases embedded in dock widgets."""

from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure


class LossPlot:
    """A live training-loss curve; redraws at most every few steps to stay cheap."""

    def __init__(self, redraw_every: int = 2) -> None:
        self.figure = Figure(figsize=(3.2, 1.8), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(140)
        self.axes = self.figure.add_subplot(111)
        self.redraw_every = redraw_every
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.clear()

    def clear(self) -> None:
        self.steps.clear()
        self.losses.clear()
        self.axes.clear()
        self.axes.set_xlabel("step", fontsize=8)
        self.axes.set_ylabel("loss", fontsize=8)
        self.axes.tick_params(labelsize=7)
        (self.line,) = self.axes.plot([], [], color="tab:orange")
        self.canvas.draw_idle()

    def add(self, step: int, loss: float) -> None:
        self.steps.append(step)
        self.losses.append(loss)
        if len(self.steps) % self.redraw_every == 0 or len(self.steps) == 1:
            self.line.set_data(self.steps, self.losses)
            self.axes.relim()
            self.axes.autoscale_view()
            self.canvas.draw_idle()
