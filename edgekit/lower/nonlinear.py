"""Export-time parameters for the int8 SOFTMAX, LOGISTIC, TANH and MEAN kernels.

Each function does the float work of TensorFlow Lite's Prepare step for that op, as the
reference interpreter (ai-edge-litert 2.3.0, OpResolverType.BUILTIN_REF) does it, and returns
a dict whose keys are the fields of the kernel's C params struct (firmware/kernels/ek_*.h).

What the reference kernels are:

* SOFTMAX: gemmlowp fixed point (reference_ops::Softmax). Prepare computes, in double,
  beta * input_scale * 2^26 capped at 2^31 - 1, quantizes it to a Q0.31 multiplier and a left
  shift, and derives diff_min from that shift (tflite::PreprocessSoftmaxScaling,
  CalculateInputRadius).
* LOGISTIC and TANH: a 256-entry lookup table filled in float32 by tflite::LUTPopulate with
  glibc's expf / tanhf, *not* the gemmlowp fixed-point path that TFLite Micro uses. The table
  is reproduced here with the same float32 operations; expf and tanhf are taken from the C
  math library when it is glibc (what the reference links), otherwise from a float64
  evaluation rounded to float32, which can differ in the last float32 bit and so, rarely, in
  one table entry.
* MEAN: reference_ops::QuantizedMeanOrSum for every axis set and keep_dims value: an int32 sum
  per output, minus zero_point * count, requantized with the double ratio
  input_scale / output_scale folded with 1/count by integer division.

Rounding: ai-edge-litert 2.3.0 is built without TFLITE_SINGLE_ROUNDING as far as these kernels
show (its MEAN matches gemmlowp double rounding on 300 of 300 random quantizations; single
rounding differs on 47 of them), so multipliers here come from QuantizeMultiplier's
double-rounding form, without the single-rounding clamp of shifts above 30, and the C kernels
requantize with ek_fp_requantize (ek_fixedpoint.h), not ek_common.h's ek_requantize.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
from typing import Callable, Sequence

import numpy as np

from edgekit.cdefs import define
from edgekit.lower.quant import quantize_multiplier, round_f32

f32 = np.float32
INT8_MIN, INT8_MAX = -128, 127

SOFTMAX_DIFF_INTEGER_BITS = define("EK_SOFTMAX_DIFF_BITS")  # the reference scales input differences to Q5.26
MEAN_MAX_DIMS = define("EK_MEAN_MAX_DIMS")                  # ek_mean.h
INT32_MAX_VALUE = (1 << 31) - 1


def softmax_params(input_shape: Sequence[int], input_scale: float, input_zero_point: int,
                   output_scale: float, output_zero_point: int, beta: float = 1.0) -> dict:
    """ek_softmax_params for an int8 SOFTMAX over the last dimension of input_shape."""
    shape = _shape(input_shape, "SOFTMAX input")
    if not shape:
        raise ValueError("SOFTMAX needs an input of rank 1 or more, got a scalar.")
    _check_scale(input_scale, "SOFTMAX input")
    _check_zero_point(input_zero_point, "SOFTMAX input")
    _check_scale(output_scale, "SOFTMAX output")
    if output_zero_point != -128:
        raise ValueError(f"int8 SOFTMAX needs output zero point -128, got {output_zero_point}.")
    # TF_LITE_ENSURE_NEAR(output scale, 1.f / 256, 0.001f * 1.f / 256), all in float32.
    one_over_256 = f32(1.0) / f32(256.0)
    if abs(f32(output_scale) - one_over_256) > f32(0.001) * f32(1.0) / f32(256.0):
        raise ValueError(f"int8 SOFTMAX needs output scale 1/256, got {output_scale!r}.")
    if not math.isfinite(beta) or beta <= 0.0:
        raise ValueError(f"SOFTMAX beta must be a positive finite number, got {beta!r}.")

    # tflite::PreprocessSoftmaxScaling in double, from the float32 values of beta and scale.
    real = float(f32(beta)) * float(f32(input_scale)) * float(1 << (31 - SOFTMAX_DIFF_INTEGER_BITS))
    real = min(real, float((1 << 31) - 1))
    if not real > 1.0:
        raise ValueError(f"SOFTMAX beta * input scale = {real / 2 ** 26:.3g} is below 2^-26; "
                         "TFLite cannot quantize it (QuantizeMultiplierGreaterThanOne).")
    multiplier, left_shift = quantize_multiplier(real)
    # tflite::CalculateInputRadius(5, left_shift, 31): floor of an exact power-of-two ratio.
    radius = math.floor(1.0 * ((1 << SOFTMAX_DIFF_INTEGER_BITS) - 1)
                        * (1 << (31 - SOFTMAX_DIFF_INTEGER_BITS)) / (1 << left_shift))
    depth = shape[-1]
    rows = math.prod(shape[:-1])
    return {
        "rows": rows,
        "depth": depth,
        "input_multiplier": multiplier,
        "input_left_shift": left_shift,
        "diff_min": -radius,
    }


def logistic_params(size: int, input_scale: float, input_zero_point: int,
                    output_scale: float, output_zero_point: int) -> dict:
    """ek_lut_params for LOGISTIC: the reference's 256-entry table of 1 / (1 + expf(-x))."""
    _check_scale(input_scale, "LOGISTIC input")
    _check_zero_point(input_zero_point, "LOGISTIC input")
    _check_zero_point(output_zero_point, "LOGISTIC output")
    # TF_LITE_ENSURE(output->params.scale == 1. / 256): the float32 scale against a double.
    if float(f32(output_scale)) != 1.0 / 256:
        raise ValueError(f"int8 LOGISTIC needs output scale exactly 1/256, got {output_scale!r}.")
    expf = _libm_f32("expf", math.exp)

    def sigmoid(x: np.float32) -> np.float32:
        return f32(1.0) / (f32(1.0) + expf(-x))

    return {"size": _size(size, "LOGISTIC"),
            "table": _lut(input_scale, input_zero_point, output_scale, output_zero_point, sigmoid)}


