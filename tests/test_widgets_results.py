"""Results out in napari: the labels layer's features after a run, Save measurements…, and the
Post-process tab's status once a run has ended."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_usema._sample_data import load_nuclei

pytestmark = pytest.mark.gui


@pytest.fixture
def segmented(dock, qtbot, intensity_model):
    """The nuclei sample segmented (by a threshold in the network's place), and measured."""
    viewer, widget = dock
    widget.segment.use_model(intensity_model)
    assert widget.segment.run() is not None
    qtbot.waitUntil(lambda: widget.segment.worker is None and widget.segment.state is not None, timeout=120_000)
    layer = widget.segment.state.labels
    qtbot.waitUntil(lambda: "label" in layer.features, timeout=60_000)
    return viewer, widget, layer


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_labels_layer_gets_the_measurements_as_features(segmented) -> None:
    viewer, widget, layer = segmented
    labels, image = np.asarray(layer.data), np.asarray(viewer.layers["nuclei"].data)
    ids = np.unique(labels[labels > 0])
    features = layer.features
    np.testing.assert_array_equal(features["index"], ids)  # napari's id -> row map
    np.testing.assert_array_equal(features["label"], ids)
    np.testing.assert_array_equal(features["area"], np.bincount(labels.ravel())[ids])
    first = ids[0]
    assert features["mean_intensity_0"].iloc[0] == pytest.approx(image[labels == first].mean())
    assert features["centroid_y"].iloc[0] == pytest.approx(np.nonzero(labels == first)[0].mean())
    assert f"{len(ids)} objects measured" in widget.postprocess.results.value
    assert widget.postprocess.save_button.enabled


def test_post_process_status_follows_a_finished_run(segmented) -> None:
    from napari_usema._widgets.postprocess import PostprocessSection

    _, widget, _ = segmented
    assert "Segment an image first" not in widget.postprocess.status.value
    assert "Move a slider" in widget.postprocess.status.value
    assert widget.postprocess.interior.enabled
    # A section made after the run reads it from the Segment section, not from a signal it missed.
    late = PostprocessSection(widget.segment)
    assert "Move a slider" in late.status.value and late.save_button.enabled


def test_save_measurements_writes_the_csv_and_never_replaces_unasked(segmented, tmp_path: Path, monkeypatch) -> None:
    import napari_usema._widgets.postprocess as post

    _, widget, layer = segmented
    section = widget.postprocess
    errors: list[str] = []
    monkeypatch.setattr(post, "show_error", errors.append)
    path = tmp_path / "cells_measurements.csv"
    answer = (path, False)  # what the file dialog returns: the path, and whether the user agreed to replace it
    monkeypatch.setattr(post, "ask_csv_path", lambda parent, suggested: answer)
    section.save_button.changed.emit(True)  # a click
    rows = rows_of(path)
    np.testing.assert_array_equal([int(r["label"]) for r in rows], layer.features["label"])
    np.testing.assert_allclose([float(r["eccentricity"]) for r in rows], layer.features["eccentricity"])
    assert "Saved" in section.results.value
    # Again, without agreeing to replace it: refused, the file untouched.
    before = path.read_bytes()
    section.save_button.changed.emit(True)
    assert path.read_bytes() == before
    assert errors and "exists" in errors[-1]
    answer = (path, True)
    section.save_button.changed.emit(True)
    assert rows_of(path) == rows


def test_saving_edited_labels_measures_them_again(segmented, qtbot, tmp_path: Path) -> None:
    _, widget, layer = segmented
    gone = int(layer.features["label"].iloc[0])
    data = np.asarray(layer.data).copy()
    data[data == gone] = 0  # the user erased an object
    layer.data = data
    path = tmp_path / "edited.csv"
    assert widget.postprocess.save_measurements(path)
    qtbot.waitUntil(path.exists, timeout=60_000)  # measured on a worker first
    labels = [int(r["label"]) for r in rows_of(path)]
    assert gone not in labels and labels == sorted(np.unique(data[data > 0]))
    assert gone not in set(layer.features["label"])  # the features follow the edit too


def test_the_dialog_adds_csv_and_asks_before_replacing(qtbot, tmp_path: Path, monkeypatch) -> None:
    from qtpy.QtWidgets import QFileDialog, QMessageBox, QWidget

    import napari_usema._widgets.postprocess as post

    parent = QWidget()
    qtbot.addWidget(parent)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(tmp_path / "cells"), "")))
    assert post.ask_csv_path(parent, tmp_path / "x.csv") == (tmp_path / "cells.csv", False)
    (tmp_path / "cells.csv").write_text("precious")
    asked = []
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: asked.append(a) or QMessageBox.StandardButton.No))
    assert post.ask_csv_path(parent, tmp_path / "x.csv") == (None, False)
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))
    assert post.ask_csv_path(parent, tmp_path / "x.csv") == (tmp_path / "cells.csv", True)
    assert len(asked) == 1
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: ("", "")))
    assert post.ask_csv_path(parent, tmp_path / "x.csv") == (None, False)


