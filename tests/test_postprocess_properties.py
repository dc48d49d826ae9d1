"""Property tests: the post-process gives one answer, in memory or on disk, at any band height.

References are written here with scipy and scikit-image on the whole image, independently of the
banded code they check.
"""

from __future__ import annotations

import numpy as np
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi
from skimage import measure, segmentation

from napari_usema.postprocess.config import WatershedConfig
from napari_usema.postprocess.watershed import instances

PROPERTY = settings(max_examples=60, deadline=None)


def probability_maps(seed: int, shape: tuple[int, int], sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 (interior, interior + boundary) maps with blobs of every size, many crossing any
    band border: smoothed noise, stretched to [0, 1]."""
    rng = np.random.default_rng(seed)

    def field() -> np.ndarray:
        f = ndi.gaussian_filter(rng.random(shape), sigma)
        return (f - f.min()) / max(np.ptp(f), 1e-9)

    interior = field()
    foreground = np.clip(interior + 0.6 * field() * (1 - interior), 0, 1)
    return np.round(interior * 255).astype(np.uint8), np.round(foreground * 255).astype(np.uint8)


def reference_watershed(interior: np.ndarray, foreground: np.ndarray, config: WatershedConfig) -> np.ndarray:
    """The whole-image watershed: seeds, skimage's flood, then holes enclosed by one label filled."""
    seeds, n = ndi.label(interior > config.interior_threshold * 255)
    sizes = np.bincount(seeds.ravel(), minlength=n + 1)
    keep = sizes >= max(config.min_size, 1)
    keep[0] = False
    seeds = (np.cumsum(keep) * keep)[seeds]
    free = (foreground > config.foreground_threshold * 255) & (seeds == 0)
    # The flood starts from the seed pixels next to floodable ones; where they compete at equal
    # elevation, the first in raster order wins (skimage alone would decide by its heap's layout).
    rims = (seeds > 0) & ndi.binary_dilation(free)
    order = np.arange(seeds.size, dtype=np.float64).reshape(seeds.shape) / seeds.size  # in [0, 1)
    elevation = (255.0 - foreground) + np.where(rims, order, 1 - 1 / (2 * seeds.size))
    labels = segmentation.watershed(elevation, np.where(rims, seeds, 0), mask=free | rims)
    labels = np.where(seeds > 0, seeds, labels)
    if not config.fill_holes:
        return labels
    background, n = ndi.label(labels == 0)
    out = labels.copy()
    h, w = labels.shape
    for region in range(1, n + 1):
        inside = background == region
        ys, xs = np.nonzero(inside)
        if ys.min() == 0 or xs.min() == 0 or ys.max() == h - 1 or xs.max() == w - 1:
            continue  # open to the image edge
        ring = ndi.binary_dilation(inside, np.ones((3, 3), bool)) & ~inside
        around = np.unique(labels[ring])
        around = around[around > 0]
        if len(around) == 1:
            out[inside] = around[0]
    return out


def reference_connected_components(interior: np.ndarray, config: WatershedConfig) -> np.ndarray:
    """The NeurIPS 2022 baseline on the whole image, with skimage's own functions' semantics."""
    mask = interior > config.interior_threshold * 255
    holes, n = ndi.label(~mask)
    small = np.bincount(holes.ravel(), minlength=n + 1) < 64
    small[0] = False
    mask = mask | small[holes]
    objects, n = ndi.label(mask)
    large = np.bincount(objects.ravel(), minlength=n + 1) >= config.min_size
    large[0] = False
    return measure.label(large[objects] if config.min_size > 1 else mask, connectivity=2)


configs = st.builds(
    WatershedConfig,
    interior_threshold=st.sampled_from([0.3, 0.5, 0.7]),
    foreground_threshold=st.sampled_from([0.2, 0.4, 0.6]),
    min_size=st.integers(0, 40),
    fill_holes=st.booleans(),
)
shapes = st.tuples(st.integers(1, 72), st.integers(1, 56))


@PROPERTY
@given(seed=st.integers(0, 2**31), shape=shapes, sigma=st.floats(0.8, 4.0), band=st.integers(1, 80), config=configs)
def test_connected_components_equal_the_baseline_at_any_band_height(seed, shape, sigma, band, config) -> None:
    interior, foreground = probability_maps(seed, shape, sigma)
    config = config.replace(mode="connected-components")
    out = np.zeros(shape, np.uint32)
    count = instances(interior, foreground, out, config, band=band)
    expected = reference_connected_components(interior, config)
    np.testing.assert_array_equal(out, expected)
    assert count == expected.max()


@PROPERTY
@given(seed=st.integers(0, 2**31), shape=shapes, sigma=st.floats(0.8, 4.0), band=st.integers(1, 80), config=configs)
def test_watershed_equals_the_whole_image_flood_when_the_halo_covers_it(seed, shape, sigma, band, config) -> None:
    """Seeds and holes are numbered and filled image-wide from bands; with a halo as tall as the image
    each band's flood sees everything, so the labels must be the whole-image watershed's, exactly."""
    interior, foreground = probability_maps(seed, shape, sigma)
    out = np.zeros(shape, np.uint32)
    count = instances(interior, foreground, out, config, band=band, halo=shape[0])
    expected = reference_watershed(interior, foreground, config)
    np.testing.assert_array_equal(out, expected)
    assert count >= expected.max()  # a seed swallowed by nothing still counts; ids never exceed the count


@PROPERTY
@given(
    seed=st.integers(0, 2**31),
    shape=shapes,
    sigma=st.floats(0.8, 4.0),
    band=st.integers(1, 80),
    halo=st.integers(0, 24),
    config=configs,
    mode=st.sampled_from(["watershed", "connected-components"]),
)
def test_files_on_disk_give_the_labels_of_arrays_in_memory(seed, shape, sigma, band, halo, config, mode) -> None:
    """The slide path (chunked zarr arrays read and written band by band) against numpy arrays."""
    interior, foreground = probability_maps(seed, shape, sigma)
    config = config.replace(mode=mode)
    in_memory = np.zeros(shape, np.uint32)
    instances(interior, foreground, in_memory, config, band=band, halo=halo)
    chunks = (max(1, band // 2 + 1), shape[1])  # chunks that do not line up with the bands
    on_disk = [zarr.array(a, chunks=chunks) for a in (interior, foreground)]
    out = zarr.zeros(shape, chunks=chunks, dtype=np.uint32)
    instances(*on_disk, out, config, band=band, halo=halo)
    np.testing.assert_array_equal(out[:], in_memory)


def test_objects_smaller_than_the_halo_get_the_whole_image_labels_at_any_band() -> None:
    """The regime the halo is for: separate cells shorter than it are labelled as on the whole image."""
    rng = np.random.default_rng(3)
    labels = np.zeros((300, 200), np.int32)
    for i, (cy, cx) in enumerate(rng.integers(15, [285, 185], size=(40, 2)), start=1):
        yy, xx = np.ogrid[:300, :200]
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= rng.integers(5, 12) ** 2] = i
    interior = ndi.gaussian_filter((labels > 0).astype(float), 2)
    interior8 = np.round(interior * 255).astype(np.uint8)
    foreground8 = np.round(np.clip(interior * 1.4, 0, 1) * 255).astype(np.uint8)
    whole = reference_watershed(interior8, foreground8, WatershedConfig())
    for band in (7, 32, 50, 128):
        out = np.zeros(labels.shape, np.uint32)
        instances(interior8, foreground8, out, WatershedConfig(), band=band, halo=40)
        np.testing.assert_array_equal(out, whole)
