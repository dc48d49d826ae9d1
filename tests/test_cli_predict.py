"""``usema predict`` and ``usema evaluate``: outputs, every bad-input error, and torchrun sharding."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_usema.cli.main import main


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        tifffile.imwrite(folder / f"img{i}.tif", rng.integers(0, 255, (70, 90), dtype=np.uint8))
    return folder


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


def test_predict_folder_writes_labels_of_the_input_shape(images: Path, tmp_path: Path, tiny_instance_checkpoint: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("predict", images, "--model", tiny_instance_checkpoint, "--out", out, "--tile", "64", "--probabilities") == 0
    for i in range(3):
        labels = tifffile.imread(out / f"img{i}.tif")
        assert labels.shape == (70, 90) and labels.dtype == np.uint16
        assert tifffile.imread(out / f"img{i}_probabilities.tif").shape == (3, 70, 90)


def test_existing_output_needs_overwrite(images: Path, tmp_path: Path, tiny_instance_checkpoint: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "img0.tif").write_bytes(b"precious")
    assert run_cli("predict", images, "--model", tiny_instance_checkpoint, "--out", out) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (out / "img0.tif").read_bytes() == b"precious"
    assert not (out / "img1.tif").exists()  # nothing is written when any output would be overwritten
    assert run_cli("predict", images, "--model", tiny_instance_checkpoint, "--out", out, "--overwrite") == 0
    assert tifffile.imread(out / "img0.tif").shape == (70, 90)


@pytest.mark.parametrize(
    ("make_input", "extra", "message"),
    [
        (lambda d: (d / "broken.tif").write_bytes(b"II*\x00garbage"), [], "could not be read as an image"),
        (
            lambda d: tifffile.imwrite(d / "stack4d.tif", np.zeros((2, 40, 40, 2), np.uint8)),
            [],
            "pick the one to segment with --channel",
        ),
        (
            lambda d: tifffile.imwrite(d / "small.tif", np.zeros((40, 50), np.uint8)),
            ["--tile", "64"],
            "smaller than the 64-pixel tile",
        ),
        (lambda d: tifffile.imwrite(d / "rgb.tif", np.zeros((40, 50, 3), np.uint8)), [], "the model expects 1 (grayscale)"),
        (lambda d: None, [], "does not exist"),
    ],
    ids=["unreadable", "4d-without-channel", "smaller-than-tile", "channel-mismatch", "missing"],
)
def test_bad_input_is_a_specific_error(
    tmp_path: Path, tiny_instance_checkpoint: Path, capsys, make_input, extra, message
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    make_input(folder)
    target = next(folder.iterdir(), folder / "missing.tif")
    code = run_cli("predict", target, "--model", tiny_instance_checkpoint, "--out", tmp_path / "out", *extra)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_corrupt_model_is_a_specific_error(images: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    assert run_cli("predict", images, "--model", bad, "--out", tmp_path / "o") == 2
    assert "not a .safetensors checkpoint" in capsys.readouterr().err


def test_evaluate_writes_the_documented_json(tmp_path: Path, capsys) -> None:
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    truth.mkdir(), pred.mkdir()
    t = np.zeros((20, 20), np.uint16)
    t[2:8, 2:8], t[12:18, 12:18] = 1, 2
    p = np.zeros_like(t)
    p[2:8, 2:9] = 7
    tifffile.imwrite(truth / "a.tif", t)
    tifffile.imwrite(pred / "a.tif", p)
    tifffile.imwrite(truth / "b.tif", t)  # no prediction: reported missing
    assert run_cli("evaluate", "--pred", pred, "--truth", truth, "--json", tmp_path / "m.json") == 0
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["task"] == "instance" and report["missing"] == ["b"]
    assert report["per_image"]["a"]["f1"] == pytest.approx(2 / 3)
    assert set(report["mean"]) == {"f1", "precision", "recall"}
    assert "missing prediction: b" in capsys.readouterr().err
    # The challenge's border rule, reported beside the plain figures: a cell reaching the edge is dropped.
    t[0:3, 14:18], p[0:3, 14:18] = 3, 0  # truth 3 touches the top edge and is missed
    tifffile.imwrite(truth / "a.tif", t)
    tifffile.imwrite(pred / "a.tif", p)
    assert run_cli("evaluate", "--pred", pred, "--truth", truth, "--exclude-border", "--json", tmp_path / "b.json") == 0
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["per_image"]["a"]["false_negatives"] == 2
    assert report["excluding_border"]["per_image"]["a"]["false_negatives"] == 1
    assert "without 2-px border objects" in capsys.readouterr().out


def test_evaluate_semantic(tmp_path: Path) -> None:
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    truth.mkdir(), pred.mkdir()
    t = np.zeros((10, 10), np.uint8)
    t[:5] = 1
    tifffile.imwrite(truth / "f.tif", t)
    tifffile.imwrite(pred / "f.tif", t)
    assert run_cli("evaluate", "--pred", pred, "--truth", truth, "--json", tmp_path / "m.json") == 0
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["task"] == "semantic" and report["mean"]["dsc"]["mean"] == 1.0 and report["mean"]["nsd"]["1"] == 1.0


@pytest.mark.slow
def test_predict_under_torchrun_shards_files_across_two_processes(
    images: Path, tmp_path: Path, tiny_instance_checkpoint: Path
) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    assert torchrun, "torchrun comes with torch"
    for i in range(3, 5):
        tifffile.imwrite(images / f"img{i}.tif", np.zeros((50, 60), np.uint8))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "napari_usema.cli.main",
        "predict",
        str(images),
        "--model",
        str(tiny_instance_checkpoint),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"img{i}{ext}" for i in range(5) for ext in (".json", ".tif"))
    # Each file was written by exactly one rank.
    wrote = [line for line in result.stderr.splitlines() if line.startswith("wrote ")]
    assert len(wrote) == 5 and len(set(wrote)) == 5


def test_command_line_options_override_the_models_tuned_postprocess() -> None:
    import argparse

    from napari_usema.cli.predict import chosen_watershed
    from napari_usema.postprocess.config import WatershedConfig

    tuned = WatershedConfig(interior_threshold=0.9, foreground_threshold=0.6)
    none_given = argparse.Namespace(
        mode=None, interior_threshold=None, foreground_threshold=None, min_size=None, no_fill_holes=False
    )
    assert chosen_watershed(tuned, none_given) == tuned
    some = argparse.Namespace(**{**vars(none_given), "foreground_threshold": 0.3, "no_fill_holes": True})
    assert chosen_watershed(tuned, some) == tuned.replace(foreground_threshold=0.3, fill_holes=False)


def test_scales_option_is_parsed_and_checked(images: Path, tmp_path: Path, tiny_instance_checkpoint: Path, capsys) -> None:
    from napari_usema.cli.predict import parse_scales

    assert parse_scales("0.8,1,1.25") == (0.8, 1.0, 1.25)
    out = tmp_path / "out"
    assert run_cli("predict", images, "--model", tiny_instance_checkpoint, "--out", out, "--scales", "0.75,1") == 0
    labels = tifffile.imread(out / "img0.tif")
    assert labels.shape == tifffile.imread(images / "img0.tif").shape[:2]
    for bad in ("0.8,x", "0,1", "1,5"):
        with pytest.raises(SystemExit) as exit_info:  # argparse's usage error
            run_cli("predict", images, "--model", tiny_instance_checkpoint, "--out", out, "--overwrite", "--scales", bad)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and "comma-separated factors in (0, 4]" in err and "Traceback" not in err