def test_class_maps_get_each_class_area_as_features(make_napari_viewer, qtbot, tiny_semantic_checkpoint: Path) -> None:
    from napari_usema._widgets.main import UsemaWidget

    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8), name="frame", rgb=True)
    widget = UsemaWidget(viewer)
    viewer.window.add_dock_widget(widget, name="USEMA")
    widget.reset_choices()
    widget.segment.use_checkpoint(tiny_semantic_checkpoint)
    widget.segment.tile.value = 64
    widget.segment.run()
    qtbot.waitUntil(lambda: widget.segment.state is not None, timeout=120_000)
    layer = widget.segment.state.labels
    qtbot.waitUntil(lambda: "pixels" in layer.features, timeout=60_000)
    assert list(layer.features["class"]) == ["background", "polyp"]
    counts = np.bincount(np.asarray(layer.data).ravel(), minlength=2)
    np.testing.assert_array_equal(layer.features["pixels"], counts)
    assert layer.features["area_fraction"].sum() == pytest.approx(1.0)
    assert "Semantic models have no watershed" in widget.postprocess.status.value


def test_a_stack_is_measured_per_plane_and_saved_with_its_plane(dock, qtbot, intensity_model, tmp_path: Path) -> None:
    viewer, widget = dock
    crop = load_nuclei()[:96, :128]
    viewer.layers["nuclei"].data = np.stack([crop, crop[::-1]])  # read as two planes (ZYX)
    widget.segment.use_model(intensity_model)
    widget.segment.tile.value = 64
    widget.segment.run()
    qtbot.waitUntil(lambda: widget.segment.worker is None and widget.segment.state is not None, timeout=120_000)
    section = widget.postprocess
    qtbot.waitUntil(lambda: "measured" in section.results.value, timeout=60_000)
    assert "per plane" in section.results.value  # ids repeat over the planes: no napari features
    path = tmp_path / "stack.csv"
    assert section.save_measurements(path)
    rows = rows_of(path)
    labels = np.asarray(widget.segment.state.labels.data)
    for z in (0, 1):
        ids = [int(r["label"]) for r in rows if r["z"] == str(z)]
        assert ids == sorted(np.unique(labels[z][labels[z] > 0]))


@pytest.mark.filterwarnings("ignore:No data written")  # napari's word for the refused plain layer
def test_saving_a_usema_layer_writes_its_provenance_beside_it(dock, qtbot, intensity_model, tmp_path: Path) -> None:
    import json

    import tifffile
    from napari.plugins.io import save_layers

    viewer, widget = dock
    viewer.layers["nuclei"].metadata["pixel_size_um"] = (0.5, 0.25)  # as the reader records a file's
    widget.segment.use_model(intensity_model)
    widget.segment.run()
    qtbot.waitUntil(lambda: widget.segment.worker is None, timeout=120_000)
    layer = viewer.layers["nuclei labels"]
    widget.postprocess.min_size.value = 33  # a re-tune: the record must name it
    qtbot.waitUntil(lambda: "re-computed" in widget.postprocess.status.value, timeout=60_000)
    written = save_layers(str(tmp_path / "cells.usema.tif"), [layer])
    assert sorted(Path(p).name for p in written) == ["cells.usema.json", "cells.usema.tif"]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "cells.usema.tif"), layer.data)
    with tifffile.TiffFile(tmp_path / "cells.usema.tif") as tif:  # the pixel size, in pixels per cm
        x_resolution, y_resolution = (tif.pages[0].tags[t].value for t in ("XResolution", "YResolution"))
    assert x_resolution[0] / x_resolution[1] == pytest.approx(1e4 / 0.25)
    assert y_resolution[0] / y_resolution[1] == pytest.approx(1e4 / 0.5)
    record = json.loads((tmp_path / "cells.usema.json").read_text())
    assert record["options"]["watershed"]["min_size"] == 33 and record["options"]["tiling"]["tile"] == widget.segment.tile.value
    assert record["model"]["task"] == "instance" and record["input"]["shape"] == list(layer.data.shape)
    assert record["edited_after_run"] is False and record["seconds"] >= 0
    plain = viewer.add_labels(np.zeros((8, 8), np.uint8), name="mine")
    try:  # napari reports the writer's refusal (its version decides how): nothing is written either way
        assert not save_layers(str(tmp_path / "mine.usema.tif"), [plain])
    except ValueError as err:
        assert "was not made by USEMA's Segment" in str(err)
    assert not (tmp_path / "mine.usema.tif").exists() and not (tmp_path / "mine.usema.json").exists()
