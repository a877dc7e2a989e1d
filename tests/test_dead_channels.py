"""Channels whose weights are all zero (pruned filters): the lowering rewrites their requantization
to one every kernel takes (edgekit.lower.conv.settle_dead_channels), and each output byte stays
what TFLite's arithmetic gives with the converter's own (extreme) constants."""
from __future__ import annotations

import numpy as np
import pytest

from edgekit.ir import Graph, Op, Tensor
from edgekit.lower.conv import DEAD_CHANNEL_MULT, DEAD_CHANNEL_SHIFT, settle_dead_channels
from edgekit.lower.quant import quantize_multiplier, requantize


@pytest.mark.parametrize("seed", range(4))
def test_settled_channels_give_the_same_byte(seed):
    rng = np.random.default_rng(seed)
    n = 400
    bias = rng.integers(-2 ** 31, 2 ** 31, n, dtype=np.int64)
    bias[:50] = rng.integers(-300, 300, 50)                   # small biases, outputs inside the range
    mults = rng.integers(2 ** 30, 2 ** 31, n, dtype=np.int64)
    shifts = rng.integers(-31, 2, n, dtype=np.int64)
    dead = rng.random(n) < 0.7
    zp = int(rng.integers(-128, 128))
    lo, hi = sorted(rng.integers(-128, 128, 2))
    before = [min(max(requantize(int(b), int(m), int(s)) + zp, lo), hi) for b, m, s in zip(bias, mults, shifts)]
    m2, s2 = mults.copy(), shifts.copy()
    b2 = settle_dead_channels(dead, bias, m2, s2, zp, int(lo), int(hi))
    after = [min(max(requantize(int(b), int(m), int(s)) + zp, lo), hi) for b, m, s in zip(b2, m2, s2)]
    assert before == after
    assert np.all(m2[dead] == DEAD_CHANNEL_MULT) and np.all(s2[dead] == DEAD_CHANNEL_SHIFT)
    assert np.array_equal(m2[~dead], mults[~dead]) and np.array_equal(b2[~dead], bias[~dead])
    assert np.abs(b2[dead]).max() <= 32 * 255


def test_no_bias_needs_none_when_every_dead_output_is_the_zero_point():
    m, s = np.array([2 ** 30], np.int64), np.array([-30], np.int64)
    assert settle_dead_channels(np.array([True]), None, m, s, -128, -128, 127) is None
    m, s = np.array([2 ** 30], np.int64), np.array([-30], np.int64)
    assert settle_dead_channels(np.array([True]), None, m, s, 5, 10, 127).tolist() == [32 * 5]  # clamped up


def _dw_graph(c: int, dead: list[int]):
    """A 3x3 DEPTHWISE_CONV_2D (6x6xC input, VALID) whose `dead` channels are as the converter
    writes a pruned filter: zero weights, a weight scale of 3e-8 (a shift of -25), a bias near 2^30
    (outputs 20 and 10 steps above the zero point)."""
    rng = np.random.default_rng(7)
    f32 = lambda *v: np.array(v, np.float32)  # noqa: E731
    w = rng.integers(-127, 128, (1, 3, 3, c)).astype(np.int8)
    w_scales = rng.uniform(0.005, 0.02, c).astype(np.float32)
    bias = rng.integers(-2000, 2000, c).astype(np.int32)
    for i, d in enumerate(dead):
        w[..., d] = 0
        w_scales[d] = 3e-8
        bias[d] = 2 ** 30 // (i + 1)
    tensors = [Tensor(0, "x", (1, 6, 6, c), "int8", f32(0.05), np.array([3])),
               Tensor(1, "w", (1, 3, 3, c), "int8", w_scales, np.zeros(c, np.int64), quant_dim=3, data=w),
               Tensor(2, "b", (c,), "int32", w_scales * np.float32(0.05), np.zeros(c, np.int64), data=bias),
               Tensor(3, "y", (1, 4, 4, c), "int8", f32(0.08), np.array([-6]))]
    op = Op("DEPTHWISE_CONV_2D", [0, 1, 2], [3], {"padding": "VALID", "strideH": 1, "strideW": 1,
                                                 "dilationHFactor": 1, "dilationWFactor": 1, "depthMultiplier": 1,
                                                 "activation": "RELU"})
    return Graph(tensors, [op], [0], [3]), w, w_scales, bias


def _dw_reference(x, w, w_scales, bias):
    """TFLite's per-channel depthwise arithmetic with the graph's own constants, in Python ints."""
    out = np.zeros((1, 4, 4, w.shape[-1]), np.int8)
    for c in range(w.shape[-1]):
        mult, shift = quantize_multiplier(float(np.float32(0.05)) * float(w_scales[c]) / float(np.float32(0.08)))
        for y in range(4):
            for x_ in range(4):
                acc = int(bias[c]) + sum((int(x[0, y + i, x_ + j, c]) - 3) * int(w[0, i, j, c])
                                         for i in range(3) for j in range(3))
                acc = (acc + 2 ** 31) % 2 ** 32 - 2 ** 31
                out[0, y, x_, c] = min(max(requantize(acc, mult, shift) - 6, -6), 127)
    return out


def test_depthwise_with_pruned_filters_takes_the_fast_kernel_and_keeps_every_byte():
    from edgekit.lower.program import lower
    from edgekit.run.intref import IntReference
    from edgekit.targets import get_target
    graph, w, w_scales, bias = _dw_graph(8, dead=[2, 5])
    steps = lower(graph, get_target("cortex-m4")).steps
    assert [s.call.kernel for s in steps] == ["ek_dwconv_s8_3x3_fold_dsp"]
    x = np.random.default_rng(1).integers(-128, 128, (1, 6, 6, 8)).astype(np.int8)
    got = np.asarray(IntReference(lower(graph, None)).run(x)).reshape(1, 4, 4, 8)
    assert np.array_equal(got, _dw_reference(x, w, w_scales, bias))
    assert set(got[..., 2].ravel().tolist()) == {-6 + 20} and set(got[..., 5].ravel().tolist()) == {-6 + 10}
