"""Range checks for the settings dataclasses, so the CLI, the widgets and the API refuse the same values
with the same message, which names the allowed range."""

from __future__ import annotations

import math
from typing import Any


def in_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    integer: bool = False,
    low_open: bool = False,
    high_open: bool = False,
) -> Any:
    """``value`` if it is a (finite) number within the bounds, else a ``ValueError`` naming them.

    Bounds are closed unless ``low_open``/``high_open``; None leaves that side unbounded.
    """
    kind = "an integer" if integer else "a number"
    lower = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
    upper = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
    wanted = (
        f"{name} must be {kind}"
        + (f" {lower}" if lower else "")
        + (" and" if lower and upper else "")
        + (f" {upper}" if upper else "")
    )
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or (not integer and not math.isfinite(value)):
        raise ValueError(f"{wanted}, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{wanted}, got {value!r}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{wanted}, got {value!r}")
    return value


def one_of(name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value
