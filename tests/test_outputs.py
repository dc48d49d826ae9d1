"""Outputs: written whole or not at all, checked before any work, never over an input or a parent model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_usema.cli.main import main
from napari_usema.io.outputs import OutputError, atomic_write, check_output


def run_cli(*args: object) -> int:
    return main([str(a) for a in args])


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        tifffile.imwrite(images / f"{name}.tif", rng.integers(0, 255, (48, 64), dtype=np.uint8))
    return images


def test_an_interrupted_write_leaves_neither_a_partial_file_nor_a_temporary(tmp_path: Path) -> None:
    target = tmp_path / "labels.tif"
    target.write_bytes(b"the previous result")
    with pytest.raises(KeyboardInterrupt), atomic_write(target, overwrite=True) as temporary:
        temporary.write_bytes(b"half of a new fi")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"the previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.tif"]
    with pytest.raises(FileExistsError, match="pass --overwrite"), atomic_write(target):
        pass


@pytest.mark.parametrize(
    ("make", "kwargs", "message"),
    [
        (lambda d: (d / "x").mkdir(), {"suffix": ".safetensors"}, "is a folder"),
        (lambda d: None, {"suffix": ".safetensors"}, "must end in .safetensors"),
        (lambda d: (d / "x").write_bytes(b"1"), {}, "pass --overwrite"),
        (lambda d: (d / "x").write_bytes(b"1"), {"overwrite": True, "inputs": ["x"]}, "inputs are never overwritten"),
    ],
    ids=["folder", "suffix", "exists", "is-an-input"],
)
def test_outputs_are_checked_before_the_work(tmp_path: Path, make, kwargs, message, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    make(tmp_path)
    with pytest.raises(OutputError, match=message):
        check_output(Path("x"), **kwargs)


def test_an_unwritable_folder_is_refused(tmp_path: Path, monkeypatch) -> None:
    import napari_usema.io.outputs as outputs

    locked = tmp_path / "locked"
    locked.mkdir()
    # The check asks the OS (os.access); root may write anywhere, so the OS's answer is simulated here.
    monkeypatch.setattr(outputs.os, "access", lambda path, mode: Path(path) != locked)
    with pytest.raises(OutputError, match=f"the folder {locked} is not writable"):
        check_output(locked / "sub" / "m.safetensors")
    check_output(tmp_path / "m.safetensors")


def test_predict_never_overwrites_its_input(folder: Path, tiny_instance_checkpoint: Path, capsys) -> None:
    before = (folder / "a.tif").read_bytes()
    for extra in (["--overwrite"], []):  # without --overwrite it must not suggest it either
        assert run_cli("predict", folder / "a.tif", "--model", tiny_instance_checkpoint, "--out", folder, *extra) == 2
        err = capsys.readouterr().err
        assert "inputs are never overwritten" in err and "pass --overwrite" not in err
    assert (folder / "a.tif").read_bytes() == before
    with pytest.raises(SystemExit):  # an empty --out would write into the current folder
        run_cli("predict", folder / "a.tif", "--model", tiny_instance_checkpoint, "--out", "")


def test_an_output_folder_that_is_a_file_is_refused(folder: Path, tmp_path: Path, tiny_instance_checkpoint: Path, capsys) -> None:
    blocker = tmp_path / "results"
    blocker.write_bytes(b"a file")
    assert run_cli("predict", folder / "a.tif", "--model", tiny_instance_checkpoint, "--out", blocker) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_a_folder_run_goes_past_a_bad_image_and_skip_existing_finishes_it(
    folder: Path, tmp_path: Path, tiny_instance_checkpoint: Path, capsys
) -> None:
    (folder / "c.tif").write_bytes(b"II*\x00 not really a tiff")
    out = tmp_path / "out"
    assert run_cli("predict", folder, "--model", tiny_instance_checkpoint, "--out", out) == 1
    err = capsys.readouterr().err
    assert "1 of 3 input(s) failed" in err and "c.tif" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.tif", "b.json", "b.tif"]  # the good ones, nothing partial
    (folder / "c.tif").unlink()
    tifffile.imwrite(folder / "c.tif", np.zeros((48, 64), np.uint8))  # the user fixes the file
    written = (out / "a.tif").stat().st_mtime_ns
    assert run_cli("predict", folder, "--model", tiny_instance_checkpoint, "--out", out) == 2  # a and b exist
    assert run_cli("predict", folder, "--model", tiny_instance_checkpoint, "--out", out, "--skip-existing") == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.tif", "b.json", "b.tif", "c.json", "c.tif"]
    assert (out / "a.tif").stat().st_mtime_ns == written  # left alone
    assert "skipped 2 input(s)" in capsys.readouterr().err


def test_train_refuses_an_existing_out_and_its_own_init(tmp_path: Path, tiny_instance_checkpoint: Path, capsys) -> None:
    data = tmp_path / "data"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
    tifffile.imwrite(data / "images" / "a.tif", np.zeros((32, 32), np.uint8))
    tifffile.imwrite(data / "masks" / "a.tif", np.zeros((32, 32), np.uint16))
    existing = tmp_path / "m.safetensors"
    existing.write_bytes(b"a model I keep")
    base = ["train", "--data", data, "--task", "instance", "--preset", "tiny", "--in-channels", "1", "--steps", "1"]
    assert run_cli(*base, "--out", existing) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert run_cli(*base, "--out", tiny_instance_checkpoint, "--init", tiny_instance_checkpoint, "--overwrite") == 2
    assert "inputs are never overwritten" in capsys.readouterr().err
    assert existing.read_bytes() == b"a model I keep"
    assert run_cli(*base, "--out", tmp_path / "models") == 2  # not a .safetensors name
    assert "must end in .safetensors" in capsys.readouterr().err
    fresh = tmp_path / "new.safetensors"
    assert run_cli(*base, "--out", fresh, "--device", "tpu") == 2
    assert "this machine has" in capsys.readouterr().err
    assert list(tmp_path.glob("new*")) == []  # not even an empty log
    assert run_cli(*[a if a != "tiny" else "huge" for a in base], "--out", fresh) == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err
    assert run_cli(*base, "--out", fresh, "--binarize") == 2
    assert "--binarize is for semantic masks" in capsys.readouterr().err
    assert run_cli(*base, "--out", fresh) == 2  # the only mask is empty
    assert "holds any object: there is nothing to learn" in capsys.readouterr().err


def test_finetune_checks_its_out_before_training(folder: Path, tmp_path: Path, tiny_instance_checkpoint: Path, capsys) -> None:
    labels = tmp_path / "labels.tif"
    tifffile.imwrite(labels, np.pad(np.ones((8, 8), np.uint16), 20)[:48, :64])
    common = ["finetune", "--model", tiny_instance_checkpoint, "--image", folder / "a.tif", "--labels", labels, "--steps", "1"]
    (tmp_path / "dir").mkdir()
    assert run_cli(*common, "--out", tmp_path / "dir") == 2
    assert "is a folder" in capsys.readouterr().err
    assert run_cli(*common, "--out", tiny_instance_checkpoint, "--overwrite") == 2
    assert "must not replace its parent" in capsys.readouterr().err


def test_checkpoints_get_the_umasks_permissions(tmp_path: Path) -> None:
    from napari_usema.io.checkpoint import save_checkpoint
    from napari_usema.io.metadata import CheckpointMetadata
    from napari_usema.model import build_model, preset

    config = preset("tiny")
    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "m.safetensors", build_model(config), CheckpointMetadata(config))
    finally:
        os.umask(old)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)  # safetensors alone writes 0600


SLOW_WRITE = textwrap.dedent(
    """
    import sys, time, tifffile
    write = tifffile.imwrite
    def slow(path, *args, **kwargs):  # the labels are in the temporary file, not yet in place
        write(path, *args, **kwargs)
        print("WRITING", path, flush=True)
        time.sleep(60)
    tifffile.imwrite = slow
    from napari_usema.cli.main import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_the_write_leaves_no_partial_file(
    folder: Path, tmp_path: Path, tiny_instance_checkpoint: Path, signum: int, code: int
) -> None:
    out, scratch = tmp_path / "out", tmp_path / "tmp"
    scratch.mkdir()
    command = [sys.executable, "-c", SLOW_WRITE, "predict", str(folder / "a.tif"), "--model", str(tiny_instance_checkpoint)]
    env = {**os.environ, "TMPDIR": str(scratch)}
    child = subprocess.Popen([*command, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = child.stdout.readline()
    assert line.startswith("WRITING"), child.stderr.read()
    child.send_signal(signum)
    assert child.wait(timeout=60) == code
    assert list(out.iterdir()) == []  # neither a.tif nor its temporary
    assert list(scratch.iterdir()) == []  # no usema-* working folder left behind
