"""The one-click corrections on a real nuclei image and the bundled model's own probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_usema.inference.pipeline import drive, segment
from napari_usema.io.bundled import resolve_model
from napari_usema.io.checkpoint import load_checkpoint
from napari_usema.io.images import find_pairs, read_image
from napari_usema.postprocess.corrections import add_object, changed_region, merge_objects, remove_object, split_object


@pytest.fixture(scope="module")
def scene(shared_data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A real 256x256 fluorescence image's model labels, model probabilities and true labels."""
    image, mask = find_pairs(shared_data / "microscopy")["dsb2018s1test_4be73d68f4338691"]
    result = drive(segment(load_checkpoint(resolve_model("nuclei")), read_image(image), keep_probabilities=True))
    return np.asarray(result.labels), result.probabilities, read_image(mask)


def deepest(mask: np.ndarray) -> tuple[int, int]:
    d = ndi.distance_transform_edt(mask)
    return tuple(int(v) for v in np.unravel_index(np.argmax(d), mask.shape))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def unchanged(function, labels: np.ndarray, *args):
    """Call ``function(labels, *args)`` and check it left ``labels`` as it was."""
    copy = labels.copy()
    out = function(labels, *args)
    np.testing.assert_array_equal(labels, copy)
    assert out is not labels
    return out


def test_remove_takes_out_one_object_and_nothing_else(scene) -> None:
    labels, _, _ = scene
    target = 7
    out = unchanged(remove_object, labels, deepest(labels == target))
    assert not (out == target).any()
    np.testing.assert_array_equal(out[labels != target], labels[labels != target])
    with pytest.raises(ValueError, match="is background: there is no object to remove"):
        remove_object(labels, (0, 0) if labels[0, 0] == 0 else deepest(labels == 0))


def test_add_grows_a_removed_nucleus_back_from_one_click(scene) -> None:
    labels, probabilities, _ = scene
    good = []
    for target in range(1, 21):
        nucleus = labels == target
        without = remove_object(labels, deepest(nucleus))
        out = unchanged(add_object, without, probabilities, deepest(nucleus))
        new_id = int(without.max()) + 1
        assert set(np.unique(out)) == set(np.unique(without)) | {new_id}  # one new id, no collision
        np.testing.assert_array_equal(out[without > 0], without[without > 0])  # other objects untouched
        good.append(iou(out == new_id, nucleus))
    assert np.median(good) >= 0.8 and min(good) >= 0.5


def test_add_is_refused_on_an_object_or_outside_and_falls_back_on_a_disk(scene) -> None:
    labels, probabilities, _ = scene
    with pytest.raises(ValueError, match="is on object 3: click on background"):
        add_object(labels, probabilities, deepest(labels == 3))
    with pytest.raises(ValueError, match=r"\(300, 10\) is outside the 256x256 image"):
        add_object(labels, probabilities, (300, 10))
    with pytest.raises(ValueError, match=r"probabilities of shape \(3, 10, 10\) do not fit"):
        add_object(labels, probabilities[:, :10, :10], (5, 5))
    empty = np.zeros((64, 64), np.uint16)
    nothing = np.zeros((3, 64, 64), np.float32)
    nothing[0] = 1  # the model saw only background: a disk of the model's diameter
    disk = add_object(empty, nothing, (32, 32), diameter=18.0)
    assert disk.max() == 1 and abs(2 * np.sqrt(disk.sum() / np.pi) - 18) < 2
    assert add_object(empty, None, (32, 32), diameter=10.0).sum() == pytest.approx(np.pi * 25, rel=0.2)


def test_split_separates_two_merged_nuclei_with_one_seed_each(scene) -> None:
    _, probabilities, truth = scene
    # Two true nuclei that touch (share a border pixel), merged into one object.
    grown = ndi.grey_dilation(truth, size=3)
    pairs = {(int(a), int(b)) for a, b in zip(truth.ravel(), grown.ravel(), strict=True) if a and b and a != b}
    a, b = sorted(pairs)[0]
    merged = np.where(truth == b, a, truth).astype(np.uint16)
    out = unchanged(split_object, merged, probabilities, [deepest(truth == a), deepest(truth == b)])
    new_id = int(merged.max()) + 1
    assert iou(out == a, truth == a) >= 0.7 and iou(out == new_id, truth == b) >= 0.7
    without_distances = split_object(merged, None, [deepest(truth == a), deepest(truth == b)])
    assert len(np.unique(without_distances[merged == a])) == 2
    with pytest.raises(ValueError, match="at least 2 different seeds"):
        split_object(merged, probabilities, [deepest(truth == a)] * 2)
    with pytest.raises(ValueError, match="different objects"):
        split_object(merged, probabilities, [deepest(truth == a), deepest(truth == _other(truth, a, b))])
    with pytest.raises(ValueError, match="is on background: put every seed inside"):
        split_object(merged, probabilities, [deepest(truth == a), deepest(truth == 0)])


