"""Tile geometry and the banded, blended sliding window."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_usema.inference.channels import ChannelPlan
from napari_usema.inference.normalization import IntensityStats
from napari_usema.inference.predictor import ArraySink, ImageSource, predict_tiles
from napari_usema.inference.tiling import (
    TileSizeError,
    TilingConfig,
    _spread,
    batch_count,
    effective_tile,
    fitted_side,
    gaussian_weight,
    plan_tiles,
    tile_grid,
    tile_starts,
)


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


def test_fixed_tiles_clamp_to_a_small_image_or_refuse_it() -> None:
    assert effective_tile((100, 300), TilingConfig(tile=256, fit=False)) == (100, 256)
    with pytest.raises(TileSizeError, match="smaller than the 256-pixel tile"):
        effective_tile((100, 300), TilingConfig(tile=256, fit=False, clamp_tile=False))


def test_an_axis_at_most_one_overlap_longer_than_the_default_tile_is_one_tile() -> None:
    config = TilingConfig(tile=256, overlap=0.125)  # 32-pixel overlap
    tile, starts = plan_tiles((260, 347), config)  # the bundled sample
    assert tile == (260, 256) and starts == [(0, 0), (0, 91)]  # two tiles, not four
    assert effective_tile((288, 289), config) == (288, 256)  # 256 + 32 is one tile, one more is not
    assert effective_tile((2048, 100), config) == (256, 100)
    wide = TilingConfig(tile=256, overlap=0.5)  # a larger overlap does not make whole images one tile
    assert effective_tile((288, 300), wide) == (288, 256)  # at most an eighth of the tile more
    given = TilingConfig(tile=256, clamp_tile=False)  # a tile the user chose is kept as it is
    assert plan_tiles((260, 347), given)[0] == (256, 256) and len(plan_tiles((260, 347), given)[1]) == 4


def test_fitted_tiles_are_the_fewest_that_cover_and_no_larger_than_needed() -> None:
    assert fitted_side(300, 512, 32) == 300  # one tile: the whole axis
    assert fitted_side(2048, 512, 32) == 448  # 5 tiles, as 512 would need, of 448 (not 5 of 512)
    assert fitted_side(520, 512, 32) == 288  # 2 tiles, just over half each
    config = TilingConfig(tile=512, overlap=0.0625, fit=True)
    tile, starts = plan_tiles((2048, 260), config)
    assert tile == (448, 260) and [x for _, x in starts] == [0] * 5
    ys = [y for y, _ in starts]
    assert ys[0] == 0 and ys[-1] == 2048 - 448 and min(a + 448 - b for a, b in itertools.pairwise(ys)) >= 32  # overlap kept
    assert batch_count((2048, 2048), config) == 25  # batch 0 counts a tile a pass, as the CPU runs it
    fixed = TilingConfig(tile=512, overlap=0.0625, fit=False)
    assert len(plan_tiles((2048, 2048), fixed)[1]) == 25 and plan_tiles((2048, 2048), fixed)[0] == (512, 512)


@settings(max_examples=80, deadline=None)
@given(length=st.integers(16, 5000), largest=st.integers(32, 1024), overlap=st.integers(0, 64))
def test_property_fitted_tiles_keep_the_overlap_and_never_exceed_the_largest(length: int, largest: int, overlap: int) -> None:
    overlap = min(overlap, largest // 2)
    side = fitted_side(length, largest, overlap)
    assert side <= min(largest, length)
    fixed_count = len(tile_starts(length, min(largest, length), overlap / largest)) if length > largest else 1
    starts = _spread(length, side, max(1, side - overlap))
    assert starts[0] == 0 and starts[-1] == length - side
    assert all(b - a <= side - overlap for a, b in itertools.pairwise(starts))  # every seam overlaps enough
    assert len(starts) <= fixed_count + 1  # never more tiles than fixed tiles of the largest side (rounding aside)
    assert len(starts) * side <= fixed_count * min(largest, length)  # and never more pixels


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


def test_batch_zero_is_one_tile_on_the_cpu_and_what_the_gpu_holds(monkeypatch) -> None:
    from napari_usema.inference import devices
    from napari_usema.inference.predictor import with_batch

    cpu = TilingConfig(tile=64, device="cpu")
    assert cpu.batch == 0 and with_batch(cpu, (300, 300), _Constant()).batch == 1
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda **_: True)
    per_tile = 512 * 512 * 32 * devices.ACTIVATION_BYTES / 2  # bf16
    assert devices.auto_batch(cuda, 512 * 512, 32, free_bytes=int(10 * per_tile)) == 5  # half the free memory
    assert devices.auto_batch(cuda, 512 * 512, 32, free_bytes=1) == 1  # never 0
    assert devices.auto_batch(cuda, 64 * 64, 32, free_bytes=80 << 30) == devices.AUTO_BATCH_MAX
    assert devices.auto_batch(torch.device("mps"), 512 * 512, 32, free_bytes=80 << 30) == 1


def test_the_compiled_path_gives_the_same_probabilities(monkeypatch) -> None:
    from napari_usema.inference import predictor
    from napari_usema.model import USEMA, preset

    monkeypatch.setattr(predictor, "COMPILE_BACKEND", "eager")  # the compile machinery without a C++ build
    torch.manual_seed(0)
    model = USEMA(preset("tiny")).eval()
    image = np.random.default_rng(3).normal(size=(96, 80)).astype(np.float32)
    plain, compiled = ArraySink(3, image.shape), ArraySink(3, image.shape)
    list(predict_tiles(model, _source(image), plain, TilingConfig(tile=64, device="cpu")))
    list(predict_tiles(model, _source(image), compiled, TilingConfig(tile=64, device="cpu", compile=True)))
    np.testing.assert_allclose(plain.out, compiled.out, atol=1e-5)
    assert not hasattr(model, "_orig_mod")  # the network itself was not replaced


def test_precision_auto_is_bf16_only_where_the_device_computes_it(monkeypatch) -> None:
    from napari_usema.inference import devices

    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert devices.uses_bf16(cpu) and devices.precision_used("cpu") == "bf16"
    assert not devices.uses_bf16(cpu, "fp32") and devices.precision_used("cpu", "fp32") == "fp32"
    assert not devices.uses_bf16(cpu, training=True)  # CPU training stays fp32
    assert not devices.uses_bf16(torch.device("mps"))
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)  # emulated bf16 would be slower
    assert not devices.uses_bf16(cpu) and devices.precision_used("cpu") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda **_: True)
    assert devices.uses_bf16(torch.device("cuda"), training=True)
    with pytest.raises(ValueError, match="precision must be one of auto, fp32"):
        devices.uses_bf16(cpu, "fp16")
    with pytest.raises(ValueError, match="precision must be one of auto, fp32; got 'bf16'"):
        TilingConfig(precision="bf16")


def test_bf16_on_a_cpu_that_has_it_runs_the_network_in_bf16_close_to_fp32(monkeypatch) -> None:
    from napari_usema.inference import devices
    from napari_usema.model import USEMA, preset

    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)  # whatever this CPU is
    torch.manual_seed(0)
    model = USEMA(preset("tiny")).eval()
    seen: list[torch.dtype] = []
    model.encoder[0].convs[0].conv1.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    image = np.random.default_rng(3).normal(size=(96, 80)).astype(np.float32)
    sinks = {}
    for precision in ("auto", "fp32"):
        sinks[precision] = ArraySink(3, image.shape)
        list(predict_tiles(model, _source(image), sinks[precision], TilingConfig(tile=64, device="cpu", precision=precision)))
    assert seen[0] == torch.bfloat16 and seen[-1] == torch.float32  # auto ran bf16, fp32 did not
    assert sinks["auto"].out.dtype == np.float32
    np.testing.assert_allclose(sinks["auto"].out, sinks["fp32"].out, atol=0.03)  # probabilities, bf16's 3 digits
    assert not np.array_equal(sinks["auto"].out, sinks["fp32"].out)
