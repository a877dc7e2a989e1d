"""The DSP GEMM kernels against the portable reference kernels, exact equality, on the host.

ek_conv2d_s8_1x1_dsp, ek_conv2d_s8_dsp and ek_fc_s8_dsp (firmware/kernels) are compiled with the
portable kernels into one shared library under UBSan (ek_dsp.h's C twins stand in for the DSP
instructions) and called through ctypes on seeded random shapes, paddings, strides, dilations, odd
channel and pixel counts and extreme quantization (FC with single and double rounding); the params
structs are read from the headers (tests/cstructs.py). The _dsp kernels get their operands prepared by
the same Python helpers the lowerings use (edgekit.lower.packing.fold_input_offset / interleave_pairs
for the pair form, conv_fold_ok / pack_conv_fold for the folded form), so the export-time layouts
are checked too. The convolutions' folded form is also fuzzed at its limits (shifts outside the
one-multiply range, multipliers 0 and 2^31 - 1, accumulators just under 2^30, patches that fill
the per-layer scratch cap), both forms in place at their declared gaps, and all the convolution
tests once more in a child process under AddressSanitizer. Every convolution gets exactly the
scratch its lowering plans (conv_scratch_bytes; NULL when 0), filled with garbage: under
AddressSanitizer a kernel that touches a byte past it fails.
The whole-model cases, on the host and on the emulated Cortex-M4, are in test_ops.py and
test_ops_device.py.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from conftest import cached_cc  # noqa: E402
from cstructs import c_struct  # noqa: E402
from edgekit.lower import quant  # noqa: E402
from edgekit.lower.conv import CONV_DSP_MAX_PATCH, CONV_DSP_MAX_SCRATCH, conv_fold_ok, conv_scratch_bytes  # noqa: E402
from edgekit.lower.packing import CONV_FOLD_SHIFTS, fold_input_offset, interleave_pairs, pack_conv_fold  # noqa: E402

KERNELS = REPO / "firmware" / "kernels"
SOURCES = ["ek_conv2d_s8.c", "ek_conv2d_s8_1x1_dsp.c", "ek_conv2d_s8_dsp.c", "ek_fc_s8.c", "ek_fc_s8_dsp.c"]
ODD = [1, 3, 5, 7, 17]

I32P = ctypes.POINTER(ctypes.c_int32)
I8P = ctypes.POINTER(ctypes.c_int8)

# The C structs as the headers declare them (tests/cstructs.py).
ConvParams = c_struct("ek_conv2d.h", "ek_conv2d_params")
FcParams = c_struct("ek_fc.h", "ek_fc_params")


# Set (with libasan preloaded) in the child process of test_conv_fold_under_address_sanitizer.
ASAN = os.environ.get("EK_TEST_ASAN") == "1"


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    out = tmp_path_factory.mktemp("ek_dsp_gemm") / "libek_dsp_gemm.so"
    sanitize = "-fsanitize=address,undefined" if ASAN else "-fsanitize=undefined"
    cmd = ["gcc", "-std=c99", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", sanitize,
           "-fno-sanitize-recover=all", "-o", str(out)] + [str(KERNELS / s) for s in SOURCES]
    res = subprocess.run(cached_cc(cmd), capture_output=True, text=True)
    assert res.returncode == 0, f"compiling the kernels failed:\n{res.stderr}"
    so = ctypes.CDLL(str(out))
    for name in ("ek_conv2d_s8", "ek_conv2d_s8_1x1_dsp", "ek_conv2d_s8_dsp"):
        getattr(so, name).argtypes = [ctypes.POINTER(ConvParams), I8P, I8P, I32P, I8P, I8P]
    for name in ("ek_fc_s8", "ek_fc_s8_dsp"):
        getattr(so, name).argtypes = [ctypes.POINTER(FcParams), I8P, I8P, I32P, I8P]
    return so


def _ptr(a: np.ndarray | None, ptype):
    return None if a is None else a.ctypes.data_as(ptype)


def _scratch(fn: str, ints: dict, folded: bool) -> np.ndarray | None:
    """The scratch a convolution's lowering plans for it (edgekit/lower/conv.py conv_scratch_bytes,
    the table in ek_conv2d.h), exactly that many bytes of garbage, or None (NULL) when it is 0."""
    if fn == "ek_conv2d_s8":
        return None
    patch = ints["k_h"] * ints["k_w"] * ints["in_c"]
    n = conv_scratch_bytes(patch, ints["in_c"], pointwise=fn.endswith("1x1_dsp"), folded=folded)
    assert n <= CONV_DSP_MAX_SCRATCH
    return np.full(n, 77, np.int8) if n else None       # numpy's buffers are word-aligned


def _call(lib, fn: str, cls, ints: dict, mult, shift, x, w, bias, out_size: int, **extra) -> np.ndarray:
    params = cls(**ints, mult=_ptr(mult, I32P), shift=_ptr(shift, I32P), **extra)
    y = np.full(out_size, 99, dtype=np.int8)
    args = [ctypes.byref(params), _ptr(x, I8P), _ptr(w, I8P), _ptr(bias, I32P), _ptr(y, I8P)]
    if cls is ConvParams:
        args.append(_ptr(_scratch(fn, ints, folded=False), I8P))
    getattr(lib, fn)(*args)
    return y


def assert_same(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    """Tolerance 0; on failure print every mismatching index."""
    bad = np.flatnonzero(got != ref)
    if bad.size:
        lines = "\n".join(f"  [{i}] got {int(got[i])}, reference {int(ref[i])}" for i in bad)
        pytest.fail(f"{what}: {bad.size} of {got.size} bytes differ from the portable kernel:\n{lines}")


def _quant(rng, n: int, single_rounding: bool, extreme: bool):
    mult = rng.integers(1 << 30, 1 << 31, n, dtype=np.int64).astype(np.int32)
    if extreme:
        mult[rng.random(n) < 0.3] = np.int32(2**31 - 1)
        mult[rng.random(n) < 0.3] = np.int32(1 << 30)
    lo, hi = (-31, 4) if not single_rounding else (-30, 6)
    shift = rng.integers(lo, hi, n).astype(np.int32) if extreme else rng.integers(-14, 1, n).astype(np.int32)
    if single_rounding:
        shift = np.minimum(shift, 30)
    a, b = sorted(rng.integers(-128, 128, 2))
    if not extreme and rng.random() < 0.5:
        a, b = -128, 127
    zp_in = int(rng.choice([-128, 127])) if extreme else int(rng.integers(-128, 128))
    zp_out = int(rng.choice([-128, 127])) if extreme else int(rng.integers(-128, 128))
    return mult, shift, dict(input_offset=-zp_in, output_offset=zp_out, act_min=int(a), act_max=int(b))


def _int8(rng, shape, extreme: bool) -> np.ndarray:
    if extreme:
        return rng.choice(np.array([-128, -127, 127], np.int8), size=shape)
    return rng.integers(-128, 128, shape, dtype=np.int8)


def _conv_case(rng, pointwise: bool, extreme: bool):
    in_c, out_c = (int(rng.choice(ODD)) if rng.random() < 0.5 else int(rng.integers(1, 70)) for _ in range(2))
    in_h, in_w = (int(rng.integers(1, 10)) for _ in range(2))
    if pointwise:
        k, stride, dil, padding = (1, 1), (1, 1), (1, 1), "VALID"
    else:
        k = tuple(int(rng.integers(1, 5)) for _ in range(2))
        stride = tuple(int(rng.integers(1, 4)) for _ in range(2))
        dil = tuple(int(rng.integers(1, 3)) for _ in range(2))
        padding = str(rng.choice(["SAME", "VALID"]))
    out_hw = [quant.conv_output_size((in_h, in_w)[a], k[a], stride[a], dil[a], padding) for a in range(2)]
    if min(out_hw) < 1 or k[0] * k[1] * in_c > CONV_DSP_MAX_PATCH:
        return None
    pads = [quant.same_padding((in_h, in_w)[a], k[a], stride[a], dil[a], out_hw[a]) if padding == "SAME" else 0
            for a in range(2)]
    mult, shift, q = _quant(rng, out_c, single_rounding=False, extreme=extreme)
    ints = dict(in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_hw[0], out_w=out_hw[1], out_c=out_c,
                k_h=k[0], k_w=k[1], stride_h=stride[0], stride_w=stride[1], dil_h=dil[0], dil_w=dil[1],
                pad_top=pads[0], pad_left=pads[1], **q)
    x = _int8(rng, in_h * in_w * in_c, extreme)
    w = _int8(rng, (out_c, k[0] * k[1] * in_c), extreme)
    bias = None if rng.random() < 0.2 else rng.integers(-(1 << 20), 1 << 20, out_c).astype(np.int32)
    return ints, mult, shift, x, w, bias


@pytest.mark.parametrize("variant", ["ek_conv2d_s8_1x1_dsp", "ek_conv2d_s8_dsp"])
@pytest.mark.parametrize("extreme", [False, True], ids=["random", "extreme"])
def test_conv_dsp_equals_reference(lib, variant, extreme):
    rng = np.random.default_rng(1234 + extreme + 2 * (variant == "ek_conv2d_s8_dsp"))
    done = 0
    while done < 250:
        case = _conv_case(rng, pointwise=variant.endswith("1x1_dsp") or rng.random() < 0.1, extreme=extreme)
        if case is None:
            continue
        ints, mult, shift, x, w, bias = case
        out_size = ints["out_h"] * ints["out_w"] * ints["out_c"]
        ref = _call(lib, "ek_conv2d_s8", ConvParams, ints, mult, shift, x, w.reshape(-1), bias, out_size)
        folded = fold_input_offset(bias, w, ints["input_offset"])
        got = _call(lib, variant, ConvParams, ints, mult, shift, x, interleave_pairs(w), folded, out_size)
        assert_same(got, ref, f"{variant} case {done} {ints}")
        done += 1


def _fold_quant(rng, ints: dict, mult, shift, w, bias, extreme: bool):
    """The folded form's quantization edges on top of a _conv_case: shifts mostly in the one-multiply
    range CONV_FOLD_SHIFTS and some channels outside it (the kernel's ek_requantize path),
    multipliers 0 and 2^31 - 1, biases that take the accumulators to just under 2^30, and pruned
    channels (their row of w set to zero in place) with any int32 bias (constant blocks)."""
    n = mult.size
    shift = rng.integers(CONV_FOLD_SHIFTS[0], CONV_FOLD_SHIFTS[1] + 1, n).astype(np.int32)
    if rng.random() < 0.3:
        outside = rng.random(n) < 0.4
        shift[outside] = rng.choice(np.array([-31, -25, -24, 0, 1, 4], np.int32), int(outside.sum()))
    if extreme:
        mult[rng.random(n) < 0.1] = 0
        mult[rng.random(n) < 0.2] = np.int32(2**31 - 1)
        if rng.random() < 0.3 and bias is not None:      # |folded bias| + patch * 2^14 = 2^30 - 1
            limit = 2**30 - 1 - w.shape[1] * 2**14
            target = np.where(rng.random(n) < 0.5, limit, -limit).astype(np.int64)
            bias = (target - ints["input_offset"] * w.astype(np.int64).sum(axis=1)).astype(np.int32)
        if rng.random() < 0.3:
            pruned = rng.integers(0, n)
            w[pruned] = 0
            bias = np.zeros(n, np.int32) if bias is None else bias
            bias[pruned] = rng.choice(np.array([2**31 - 1, -2**31, 2**30, -12345], np.int32))
    return mult, shift, bias


def _fold_call(lib, variant: str, ints: dict, mult, shift, x, w, bias, out_size: int, output=None):
    """The folded form as edgekit/lower/conv.py lowers it (None when conv_fold_ok refuses the layer);
    p->mult and p->shift are NULL. output: the output buffer (in place), else a fresh one."""
    folded = fold_input_offset(bias, w, ints["input_offset"])
    if not conv_fold_ok(w, folded, ints["in_c"], pointwise=variant.endswith("1x1_dsp")):
        return None
    filt, block = pack_conv_fold(w, folded, mult, shift, ints["output_offset"])
    params = ConvParams(**ints, mult=None, shift=None)
    y = np.full(out_size, 99, dtype=np.int8) if output is None else output
    getattr(lib, variant)(ctypes.byref(params), _ptr(x, I8P), _ptr(filt, I8P), _ptr(block, I32P), _ptr(y, I8P),
                          _ptr(_scratch(variant, ints, folded=True), I8P))
    return y


@pytest.mark.parametrize("variant", ["ek_conv2d_s8_1x1_dsp", "ek_conv2d_s8_dsp"])
@pytest.mark.parametrize("extreme", [False, True], ids=["random", "extreme"])
def test_conv_fold_dsp_equals_reference(lib, variant, extreme):
    """The folded form (one-multiply requantization, 4-pixel split buffer) on random layers."""
    rng = np.random.default_rng(4321 + extreme + 2 * (variant == "ek_conv2d_s8_dsp"))
    done = 0
    while done < 250:
        case = _conv_case(rng, pointwise=variant.endswith("1x1_dsp") or rng.random() < 0.1, extreme=extreme)
        if case is None:
            continue
        ints, mult, shift, x, w, bias = case
        mult, shift, bias = _fold_quant(rng, ints, mult, shift, w, bias, extreme)
        out_size = ints["out_h"] * ints["out_w"] * ints["out_c"]
        got = _fold_call(lib, variant, ints, mult, shift, x, w, bias, out_size)
        if got is None:
            continue
        ref = _call(lib, "ek_conv2d_s8", ConvParams, ints, mult, shift, x, w.reshape(-1), bias, out_size)
        assert_same(got, ref, f"{variant} folded case {done} {ints} shifts {sorted(set(shift.tolist()))}")
        done += 1


def _limit_layer(in_c: int, k: int, out_c: int, hw: tuple[int, int], stride: int = 1, padding: str = "VALID"):
    out_hw = [quant.conv_output_size(hw[a], k, stride, 1, padding) for a in range(2)]
    pads = [quant.same_padding(hw[a], k, stride, 1, out_hw[a]) if padding == "SAME" else 0 for a in range(2)]
    return dict(in_h=hw[0], in_w=hw[1], in_c=in_c, out_h=out_hw[0], out_w=out_hw[1], out_c=out_c, k_h=k, k_w=k,
                stride_h=stride, stride_w=stride, dil_h=1, dil_w=1, pad_top=pads[0], pad_left=pads[1])


# (variant, in_c, k, out_c, (in_h, in_w), stride, padding): accumulators at +-(2^30 - 1), every
# fold shift end and the ones just outside, patches that fill the scratch cap (1x1x576 and 3x3x64 split
# straight from the input, 16x16x2 assembled first), filter rows of whole groups with in_c % 4 != 0 (inner
# pixels split straight from the input, border ones assembled), 1 to 9 pixels (every remainder
# of four).
LIMIT_LAYERS = [("ek_conv2d_s8_1x1_dsp", 5, 1, 7, (3, 3), 1, "VALID"),
                ("ek_conv2d_s8_1x1_dsp", 576, 1, 3, (1, 5), 1, "VALID"),
                ("ek_conv2d_s8_1x1_dsp", 64, 1, 64, (2, 3), 1, "VALID"),
                ("ek_conv2d_s8_dsp", 64, 3, 5, (4, 4), 1, "SAME"),
                ("ek_conv2d_s8_dsp", 31, 4, 3, (3, 5), 2, "SAME"),
                ("ek_conv2d_s8_dsp", 3, 3, 16, (4, 3), 1, "SAME"),
                ("ek_conv2d_s8_dsp", 1, 4, 9, (5, 2), 2, "SAME"),
                ("ek_conv2d_s8_dsp", 1, 4, 6, (9, 7), 1, "SAME"),
                ("ek_conv2d_s8_dsp", 2, 2, 5, (6, 5), 1, "SAME"),
                ("ek_conv2d_s8_dsp", 2, 16, 3, (4, 6), 2, "SAME")]


@pytest.mark.parametrize("variant, in_c, k, out_c, hw, stride, padding", LIMIT_LAYERS)
def test_conv_fold_dsp_at_its_limits(lib, variant, in_c, k, out_c, hw, stride, padding):
    rng = np.random.default_rng([in_c, k, out_c, *hw])
    ints = _limit_layer(in_c, k, out_c, hw, stride, padding)
    patch = k * k * in_c
    shifts = np.array([CONV_FOLD_SHIFTS[0], CONV_FOLD_SHIFTS[1], CONV_FOLD_SHIFTS[0] - 1, CONV_FOLD_SHIFTS[1] + 1,
                       -12, 2, -7, -1, -23], np.int32)
    for case in range(8):
        sign = 1 if case % 2 == 0 else -1
        # every product +-2^14 or -(127 * 128): the accumulators' ends
        x = np.full(ints["in_h"] * ints["in_w"] * in_c, -128, np.int8)
        w = np.full((out_c, patch), -128 if sign > 0 else 127, np.int8)
        if case >= 4:
            x = rng.choice(np.array([-128, 127], np.int8), x.size)
            w = rng.choice(np.array([-128, 127], np.int8), w.shape)
        in_off, out_off = [(128, -128), (-127, 127), (0, 127), (128, 0)][case % 4]
        ints.update(input_offset=in_off, output_offset=out_off,
                    act_min=-128 if case < 6 else -5, act_max=127 if case < 6 else 9)
        limit = 2**30 - 1 - patch * 2**14
        bias = (sign * limit - in_off * w.astype(np.int64).sum(axis=1)).astype(np.int32)
        mult = np.array([2**31 - 1, 2**30, 0, 1 << 30 | 12345][case % 4:] * out_c, np.int64)[:out_c].astype(np.int32)
        shift = np.resize(np.roll(shifts, case), out_c).astype(np.int32)
        out_size = ints["out_h"] * ints["out_w"] * out_c
        got = _fold_call(lib, variant, ints, mult, shift, x, w, bias, out_size)
        assert got is not None, f"conv_fold_ok refused the limit layer {ints}"
        ref = _call(lib, "ek_conv2d_s8", ConvParams, ints, mult, shift, x, w.reshape(-1), bias, out_size)
        assert_same(got, ref, f"{variant} limit case {case} {ints}")


def test_conv_fold_ok_mirrors_the_kernels_limits():
    """conv_fold_ok is the C kernels' contract: accumulators under 2^30 (all-zero rows aside: their
    blocks are constants), four split patches (plus one int8 patch when it is assembled first)
    within the per-layer cap EK_CONV2D_DSP_MAX_SCRATCH."""
    assert CONV_DSP_MAX_SCRATCH == 32 * (576 // 4) >= 2 * CONV_DSP_MAX_PATCH   # four 3x3x64 patches
    zeros = np.zeros(1, np.int32)
    assert conv_fold_ok(np.zeros((1, 576), np.int8), zeros, 64, pointwise=False)          # 3x3x64: full
    assert not conv_fold_ok(np.zeros((1, 577), np.int8), zeros, 577, pointwise=True)
    assert conv_fold_ok(np.zeros((1, 512), np.int8), zeros, 2, pointwise=False)           # 4096 + 512
    assert not conv_fold_ok(np.zeros((1, 513), np.int8), zeros, 3, pointwise=False)
    assert conv_fold_ok(np.zeros((1, 513), np.int8), zeros, 3, pointwise=True)            # never assembled
    limit = 2**30 - 1 - 9 * 2**14
    assert conv_fold_ok(np.ones((2, 9), np.int8), np.array([5, -limit], np.int32), 1, pointwise=True)
    assert not conv_fold_ok(np.ones((2, 9), np.int8), np.array([5, limit + 1], np.int32), 1, pointwise=True)
    pruned = np.array([[1] * 9, [0] * 9], np.int8)
    assert conv_fold_ok(pruned, np.array([5, 2**31 - 1], np.int32), 1, pointwise=True)


def test_export_requantize_is_the_kernels():
    """edgekit.lower.quant.requantize (the exporter's, for constant channels) equals the integer
    reference's ek_requantize (edgekit.run.intref._requantize) at the int32 and shift extremes."""
    from edgekit.lower.quant import requantize
    from edgekit.run.intref import _requantize
    rng = np.random.default_rng(8)
    xs = [int(v) for v in rng.integers(-2**31, 2**31, 300)] + [-2**31, -2**31 + 1, -1, 0, 1, 2**30, 2**31 - 1]
    ms = [int(v) for v in rng.integers(-2**31, 2**31, 12)] + [-2**31, 0, 1 << 30, 2**31 - 1]
    for shift in (-31, -24, -23, -1, 0, 1, 7, 30):
        for m in ms:
            assert [requantize(x, m, shift) for x in xs] == [_requantize(x, m, shift) for x in xs], (m, shift)


def _tflite_requantize(a: np.ndarray, m: int, shift: int) -> np.ndarray:
    """ek_requantize (TFLite's double rounding) for right shifts, exact in int64/object ints."""
    ab = a.astype(object) * m
    q = np.array([(v + (1 << 30)) // (1 << 31) if v >= 0 else -((-v + (1 << 30) - 1) // (1 << 31)) for v in ab],
                 dtype=object)                                     # SRDHM: nearest, ties away from zero
    r = -shift
    mask = (1 << r) - 1
    return np.array([(v >> r) + ((v & mask) > (mask >> 1) + (v < 0)) for v in q], dtype=np.int64)


def test_fold_requantize_identity_on_ties():
    """ek_fold_requantize's identity (ek_dot_s8_dsp.h), (SMMLAR(2a, M, k + (2a >> 31))) >> R with
    k = 2^(R-1) + off * 2^R, against TFLite's double rounding + off, exactly, on accumulators that
    put SRDHM or the rounding shift on a tie, at both ends of the multiplier, shift and offset
    ranges and of |a| < 2^30."""
    rng = np.random.default_rng(31)
    for r in (1, 2, 3, 7, 22, 23):
        for m in (0, 1, 2**30, 2**30 + 1, 3 * 2**29, 2**31 - 1, int(rng.integers(2**30, 2**31))):
            for off in (-128, -1, 0, 127):
                a = np.concatenate([rng.integers(-(2**30) + 1, 2**30, 300),
                                    [-(2**30) + 1, 2**30 - 1, -1, 0, 1, -2, 2]]).astype(np.int64)
                if m:
                    # a*M near (2j + 1) * 2^30 (SRDHM ties) and q near (2j + 1) * 2^(R-1) (shift ties)
                    near = [((2 * int(j) + 1) << e) // m + d for j in rng.integers(-(2**20), 2**20, 100)
                            for e in (30, r + 30) for d in (-1, 0, 1)]
                    a = np.concatenate([a, [v for v in near if abs(v) < 2**30]]).astype(np.int64)
                k = (1 << (r - 1)) + off * (1 << r)
                a2 = 2 * a.astype(object)
                smmlar = np.array([k + (v >> 31 if v < 0 else 0) + ((v * m + (1 << 31)) >> 32) for v in a2],
                                  dtype=object)
                got = np.array([v >> r for v in smmlar], dtype=np.int64)
                want = _tflite_requantize(a, m, -r) + off
                bad = np.flatnonzero(got != want)
                assert bad.size == 0, f"R={r} M={m} off={off}: a={a[bad[:5]].tolist()} got {got[bad[:5]]} " \
                                      f"want {want[bad[:5]]}"


def test_pack_conv_fold_layout():
    rows = np.arange(-6, 6, dtype=np.int8).reshape(2, 6)
    filt, block = pack_conv_fold(rows, np.array([10, -20], np.int32), np.array([2**30, 2**31 - 1]),
                                 np.array([-3, 2]), output_offset=-5)
    assert filt.tolist() == list(range(-6, 0)) + [0, 0] + list(range(0, 6)) + [0, 0]   # rows of whole words
    assert block.tolist() == [20, 2**30, 4 - 5 * 8, 3,                # {2 bias, M, 2^(R-1) + off 2^R, R}
                              -40, 2**31 - 1, 2, 0]                  # shift 2: R = 0 marks ek_requantize


def _conv_graph(in_c: int, out_c: int, k: int, bias_value: int):
    """A one-CONV_2D graph (8x8 input, stride 1, VALID) with every bias = bias_value."""
    from edgekit.ir import Graph, Op, Tensor
    hw = 8 - k + 1
    f32 = lambda *v: np.array(v, np.float32)  # noqa: E731
    tensors = [Tensor(0, "x", (1, 8, 8, in_c), "int8", f32(0.05), np.array([3])),
               Tensor(1, "w", (out_c, k, k, in_c), "int8", np.full(out_c, 0.01, np.float32), np.zeros(out_c, np.int64),
                      data=np.ones((out_c, k, k, in_c), np.int8)),
               Tensor(2, "b", (out_c,), "int32", np.full(out_c, 0.0005, np.float32), np.zeros(out_c, np.int64),
                      data=np.full(out_c, bias_value, np.int32)),
               Tensor(3, "y", (1, hw, hw, out_c), "int8", f32(0.1), np.array([-4]))]
    op = Op("CONV_2D", [0, 1, 2], [3], {"padding": "VALID", "strideH": 1, "strideW": 1})
    return Graph(tensors, [op], [0], [3]), op


def test_lowering_picks_the_folded_form_when_it_fits():
    from edgekit.lower.conv import lower_conv2d
    from edgekit.targets import get_target
    m4 = get_target("cortex-m4")
    call = lower_conv2d(*_conv_graph(8, 8, 1, 1000), m4)            # pointwise, out_c <= in_c
    assert call.kernel == "ek_conv2d_s8_1x1_dsp" and call.params["mult"] == 0 and call.params["shift"] == 0
    arrays = {a.name: a.values for a in call.arrays}
    assert sorted(arrays) == ["bias", "filter"] and arrays["filter"].size == 8 * 8
    assert arrays["bias"].size == 4 * 8 and [(d.arg, d.gap) for d in call.inplace_inputs()] == [(0, 0)]
    call = lower_conv2d(*_conv_graph(8, 8, 1, 2**30), m4)           # accumulators could reach 2^30
    assert call.params["mult"] != 0 and [(d.arg, d.gap) for d in call.inplace_inputs()] == [(0, 16)]
    call = lower_conv2d(*_conv_graph(3, 5, 3, 0), m4)               # im2col, patches assembled first
    assert call.kernel == "ek_conv2d_s8_dsp" and call.params["mult"] == 0 and call.inplace == ()


def test_lowering_plans_the_convolutions_scratch():
    """Every int8 convolution ends with a ScratchArg after its output, sized by the variant
    (ek_conv2d.h's table); the portable kernels ask for none (NULL), ek_dwconv_s8 has no such arg."""
    from edgekit.lower.base import ScratchArg, TensorArg
    from edgekit.lower.conv import lower_conv2d
    from edgekit.targets import get_target
    m4 = get_target("cortex-m4")
    for (in_c, out_c, k, bias_value), target, kernel, scratch in [
            ((8, 8, 1, 1000), m4, "ek_conv2d_s8_1x1_dsp", 32 * 2),          # folded: four split pixels
            ((8, 8, 1, 2**30), m4, "ek_conv2d_s8_1x1_dsp", 0),              # pair form 1x1: none
            ((3, 5, 3, 0), m4, "ek_conv2d_s8_dsp", 32 * 7 + 27),            # folded, assembled patch
            ((3, 5, 3, 2**30), m4, "ek_conv2d_s8_dsp", 2 * 27),             # pair form: two patches
            ((3, 5, 3, 0), None, "ek_conv2d_s8", 0)]:
        call = lower_conv2d(*_conv_graph(in_c, out_c, k, bias_value), target)
        assert call.kernel == kernel and call.scratch_bytes == scratch
        assert isinstance(call.args[3], TensorArg) and call.args[3:] == [TensorArg(3), ScratchArg()]


def test_conv_fold_1x1_in_place_at_the_declared_gap(lib):
    """edgekit/lower/conv.py declares InPlace(0, 0) for the folded 1x1 convolution when out_c <= in_c:
    run with the output over the input (same start), every byte equals the out-of-place result."""
    rng = np.random.default_rng(808)
    done = 0
    while done < 120:
        case = _conv_case(rng, pointwise=True, extreme=done % 3 == 2)
        if case is None or case[0]["out_c"] > case[0]["in_c"]:
            continue
        ints, mult, shift, x, w, bias = case
        mult, shift, bias = _fold_quant(rng, ints, mult, shift, w, bias, done % 3 == 2)
        out_size = ints["out_h"] * ints["out_w"] * ints["out_c"]
        ref = _call(lib, "ek_conv2d_s8", ConvParams, ints, mult, shift, x, w.reshape(-1), bias, out_size)
        buf = x.copy()                                   # output starts at the input: gap 0
        if _fold_call(lib, "ek_conv2d_s8_1x1_dsp", ints, mult, shift, buf, w, bias, out_size, output=buf) is None:
            continue
        assert_same(buf[:out_size], ref, f"in place, case {done} {ints}")
        done += 1


def test_conv_pair_1x1_in_place_at_the_declared_gap(lib):
    """The pair form's declaration, InPlace(0, 2 * in_c) when out_c <= in_c: the output starting
    exactly 2 * in_c bytes below the input gives the out-of-place bytes."""
    rng = np.random.default_rng(809)
    done = 0
    while done < 120:
        case = _conv_case(rng, pointwise=True, extreme=done % 3 == 2)
        if case is None or case[0]["out_c"] > case[0]["in_c"]:
            continue
        ints, mult, shift, x, w, bias = case
        out_size = ints["out_h"] * ints["out_w"] * ints["out_c"]
        ref = _call(lib, "ek_conv2d_s8", ConvParams, ints, mult, shift, x, w.reshape(-1), bias, out_size)
        gap = 2 * ints["in_c"]
        buf = np.concatenate([np.full(gap, 99, np.int8), x])
        params = ConvParams(**ints, mult=_ptr(mult, I32P), shift=_ptr(shift, I32P))
        folded = fold_input_offset(bias, w, ints["input_offset"])
        base = buf.ctypes.data
        lib.ek_conv2d_s8_1x1_dsp(ctypes.byref(params), ctypes.cast(base + gap, I8P), _ptr(interleave_pairs(w), I8P),
                                 _ptr(folded, I32P), ctypes.cast(base, I8P), None)   # pair form: no scratch
        assert_same(buf[:out_size], ref, f"pair form in place at gap {gap}, case {done} {ints}")
        done += 1


def test_conv_fold_under_address_sanitizer():
    """The convolution tests again in a child process with the kernels under AddressSanitizer
    (libasan preloaded, so numpy's buffers get redzones too): no read past the filter's rows,
    the input or the scratch the lowering plans, in either form."""
    if ASAN:
        pytest.skip("already the AddressSanitizer run")
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(libasan):
        pytest.skip("gcc has no libasan.so")
    env = dict(os.environ, EK_TEST_ASAN="1", LD_PRELOAD=libasan, ASAN_OPTIONS="detect_leaks=0")
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", __file__, "-k",
                          "conv and not address_sanitizer"], capture_output=True, text=True, env=env,
                         cwd=REPO)
    assert res.returncode == 0, f"under AddressSanitizer:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"


