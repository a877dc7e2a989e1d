"""AVERAGE_POOL_2D and MAX_POOL_2D -> ek_avgpool_s8 (or ek_avgpool_s8_dsp) / ek_maxpool_s8."""
from __future__ import annotations

from edgekit.lower import quant
from edgekit.cdefs import define
from edgekit.ir import Graph, Op
from edgekit.targets import Target
from edgekit.lower.base import KernelCall, TensorArg, lowering, nhwc, require_int8, unsupported


# Widest window ek_avgpool_s8_dsp takes (EK_AVGPOOL_DSP_MAX_TAPS in ek_avgpool_s8_dsp.c).
AVGPOOL_DSP_MAX_K_W = define("EK_AVGPOOL_DSP_MAX_TAPS")


@lowering("AVERAGE_POOL_2D", "MAX_POOL_2D")
def lower_pool(graph: Graph, op: Op, target: Target | None = None) -> KernelCall:
    require_int8(graph, op, op.inputs[0], op.outputs[0])
    inp, out = graph.t(op.inputs[0]), graph.t(op.outputs[0])
    in_h, in_w, c = nhwc(inp.shape)
    out_h, out_w, out_c = nhwc(out.shape)
    # TFLite's int8 pooling does not rescale: the converter gives input and output one scale.
    o = op.options
    k = (int(o["filterHeight"]), int(o["filterWidth"]))
    stride = (int(o["strideH"]), int(o["strideW"]))
    padding = o.get("padding", "VALID")
    for axis, (i_sz, o_sz) in enumerate(((in_h, out_h), (in_w, out_w))):
        if quant.conv_output_size(i_sz, k[axis], stride[axis], 1, padding) != o_sz:
            raise unsupported(op, "its output size does not follow from its window and stride")
    pads = [quant.same_padding(i, kk, s, 1, oo) if padding == "SAME" else 0
            for i, kk, s, oo in ((in_h, k[0], stride[0], out_h), (in_w, k[1], stride[1], out_w))]
    out_scale, out_zp = out.qparams()
    act_min, act_max = quant.activation_range(o.get("activation", "NONE"), out_scale, out_zp)
    params = dict(in_h=in_h, in_w=in_w, c=c, out_h=out_h, out_w=out_w, k_h=k[0], k_w=k[1],
                  stride_h=stride[0], stride_w=stride[1], pad_top=pads[0], pad_left=pads[1],
                  act_min=act_min, act_max=act_max)
    average = op.kind == "AVERAGE_POOL_2D"
    kernel = "ek_avgpool_s8" if average else "ek_maxpool_s8"
    # ek_avgpool_s8_dsp keeps 16-bit sums of at most 255 taps, so one window row must fit (ek_pool.h).
    use_avg_dsp = target is not None and target.has_dsp and average and k[1] <= AVGPOOL_DSP_MAX_K_W
    if use_avg_dsp:
        kernel = "ek_avgpool_s8_dsp"
    return KernelCall(kernel=kernel, params=params,
                      args=[TensorArg(op.inputs[0]), TensorArg(op.outputs[0])],
                      macs=out_h * out_w * c * k[0] * k[1])
