"""Parse a TFLite flatbuffer into edgekit's IR (edgekit.ir.Graph).

Only the schema module of ai_edge_litert is used (no interpreter, no TensorFlow), so parsing
is fast. Every malformed input becomes an EdgekitError with one sentence.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError, UnsupportedModelError
from edgekit.ir import Graph, Op, Tensor

_TENSOR_DTYPES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16",
    9: "int8", 10: "float64", 17: "int4",
}
_FUSED = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_PADDING = {0: "SAME", 1: "VALID"}


def _schema():
    from ai_edge_litert import schema_py_generated as schema
    return schema


def _builtin_names() -> dict[int, str]:
    schema = _schema()
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _decode(value) -> str:
    """A name from the file as text; untrusted, so control characters (newlines...) become '?'
    and a name can never break a one-line message."""
    if value is None:
        return ""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return "".join(c if c.isprintable() else "?" for c in text)


def _options(op_t, kind: str) -> dict:
    """Flatten the op's builtin options object into a plain dict with readable enums."""
    opts = op_t.builtinOptions
    if opts is None:
        return {}
    out = {}
    for key, value in vars(opts).items():
        if isinstance(value, np.ndarray):
            value = [int(v) for v in value]
        out[key] = value
    if "fusedActivationFunction" in out:
        out["activation"] = _FUSED.get(out.pop("fusedActivationFunction"), "UNKNOWN")
    if "padding" in out:
        out["padding"] = _PADDING.get(out["padding"], "UNKNOWN")
    return out


