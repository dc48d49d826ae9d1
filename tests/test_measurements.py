"""Results out: per-object measurements checked against hand-computed values, the CSV (whole, never
over a file without ``overwrite``), empty labels, stacks, class maps, and ``usema predict --measurements``."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_usema.analysis.measurements import measure_classes, measure_objects, write_csv
from napari_usema.cli.main import main
from napari_usema.io.outputs import OutputExistsError

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "napari_usema" / "samples" / "nuclei.tif"
BASE = ["label", "area", "centroid_y", "centroid_x", "bbox_y_min", "bbox_x_min", "bbox_y_max", "bbox_x_max", "eccentricity"]


def tiny() -> tuple[np.ndarray, np.ndarray]:
    """Two objects: a 2x3 rectangle (id 1) and one pixel (id 5); an image of two channels, ``y * 8 + x`` and 10."""
    labels = np.zeros((6, 8), np.uint16)
    labels[1:3, 1:4] = 1
    labels[4, 6] = 5
    yy, xx = np.mgrid[:6, :8]
    image = np.stack([yy * 8 + xx, np.full((6, 8), 10)], axis=-1).astype(np.uint16)
    return labels, image


def read(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def test_measurements_match_hand_computed_values() -> None:
    labels, image = tiny()
    table = measure_objects(labels, image, channel_names=("DAPI", "marker"), pixel_size=(0.5, 0.25))
    assert list(table) == [*BASE, "mean_intensity_DAPI", "mean_intensity_marker", "area_um2", "centroid_y_um", "centroid_x_um"]
    np.testing.assert_array_equal(table["label"], [1, 5])
    np.testing.assert_array_equal(table["area"], [6, 1])
    np.testing.assert_allclose(table["centroid_y"], [1.5, 4.0])
    np.testing.assert_allclose(table["centroid_x"], [2.0, 6.0])
    # skimage's boxes: min inclusive, max exclusive
    for column, expected in zip(BASE[4:8], ([1, 4], [1, 6], [3, 5], [4, 7]), strict=True):
        np.testing.assert_array_equal(table[column], expected)
    # The rectangle's pixel variances are 1/4 (rows) and 2/3 (columns): e = sqrt(1 - (1/4) / (2/3)).
    np.testing.assert_allclose(table["eccentricity"], [math.sqrt(1 - 0.25 / (2 / 3)), 0.0])
    np.testing.assert_allclose(table["mean_intensity_DAPI"], [np.mean([9, 10, 11, 17, 18, 19]), 38.0])
    np.testing.assert_allclose(table["mean_intensity_marker"], [10.0, 10.0])
    np.testing.assert_allclose(table["area_um2"], [6 * 0.125, 0.125])
    np.testing.assert_allclose(table["centroid_y_um"], [0.75, 2.0])
    np.testing.assert_allclose(table["centroid_x_um"], [0.5, 1.5])


def test_columns_without_names_image_or_pixel_size() -> None:
    labels, image = tiny()
    assert list(measure_objects(labels, image)) == [*BASE, "mean_intensity_0", "mean_intensity_1"]
    assert list(measure_objects(labels, image[..., 0])) == [*BASE, "mean_intensity_0"]  # a gray image: one channel
    assert list(measure_objects(labels)) == BASE


def test_empty_labels_give_zero_rows_and_every_column(tmp_path: Path) -> None:
    labels, image = tiny()
    table = measure_objects(np.zeros_like(labels), image, pixel_size=(1, 1))
    assert list(table) == [*BASE, "mean_intensity_0", "mean_intensity_1", "area_um2", "centroid_y_um", "centroid_x_um"]
    assert all(len(column) == 0 for column in table.values())
    assert table["label"].dtype == np.int64 and table["centroid_y"].dtype == np.float64
    header, rows = read(write_csv(table, tmp_path / "empty.csv"))
    assert header == list(table) and rows == []


def test_stack_planes_are_measured_one_by_one_with_their_plane() -> None:
    labels, image = tiny()
    second = np.zeros_like(labels)
    second[0, 0] = 1  # id 1 again: another object in another plane (no stitching)
    stack, images = np.stack([labels, second]), np.stack([image, image])
    table = measure_objects(stack, images, axes="ZYX")
    assert list(table)[:2] == ["z", "label"]
    np.testing.assert_array_equal(table["z"], [0, 0, 1])
    np.testing.assert_array_equal(table["label"], [1, 5, 1])
    np.testing.assert_array_equal(table["area"], [6, 1, 1])
    timed = measure_objects(np.stack([stack, stack]), axes="TZYX")
    np.testing.assert_array_equal(timed["t"], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(timed["z"], [0, 0, 1, 0, 0, 1])


def test_class_maps_get_each_class_area() -> None:
    classes = np.zeros((4, 5), np.uint8)
    classes[:2, :3] = 1  # 6 of 20 pixels
    table = measure_classes(classes, ("background", "polyp"), pixel_size=(2.0, 2.0))
    assert list(table) == ["class_id", "class", "pixels", "area_fraction", "area_um2"]
    assert list(table["class"]) == ["background", "polyp"]
    np.testing.assert_array_equal(table["pixels"], [14, 6])
    np.testing.assert_allclose(table["area_fraction"], [0.7, 0.3])
    np.testing.assert_allclose(table["area_um2"], [56.0, 24.0])
    with pytest.raises(ValueError, match="holds class 1, but there are 1 class names"):
        measure_classes(classes, ("background",))


def test_csv_is_written_whole_and_refused_when_present(tmp_path: Path) -> None:
    labels, image = tiny()
    table = measure_objects(labels, image, channel_names=("DAPI", "marker"))
    path = write_csv(table, tmp_path / "cells.csv")
    header, rows = read(path)
    assert header == list(table)
    assert [int(r[0]) for r in rows] == [1, 5] and float(rows[0][header.index("mean_intensity_DAPI")]) == 14.0
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="exists"):
        write_csv(measure_objects(np.zeros_like(labels)), path)
    assert path.read_bytes() == before
    write_csv(measure_objects(np.zeros_like(labels)), path, overwrite=True)
    assert read(path)[1] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.csv"]  # no temporary left beside it
    with pytest.raises(ValueError, match=r"must end in \.csv"):
        write_csv(table, tmp_path / "cells.txt")


def test_repeated_channel_names_get_their_index() -> None:
    from napari_usema.analysis.measurements import intensity_columns

    assert intensity_columns(3, ("GFP", "DAPI", "GFP")) == ["mean_intensity_GFP_0", "mean_intensity_DAPI", "mean_intensity_GFP_2"]
    assert intensity_columns(2) == ["mean_intensity_0", "mean_intensity_1"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda lab, img: measure_objects(lab.astype(np.float32)), "expected integer ids"),
        (lambda lab, img: measure_objects(lab.astype(np.int32) - 1), "negative ids"),
        (lambda lab, img: measure_objects(np.stack([lab, lab])), "say its axes"),
        (lambda lab, img: measure_objects(lab, axes="ZYX"), "name 3 axes"),
        (lambda lab, img: measure_objects(lab, img[:5]), "does not cover the labels"),
        (lambda lab, img: measure_objects(lab, img, channel_names=("DAPI",)), "1 channel names"),
        (lambda lab, img: measure_objects(lab, pixel_size=(0.5, -1)), "two positive sizes"),
    ],
    ids=["float", "negative", "stack-without-axes", "wrong-axes", "image-shape", "names-count", "pixel-size"],
)
def test_bad_input_is_refused_before_measuring(call, message: str) -> None:
    labels, image = tiny()
    with pytest.raises(ValueError, match=message):
        call(labels, image)


def test_predict_measurements_end_to_end(tmp_path: Path, capsys) -> None:
    crop = tmp_path / "nuclei.tif"  # a corner of the bundled sample: one fast pass on a CPU
    tifffile.imwrite(crop, tifffile.imread(SAMPLE)[:128, :160])
    out = tmp_path / "out"
    run = ["predict", str(crop), "--model", "nuclei", "--out", str(out), "--measurements"]
    assert main(run) == 0
    labels = tifffile.imread(out / "nuclei.tif")
    header, rows = read(out / "nuclei_measurements.csv")
    assert header == [*BASE, "mean_intensity_0"]  # the sample records no pixel size and no channel names
    ids = np.unique(labels[labels > 0])
    assert len(ids) > 10
    np.testing.assert_array_equal([int(r[0]) for r in rows], ids)
    np.testing.assert_array_equal([int(r[1]) for r in rows], np.bincount(labels.ravel())[ids])
    assert "measurements in nuclei_measurements.csv" in capsys.readouterr().err
    # --skip-existing leaves an input whose labels and table both exist
    assert main([*run, "--skip-existing"]) == 0
    assert "skipped 1 input(s)" in capsys.readouterr().err
    # The table is planned with the labels: a run that would replace it is refused before any work.
    (out / "nuclei.tif").unlink()
    before = (out / "nuclei_measurements.csv").read_bytes()
    assert main(run) == 2
    assert "nuclei_measurements.csv exists; pass --overwrite" in capsys.readouterr().err
    assert not (out / "nuclei.tif").exists() and (out / "nuclei_measurements.csv").read_bytes() == before
