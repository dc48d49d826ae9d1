"""Checkpoints: one ``.safetensors`` file holding the weights and a JSON metadata block.

Loading never unpickles code. The network is rebuilt from the config stored in the file and the
weights are loaded strictly. Plain PyTorch state dicts (``.pt``/``.pth``) are accepted through
``torch.load(weights_only=True)`` together with an explicit config. All handling of older formats
lives in :func:`napari_usema.io.metadata.migrate_metadata`.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ..model import USEMA, build_model, on_device
from .metadata import METADATA_KEY, CheckpointError, CheckpointMetadata
from .outputs import atomic_write
from .package import is_package, read_package, read_package_metadata


@dataclass
class LoadedModel:
    """A network in eval mode, with the metadata it was saved with.

    Shared by every caller (napari's Segment, Attention and Fine-tune tabs run in worker threads), so
    nothing changes it: calls pass their instrumentation in (``AttentionTap``), fine-tuning trains a
    copy, and a call on another device gets a copy there (:meth:`on`).
    """

    model: USEMA
    metadata: CheckpointMetadata
    path: Path | None = None
    _copies: dict[torch.device, USEMA] = field(default_factory=dict, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def on(self, device: torch.device) -> USEMA:
        """The network on ``device``: :attr:`model` where it lives there, else a copy made once."""
        if device.type == "cuda" and device.index is None:  # "cuda" and "cuda:0" are one GPU, one copy
            device = torch.device("cuda", torch.cuda.current_device())
        with self._lock:
            if device not in self._copies:
                self._copies[device] = on_device(self.model, device)
            return self._copies[device]


def save_checkpoint(path: str | Path, model: USEMA, metadata: CheckpointMetadata, *, half: bool = False) -> Path:
    """Write ``model`` and ``metadata`` to one ``.safetensors`` file.

    Args:
        path: Destination (replaced if it exists: callers check first with ``io.outputs.check_output``);
            its parent folder is created.
        model: The network (a DDP wrapper's ``.module``).
        metadata: Stored as JSON; its config must be the model's.
        half: Store floating tensors as float16 (half the size; they are widened when loaded).
    """
    if metadata.config != model.config:
        raise CheckpointError("metadata config differs from the model's config")
    path = Path(path)
    tensors = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"refusing to save {path.name}: tensor {name!r} holds NaN or infinite weights")
        tensors[name] = tensor.half() if half and tensor.is_floating_point() else tensor
    data = save(tensors, metadata={METADATA_KEY: json.dumps(metadata.to_dict())})
    # Whole or not at all, with the umask's permissions (safetensors' own writer makes files 0600).
    with atomic_write(path, overwrite=True) as temporary:
        temporary.write_bytes(data)
    return path


def read_metadata(path: str | Path) -> CheckpointMetadata:
    """Read only the metadata of a ``.safetensors`` checkpoint (fast: the weights stay on disk), or of
    a BioImage.IO package made by ``usema export``."""
    path = checkpoint_path(path)
    if is_package(path):
        return read_package_metadata(path)
    try:
        return CheckpointMetadata.from_dict(_read_header(path))
    except CheckpointError as err:
        if str(path) in str(err):
            raise
        raise CheckpointError(f"{path}: {err}") from None


def checkpoint_path(path: Any) -> Path:
    """``path`` as a ``Path`` to an existing file, or a :class:`CheckpointError` saying what it is instead."""
    if not isinstance(path, str | os.PathLike):
        raise CheckpointError(f"a checkpoint is given as a path or a file name, not as {type(path).__name__}")
    if str(path).strip() in ("", "."):
        raise CheckpointError("no checkpoint was given (the path is empty)")
    path = Path(path)
    if not path.exists():
        from .bundled import BUNDLED

        hint = f"; for the bundled model, use resolve_model({str(path)!r})" if str(path) in BUNDLED else ""
        raise CheckpointError(f"checkpoint {path} does not exist{hint}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file (.safetensors)")
    return path


def _read_header(path: Path) -> dict[str, Any]:
    """Parse the safetensors header and return our metadata dict, with specific errors."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(9)
        # A safetensors header is JSON right after its 8-byte length; only otherwise look for a
        # pickle or zip signature (a header length of 128 + 256k also starts with byte 0x80).
        json_header = len(head) == 9 and head[8:9] == b"{"
        if not json_header and (head[:2] == b"PK" or head[:1] == b"\x80"):
            raise CheckpointError(f"{path} is a pickled PyTorch file, not a .safetensors checkpoint; {PICKLE_ADVICE}")
        if len(head) < 8:
            raise CheckpointError(f"{path} is truncated: {size} bytes is too short for a checkpoint")
        (header_len,) = struct.unpack("<Q", head[:8])
        if header_len > 100_000_000:
            raise CheckpointError(f"{path} is not a .safetensors checkpoint (its header is not one)")
        if 8 + header_len > size:
            raise CheckpointError(f"{path} is truncated: its header needs {header_len} bytes, the file has {size - 8}")
        fh.seek(8)
        raw = fh.read(header_len)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path} is not a .safetensors checkpoint (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a .safetensors checkpoint (its header is not a JSON object)")
    data_end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) and o >= 0 for o in offsets)):
            raise CheckpointError(f"{path} is damaged: the header entry of tensor {name!r} has no valid data_offsets")
        data_end = max(data_end, offsets[1])
    if 8 + header_len + data_end > size:
        raise CheckpointError(f"{path} is truncated: the tensors need {data_end} bytes, {size - 8 - header_len} are present")
    block = header.get("__metadata__") or {}
    meta = block.get(METADATA_KEY) if isinstance(block, dict) else None
    if meta is None:
        raise CheckpointError(
            f"{path} is a .safetensors file but not a napari-usema checkpoint (no '{METADATA_KEY}' metadata); {PICKLE_ADVICE}"
        )
    try:
        data = json.loads(meta) if isinstance(meta, str) else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is damaged: its '{METADATA_KEY}' metadata is not a JSON object")
    return data


