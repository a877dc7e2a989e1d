"""The registry of C kernels: one entry per kernel function in firmware/kernels, and the facts
every stage reads from it instead of restating them.

    Kernel.name         the C function, ek_<op>_<dtype>[_<weights>][_<variant>] (STYLE.md)
    Kernel.header       the header declaring it and its params struct (what model.c includes)
    Kernel.sources      the .c files it needs (export copies and builds them)
    Kernel.params_type  its params struct: the first argument of every variant
    Kernel.op / weights / dsp   which op it computes, the weight format it reads, whether it is
                        an Armv7E-M SIMD variant (held to the same tests as its portable twin)
    Kernel.layout       the edgekit.formats layout its encoded weights are in
    Kernel.fold         it takes the conv folded form's per-channel requantization blocks
                        (edgekit.lower.packing.pack_conv_fold_blocks) for its bias, mult and
                        shift NULL, and only layers within that form's range (conv_fold_range_ok)
    Kernel.cost         estimated instructions on the Cortex-M4 (Cost), for the format choice

Lowering (edgekit.lower.*) picks a kernel with a readable predicate and builds a KernelCall that
names it; the KernelCall's header, sources and params type come from here. The format choice
(edgekit.passes.weights) prices a layer with the cost of the kernel the lowering's own selection
function returns for that format, so what it predicts is what is emitted, by construction. The
integer reference (edgekit.run.intref) binds every kernel named here; tests/test_kernel_registry.py
checks each entry against the C headers (declared there, params type first) and that every
public kernel the headers declare is registered.
"""
from __future__ import annotations

from dataclasses import dataclass

# Weight formats a kernel can read: int8 (no encoding) and edgekit.formats.FORMATS, with the
# suffix they give kernel names.
FORMAT_SUFFIX = {"int8": "", "int4": "_w4", "lut4": "_lut4", "lut8": "_lut8", "sparse": "_sparse",
                 "huffman": "_huff"}


@dataclass(frozen=True)
class Cost:
    """Estimated instructions of a layer on the emulated Cortex-M4 (QEMU -icount), measured per
    kernel on the MLPerf Tiny models and their variants by benchmarks/format_costs.py:

      per_mac          per multiply-accumulate (patches, requantization and loop overheads
                       included; short rows cost more per MAC than these means);
      per_entry        sparse: per stored entry (fillers included) and output pixel;
      per_output       per output value (pixels x weight rows): a row's setup and requantization
                       where it does not scale with the row's length (sparse);
      decode           Huffman: per weight per inference, decoding its code into scratch
                       (+ books per weight when the code is over codebook indices).
    They rank a layer's formats against each other; they are not promises."""
    per_mac: float = 0.0
    per_entry: float = 0.0
    per_output: float = 0.0
    decode: float = 0.0
    books: float = 0.0

    def estimate(self, macs: int, weights: int, rows: int, pixels: int, entries: int = 0,
                 indexed: bool = False) -> int:
        """Instructions of a layer with `macs` MACs on `weights` weights in `rows` rows, each used
        `pixels` times, `entries` stored sparse entries, a Huffman code over codebook indices when
        `indexed`."""
        return int(macs * self.per_mac + pixels * (entries * self.per_entry + rows * self.per_output)
                   + weights * self.decode_per_weight(indexed))

    def decode_per_weight(self, indexed: bool) -> float:
        return self.decode + (self.books if indexed else 0.0)


@dataclass(frozen=True)
class Kernel:
    name: str
    header: str
    sources: tuple[str, ...]
    params_type: str
    op: str                    # conv2d, dwconv, fc, avgpool, maxpool, ... (the name's <op>)
    weights: str = ""          # the weight format it reads ("" for ops without weights)
    dsp: bool = False
    layout: str = "portable"   # the edgekit.formats.encode layout of its encoded weights
    fold: bool = False         # takes the folded form's blocks for its bias (mult, shift NULL)
    cost: Cost | None = None


KERNELS: dict[str, Kernel] = {}


