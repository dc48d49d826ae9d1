"""The USEMA network: shapes, gradients, attention equivalences, RoPE, padding, presets."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_usema.model import USEMA, SEMAAttention, build_model, count_parameters, preset
from napari_usema.model.attention import full_attention_reference
from napari_usema.model.layers import RoPE2d, window_partition, window_reverse


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("channels", [1, 3])
def test_output_and_deep_supervision_shapes_for_odd_sizes(channels: int) -> None:
    model = build_model(preset("tiny", in_channels=channels, out_channels=4))
    x = torch.randn(2, channels, 97, 131)
    assert model(x).shape == (2, 4, 97, 131)
    outs = model(x, deep_supervision=True)
    assert [tuple(o.shape) for o in outs] == [(2, 4, 97, 131), (2, 4, 49, 66)]


def test_tiny_inputs_work() -> None:
    model = build_model(preset("tiny")).train()  # InstanceNorm in training mode needs > 1 value
    assert model(torch.randn(1, 1, 1, 1)).shape == (1, 3, 1, 1)


def test_wrong_channel_count_is_a_clear_error() -> None:
    model = build_model(preset("tiny", in_channels=3))
    with pytest.raises(ValueError, match=r"expected input of shape \(B, 3, H, W\)"):
        model(torch.randn(1, 1, 32, 32))


def test_gradients_reach_every_parameter() -> None:
    model = build_model(preset("tiny", in_channels=3))
    outs = model(torch.randn(2, 3, 40, 36), deep_supervision=True)
    sum(o.square().mean() for o in outs).backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert silent == []


def test_window_partition_round_trip() -> None:
    x = torch.randn(2, 8, 12, 5)
    windows = window_partition(x, 4)
    assert windows.shape == (2 * 2 * 3, 16, 5)
    assert torch.equal(window_reverse(windows, 4, 8, 12), x)
    # The first window holds the top-left 4x4 tokens in row-major order.
    assert torch.equal(windows[0], x[0, :4, :4].reshape(16, 5))


def _qkv(attn: SEMAAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k (after RoPE) and v as (B, heads, N, d), computed independently of the module's forward."""
    b, h, w, _ = x.shape
    q, k = attn.qk(x).chunk(2, dim=-1)
    shape = (b, h, w, attn.num_heads, attn.head_dim)
    q, k = attn.rope(q.reshape(shape)), attn.rope(k.reshape(shape))
    v = x.reshape(shape)
    return tuple(t.reshape(b, h * w, attn.num_heads, attn.head_dim).transpose(1, 2) for t in (q, k, v))


def _lepe(attn: SEMAAttention, x: torch.Tensor) -> torch.Tensor:
    return attn.lepe(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def test_one_window_without_mean_equals_full_softmax_attention() -> None:
    attn = SEMAAttention(16, 2, window_size=8, global_mean=False)
    x = torch.randn(2, 8, 8, 16)
    q, k, v = _qkv(attn, x)
    expected = full_attention_reference(q, k, v).transpose(1, 2).reshape(2, 8, 8, 16) + _lepe(attn, x)
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)
    # The bottleneck's full mode is the same computation.
    full = SEMAAttention(16, 2, window_size=8, mode="full", global_mean=False)
    full.load_state_dict(attn.state_dict())
    torch.testing.assert_close(full(x), expected, rtol=1e-5, atol=1e-5)


