"""Checkpoints: bit-exact round trips and a specific error for every kind of bad file."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from napari_usema.io.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from napari_usema.io.metadata import CheckpointError, CheckpointMetadata, NormalizationRecipe, migrate_metadata
from napari_usema.model import build_model, preset


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> tuple[Path, torch.nn.Module, CheckpointMetadata]:
    torch.manual_seed(0)
    config = preset("tiny", in_channels=3)
    model = build_model(config)
    meta = CheckpointMetadata(
        config, "instance", normalization=NormalizationRecipe("percentile", 2, 98), provenance={"data": "x"}
    )
    path = save_checkpoint(tmp_path / "m.safetensors", model, meta)
    return path, model, meta


def test_round_trip_is_bit_exact(tiny_checkpoint: tuple) -> None:
    path, model, meta = tiny_checkpoint
    loaded = load_checkpoint(path)
    assert loaded.metadata == meta
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name
    x = torch.randn(1, 3, 24, 24)
    model.eval()
    assert torch.equal(loaded.model(x), model(x))


def test_metadata_has_the_contract_fields(tiny_checkpoint: tuple) -> None:
    path, _, _ = tiny_checkpoint
    raw = read_metadata(path).to_dict()
    assert {"format_version", "config", "task", "class_names", "input_channels", "normalization", "provenance"} <= set(raw)
    assert raw["input_channels"] == 3 and raw["class_names"] == ["background", "interior", "boundary"]


def test_half_precision_storage_loads_as_float32(tmp_path: Path, tiny_checkpoint: tuple) -> None:
    _, model, meta = tiny_checkpoint
    path = save_checkpoint(tmp_path / "half.safetensors", model, meta, half=True)
    loaded = load_checkpoint(path)
    weight = next(iter(loaded.model.parameters()))
    assert weight.dtype == torch.float32
    torch.testing.assert_close(weight, next(iter(model.parameters())), rtol=1e-3, atol=1e-3)


def test_pickle_carrying_code_is_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple:
            return (print, ("this ran",))

    path = tmp_path / "evil.pt"
    torch.save({"weights": Evil()}, path)
    meta = CheckpointMetadata(preset("tiny"))
    with pytest.raises(CheckpointError, match="pickled code or objects"):
        load_checkpoint(path, metadata=meta)
    renamed = tmp_path / "evil.safetensors"
    path.rename(renamed)
    with pytest.raises(CheckpointError, match="pickled PyTorch file"):
        load_checkpoint(renamed)


def test_raw_pickle_stream_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "raw.safetensors"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="pickled"):
        load_checkpoint(path)


def test_truncated_file_is_named(tiny_checkpoint: tuple, tmp_path: Path) -> None:
    path, _, _ = tiny_checkpoint
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(cut)
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tiny)


def test_file_that_is_no_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "notes.safetensors"
    path.write_text("these are my lab notes, not weights\n" * 10)
    with pytest.raises(CheckpointError, match=r"not a \.safetensors checkpoint"):
        load_checkpoint(path)


def test_foreign_safetensors_without_metadata(tmp_path: Path) -> None:
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(CheckpointError, match="not a napari-usema checkpoint"):
        load_checkpoint(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_config_tensor_mismatch_names_the_tensor(tmp_path: Path, tiny_checkpoint: tuple) -> None:
    _, model, meta = tiny_checkpoint
    wrong = CheckpointMetadata(meta.config.replace(widths=(8, 16, 24)), "instance")
    bad = tmp_path / "bad.safetensors"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(bad), metadata={"napari_usema": json.dumps(wrong.to_dict())})
    with pytest.raises(CheckpointError, match=r"tensor '(en|de)coder\.[\w.]+' has shape \(16, "):
        load_checkpoint(bad)
    del state["encoder.0.sema.gate.weight"]
    save_file(state, str(bad), metadata={"napari_usema": json.dumps(meta.to_dict())})
    with pytest.raises(CheckpointError, match=r"'encoder\.0\.sema\.gate\.weight' is missing"):
        load_checkpoint(bad)


def test_state_dict_loads_with_explicit_config(tmp_path: Path, tiny_checkpoint: tuple) -> None:
    _, model, meta = tiny_checkpoint
    path = tmp_path / "plain.pth"
    torch.save(model.state_dict(), path)
    loaded = load_checkpoint(path, metadata=meta)
    assert torch.equal(loaded.model.state_dict()["decoder.0.head.weight"], model.state_dict()["decoder.0.head.weight"])
    with pytest.raises(CheckpointError, match="holds no model config"):
        load_checkpoint(path)


def test_migration_refuses_unknown_versions() -> None:
    with pytest.raises(CheckpointError, match="newer than this napari-usema"):
        migrate_metadata({"format_version": 99})
    with pytest.raises(CheckpointError, match="no integer 'format_version'"):
        migrate_metadata({})


def test_version_1_metadata_reads_as_full_resolution(tiny_checkpoint: tuple) -> None:
    data = tiny_checkpoint[2].to_dict()
    data["format_version"] = 1
    del data["input_scale"]
    del data["object_diameter"]
    migrated = CheckpointMetadata.from_dict(data)
    assert migrated.input_scale == 1.0 and migrated.to_dict()["format_version"] == 3
    assert migrated.object_diameter is None


def test_version_2_metadata_has_no_object_diameter_and_format_3_keeps_it(tmp_path: Path, tiny_checkpoint: tuple) -> None:
    data = tiny_checkpoint[2].to_dict()
    data["format_version"] = 2
    del data["object_diameter"]
    assert CheckpointMetadata.from_dict(data).object_diameter is None
    config = preset("tiny")
    path = save_checkpoint(tmp_path / "d.safetensors", build_model(config), CheckpointMetadata(config, object_diameter=18.2))
    assert read_metadata(path).object_diameter == 18.2
    for bad in (0, -3, float("nan"), "big"):
        with pytest.raises(CheckpointError, match="object_diameter must be a number > 0"):
            CheckpointMetadata(config, object_diameter=bad)


def test_input_scale_is_kept_and_checked(tmp_path: Path) -> None:
    config = preset("tiny")
    path = save_checkpoint(tmp_path / "half.safetensors", build_model(config), CheckpointMetadata(config, input_scale=0.5))
    assert load_checkpoint(path).metadata.input_scale == 0.5
    with pytest.raises(CheckpointError, match="input_scale must be a number in"):
        CheckpointMetadata(config, input_scale=0)


def test_test_scales_are_kept_optional_and_checked(tmp_path: Path, tiny_checkpoint: tuple) -> None:
    config = preset("tiny")
    meta = CheckpointMetadata(config, test_scales=(0.8, 1, 1.25))
    path = save_checkpoint(tmp_path / "ms.safetensors", build_model(config), meta)
    assert load_checkpoint(path).metadata.test_scales == (0.8, 1.0, 1.25)
    data = tiny_checkpoint[2].to_dict()
    del data["test_scales"]  # files written before the field existed: one pass
    assert CheckpointMetadata.from_dict(data).test_scales == (1.0,)
    with pytest.raises(CheckpointError, match="test_scales: scales must be one or more numbers"):
        CheckpointMetadata.from_dict({**data, "test_scales": [0.5, -1]})


def test_header_length_that_starts_like_a_pickle_still_loads(tmp_path: Path) -> None:
    """The 8-byte header length is little-endian: a length of 128 + 256k begins with 0x80, as pickles do."""
    config = preset("tiny")
    model = build_model(config)
    for pad in range(300):
        path = save_checkpoint(tmp_path / "m.safetensors", model, CheckpointMetadata(config, provenance={"pad": "x" * pad}))
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header length starting with 0x80")
    assert load_checkpoint(path).metadata.provenance["pad"] == "x" * pad


def test_tuned_postprocess_is_kept_optional_and_checked(tmp_path: Path) -> None:
    config = preset("tiny")
    meta = CheckpointMetadata(config, postprocess={"interior_threshold": 0.9, "min_size": 30})
    loaded = load_checkpoint(save_checkpoint(tmp_path / "tuned.safetensors", build_model(config), meta))
    ws = loaded.metadata.watershed()
    assert (ws.interior_threshold, ws.min_size, ws.foreground_threshold) == (0.9, 30, 0.5)  # the rest: defaults
    older = meta.to_dict()
    del older["postprocess"]  # files written before the field existed
    assert CheckpointMetadata.from_dict(older).watershed() == CheckpointMetadata(config).watershed()
    with pytest.raises(CheckpointError, match="unknown post-process setting 'seed_threshold'"):
        CheckpointMetadata(config, postprocess={"seed_threshold": 0.9})
