"""Every malformed, foreign or unusable checkpoint gets a CheckpointError that names the file, at load,
before any inference."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from napari_usema.cli.main import main
from napari_usema.io.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from napari_usema.io.metadata import CheckpointError, CheckpointMetadata
from napari_usema.model import build_model, preset


def raw_safetensors(path: Path, header: object, data: bytes = b"") -> Path:
    """A file with the given JSON header, whatever it holds (safetensors' writer would refuse most)."""
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    config = preset("tiny")
    model = build_model(config)
    path = save_checkpoint(tmp_path_factory.mktemp("good") / "m.safetensors", model, CheckpointMetadata(config))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    return path, CheckpointMetadata(config).to_dict(), state


def with_metadata(path: Path, state: dict, metadata: object) -> Path:
    save_file(state, str(path), metadata={"napari_usema": json.dumps(metadata)})
    return path


BAD_METADATA = {
    "a JSON list": lambda m: [1, 2, 3],
    "config a list": lambda m: {**m, "config": [32, 64]},
    "task an object": lambda m: {**m, "task": {"kind": "instance"}},
    "class names a number": lambda m: {**m, "class_names": 3},
    "normalization a string": lambda m: {**m, "normalization": "percentile"},
    "provenance a string": lambda m: {**m, "provenance": "trained somewhere"},
    "no input_channels": lambda m: {k: v for k, v in m.items() if k != "input_channels"},
    "input_channels wrong": lambda m: {**m, "input_channels": 7},
    "post-process of the wrong type": lambda m: {**m, "postprocess": {"interior_threshold": "high"}},
    "post-process out of range": lambda m: {**m, "postprocess": {"interior_threshold": 5.0}},
    "post-process a list": lambda m: {**m, "postprocess": [0.5]},
    "input scale a string": lambda m: {**m, "input_scale": "half"},
    "format version a string": lambda m: {**m, "format_version": "2"},
    "head_dim 0 (was a ZeroDivisionError)": lambda m: {**m, "config": {**m["config"], "head_dim": 0}},
    "widths a string": lambda m: {**m, "config": {**m["config"], "widths": "32,64"}},
    "class names one string": lambda m: {**m, "class_names": "background,interior,boundary"},
    "input_channels a string": lambda m: {**m, "input_channels": "1"},
    "object diameter negative": lambda m: {**m, "object_diameter": -4},
}


@pytest.mark.parametrize("case", list(BAD_METADATA))
def test_bad_metadata_is_a_checkpoint_error_naming_the_file(tmp_path: Path, good, case: str) -> None:
    _, meta, state = good
    path = with_metadata(tmp_path / "bad.safetensors", state, BAD_METADATA[case](meta))
    for read in (read_metadata, load_checkpoint):
        with pytest.raises(CheckpointError) as info:
            read(path)
        assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ([1, 2], "not a JSON object"),
        ({"w": {"dtype": "F32", "shape": [1]}}, "has no valid data_offsets"),
        ({"w": {"dtype": "F32", "shape": [1], "data_offsets": "0-4"}}, "has no valid data_offsets"),
        ({"w": "a tensor"}, "has no valid data_offsets"),
        ({"__metadata__": ["napari_usema"]}, "not a napari-usema checkpoint"),
        ({"__metadata__": {"napari_usema": "{not json"}}, "metadata is not a JSON object"),
        ({"__metadata__": {"napari_usema": "[1, 2]"}}, "metadata is not a JSON object"),
    ],
    ids=[
        "list",
        "no-offsets",
        "string-offsets",
        "entry-a-string",
        "metadata-a-list",
        "metadata-not-json",
        "metadata-a-list-json",
    ],
)
def test_malformed_headers_are_checkpoint_errors(tmp_path: Path, header: object, message: str) -> None:
    path = raw_safetensors(tmp_path / "bad.safetensors", header, b"\0" * 4)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda t: t.fill_(float("nan")), "NaN or infinite weights"),
        (lambda t: t.fill_(float("inf")), "NaN or infinite weights"),
        (lambda t: t.to(torch.int64), "holds torch.int64 values"),
    ],
    ids=["nan", "inf", "integer"],
)
def test_unusable_weights_are_refused_at_load(tmp_path: Path, good, spoil, message: str) -> None:
    _, meta, state = good
    spoilt = dict(state)
    name = "decoder.0.head.weight"
    result = spoil(spoilt[name].clone())
    spoilt[name] = result
    path = with_metadata(tmp_path / "bad.safetensors", spoilt, meta)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("given", "message"),
    [("", "no checkpoint was given"), (".", "no checkpoint was given"), (None, "not as NoneType"), (3, "not as int")],
)
def test_paths_that_are_not_checkpoints(given: object, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(given)


def test_an_unknown_device_and_a_bundled_name_get_specific_messages(good) -> None:
    with pytest.raises(CheckpointError, match="unknown device 'tpu'"):
        load_checkpoint(good[0], device="tpu")
    with pytest.raises(CheckpointError, match=r"use resolve_model\('nuclei'\)"):
        load_checkpoint("nuclei")


def test_a_folder_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file"):
        load_checkpoint(tmp_path)


def test_the_cli_explains_what_to_do_with_a_state_dict(tmp_path: Path, good, capsys) -> None:
    path = tmp_path / "weights.pt"
    torch.save(good[2], path)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert "holds no model config" in err and "save_checkpoint" in err and "--config" not in err
