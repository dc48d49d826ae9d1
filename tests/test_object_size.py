"""Object size: diameters measured, stored in checkpoints, and used to resize images to the model's size."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_usema.analysis.metrics import instance_f1
from napari_usema.cli.main import main
from napari_usema.inference.object_size import check_diameter, factor_for_estimate, size_factor
from napari_usema.inference.pipeline import drive, estimate_diameter, segment
from napari_usema.inference.tiling import TilingConfig
from napari_usema.postprocess.measure import median_diameter

TILING = TilingConfig(tile=64, batch=2, device="cpu")


def disks(diameter: float, shape: tuple[int, int] = (160, 160), spacing: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An image of bright disks of ``diameter`` on black, and their instance labels."""
    spacing = spacing or int(diameter * 2)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.uint16)
    k = 0
    for cy in range(spacing // 2, shape[0] - spacing // 2, spacing):
        for cx in range(spacing // 2, shape[1] - spacing // 2, spacing):
            k += 1
            labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= (diameter / 2) ** 2] = k
    return (labels > 0).astype(np.float32), labels


def test_median_diameter_is_the_disk_of_the_median_area() -> None:
    _, labels = disks(20)
    assert median_diameter([labels]) == pytest.approx(20, rel=0.05)
    classes = (labels > 0).astype(np.uint8)  # a class map: its connected regions are the objects
    assert median_diameter([classes], semantic=True) == pytest.approx(20, rel=0.05)
    assert median_diameter([np.zeros((5, 5), np.uint16)]) is None
    square = np.zeros((10, 10), np.uint16)
    square[:4, :4] = 1
    assert median_diameter([square]) == pytest.approx(2 * math.sqrt(16 / math.pi))


def test_size_factor_and_its_checks(intensity_model) -> None:
    meta = dataclasses.replace(intensity_model.metadata, object_diameter=20.0)
    assert size_factor(meta, 10) == 2 and size_factor(meta, None) == 1
    assert factor_for_estimate(meta, 19) == 1.0 and factor_for_estimate(meta, 40) == 0.5 and factor_for_estimate(meta, None) == 1
    for bad in (0, -5, float("nan"), "big", True):
        with pytest.raises(ValueError, match="diameter must be a number of pixels > 0 or 'auto'"):
            check_diameter(bad)
    with pytest.raises(ValueError, match="does not record the diameter"):
        size_factor(intensity_model.metadata, 10)  # a model from before format 3


def test_a_diameter_resizes_to_the_models_size_and_answers_at_the_images(intensity_model) -> None:
    model = dataclasses.replace(intensity_model, metadata=dataclasses.replace(intensity_model.metadata, object_diameter=20.0))
    image, labels = disks(10)
    result = drive(segment(model, image, TILING, diameter=10, keep_probabilities=True))
    assert result.labels.shape == image.shape and result.probabilities.shape[1:] == image.shape
    assert instance_f1(labels, result.labels).f1 == 1.0
    estimate = drive(estimate_diameter(model, image, TILING))
    assert estimate == pytest.approx(10, rel=0.15)
    auto = drive(segment(model, image, TILING, diameter="auto"))
    assert any("objects measure about" in n and "image resized by" in n for n in auto.notes), auto.notes
    assert instance_f1(labels, auto.labels).f1 == 1.0
    near = drive(segment(model, disks(20)[0], TILING, diameter="auto"))
    assert any("no resizing needed" in n for n in near.notes)
    np.testing.assert_array_equal(near.labels, drive(segment(model, disks(20)[0], TILING)).labels)


def test_diameters_that_would_resize_too_far_are_refused_before_any_work(intensity_model) -> None:
    model = dataclasses.replace(intensity_model, metadata=dataclasses.replace(intensity_model.metadata, object_diameter=20.0))
    image, _ = disks(10)
    with pytest.raises(ValueError, match="at most 4"):
        drive(segment(model, image, TILING, diameter=2))
    with pytest.raises(ValueError, match="at least 1/16"):
        drive(segment(model, image, TILING, diameter=1000))


def test_predict_diameter_option(tmp_path: Path, capsys) -> None:
    image, _ = disks(9, (96, 96))
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, (image * 200).astype(np.uint8))
    assert main(["predict", str(path), "--model", "nuclei", "--out", str(tmp_path / "o"), "--diameter", "auto"]) == 0
    assert "diameter auto: objects measure about" in capsys.readouterr().err
    assert tifffile.imread(tmp_path / "o" / "cells.tif").shape == (96, 96)
    with pytest.raises(SystemExit):
        main(["predict", str(path), "--model", "nuclei", "--out", str(tmp_path / "p"), "--diameter", "-3"])
    assert main(["predict", str(path), "--model", "nuclei", "--out", str(tmp_path / "q"), "--diameter", "0.5"]) == 2
    assert "at most 4" in capsys.readouterr().err


def test_bundled_models_record_their_training_diameter() -> None:
    from napari_usema.io.bundled import resolve_model
    from napari_usema.io.checkpoint import read_metadata

    nuclei, polyps = read_metadata(resolve_model("nuclei")), read_metadata(resolve_model("polyps"))
    assert nuclei.object_diameter == pytest.approx(18.23) and polyps.object_diameter == pytest.approx(188.1)
    assert "nuclei_train.txt" in nuclei.provenance["object_diameter_measured_on"]


def test_training_and_fine_tuning_record_the_diameter_of_their_masks(tiny_instance_checkpoint: Path, tmp_path: Path) -> None:
    from napari_usema.io.checkpoint import load_checkpoint, read_metadata
    from napari_usema.training.finetune import CorrectedPair, finetune
    from napari_usema.training.trainer import TrainingConfig

    image, labels = disks(30, (128, 128), spacing=60)  # cells larger than the parent ever saw
    out = tmp_path / "big.safetensors"
    config = TrainingConfig(steps=1, patch=64, batch=1, val_every=0, save_state=False, augment=None)
    list(finetune(load_checkpoint(tiny_instance_checkpoint), [CorrectedPair(image, labels)], out, config))
    assert read_metadata(out).object_diameter == pytest.approx(30, rel=0.05)
    data = tmp_path / "data"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
    tifffile.imwrite(data / "images" / "a.tif", (image * 200).astype(np.uint8))
    tifffile.imwrite(data / "masks" / "a.tif", labels)
    ckpt = tmp_path / "trained.safetensors"
    argv = ["train", "--data", str(data), "--task", "instance", "--preset", "tiny", "--in-channels", "1"]
    assert main([*argv, "--out", str(ckpt), "--steps", "1", "--patch", "32", "--batch", "1", "--input-scale", "0.5"]) == 0
    assert read_metadata(ckpt).object_diameter == pytest.approx(30, rel=0.1)  # in the images' own pixels