def _add(name: str, header: str, params_type: str, op: str, *, weights: str = "", dsp: bool = False,
         layout: str = "portable", fold: bool = False, cost: Cost | None = None,
         also: tuple[str, ...] = ()) -> None:
    KERNELS[name] = Kernel(name=name, header=header, sources=(f"{name}.c",) + also, params_type=params_type,
                           op=op, weights=weights, dsp=dsp, layout=layout, fold=fold, cost=cost)


def kernel(name: str) -> Kernel:
    """The registry entry of a kernel, by its C name."""
    try:
        return KERNELS[name]
    except KeyError:
        raise KeyError(f"no kernel {name!r} in edgekit.lower.kernels.KERNELS") from None


# Huffman's decoding work per weight per inference (the table-driven decoder, both kernel sets
# measured alike) and per codebook-indexed weight on top (each mapped back through its channel's
# codebook: whole-model differences of index and value codes on the clustered FC autoencoder and
# ResNet-8, 2.2 and 2.4, rounded up).
_HUFF_DSP, _HUFF_PORTABLE, _HUFF_BOOKS = 12.05, 9.23, 2.5

# Ops without weights.
_add("ek_avgpool_s8", "ek_pool.h", "ek_pool_params", "avgpool")
_add("ek_avgpool_s8_dsp", "ek_pool.h", "ek_pool_params", "avgpool", dsp=True)
_add("ek_maxpool_s8", "ek_pool.h", "ek_pool_params", "maxpool")
_add("ek_mean_s8", "ek_mean.h", "ek_mean_params", "mean")
_add("ek_mean_s8_rows", "ek_mean.h", "ek_mean_params", "mean")
_add("ek_softmax_s8", "ek_softmax.h", "ek_softmax_params", "softmax")
_add("ek_lut_s8", "ek_lut.h", "ek_lut_params", "lut")
_add("ek_requant_s8", "ek_requant.h", "ek_requant_params", "requant")
_add("ek_add_s8", "ek_add.h", "ek_add_params", "add")
_add("ek_pad_s8", "ek_pad.h", "ek_pad_params", "pad")
_add("ek_copy_s8", "ek_copy.h", "ek_copy_params", "copy")
_add("ek_concat_s8", "ek_concat.h", "ek_concat_params", "concat")

# int8 weights.
_add("ek_conv2d_s8", "ek_conv2d.h", "ek_conv2d_params", "conv2d", weights="int8", cost=Cost(per_mac=8.56))
_add("ek_conv2d_s8_1x1_dsp", "ek_conv2d.h", "ek_conv2d_params", "conv2d", weights="int8", dsp=True,
     cost=Cost(per_mac=1.13))
_add("ek_conv2d_s8_dsp", "ek_conv2d.h", "ek_conv2d_params", "conv2d", weights="int8", dsp=True,
     cost=Cost(per_mac=1.10), also=("ek_conv2d_s8_1x1_dsp.c",))       # shares its folded GEMM
_add("ek_dwconv_s8", "ek_dwconv.h", "ek_dwconv_params", "dwconv", weights="int8", cost=Cost(per_mac=32.49))
_add("ek_dwconv_s8_3x3_dsp", "ek_dwconv.h", "ek_dwconv_params", "dwconv", weights="int8", dsp=True,
     cost=Cost(per_mac=4.18))
_add("ek_dwconv_s8_3x3_fold_dsp", "ek_dwconv.h", "ek_dwconv_params", "dwconv", weights="int8", dsp=True,
     cost=Cost(per_mac=4.18))
_add("ek_fc_s8", "ek_fc.h", "ek_fc_params", "fc", weights="int8", cost=Cost(per_mac=7.36))
_add("ek_fc_s8_dsp", "ek_fc.h", "ek_fc_params", "fc", weights="int8", dsp=True, cost=Cost(per_mac=1.98))

