"""Random op chains built directly in edgekit's IR, beyond what TensorFlow's converter produces
(any zero point, multipliers above and far below one, wide and tiny windows, broadcast ADD,
channel multipliers, dilation, FC over many rows, double-rounding FC, compressed weights):
every layer of the generated C, traced on the host (TRACE=1), equals edgekit's integer
reference, tolerance 0. Host target (portable kernels) and cortex-m4 (the DSP variants, through
ek_dsp.h's C twins). Fixed seeds."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_bit_exact
from edgekit import formats
from edgekit.api import CompiledModel
from edgekit.emit.codegen import resource_dir
from edgekit.export import export_program
from edgekit.run.intref import IntReference
from edgekit.ir import Graph, Op, Tensor
from edgekit.lower.program import lower
from edgekit.targets import get_target
from edgekit.run.trace import run_traced_host

# Seeds 0-7, and six that bring the kernels no earlier seed uses (checked below; 2890: the int4
# 3x3 depthwise of DSP cores).
SEEDS = [0, 1, 2, 3, 4, 5, 6, 7, 22, 30, 44, 218, 300, 2890]
ACTS = ["NONE", "NONE", "RELU", "RELU6"]


class Chain:
    """A chain of int8 NHWC ops from one input, each op's options as the TFLite importer gives."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.tensors: list[Tensor] = []
        self.ops: list[Op] = []
        shape = (1, int(rng.integers(3, 11)), int(rng.integers(3, 11)), int(rng.integers(1, 9)))
        self.cur = self.act(shape)
        self.input = self.cur

    def scale(self, lo=-3.0, hi=0.0) -> float:
        return float(10 ** self.rng.uniform(lo, hi))

    def tensor(self, shape, dtype="int8", scale=None, zp=None, data=None, qdim=0) -> int:
        scale = None if scale is None else np.atleast_1d(np.asarray(scale, np.float32))
        zp = None if scale is None else np.atleast_1d(np.asarray(0 if zp is None else zp, np.int64))
        if zp is not None and zp.size != scale.size:
            zp = np.zeros(scale.size, np.int64) + zp[0]
        t = Tensor(index=len(self.tensors), name=f"t{len(self.tensors)}", shape=tuple(int(d) for d in shape),
                   dtype=dtype, scale=scale, zero_point=zp, quant_dim=qdim, data=data)
        self.tensors.append(t)
        return t.index

    def act(self, shape, scale=None, zp=None) -> int:
        return self.tensor(shape, scale=self.scale() if scale is None else scale,
                           zp=int(self.rng.integers(-128, 128)) if zp is None else zp)

    def t(self, i: int) -> Tensor:
        return self.tensors[i]

    def op(self, kind, inputs, output, **options) -> int:
        self.ops.append(Op(kind=kind, inputs=list(inputs), outputs=[output], options=options,
                           name=f"{kind.lower()}_{len(self.ops)}"))
        self.cur = output
        return output

    def out_scale(self, in_scale: float, w_scale: float, k: int) -> float:
        # mostly realistic ranges; sometimes a multiplier above one (a left shift)
        spread = self.rng.uniform(-5, 1) if self.rng.random() < 0.15 else self.rng.uniform(-1, 4)
        return float(in_scale * w_scale * np.sqrt(k) * 2 ** spread)

    def weights(self, shape) -> np.ndarray:
        """int8 weights: the full range, or (a third of the layers) small ones that int4 and lut4
        can take, with zeros that the sparse format skips."""
        if self.rng.random() < 0.33:
            w = self.rng.integers(-8, 8, shape)
            return np.where(self.rng.random(shape) < 0.5, 0, w).astype(np.int8)
        return self.rng.integers(-127, 128, shape).astype(np.int8)

    # ---- ops ---------------------------------------------------------------------------
    def window(self, size: int, k: int, stride: int, dil: int, padding: str) -> int:
        return -(-size // stride) if padding == "SAME" else (size - (k - 1) * dil - 1) // stride + 1

    def geometry(self, depthwise=False):
        _, h, w, _ = self.t(self.cur).shape
        for _ in range(20):
            shape = self.rng.random()      # the shapes the DSP variants take, and any other
            k = (int(self.rng.choice([1, 2, 3, 5])), int(self.rng.choice([1, 2, 3])))
            stride = (int(self.rng.integers(1, 3)), int(self.rng.integers(1, 3)))
            dil = (int(self.rng.integers(1, 3)), int(self.rng.integers(1, 3))) if self.rng.random() < 0.3 else (1, 1)
            padding = str(self.rng.choice(["SAME", "VALID"]))
            if shape < 0.4:
                k, dil, stride = (3, 3), (1, 1), (stride[0], stride[0])
            elif shape < 0.55:
                k, dil, stride, padding = (1, 1), (1, 1), (1, 1), "VALID"
            out = (self.window(h, k[0], stride[0], dil[0], padding), self.window(w, k[1], stride[1], dil[1], padding))
            if min(out) >= 1:
                return k, stride, dil, padding, out
        return (1, 1), (1, 1), (1, 1), "VALID", (h, w)

    def conv(self, depthwise: bool = False):
        inp = self.t(self.cur)
        c = inp.shape[3]
        k, stride, dil, padding, (oh, ow) = self.geometry()
        mult = int(self.rng.integers(1, 4)) if depthwise else 1
        out_c = c * mult if depthwise else int(self.rng.integers(1, 13))
        w_scales = np.array([self.scale(-3, -1) for _ in range(out_c)], np.float32)
        if self.rng.random() < 0.2:
            w_scales[int(self.rng.integers(out_c))] *= 1e-3
        wshape = (1, k[0], k[1], out_c) if depthwise else (out_c, k[0], k[1], c)
        data = self.weights(wshape)
        bias_data = self.rng.integers(-2 ** 16, 2 ** 16, out_c).astype(np.int32)
        # A side generator (seeded from the chain's, which it does not advance, so every seed keeps
        # its chain): in a fifth of the layers one pruned filter as the converter writes it,
        # all-zero weights, a tiny scale, a huge bias.
        side = np.random.default_rng(self.rng.bit_generator.state["state"]["state"])
        if side.random() < 0.2:
            dead = int(side.integers(out_c))
            if depthwise:
                data[..., dead] = 0
            else:
                data[dead] = 0
            w_scales[dead] = 1e-9
            bias_data[dead] = int(side.choice([-1, 1])) * int(side.integers(2 ** 29, 2 ** 31 - 1))
        w = self.tensor(wshape, scale=w_scales, zp=0, qdim=3 if depthwise else 0, data=data)
        bias = self.tensor((out_c,), dtype="int32", scale=inp.scale[0] * w_scales, zp=0, data=bias_data)
        kk = k[0] * k[1] * (1 if depthwise else c)
        out = self.act((1, oh, ow, out_c), scale=self.out_scale(float(inp.scale[0]), float(np.median(w_scales)), kk))
        return self.op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [self.cur, w, bias], out,
                       padding=padding, strideH=stride[0], strideW=stride[1], dilationHFactor=dil[0],
                       dilationWFactor=dil[1], depthMultiplier=mult, activation=str(self.rng.choice(ACTS)))

    def fc(self):
        inp = self.t(self.cur)
        in_n = inp.shape[3]
        out_n = int(self.rng.integers(1, 17))
        per_channel = self.rng.random() < 0.5
        w_scales = (np.array([self.scale(-3, -1) for _ in range(out_n)], np.float32) if per_channel
                    else np.array([self.scale(-3, -1)], np.float32))
        w = self.tensor((out_n, in_n), scale=w_scales, zp=0, data=self.weights((out_n, in_n)))
        bias = self.tensor((out_n,), dtype="int32", scale=np.float32(inp.scale[0]) * w_scales[:1], zp=0,
                           data=self.rng.integers(-2 ** 14, 2 ** 14, out_n).astype(np.int32))
        out_scale = float(inp.scale[0] * np.median(w_scales) * np.sqrt(in_n) * 2 ** self.rng.uniform(-1, 4))
        out = self.act(inp.shape[:3] + (out_n,), scale=out_scale)
        return self.op("FULLY_CONNECTED", [self.cur, w, bias], out, activation=str(self.rng.choice(ACTS)),
                       weightsFormat=0, keepNumDims=True)

    def pool(self):
        inp = self.t(self.cur)
        _, h, w, c = inp.shape
        k = (int(self.rng.integers(1, h + 2)), int(self.rng.integers(1, w + 2)))
        stride = (int(self.rng.integers(1, 4)), int(self.rng.integers(1, 4)))
        padding = "SAME" if max(k[0] - h, k[1] - w) > 0 or self.rng.random() < 0.5 else "VALID"
        oh, ow = self.window(h, k[0], stride[0], 1, padding), self.window(w, k[1], stride[1], 1, padding)
        out = self.tensor((1, oh, ow, c), scale=inp.scale, zp=inp.zero_point)
        kind = str(self.rng.choice(["AVERAGE_POOL_2D", "MAX_POOL_2D"]))
        return self.op(kind, [self.cur], out, padding=padding, strideH=stride[0], strideW=stride[1],
                       filterHeight=k[0], filterWidth=k[1], activation=str(self.rng.choice(ACTS)))

    def mean_add(self):
        """MEAN over H and W (keep dims), then ADD of the input and that mean (a broadcast)."""
        inp = self.cur
        axes = self.tensor((2,), dtype="int32", data=np.array([1, 2], np.int32))
        m = self.op("MEAN", [inp, axes], self.act((1, 1, 1, self.t(inp).shape[3])), keepDims=True)
        order = [inp, m] if self.rng.random() < 0.5 else [m, inp]
        return self.op("ADD", order, self.act(self.t(inp).shape), activation=str(self.rng.choice(ACTS)))

    def mean(self):
        inp = self.t(self.cur)
        axes = sorted(self.rng.choice([1, 2, 3], size=int(self.rng.integers(1, 3)), replace=False).tolist())
        shape = tuple(1 if d in axes else n for d, n in enumerate(inp.shape))
        a = self.tensor((len(axes),), dtype="int32", data=np.array(axes, np.int32))
        return self.op("MEAN", [self.cur, a], self.act(shape), keepDims=True)

    def pad(self):
        inp = self.t(self.cur)
        pads = np.zeros((4, 2), np.int32)
        pads[1:] = self.rng.integers(0, 3, (3, 2))
        p = self.tensor((4, 2), dtype="int32", data=pads)
        shape = tuple(int(n + pads[d].sum()) for d, n in enumerate(inp.shape))
        return self.op("PAD", [self.cur, p], self.tensor(shape, scale=inp.scale, zp=inp.zero_point))

    def concat(self):
        inp = self.t(self.cur)
        shape = inp.shape[:3] + (2 * inp.shape[3],)
        return self.op("CONCATENATION", [self.cur, self.cur], self.tensor(shape, scale=inp.scale, zp=inp.zero_point),
                       axis=3, activation="NONE")

    def elementwise(self):
        inp = self.t(self.cur)
        kind = str(self.rng.choice(["QUANTIZE", "RELU", "RELU6", "LOGISTIC", "TANH"]))
        out = {"LOGISTIC": lambda: self.tensor(inp.shape, scale=1 / 256, zp=-128),
               "TANH": lambda: self.tensor(inp.shape, scale=1 / 128, zp=0)}.get(kind, lambda: self.act(inp.shape))()
        return self.op(kind, [self.cur], out)

    def softmax(self):
        if float(self.t(self.cur).scale[0]) < 1e-5:     # TFLite's softmax needs beta * scale >= 2^-26
            self.op("QUANTIZE", [self.cur], self.act(self.t(self.cur).shape))
        inp = self.t(self.cur)
        return self.op("SOFTMAX", [self.cur], self.tensor(inp.shape, scale=1 / 256, zp=-128),
                       beta=float(self.rng.uniform(0.3, 2.0)))

    def graph(self, tflm: bool) -> Graph:
        g = Graph(tensors=self.tensors, ops=self.ops, inputs=[self.input], outputs=[self.cur], name="chain")
        # TFLM's semantics (double-rounding FC) where edgekit takes them: no LOGISTIC / TANH
        tflm = tflm and not any(op.kind in ("LOGISTIC", "TANH") for op in self.ops)
        g.meta["reference"] = "tflm" if tflm else "litert"
        return g


