"""Provenance beside every result: ``usema predict`` writes NAME.json, and its command makes the same labels."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_usema._sample_data import load_nuclei
from napari_usema.cli.main import main
from napari_usema.io.bundled import resolve_model
from napari_usema.io.provenance import file_sha256


@pytest.fixture
def crop(tmp_path: Path) -> Path:
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, np.asarray(load_nuclei())[:128, :160])
    return path


def test_predict_writes_a_record_whose_command_makes_the_same_labels(crop: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    options = ["--tile", "96", "--overlap", "0.3", "--min-size", "20", "--interior-threshold", "0.8", "--diameter", "22"]
    assert main(["predict", str(crop), "--model", "nuclei", "--out", str(first), *options]) == 0
    record = json.loads((first / "cells.json").read_text())
    assert record["model"]["sha256"] == file_sha256(resolve_model("nuclei")) and record["model"]["task"] == "instance"
    assert record["input"]["sha256"] == file_sha256(crop) and record["input"]["shape"] == [128, 160]
    assert record["options"]["tiling"]["tile"] == 96 and record["options"]["tiling"]["overlap"] == 0.3
    assert record["options"]["watershed"]["min_size"] == 20 and record["options"]["watershed"]["interior_threshold"] == 0.8
    assert record["options"]["diameter"] == pytest.approx(22)
    assert {"napari-usema", "torch", "numpy", "python"} <= set(record["versions"]) and record["seconds"] > 0
    # The recorded line, into another folder, makes the same labels, bit for bit (CPU).
    argv = shlex.split(record["command"])
    assert argv[:2] == ["usema", "predict"]
    argv[argv.index("--out") + 1] = str(tmp_path / "again")
    assert main(argv[1:]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "again" / "cells.tif"), tifffile.imread(first / "cells.tif"))


def test_an_existing_record_is_refused_before_any_work(crop: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "cells.json").write_text("{}")
    assert main(["predict", str(crop), "--model", "nuclei", "--out", str(out)]) != 0
    assert "cells.json exists" in capsys.readouterr().err
    assert not (out / "cells.tif").exists() and (out / "cells.json").read_text() == "{}"


def test_fitted_tiles_are_recorded_and_reproduced(crop: Path, tmp_path: Path, capsys) -> None:
    first = tmp_path / "fit"
    assert main(["predict", str(crop), "--model", "nuclei", "--out", str(first), "--max-tile", "96"]) == 0
    record = json.loads((first / "cells.json").read_text())
    assert record["options"]["tiling"]["fit"] is True and "--max-tile 96" in record["command"]
    argv = shlex.split(record["command"])
    argv[argv.index("--out") + 1] = str(tmp_path / "again")
    assert main(argv[1:]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "again" / "cells.tif"), tifffile.imread(first / "cells.tif"))
    for option in ("--max-tile", "--tile"):  # 0 is refused, never read as "the default"
        assert main(["predict", str(crop), "--model", "nuclei", "--out", str(tmp_path / "zero"), option, "0"]) == 2
        assert "tile must be an integer >= 16" in capsys.readouterr().err


def test_the_precision_that_ran_is_recorded_and_the_command_repeats_it(crop: Path, tmp_path: Path, monkeypatch) -> None:
    from napari_usema.inference import devices
    from napari_usema.io.provenance import predict_command

    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)  # this CPU, as far as auto knows: fp32
    assert main(["predict", str(crop), "--model", "nuclei", "--out", str(tmp_path / "a"), "--device", "cpu"]) == 0
    record = json.loads((tmp_path / "a" / "cells.json").read_text())
    assert record["options"]["tiling"]["precision"] == "auto" and record["options"]["precision_used"] == "fp32"
    argv = shlex.split(record["command"])
    assert argv[argv.index("--precision") + 1] == "fp32"  # what ran, so the line gives fp32 on any CPU
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert main(["predict", str(crop), "--model", "nuclei", "--out", str(tmp_path / "b"), "--device", "cpu"]) == 0
    record = json.loads((tmp_path / "b" / "cells.json").read_text())
    assert record["options"]["precision_used"] == "bf16"
    argv = shlex.split(record["command"])
    assert argv[argv.index("--precision") + 1] == "auto"  # bf16 where the CPU has it
    older = dict(record["options"])
    del older["precision_used"]  # a record from before the option: no flag, rather than a guess
    assert "--precision" not in predict_command(crop, "nuclei", tmp_path, older)
