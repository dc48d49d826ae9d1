"""Shared plumbing of the sections' background jobs: a progress bar and the Run/Cancel pair."""

from __future__ import annotations

from magicgui.widgets import PushButton
from napari.utils import progress


class JobProgress:
    """A napari activity-dock progress bar that appears with the first update and goes with the job."""

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self._bar: progress | None = None

    def set(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = progress(total=total, desc=self.desc)
        self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def advance(self, total: int) -> None:
        self.set((self._bar.n if self._bar else 0) + 1, total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def set_running(run: PushButton, cancel: PushButton, running: bool) -> None:
    """While a job runs, only Cancel is clickable."""
    run.enabled, cancel.enabled = not running, running