# Compressed weights (edgekit.formats; layouts and scratch in ek_wcode.h).
_WC_COSTS = {
    # (op, dsp): format -> Cost
    ("conv2d", True): dict(int4=Cost(per_mac=1.38), lut4=Cost(per_mac=2.22), lut8=Cost(per_mac=2.21),
                           sparse=Cost(per_entry=2.17, per_output=48.12),
                           huffman=Cost(per_mac=1.51, decode=_HUFF_DSP, books=_HUFF_BOOKS)),
    ("conv2d", False): dict(int4=Cost(per_mac=6.20), lut4=Cost(per_mac=7.22), lut8=Cost(per_mac=6.66),
                            sparse=Cost(per_entry=7.68, per_output=100.19),
                            huffman=Cost(per_mac=5.08, decode=_HUFF_PORTABLE, books=_HUFF_BOOKS)),
    ("fc", True): dict(int4=Cost(per_mac=2.21), lut4=Cost(per_mac=4.70), lut8=Cost(per_mac=4.81),
                       sparse=Cost(per_entry=4.52, per_output=74.70),
                       huffman=Cost(per_mac=1.98, decode=_HUFF_DSP, books=_HUFF_BOOKS)),
    ("fc", False): dict(int4=Cost(per_mac=5.95), lut4=Cost(per_mac=6.87), lut8=Cost(per_mac=6.35),
                        sparse=Cost(per_entry=7.50, per_output=73.30),
                        huffman=Cost(per_mac=7.36, decode=_HUFF_PORTABLE, books=_HUFF_BOOKS)),
}
# The _dsp kernels that read formats' "dsp" layout (the rest, _dsp convolutions included, read
# the portable one: they unpack or decode rows in order into scratch for the folded GEMM).
_DSP_LAYOUT = {("fc", "int4"), ("fc", "huffman")}
_WC_PARAMS = {"conv2d": "ek_conv2d_wc_params", "fc": "ek_fc_wc_params", "dwconv": "ek_dwconv_wc_params"}
# Every _dsp format convolution takes the folded form's blocks (fold): its requantization is the
# folded GEMM's (ek_conv2d_fold_dsp.h), or the sparse kernel's one-SMMLAR twin of it.
for (_op, _dsp), _costs in _WC_COSTS.items():
    for _fmt, _cost in _costs.items():
        _add(f"ek_{_op}_s8{FORMAT_SUFFIX[_fmt]}" + ("_dsp" if _dsp else ""), "ek_wcode.h", _WC_PARAMS[_op], _op,
             weights=_fmt, dsp=_dsp, layout="dsp" if _dsp and (_op, _fmt) in _DSP_LAYOUT else "portable",
             fold=_dsp and _op == "conv2d", cost=_cost)
_add("ek_dwconv_s8_w4", "ek_wcode.h", "ek_dwconv_wc_params", "dwconv", weights="int4", cost=Cost(per_mac=13.62))
_add("ek_dwconv_s8_w4_3x3_dsp", "ek_wcode.h", "ek_dwconv_wc_params", "dwconv", weights="int4", dsp=True,
     cost=Cost(per_mac=8.09), also=("ek_dwconv_s8_3x3_fold_dsp.c", "ek_dwconv_s8_3x3_dsp.c"))


def format_kernel(op: str, fmt: str, dsp: bool) -> Kernel:
    """The compressed-weights kernel of op ('conv2d', 'fc', 'dwconv') reading format fmt, its
    _dsp variant when dsp and one exists (ValueError when there is no such kernel). The int4 3x3
    depthwise kernel for DSP cores is not a variant of ek_dwconv_s8_w4 (it runs the int8 3x3
    _dsp kernels): edgekit.lower.dwconv selects it by shape."""
    if fmt != "int8":
        for variant in ((True, False) if dsp else (False,)):
            k = KERNELS.get(f"ek_{op}_s8{FORMAT_SUFFIX.get(fmt, '?')}" + ("_dsp" if variant else ""))
            if k is not None:
                return k
    raise ValueError(f"no {fmt} kernel for {op}")

