"""FULLY_CONNECTED -> ek_fc_s8, or ek_fc_s8_dsp on a core with the DSP extension (symmetric
weights): input offset folded into the bias, weight rows interleaved by pairs (see conv.py)."""
from __future__ import annotations

import numpy as np

from edgekit.lower import quant
from edgekit.ir import Graph, Op
from edgekit.targets import Target
from edgekit.lower.base import (ArrayArg, ArrayRef, ConstArray, KernelCall, TensorArg, choose_kernel, lowering, require_int8,
                   unsupported)
from edgekit.lower.compressed import compressed_call
from edgekit.lower.kernels import Kernel, format_kernel, kernel
from edgekit.lower.packing import fold_input_offset, interleave_pairs


def fc_kernel(weight_offset: int, target: Target | None, fmt: str) -> Kernel:
    """A format's kernel (its _dsp variant on a DSP core); for int8 ek_fc_s8_dsp on a DSP core with
    symmetric weights, else ek_fc_s8."""
    dsp = target is not None and target.has_dsp
    if fmt != "int8":
        return format_kernel("fc", fmt, dsp)
    return kernel("ek_fc_s8_dsp" if dsp and weight_offset == 0 else "ek_fc_s8")


@choose_kernel("FULLY_CONNECTED")
def choose_fc(graph: Graph, op: Op, target: Target | None, fmt: str) -> Kernel:
    w = graph.t(op.inputs[1])
    return fc_kernel(-int(w.zero_point[0]) if w.zero_point is not None else 0, target, fmt)


@lowering("FULLY_CONNECTED")
def lower_fc(graph: Graph, op: Op, target: Target | None = None) -> KernelCall:
    require_int8(graph, op, op.inputs[0], op.outputs[0])
    inp, w, out = graph.t(op.inputs[0]), graph.t(op.inputs[1]), graph.t(op.outputs[0])
    if w.data is None or w.dtype not in ("int8", "int4"):
        raise unsupported(op, "its weights must be constant int8 (or int4)")
    if op.options.get("weightsFormat", 0) != 0:
        raise unsupported(op, "shuffled weight formats are not supported")
    out_n, in_n = int(w.shape[0]), int(w.shape[1])
    if inp.size % in_n:
        raise unsupported(op, f"input of {inp.size} values is not a multiple of {in_n} weights per row")
    rows = inp.size // in_n
    in_scale, in_zp = inp.qparams()
    out_scale, out_zp = out.qparams()
    if w.scale.size > 1:
        mults, shifts = quant.per_channel_multipliers(in_scale, w.scale, out_scale, out_n)
    else:
        m, s = quant.fc_per_tensor_multiplier(in_scale, float(w.scale[0]), out_scale)
        mults, shifts = [m] * out_n, [s] * out_n
    # The reference's rounding (edgekit.frontend.tflite sets graph.meta["reference"]): LiteRT's
    # FC rounds once, TFLM's (the reference for models with INT4 weights) twice.
    double_round = graph.meta.get("reference") == "tflm"
    if not double_round:
        quant.check_single_rounding(shifts)
    act_min, act_max = quant.activation_range(op.options.get("activation", "NONE"), out_scale, out_zp)
    has_bias = len(op.inputs) > 2 and op.inputs[2] >= 0
    bias = None
    if has_bias:
        b = graph.t(op.inputs[2])
        if b.data is None or b.dtype != "int32":
            raise unsupported(op, "its bias must be constant int32")
        bias = b.data.astype(np.int32).reshape(-1)
    weight_offset = -int(w.zero_point[0]) if w.zero_point is not None else 0
    quant_arrays = [ConstArray("mult", "int32_t", np.array(mults, dtype=np.int32)),
                    ConstArray("shift", "int32_t", np.array(shifts, dtype=np.int32))]
    params = dict(rows=rows, in_n=in_n, out_n=out_n, input_offset=-in_zp,
                  weight_offset=weight_offset,
                  output_offset=out_zp, act_min=act_min, act_max=act_max,
                  mult=ArrayRef("mult"), shift=ArrayRef("shift"))
    per_tensor = len(set(zip(mults, shifts))) <= 1   # one multiplier for the whole layer
    params["per_tensor"] = int(per_tensor)
    params["double_round"] = int(double_round)
    fmt = op.weights_format
    k = fc_kernel(weight_offset, target, fmt)
    if fmt != "int8":
        if weight_offset != 0:
            raise unsupported(op, f"{fmt} weights need symmetric weights (zero point 0)")
        return compressed_call(k, op, params, w.data.reshape(out_n, in_n).astype(np.int8), bias,
                               quant_arrays, macs=rows * in_n * out_n)
    if k.dsp:
        w_rows = w.data.reshape(out_n, in_n)
        arrays = [ConstArray("weights", "int8_t", interleave_pairs(w_rows)),
                  ConstArray("bias", "int32_t", fold_input_offset(bias, w_rows, -in_zp))] + quant_arrays
        return KernelCall(kernel=k.name, params=params,
                          args=[TensorArg(op.inputs[0]), ArrayArg("weights"), ArrayArg("bias"),
                                TensorArg(op.outputs[0])],
                          arrays=arrays, macs=rows * in_n * out_n)
    arrays = [ConstArray("weights", "int8_t", w.data.reshape(-1))]
    if bias is not None:
        arrays.append(ConstArray("bias", "int32_t", bias))
    arrays += quant_arrays
    return KernelCall(kernel=k.name, params=params,
                      args=[TensorArg(op.inputs[0]), ArrayArg("weights"),
                            ArrayArg("bias" if has_bias else None), TensorArg(op.outputs[0])],
                      arrays=arrays, macs=rows * in_n * out_n)
