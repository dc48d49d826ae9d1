"""``usema export --format onnx``: a graph of dynamic batch, height and width that ONNX Runtime runs as PyTorch does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from napari_usema.cli.main import main
from napari_usema.interop.onnx_export import TOLERANCE, check_onnx, export_onnx, size_step
from napari_usema.io.checkpoint import load_checkpoint

pytestmark = pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated")  # torch.export's own


def test_the_graph_runs_any_multiple_of_its_step_as_pytorch_does(tiny_instance_checkpoint: Path, tmp_path: Path) -> None:
    import onnxruntime
    import torch

    loaded = load_checkpoint(tiny_instance_checkpoint)
    out = export_onnx(loaded, tmp_path / "tiny.onnx")
    assert check_onnx(loaded, out) <= TOLERANCE  # two sizes and two batch sizes
    step = size_step(loaded.metadata.config)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 1, 3 * step, 5 * step)
    with torch.no_grad():
        expected = loaded.model(x).numpy()
    got = session.run(["logits"], {"image": x.numpy()})[0]
    assert got.shape == (3, 3, 3 * step, 5 * step) and np.abs(got - expected).max() <= TOLERANCE
    assert all(not p.name.endswith(".part") for p in tmp_path.iterdir())  # written whole


def test_the_command_checks_and_refuses_what_it_must(tiny_instance_checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "model.onnx"
    assert main(["export", str(tiny_instance_checkpoint), "--format", "onnx", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "ONNX Runtime agrees with PyTorch" in said and out.stat().st_size > 0
    before = out.read_bytes()
    assert main(["export", str(tiny_instance_checkpoint), "--format", "onnx", "--out", str(out)]) == 2  # exists: no --overwrite
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(b"not a checkpoint")
    assert main(["export", str(foreign), "--format", "onnx", "--out", str(tmp_path / "f.onnx")]) == 2
    assert not (tmp_path / "f.onnx").exists()


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_torchscript_runs_its_tile_as_pytorch_does_and_refuses_others(tiny_instance_checkpoint: Path, tmp_path: Path) -> None:
    import torch

    from napari_usema.interop.torchscript_export import TOLERANCE as TS_TOLERANCE
    from napari_usema.interop.torchscript_export import check_torchscript, export_torchscript

    loaded = load_checkpoint(tiny_instance_checkpoint)
    divisor = loaded.metadata.config.divisor
    out = export_torchscript(loaded, tmp_path / "tiny.pt", tile=4 * divisor)
    tile, worst = check_torchscript(loaded, out)  # batches of 1 and 3, and a refused size
    assert tile == 4 * divisor and worst <= TS_TOLERANCE
    scripted = torch.jit.load(str(out))
    x = torch.randn(2, 1, tile, tile)
    with torch.no_grad():
        assert torch.allclose(scripted(x), loaded.model(x), atol=TS_TOLERANCE)
        with pytest.raises(Exception, match=rf"takes tiles of shape \(B, 1, {tile}, {tile}\)"):
            scripted(torch.randn(1, 1, tile + divisor, tile))
    with pytest.raises(ValueError, match="multiple of"):
        export_torchscript(loaded, tmp_path / "odd.pt", tile=divisor + 1)
    assert not (tmp_path / "odd.pt").exists()


def test_the_torchscript_command_checks_and_keeps_the_file(tiny_instance_checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "model.pt"
    args = ["export", str(tiny_instance_checkpoint), "--format", "torchscript", "--tile", "64", "--out", str(out)]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "(B, 1, 64, 64)" in said and "agrees with PyTorch" in said and out.stat().st_size > 0
    assert main(args) == 2 and "exists" in capsys.readouterr().err  # no --overwrite
    assert main([*args[:-1], str(tmp_path / "model.onnx")]) == 2  # the suffix names another format
    assert not (tmp_path / "model.onnx").exists()
