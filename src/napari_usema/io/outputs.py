"""Output files that appear whole or not at all, are checked before the work, and never replace an input.

Every file the package writes goes through :func:`atomic_write`: the data goes to a hidden temporary
name in the same folder and is renamed over the destination (``os.replace``) only once complete, so an
interrupted run (Ctrl+C, SIGTERM, a crash) leaves no partial file, and the rerun is not refused.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


class OutputError(ValueError):
    """An output cannot be written where asked; the message says why and what to do."""


class OutputExistsError(OutputError, FileExistsError):
    """The output exists, and replacing it was not asked for."""


def check_output(
    path: str | Path,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    suffix: str | None = None,
    what: str = "output",
) -> Path:
    """Check, before any work, that ``path`` can be written; returns it as a ``Path``.

    Raises:
        OutputError: the path is a folder, lacks ``suffix``, is one of ``inputs`` (never overwritten,
            even with ``overwrite``), exists without ``overwrite``, or its folder cannot be written.
    """
    path = Path(path)
    if str(path) in ("", "."):
        raise OutputError(f"no {what} file was given")
    if path.is_dir():
        raise OutputError(f"the {what} {path} is a folder; give a file name" + (f" ending in {suffix}" if suffix else ""))
    if suffix is not None and path.suffix != suffix:
        raise OutputError(f"the {what} {path.name} must end in {suffix}")
    for item in inputs:
        if _same_file(path, Path(item)):
            raise OutputError(f"the {what} {path} is an input of this run; inputs are never overwritten: choose another name")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite (or choose another name) to replace it")
    folder = _existing_ancestor(path.parent)
    if not folder.is_dir():
        raise OutputError(f"cannot write the {what} {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write the {what} {path}: the folder {folder} is not writable")
    return path


@contextmanager
def atomic_write(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it becomes ``path`` when the block ends normally.

    On any exception (KeyboardInterrupt included) the temporary file is removed and ``path`` is left as
    it was. The file gets the permissions of a newly created file (the umask's), also when it replaces one.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite (or choose another name) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Short, so that a file name near the system's limit still has a legal temporary beside it.
    temporary = path.with_name(f".usema-{uuid.uuid4().hex[:12]}.part")
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _read_umask() -> int:
    current = os.umask(0o022)  # the only way to read it is to set it: done once, at import
    os.umask(current)
    return current


_UMASK = _read_umask()


def refuse_inputs(outputs: Iterable[str | Path], inputs: Iterable[str | Path]) -> None:
    """Refuse any output that is one of ``inputs`` (the same file, by device and inode): inputs are never
    overwritten. One pass over each list, for runs over many files."""
    identities = {_identity(Path(p)) for p in inputs} - {None}
    for path in outputs:
        if _identity(Path(path)) in identities:
            raise OutputError(f"the output {path} is an input of this run; inputs are never overwritten: choose another --out")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _existing_ancestor(folder: Path) -> Path:
    folder = folder.resolve()
    while not folder.exists():
        folder = folder.parent
    return folder
