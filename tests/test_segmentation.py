"""Whole-image segmentation: layouts, stacks, channels, and the large-image (banded, on-disk) path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import napari_usema.inference.planning as planning
from napari_usema.inference.channels import ChannelError
from napari_usema.inference.pipeline import disk_array, drive, segment
from napari_usema.inference.tiling import TilingConfig
from napari_usema.io.checkpoint import load_checkpoint

TILING = TilingConfig(tile=64, overlap=0.25, batch=2, device="cpu")


def test_axes_read_from_the_shape_when_nobody_says() -> None:
    plan = lambda shape, channels=1, channel=None: planning.plan_planes(  # noqa: E731
        _meta(channels), shape, TILING, channel
    )
    assert (plan((100, 120)).axes, plan((100, 120)).stack_shape) == ("YX", ())
    assert plan((100, 120, 3), 3).axes == "YXC" and plan((100, 120, 3), 3).reading.colour
    stack = plan((7, 100, 120))
    assert (stack.axes, stack.stack_shape, stack.planes) == ("ZYX", (7,), 7) and "--axes CYX" in stack.reading.note
    assert plan((7, 100, 120, 3), 3).axes == "ZYXC"
    with pytest.raises(ChannelError, match="pick the one to segment with --channel"):
        plan((7, 100, 120, 2), 1)
    with pytest.raises(ValueError, match=r"give --axes, e.g. TZCYX"):
        plan((1, 2, 3, 4, 5))


def _meta(channels: int):
    from napari_usema.io.metadata import CheckpointMetadata
    from napari_usema.model import USEMAConfig

    return CheckpointMetadata(USEMAConfig(in_channels=channels, out_channels=3))


def test_instance_segmentation_of_a_grayscale_image(tiny_instance_checkpoint: Path) -> None:
    loaded = load_checkpoint(tiny_instance_checkpoint)
    image = np.random.default_rng(0).integers(0, 255, (90, 110), dtype=np.uint8)
    progress = []
    result = drive(segment(loaded, image, TILING, keep_probabilities=True), progress.append)
    assert result.labels.shape == (90, 110) and result.labels.dtype == np.uint16
    assert result.probabilities.shape == (3, 90, 110)
    np.testing.assert_allclose(result.probabilities.sum(0), 1, atol=1e-5)
    assert progress[-1].done == progress[-1].total and progress[-1].fraction == 1


def test_stack_runs_plane_by_plane(tiny_instance_checkpoint: Path) -> None:
    loaded = load_checkpoint(tiny_instance_checkpoint)
    stack = np.random.default_rng(1).normal(size=(3, 70, 80)).astype(np.float32)
    progress = []
    result = drive(segment(loaded, stack, TILING), progress.append)
    assert result.labels.shape == (3, 70, 80)
    assert sorted({p.plane for p in progress}) == [0, 1, 2] and all(p.planes == 3 for p in progress)


def test_rgb_into_one_channel_model_needs_a_channel(tiny_instance_checkpoint: Path) -> None:
    loaded = load_checkpoint(tiny_instance_checkpoint)
    rgb = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ChannelError, match="pick a channel"):
        drive(segment(loaded, rgb, TILING))
    assert drive(segment(loaded, rgb, TILING, channel=1)).labels.shape == (64, 64)


def test_semantic_model_gives_class_ids(tiny_semantic_checkpoint: Path) -> None:
    loaded = load_checkpoint(tiny_semantic_checkpoint)
    rgb = np.random.default_rng(2).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    result = drive(segment(loaded, rgb, TILING, keep_probabilities=True))
    assert result.labels.dtype == np.uint8 and set(np.unique(result.labels)) <= {0, 1}
    np.testing.assert_array_equal(result.labels, result.probabilities.argmax(0))
    assert result.class_names == ("background", "polyp")


def test_large_plane_path_matches_the_in_memory_path(intensity_model, tmp_path: Path, monkeypatch) -> None:
    from conftest import disk_image

    image = disk_image((300, 260), [(y, x) for y in range(20, 300, 45) for x in range(20, 260, 45)], 12)
    small = drive(segment(intensity_model, image, TILING)).labels
    assert small.max() == 42
    monkeypatch.setattr(planning, "LARGE_PLANE_PIXELS", 100)  # force the banded, on-disk path
    out = disk_array(tmp_path / "labels.zarr", image.shape, np.uint32, rows=64)
    large = np.asarray(drive(segment(intensity_model, image, TILING, labels_out=out)).labels)
    assert large.max() == 42
    from napari_usema.analysis.metrics import instance_f1

    assert instance_f1(small, large).f1 == 1.0


def test_model_with_input_scale_runs_at_its_resolution_and_answers_at_the_image_s(intensity_model) -> None:
    """A half-resolution model sees the image resized by 0.5; labels come back at full size."""
    import dataclasses

    from conftest import disk_image
    from napari_usema.analysis.metrics import instance_f1
    from napari_usema.inference.rescale import resize_image, resize_probabilities

    image = disk_image((200, 240), [(y, x) for y in range(30, 200, 60) for x in range(30, 240, 60)], 16)
    half = dataclasses.replace(intensity_model, metadata=dataclasses.replace(intensity_model.metadata, input_scale=0.5))
    result = drive(segment(half, image, TILING, keep_probabilities=True))
    assert result.labels.shape == image.shape and result.probabilities.shape == (3, *image.shape)
    direct = drive(segment(intensity_model, resize_image(image, 0.5), TILING, keep_probabilities=True))
    np.testing.assert_allclose(result.probabilities, resize_probabilities(direct.probabilities, image.shape), atol=1e-5)
    full = drive(segment(intensity_model, image, TILING)).labels
    assert result.labels.max() == 12 and instance_f1(full, result.labels).f1 == 1.0


def test_rescaled_model_refuses_a_plane_too_large_to_resize_in_memory(intensity_model, monkeypatch) -> None:
    import dataclasses

    half = dataclasses.replace(intensity_model, metadata=dataclasses.replace(intensity_model.metadata, input_scale=0.5))
    monkeypatch.setattr(planning, "LARGE_PLANE_PIXELS", 100)
    with pytest.raises(ValueError, match="crop it or resize it yourself"):
        next(segment(half, np.zeros((20, 20), np.float32), TILING))


def test_multiscale_tta_averages_the_passes_at_the_images_resolution(intensity_model) -> None:
    """``scales`` runs the image at each factor of the model's scale and averages the resized answers;
    the progress count covers every pass once."""
    import dataclasses

    from conftest import disk_image
    from napari_usema.analysis.metrics import instance_f1

    image = disk_image((160, 200), [(y, x) for y in range(30, 160, 50) for x in range(30, 200, 50)], 14)
    tiling = dataclasses.replace(TILING, scales=(0.5, 1.0))
    gen = segment(intensity_model, image, tiling, keep_probabilities=True)
    progress = []
    while True:
        try:
            progress.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    # 64-px tiles in batches of 2 (an axis up to 64 + 8 would be one tile): at half size (80x100) 4 tiles,
    # 2 batches; at full size (160x200) 12 tiles, 6.
    assert [(p.done, p.total) for p in progress] == [(i, 8) for i in range(1, 9)]
    passes = []
    for scale in (0.5, 1.0):
        at = dataclasses.replace(intensity_model, metadata=dataclasses.replace(intensity_model.metadata, input_scale=scale))
        passes.append(drive(segment(at, image, TILING, keep_probabilities=True)).probabilities)
    np.testing.assert_allclose(result.probabilities, (passes[0] + passes[1]) / 2, atol=1e-6)
    assert result.labels.shape == image.shape and result.labels.max() == 12
    assert instance_f1(drive(segment(intensity_model, image, TILING)).labels, result.labels).f1 == 1.0
    # One pass at the model's own scale is exactly the plain path.
    single = drive(segment(intensity_model, image, dataclasses.replace(TILING, scales=(1,)), keep_probabilities=True))
    np.testing.assert_array_equal(single.probabilities, passes[1])
    # A model's stored factors are the default (scales=None), and an explicit choice overrides them.
    tuned = dataclasses.replace(intensity_model, metadata=dataclasses.replace(intensity_model.metadata, test_scales=(0.5, 1)))
    assert TILING.scales is None
    by_default = drive(segment(tuned, image, TILING, keep_probabilities=True)).probabilities
    np.testing.assert_array_equal(by_default, result.probabilities)
    one_pass = dataclasses.replace(TILING, scales=(1.0,))
    np.testing.assert_array_equal(drive(segment(tuned, image, one_pass, keep_probabilities=True)).probabilities, passes[1])


def test_multiscale_refuses_planes_too_large_and_factors_beyond_the_limit(intensity_model, monkeypatch) -> None:
    import dataclasses

    with pytest.raises(ValueError, match="scales must be one or more numbers in"):
        TilingConfig(scales=())
    with pytest.raises(ValueError, match="scales must be one or more numbers in"):
        TilingConfig(scales=(1.0, float("nan")))
    double = dataclasses.replace(intensity_model, metadata=dataclasses.replace(intensity_model.metadata, input_scale=2.0))
    assert TilingConfig(scales=[1, 2]).scales == (1.0, 2.0)
    with pytest.raises(ValueError, match="would resize the image by 5; at most 4"):
        next(segment(double, np.zeros((20, 20), np.float32), dataclasses.replace(TILING, scales=(1.0, 2.5))))
    monkeypatch.setattr(planning, "LARGE_PLANE_PIXELS", 100)
    with pytest.raises(ValueError, match="multi-scale TTA resizes images"):
        next(segment(intensity_model, np.zeros((20, 20), np.float32), dataclasses.replace(TILING, scales=(0.8, 1.0))))


def test_the_models_tuned_postprocess_is_the_default(intensity_model) -> None:
    import dataclasses

    from conftest import disk_image
    from napari_usema.postprocess.config import WatershedConfig

    image = disk_image((120, 120), [(30, 30), (30, 90), (90, 60)], 12)
    tiling = TilingConfig(tile=64, device="cpu")
    plain = drive(segment(intensity_model, image, tiling)).labels
    strict = dataclasses.replace(
        intensity_model, metadata=dataclasses.replace(intensity_model.metadata, postprocess={"min_size": 1000})
    )
    assert plain.max() == 3
    assert drive(segment(strict, image, tiling)).labels.max() == 0  # every seed is under 1000 px
    assert drive(segment(strict, image, tiling, WatershedConfig())).labels.max() == 3  # an explicit choice wins