def tanh_params(size: int, input_scale: float, input_zero_point: int,
                output_scale: float, output_zero_point: int) -> dict:
    """ek_lut_params for TANH: the reference's 256-entry table of tanhf(x) (any output quantization)."""
    _check_scale(input_scale, "TANH input")
    _check_zero_point(input_zero_point, "TANH input")
    _check_scale(output_scale, "TANH output")
    _check_zero_point(output_zero_point, "TANH output")
    tanhf = _libm_f32("tanhf", math.tanh)
    return {"size": _size(size, "TANH"),
            "table": _lut(input_scale, input_zero_point, output_scale, output_zero_point, tanhf)}


def mean_params(input_shape: Sequence[int], axes: Sequence[int], keep_dims: bool,
                input_scale: float, input_zero_point: int,
                output_scale: float, output_zero_point: int) -> dict:
    """ek_mean_params for an int8 MEAN of input_shape over axes (keep_dims does not change
    the output bytes, only their declared shape)."""
    shape = _shape(input_shape, "MEAN input")
    if not shape:
        raise ValueError("MEAN of a scalar is not supported; give the input a rank of 1 or more.")
    if math.prod(shape) == 0:
        raise ValueError(f"MEAN input shape {shape} has no elements.")
    _check_scale(input_scale, "MEAN input")
    _check_zero_point(input_zero_point, "MEAN input")
    _check_scale(output_scale, "MEAN output")
    _check_zero_point(output_zero_point, "MEAN output")
    rank = len(shape)
    reduced = set()
    for a in axes:
        a = int(a)
        if not -rank <= a < rank:
            raise ValueError(f"MEAN axis {a} is out of range for an input of rank {rank}.")
        reduced.add(a % rank)
    count = math.prod(shape[d] for d in reduced)
    if count > INT32_MAX_VALUE:
        raise ValueError(f"MEAN averages {count} elements per output; at most 2^31 - 1 fit.")

    # Prepare: QuantizeMultiplier(double(input_scale) / double(output_scale)); Eval folds in
    # 1/count: shift = min(floor(log2(count)), 32, 31 + exponent), multiplier = (M << shift)
    # // count, exponent -= shift.
    multiplier, exponent = quantize_multiplier(float(f32(input_scale)) / float(f32(output_scale)))
    shift = min(count.bit_length() - 1, 32, 31 + exponent)
    multiplier = (multiplier << shift) // count
    exponent -= shift

    dims, mask = _merge_dims(shape, reduced)
    if len(dims) > MEAN_MAX_DIMS:
        raise ValueError(f"MEAN over axes {sorted(reduced)} of shape {shape} alternates kept and "
                         f"averaged dimensions {len(dims)} times; at most {MEAN_MAX_DIMS} are supported.")
    return {
        "ndims": len(dims),
        "dims": dims + [1] * (MEAN_MAX_DIMS - len(dims)),
        "reduce_mask": mask,
        "count": count,
        "input_zero_point": int(input_zero_point),
        "multiplier": multiplier,
        "shift": exponent,
        "output_zero_point": int(output_zero_point),
    }