# What to do with weights that napari-usema cannot read directly.
PICKLE_ADVICE = (
    "convert it in Python: load_checkpoint(PATH.pt, metadata=CheckpointMetadata(config, ...)) reads a plain state "
    "dict of tensors with the config you give (never unpickling code), and save_checkpoint writes the .safetensors "
    "file that every napari-usema command reads"
)


def load_checkpoint(
    path: str | Path, *, metadata: CheckpointMetadata | None = None, device: str | torch.device = "cpu"
) -> LoadedModel:
    """Load a checkpoint into an eval-mode network.

    Args:
        path: A ``.safetensors`` checkpoint, a BioImage.IO package (``.zip``) made by ``usema export``,
            or a ``.pt``/``.pth`` state dict (then ``metadata``, holding at least the config, is required).
        metadata: Explicit metadata for ``.pt``/``.pth`` files; ignored for ``.safetensors``.
        device: Where the network goes.

    Raises:
        CheckpointError: naming the problem: a missing, truncated, pickled-code or foreign file, or
            a tensor whose name or shape does not fit the config.
    """
    path = checkpoint_path(path)
    if is_package(path):  # a BioImage.IO package that usema export wrote
        metadata, state = read_package(path)
    elif path.suffix in (".pt", ".pth"):
        if metadata is None:
            raise CheckpointError(f"{path.name} is a plain state dict, which holds no model config; {PICKLE_ADVICE}")
        state = _load_state_dict_safely(path)
    else:
        metadata = read_metadata(path)
        try:
            state = load_file(str(path))
        except SafetensorError as err:
            raise CheckpointError(f"{path} could not be read as safetensors: {err}") from None
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise CheckpointError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'mps'") from None
    model = build_model(metadata.config)
    load_state_strictly(model, state, path.name)
    return LoadedModel(model.to(device).eval(), metadata, path)


def _load_state_dict_safely(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        text = str(err)
        if "weights_only" in text or "Unsupported global" in text or "GLOBAL" in text:
            raise CheckpointError(
                f"{path.name} holds pickled code or objects, not only tensors; refusing to unpickle it (weights_only=True)"
            ) from None
        raise CheckpointError(f"{path.name} is not a readable PyTorch state dict ({type(err).__name__}: {text[:200]})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path.name} is not a state dict of tensors")
    return state


def load_state_strictly(model: USEMA, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``model``, naming the first tensor that does not fit."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing:
        raise CheckpointError(f"{source} does not match its config: tensor {missing[0]!r} is missing ({len(missing)} in all)")
    if unexpected:
        raise CheckpointError(
            f"{source} does not match its config: unexpected tensor {unexpected[0]!r} ({len(unexpected)} in all)"
        )
    for name, tensor in state.items():
        if tensor.shape != own[name].shape:
            raise CheckpointError(
                f"{source} does not match its config: tensor {name!r} has shape {tuple(tensor.shape)}, "
                f"the config needs {tuple(own[name].shape)}"
            )
        if own[name].is_floating_point() and not tensor.is_floating_point():
            raise CheckpointError(f"{source} is damaged: tensor {name!r} holds {tensor.dtype} values where weights are floats")
    bad = [name for name, tensor in state.items() if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if bad:
        raise CheckpointError(
            f"{source} has NaN or infinite weights in {len(bad)} tensor(s), e.g. {bad[0]!r}: it would find nothing; "
            "it comes from a training run that diverged, or the file is damaged"
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
