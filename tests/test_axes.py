"""Axes, channels and pixel size from the file (OME-TIFF, ImageJ, planar RGB, OME-Zarr), ``--axes`` over them,
and the readings that are announced or refused."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_usema.cli.main import main
from napari_usema.inference.axes import AxesError, candidate_axes, check_axes, read_axes
from napari_usema.inference.channels import ChannelError, resolve_channel
from napari_usema.io.image_info import open_image
from napari_usema.io.images import ImageReadError, find_pairs, read_image


def run_cli(*args: object) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def nucleus_image(shared_data: Path) -> np.ndarray:
    """A real fluorescence image (DSB 2018, validation split) with 42 nuclei, 256x256."""
    pairs = find_pairs(shared_data / "microscopy")
    return read_image(pairs["dsb2018s1test_4be73d68f4338691"][0])


@pytest.fixture
def dapi_and_marker(nucleus_image: np.ndarray) -> np.ndarray:
    """``(2, H, W)``: the nuclei as DAPI, and a 'marker' channel that is bright where they are not."""
    marker = (255 - nucleus_image).astype(np.uint8)
    return np.stack([nucleus_image, marker])


# --- reading axes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("axes", "shape", "message"),
    [
        ("CYQ", (2, 8, 8), "Q is not an axis"),
        ("YYX", (2, 8, 8), "names Y twice"),
        ("CZX", (2, 8, 8), "must include Y and X"),
        ("CYX", (2, 3, 8, 8), "names 3 axes, but the image has 4 dimensions"),
        ("", (8, 8), "string of axis letters"),
    ],
)
def test_axes_that_do_not_fit_are_refused(axes: str, shape: tuple, message: str) -> None:
    with pytest.raises(AxesError, match=message):
        check_axes(axes, shape)


def test_a_guess_is_announced_with_the_other_reading_and_ambiguity_is_refused() -> None:
    planes = read_axes((3, 512, 512), 3)
    assert planes.axes == "ZYX" and planes.source == "guessed"
    assert "as 3 planes" in planes.note and "--axes CYX" in planes.note
    assert read_axes((512, 512, 3), 3).colour and read_axes((512, 512, 3), 3).note is None
    with pytest.raises(AxesError, match=r"with 5 channels \(YXC\).*--channel.*--axes ZYX"):
        read_axes((64, 64, 5), 3)
    with pytest.raises(AxesError, match=r"give --axes, e\.g\. TZYX, CZYX or ZCYX"):
        read_axes((2, 10, 64, 64), 1)
    given = read_axes((2, 64, 64), 1, given="cyx", file_axes="ZYX")
    assert given.axes == "CYX" and "not as the file's ZYX" in given.note and not given.colour


def test_standardise_moves_axes_lazily_and_drops_singletons() -> None:
    import zarr

    data = np.arange(2 * 3 * 1 * 5 * 4).reshape(2, 3, 1, 5, 4)  # T, C, Z (size 1), Y, X
    reading = read_axes(data.shape, 1, given="TCZYX")
    assert reading.standard(data.shape) == "TYXC"
    out = reading.standardise(data)
    assert out.shape == (2, 5, 4, 3) and np.shares_memory(out, data)
    np.testing.assert_array_equal(out[1, :, :, 2], data[1, 2, 0])
    stored = zarr.create_array(store={}, shape=data.shape, dtype=data.dtype, chunks=(1, 1, 1, 5, 4))
    stored[:] = data
    lazy = reading.standardise(stored)
    assert type(lazy).__module__.startswith("dask") and lazy.shape == (2, 5, 4, 3)
    np.testing.assert_array_equal(np.asarray(lazy[1]), out[1])


def test_channels_by_index_or_name() -> None:
    names = ("DAPI", "GFP")
    assert resolve_channel("gfp", names) == 1 and resolve_channel("DAPI", names) == 0 and resolve_channel(1, names) == 1
    assert resolve_channel(None, names) is None and resolve_channel("0", ()) == 0
    with pytest.raises(ChannelError, match="no channel named 'RFP' in this image; its channels are 0: DAPI, 1: GFP"):
        resolve_channel("RFP", names)
    with pytest.raises(ChannelError, match="does not name its channels"):
        resolve_channel("DAPI", ())


def test_candidate_axes_for_the_napari_box() -> None:
    assert candidate_axes(2) == ["YX"]
    assert candidate_axes(3)[:3] == ["ZYX", "TYX", "CYX"] and "YXC" in candidate_axes(3)
    assert {"TZYX", "CZYX", "ZYXC", "TYXC"} <= set(candidate_axes(4))


# --- files -------------------------------------------------------------------------------------


def test_ome_tiff_imagej_and_planar_rgb_say_what_they_are(tmp_path: Path, dapi_and_marker: np.ndarray) -> None:
    ome, imagej, rgb = tmp_path / "cells.ome.tif", tmp_path / "cells_ij.tif", tmp_path / "planar.tif"
    tifffile.imwrite(
        ome, dapi_and_marker, ome=True,
        metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "marker"]}, "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.325},
    )  # fmt: skip
    ij_meta = {"axes": "CYX", "unit": "um", "Labels": ["DAPI", "marker"]}
    tifffile.imwrite(imagej, dapi_and_marker, imagej=True, resolution=(1 / 0.5, 1 / 0.5), metadata=ij_meta)
    tifffile.imwrite(rgb, np.zeros((3, 16, 20), np.uint8), photometric="rgb", planarconfig="separate")
    image, info = open_image(ome)
    assert (info.format, info.axes, info.channel_names) == ("OME-TIFF", "CYX", ("DAPI", "marker"))
    assert info.pixel_size == (0.325, 0.325)
    assert image.shape == (2, 256, 256)
    _, info = open_image(imagej)
    assert (info.format, info.axes, info.channel_names) == ("ImageJ TIFF", "CYX", ("DAPI", "marker"))
    assert info.pixel_size == pytest.approx((0.5, 0.5))
    image, info = open_image(rgb)
    assert (info.axes, info.colour, image.shape) == ("CYX", True, (3, 16, 20))
    assert read_axes(image.shape, 3, file_axes=info.axes, file_colour=info.colour).standard(image.shape) == "YXC"


def _ome_zarr(path: Path, data: np.ndarray, version: str, *, scale: float = 0.5) -> Path:
    """An OME-Zarr image of two levels, written with zarr and the NGFF metadata by hand."""
    import zarr

    axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"}]  # fmt: skip
    datasets = [
        {"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": [1, scale * 2**level, scale * 2**level]}]}
        for level in range(2)
    ]
    multiscales = {"version": version, "axes": axes, "datasets": datasets}
    omero = {"channels": [{"label": "DAPI"}, {"label": "marker"}]}
    if version == "0.4":
        group = zarr.open_group(str(path), mode="w", zarr_format=2)
        group.attrs.update({"multiscales": [multiscales], "omero": omero})
    else:
        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        del multiscales["version"]
        group.attrs.update({"ome": {"version": version, "multiscales": [multiscales], "omero": omero}})
    for level in range(2):
        level_data = data[:, :: 2**level, :: 2**level]
        array = group.create_array(str(level), shape=level_data.shape, dtype=level_data.dtype, chunks=(1, 32, 32))
        array[:] = level_data
    return path


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_opens_lazily_at_the_chosen_level(tmp_path: Path, dapi_and_marker: np.ndarray, version: str) -> None:
    store = _ome_zarr(tmp_path / "cells.ome.zarr", dapi_and_marker, version)
    image, info = open_image(store)
    assert not isinstance(image, np.ndarray) and image.shape == (2, 256, 256)
    assert (info.axes, info.channel_names, info.format) == ("CYX", ("DAPI", "marker"), f"OME-Zarr {version}")
    assert info.pixel_size == (0.5, 0.5)
    np.testing.assert_array_equal(np.asarray(image[0]), dapi_and_marker[0])
    small, info = open_image(store, level=1)
    assert small.shape == (2, 128, 128) and info.pixel_size == (1.0, 1.0)
    with pytest.raises(ImageReadError, match="has 2 resolution levels"):
        open_image(store, level=2)


def test_zarr_without_multiscales_is_a_clear_error(tmp_path: Path) -> None:
    import zarr

    group = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    group.create_array("0", shape=(8, 8), dtype="uint8")
    with pytest.raises(ImageReadError, match="without OME-Zarr multiscales metadata"):
        open_image(tmp_path / "plain.zarr")


# --- the command line on a DAPI + marker image ---------------------------------------------------


def test_dapi_and_marker_segments_the_chosen_channel_by_name(
    tmp_path: Path, dapi_and_marker: np.ndarray, nucleus_image: np.ndarray, capsys
) -> None:
    ome = tmp_path / "cells.ome.tif"
    tifffile.imwrite(
        ome, dapi_and_marker, ome=True,
        metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "marker"]}, "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.325},
    )  # fmt: skip
    tifffile.imwrite(tmp_path / "dapi.tif", nucleus_image)
    assert run_cli("predict", ome, "--model", "nuclei", "--out", tmp_path / "refused") == 2
    assert "not colour samples: pick the one" in (err := capsys.readouterr().err) and "its channels are 0: DAPI, 1: marker" in err
    assert run_cli("predict", ome, "--model", "nuclei", "--out", tmp_path / "refused", "--channel", "GFP") == 2
    assert "no channel named 'GFP'" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").iterdir())
    assert run_cli("predict", ome, "--model", "nuclei", "--out", tmp_path / "out", "--channel", "DAPI") == 0
    err = capsys.readouterr().err
    assert "OME-TIFF, axes CYX, channels DAPI, marker" in err
    assert re.search(r"wrote \S*cells\.tif \(1/1\): \d{2,} objects", err)  # what was found, per image
    assert run_cli("predict", tmp_path / "dapi.tif", "--model", "nuclei", "--out", tmp_path / "alone") == 0
    labels = tifffile.imread(tmp_path / "out" / "cells.tif")
    assert labels.shape == (256, 256) and labels.max() >= 30
    np.testing.assert_array_equal(labels, tifffile.imread(tmp_path / "alone" / "dapi.tif"))  # DAPI, not the marker
    _, info = open_image(tmp_path / "out" / "cells.tif")
    assert info.pixel_size == pytest.approx((0.325, 0.325))  # the pixel size travels to the labels


def test_axes_option_reads_a_shape_the_file_does_not_describe(tmp_path: Path, dapi_and_marker: np.ndarray, capsys) -> None:
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, dapi_and_marker, metadata=None)  # no axes in the file
    assert run_cli("predict", plain, "--model", "nuclei", "--out", tmp_path / "planes") == 0
    assert "as 2 planes of 256x256 (Z or T)" in capsys.readouterr().err  # the guess, announced
    assert tifffile.imread(tmp_path / "planes" / "plain.tif").shape == (2, 256, 256)
    assert run_cli("predict", plain, "--model", "nuclei", "--out", tmp_path / "one", "--axes", "CYX", "--channel", "0") == 0
    assert tifffile.imread(tmp_path / "one" / "plain.tif").shape == (256, 256)
    assert run_cli("predict", plain, "--model", "nuclei", "--out", tmp_path / "bad", "--axes", "TCYX") == 2
    assert "names 4 axes, but the image has 3 dimensions" in capsys.readouterr().err


def test_ome_zarr_on_the_command_line(tmp_path: Path, dapi_and_marker: np.ndarray) -> None:
    store = _ome_zarr(tmp_path / "cells.ome.zarr", dapi_and_marker, "0.5")
    assert run_cli("predict", store, "--model", "nuclei", "--out", tmp_path / "out", "--channel", "DAPI") == 0
    labels = tifffile.imread(tmp_path / "out" / "cells.tif")
    assert labels.shape == (256, 256) and labels.max() >= 30
    assert open_image(tmp_path / "out" / "cells.tif")[1].pixel_size == pytest.approx((0.5, 0.5))


def test_imagej_hyperstack_channel_by_index(tmp_path: Path, dapi_and_marker: np.ndarray, nucleus_image: np.ndarray) -> None:
    hyperstack = tmp_path / "cells_ij.tif"
    tifffile.imwrite(hyperstack, dapi_and_marker, imagej=True, metadata={"axes": "CYX", "Labels": ["DAPI", "marker"]})
    tifffile.imwrite(tmp_path / "dapi.tif", nucleus_image)
    assert run_cli("predict", hyperstack, "--model", "nuclei", "--out", tmp_path / "out", "--channel", "0") == 0
    assert run_cli("predict", tmp_path / "dapi.tif", "--model", "nuclei", "--out", tmp_path / "alone") == 0
    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "out" / "cells_ij.tif"), tifffile.imread(tmp_path / "alone" / "dapi.tif")
    )


def test_planar_rgb_reads_as_rgb(tmp_path: Path, shared_data: Path) -> None:
    pairs = find_pairs(shared_data / "microscopy")
    rgb = next(image for image in (read_image(p[0]) for p in pairs.values()) if image.ndim == 3)[:256, :256]
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    tifffile.imwrite(tmp_path / "interleaved.tif", rgb, photometric="rgb")
    assert (
        run_cli("predict", tmp_path / "planar.tif", tmp_path / "interleaved.tif", "--model", "nuclei", "--out", tmp_path / "o")
        == 0
    )
    planar, interleaved = tifffile.imread(tmp_path / "o" / "planar.tif"), tifffile.imread(tmp_path / "o" / "interleaved.tif")
    assert planar.shape == rgb.shape[:2] and planar.max() > 0  # one 2-D colour image, not 3 gray planes
    np.testing.assert_array_equal(planar, interleaved)


# --- regressions found in review ------------------------------------------------------------------


def test_tracking_z_stacks_needs_them_stitched_and_size_one_axes_are_no_obstacle(intensity_model) -> None:
    from napari_usema.inference.pipeline import drive, segment
    from napari_usema.postprocess.linking import StackLinks

    stack = np.zeros((2, 3, 32, 32), np.float32)  # T, Z
    stack[..., 8:16, 8:16] = 1
    with pytest.raises(ValueError, match="stitch the planes too"):
        drive(segment(intensity_model, stack, axes="TZYX", links=StackLinks(track=0.25)))
    both = drive(segment(intensity_model, stack, axes="TZYX", links=StackLinks(stitch=0.25, track=0.25)))
    assert both.labels.shape == (2, 3, 32, 32) and set(np.unique(both.labels)) == {0, 1}  # one object, one id
    single = drive(segment(intensity_model, stack[:1, :1], axes="TZYX", links=StackLinks(track=0.25)))
    assert single.labels.shape == (32, 32)  # one time point: nothing to track, and no refusal
    with pytest.raises(ValueError, match="stitch it \\(Z\\) or track it \\(T\\), not both"):
        drive(segment(intensity_model, stack[0], links=StackLinks(stitch=0.25, track=0.25)))


def test_file_quirks_pyramids_rgb_names_and_given_axes(tmp_path: Path, dapi_and_marker: np.ndarray, capsys) -> None:
    pyramid = tmp_path / "pyramid.ome.tif"
    with tifffile.TiffWriter(pyramid, ome=True) as tw:
        tw.write(dapi_and_marker, subifds=1, tile=(64, 64), compression="zlib",
                 metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "marker"]}})  # fmt: skip
        tw.write(dapi_and_marker[:, ::2, ::2], subfiletype=1, tile=(64, 64), compression="zlib")
    assert open_image(pyramid)[0].shape == (2, 256, 256) and open_image(pyramid, level=1)[0].shape == (2, 128, 128)
    with pytest.raises(ImageReadError, match="has 2 resolution levels"):
        open_image(pyramid, level=2)
    rgb = tmp_path / "rgb.ome.tif"
    tifffile.imwrite(rgb, np.zeros((64, 64, 3), np.uint8), ome=True, photometric="rgb",
                     metadata={"axes": "YXS", "Channel": {"Name": ["brightfield"]}})  # fmt: skip
    assert open_image(rgb)[1].channel_names == ()  # one name for three samples: not channel names
    assert run_cli("predict", rgb, "--model", "nuclei", "--out", tmp_path / "o", "--channel", "2") == 0
    planar = tmp_path / "planar.tif"
    tifffile.imwrite(planar, np.zeros((3, 64, 64), np.uint8), photometric="rgb", planarconfig="separate")
    _, info = open_image(planar)
    assert read_axes((3, 64, 64), 3, given="CYX", file_axes=info.axes, file_colour=info.colour).colour
    assert resolve_channel("488", ("405", "488")) == 1  # a channel named by a number is chosen by name