def load_tflite(source: str | Path | bytes, label: str | None = None) -> Graph:
    """Read a .tflite file (path or bytes) into a Graph. Raises EdgekitError on bad input;
    `label` names the model in messages (default: its path, or 'the TFLite model')."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise EdgekitError(f"cannot read {path}: {e.strerror}") from None
        label = label or str(path)
    else:
        data = bytes(source)
        label = label or "the TFLite model"
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise EdgekitError(f"{label} is not a TFLite flatbuffer (no 'TFL3' identifier): "
                           "pass a .tflite, .h5 or .keras model file")
    schema = _schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(data, 0)
    except Exception as e:  # a corrupt flatbuffer raises anything from struct.error to IndexError
        raise EdgekitError(f"{label} is corrupt or truncated (its flatbuffer cannot be parsed: "
                           f"{type(e).__name__}): re-export it from TensorFlow") from None
    try:
        return _to_graph(model, label)
    except (IndexError, TypeError, ValueError, AttributeError) as e:
        raise EdgekitError(f"{label} is corrupt or inconsistent ({type(e).__name__}: {e}): "
                           "re-export it from TensorFlow") from None


def _to_graph(model, label: str) -> Graph:
    if not model.subgraphs:
        raise EdgekitError(f"{label} has no subgraph")
    # Further subgraphs are allowed when each is a signature of its own (edgekit.emit.signatures:
    # the per-exit signatures edgekit writes for phones); subgraph 0 is the model compiled.
    signed = {int(s.subgraphIndex) for s in model.signatureDefs or []}
    if len(model.subgraphs) > 1 and not set(range(1, len(model.subgraphs))) <= signed:
        raise UnsupportedModelError(f"{label} has {len(model.subgraphs)} subgraphs (control flow); "
                                    "edgekit compiles single-subgraph models only")
    names = _builtin_names()
    sg = model.subgraphs[0]
    _check_indices(model, sg, label)
    tensors = []
    for i, t in enumerate(sg.tensors or []):
        dtype = _TENSOR_DTYPES.get(t.type, f"type{t.type}")
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        scale = zero_point = None
        qdim = 0
        q = t.quantization
        if q is not None and q.scale is not None and len(q.scale) > 0:
            scale = np.asarray(q.scale, dtype=np.float32)
            zero_point = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0] * len(scale),
                                    dtype=np.int64)
            qdim = int(q.quantizedDimension)
        data = None
        buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        if buf is not None and buf.data is not None and len(buf.data) > 0:
            raw = np.asarray(buf.data, dtype=np.uint8).tobytes()
            if dtype == "int4":
                data = _unpack_int4(raw, shape)
            elif dtype.startswith("type"):
                raise UnsupportedModelError(f"tensor '{_decode(t.name)}' has TFLite type {t.type}, "
                                            "which edgekit does not support")
            else:
                arr = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
                if arr.size != int(np.prod(shape, dtype=np.int64)):
                    raise EdgekitError(f"{label}: constant tensor '{_decode(t.name)}' holds "
                                       f"{arr.size} values but its shape {list(shape)} needs "
                                       f"{int(np.prod(shape))}: the file is corrupt")
                data = arr.astype(arr.dtype.newbyteorder("="), copy=True).reshape(shape)
        tensors.append(Tensor(index=i, name=_decode(t.name), shape=shape, dtype=dtype, scale=scale,
                              zero_point=zero_point, quant_dim=qdim, data=data))
    ops = []
    for op_t in sg.operators or []:
        code = model.operatorCodes[op_t.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        kind = names.get(builtin, f"BUILTIN_{builtin}")
        if kind == "CUSTOM":
            kind = f"CUSTOM:{_decode(code.customCode)}"
        inputs = [int(i) for i in (op_t.inputs if op_t.inputs is not None else [])]
        outputs = [int(i) for i in (op_t.outputs if op_t.outputs is not None else [])]
        name = tensors[outputs[0]].name if outputs else ""
        ops.append(Op(kind=kind, inputs=inputs, outputs=outputs, options=_options(op_t, kind),
                      name=name))
    graph = Graph(tensors=tensors, ops=ops, inputs=[int(i) for i in sg.inputs],
                  outputs=[int(i) for i in sg.outputs], name=_decode(sg.name) or "model")
    # Which interpreter defines this model's semantics (edgekit.run.reference): LiteRT's reference
    # kernels, or TFLite Micro's for models with INT4 weights (LiteRT lacks some int4 kernels).
    # The two differ in FULLY_CONNECTED's rounding (edgekit.lower.fc).
    graph.meta["reference"] = "tflm" if any(t.dtype == "int4" for t in tensors) else "litert"
    return graph


# Options that are divisors or extents: 0 or less only comes from a corrupt file.
_POSITIVE_OPTIONS = ("strideH", "strideW", "dilationHFactor", "dilationWFactor", "filterHeight",
                     "filterWidth")


def _check_indices(model, sg, label: str) -> None:
    """Every tensor and opcode index in range, every stride/filter extent positive: a corrupt
    flatbuffer fails here with one sentence instead of deep inside a later stage."""
    n = len(sg.tensors or [])

    def bad(what: str, value) -> EdgekitError:
        return EdgekitError(f"{label} is corrupt ({what} is {value}, out of range): "
                            "re-export it from TensorFlow")

    for role, indices in (("a subgraph input", sg.inputs), ("a subgraph output", sg.outputs)):
        for i in (indices if indices is not None else []):
            if not 0 <= int(i) < n:
                raise bad(role, int(i))
    n_codes = len(model.operatorCodes or [])
    for k, op_t in enumerate(sg.operators or []):
        if not 0 <= int(op_t.opcodeIndex) < n_codes:
            raise bad(f"the opcode index of operator {k}", int(op_t.opcodeIndex))
        for i in (op_t.inputs if op_t.inputs is not None else []):
            if not -1 <= int(i) < n:
                raise bad(f"an input of operator {k}", int(i))
        for i in (op_t.outputs if op_t.outputs is not None else []):
            if not 0 <= int(i) < n:
                raise bad(f"an output of operator {k}", int(i))
        opts = vars(op_t.builtinOptions) if op_t.builtinOptions is not None else {}
        for key in _POSITIVE_OPTIONS:
            if key in opts and int(opts[key]) < 1:
                raise EdgekitError(f"{label} is corrupt (operator {k} has {key} {int(opts[key])}): "
                                   "re-export it from TensorFlow")


def _unpack_int4(raw: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """TFLite INT4: two values per byte, low nibble first, sign-extended."""
    b = np.frombuffer(raw, dtype=np.uint8)
    lo = (b & 0x0F).astype(np.int8)
    hi = (b >> 4).astype(np.int8)
    vals = np.empty(b.size * 2, dtype=np.int8)
    vals[0::2], vals[1::2] = lo, hi
    vals = np.where(vals > 7, vals - 16, vals).astype(np.int8)
    n = int(np.prod(shape, dtype=np.int64))
    return vals[:n].reshape(shape)