@pytest.mark.parametrize("rounding", ["single", "double"])
@pytest.mark.parametrize("extreme", [False, True], ids=["random", "extreme"])
def test_fc_dsp_equals_reference(lib, extreme, rounding):
    """ek_fc_s8_dsp against ek_fc_s8 with single rounding (LiteRT's FULLY_CONNECTED) and double
    rounding (TFLite Micro's, double_round = 1), per-tensor and per-channel."""
    double = rounding == "double"
    rng = np.random.default_rng(99 + extreme + 2 * double)
    differs = 0     # outputs where the other rounding gives another byte: the field is really read
    for case in range(600):
        rows = int(rng.choice([1, 1, 1, 2, 3, 4, 5]))
        in_n, out_n = (int(rng.choice(ODD)) if rng.random() < 0.5 else int(rng.integers(1, 300)) for _ in range(2))
        mult, shift, q = _quant(rng, out_n, single_rounding=not double, extreme=extreme)
        per_tensor = rng.random() < 0.5   # one multiplier repeated: the kernel may prepare it once
        if per_tensor:
            mult[:], shift[:] = mult[0], shift[0]
        ints = dict(rows=rows, in_n=in_n, out_n=out_n, weight_offset=0, double_round=int(double), **q)
        x = _int8(rng, rows * in_n, extreme)
        w = _int8(rng, (out_n, in_n), extreme)
        bias = None if rng.random() < 0.2 else rng.integers(-(1 << 20), 1 << 20, out_n).astype(np.int32)
        ref = _call(lib, "ek_fc_s8", FcParams, ints, mult, shift, x, w.reshape(-1), bias, rows * out_n)
        folded = fold_input_offset(bias, w, ints["input_offset"])
        got = _call(lib, "ek_fc_s8_dsp", FcParams, ints, mult, shift, x, interleave_pairs(w), folded, rows * out_n,
                    per_tensor=int(per_tensor))
        assert_same(got, ref, f"ek_fc_s8_dsp {rounding} rounding, case {case} {ints}")
        if -31 < shift.min() and shift.max() <= 30:     # a range both roundings take
            other = _call(lib, "ek_fc_s8", FcParams, {**ints, "double_round": int(not double)}, mult, shift, x,
                          w.reshape(-1), bias, rows * out_n)
            differs += int(np.count_nonzero(other != ref))
    assert differs > 0, "single and double rounding never differed: double_round is not reaching the kernel"


def test_interleave_pairs_layout():
    rows = np.arange(2 * 6 + 6, dtype=np.int8).reshape(3, 6)   # 3 rows of 6: a pair and an odd row
    got = interleave_pairs(rows).tolist()
    assert got == [0, 1, 2, 3, 6, 7, 8, 9, 4, 5, 10, 11, 12, 13, 14, 15, 16, 17]
