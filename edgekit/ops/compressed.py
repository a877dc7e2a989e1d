"""Layers whose weights take a compressed format (chosen by edgekit.wselect, encoded by
edgekit.wformats): CONV_2D -> ek_conv2d_s8_<w>, FULLY_CONNECTED -> ek_fc_s8_<w>,
DEPTHWISE_CONV_2D -> ek_dwconv_s8_w4, with <w> in w4, lut4, lut8, sparse, huff.

The kernels (firmware/kernels/ek_wcode.h) take the op's usual params struct plus an ek_wcode
describing the encoded weights, nested in one struct (`.conv.in_h`, `.w.codes`...). Convolution
and FC kernels read the bias with the input offset folded in (padding taps read the input zero
point from the patch they build in scratch); the depthwise kernel keeps ek_dwconv_s8's bias.

On a core with the DSP extension (target.has_dsp) convolution and FC layers take the _dsp variant
of their kernel (same signature and results, SMLAD inner loops; wformats.DSP_KERNELS), which
reads the layout wformats.kernel_layout names (the same bytes re-ordered where the variant needs
it).

A pointwise convolution (1x1 filter, no padding) may run in place (edgekit.ops.base.InPlace):
see conv_inplace for the argument.
"""
from __future__ import annotations

import numpy as np

from ..ir import Op
from ..targets import Target
from .base import ArrayArg, ConstArray, InPlace, KernelCall, ScratchArg, TensorArg

OPS = {"conv2d": ("ek_conv2d_wc_params", "conv"), "fc": ("ek_fc_wc_params", "fc"),
       "dwconv": ("ek_dwconv_wc_params", "dw")}


def weights_format(op: Op) -> str:
    """The weight format this layer's kernel reads: edgekit.wselect's choice ('int8' when it did
    not run), or 'int8' for Huffman decoded at boot (edgekit.program.decode_at_boot)."""
    return "int8" if op.options.get("weights_boot") else op.options.get("weights_format", "int8")


def uses_dsp_kernel(name: str, fmt: str, target: Target | None) -> bool:
    """Whether the layer takes the _dsp variant: a core with the DSP extension, and a variant
    exists for this op and format (conv and FC; depthwise w4 has the portable kernel only)."""
    from .. import wformats
    return target is not None and target.has_dsp and (name, fmt) in wformats.DSP_KERNELS


# Huffman kernels decode block_rows rows into scratch, then run them over every pixel or batch
# row. A convolution builds its patch once per block and pixel, and runs in place only with one
# block, so it takes blocks of up to 4 KB; an FC layer loses nothing with small blocks: four rows,
# the _dsp kernel's two pairs.
HUFF_CONV_SCRATCH = 4096
# The formats whose _dsp convolution computes two pointwise output pixels at a time.
PIXEL_PAIR_FORMATS = ("lut4", "lut8")
# The formats whose _dsp convolution copies four output pixels' inputs into scratch first.
BUFFERED_FORMATS = ("sparse",)
HUFF_FC_ROWS = 4


def huff_scratch_budget(name: str, row_len: int) -> int:
    """The scratch budget (bytes) of a Huffman kernel's decoded rows (wformats.encode)."""
    return HUFF_FC_ROWS * row_len if name == "fc" else HUFF_CONV_SCRATCH


