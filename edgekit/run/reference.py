"""TFLite's int8 reference interpreter: the bar every edgekit output byte is held to.

The reference is LiteRT's interpreter with ``OpResolverType.BUILTIN_REF``: the
plain reference kernels (the default resolver routes through XNNPACK and
optimized kernels, which differ by a few LSB and so are never a reference).
Models with INT4 weight tensors run in TFLite Micro's Python interpreter
instead (``tflite_micro.runtime``), because LiteRT's reference resolver lacks
some int4 kernel versions. The two are not bit-identical: TFLM's
FULLY_CONNECTED rounds twice, LiteRT's once (measured on ad01: thousands of
bytes differ by up to 2 LSB), and edgekit follows whichever defines the model
(graph.meta["reference"], edgekit.lower.fc).

``ai_edge_litert`` is imported inside the functions so that importing this
module (and so starting the CLI) stays fast.  Every error is an EdgekitError
with a one-sentence message.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError, UnsupportedModelError

__all__ = ["reference_outputs", "reference_tensors"]


def reference_outputs(model, x, input_qparams=None, output_qparams=None):
    """Run a batch through TFLite's reference kernels, one sample at a time.

    ``model`` is the .tflite flatbuffer (bytes) or a path to it; the model must
    have one int8 input of shape ``[1, *input_shape]`` and int8 outputs.
    ``x`` is int8 of shape ``[N, *input_shape]``.  Returns int8 of shape
    ``[N, *output_shape]`` for a model with one output, and for a model with
    several a list of them, one per output in the model's output order (like
    Keras' ``predict``).

    A model with a float32 input (QUANTIZE inside) or float32 outputs (DEQUANTIZE
    inside) is run on the int8 values edgekit's C sees at that boundary: given
    ``input_qparams=(scale, zero_point)`` of the QUANTIZE output, each int8 x is
    fed as the float (x - zero_point) * scale, which QUANTIZE maps back to x
    exactly; given ``output_qparams`` (one ``(scale, zero_point)`` pair of the
    DEQUANTIZE input for a single-output model, or a list with one pair or None
    per output), each float output y is mapped back to its int8 value
    round(y / scale) + zero_point, exactly.
    """
    content = _model_bytes(model)
    session = _TflmSession(content) if uses_tflm(content) else _LiteRtSession(content)
    out_qparams = _per_output(output_qparams, len(session.outputs))
    _check_io(session.inputs, session.outputs, input_qparams is not None, [q is not None for q in out_qparams])
    (inp,) = session.inputs
    x = _int8_array(x, "x")
    in_shape = tuple(int(d) for d in inp["shape"][1:])
    if x.ndim != len(in_shape) + 1 or x.shape[1:] != in_shape:
        raise EdgekitError(
            f"x has shape {list(x.shape)} but the model takes a batch of shape "
            f"[N, {', '.join(map(str, in_shape))}]."
        )
    ys = [np.empty((x.shape[0], *(int(d) for d in out["shape"][1:])), dtype=np.int8) for out in session.outputs]
    for i in range(x.shape[0]):
        sample = x[i : i + 1]
        if np.dtype(inp["dtype"]) == np.float32:
            scale, zero_point = input_qparams
            sample = ((sample.astype(np.int32) - zero_point) * np.float32(scale)).astype(np.float32)
        for y, result, out, qparams in zip(ys, session.run(sample), session.outputs, out_qparams):
            if np.dtype(out["dtype"]) == np.float32:
                scale, zero_point = qparams
                result = np.clip(np.round(result / np.float32(scale)) + zero_point, -128, 127)
            y[i] = result
    return ys[0] if len(ys) == 1 else ys


def signature_outputs(model, key: str, x: np.ndarray) -> np.ndarray:
    """One signature's only output (e.g. the `exit<k>` signatures of edgekit.emit.signatures) for
    an int8 batch x [N, ...], run by LiteRT's reference kernels: int8 [N, ...]."""
    interp = _interpreter(_model_bytes(model), preserve_all_tensors=False)
    try:
        runner = interp.get_signature_runner(key)
    except ValueError:
        raise EdgekitError(f"the model has no signature '{key}'") from None
    (name,) = runner.get_input_details()
    out = [next(iter(runner(**{name: x[i:i + 1]}).values()))[0] for i in range(x.shape[0])]
    return np.stack(out).astype(np.int8)


class _LiteRtSession:
    """LiteRT's interpreter with the reference kernels: inputs, outputs (details) and run(sample)
    -> every output of that one sample (without the batch axis)."""

    def __init__(self, content: bytes):
        self.interp = _interpreter(content, preserve_all_tensors=False)
        self.inputs, self.outputs = self.interp.get_input_details(), self.interp.get_output_details()

    def run(self, sample: np.ndarray) -> list[np.ndarray]:
        self.interp.set_tensor(self.inputs[0]["index"], sample)
        self.interp.invoke()
        return [self.interp.get_tensor(out["index"])[0] for out in self.outputs]


