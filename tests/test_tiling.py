"""Tile geometry and the banded, blended sliding window."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_usema.inference.channels import ChannelPlan
from napari_usema.inference.normalization import IntensityStats
from napari_usema.inference.predictor import ArraySink, ImageSource, predict_tiles
from napari_usema.inference.tiling import TileSizeError, TilingConfig, effective_tile, gaussian_weight, tile_grid, tile_starts


def test_tile_starts_are_flush_with_both_edges() -> None:
    assert tile_starts(100, 100, 0.5) == [0]
    assert tile_starts(300, 128, 0.5) == [0, 57, 115, 172]
    starts = tile_starts(1000, 256, 0.25)
    assert starts[0] == 0 and starts[-1] == 1000 - 256
    assert max(np.diff(starts)) <= 256 * 0.75


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(16, 400),
    w=st.integers(16, 400),
    tile=st.integers(16, 200),
    overlap=st.floats(0, 0.9),
)
def test_property_every_pixel_covered_and_weights_positive(h: int, w: int, tile: int, overlap: float) -> None:
    th, tw = min(tile, h), min(tile, w)
    cover = np.zeros((h, w), np.float32)
    weight = gaussian_weight((th, tw))
    for y, x in tile_grid((h, w), (th, tw), overlap):
        assert 0 <= y <= h - th and 0 <= x <= w - tw
        cover[y : y + th, x : x + tw] += weight
    assert cover.min() > 0


def test_gaussian_weight_peaks_in_the_centre_and_is_cached() -> None:
    weight = gaussian_weight((64, 48))
    assert weight.shape == (64, 48) and weight.max() == pytest.approx(1.0)
    assert weight[32, 24] > weight[0, 0] > 0
    assert gaussian_weight((64, 48)) is weight
    with pytest.raises(ValueError):
        weight[0, 0] = 3


def test_small_image_clamps_or_refuses_the_tile() -> None:
    assert effective_tile((100, 300), TilingConfig(tile=256)) == (100, 256)
    with pytest.raises(TileSizeError, match="smaller than the 256-pixel tile"):
        effective_tile((100, 300), TilingConfig(tile=256, clamp_tile=False))


class _Constant(torch.nn.Module):
    """A 'network' whose softmax is known: logits = [x, 0] per pixel."""

    class config:  # noqa: N801 - mimics USEMA.config
        out_channels = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :1], torch.zeros_like(x[:, :1])], dim=1)


def _source(image: np.ndarray) -> ImageSource:
    return ImageSource(image, ChannelPlan(None, (0,)), IntensityStats(np.zeros(1, np.float32), np.ones(1, np.float32)))


@pytest.mark.parametrize(("tile", "overlap", "batch"), [(32, 0.5, 3), (64, 0.25, 1), (100, 0.0, 8)])
def test_tiled_output_equals_the_pixelwise_answer(tile: int, overlap: float, batch: int) -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(150, 170)).astype(np.float32)
    sink = ArraySink(2, image.shape)
    records = list(
        predict_tiles(_Constant(), _source(image), sink, TilingConfig(tile=tile, overlap=overlap, batch=batch, device="cpu"))
    )
    expected = 1 / (1 + np.exp(-image))  # softmax([x, 0])[0]
    np.testing.assert_allclose(sink.out[0], expected, rtol=1e-5, atol=1e-6)
    assert records[-1].done == records[-1].total == len(records)


def test_rows_reach_the_sink_in_bands_not_all_at_once() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.writes: list[tuple[int, int]] = []

        def write(self, y0: int, probs: np.ndarray) -> None:
            self.writes.append((y0, probs.shape[1]))

    image = np.zeros((300, 64), np.float32)
    sink = Recorder()
    list(predict_tiles(_Constant(), _source(image), sink, TilingConfig(tile=64, overlap=0.5, batch=2, device="cpu")))
    assert len(sink.writes) > 3
    assert max(rows for _, rows in sink.writes) <= 64
    assert sum(rows for _, rows in sink.writes) == 300
    assert [y for y, _ in sink.writes] == sorted(y for y, _ in sink.writes)


def test_tta_on_a_symmetric_model_changes_nothing() -> None:
    image = np.random.default_rng(1).normal(size=(80, 90)).astype(np.float32)
    plain, tta = ArraySink(2, image.shape), ArraySink(2, image.shape)
    list(predict_tiles(_Constant(), _source(image), plain, TilingConfig(tile=48, device="cpu")))
    list(predict_tiles(_Constant(), _source(image), tta, TilingConfig(tile=48, device="cpu", tta=True)))
    np.testing.assert_allclose(plain.out, tta.out, rtol=1e-5, atol=1e-6)


def test_lazy_zarr_and_dask_inputs_read_tile_by_tile(tmp_path) -> None:
    import dask.array as da
    import zarr

    image = np.random.default_rng(2).normal(size=(120, 100)).astype(np.float32)
    z = zarr.open_array(str(tmp_path / "img.zarr"), mode="w", shape=image.shape, chunks=(32, 32), dtype=np.float32)
    z[:] = image
    for array in (z, da.from_array(image, chunks=40)):
        sink = ArraySink(2, image.shape)
        list(predict_tiles(_Constant(), _source(array), sink, TilingConfig(tile=48, device="cpu")))
        np.testing.assert_allclose(sink.out[0], 1 / (1 + np.exp(-image)), rtol=1e-5, atol=1e-6)


def test_out_of_memory_retries_with_smaller_batches_and_says_so(monkeypatch) -> None:
    from napari_usema.inference import predictor

    class Flaky(_Constant):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[0] > 1:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return super().forward(x)

    monkeypatch.setattr(predictor.torch.cuda, "empty_cache", lambda: None)
    image = np.random.default_rng(3).normal(size=(64, 64)).astype(np.float32)
    sink = ArraySink(2, image.shape)
    records = list(predict_tiles(Flaky(), _source(image), sink, TilingConfig(tile=32, overlap=0.5, batch=4, device="cpu")))
    assert "retrying with batch 2" in records[0].message and "retrying with batch 1" in records[0].message
    np.testing.assert_allclose(sink.out[0], 1 / (1 + np.exp(-image)), rtol=1e-5, atol=1e-6)
