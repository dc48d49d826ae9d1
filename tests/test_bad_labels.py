"""Training labels and evaluation files as users have them: each problem gets its own message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_usema.cli.main import main
from napari_usema.io.checkpoint import load_checkpoint
from napari_usema.io.metadata import NormalizationRecipe
from napari_usema.training.data import check_labels, make_sample
from napari_usema.training.finetune import CorrectedPair, finetune
from napari_usema.training.trainer import DivergedError, TrainingConfig

IMAGE = np.random.default_rng(0).random((32, 32)).astype(np.float32)


def square(value: int = 1, dtype: type = np.uint8) -> np.ndarray:
    labels = np.zeros((32, 32), dtype)
    labels[8:20, 8:20] = value
    return labels


@pytest.mark.parametrize(
    ("labels", "task", "message"),
    [
        (square(255), "semantic", "pass --binarize"),
        (square(1, np.float32), "semantic", "the labels are float32"),
        (square(1, np.float32), "instance", "the labels are float32"),
        (square(-1, np.int16), "instance", "negative ids"),
        (np.stack([square(), square()]), "instance", r"labels \(2, 32, 32\) do not match the image \(32, 32\)"),
        (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) % 50, "semantic", "look like instance labels"),
        (square(3), "semantic", r"classes are 0\.\.1: give class ids only"),
        (np.dstack([square(1), square(2), square(1)]), "instance", "a colour image with different channels"),
    ],
    ids=["0-255", "float-semantic", "float-instance", "negative", "stack", "instance-for-semantic", "class-3", "rgb"],
)
def test_bad_training_labels_get_their_own_message(labels: np.ndarray, task: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_sample("img", IMAGE, labels, task=task, in_channels=1, recipe=NormalizationRecipe(), classes=2)


def test_binarize_reads_0_255_masks_as_class_one() -> None:
    labels = check_labels("img", square(255), (32, 32), "semantic", classes=2, binarize=True)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {0, 1}
    # Identical colour channels are one mask, and a bool mask is 0/1.
    assert check_labels("img", np.dstack([square(1)] * 3), (32, 32), "semantic", classes=2).shape == (32, 32)
    assert check_labels("img", square(1) > 0, (32, 32), "semantic", classes=2).dtype == np.uint8


def test_a_fine_tune_whose_loss_is_not_finite_stops_and_writes_nothing(tiny_instance_checkpoint: Path, tmp_path: Path) -> None:
    parent = load_checkpoint(tiny_instance_checkpoint)
    before = {k: v.clone() for k, v in parent.model.state_dict().items()}
    out = tmp_path / "ft.safetensors"
    # A learning rate this large sends the weights, and then the loss, to infinity within a few steps.
    config = TrainingConfig(steps=30, patch=32, batch=1, lr=1e30, warmup_steps=0, val_every=0, save_state=False, augment=None)
    with pytest.raises(DivergedError, match="the loss became"):
        list(finetune(parent, [CorrectedPair(IMAGE, square(1, np.uint16))], out, config))
    assert not out.exists()
    assert all(torch.equal(before[k], v) for k, v in parent.model.state_dict().items())  # the parent is untouched


def test_nan_pixels_in_training_images_do_not_reach_the_loss() -> None:
    image = IMAGE.copy()
    image[3:6, 3:6] = np.nan
    sample = make_sample("img", image, square(1, np.uint16), task="instance", in_channels=1, recipe=NormalizationRecipe())
    assert np.isfinite(sample.image).all()


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir(), truth.mkdir()
    return pred, truth


def evaluate(pred: Path, truth: Path, *extra: str) -> int:
    return main(["evaluate", "--pred", str(pred), "--truth", str(truth), *extra])


def test_two_truth_files_of_one_name_are_refused(folders, capsys) -> None:
    pred, truth = folders
    tifffile.imwrite(pred / "a.tif", square(1, np.uint16))
    tifffile.imwrite(truth / "a.tif", square(1, np.uint16))
    import imageio.v3 as iio

    iio.imwrite(truth / "a.png", square(1))
    assert evaluate(pred, truth) == 2
    assert "two truth files share the name 'a': a.png and a.tif" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("pred_labels", "message"),
    [(square(1, np.float32), "prediction a.tif: the labels are float32"), (square(-2, np.int16), "negative ids")],
    ids=["float", "negative"],
)
def test_unusable_predictions_are_refused(folders, capsys, pred_labels: np.ndarray, message: str) -> None:
    pred, truth = folders
    tifffile.imwrite(pred / "a.tif", pred_labels)
    tifffile.imwrite(truth / "a.tif", square(1, np.uint16))
    assert evaluate(pred, truth) == 2
    assert message in capsys.readouterr().err


def test_names_that_match_nothing_say_so(folders, tmp_path: Path, capsys) -> None:
    pred, truth = folders
    tifffile.imwrite(pred / "a.tif", square(1, np.uint16))
    tifffile.imwrite(truth / "a.tif", square(1, np.uint16))
    names = tmp_path / "names.txt"
    names.write_text("b\nc\n")
    assert evaluate(pred, truth, "--names", str(names)) == 2
    assert "none of the 2 listed names is in" in capsys.readouterr().err
    names.write_text("# only a comment\n")
    assert evaluate(pred, truth, "--names", str(names)) == 2
    assert "lists no names" in capsys.readouterr().err
    assert evaluate(pred, truth, "--names", str(tmp_path / "absent.txt")) == 2
    assert "--names" in capsys.readouterr().err


def test_uint8_instance_labels_are_scored_as_instances_and_the_choice_is_said(folders, tmp_path: Path, capsys) -> None:
    pred, truth = folders
    labels = np.zeros((40, 40), np.uint8)
    for i in range(20):  # 20 small cells: more ids than a class map has
        labels[(i // 5) * 10 : (i // 5) * 10 + 6, (i % 5) * 8 : (i % 5) * 8 + 6] = i + 1
    tifffile.imwrite(pred / "a.tif", labels)
    tifffile.imwrite(truth / "a.tif", labels.astype(np.uint16))
    assert evaluate(pred, truth, "--json", str(tmp_path / "r.json")) == 0
    assert "scoring as instance" in capsys.readouterr().err
    assert json.loads((tmp_path / "r.json").read_text())["mean"]["f1"] == 1.0


def test_truth_stored_as_0_255_is_read_as_class_one(folders, tmp_path: Path, capsys) -> None:
    pred, truth = folders
    tifffile.imwrite(pred / "a.tif", square(1))
    tifffile.imwrite(truth / "a.tif", square(255))
    assert evaluate(pred, truth, "--task", "semantic", "--json", str(tmp_path / "r.json")) == 0
    assert "reading 255 as class 1" in capsys.readouterr().err
    assert json.loads((tmp_path / "r.json").read_text())["mean"]["dsc"]["mean"] == 1.0


def test_the_json_report_is_checked_before_scoring(folders, tmp_path: Path, capsys) -> None:
    pred, truth = folders
    tifffile.imwrite(pred / "a.tif", square(1, np.uint16))
    tifffile.imwrite(truth / "a.tif", square(1, np.uint16))
    assert evaluate(pred, truth, "--json", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and "mean" not in err
    kept = tmp_path / "kept.json"
    kept.write_text("KEEP")
    assert evaluate(pred, truth, "--json", str(kept)) == 2  # an existing report is not replaced unasked
    assert "pass --overwrite" in capsys.readouterr().err and kept.read_text() == "KEEP"
    assert evaluate(pred, truth, "--json", str(kept), "--overwrite") == 0
    assert json.loads(kept.read_text())["mean"]["f1"] == 1.0


def test_the_same_folder_as_prediction_and_truth_is_refused(folders, capsys) -> None:
    _, truth = folders
    tifffile.imwrite(truth / "a.tif", square(1, np.uint16))
    assert evaluate(truth, truth) == 2
    assert "are the same folder" in capsys.readouterr().err