def random_chain(seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    chain = Chain(rng)
    steps = [chain.conv, lambda: chain.conv(True), chain.fc, chain.pool, chain.mean_add, chain.mean,
             chain.pad, chain.concat, chain.elementwise]
    for _ in range(int(rng.integers(5, 10))):
        if chain.t(chain.cur).size > 3000:
            chain.pool()
        else:
            steps[int(rng.integers(len(steps)))]()
    chain.softmax()
    return chain.graph(tflm=bool(rng.random() < 0.3))


def c_graph(seed: int) -> Graph:
    """The chain as the C gets it: every other seed with one compressed weight format forced
    (layers that cannot take it keep int8); the integer reference gets random_chain(seed)."""
    graph = random_chain(seed)
    if seed % 2 == 0:
        from edgekit.passes.weights import choose_weight_formats
        choose_weight_formats(graph, formats.FORMATS[seed // 2 % len(formats.FORMATS)], "speed", None)
    return graph


def write_dir(graph: Graph, target_name: str, out) -> None:
    target = get_target(target_name)
    export_program(lower(graph, target), out, target, "chain", "chain")


@pytest.mark.parametrize("target", ["host", "cortex-m4"])
@pytest.mark.parametrize("seed", SEEDS)
def test_random_chain_every_layer_matches_c(seed, target, tmp_path):
    graph = random_chain(seed)
    write_dir(c_graph(seed), target, tmp_path / "out")
    model = CompiledModel(tmp_path / "out")
    rng = np.random.default_rng(100 + seed)
    x = rng.integers(-128, 128, size=(6, *model.input_shape[1:]), dtype=np.int8)
    x[0], x[1] = -128, 127
    y, records = run_traced_host(model, x, sanitize=True)
    ref = IntReference(lower(graph, None))
    expected = {t.tensor: t for t in ref.trace_batch(x)}
    kinds = [op.kind for op in graph.ops]
    for layer in sorted({layer for _, layer in records}):
        tensor = records[0, layer][0]
        got = np.stack([np.frombuffer(records[s, layer][1], np.int8) for s in range(len(x))])
        want = expected[tensor]
        assert_bit_exact(got, want.values.reshape(len(x), -1),
                         f"seed {seed} {target}: layer {layer} {want.layer} of chain {kinds}")
    assert_bit_exact(y, ref.run_flat(x), f"seed {seed} {target}: outputs")


def test_chains_use_every_c_kernel():
    """Every kernel in firmware/kernels is held to the reference by some chain (ek_copy_s8, which
    only a model that is one RESHAPE needs, by test_intref.py's flatten_3d case; ek_huff_decode_s8,
    which is not a layer but ek_model_init()'s boot-time decoder, by test_weight_formats.py's
    --huffman-decode boot cases)."""
    used = {s.call.kernel for seed in SEEDS for target in ("host", "cortex-m4")
            for s in lower(c_graph(seed), get_target(target)).steps}
    kernels = {p.stem for p in (resource_dir("firmware") / "kernels").glob("ek_*.c")} - {"ek_copy_s8", "ek_huff_decode_s8"}
    assert kernels <= used, f"no random chain uses {sorted(kernels - used)}: add a seed that does"
