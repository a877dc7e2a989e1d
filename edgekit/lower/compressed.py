"""Layers whose weights take a compressed format (chosen by edgekit.passes.weights, encoded by
edgekit.formats): CONV_2D -> ek_conv2d_s8_<w>, FULLY_CONNECTED -> ek_fc_s8_<w>,
DEPTHWISE_CONV_2D -> ek_dwconv_s8_w4, with <w> in w4, lut4, lut8, sparse, huff.

The kernels (firmware/kernels/ek_wcode.h) take the op's usual params struct plus an ek_wcode
describing the encoded weights, nested in one struct (`.conv.in_h`, `.w.codes`...). Convolution
and FC kernels read the bias with the input offset folded in (padding taps read the input zero
point from the patch they build in scratch); the depthwise kernel keeps ek_dwconv_s8's bias.

On a core with the DSP extension (target.has_dsp) convolution and FC layers take the _dsp variant
of their kernel (same signature and results, SMLAD inner loops; edgekit.lower.kernels.format_kernel),
which reads the layout its registry entry names (the same bytes re-ordered where the variant
needs it). The _dsp convolutions (Kernel.fold) take the folded form's per-channel requantization
blocks (edgekit.lower.packing.pack_conv_fold_blocks) in place of the bias, with the params' mult
and shift NULL; edgekit.lower.conv.conv2d_kernel gives them only layers within the folded form's
range (conv_fold_range_ok) and any other layer the portable kernel. The kernels' scratch sizes
(the table in ek_wcode.h) and in-place rules live here.

A pointwise convolution (1x1 filter, no padding) may run in place (edgekit.lower.base.InPlace):
see conv_inplace for the argument.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgekit import formats
from edgekit.cdefs import define
from edgekit.ir import Op
from edgekit.lower.base import ArrayArg, ConstArray, InPlace, KernelCall, ScratchArg, TensorArg
from edgekit.lower.kernels import Kernel
from edgekit.lower.packing import conv_fold_range_ok, fold_input_offset, pack_conv_fold_blocks

# op -> the prefix of the op's own params inside its format kernels' params struct (`.conv.in_h`...)
PARAMS_PREFIX = {"conv2d": "conv", "fc": "fc", "dwconv": "dw"}


# Huffman kernels decode block_rows rows into scratch, then run them over every pixel or batch
# row. A convolution builds its patch once per block and pixel, and runs in place only with one
# block, so it takes blocks of up to 4 KB; an FC layer loses nothing with small blocks: four rows,
# the _dsp kernel's two pairs.
HUFF_CONV_SCRATCH = 4096
HUFF_FC_ROWS = 4


def huff_scratch_budget(name: str, row_len: int) -> int:
    """The scratch budget (bytes) of a Huffman kernel's decoded rows (formats.encode)."""
    return HUFF_FC_ROWS * row_len if name == "fc" else HUFF_CONV_SCRATCH


# The _dsp lut4 / lut8 convolutions' rows unpacked at a time, for every four output pixels
# (EK_WC_FOLD_ROWS in ek_wdot_dsp.h).
WC_FOLD_ROWS = define("EK_WC_FOLD_ROWS")
# The _dsp int4 convolution unpacks blocks of rows once per call, each run over every output pixel:
# block_rows = w4_conv_block_rows(...) rows of whole words within this many bytes (at least one).
W4_CONV_BLOCK_BYTES = 4096


def for_kernel(enc: formats.Encoded, k: Kernel) -> formats.Encoded:
    """The encoding with the fields its kernel reads beyond encode()'s: block_rows for the _dsp
    int4 convolution (w4_conv_block_rows)."""
    if k.name == "ek_conv2d_s8_w4_dsp":
        return replace(enc, fields={**enc.fields, "block_rows": w4_conv_block_rows(enc.rows, enc.row_len)})
    return enc