def test_global_term_is_the_mean_of_v_over_real_tokens() -> None:
    with_mean = SEMAAttention(8, 1, window_size=4, global_mean=True)
    without = SEMAAttention(8, 1, window_size=4, global_mean=False)
    without.load_state_dict(with_mean.state_dict())
    x = torch.randn(1, 6, 7, 8)
    valid = (5, 6)
    diff = with_mean(x, valid) - without(x, valid)  # (1, 6, 7, 8), the same vector at every token
    expected = x[:, :5, :6].mean(dim=(1, 2))  # mean over the real tokens only
    torch.testing.assert_close(diff[0, 2, 3], expected[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(diff[0, 0, 0], diff[0, 4, 5])


def test_fused_and_explicit_paths_agree_and_window_rows_sum_to_one() -> None:
    attn = SEMAAttention(16, 2, window_size=4)
    x = torch.randn(2, 10, 9, 16)
    fused = attn(x, (9, 7))
    explicit, weights = attn(x, (9, 7), return_weights=True)
    torch.testing.assert_close(fused[:, :9, :7], explicit[:, :9, :7], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(weights.scores.sum(-1), torch.ones_like(weights.scores.sum(-1)))
    assert weights.mean_weight == pytest.approx(1 / 63)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_without_autograd_gives_the_values_of_the_autograd_path(dtype: torch.dtype) -> None:
    rope = RoPE2d(8)
    x = torch.randn(2, 5, 7, 3, 8).to(dtype).requires_grad_()
    with_grad = rope(x)  # the concatenating path, which autograd can differentiate
    with torch.inference_mode():
        written_in_place = rope(x.detach())
    assert written_in_place.dtype == dtype
    torch.testing.assert_close(written_in_place, with_grad.detach(), rtol=0, atol=0)


def test_rope_scores_depend_only_on_the_offset() -> None:
    rope = RoPE2d(8)
    q, k = torch.randn(8), torch.randn(8)
    grid_q = q.expand(1, 20, 20, 1, 8).contiguous()
    grid_k = k.expand(1, 20, 20, 1, 8).contiguous()
    rq, rk = rope(grid_q)[0, :, :, 0], rope(grid_k)[0, :, :, 0]  # (20, 20, 8)

    def score(p: tuple[int, int], p2: tuple[int, int]) -> float:
        return float(rq[p] @ rk[p2])

    assert score((3, 4), (1, 1)) == pytest.approx(score((13, 15), (11, 12)), abs=1e-4)
    assert score((0, 7), (5, 2)) == pytest.approx(score((10, 17), (15, 12)), abs=1e-4)
    assert score((3, 4), (1, 1)) != pytest.approx(score((3, 4), (1, 2)), abs=1e-4)


def test_rope_tables_never_enter_checkpoints() -> None:
    model = build_model(preset("tiny"))
    assert not any("inv_freq" in k for k in model.state_dict())


def test_padding_does_not_change_outputs_at_real_tokens() -> None:
    attn = SEMAAttention(16, 2, window_size=4)
    x = torch.randn(1, 9, 11, 16)
    reference = attn(x)  # padded to 12x12 internally and masked
    garbage = torch.randn(1, 16, 16, 16) * 100
    garbage[:, :9, :11] = x
    padded = attn(garbage, (9, 11))
    torch.testing.assert_close(padded[:, :9, :11], reference, rtol=1e-4, atol=1e-4)


def test_full_mode_masks_padding_too() -> None:
    attn = SEMAAttention(16, 2, window_size=4, mode="full")
    x = torch.randn(1, 5, 6, 16)
    garbage = torch.randn(1, 8, 8, 16) * 100
    garbage[:, :5, :6] = x
    torch.testing.assert_close(attn(garbage, (5, 6))[:, :5, :6], attn(x), rtol=1e-4, atol=1e-4)


def test_global_mean_switch_changes_the_network() -> None:
    torch.manual_seed(1)
    a = build_model(preset("tiny", global_mean=True))
    b = build_model(preset("tiny", global_mean=False))
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 1, 32, 32)
    assert not torch.allclose(a(x), b(x))


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [("paper", 52e6 * 0.9, 52e6 * 1.1), ("paper-w32", 52e6 * 0.9, 52e6 * 1.1), ("small", 1e6, 8e6), ("tiny", 1, 100e3)],
)
def test_preset_parameter_counts(name: str, low: float, high: float) -> None:
    assert low <= count_parameters(build_model(preset(name))) <= high


def test_paper_presets_differ_only_in_window() -> None:
    assert preset("paper").replace(window_size=32) == preset("paper-w32")


def test_unknown_preset_names_the_choices() -> None:
    with pytest.raises(ValueError, match="paper, paper-w32, small, tiny"):
        preset("huge")


@settings(max_examples=15, deadline=None)
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    window=st.sampled_from([2, 4, 8]),
    pad_h=st.integers(0, 6),
    pad_w=st.integers(0, 6),
)
def test_property_window_attention_is_padding_invariant(h: int, w: int, window: int, pad_h: int, pad_w: int) -> None:
    torch.manual_seed(0)
    attn = SEMAAttention(8, 2, window_size=window)
    x = torch.randn(1, h, w, 8)
    big = torch.randn(1, h + pad_h, w + pad_w, 8)
    big[:, :h, :w] = x
    out = attn(big, (h, w))
    assert out.shape == big.shape
    torch.testing.assert_close(out[:, :h, :w], attn(x), rtol=1e-4, atol=1e-4)


@settings(max_examples=8, deadline=None)
@given(h=st.integers(1, 70), w=st.integers(1, 70), window=st.sampled_from([2, 4, 8]))
def test_property_network_keeps_any_size(h: int, w: int, window: int) -> None:
    model: USEMA = build_model(preset("tiny", window_size=window)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, h, w)).shape == (1, 3, h, w)


def test_the_fast_cpu_blocks_compute_what_they_replace() -> None:
    """The channels-last InstanceNorm, the folded CPE residual and the joint q/k RoPE against the plain ops."""
    import torch.nn.functional as F

    from napari_usema.model.blocks import InstanceNorm2d, depthwise_conv, plus_depthwise
    from napari_usema.model.layers import RoPE2d

    torch.manual_seed(0)
    x = 5 + torch.randn(2, 8, 24, 20)  # a mean well above the spread: the one-pass variance's hard case
    norm = InstanceNorm2d(8, affine=True)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    expected = F.instance_norm(x, weight=norm.weight, bias=norm.bias, eps=norm.eps)
    with torch.no_grad():
        for layout in (torch.contiguous_format, torch.channels_last):
            assert torch.allclose(norm(x.contiguous(memory_format=layout)), expected, atol=1e-4)
    conv = depthwise_conv(8)
    assert torch.allclose(plus_depthwise(conv, x), x + conv(x), atol=1e-5)
    rope = RoPE2d(16)
    q, k = torch.randn(2, 6, 5, 2, 16), torch.randn(2, 6, 5, 2, 16)  # (B, H, W, heads, d)
    joint = rope(torch.cat([q, k], dim=3))
    assert torch.allclose(joint[:, :, :, :2], rope(q)) and torch.allclose(joint[:, :, :, 2:], rope(k))
    cos, sin = rope.angles(6, 5, x.device)
    x1, x2 = q.chunk(2, dim=-1)
    c, s = cos[:, :, None], sin[:, :, None]
    assert torch.allclose(rope(q), torch.cat([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1), atol=1e-6)  # RoFormer's rotation


def test_rope_compiles_as_one_graph_in_inference() -> None:
    """Graph capture takes the concatenating path: out= into a half of a tensor would split the graph."""
    rope = RoPE2d(8)
    x = torch.randn(1, 4, 5, 2, 8)
    compiled = torch.compile(rope, backend="eager", fullgraph=True)
    with torch.inference_mode():
        torch.testing.assert_close(compiled(x), rope(x), rtol=0, atol=0)
