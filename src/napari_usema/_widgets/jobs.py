"""Shared plumbing of the sections' background jobs: the one-job-at-a-time slot and a progress bar."""

from __future__ import annotations

from collections.abc import Callable

from magicgui.widgets import PushButton
from napari.qt.threading import FunctionWorker, GeneratorWorker
from napari.utils import progress
from napari.utils.notifications import show_info

Worker = GeneratorWorker | FunctionWorker


class JobProgress:
    """A napari activity-dock progress bar that appears with the first update and goes with the job."""

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self._bar: progress | None = None
        self._busy = False
        self._latest = (0, 1)

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
                # napari's bar moves on update() (its value event), not on n and refresh().
                self._bar.update(done - self._bar.n)
        finally:
            self._busy = False

    def advance(self, total: int) -> None:
        self.set((self._bar.n if self._bar else 0) + 1, total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


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
