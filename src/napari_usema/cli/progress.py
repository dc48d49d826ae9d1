"""A progress bar on stderr for long commands (tqdm), silent on non-zero ranks."""

from __future__ import annotations

import sys

from tqdm import tqdm


class ProgressBar:
    def __init__(self, total: int, desc: str, *, enabled: bool = True, unit: str = "step") -> None:
        self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not enabled, dynamic_ncols=True)
        self._enabled = enabled

    def update(self, done: int, postfix: str = "") -> None:
        """Move to ``done`` (absolute, so resumed runs start where they left off)."""
        self._bar.n = done
        if postfix:
            self._bar.set_postfix_str(postfix, refresh=False)
        self._bar.refresh()

    def reset(self, total: int, desc: str) -> None:
        self._bar.reset(total=total)
        self._bar.set_description(desc)

    def note(self, text: str) -> None:
        if self._enabled:
            tqdm.write(text, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()
