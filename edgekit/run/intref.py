"""edgekit's own integer reference: a lowered Program executed in Python, kernel call by kernel
call, computing exactly what the C reference kernels compute (firmware/kernels/ek_*_s8.c).

    ref = IntReference(lower(graph, None))      # the portable lowering: ek_<op>_s8 and its params
    y = ref.run(x)                               # int8 [N, *input] -> int8 [N, *output] (a list
                                                 # of them, one per output, for several outputs)
    for step, tensor, layer, values in ref.run_traced(x[0]): ...

It runs the KernelCalls the C runs (same params, same constant arrays), not the TFLite graph, so
it is the reference for everything TFLite's interpreter cannot express, and it checks the C
kernels from a second, independent implementation of the same integer specification: int32
accumulators wrapping modulo 2^32, the two requantizations of ek_common.h (ek_requantize double
rounding, ek_requantize_1r single rounding, ek_requantize_lt1), gemmlowp's fixed point
(ek_fixedpoint.h) for SOFTMAX, the export-time tables for LOGISTIC/TANH, C's truncating division
for average pooling.

How it runs: every tensor storage group (a tensor and its RESHAPE aliases) gets its own int8
buffer [N, bytes], so the memory plan plays no part; each kernel is a numba function over the
whole batch (one call per layer, not per sample). Pure data movement (copy, concatenation) is a
numpy slice assignment. Kernel name -> binder in one table, KERNELS; a binder turns one
KernelCall into a function (inputs, output) -> None with the params and arrays bound once.

Compiled kernels are cached on disk (numba cache=True: beside this file, or in the user's cache
directory when the installation is read-only); where no cache location is writable they are
compiled in memory at first use instead.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, NamedTuple

import numba
import numpy as np

from edgekit.errors import EdgekitError, UnsupportedModelError
from edgekit.lower import LOWERINGS, Alias
from edgekit.lower.base import ArrayArg, ArrayRef, ConstArray, KernelCall, ScratchArg, TensorArg, TensorListArg
from edgekit.lower.program import Program
from edgekit import formats
from edgekit.lower import kernels as registry


def _jit(fn):
    """numba.njit with an on-disk cache when numba finds a writable place for one."""
    try:
        return numba.njit(cache=True)(fn)
    except RuntimeError:           # "cannot cache function ...: no locator available"
        return numba.njit(fn)


INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

# --------------------------------------------------------------------------
# Integer helpers: ek_common.h and ek_fixedpoint.h, on int64 values holding int32 ones
# --------------------------------------------------------------------------


@_jit
def _wrap32(x):
    """x modulo 2^32 as a signed int32 value (C's int32 wrap-around)."""
    return ((x + 2147483648) & 4294967295) - 2147483648


@_jit
def _trunc_div(a, b):
    """C's a / b for b > 0: the quotient truncated towards zero."""
    q = abs(a) // b
    return q if a >= 0 else -q


@_jit
def _clamp(x, lo, hi):
    return lo if x < lo else (hi if x > hi else x)


@_jit
def _srdhm(a, b):
    """ek_srdhm: round(a * b / 2^31) half away from zero; INT32_MIN^2 saturates."""
    if a == -2147483648 and b == -2147483648:
        return 2147483647
    ab = a * b
    nudge = 1073741824 if ab >= 0 else 1 - 1073741824
    return _trunc_div(ab + nudge, 2147483648)


@_jit
def _rdivpot(x, exponent):
    """ek_rdivpot: rounding arithmetic right shift by 0..31, ties away from zero."""
    mask = _wrap32((1 << exponent) - 1)
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


@_jit
def _shl_wrap(x, shift):
    """ek_shl_wrap: x * 2^shift in 32 bits, wrapping."""
    return _wrap32(x << shift)


@_jit
def _requantize(x, multiplier, shift):
    """ek_requantize: TFLite's MultiplyByQuantizedMultiplier (double rounding)."""
    left = shift if shift > 0 else 0
    right = 0 if shift > 0 else -shift
    return _rdivpot(_srdhm(_shl_wrap(x, left), multiplier), right)


@_jit
def _requantize_lt1(x, multiplier, shift):
    """ek_requantize_lt1: MultiplyByQuantizedMultiplierSmallerThanOneExp (shift <= 0)."""
    return _rdivpot(_srdhm(x, multiplier), -shift)


@_jit
def _requantize_1r(x, multiplier, shift):
    """ek_requantize_1r: single rounding, (x*M + 2^(30-s)) >> (31-s) in 64 bits."""
    total_shift = 31 - shift
    return _wrap32((x * multiplier + (1 << (total_shift - 1))) >> total_shift)


@_jit
def _fp_mul_pot(x, exponent):
    """ek_fp_mul_pot: gemmlowp SaturatingRoundingMultiplyByPOT."""
    if exponent > 0:
        threshold = (1 << (31 - exponent)) - 1
        if x > threshold:
            return 2147483647
        if x < -threshold:
            return -2147483648
        return _shl_wrap(x, exponent)
    if exponent < 0:
        return _rdivpot(x, -exponent)
    return x


@_jit
def _fp_rounding_half_sum(a, b):
    s = a + b
    return _trunc_div(s + (1 if s >= 0 else -1), 2)


@_jit
def _clz_u32(x):
    if x == 0:
        return 32
    n = 0
    while (x & 0x80000000) == 0:
        x = (x << 1) & 0xFFFFFFFF
        n += 1
    return n


@_jit
def _fp_exp_on_interval_neg_quarter_to_0(a):
    exp_minus_one_eighth = 1895147668
    one_third = 715827883
    x = _wrap32(a + (1 << 28))
    x2 = _srdhm(x, x)
    x3 = _srdhm(x2, x)
    x4 = _srdhm(x2, x2)
    x4_over_4 = _fp_mul_pot(x4, -2)
    poly = _fp_mul_pot(_wrap32(_srdhm(_wrap32(x4_over_4 + x3), one_third) + x2), -1)
    return _wrap32(exp_minus_one_eighth + _srdhm(exp_minus_one_eighth, _wrap32(x + poly)))


_EXP_NEG_POW2 = np.array([1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242],
                         dtype=np.int64)


@_jit
def _fp_exp_on_negative_values(a, integer_bits, exp_neg_pow2):
    """ek_fp_exp_on_negative_values: exp(a) for a <= 0 in Q(integer_bits), result in Q0."""
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    a_mod_quarter_minus_quarter = _wrap32((a & (one_quarter - 1)) - one_quarter)
    remainder = _wrap32(a_mod_quarter_minus_quarter - a)
    result = _fp_exp_on_interval_neg_quarter_to_0(
        _fp_mul_pot(a_mod_quarter_minus_quarter, integer_bits))
    for k in range(-2, 5):
        if integer_bits > k:
            bit = 1 << (fractional_bits + k)
            if (remainder & bit) != 0:
                result = _srdhm(result, exp_neg_pow2[k + 2])
    if integer_bits > 5:
        if a < -(1 << (36 - integer_bits)):
            result = 0
    if a == 0:
        result = 2147483647
    return result


@_jit
def _fp_one_over_one_plus_x(a):
    q2_one = 1 << 29
    half_denominator = _fp_rounding_half_sum(a, 2147483647)
    x = _wrap32(1515870810 + _srdhm(half_denominator, -1010580540))
    for _ in range(3):
        half_denominator_times_x = _srdhm(half_denominator, x)
        one_minus = _wrap32(q2_one - half_denominator_times_x)
        x = _wrap32(x + _fp_mul_pot(_srdhm(x, one_minus), 2))
    return _fp_mul_pot(x, 1)


# --------------------------------------------------------------------------
# Kernels: one per C reference kernel, each over a batch (first axis) of flat int8 tensors
# --------------------------------------------------------------------------


@_jit
def _conv2d_s8(x, out, w, bias, has_bias, mult, shift, in_h, in_w, in_c, out_h, out_w, out_c,
               k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left,
               input_offset, output_offset, act_min, act_max):
    """ek_conv2d_s8 (ek_conv2d.h). Each output pixel's patch of in + input_offset values is
    gathered first (taps outside the input give 0: they add nothing, as the C skips them), then
    every output channel is one int32 dot product with its filter row, wrapping like C's int32
    accumulator (the order of the additions does not change a sum modulo 2^32)."""
    patch_len = k_h * k_w * in_c
    patch = np.empty(patch_len, np.int32)
    offset = np.int32(input_offset)
    for n in range(x.shape[0]):
        for y in range(out_h):
            iy0 = y * stride_h - pad_top
            for xo in range(out_w):
                ix0 = xo * stride_w - pad_left
                j = 0
                for ky in range(k_h):
                    iy = iy0 + ky * dil_h
                    for kx in range(k_w):
                        ix = ix0 + kx * dil_w
                        if iy < 0 or iy >= in_h or ix < 0 or ix >= in_w:
                            for i in range(in_c):
                                patch[j + i] = 0
                        else:
                            px = (iy * in_w + ix) * in_c
                            for i in range(in_c):
                                patch[j + i] = np.int32(x[n, px + i]) + offset
                        j += in_c
                base = (y * out_w + xo) * out_c
                for o in range(out_c):
                    row = o * patch_len
                    acc = bias[o] if has_bias else np.int32(0)
                    for k in range(patch_len):
                        acc = np.int32(acc + np.int32(patch[k] * np.int32(w[row + k])))
                    v = _requantize(np.int64(acc), mult[o], shift[o]) + output_offset
                    out[n, base + o] = _clamp(v, act_min, act_max)


@_jit
def _dwconv_s8(x, out, w, bias, has_bias, mult, shift, in_h, in_w, in_c, out_h, out_w, out_c, ch_mult,
               k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left,
               input_offset, output_offset, act_min, act_max):
    """ek_dwconv_s8 (ek_dwconv.h): output channel o reads input channel o / ch_mult; taps outside
    the input are skipped. The int32 accumulators of all channels of a pixel advance tap by tap
    (the same sums modulo 2^32 as the C's channel-by-channel loop)."""
    acc = np.empty(out_c, np.int32)
    offset = np.int32(input_offset)
    for n in range(x.shape[0]):
        for y in range(out_h):
            iy0 = y * stride_h - pad_top
            for xo in range(out_w):
                ix0 = xo * stride_w - pad_left
                for o in range(out_c):
                    acc[o] = bias[o] if has_bias else np.int32(0)
                for ky in range(k_h):
                    iy = iy0 + ky * dil_h
                    if iy < 0 or iy >= in_h:
                        continue
                    for kx in range(k_w):
                        ix = ix0 + kx * dil_w
                        if ix < 0 or ix >= in_w:
                            continue
                        px = (iy * in_w + ix) * in_c
                        tap = (ky * k_w + kx) * out_c
                        if ch_mult == 1:
                            for o in range(out_c):
                                acc[o] = np.int32(acc[o] + np.int32((np.int32(x[n, px + o]) + offset)
                                                                    * np.int32(w[tap + o])))
                        else:
                            for o in range(out_c):
                                acc[o] = np.int32(acc[o] + np.int32((np.int32(x[n, px + o // ch_mult]) + offset)
                                                                    * np.int32(w[tap + o])))
                base = (y * out_w + xo) * out_c
                for o in range(out_c):
                    v = _requantize(np.int64(acc[o]), mult[o], shift[o]) + output_offset
                    out[n, base + o] = _clamp(v, act_min, act_max)


@_jit
def _fc_s8(x, out, w, bias, has_bias, mult, shift, rows, in_n, out_n, input_offset, weight_offset,
           output_offset, act_min, act_max, double_round):
    """ek_fc_s8 (ek_fc.h): int32 accumulator (wrapping), then single rounding
    (ek_requantize_1r), or ek_requantize when params.double_round is 1."""
    in_off, w_off = np.int32(input_offset), np.int32(weight_offset)
    for n in range(x.shape[0]):
        for r in range(rows):
            row = r * in_n
            for o in range(out_n):
                wr = o * in_n
                acc = bias[o] if has_bias else np.int32(0)
                for i in range(in_n):
                    acc = np.int32(acc + np.int32((np.int32(x[n, row + i]) + in_off)
                                                  * (np.int32(w[wr + i]) + w_off)))
                if double_round:
                    v = _requantize(np.int64(acc), mult[o], shift[o])
                else:
                    v = _requantize_1r(np.int64(acc), mult[o], shift[o])
                out[n, r * out_n + o] = _clamp(v + output_offset, act_min, act_max)


@_jit
def _pool_s8(x, out, average, in_h, in_w, c, out_h, out_w, k_h, k_w, stride_h, stride_w,
             pad_top, pad_left, act_min, act_max):
    """ek_avgpool_s8 (average: sum / count rounded half away from zero by C's truncating
    division) and ek_maxpool_s8 (-128 for an empty window) (ek_pool.h)."""
    for n in range(x.shape[0]):
        for y in range(out_h):
            iy0 = y * stride_h - pad_top
            ky0 = max(0, -iy0)
            ky1 = min(k_h, in_h - iy0)
            for xo in range(out_w):
                ix0 = xo * stride_w - pad_left
                kx0 = max(0, -ix0)
                kx1 = min(k_w, in_w - ix0)
                count = (ky1 - ky0) * (kx1 - kx0)
                for ch in range(c):
                    acc = np.int64(0) if average else np.int64(-128)
                    for ky in range(ky0, ky1):
                        for kx in range(kx0, kx1):
                            v = np.int64(x[n, ((iy0 + ky) * in_w + (ix0 + kx)) * c + ch])
                            if average:
                                acc += v
                            elif v > acc:
                                acc = v
                    if average:
                        acc = _wrap32(acc)
                        half = count // 2
                        if count <= 0:
                            acc = 0
                        elif acc > 0:
                            acc = _trunc_div(acc + half, count)
                        else:
                            acc = _trunc_div(acc - half, count)
                    out[n, (y * out_w + xo) * c + ch] = _clamp(acc, act_min, act_max)


@_jit
def _mean_s8(x, out, gather, input_zero_point, count, multiplier, shift, output_zero_point):
    """ek_mean_s8 (ek_mean.h); gather[j] lists the input indices output j averages."""
    for n in range(x.shape[0]):
        for j in range(gather.shape[0]):
            s = np.int64(0)
            for k in range(gather.shape[1]):
                s += x[n, gather[j, k]]
            shifted = _wrap32(_wrap32(s) - input_zero_point * count)
            v = _requantize(shifted, multiplier, shift) + output_zero_point
            out[n, j] = _clamp(v, -128, 127)


@_jit
def _softmax_exp(diff, input_multiplier, input_left_shift, exp_neg_pow2):
    scaled = _srdhm(_shl_wrap(diff, input_left_shift), input_multiplier)
    return _fp_exp_on_negative_values(scaled, 5, exp_neg_pow2)


@_jit
def _softmax_rdivpot_wide(x, exponent):
    if exponent <= 31:
        return _rdivpot(x, exponent)
    mask = (1 << exponent) - 1 if exponent < 63 else 9223372036854775807
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return _wrap32((x >> exponent) + (1 if remainder > threshold else 0))


@_jit
def _softmax_s8(x, out, rows, depth, input_multiplier, input_left_shift, diff_min, exp_neg_pow2):
    """ek_softmax_s8 (ek_softmax.h): gemmlowp fixed point, as TFLite's reference_ops::Softmax."""
    for n in range(x.shape[0]):
        for r in range(rows):
            base = r * depth
            max_in_row = np.int64(-128)
            for c in range(depth):
                if x[n, base + c] > max_in_row:
                    max_in_row = np.int64(x[n, base + c])
            sum_of_exps = np.int64(0)
            for c in range(depth):
                diff = np.int64(x[n, base + c]) - max_in_row
                if diff >= diff_min:
                    e = _fp_mul_pot(_softmax_exp(diff, input_multiplier, input_left_shift, exp_neg_pow2), -12)
                    sum_of_exps = min(2147483647 - e, sum_of_exps) + e
            headroom_plus_one = _clz_u32(sum_of_exps & 0xFFFFFFFF)
            shifted_minus_one = _wrap32(((sum_of_exps << headroom_plus_one) & 0xFFFFFFFF) - 0x80000000)
            bits_over_unit = 12 - headroom_plus_one
            reciprocal = _fp_one_over_one_plus_x(shifted_minus_one)
            exponent = bits_over_unit + 31 - 8
            for c in range(depth):
                diff = np.int64(x[n, base + c]) - max_in_row
                if diff >= diff_min:
                    e = _softmax_exp(diff, input_multiplier, input_left_shift, exp_neg_pow2)
                    unsat = _softmax_rdivpot_wide(_srdhm(reciprocal, e), exponent)
                    out[n, base + c] = _clamp(unsat - 128, -128, 127)
                else:
                    out[n, base + c] = -128


@_jit
def _lut_s8(x, out, size, table):
    """ek_lut_s8 (ek_lut.h): output[i] = table[input[i] + 128]."""
    for n in range(x.shape[0]):
        for i in range(size):
            out[n, i] = table[np.int64(x[n, i]) + 128]


@_jit
def _requant_s8(x, out, size, input_zero_point, output_offset, mult, shift, act_min, act_max):
    """ek_requant_s8 (ek_requant.h): QUANTIZE int8 -> int8 and standalone RELU / RELU6 / RELU_N1_TO_1."""
    for n in range(x.shape[0]):
        for i in range(size):
            v = _requantize(np.int64(x[n, i]) - input_zero_point, mult, shift) + output_offset
            out[n, i] = _clamp(v, act_min, act_max)


@_jit
def _add_s8(a, b, out, out_dims, in1_strides, in2_strides, input1_offset, input2_offset, output_offset,
            left_shift, input1_mult, input1_shift, input2_mult, input2_shift, output_mult, output_shift,
            act_min, act_max):
    """ek_add_s8 (ek_add.h): both inputs rescaled (left shift 20, multipliers below one), summed,
    requantized, broadcasting by strides of 0."""
    for n in range(a.shape[0]):
        i = 0
        for d0 in range(out_dims[0]):
            for d1 in range(out_dims[1]):
                for d2 in range(out_dims[2]):
                    a_base = d0 * in1_strides[0] + d1 * in1_strides[1] + d2 * in1_strides[2]
                    b_base = d0 * in2_strides[0] + d1 * in2_strides[1] + d2 * in2_strides[2]
                    for d3 in range(out_dims[3]):
                        va = np.int64(a[n, a_base + d3 * in1_strides[3]])
                        vb = np.int64(b[n, b_base + d3 * in2_strides[3]])
                        sa = _requantize_lt1(_shl_wrap(va + input1_offset, left_shift), input1_mult, input1_shift)
                        sb = _requantize_lt1(_shl_wrap(vb + input2_offset, left_shift), input2_mult, input2_shift)
                        v = _requantize_lt1(_wrap32(sa + sb), output_mult, output_shift) + output_offset
                        out[n, i] = _clamp(v, act_min, act_max)
                        i += 1


@_jit
def _pad_s8(x, out, in_dims, out_dims, before, pad_value):
    """ek_pad_s8 (ek_pad.h): input[d - before] inside the input, else pad_value."""
    for n in range(x.shape[0]):
        i = 0
        for d0 in range(out_dims[0]):
            i0 = d0 - before[0]
            for d1 in range(out_dims[1]):
                i1 = d1 - before[1]
                for d2 in range(out_dims[2]):
                    i2 = d2 - before[2]
                    outer = (0 <= i0 < in_dims[0]) and (0 <= i1 < in_dims[1]) and (0 <= i2 < in_dims[2])
                    row = ((i0 * in_dims[1] + i1) * in_dims[2] + i2) * in_dims[3]
                    for d3 in range(out_dims[3]):
                        i3 = d3 - before[3]
                        if outer and 0 <= i3 < in_dims[3]:
                            out[n, i] = x[n, row + i3]
                        else:
                            out[n, i] = pad_value
                        i += 1


# --------------------------------------------------------------------------
# Binding: KernelCall -> a function (inputs, output) with its params and arrays bound
# --------------------------------------------------------------------------

Runner = Callable[[list, np.ndarray], None]
Binder = Callable[[KernelCall], Runner]


def _ints(call: KernelCall, *names: str) -> list[int]:
    """Scalar params fields of the call, by name (a missing field is a lowering bug)."""
    try:
        return [int(call.params[n]) for n in names]
    except KeyError as e:
        raise EdgekitError(f"{call.kernel}: its params have no field {e.args[0]!r}") from None


def _vec(call: KernelCall, name: str) -> np.ndarray:
    return np.asarray(call.params[name], dtype=np.int64)


def _array(call: KernelCall, ref: ArrayArg | ArrayRef | str | None, dtype) -> np.ndarray | None:
    """The values of one of the call's ConstArrays (None for a NULL ArrayArg)."""
    name = ref if isinstance(ref, str) or ref is None else ref.name
    if name is None:
        return None
    for a in call.arrays:
        if a.name == name:
            return np.ascontiguousarray(np.asarray(a.values).reshape(-1), dtype=dtype)
    raise EdgekitError(f"{call.kernel}: it refers to a constant array {name!r} it does not carry")


def _weights_bias(call: KernelCall) -> tuple[np.ndarray, np.ndarray, bool]:
    """args[1] (int8 weights) and args[2] (int32 bias or NULL) of a conv / dwconv / fc call."""
    w = _array(call, call.args[1], np.int8)
    bias = _array(call, call.args[2], np.int32)
    return w, (bias if bias is not None else np.zeros(1, np.int32)), bias is not None


def _quant(call: KernelCall) -> tuple[np.ndarray, np.ndarray]:
    return _array(call, call.params["mult"], np.int32), _array(call, call.params["shift"], np.int32)


def _bind_conv2d(call: KernelCall) -> Runner:
    w, bias, has_bias = _weights_bias(call)
    mult, shift = _quant(call)
    p = _ints(call, "in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w", "stride_h", "stride_w",
              "dil_h", "dil_w", "pad_top", "pad_left", "input_offset", "output_offset", "act_min", "act_max")
    return lambda ins, out: _conv2d_s8(ins[0], out, w, bias, has_bias, mult, shift, *p)


def _bind_dwconv(call: KernelCall) -> Runner:
    w, bias, has_bias = _weights_bias(call)
    mult, shift = _quant(call)
    p = _ints(call, "in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "ch_mult", "k_h", "k_w", "stride_h",
              "stride_w", "dil_h", "dil_w", "pad_top", "pad_left", "input_offset", "output_offset",
              "act_min", "act_max")
    return lambda ins, out: _dwconv_s8(ins[0], out, w, bias, has_bias, mult, shift, *p)


def _bind_fc(call: KernelCall) -> Runner:
    w, bias, has_bias = _weights_bias(call)
    mult, shift = _quant(call)
    p = _ints(call, "rows", "in_n", "out_n", "input_offset", "weight_offset", "output_offset",
              "act_min", "act_max")
    double_round = bool(call.params.get("double_round", 0))
    return lambda ins, out: _fc_s8(ins[0], out, w, bias, has_bias, mult, shift, *p, double_round)


def _bind_pool(average: bool) -> Binder:
    def bind(call: KernelCall) -> Runner:
        p = _ints(call, "in_h", "in_w", "c", "out_h", "out_w", "k_h", "k_w", "stride_h", "stride_w",
                  "pad_top", "pad_left", "act_min", "act_max")
        return lambda ins, out: _pool_s8(ins[0], out, average, *p)
    return bind


def _bind_mean(call: KernelCall) -> Runner:
    ndims, mask, count, izp, mult, shift, ozp = _ints(
        call, "ndims", "reduce_mask", "count", "input_zero_point", "multiplier", "shift", "output_zero_point")
    dims = [int(d) for d in call.params["dims"][:ndims]]
    reduced = [d for d in range(ndims) if (mask >> d) & 1]
    kept = [d for d in range(ndims) if not (mask >> d) & 1]
    # Output j (kept dims in order, last fastest) averages the inputs over the reduced dims.
    gather = np.arange(math.prod(dims), dtype=np.int64).reshape(dims).transpose(kept + reduced)
    gather = np.ascontiguousarray(gather.reshape(-1, count))
    return lambda ins, out: _mean_s8(ins[0], out, gather, izp, count, mult, shift, ozp)


def _bind_softmax(call: KernelCall) -> Runner:
    p = _ints(call, "rows", "depth", "input_multiplier", "input_left_shift", "diff_min")
    return lambda ins, out: _softmax_s8(ins[0], out, *p, _EXP_NEG_POW2)


def _bind_lut(call: KernelCall) -> Runner:
    (size,) = _ints(call, "size")
    table = np.asarray(call.params["table"], dtype=np.int8)
    if table.shape != (256,):
        raise EdgekitError(f"{call.kernel}: its table has {table.size} entries, not 256")
    return lambda ins, out: _lut_s8(ins[0], out, size, table)


def _bind_requant(call: KernelCall) -> Runner:
    p = _ints(call, "size", "input_zero_point", "output_offset", "mult", "shift", "act_min", "act_max")
    return lambda ins, out: _requant_s8(ins[0], out, *p)


def _bind_add(call: KernelCall) -> Runner:
    dims, s1, s2 = _vec(call, "out_dims"), _vec(call, "in1_strides"), _vec(call, "in2_strides")
    p = _ints(call, "input1_offset", "input2_offset", "output_offset", "left_shift", "input1_mult",
              "input1_shift", "input2_mult", "input2_shift", "output_mult", "output_shift", "act_min", "act_max")
    return lambda ins, out: _add_s8(ins[0], ins[1], out, dims, s1, s2, *p)


def _bind_pad(call: KernelCall) -> Runner:
    in_dims, out_dims, before = _vec(call, "in_dims"), _vec(call, "out_dims"), _vec(call, "before")
    (pad_value,) = _ints(call, "pad_value")
    return lambda ins, out: _pad_s8(ins[0], out, in_dims, out_dims, before, pad_value)


def _bind_copy(call: KernelCall) -> Runner:
    """ek_copy_s8: the first `size` bytes (a numpy copy: no arithmetic to reproduce)."""
    (size,) = _ints(call, "size")

    def run(ins, out):
        out[:, :size] = ins[0][:, :size]
    return run


def _bind_concat(call: KernelCall) -> Runner:
    """ek_concat_s8: [outer][axis][inner]; input k gives sizes[k] * inner bytes per outer step."""
    n_inputs, outer, inner, out_axis = _ints(call, "n_inputs", "outer", "inner", "out_axis")
    sizes = [int(s) for s in _array(call, call.params["sizes"], np.int64)]
    if len(sizes) != n_inputs:
        raise EdgekitError(f"{call.kernel}: n_inputs is {n_inputs} but it has {len(sizes)} sizes")

    def run(ins, out):
        dst = out[:, :outer * out_axis * inner].reshape(-1, outer, out_axis * inner)
        at = 0
        for src, size in zip(ins, sizes):
            n = size * inner
            dst[:, :, at:at + n] = src[:, :outer * n].reshape(-1, outer, n)
            at += n
    return run


# The kernels of the portable lowering (edgekit.lower.program.lower(graph, None)): C name -> binder.
KERNELS: dict[str, Binder] = {
    "ek_conv2d_s8": _bind_conv2d,
    "ek_dwconv_s8": _bind_dwconv,
    "ek_fc_s8": _bind_fc,
    "ek_avgpool_s8": _bind_pool(average=True),
    "ek_maxpool_s8": _bind_pool(average=False),
    "ek_mean_s8": _bind_mean,
    "ek_softmax_s8": _bind_softmax,
    "ek_lut_s8": _bind_lut,
    "ek_requant_s8": _bind_requant,
    "ek_add_s8": _bind_add,
    "ek_pad_s8": _bind_pad,
    "ek_copy_s8": _bind_copy,
    "ek_concat_s8": _bind_concat,
}

# ---- compressed weights (edgekit.formats, firmware/kernels/ek_wcode.h) ----------------------
# ek_conv2d_s8_<w>, ek_fc_s8_<w> (w4, lut4, lut8, sparse, huff) and ek_dwconv_s8_w4 hold lossless
# encodings of the int8 weights and compute exactly their int8 kernel on the decoded rows. The
# binder decodes the rows once (formats' Encoded.decode), unfolds the conv / FC bias
# (bias_folded - input_offset * row sum, modulo 2^32: the accumulator is the same int32 value)
# and binds the int8 kernel.

_NOT_WEIGHTS = ("bias", "mult", "shift")      # the call's other arrays are the encoding's

# op -> (prefix of its params fields in the nested struct, int8 kernel, weights arg name, binder)
_WCODE_OPS = {"conv2d": ("conv", "ek_conv2d_s8", "filter", _bind_conv2d),
              "fc": ("fc", "ek_fc_s8", "weights", _bind_fc),
              "dwconv": ("dw", "ek_dwconv_s8", "filter", _bind_dwconv)}


def _bind_compressed(op: str, fmt: str) -> Binder:
    prefix, int8_kernel, weights_name, bind_int8 = _WCODE_OPS[op]

    def bind(call: KernelCall) -> Runner:
        fields = {k.split(".", 1)[1]: v for k, v in call.params.items() if k.startswith("w.")}
        params = {k.split(".", 1)[1]: v for k, v in call.params.items() if k.startswith(prefix + ".")}
        encoding = tuple(a for a in call.arrays if a.name not in _NOT_WEIGHTS)
        enc = formats.Encoded(format=fmt, rows=int(fields["rows"]), row_len=int(fields["row_len"]),
                               arrays=encoding, fields=fields, nbytes=0)
        rows = np.asarray(enc.decode(), dtype=np.int8)
        bias = _array(call, call.args[1], np.int64)
        if op != "dwconv":         # conv and FC format kernels take the folded bias
            unfolded = bias - int(params["input_offset"]) * rows.astype(np.int64).sum(axis=1)
            bias = ((unfolded + (1 << 31)) % (1 << 32)) - (1 << 31)
        arrays = [ConstArray(weights_name, "int8_t", rows.reshape(-1))]
        arrays += [a for a in call.arrays if a.name in ("mult", "shift")]
        if bias is not None:
            arrays.append(ConstArray("bias", "int32_t", bias.astype(np.int32)))
        args = [call.args[0], ArrayArg(weights_name), ArrayArg(None if bias is None else "bias"),
                call.args[call.output_arg]]
        int8_call = KernelCall(kernel=int8_kernel, params=params,
                               args=args, arrays=arrays)
        return bind_int8(int8_call)
    return bind


def _compressed_kernels() -> dict[str, Binder]:
    """Every portable compressed-weights kernel of the registry (edgekit.lower.kernels)."""
    return {k.name: _bind_compressed(k.op, k.weights) for k in registry.KERNELS.values()
            if k.weights not in ("", "int8") and not k.dsp}


KERNELS.update(_compressed_kernels())


# --------------------------------------------------------------------------
# The executor
# --------------------------------------------------------------------------


class TracedLayer(NamedTuple):
    step: int              # position of the kernel call in the program (model.c's layer index)
    tensor: int            # index of the tensor it writes
    layer: str             # e.g. "CONV_2D 'model/conv2d/Relu' (ek_conv2d_s8)"
    values: np.ndarray     # int8, the tensor's shape (a leading batch axis for trace_batch)


class IntReference:
    """Runs a lowered Program (the portable lowering, lower(graph, None)) bit for bit as the C
    reference kernels do. See the module docstring."""

    def __init__(self, program: Program):
        self.program = program
        graph = program.graph
        self._root = _alias_roots(program)
        self._input = self._root(graph.inputs[0])
        self._outputs = [self._root(t) for t in graph.outputs]
        self.input_shape = tuple(int(d) for d in program.input.shape)
        self.output_shapes = [tuple(int(d) for d in t.shape) for t in program.outputs]
        self._size: dict[int, int] = {}
        self._steps = []
        last_use: dict[int, int] = {}
        for i, step in enumerate(program.steps):
            call = step.call
            binder = KERNELS.get(call.kernel)
            if binder is None:
                raise UnsupportedModelError(
                    f"layer {i} ({step.op.location}) uses the kernel {call.kernel}, which edgekit's integer "
                    f"reference does not implement (it runs the portable kernels: {', '.join(sorted(KERNELS))})")
            inputs: list[int] = []
            for a in call.args[:call.output_arg]:
                if isinstance(a, TensorArg):
                    inputs.append(a.index)
                elif isinstance(a, TensorListArg):
                    inputs.extend(a.indices)
                elif isinstance(a, ScratchArg):
                    raise UnsupportedModelError(f"layer {i} ({call.kernel}) needs a scratch buffer; "
                                                "no portable kernel does")
            out = call.args[call.output_arg].index
            for t in inputs + [out]:
                r = self._root(t)
                self._size[r] = max(self._size.get(r, 0), graph.t(t).nbytes)
                last_use[r] = i
            self._steps.append((binder(call), [self._root(t) for t in inputs], self._root(out), out,
                                f"{step.op.location} ({call.kernel})"))
        # Buffers no later call reads are dropped after their last call (not when tracing).
        keep = (self._input, *self._outputs)
        self._free_after = [[r for r, last in last_use.items() if last == i and r not in keep]
                            for i in range(len(self._steps))]

    @classmethod
    def from_tflite(cls, model: str | Path | bytes, label: str | None = None) -> "IntReference":
        """The reference for a .tflite file (path or bytes): import, passes, portable lowering."""
        from edgekit.pipeline import compile_program
        if not isinstance(model, (bytes, bytearray)):
            try:
                model = Path(model).read_bytes()
            except OSError as e:
                raise EdgekitError(f"cannot read {model}: {e.strerror or e}") from None
        return cls(compile_program(bytes(model), label=label, target=None))

    @classmethod
    def from_export(cls, out_dir: str | Path) -> "IntReference":
        """The reference for an `edgekit export` directory: its model.tflite, lowered portably with
        the weight formats its report.json names (lossless: the outputs do not depend on them)."""
        import json

        from edgekit.pipeline import compile_program
        out_dir = Path(out_dir)
        try:
            report = json.loads((out_dir / "report.json").read_text())
            tflite = (out_dir / "model.tflite").read_bytes()
        except FileNotFoundError as e:
            raise EdgekitError(f"{out_dir} is not a complete edgekit export directory (no "
                               f"{Path(e.filename).name})") from None
        except (OSError, ValueError):
            raise EdgekitError(f"{out_dir}/report.json is unreadable: export the model again") from None
        weights = report.get("weights") if isinstance(report, dict) else None
        options = (dict(weights=weights["mode"], optimize=weights["optimize"])
                   if isinstance(weights, dict) and {"mode", "optimize"} <= weights.keys() else {})
        return cls(compile_program(tflite, label=str(out_dir / "model.tflite"), target=None, **options))

    @property
    def num_layers(self) -> int:
        return len(self._steps)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The shape of the model's output (a model with several: see output_shapes)."""
        if len(self.output_shapes) != 1:
            raise EdgekitError(f"the model has {len(self.output_shapes)} outputs: use output_shapes")
        return self.output_shapes[0]

    def _batch(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype != np.int8:
            raise EdgekitError(f"inputs are {x.dtype}, not int8: quantize them with the model input's "
                               "scale and zero point first (edgekit.api.quantize_input)")
        shape = self.input_shape[1:]
        if x.shape == shape:
            x = x[None]
        if x.shape[1:] != shape:
            raise EdgekitError(f"inputs have shape {list(x.shape)}, but the model expects "
                               f"[N, {', '.join(map(str, shape))}]")
        return np.ascontiguousarray(x.reshape(x.shape[0], math.prod(shape)))

    def _execute(self, x2d: np.ndarray, trace: bool = False):
        n = x2d.shape[0]
        store = {self._input: x2d}
        traced = []
        for i, (run, ins, out, tensor, layer) in enumerate(self._steps):
            if out not in store:
                store[out] = np.zeros((n, self._size[out]), np.int8)
            run([store[r] for r in ins], store[out])
            if trace:
                traced.append((i, tensor, layer, store[out].copy()))
            else:
                for r in self._free_after[i]:
                    store.pop(r, None)
        return store, traced

    def run(self, x: np.ndarray):
        """int8 inputs [N, *input_shape[1:]] (or one sample) -> int8 outputs [N, *output_shape[1:]],
        or for a model with several outputs a list of them, one per output in the model's order."""
        outputs = self.run_outputs(x)
        return outputs[0] if len(outputs) == 1 else outputs

    def run_outputs(self, x: np.ndarray, batch: int | None = None) -> list[np.ndarray]:
        """Every output, [N, *shape[1:]] each, in the model's output order; with `batch`, run
        `batch` samples at a time (bounded memory for a whole dataset)."""
        if batch is not None and len(x) > batch:
            parts = [self.run_outputs(x[i:i + batch]) for i in range(0, len(x), batch)]
            return [np.concatenate(p) for p in zip(*parts)]
        x2d = self._batch(x)
        n = x2d.shape[0]
        if n == 0:
            return [np.zeros((0, *shape[1:]), np.int8) for shape in self.output_shapes]
        store, _ = self._execute(x2d)
        return [store[r][:, :t.nbytes].reshape(n, *shape[1:])
                for r, t, shape in zip(self._outputs, self.program.outputs, self.output_shapes)]

    def run_flat(self, x: np.ndarray) -> np.ndarray:
        """int8 [N, total output bytes]: every output of each sample back to back, as the C's
        output buffer holds them (edgekit.lower.program.Program.output_offsets)."""
        outputs = self.run_outputs(x)
        return np.concatenate([y.reshape(y.shape[0], -1) for y in outputs], axis=1)

    def trace_batch(self, x: np.ndarray) -> list[TracedLayer]:
        """Every kernel call's output for a batch: values [N, *tensor.shape]."""
        x2d = self._batch(x)
        _, traced = self._execute(x2d, trace=True)
        g = self.program.graph
        return [TracedLayer(i, t, layer, v[:, :g.t(t).nbytes].reshape(x2d.shape[0], *g.t(t).shape))
                for i, t, layer, v in traced]

    def run_traced(self, x: np.ndarray) -> list[TracedLayer]:
        """Every kernel call's output for one sample, in execution order:
        [(step index, tensor index, layer description, int8 array of the tensor's shape)]."""
        x = np.asarray(x)
        if x.shape == self.input_shape and x.shape[:1] == (1,):
            x = x[0]
        if x.shape != self.input_shape[1:]:
            raise EdgekitError(f"run_traced takes one sample of shape {list(self.input_shape[1:])}, "
                               f"not {list(x.shape)}")
        return [TracedLayer(s, t, layer, v[0]) for s, t, layer, v in self.trace_batch(x[None])]


def _alias_roots(program: Program) -> Callable[[int], int]:
    """tensor index -> the index standing for its storage group (RESHAPE & co. share storage)."""
    parent: dict[int, int] = {}

    def find(t: int) -> int:
        parent.setdefault(t, t)
        while parent[t] != t:
            t = parent[t]
        return t

    lowered = {id(s.op) for s in program.steps}
    graph = program.graph
    for op in graph.ops:
        if id(op) in lowered:
            continue
        result = LOWERINGS[op.kind](graph, op, None)
        if isinstance(result, Alias):
            a, b = find(result.source), find(result.target)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return find
