"""BioImage.IO packages: the bundled models exported pass bioimageio.core's own test, and load back."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bioimageio.spec")
pytest.importorskip("bioimageio.core")

from napari_usema._sample_data import load_colonoscopy, load_nuclei
from napari_usema.cli.main import main
from napari_usema.inference.pipeline import drive, segment
from napari_usema.io.bundled import resolve_model
from napari_usema.io.checkpoint import load_checkpoint
from napari_usema.io.metadata import CheckpointError

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated"),  # torch.export's own
]


def bioimageio_test(package: Path) -> subprocess.CompletedProcess:
    """``bioimageio test PACKAGE``, the reference implementation's own check, as a user runs it."""
    cli = shutil.which("bioimageio") or str(Path(sys.executable).with_name("bioimageio"))
    return subprocess.run([cli, "test", str(package)], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def nuclei_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bioimageio") / "nuclei.zip"
    assert main(["export", "nuclei", "--format", "bioimageio", "--out", str(out)]) == 0  # with its ONNX weights
    return out


def test_the_nuclei_package_passes_bioimageio_test_with_both_weights(nuclei_package: Path) -> None:
    names = set(zipfile.ZipFile(nuclei_package).namelist())
    assert {"rdf.yaml", "weights.pt", "weights.onnx", "test_input.npy", "test_output.npy", "cover.png", "README.md"} <= names
    result = bioimageio_test(nuclei_package)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    said = result.stdout + result.stderr
    assert re.search(r"status\s+passed", said)
    for weights in ("onnx", "pytorch_state_dict"):  # both reproduce the test output napari-usema wrote
        assert re.search(rf"✔️\s+weights\.{weights}\s+Reproduce test outputs", said), weights


def test_the_polyps_package_passes_bioimageio_test(tmp_path: Path) -> None:
    out = tmp_path / "polyps.zip"
    # PyTorch weights only, to keep CI short: the ONNX export is the nuclei package's test.
    assert main(["export", "polyps", "--format", "bioimageio", "--out", str(out), "--no-onnx"]) == 0
    result = bioimageio_test(out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_a_package_loads_as_a_checkpoint_and_gives_the_same_labels(nuclei_package: Path) -> None:
    package, checkpoint = load_checkpoint(nuclei_package), load_checkpoint(resolve_model("nuclei"))
    assert package.metadata == checkpoint.metadata
    image = load_nuclei()
    np.testing.assert_array_equal(drive(segment(package, image)).labels, drive(segment(checkpoint, image)).labels)
    out = nuclei_package.parent / "labels"
    assert (
        main(
            [
                "predict",
                str(Path(__file__).parents[1] / "src/napari_usema/samples/nuclei.tif"),
                "--model",
                str(nuclei_package),
                "--out",
                str(out),
            ]
        )
        == 0
    )


def test_foreign_packages_and_existing_outputs_are_refused(tmp_path: Path, nuclei_package: Path, capsys) -> None:
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(CheckpointError, match=r"without rdf\.yaml: not a BioImage\.IO package"):
        load_checkpoint(plain)
    old = tmp_path / "old.zip"
    with zipfile.ZipFile(old, "w") as archive:
        archive.writestr("rdf.yaml", "format_version: 0.4.10\ntype: model\n")
    with pytest.raises(CheckpointError, match=r"model spec 0\.4; napari-usema reads 0\.5\.x"):
        load_checkpoint(old)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("rdf.yaml", "format_version: 0.5.4\ntype: model\n")
    with pytest.raises(CheckpointError, match="not a USEMA one made by usema export"):
        load_checkpoint(other)
    before = nuclei_package.stat().st_mtime_ns
    assert main(["export", "nuclei", "--format", "bioimageio", "--out", str(nuclei_package)]) == 2
    assert "exists" in capsys.readouterr().err and nuclei_package.stat().st_mtime_ns == before
    assert main(["export", str(plain), "--format", "bioimageio", "--out", str(tmp_path / "x.zip")]) == 2
    assert not (tmp_path / "x.zip").exists()
    small = tmp_path / "small.tif"
    import tifffile

    tifffile.imwrite(small, np.asarray(load_colonoscopy())[:100, :100])
    assert main(["export", "polyps", "--format", "bioimageio", "--out", str(tmp_path / "y.zip"), "--sample", str(small)]) == 2
    assert "at least 256x256" in capsys.readouterr().err and not (tmp_path / "y.zip").exists()


@pytest.mark.gui
def test_the_napari_model_box_takes_a_package(dock, nuclei_package: Path) -> None:
    pytest.importorskip("napari")
    _, widget = dock
    widget.segment.use_checkpoint(nuclei_package)
    assert widget.segment.model.value == "nuclei.zip"
    assert widget.segment.loaded.metadata == load_checkpoint(resolve_model("nuclei")).metadata


def test_a_fine_tune_with_free_class_names_exports_and_passes(tmp_path: Path) -> None:
    import torch

    from napari_usema.io.checkpoint import save_checkpoint
    from napari_usema.io.metadata import CheckpointMetadata
    from napari_usema.model import build_model, preset

    torch.manual_seed(0)
    config = preset("tiny", in_channels=3, out_channels=3)
    names = ("background", "small bowel", "1st")  # not identifiers: the package maps them, the names stay
    tuned = save_checkpoint(
        tmp_path / "polyps.ft1.safetensors", build_model(config), CheckpointMetadata(config, "semantic", names)
    )
    out = tmp_path / "tuned.zip"
    assert main(["export", str(tuned), "--format", "bioimageio", "--out", str(out), "--no-onnx"]) == 0
    result = bioimageio_test(out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert load_checkpoint(out).metadata.class_names == names


def test_a_damaged_zip_is_a_clear_error(tmp_path: Path, nuclei_package: Path) -> None:
    data = bytearray(nuclei_package.read_bytes())
    start = data.find(b"rdf.yaml") + 40  # inside the first members' data: their checksums no longer hold
    data[start : start + 64] = b"\0" * 64
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_checkpoint(damaged)


def test_package_documentation_names_no_folder_of_this_machine() -> None:
    from napari_usema.interop.bioimageio_export import _shareable

    assert _shareable("/home/ana/models/nuclei.safetensors") == "nuclei.safetensors"  # a fine-tune's parent
    assert _shareable("C:\\Users\\ana\\nuclei.zip") == "nuclei.zip"
    assert _shareable("../shared/data/microscopy") == "../shared/data/microscopy"  # relative: kept
    assert _shareable(41) == 41
