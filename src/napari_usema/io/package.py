"""Reading a BioImage.IO model package that ``usema export --format bioimageio`` wrote, as a checkpoint.

Such a package (a ``.zip``) holds ``rdf.yaml`` (the description), ``weights.pt`` (the state dict) and
``napari_usema.json`` (the checkpoint's metadata, an attachment). Only these are read: no YAML parser,
no code from the package, and the weights with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import zipfile
import zlib
from pathlib import Path

import torch

from .metadata import CheckpointError, CheckpointMetadata

METADATA_FILE = "napari_usema.json"
WEIGHTS_FILE = "weights.pt"
READABLE_SPEC = ("0.5",)  # major.minor versions of the model spec this reader knows
TEXT_LIMIT = 16 << 20  # rdf.yaml and the metadata
WEIGHTS_LIMIT = 4 << 30  # the state dict (the paper preset in fp32 is ~0.3 GB)


def is_package(path: Path) -> bool:
    return path.suffix.lower() == ".zip"


def read_package_metadata(path: Path) -> CheckpointMetadata:
    """The metadata of a package made by ``usema export``, without inflating its weights.

    Raises:
        CheckpointError: as :func:`read_package`.
    """
    return _open(path, weights=False)[0]


def read_package(path: Path) -> tuple[CheckpointMetadata, dict[str, torch.Tensor]]:
    """The metadata and weights of a package made by ``usema export``.

    Raises:
        CheckpointError: not a zip, not a BioImage.IO package, a spec version this reader cannot read,
            or a package that ``usema export`` did not make (no napari-usema metadata).
    """
    metadata, weights = _open(path, weights=True)
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: its {WEIGHTS_FILE} is not a state dict of tensors ({type(err).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: its {WEIGHTS_FILE} is not a state dict of tensors")
    return metadata, state


def _open(path: Path, *, weights: bool) -> tuple[CheckpointMetadata, bytes]:
    """The package's metadata, and the bytes of its weights when ``weights`` (else empty)."""
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a zip file, so not a BioImage.IO package")
    try:
        with zipfile.ZipFile(path) as archive:
            metadata = _read(path, archive)
            return metadata, _member(path, archive, WEIGHTS_FILE, WEIGHTS_LIMIT) if weights else b""
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, NotImplementedError, EOFError, OSError) as err:
        raise CheckpointError(f"{path} is a damaged zip file ({type(err).__name__}: {err})") from None


def _read(path: Path, archive: zipfile.ZipFile) -> CheckpointMetadata:
    names = set(archive.namelist())
    rdf = next((n for n in ("rdf.yaml", "bioimageio.yaml") if n in names), None)
    if rdf is None:
        raise CheckpointError(f"{path} is a zip file without rdf.yaml: not a BioImage.IO package")
    text = _member(path, archive, rdf, TEXT_LIMIT).decode("utf-8", "replace")
    found = re.search(r"^format_version:\s*['\"]?(\d+)\.(\d+)\.", text, re.MULTILINE)
    version = f"{found.group(1)}.{found.group(2)}" if found else None
    if version not in READABLE_SPEC:
        raise CheckpointError(
            f"{path} is a BioImage.IO package of model spec {version or 'unknown'}; napari-usema reads "
            f"{', '.join(READABLE_SPEC)}.x packages (re-export it with usema export --format bioimageio)"
        )
    if METADATA_FILE not in names or WEIGHTS_FILE not in names:
        raise CheckpointError(
            f"{path} is a BioImage.IO package, but not a USEMA one made by usema export (no {METADATA_FILE} and "
            f"{WEIGHTS_FILE}); run it with bioimageio.core instead"
        )
    try:
        metadata = CheckpointMetadata.from_dict(json.loads(_member(path, archive, METADATA_FILE, TEXT_LIMIT)))
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: its {METADATA_FILE} is damaged ({err})") from None
    return metadata


def _member(path: Path, archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """One file of the package, refused before it is inflated if it claims more than ``limit`` bytes."""
    size = archive.getinfo(name).file_size
    if size > limit:
        raise CheckpointError(f"{path}: its {name} is {size:,} bytes, more than a USEMA package holds ({limit:,})")
    return archive.read(name)