def conv_inplace(fmt: str, dsp: bool, enc, in_c: int, out_c: int, needs_patch: bool) -> tuple[InPlace, ...]:
    """The in-place declaration of a compressed convolution kernel: InPlace(0, gap) or none.

    Only a pointwise layer qualifies (no patch in scratch: output pixel p reads input pixel
    q(p) = (y*stride_h)*in_w + x*stride_w >= p, since out_w <= in_w), and only with out_c <= in_c.
    Every kernel but the ones below works one output pixel at a time in raster order: all of
    pixel p's out_c bytes are written while input bytes >= q(p)*in_c >= p*in_c are still to be
    read, and output byte p*out_c + o (o < out_c) lies below p*in_c once the output starts
    out_c bytes below the input (gap out_c).
      - huffman (and the int4 _dsp kernel) decode (unpack) block_rows filter rows and run them
        over every pixel before the next block: in place only when one block holds every row.
      - the lut4 and lut8 _dsp kernels, for a layer outside the folded form (see
        ek_wc_conv_dsp), work on pairs of pixels (p, p+1), writing their outputs channel by
        channel; the highest byte written so far is (p+1)*out_c + o < (p+2)*out_c while input
        bytes >= p*in_c are still to be read: gap 2*out_c. (In the folded form every _dsp
        format kernel splits four pixels' inputs into scratch before it writes their outputs,
        which any of these gaps allows.)
      - the sparse _dsp kernel copies the inputs of four pixels p..p+3 into scratch before it
        writes any of their outputs; the highest byte it writes, below (p+4)*out_c, is below every
        input byte still to be read (>= (p+4)*in_c): gap 0.
    tests/test_wformats.py runs every kernel in place at exactly this gap."""
    if needs_patch or out_c > in_c:
        return ()
    if fmt in ("huffman", "int4") and enc.fields.get("block_rows", enc.rows) < enc.rows:
        return ()
    if dsp and fmt in BUFFERED_FORMATS:
        return (InPlace(0, 0),)
    pixels_per_step = 2 if (dsp and fmt in PIXEL_PAIR_FORMATS) else 1
    return (InPlace(0, pixels_per_step * out_c),)


def compressed_call(name: str, op: Op, params: dict, rows: np.ndarray, bias: np.ndarray | None,
                    quant_arrays: list[ConstArray], fmt: str, macs: int,
                    target: Target | None = None) -> KernelCall:
    """The kernel call of op `name` ('conv2d', 'fc', 'dwconv') with weights `rows` ([out][K]
    int8; one row for depthwise) encoded as `fmt`; the _dsp variant when uses_dsp_kernel."""
    from .. import wformats
    from .conv import fold_input_offset      # conv.py imports this module
    needs_patch = name == "conv2d" and wformats.conv_needs_patch(params["k_h"], params["k_w"],
                                                                  params["pad_top"], params["pad_left"])
    dsp = uses_dsp_kernel(name, fmt, target)
    enc = wformats.encode(fmt, rows, layout=wformats.kernel_layout(name, fmt, dsp),
                          huff_scratch_budget=huff_scratch_budget(name, rows.shape[1]))
    if isinstance(enc, str):    # wselect only chooses formats the layer can take
        raise ValueError(f"{fmt} weights: {enc}")
    enc = wformats.for_kernel(enc, name, dsp)
    params_type, outer = OPS[name]
    fields = {f"{outer}.{k}": v for k, v in params.items()}
    fields.update({f"w.{k}": v for k, v in enc.fields.items()})
    if name == "dwconv":
        arrays = list(enc.arrays) + ([ConstArray("bias", "int32_t", bias)] if bias is not None else [])
        bias_arg = ArrayArg("bias" if bias is not None else None)
    else:
        folded = fold_input_offset(bias, rows, params["input_offset"])
        arrays = list(enc.arrays) + [ConstArray("bias", "int32_t", folded)]
        bias_arg = ArrayArg("bias")
    inplace = (conv_inplace(fmt, dsp, enc, int(params["in_c"]), int(params["out_c"]), needs_patch)
               if name == "conv2d" else ())
    kernel = wformats.kernel_name(name, fmt, dsp)
    scratch = wformats.scratch_bytes(name, enc, needs_patch, out_channels=int(params.get("out_c", 0)), dsp=dsp)
    return KernelCall(kernel=kernel, header="ek_wcode.h", sources=(f"{kernel}.c",),
                      params_type=params_type, params=fields,
                      args=[TensorArg(op.inputs[0]), bias_arg, TensorArg(op.outputs[0]), ScratchArg()],
                      arrays=arrays + quant_arrays, macs=macs,
                      scratch_bytes=scratch, inplace=inplace)