class _TflmSession:
    """The same through TFLite Micro's Python interpreter (tflite_micro.runtime), for INT4 models."""

    def __init__(self, content: bytes):
        from tflite_micro.python.tflite_micro import runtime

        from edgekit.frontend.tflite import load_tflite
        try:
            self.interp = runtime.Interpreter.from_bytes(content)
        except (ValueError, RuntimeError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EdgekitError(f"TFLite Micro's interpreter cannot load this model ({reason}).") from None
        graph = load_tflite(content)      # TFLM's Python API does not say how many there are
        self.inputs = [self.interp.get_input_details(k) for k in range(len(graph.inputs))]
        self.outputs = [self.interp.get_output_details(k) for k in range(len(graph.outputs))]

    def run(self, sample: np.ndarray) -> list[np.ndarray]:
        self.interp.set_input(sample, 0)
        self.interp.invoke()
        return [np.array(self.interp.get_output(k))[0] for k in range(len(self.outputs))]


def _per_output(qparams, n: int) -> list:
    """output_qparams as one entry per output: a single (scale, zero_point) pair stands for the
    one output of a single-output model."""
    if qparams is None:
        return [None] * n
    if len(qparams) == 2 and all(np.isscalar(v) for v in qparams):
        qparams = [qparams]
    if len(qparams) != n:
        raise EdgekitError(f"output_qparams has {len(qparams)} entries but the model has {n} outputs; "
                           "pass one (scale, zero_point) or None per output.")
    return list(qparams)


def reference_tensors(model, x_one) -> dict[int, np.ndarray]:
    """Run one sample and return every tensor that holds data, keyed by tensor index.

    Uses ``experimental_preserve_all_tensors=True`` so intermediate activations
    are not overwritten by the arena planner; the dict holds the input, every
    intermediate and output activation, and the constant tensors (weights,
    biases, shapes).  ``x_one`` is one int8 sample of shape ``input_shape`` or
    ``[1, *input_shape]``.  Used to find the first layer where another
    implementation departs from the reference.
    """
    interp = _interpreter(_model_bytes(model), preserve_all_tensors=True)
    _check_io(interp.get_input_details(), interp.get_output_details())
    (inp,) = interp.get_input_details()
    x = _int8_array(x_one, "x_one")
    shape = tuple(int(d) for d in inp["shape"])
    if x.shape == shape[1:]:
        x = x[np.newaxis]
    if x.shape != shape:
        raise EdgekitError(
            f"x_one has shape {list(x.shape)} but the model takes one sample of shape "
            f"{list(shape[1:])}."
        )
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    tensors = {}
    for detail in interp.get_tensor_details():
        try:
            tensors[detail["index"]] = np.array(interp.get_tensor(detail["index"]))
        except ValueError:  # a tensor without data (optional input, scratch)
            continue
    return tensors


def uses_tflm(content: bytes) -> bool:
    """Models with INT4 weight tensors are defined by TFLite Micro's interpreter: LiteRT's
    reference resolver lacks some int4 kernel versions (e.g. DEPTHWISE_CONV_2D v7)."""
    from edgekit.frontend.tflite import load_tflite
    try:
        return load_tflite(content).meta.get("reference") == "tflm"
    except EdgekitError:      # not a model edgekit reads: let the interpreter say why
        return False


def _model_bytes(model) -> bytes:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        try:
            return Path(model).read_bytes()
        except OSError as e:
            raise EdgekitError(f"Cannot read the TFLite model {os.fspath(model)!r}: {e.strerror}.") from None
    raise EdgekitError(f"The model must be .tflite bytes or a path, not {type(model).__name__}.")


def _interpreter(content: bytes, preserve_all_tensors: bool):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        interp = Interpreter(
            model_content=content,
            experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
            experimental_preserve_all_tensors=preserve_all_tensors,
        )
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgekitError(f"TFLite's reference interpreter cannot load this model ({reason}).") from None
    return interp


def _check_io(inputs, outputs, float_input: bool = False, float_outputs: list[bool] | None = None) -> None:
    """One input; the input and every output int8, or float32 where qparams map it."""
    if len(inputs) != 1:
        raise UnsupportedModelError(
            f"The model has {len(inputs)} inputs; the reference runner takes models with exactly one."
        )
    roles = [("input", inputs[0], float_input)]
    roles += [("output" if len(outputs) == 1 else f"output {k}", out, ok)
              for k, (out, ok) in enumerate(zip(outputs, float_outputs or [False] * len(outputs)))]
    for role, detail, float_ok in roles:
        if np.dtype(detail["dtype"]) == np.float32 and float_ok:
            continue
        if np.dtype(detail["dtype"]) != np.int8:
            raise UnsupportedModelError(
                f"The model's {role} is {np.dtype(detail['dtype']).name}, not int8; convert it "
                "with inference_input_type and inference_output_type set to tf.int8."
            )


def _int8_array(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise EdgekitError(
            f"{name} is {x.dtype.name}, not int8; quantize it with the model input's scale "
            "and zero point first."
        )
    return np.ascontiguousarray(x)
