"""All of edgekit's float work, done once at export time (TFLite's Prepare step).

Kernels see only the integers computed here. Each function reproduces TensorFlow Lite's own
arithmetic, including where it computes in float32 and where in double, because a one-ULP
difference in a multiplier changes output bytes.

Rounding: firmware/kernels/ek_common.h defines the two requantization roundings the reference
kernels use (double rounding for conv/depthwise/add, single rounding for fully connected in
LiteRT 2.3). Multipliers are the same Q0.31 + exponent pairs for both; a single-rounded kernel
cannot shift left by more than 30, which check_single_rounding() enforces.
"""
from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127

f32 = np.float32


def quantize_multiplier(real: float) -> tuple[int, int]:
    """A double multiplier as (Q0.31 int32, exponent), like tflite::QuantizeMultiplier."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = _round_half_away(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return int(q_fixed), int(shift)


def check_single_rounding(shifts) -> None:
    """ek_requantize_1r shifts a 64-bit product right by 31 - shift: shift must be <= 30."""
    if max(shifts, default=0) > 30:
        raise ValueError("a requantization multiplier above 2^30 cannot be represented")


def requantize(x: int, multiplier: int, shift: int) -> int:
    """ek_requantize (ek_common.h, TFLite's MultiplyByQuantizedMultiplier) on Python integers:
    x * 2^max(shift, 0) wrapped to int32, the rounding doubling high multiply by the Q0.31
    multiplier (ties away from zero; INT32_MIN * INT32_MIN saturates), then a rounding right shift
    by max(-shift, 0) (ties away from zero). For outputs the exporter knows in advance
    (edgekit.lower.packing.pack_conv_fold_blocks); the integer reference has its own compiled copy
    (edgekit.run.intref._requantize), held equal to this one by tests/test_dsp_conv_fc.py."""
    def wrap32(v: int) -> int:
        return (v + 2 ** 31) % 2 ** 32 - 2 ** 31

    a, m = wrap32(int(x) << max(int(shift), 0)), int(multiplier)
    if a == m == -2 ** 31:
        high = 2 ** 31 - 1
    else:
        t = a * m + (2 ** 30 if a * m >= 0 else 1 - 2 ** 30)
        high = t // 2 ** 31 if t >= 0 else -(-t // 2 ** 31)         # C's division: towards zero
    right = max(-int(shift), 0)
    mask = wrap32((1 << right) - 1)
    return (high >> right) + int((high & mask) > (mask >> 1) + (high < 0))


def quantize_multiplier_lt1(real: float) -> tuple[int, int]:
    """tflite::QuantizeMultiplierSmallerThanOneExp: 0 < real < 1, exponent <= 0."""
    if not 0.0 < real < 1.0:
        raise ValueError(f"multiplier {real} is not in (0, 1)")
    return quantize_multiplier(real)


def _round_half_away(x: float) -> int:
    """std::round for doubles: halves go away from zero."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def round_f32(x) -> float:
    """std::round of a float32 value (half away from zero), exactly: the float32 value is held
    in a double, where its fractional part is exact."""
    v = float(f32(x))
    if not math.isfinite(v):
        return v
    whole = math.floor(abs(v))
    rounded = whole + (1.0 if abs(v) - whole >= 0.5 else 0.0)
    return math.copysign(rounded, v)


def quantize_value(value: float, scale: float, zero_point: int) -> int:
    """zero_point + round(value / scale) computed in float32, as TFLite's Quantize helper."""
    return zero_point + int(round_f32(f32(value) / f32(scale)))


def activation_range(activation: str, scale: float, zero_point: int,
                     qmin: int = INT8_MIN, qmax: int = INT8_MAX) -> tuple[int, int]:
    """Clamp range of a fused activation on the output's quantized grid
    (tflite::CalculateActivationRangeQuantized)."""
    if activation == "NONE":
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, quantize_value(0.0, scale, zero_point)), qmax
    if activation == "RELU6":
        return (max(qmin, quantize_value(0.0, scale, zero_point)),
                min(qmax, quantize_value(6.0, scale, zero_point)))
    if activation == "RELU_N1_TO_1":
        return (max(qmin, quantize_value(-1.0, scale, zero_point)),
                min(qmax, quantize_value(1.0, scale, zero_point)))
    raise ValueError(f"fused activation {activation} has no integer clamp")


def per_channel_multipliers(input_scale: float, filter_scales: np.ndarray, output_scale: float,
                            channels: int) -> tuple[list[int], list[int]]:
    """Conv / depthwise / per-channel FC requantization: in * w[c] / out in double from float32
    values (tflite::PopulateConvolutionQuantizationParams). A single filter scale is broadcast."""
    scales = np.asarray(filter_scales, dtype=np.float32)
    if scales.size not in (1, channels):
        raise ValueError(f"{scales.size} filter scales for {channels} output channels")
    mults, shifts = [], []
    for c in range(channels):
        s = float(scales[c if scales.size > 1 else 0])
        m, sh = quantize_multiplier(float(f32(input_scale)) * s / float(f32(output_scale)))
        mults.append(m)
        shifts.append(sh)
    return mults, shifts


def fc_per_tensor_multiplier(input_scale: float, filter_scale: float, output_scale: float) -> tuple[int, int]:
    """Per-tensor FULLY_CONNECTED: the product input*filter is taken in float32, then divided in
    double (tflite::GetQuantizedConvolutionMultipler)."""
    product = float(f32(input_scale) * f32(filter_scale))
    return quantize_multiplier(product / float(f32(output_scale)))


def same_padding(in_size: int, filter_size: int, stride: int, dilation: int, out_size: int) -> int:
    """Padding before the first element for SAME padding (tflite::ComputePaddingHeightWidth)."""
    effective = (filter_size - 1) * dilation + 1
    total = max((out_size - 1) * stride + effective - in_size, 0)
    return total // 2


def conv_output_size(in_size: int, filter_size: int, stride: int, dilation: int, padding: str) -> int:
    effective = (filter_size - 1) * dilation + 1
    if padding == "SAME":
        return (in_size + stride - 1) // stride
    return (in_size - effective + stride) // stride
