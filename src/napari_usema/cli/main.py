"""The ``usema`` command: one subcommand per job, each a thin layer over the engine."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from napari_usema import __version__
from napari_usema.cli import bench, demo, dispersion, evaluate, export, info, predict, train

COMMANDS = {
    "predict": predict,
    "evaluate": evaluate,
    "train": train,
    "finetune": train,  # registers itself beside train: both share the data options
    "dispersion": dispersion,
    "info": info,
    "export": export,
    "bench": bench,
    "demo": demo,  # imports napari only when run
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="usema",
        description="USEMA segmentation for microscopy and endoscopy images (napari-usema).",
    )
    parser.add_argument("--version", action="version", version=f"napari-usema {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in dict.fromkeys(COMMANDS.values()):
        module.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``usema``; returns the exit status (0 ok, 1 failed job, 2 bad input, 130/143 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = _exit_cleanly_on_sigterm()
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("usema: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("usema: terminated", file=sys.stderr)
        return 143
    except (ValueError, OSError) as err:
        # Every engine error class derives from one of these and carries a specific message.
        print(f"usema {args.command}: error: {err}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(BaseException):
    """SIGTERM, raised where the main thread is, so that partial outputs and temporary folders are
    removed on the way out as for Ctrl+C."""


def _exit_cleanly_on_sigterm() -> Any:
    """Turn SIGTERM into :class:`_Terminated` for this run; returns the handler to restore (None off the
    main thread, where signal handlers cannot be set)."""

    def raise_terminated(signum: int, frame: object) -> None:
        raise _Terminated()

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, raise_terminated)


if __name__ == "__main__":
    sys.exit(main())
