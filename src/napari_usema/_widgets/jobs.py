"""Shared plumbing of the sections' background jobs: the one-job-at-a-time slot and the progress bars
(napari's activity dock, and one beside each Cancel button with the time left)."""

from __future__ import annotations

import time
from collections.abc import Callable

from magicgui.widgets import Container, Label, ProgressBar, PushButton
from napari.qt.threading import FunctionWorker, GeneratorWorker
from napari.utils import progress
from napari.utils.notifications import show_info

Worker = GeneratorWorker | FunctionWorker


def time_left(seconds: float) -> str:
    """``seconds`` for a person: "<1 s left", "40 s left", "3 min 5 s left"."""
    if seconds < 1:
        return "<1 s left"
    if seconds < 60:
        return f"{seconds:.0f} s left"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s left"


class JobBar(Container):
    """One row of a section: its Cancel button, and while a job runs, a bar and the time left."""

    def __init__(self) -> None:
        self.cancel = PushButton(text="Cancel", enabled=False, tooltip="stop the job after its current step; nothing changes")
        self.bar = ProgressBar(value=0, min=0, max=1, visible=False, tooltip="the running job's progress")
        self.left = Label(value="", visible=False)
        super().__init__(layout="horizontal", widgets=[self.cancel, self.bar, self.left], labels=False, label="")
        self.margins = (0, 0, 0, 0)

    def show_progress(self, done: int, total: int, seconds_left: float | None) -> None:
        count = f"{done}/{total}" if total > 0 else ""  # a job of unknown length shows no count
        self.left.value = count + (f" · {time_left(seconds_left)}" if seconds_left is not None else "")
        self.bar.visible = self.left.visible = True
        self.bar.max, self.bar.value = max(total, 1), min(done, max(total, 1))  # last: it signals the change

    def hide_progress(self) -> None:
        self.bar.visible = self.left.visible = False
        self.bar.value, self.left.value = 0, ""


class JobProgress:
    """A napari activity-dock progress bar that appears with the first update and goes with the job, and
    the same progress with the time left on the section's :class:`JobBar` when it has one."""

    def __init__(self, desc: str, row: JobBar | None = None, *, eta: bool = True) -> None:
        """``eta``: show the time left, from the rate so far (not for jobs whose steps grow, such as the
        attention spread's ever larger crops)."""
        self.desc = desc
        self.row = row
        self.eta = eta
        self._bar: progress | None = None
        self._busy = False
        self._latest = (0, 1)
        self._started: tuple[float, int] | None = None  # (time, done) of the first update
        self._close_pending = False  # the job ended during one of our own updates: close after it

    def set(self, done: int, total: int) -> None:
        self._latest = (done, total)
        if self._busy:
            # Making or moving napari's bar processes Qt events (the activity dock redraws), which can
            # deliver the next progress here mid-call: keep only the latest and let the outer call apply
            # it. Without this each nested call made a bar of its own (a dozen, all stuck at 0%).
            return
        self._busy = True
        try:
            if self._bar is None:
                self._bar = progress(total=total, desc=self.desc)
            applied = None
            while applied != self._latest:
                applied = done, total = self._latest
                self._bar.total = total
                if self.row is not None:  # first: moving napari's bar may deliver the next value, or the end
                    self.row.show_progress(done, total, self._seconds_left(done, total) if self.eta else None)
                # napari's bar moves on update() (its value event), not on n and refresh().
                self._bar.update(done - self._bar.n)
        finally:
            self._busy = False
        if self._close_pending:
            self._close_pending = False
            self.close()

    def _seconds_left(self, done: int, total: int) -> float | None:
        """The rate so far, from the first update on (which may come after a model load), applied to
        what is left; None until one step has been timed."""
        now = time.perf_counter()
        if self._started is None:
            self._started = (now, done)
            return None
        started, first = self._started
        if done <= first:
            return None
        return (now - started) / (done - first) * max(total - done, 0)

    def advance(self, total: int) -> None:
        self.set((self._bar.n if self._bar else 0) + 1, total)

    def close(self) -> None:
        if self._busy:
            # Called from inside set() (napari's bar processed the job's finished event): closing now
            # would be undone by the rest of that set(), which would show the bar again; it closes after.
            self._close_pending = True
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._started = None
        if self.row is not None:
            self.row.hide_progress()


class JobSlot:
    """The one long job (segment, fine-tune, attention) that a dock widget runs on its model at a time.

    Sections register their start buttons and their Cancel button. While a job runs every start button
    is disabled, and every Cancel button is enabled and stops that job, whichever tab started it.
    """

    def __init__(self) -> None:
        self.worker: Worker | None = None
        self.name = ""
        self._starts: list[tuple[PushButton, Callable[[], bool]]] = []
        self._cancels: list[PushButton] = []

    def register(self, starts: list[PushButton], cancel: PushButton, *, usable: Callable[[], bool] = lambda: True) -> None:
        """``usable``: whether the start buttons may be clicked when no job runs (e.g. a model exists)."""
        self._starts += [(button, usable) for button in starts]
        self._cancels.append(cancel)
        cancel.changed.connect(self.cancel)
        self.refresh()

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def refuse(self) -> bool:
        """True (and a notice) when a job runs already: the caller must not start another."""
        if self.busy:
            show_info(f"{self.name} is running: wait for it to finish, or press Cancel")
        return self.busy

    def start(self, worker: Worker, name: str) -> Worker:
        """Run ``worker`` as the job (the caller checked :meth:`refuse` first)."""
        self.worker, self.name = worker, name
        worker.finished.connect(self._done)
        self.refresh()
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop the running job after its current step (tile batch, training step, crop)."""
        if self.worker is not None:
            self.worker.quit()

    def refresh(self) -> None:
        """Enable what can be clicked now."""
        for button, usable in self._starts:
            button.enabled = not self.busy and usable()
        for button in self._cancels:
            button.enabled = self.busy

    def _done(self) -> None:
        self.worker = None
        self.refresh()