def w4_conv_block_rows(rows: int, k: int) -> int:
    """Rows per block of ek_conv2d_s8_w4_dsp (its ek_wcode block_rows): as many rows, each padded
    to whole groups of four, as W4_CONV_BLOCK_BYTES holds, at least 1, at most `rows`."""
    return min(rows, max(1, W4_CONV_BLOCK_BYTES // (4 * -(-k // 4))))


def conv_needs_patch(k_h: int, k_w: int, pad_top: int, pad_left: int) -> bool:
    """Whether a conv format kernel builds each pixel's patch in scratch (ek_wc_needs_patch):
    everything but a 1x1 filter without padding."""
    return not (k_h == 1 and k_w == 1 and pad_top == 0 and pad_left == 0)


def scratch_bytes(k: Kernel, enc: formats.Encoded, needs_patch: bool, out_channels: int = 0) -> int:
    """Scratch bytes of a format kernel k (the table in ek_wcode.h) for encoding enc; needs_patch:
    conv_needs_patch(...) for a convolution, ignored otherwise; out_channels: a depthwise layer's
    out_c (its accumulators), ignored otherwise."""
    n = enc.row_len
    if k.op == "dwconv":       # int32 accumulators of one output pixel: 4 * out_c
        return 4 * out_channels
    if k.op == "conv2d" and k.dsp and enc.format == "sparse":
        return sparse_dsp_conv_scratch(n, needs_patch)
    if k.op == "conv2d" and k.dsp:         # int4, lut4, lut8, huffman: the folded GEMM
        rows = (int(enc.fields["block_rows"]) if enc.format == "huffman"
                else w4_conv_block_rows(enc.rows, n) if enc.format == "int4" else WC_FOLD_ROWS)
        return fold_dsp_conv_scratch(n, rows, needs_patch)
    rows = enc.fields["block_rows"] * n if enc.format == "huffman" else 0
    patch = n if k.op == "conv2d" and needs_patch else 0
    return rows + patch


def fold_dsp_conv_scratch(k: int, rows: int, needs_patch: bool) -> int:
    """Scratch of the _dsp int4, lut4, lut8 and Huffman convolutions (ek_wcode.h): the 4-pixel
    buffer (two int32 per patch value, in groups of four), `rows` unpacked or decoded rows (each
    padded to whole groups of four: WC_FOLD_ROWS, or a layer's block_rows), then, when patches are
    built, one int8 patch. (Their requantization blocks are constants in flash.)"""
    groups = -(-k // 4)
    return 32 * groups + rows * 4 * groups + (k if needs_patch else 0)


def sparse_dsp_conv_scratch(k: int, needs_patch: bool) -> int:
    """Scratch of ek_conv2d_s8_sparse_dsp (ek_wcode.h): the 4-pixel buffer (two int32 per patch
    value, in groups of four values), then, when patches are built, two int8 patches."""
    return 32 * -(-k // 4) + (2 * k if needs_patch else 0)


def conv_inplace(fmt: str, dsp: bool, enc, in_c: int, out_c: int, needs_patch: bool) -> tuple[InPlace, ...]:
    """The in-place declaration of a compressed convolution kernel: InPlace(0, gap) or none.

    Only a pointwise layer qualifies (no patch in scratch: output pixel p reads input pixel
    q(p) = (y*stride_h)*in_w + x*stride_w >= p, since out_w <= in_w), and only with out_c <= in_c.
      - huffman (and the int4 _dsp kernel) decode (unpack) block_rows filter rows and run them
        over every pixel before the next block: in place only when one block holds every row.
      - the portable kernels work one output pixel at a time in raster order: all of pixel p's
        out_c bytes are written while input bytes >= q(p)*in_c >= p*in_c are still to be read,
        and output byte p*out_c + o (o < out_c) lies below p*in_c once the output starts out_c
        bytes below the input (gap out_c).
      - the _dsp kernels copy (split) the inputs of four pixels p..p+3 into scratch before they
        write any of their outputs; the highest byte written, below (p+4)*out_c, is below every
        input byte still to be read (>= (p+4)*in_c): gap 0.
    tests/test_wformats.py runs every kernel in place at exactly this gap."""
    if needs_patch or out_c > in_c:
        return ()
    if fmt in ("huffman", "int4") and enc.fields.get("block_rows", enc.rows) < enc.rows:
        return ()
    return (InPlace(0, 0 if dsp else out_c),)


def compressed_call(k: Kernel, op: Op, params: dict, rows: np.ndarray, bias: np.ndarray | None,
                    quant_arrays: list[ConstArray], macs: int) -> KernelCall:
    """The call of format kernel k (edgekit.lower.kernels.format_kernel) for op k.op ('conv2d',
    'fc', 'dwconv') with weights `rows` ([out][K] int8; one row for depthwise) encoded in k.weights,
    in the layout k reads; quant_arrays: the op's mult and shift arrays (a kernel that takes the
    folded form's blocks gets them in its blocks instead)."""
    name, fmt = k.op, k.weights
    needs_patch = name == "conv2d" and conv_needs_patch(params["k_h"], params["k_w"],
                                                         params["pad_top"], params["pad_left"])
    enc = formats.encode(fmt, rows, layout=k.layout, huff_scratch_budget=huff_scratch_budget(name, rows.shape[1]))
    if isinstance(enc, str):    # the weight-format pass only chooses formats the layer can take
        raise ValueError(f"{fmt} weights: {enc}")
    enc = for_kernel(enc, k)
    fields = {f"{PARAMS_PREFIX[name]}.{key}": v for key, v in params.items()}
    fields.update({f"w.{key}": v for key, v in enc.fields.items()})
    if name == "dwconv":
        arrays = list(enc.arrays) + ([ConstArray("bias", "int32_t", bias)] if bias is not None else [])
        bias_arg = ArrayArg("bias" if bias is not None else None)
    elif k.fold:
        # The folded form (ek_conv2d.h): per-channel blocks {2 * bias, M, k, R} in place of the
        # bias, mult and shift NULL; conv2d_kernel picks such a kernel only within its range.
        folded = fold_input_offset(bias, rows, params["input_offset"])
        if not conv_fold_range_ok(rows, folded):
            raise ValueError(f"{k.name} takes only layers within the folded form's range (conv_fold_range_ok)")
        mults, shifts = (next(a.values for a in quant_arrays if a.name == q) for q in ("mult", "shift"))
        block = pack_conv_fold_blocks(rows, folded, mults, shifts, params["output_offset"])
        arrays = list(enc.arrays) + [ConstArray("bias", "int32_t", block)]
        bias_arg = ArrayArg("bias")
        fields.update({f"{PARAMS_PREFIX[name]}.mult": 0, f"{PARAMS_PREFIX[name]}.shift": 0})
        quant_arrays = []
    else:
        folded = fold_input_offset(bias, rows, params["input_offset"])
        arrays = list(enc.arrays) + [ConstArray("bias", "int32_t", folded)]
        bias_arg = ArrayArg("bias")
    inplace = (conv_inplace(fmt, k.dsp, enc, int(params["in_c"]), int(params["out_c"]), needs_patch)
               if name == "conv2d" else ())
    scratch = scratch_bytes(k, enc, needs_patch, out_channels=int(params.get("out_c", 0)))
    return KernelCall(kernel=k.name, params=fields,
                      args=[TensorArg(op.inputs[0]), bias_arg, TensorArg(op.outputs[0]), ScratchArg()],
                      arrays=arrays + quant_arrays, macs=macs, scratch_bytes=scratch, inplace=inplace)
