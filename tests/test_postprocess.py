"""Watershed instances, the NeurIPS 2022 connected-components mode, and one post-process for memory and disk."""

from __future__ import annotations

import numpy as np
from skimage import measure, morphology

from napari_usema.analysis.metrics import instance_f1
from napari_usema.postprocess.config import WatershedConfig
from napari_usema.postprocess.watershed import fill_holes, instances, instances_from_probabilities, quantise
from napari_usema.training.data import instance_targets


def disks(shape: tuple[int, int], centres: list[tuple[int, int]], radius: int) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = yy**2 + xx**2 <= radius**2
    for i, (cy, cx) in enumerate(centres, start=1):
        y0, x0 = cy - radius, cx - radius
        ys, xs = slice(max(y0, 0), min(cy + radius + 1, shape[0])), slice(max(x0, 0), min(cx + radius + 1, shape[1]))
        local = disk[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
        labels[ys, xs][local] = i
    return labels


def probabilities_from_labels(labels: np.ndarray) -> np.ndarray:
    """Perfect 3-class probabilities for ``labels``, (3, H, W)."""
    target = instance_targets(labels)
    return np.stack([(target == k).astype(np.float32) for k in range(3)])


def test_targets_mark_inner_boundaries() -> None:
    labels = np.zeros((7, 7), int)
    labels[1:6, 1:6] = 1
    target = instance_targets(labels)
    assert target[3, 3] == 1 and target[1, 3] == 2 and target[0, 3] == 0
    assert (target == 1).sum() == 9 and (target == 2).sum() == 16


def test_touching_cells_are_separated() -> None:
    labels = disks((64, 64), [(32, 22), (32, 40)], 10)  # overlapping disks: the second overwrites
    result = instances_from_probabilities(probabilities_from_labels(labels))
    assert result.max() == 2
    assert instance_f1(labels, result).f1 == 1.0
    assert result.dtype == np.uint16


def test_connected_components_mode_reproduces_the_baseline() -> None:
    rng = np.random.default_rng(0)
    interior = rng.random((96, 96)).astype(np.float32)
    interior = np.clip(interior * 0.3 + disks((96, 96), [(20, 20), (60, 70), (80, 15)], 9).astype(bool) * 0.6, 0, 1)
    probs = np.stack([1 - interior, interior, np.zeros_like(interior)])
    ours = instances_from_probabilities(probs, WatershedConfig(mode="connected-components", min_size=16))
    # The NeurIPS 2022 baseline's line, written with skimage directly.
    mask = interior > 0.5
    mask = morphology.remove_small_holes(mask, max_size=63) if _has_max_size() else morphology.remove_small_holes(mask, 64)
    mask = morphology.remove_small_objects(mask, max_size=15) if _has_max_size() else morphology.remove_small_objects(mask, 16)
    baseline = measure.label(mask)
    np.testing.assert_array_equal(ours, baseline)


def _has_max_size() -> bool:
    import inspect

    return "max_size" in inspect.signature(morphology.remove_small_objects).parameters


def test_min_size_drops_small_seeds_and_holes_get_filled() -> None:
    labels = disks((64, 64), [(20, 20), (45, 45)], 8)
    labels[55:57, 5:7] = 3  # a 4-pixel speck
    probs = probabilities_from_labels(labels)
    probs[:, 20, 20] = [1, 0, 0]  # a one-pixel hole in the first cell
    result = instances_from_probabilities(probs, WatershedConfig(min_size=10, fill_holes=True))
    assert result.max() == 2 and result[20, 20] > 0


def test_banded_equals_whole_image_and_straddling_cells_keep_one_label() -> None:
    centres = [(30, 30), (62, 40), (64, 90), (100, 60), (127, 20), (131, 110)]
    labels = disks((170, 140), centres, 11)
    probs = probabilities_from_labels(labels)
    whole = instances_from_probabilities(probs)
    out = np.zeros(labels.shape, np.uint32)
    count = instances(quantise(probs[1]), quantise(probs[1] + probs[2]), out, WatershedConfig(), band=64, halo=32)
    assert count == len(centres) == out.max()
    # Cells centred at rows 62/64 and 127/131 straddle the band borders at 64 and 128.
    for cy, cx in [(62, 40), (64, 90), (127, 20), (131, 110)]:
        ids = np.unique(out[cy - 9 : cy + 10, cx])
        assert len(ids[ids > 0]) == 1, (cy, cx, ids)
    assert instance_f1(whole, out).f1 == 1.0
    assert sorted(np.unique(out))[1:] == list(range(1, count + 1))


def test_banded_connected_components_merges_across_bands() -> None:
    interior = np.zeros((40, 10), np.float32)
    interior[5:35, 3:7] = 1  # one tall object crossing three bands
    out = np.zeros(interior.shape, np.uint32)
    count = instances(quantise(interior), quantise(interior), out, WatershedConfig(mode="connected-components"), band=10)
    assert count == 1 and set(np.unique(out)) == {0, 1}


def test_postprocess_of_a_2048_image_finds_every_cell() -> None:
    # Its speed is measured by `usema bench postprocess`, not here.
    centres = [(y, x) for y in range(20, 2048, 40) for x in range(20, 2048, 40)]
    probs = probabilities_from_labels(disks((2048, 2048), centres, 14))
    labels = instances_from_probabilities(probs)
    assert labels.max() == len(centres)


def test_fill_holes_fills_only_holes_enclosed_by_one_label() -> None:
    labels = np.zeros((12, 20), np.uint16)
    labels[1:6, 1:6] = 1
    labels[3, 3] = 0  # a hole inside cell 1: filled
    labels[1:6, 8:12], labels[1:6, 12:16] = 2, 3
    labels[3, 11:13] = 0  # a gap bordered by cells 2 and 3: kept
    labels[8:12, 0:4] = 4
    labels[11, 1] = 0  # a notch open to the image edge: kept
    filled = labels.copy()
    fill_holes(filled, band=5)  # bands of 5 rows: cell 1's hole sits on the border between two
    assert filled[3, 3] == 1
    assert filled[3, 11] == 0 and filled[3, 12] == 0
    assert filled[11, 1] == 0
    assert (filled[labels > 0] == labels[labels > 0]).all()


def test_wide_slides_flood_in_shorter_bands_and_keep_their_labels() -> None:
    from napari_usema.postprocess.watershed import BAND, band_rows

    assert band_rows(2048) == band_rows(8192) == BAND  # images up to 8,192 px wide: bands as before
    assert band_rows(20000) == 419 and band_rows(10**7) == 128  # wide slides: bounded pixels a band
    rng = np.random.default_rng(0)
    centres = [(int(y), int(x)) for y, x in zip(rng.integers(12, 1188, 300), rng.integers(12, 8988, 300), strict=True)]
    labels = disks((1200, 9000), centres, 9)
    probs = probabilities_from_labels(labels)
    interior, foreground = quantise(probs[1]), quantise(probs[1] + probs[2])
    chosen, fixed = np.zeros(labels.shape, np.uint32), np.zeros(labels.shape, np.uint32)
    assert band_rows(9000) == 932
    instances(interior, foreground, chosen, WatershedConfig())  # 932-row bands
    instances(interior, foreground, fixed, WatershedConfig(), band=BAND)
    np.testing.assert_array_equal(chosen, fixed)  # nuclei fit the halo: the band height changes nothing


def test_band_labels_are_cached_for_every_band_or_for_none(monkeypatch) -> None:
    from napari_usema.postprocess import components

    mask = np.zeros((100, 50), bool)
    mask[10:20, 5:15] = mask[90:98, 30:40] = True
    monkeypatch.setattr(components, "CACHE_PIXELS", mask.size - 1)  # the image is just too large to cache
    banded = components.BandedComponents(lambda r0, r1: mask[r0:r1], 100, 80)  # its short last band alone is not
    np.testing.assert_array_equal(banded.labels(0, 100), measure.label(mask, connectivity=1))
