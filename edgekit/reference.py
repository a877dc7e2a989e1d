"""TFLite's int8 reference interpreter: the bar every edgekit output byte is held to.

The reference is LiteRT's interpreter with ``OpResolverType.BUILTIN_REF``: the
plain reference kernels (the default resolver routes through XNNPACK and
optimized kernels, which differ by a few LSB and so are never a reference).
Models with INT4 weight tensors run in TFLite Micro's Python interpreter
instead (``tflite_micro.runtime``), because LiteRT's reference resolver lacks
some int4 kernel versions. The two are not bit-identical: TFLM's
FULLY_CONNECTED rounds twice, LiteRT's once (measured on ad01: thousands of
bytes differ by up to 2 LSB), and edgekit follows whichever defines the model
(graph.meta["reference"], edgekit.ops.fc).

``ai_edge_litert`` is imported inside the functions so that importing this
module (and so starting the CLI) stays fast.  Every error is an EdgekitError
with a one-sentence message.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import EdgekitError, UnsupportedModelError

__all__ = ["reference_outputs", "reference_tensors"]


def reference_outputs(model, x, input_qparams=None, output_qparams=None) -> np.ndarray:
    """Run a batch through TFLite's reference kernels, one sample at a time.

    ``model`` is the .tflite flatbuffer (bytes) or a path to it; the model must
    have one int8 input of shape ``[1, *input_shape]`` and one int8 output.
    ``x`` is int8 of shape ``[N, *input_shape]``.  Returns int8 of shape
    ``[N, *output_shape]``.

    A model with a float32 input (QUANTIZE inside) or float32 output (DEQUANTIZE
    inside) is run on the int8 values edgekit's C sees at that boundary: given
    ``input_qparams=(scale, zero_point)`` of the QUANTIZE output, each int8 x is
    fed as the float (x - zero_point) * scale, which QUANTIZE maps back to x
    exactly; given ``output_qparams`` of the DEQUANTIZE input, each float output
    y is mapped back to its int8 value round(y / scale) + zero_point, exactly.
    """
    content = _model_bytes(model)
    if uses_tflm(content):
        return _tflm_outputs(content, _int8_array(x, "x"), input_qparams, output_qparams)
    interp = _interpreter(content, preserve_all_tensors=False)
    (inp,), (out,) = _single_int8_io(interp, float_input=input_qparams is not None,
                                     float_output=output_qparams is not None)
    x = _int8_array(x, "x")
    in_shape = tuple(int(d) for d in inp["shape"][1:])
    if x.ndim != len(in_shape) + 1 or x.shape[1:] != in_shape:
        raise EdgekitError(
            f"x has shape {list(x.shape)} but the model takes a batch of shape "
            f"[N, {', '.join(map(str, in_shape))}]."
        )
    out_shape = tuple(int(d) for d in out["shape"][1:])
    y = np.empty((x.shape[0],) + out_shape, dtype=np.int8)
    for i in range(x.shape[0]):
        sample = x[i : i + 1]
        if inp["dtype"] == np.float32:
            scale, zero_point = input_qparams
            sample = ((sample.astype(np.int32) - zero_point) * np.float32(scale)).astype(np.float32)
        interp.set_tensor(inp["index"], sample)
        interp.invoke()
        result = interp.get_tensor(out["index"])[0]
        if out["dtype"] == np.float32:
            scale, zero_point = output_qparams
            result = np.clip(np.round(result / np.float32(scale)) + zero_point, -128, 127)
        y[i] = result
    return y


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
    (inp,), _ = _single_int8_io(interp)
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
    from .importers.tflite import load_tflite
    try:
        return load_tflite(content).meta.get("reference") == "tflm"
    except EdgekitError:      # not a model edgekit reads: let the interpreter say why
        return False


def _tflm_outputs(content: bytes, x: np.ndarray, input_qparams, output_qparams) -> np.ndarray:
    """reference_outputs through TFLite Micro's Python interpreter (tflite_micro.runtime)."""
    from tflite_micro.python.tflite_micro import runtime

    try:
        interp = runtime.Interpreter.from_bytes(content)
    except (ValueError, RuntimeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgekitError(f"TFLite Micro's interpreter cannot load this model ({reason}).") from None
    inp, out = interp.get_input_details(0), interp.get_output_details(0)
    in_shape = tuple(int(d) for d in inp["shape"][1:])
    if x.ndim != len(in_shape) + 1 or x.shape[1:] != in_shape:
        raise EdgekitError(f"x has shape {list(x.shape)} but the model takes a batch of shape "
                           f"[N, {', '.join(map(str, in_shape))}].")
    ys = []
    for i in range(x.shape[0]):
        sample = x[i:i + 1]
        if np.dtype(inp["dtype"]) == np.float32:
            scale, zero_point = input_qparams
            sample = ((sample.astype(np.int32) - zero_point) * np.float32(scale)).astype(np.float32)
        interp.set_input(sample, 0)
        interp.invoke()
        result = np.array(interp.get_output(0))[0]
        if np.dtype(out["dtype"]) == np.float32:
            scale, zero_point = output_qparams
            result = np.clip(np.round(result / np.float32(scale)) + zero_point, -128, 127)
        ys.append(result.astype(np.int8))
    return np.stack(ys)


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


def _single_int8_io(interp, float_input: bool = False, float_output: bool = False):
    inputs, outputs = interp.get_input_details(), interp.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedModelError(
            f"The model has {len(inputs)} inputs and {len(outputs)} outputs; the reference "
            "runner takes models with exactly one of each."
        )
    for role, detail, float_ok in (("input", inputs[0], float_input), ("output", outputs[0], float_output)):
        if detail["dtype"] == np.float32 and float_ok:
            continue
        if detail["dtype"] != np.int8:
            raise UnsupportedModelError(
                f"The model's {role} is {np.dtype(detail['dtype']).name}, not int8; convert it "
                "with inference_input_type and inference_output_type set to tf.int8."
            )
    return inputs, outputs


def _int8_array(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise EdgekitError(
            f"{name} is {x.dtype.name}, not int8; quantize it with the model input's scale "
            "and zero point first."
        )
    return np.ascontiguousarray(x)