def test_split_shares_a_plateau_of_certain_interior_between_its_seeds() -> None:
    """A merge the model is sure of throughout (interior 1.0) with one seed on a dip (0.9): a plain flood
    hands the plateau to the other seed and leaves this one a few pixels; the split gives each a half."""
    yy, xx = np.mgrid[:40, :80]
    merged = (((yy - 20) ** 2 + (xx - 25) ** 2 <= 15**2) | ((yy - 20) ** 2 + (xx - 55) ** 2 <= 15**2)).astype(np.uint8)
    probabilities = np.zeros((3, 40, 80), np.float32)
    probabilities[1][merged > 0] = 1.0
    probabilities[1][18:23, 53:58] = 0.9  # the second seed sits in a fainter patch
    out = split_object(merged, probabilities, [(20, 25), (20, 55)])
    left, right = (out == 1).sum(), (out == 2).sum()
    assert 0.8 <= left / right <= 1.25
    assert (out[:, 60:][merged[:, 60:] > 0] == 2).all()


def test_merge_makes_one_object_and_closes_the_line_between(scene) -> None:
    labels, _, _ = scene
    grown = ndi.grey_dilation(labels, size=5)
    a, b = sorted({(int(x), int(y)) for x, y in zip(labels.ravel(), grown.ravel(), strict=True) if x and y and x != y})[0]
    out = unchanged(merge_objects, labels, [deepest(labels == a), deepest(labels == b)])
    assert not (out == b).any() and (out == a).sum() >= ((labels == a) | (labels == b)).sum()
    assert ndi.label(out == a)[1] == 1  # one connected object
    np.testing.assert_array_equal(out[(labels > 0) & ~np.isin(labels, [a, b])], labels[(labels > 0) & ~np.isin(labels, [a, b])])
    with pytest.raises(ValueError, match="at least 2 different objects"):
        merge_objects(labels, [deepest(labels == a)] * 2)
    with pytest.raises(ValueError, match="is background"):
        merge_objects(labels, [deepest(labels == a), deepest(labels == 0)])


def test_new_ids_never_collide_and_widen_the_dtype() -> None:
    labels = np.zeros((40, 40), np.uint8)
    labels[5:10, 5:10] = 255
    out = add_object(labels, None, (30, 30), diameter=8)
    assert out.dtype == np.uint32 and set(np.unique(out)) == {0, 255, 256}


def test_changed_region_is_the_edited_objects_and_a_margin(scene) -> None:
    labels, _, _ = scene
    out = remove_object(labels, deepest(labels == 4))
    region = changed_region(labels, out, margin=5)
    assert region[labels == 4].all() and not region[labels == 9].all()
    assert region.sum() > (labels == 4).sum()


def _other(truth: np.ndarray, a: int, b: int) -> int:
    return next(int(t) for t in np.unique(truth) if t not in (0, a, b))


def test_a_second_look_replaces_only_the_window_around_the_click(shared_data: Path, tiny_semantic_checkpoint: Path) -> None:
    from napari_usema.inference.local import HALF, with_second_look

    image = read_image(find_pairs(shared_data / "microscopy")["dsb2018s1test_4be73d68f4338691"][0])
    loaded = load_checkpoint(resolve_model("nuclei"))
    probabilities = drive(segment(loaded, image, keep_probabilities=True)).probabilities
    before = probabilities.copy()
    looked = with_second_look(loaded, image, probabilities, (100, 120))
    np.testing.assert_array_equal(probabilities, before)  # the run's probabilities are not changed
    window = np.zeros(image.shape[:2], bool)
    window[100 - HALF : 100 + HALF, 120 - HALF : 120 + HALF] = True
    np.testing.assert_array_equal(looked[:, ~window], before[:, ~window])
    assert not np.allclose(looked[:, window], before[:, window])  # re-normalised and enlarged: a new look
    np.testing.assert_allclose(looked.sum(0), 1, atol=1e-4)
    with pytest.raises(ValueError, match="outside"):
        with_second_look(loaded, image, probabilities, (400, 10))
    with pytest.raises(ValueError, match="for instance models"):
        with_second_look(load_checkpoint(tiny_semantic_checkpoint), image, probabilities, (100, 120))
