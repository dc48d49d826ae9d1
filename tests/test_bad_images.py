"""Messy images: non-finite pixels, no contrast, empty shapes, wrong argument types, and a property
test over shapes, dtypes and values for the whole image -> labels pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_usema.inference.pipeline import drive, segment
from napari_usema.inference.tiling import TilingConfig
from napari_usema.io.checkpoint import LoadedModel
from napari_usema.io.metadata import CheckpointMetadata, NormalizationRecipe
from napari_usema.model import preset

TILING = TilingConfig(tile=32, batch=2, device="cpu")


def intensity_model(channels: int = 1) -> LoadedModel:
    from conftest import IntensityNet

    config = preset("tiny", in_channels=channels)
    meta = CheckpointMetadata(config, "instance", normalization=NormalizationRecipe("percentile", 1, 99.8))
    return LoadedModel(IntensityNet(config), meta)


MODEL = intensity_model()


def blobs() -> np.ndarray:
    image = np.zeros((64, 64), np.float32)
    image[10:22, 10:22] = image[40:55, 30:50] = 1
    return image


def test_a_few_nan_pixels_are_background_and_counted() -> None:
    image = blobs()
    clean = drive(segment(MODEL, image, TILING))
    image[0, 0] = np.nan
    image[30, 30:33] = [np.inf, -np.inf, np.nan]
    result = drive(segment(MODEL, image, TILING))
    np.testing.assert_array_equal(result.labels, clean.labels)  # the statistics ignore them
    assert any("4 NaN or infinite pixels" in note for note in result.notes)


def test_nan_does_not_spread_through_a_resized_pass() -> None:
    import dataclasses

    half = dataclasses.replace(MODEL, metadata=dataclasses.replace(MODEL.metadata, input_scale=0.5))
    image = blobs()
    image[15, 15] = np.nan  # inside a blob: it reads as background, and must stay a pixel, not a hole
    result = drive(segment(half, image, TILING))
    assert result.labels.max() == 2


def test_an_image_without_finite_pixels_is_an_error() -> None:
    with pytest.raises(ValueError, match="every pixel is NaN or infinite"):
        drive(segment(MODEL, np.full((40, 40), np.nan, np.float32), TILING))


@pytest.mark.parametrize("value", [0, 77, 65535])
def test_a_frame_without_contrast_has_no_objects(value: int) -> None:
    result = drive(segment(MODEL, np.full((50, 60), value, np.uint16), TILING, keep_probabilities=True))
    assert result.labels.max() == 0 and any("no contrast" in n for n in result.notes)
    assert (result.probabilities[0] == 1).all()  # background everywhere


@pytest.mark.parametrize("shape", [(0, 0), (0, 40), (40, 0), (0, 40, 40), (3, 0, 40)])
def test_empty_images_are_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="the image is empty"):
        drive(segment(MODEL, np.zeros(shape, np.uint8), TILING))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"image": None}, TypeError, "image is None"),
        ({"image": "image.tif"}, TypeError, "image must be an array"),
        ({"image": np.zeros((20, 20), complex)}, ValueError, "holds complex128 values"),
        ({"channel": "0"}, TypeError, "channel must be an integer index"),
        ({"tiling": {"tile": 64}}, TypeError, "tiling must be a TilingConfig"),
        ({"loaded": "nuclei"}, TypeError, "takes a LoadedModel"),
    ],
)
def test_arguments_of_the_wrong_kind_get_specific_errors(kwargs: dict, error: type, message: str) -> None:
    call = {"loaded": MODEL, "image": blobs(), "tiling": TILING, **kwargs}
    channel = call.pop("channel", None)
    with pytest.raises(error, match=message):
        drive(segment(call["loaded"], call["image"], call["tiling"], channel=channel))


def test_a_nested_list_reads_as_an_array() -> None:
    labels = drive(segment(MODEL, blobs().tolist(), TILING)).labels
    assert labels.shape == (64, 64) and labels.max() == 2


values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, 1e-30, 1e30, -1e30, 1e300, 5.0]),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    image=st.one_of(
        hnp.arrays(
            st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64]),
            st.sampled_from([(1, 1), (5, 3), (17, 33), (2, 20, 20), (20, 20, 3), (30, 1)]),
            elements=st.integers(0, 255),
        ),
        hnp.arrays(np.float64, st.sampled_from([(9, 9), (16, 24), (2, 12, 12)]), elements=values),
        hnp.arrays(np.float32, st.sampled_from([(12, 12), (20, 7)]), elements=st.sampled_from([np.nan, 3.0, np.inf])),
    )
)
def test_the_pipeline_returns_labels_or_a_clear_value_error(image: np.ndarray) -> None:
    try:
        result = drive(segment(MODEL, image, TILING, keep_probabilities=True))
    except ValueError as err:
        assert str(err), "a ValueError must say what is wrong"
        return
    plane_shape = image.shape[:2] if image.ndim == 2 or (image.shape[-1] <= 4 and image.ndim == 3) else image.shape[1:3]
    expected = (image.shape[0], *plane_shape) if image.ndim == 3 and image.shape[-1] > 4 else plane_shape
    assert result.labels.shape == tuple(expected)
    assert result.labels.dtype in (np.uint16, np.uint32)
    assert np.isfinite(result.probabilities).all()


def test_no_contrast_is_confirmed_on_every_pixel_when_the_sample_is_strided() -> None:
    """A 2100² frame is measured on every 2nd pixel; one bright pixel off that grid is still contrast."""
    from napari_usema.inference.normalization import measure

    frame = np.zeros((1, 2100, 2100), np.uint8)
    assert measure(frame, NormalizationRecipe()).constant
    frame[0, 1001, 1001] = 200  # odd row and column: the stride-2 sample never sees it
    assert not measure(frame, NormalizationRecipe()).constant


def test_float64_values_beyond_float32_range_are_not_mistaken_for_missing() -> None:
    image = blobs().astype(np.float64) * 1e302  # finite, but inf as float32
    result = drive(segment(MODEL, image, TILING))
    assert result.labels.max() == 2 and not any("NaN" in n for n in result.notes)


def test_a_few_channels_last_are_channels_not_planes() -> None:
    from napari_usema.inference.channels import ChannelError

    image = np.zeros((64, 64, 5), np.float32)
    image[..., 2] = blobs()
    with pytest.raises(ChannelError, match=r"5 channels \(YXC\).*or, if these are 64 planes of 64x5, give --axes ZYX"):
        drive(segment(MODEL, image, TILING))
    assert drive(segment(MODEL, image, TILING, channel=2)).labels.max() == 2
    stack = drive(segment(MODEL, np.stack([blobs()] * 5), TILING))  # (5, 64, 64): planes, and said so
    assert stack.labels.shape == (5, 64, 64) and any("as 5 planes" in n for n in stack.notes)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"image": [[1, 2], [3]]}, ValueError, "ragged list"),
        ({"labels_out": np.zeros((3, 3), np.uint32)}, ValueError, r"labels_out has shape \(3, 3\)"),
        ({"watershed": {"min_size": 3}}, TypeError, "watershed must be a WatershedConfig"),
    ],
)
def test_more_arguments_of_the_wrong_kind(kwargs: dict, error: type, message: str) -> None:
    image = kwargs.pop("image", blobs())
    with pytest.raises(error, match=message):
        drive(segment(MODEL, image, TILING, **kwargs))
