"""Attention capture and dispersion statistics: known answers and consistency with the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_usema.analysis.attention_maps import capture_weights, query_attention, stack_maps
from napari_usema.analysis.dispersion import experiment, measure, row_statistics
from napari_usema.analysis.dispersion_report import write_report
from napari_usema.model import AttentionTap, build_model, preset


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = build_model(preset("tiny", window_size=4)).eval()
    for stage in m.encoder:  # sharpen attention so the maps are not uniform
        stage.sema.attn.qk.weight.data *= 8
    return m


def test_uniform_rows_have_entropy_one_and_n_max_one() -> None:
    stats = row_statistics(np.full((5, 64), 1 / 64))
    assert stats["normalized_entropy"] == pytest.approx(1.0)
    assert stats["n_times_max"] == pytest.approx(1.0)
    assert stats["near_uniform_fraction"] == pytest.approx(1.0)
    assert sum(stats["histogram"]) == 5 * 64


def test_one_hot_rows_have_entropy_zero_and_n_max_n() -> None:
    rows = np.zeros((3, 50))
    rows[np.arange(3), [0, 7, 49]] = 1
    stats = row_statistics(rows)
    assert stats["normalized_entropy"] == pytest.approx(0.0, abs=1e-6)
    assert stats["n_times_max"] == pytest.approx(50.0)
    assert stats["near_uniform_fraction"] == pytest.approx(0.0)


def test_window_maps_sum_to_one_inside_the_query_window_only(model) -> None:
    image = np.random.default_rng(0).normal(size=(1, 37, 45)).astype(np.float32)
    stages = query_attention(model, image, (10, 21))
    first = stages[0]
    assert first.kind == "window" and first.scores.shape == (1, 37, 45)  # tiny: 8 channels, head_dim 8: one head
    for head in first.scores:
        assert head.sum() == pytest.approx(1.0, abs=1e-5)  # stage 0: one pixel per token
        ys, xs = np.nonzero(head)
        assert ys.min() >= 8 and ys.max() < 12 and xs.min() >= 20 and xs.max() < 24  # the 4x4 window of (10, 21)
    deeper = stages[1]
    assert deeper.scores.sum(axis=(1, 2)) / 4 == pytest.approx(np.ones(len(deeper.scores)), abs=1e-4)
    assert stages[-1].kind == "full" and stages[0].mean_weight == pytest.approx(1 / (37 * 45))
    stack, names = stack_maps(stages, effective=True)
    assert stack.shape[0] == len(names) == sum(len(s.scores) for s in stages)
    assert np.allclose(stack[0], stages[0].scores[0] + stages[0].mean_weight)


def test_capture_is_consistent_with_the_models_own_output(model) -> None:
    x = torch.randn(1, 1, 30, 26)
    captured: dict[int, object] = {}
    with torch.no_grad():
        fused = model(x)
        explicit = model(x, tap=AttentionTap(on_weights=captured.__setitem__))
    torch.testing.assert_close(fused, explicit, rtol=1e-4, atol=1e-5)
    assert sorted(captured) == list(range(len(model.encoder)))
    weights = capture_weights(model, x[0].numpy())
    assert [w.scores.shape for w in weights] == [captured[s].scores.shape for s in sorted(captured)]
    assert all(w.scores.sum(-1).allclose(torch.ones(())) for w in weights)
    with torch.no_grad():
        assert torch.equal(model(x), fused)  # capture leaves the network and its default path untouched


def test_full_attention_disperses_more_than_windows(model) -> None:
    image = np.random.default_rng(1).normal(size=(1, 32, 32)).astype(np.float32)
    sema = measure(model, image, full=False)
    full = measure(model, image, full=True)
    assert sema[0]["keys_per_row"] == 16 and full[0]["keys_per_row"] == 32 * 32
    assert full[0]["heads"][0]["n_times_max"] < 32 * 32
    steps = list(experiment(model, image, [8, 16, 32], budget_s=60))
    assert [s.crop for s in steps] == [8, 16, 32] and all(s.full is not None for s in steps)


def test_report_files(model, tmp_path: Path) -> None:
    image = np.random.default_rng(2).normal(size=(1, 32, 32)).astype(np.float32)
    steps = list(experiment(model, image, [8, 16, 32], budget_s=60))
    points = {(5, 7): query_attention(model, image, (5, 7))}
    paths = write_report(tmp_path, steps, {"test": True}, points)
    assert {p.name for p in paths} == {"dispersion.json", "dispersion_vs_n.png", "dispersion_histogram.png", "attention_5_7.tif"}
    with pytest.raises(FileExistsError):
        write_report(tmp_path, steps, {}, points)


def test_attention_inputs_follow_the_models_input_scale() -> None:
    from napari_usema.analysis.attention_maps import at_model_scale

    chw = np.random.default_rng(0).random((3, 64, 80)).astype(np.float32)
    same, points = at_model_scale(chw, 1.0, [(10, 20)])
    assert same is chw and points == [(10, 20)]
    half, points = at_model_scale(chw, 0.5, [(10, 21), (63, 79)])
    assert half.shape == (3, 32, 40) and points == [(5, 10), (31, 39)]
    np.testing.assert_allclose(half[:, 0, 0], chw[:, :2, :2].mean(axis=(1, 2)), rtol=1e-5)  # area average
