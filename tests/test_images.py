"""Reading TIFFs lazily: memory-mapped, decoded on the first read (small compressed files), or through zarr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_usema.io import images
from napari_usema.io.image_info import open_image
from napari_usema.io.images import DecodedOnRead, read_image


def _compressed(path: Path, seed: int, shape: tuple[int, ...] = (60, 70)) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)
    tifffile.imwrite(path, pixels, compression="zlib")
    return pixels


def test_a_small_compressed_tiff_is_decoded_at_the_first_read_and_read_only(tmp_path: Path) -> None:
    pixels = _compressed(tmp_path / "a.tif", 0)
    image = read_image(tmp_path / "a.tif", lazy=True)
    assert isinstance(image, DecodedOnRead)
    assert (image.shape, image.dtype, image.ndim, image.size, len(image)) == ((60, 70), np.uint8, 2, 4200, 60)
    np.testing.assert_array_equal(image[5:9, ::3], pixels[5:9, ::3])
    view = np.asarray(image)
    with pytest.raises(ValueError, match="read-only"):
        view[0, 0] = 1  # the decoded pixels are shared by every read: no read may change them
    copy = np.array(image)
    copy[0, 0] = 1
    assert not np.shares_memory(copy, view) and image[0, 0] == pixels[0, 0]
    assert np.asarray(image, np.float32).dtype == np.float32


def test_only_the_two_last_files_read_stay_decoded(tmp_path: Path) -> None:
    pixels = [_compressed(tmp_path / f"{i}.tif", i) for i in range(3)]
    lazy = [read_image(tmp_path / f"{i}.tif", lazy=True) for i in range(3)]
    images._decoded.cache_clear()
    for _ in range(3):  # an image and its mask read in turn: each decoded once
        for i in (0, 1):
            np.testing.assert_array_equal(lazy[i][::2], pixels[i][::2])
    assert images._decoded.cache_info().misses == 2
    np.testing.assert_array_equal(lazy[2][:], pixels[2])  # a third file pushes the first out ...
    np.testing.assert_array_equal(lazy[0][:], pixels[0])  # ... and it is decoded again
    info = images._decoded.cache_info()
    assert (info.misses, info.currsize) == (4, 2)


def test_a_file_changed_or_corrupt_after_opening_is_a_clear_error(tmp_path: Path) -> None:
    _compressed(tmp_path / "a.tif", 0)
    image = read_image(tmp_path / "a.tif", lazy=True)
    _compressed(tmp_path / "a.tif", 1, shape=(30, 20))  # replaced by an image of another shape
    with pytest.raises(images.ImageReadError, match="changed while it was open"):
        image[0]
    raw = bytearray((tmp_path / "a.tif").read_bytes())
    raw[-200:] = bytes(200)  # the compressed stream (written last) broken
    (tmp_path / "a.tif").write_bytes(bytes(raw))
    broken = read_image(tmp_path / "a.tif", lazy=True)
    with pytest.raises(images.ImageReadError, match="could not be decoded"):
        broken[0]


def test_large_or_uncompressed_tiffs_keep_their_lazy_readers(tmp_path: Path, monkeypatch) -> None:
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((30, 40), np.uint16))
    assert isinstance(read_image(tmp_path / "plain.tif", lazy=True), np.memmap)
    pixels = _compressed(tmp_path / "big.tif", 3)
    monkeypatch.setattr(images, "DECODE_WHOLE_BYTES", pixels.nbytes - 1)  # a "large" file: zarr, tile by tile
    lazy = read_image(tmp_path / "big.tif", lazy=True)
    assert type(lazy).__module__.startswith("zarr")
    np.testing.assert_array_equal(lazy[:], pixels)


def test_a_colour_tiff_decoded_on_read_opens_with_its_axes(tmp_path: Path) -> None:
    rgb = np.random.default_rng(4).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb", compression="zlib")
    image, info = open_image(tmp_path / "rgb.tif")
    assert isinstance(image, DecodedOnRead) and image.shape == (40, 50, 3) and info.colour
    np.testing.assert_array_equal(image[:], rgb)


def test_napari_layers_of_a_small_compressed_tiff_own_their_pixels(tmp_path: Path) -> None:
    from napari_usema._widgets.reader import read_layers

    pixels = _compressed(tmp_path / "cells.tif", 5)
    (data, _meta, kind), *_ = read_layers(str(tmp_path / "cells.tif"))
    assert kind == "image" and isinstance(data, np.ndarray) and data.flags.writeable
    np.testing.assert_array_equal(data, pixels)


def test_a_multichannel_tiff_decoded_on_read_is_standardised_without_dask(tmp_path: Path) -> None:
    from napari_usema.inference.axes import read_axes

    stack = np.random.default_rng(6).integers(0, 255, (2, 30, 40), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "cyx.tif", stack, compression="zlib", metadata={"axes": "CYX"})
    image, info = open_image(tmp_path / "cyx.tif")
    assert isinstance(image, DecodedOnRead)
    reading = read_axes(image.shape, 1, given="CYX", file_axes=info.axes, file_colour=info.colour, channel=0)
    standard = reading.standardise(image)
    assert isinstance(standard, np.ndarray)
    np.testing.assert_array_equal(standard, np.moveaxis(stack, 0, -1))