def _merge_dims(shape: list[int], reduced: set[int]) -> tuple[list[int], int]:
    """Drop size-1 dimensions and merge neighbours that are both kept or both averaged."""
    groups: list[list] = []  # [size, is_reduced]
    for d, n in enumerate(shape):
        if n == 1:
            continue
        r = d in reduced
        if groups and groups[-1][1] == r:
            groups[-1][0] *= n
        else:
            groups.append([n, r])
    if not groups:
        groups = [[1, False]]
    dims = [int(n) for n, _ in groups]
    mask = sum(1 << i for i, (_, r) in enumerate(groups) if r)
    return dims, mask


def _lut(input_scale: float, input_zero_point: int, output_scale: float, output_zero_point: int,
         transform: Callable[[np.float32], np.float32]) -> list[int]:
    """tflite::LUTPopulate<int8_t> in float32; entry i is the output for input value i - 128."""
    inverse_scale = f32(1.0) / f32(output_scale)
    table = []
    for q in range(INT8_MIN, INT8_MAX + 1):
        dequantized = f32(input_scale) * f32(q - input_zero_point)
        rescaled = f32(round_f32(f32(transform(dequantized)) * inverse_scale))
        table.append(_clamp_s8(_f32_to_i32(rescaled + f32(output_zero_point))))
    return table


def _f32_to_i32(x: np.float32) -> int:
    """static_cast<int32_t>(float) as x86 executes it: truncation, and INT32_MIN for NaN or a
    value out of range (cvttss2si's 'integer indefinite')."""
    if not np.isfinite(x) or not -2.0 ** 31 <= float(x) < 2.0 ** 31:
        return -(1 << 31)
    return int(float(x))


def _clamp_s8(v: int) -> int:
    return max(INT8_MIN, min(INT8_MAX, v))


def _libm_f32(name: str, fallback: Callable[[float], float]) -> Callable[[np.float32], np.float32]:
    """A float32 -> float32 function of the C math library (glibc's, which the reference
    interpreter calls), or the float64 fallback rounded to float32 if there is none."""
    fn = _load_libm(name)
    if fn is not None:
        return lambda x: f32(fn(float(x)))

    def rounded(x: np.float32) -> np.float32:
        try:
            return f32(fallback(float(x)))
        except OverflowError:
            return f32(np.inf)
    return rounded


_LIBM_CACHE: dict[str, object] = {}


def _load_libm(name: str):
    if name not in _LIBM_CACHE:
        fn = None
        path = ctypes.util.find_library("m")
        try:
            lib = ctypes.CDLL(path or "libm.so.6")
            fn = getattr(lib, name)
            fn.restype = ctypes.c_float
            fn.argtypes = [ctypes.c_float]
        except (OSError, AttributeError):
            fn = None
        _LIBM_CACHE[name] = fn
    return _LIBM_CACHE[name]


def _shape(shape: Sequence[int], what: str) -> list[int]:
    dims = [int(n) for n in shape]
    if any(n < 0 for n in dims):
        raise ValueError(f"{what} shape {dims} has a negative dimension.")
    return dims


def _size(size: int, what: str) -> int:
    size = int(size)
    if not 0 <= size <= INT32_MAX_VALUE:
        raise ValueError(f"{what} tensor size {size} does not fit the kernel's int32 counter.")
    return size


def _check_scale(scale: float, what: str) -> None:
    if not (math.isfinite(scale) and scale > 0.0):
        raise ValueError(f"{what} scale must be a positive finite number, got {scale!r}.")


def _check_zero_point(zero_point: int, what: str) -> None:
    if not INT8_MIN <= int(zero_point) <= INT8_MAX:
        raise ValueError(f"{what} zero point {zero_point} is outside the int8 range.")
