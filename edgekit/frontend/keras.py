"""Keras models (.h5 from Keras 2 / tf_keras or Keras 3, and Keras 3 .keras archives) ->
full-integer int8 TFLite bytes, quantized by TensorFlow's own converter.

Safety: a model file is data, never code. Before anything is deserialized the stored model
config is read as JSON and any Lambda layer (which carries Python bytecode) or any layer class
that neither Keras nor edgekit (edgekit.train.qat's quantization layers) ships is refused;
.keras archives load with Keras' safe_mode.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

from edgekit import errors
from edgekit.errors import EdgekitError, UnsupportedModelError

# Loading and quantizing run in a child process bounded by this many seconds.
TIMEOUT_S = float(os.environ.get("EDGEKIT_KERAS_TIMEOUT", "900"))
_CHILD_ERROR = "edgekit-child-error: "

_CODE_LAYERS = {"Lambda", "TFOpLambda", "SlicingOpLambda"}
# edgekit's own layers (quantization-aware training) are code edgekit ships: a file may name them.
EDGEKIT_LAYERS_MODULE = "edgekit.train.qat"


def _walk_layers(config):
    """Yield every dict with a 'class_name' in a (nested) Keras config."""
    if isinstance(config, dict):
        if "class_name" in config:
            yield config
        for v in config.values():
            yield from _walk_layers(v)
    elif isinstance(config, list):
        for v in config:
            yield from _walk_layers(v)


def _check_config(config: dict, label: str) -> None:
    try:
        objects = list(_walk_layers(config))
    except RecursionError:
        raise EdgekitError(f"{label}: its model config is nested too deeply: the file is corrupt") from None
    for layer in objects:
        cls = layer.get("class_name")
        name = layer.get("config", {}).get("name", "?") if isinstance(layer.get("config"), dict) else "?"
        if not isinstance(cls, str):
            raise EdgekitError(f"{label}: its model config has a class name that is not a string: "
                               "the file is corrupt")
        if cls in _CODE_LAYERS:
            raise UnsupportedModelError(
                f"{label}: layer '{_safe(name)}' is a {cls}, which stores Python code; edgekit never runs "
                "code from a model file: replace it with built-in Keras layers and save again")
        module = layer.get("module")      # Keras 3 configs name the module to import the class from
        from_keras = isinstance(module, str) and (module == "keras" or module.startswith("keras."))
        if module == EDGEKIT_LAYERS_MODULE:
            from edgekit.train.qat import EDGEKIT_LAYERS      # registers them with Keras
            from_keras = cls in EDGEKIT_LAYERS
        if module is not None and not from_keras:
            where = f" (layer '{_safe(name)}')" if name != "?" else ""
            raise UnsupportedModelError(
                f"{label}: '{_safe(cls)}'{where} comes from module '{_safe(module)}', not from Keras; "
                "edgekit never runs code from a model file: use built-in Keras layers and save again")


def _safe(text) -> str:
    return "".join(c if c.isalnum() or c in "_-./" else "_" for c in str(text))[:60]


def _read_h5(path: Path) -> tuple[str, dict]:
    import h5py
    try:
        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version", b"")
            config = f.attrs.get("model_config")
    except Exception:   # h5py raises OSError, and KeyError or others for damaged object headers
        raise EdgekitError(f"{path} is not a readable HDF5 file: is it a Keras .h5 model?") from None
    if config is None:
        raise EdgekitError(f"{path} holds no Keras model (only weights?): save the whole model with "
                           "model.save('model.h5')")
    try:
        if isinstance(version, bytes):
            version = version.decode()
        if isinstance(config, bytes):
            config = config.decode()
        return str(version), json.loads(config)
    except (ValueError, TypeError, RecursionError):     # bad UTF-8 or JSON, a non-text attribute
        raise EdgekitError(f"{path}: its model config is not valid JSON: the file is corrupt") from None


def load_keras(path: str | Path):
    """Load a Keras model without executing code from the file. Returns (model, keras_module)."""
    path = Path(path)
    if not path.exists():
        raise EdgekitError(f"{path} does not exist")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        version, config = _read_h5(path)
        _check_config(config, str(path))
        with _quiet_native_output():      # TensorFlow's import logs C++ noise to stderr
            if version.startswith("2") or not version:
                import tf_keras as keras      # Keras 2 file: load with Keras 2
            else:
                import keras
        try:
            model = keras.models.load_model(str(path), compile=False)
        except Exception as e:  # unknown layer classes, truncated weights...
            raise EdgekitError(f"{path} could not be loaded by Keras {keras.__version__} "
                               f"({type(e).__name__}: {_first_line(e)})") from None
        return model, keras
    if suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as z:
                config = json.loads(z.read("config.json"))
        except Exception:   # BadZipFile, KeyError, zlib.error, EOFError, bad UTF-8 or JSON...
            raise EdgekitError(f"{path} is not a Keras 3 .keras archive (corrupt or truncated)") from None
        _check_config(config, str(path))
        with _quiet_native_output():
            import keras
        try:
            model = keras.models.load_model(str(path), compile=False, safe_mode=True)
        except Exception as e:
            raise EdgekitError(f"{path} could not be loaded by Keras {keras.__version__} "
                               f"({type(e).__name__}: {_first_line(e)})") from None
        return model, keras
    raise EdgekitError(f"{path}: unknown model format '{suffix}'; pass a .h5, .keras or .tflite file")


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


def load_calibration(calib: str | Path, input_shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Representative inputs [N, *input_shape] float32 from .npy/.npz, or 'random'."""
    if str(calib) == "random":
        print("WARNING: --calib random: quantization ranges come from random inputs, not your data; "
              "the exported model's accuracy is NOT preserved. Pass --calib samples.npy for real use.",
              file=sys.stderr)
        rng = np.random.default_rng(seed)
        return rng.uniform(-1.0, 1.0, size=(64, *input_shape)).astype(np.float32)
    path = Path(calib)
    if not path.is_file():
        raise EdgekitError(f"calibration data {path} {'is not a file' if path.exists() else 'does not exist'}: "
                           "pass --calib samples.npy (N inputs shaped like the model input) or --calib random")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):
        raise EdgekitError(f"calibration data {path} is not a .npy or .npz file: save your samples "
                           "with numpy.save('calib.npy', x), x shaped [N, *input_shape]")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise EdgekitError(f"cannot read calibration data {path}: {_first_line(e)}") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        keys = list(data.keys())
        if not keys:
            raise EdgekitError(f"calibration file {path} is empty")
        data = data["x"] if "x" in keys else data[keys[0]]
    data = np.asarray(data)
    if data.shape[1:] != tuple(input_shape):
        if data.shape == tuple(input_shape):
            data = data[None]
        else:
            raise EdgekitError(f"calibration data {path} has shape {list(data.shape)}, but the model "
                               f"expects [N, {', '.join(map(str, input_shape))}]")
    if data.shape[0] == 0:
        raise EdgekitError(f"calibration data {path} holds no samples")
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
        raise EdgekitError(f"calibration data {path} holds {data.dtype} values, not numbers: "
                           "save float32 samples")
    return data.astype(np.float32)


def keras_input_shape(model) -> tuple[int, ...]:
    """The shape of the model's one input (any number of outputs compile)."""
    if len(model.inputs) != 1:
        raise UnsupportedModelError(f"the model has {len(model.inputs)} inputs; edgekit compiles models "
                                    "with one input")
    shape = model.inputs[0].shape
    dims = tuple(shape[1:])
    if any(d is None for d in dims):
        raise UnsupportedModelError(f"the model's input shape {list(shape)} has unknown dimensions; "
                                    "give the Input layer a fixed shape")
    return tuple(int(d) for d in dims)


def quantize_keras(model, keras_module, calib: np.ndarray) -> bytes:
    """Full-integer int8 post-training quantization with TensorFlow's TFLite converter
    (per-channel weights, int8 input and output). A QAT model of edgekit.train is converted with
    its exact-rounding ops off (edgekit.train.qat.converting): the converter reads plain fake
    quantization."""
    qat = sys.modules.get(EDGEKIT_LAYERS_MODULE)
    with qat.converting() if qat is not None else contextlib.nullcontext():
        return _quantize_keras(model, keras_module, calib)


def _quantize_keras(model, keras_module, calib: np.ndarray) -> bytes:
    import tensorflow as tf

    def representative():
        for i in range(calib.shape[0]):
            yield [calib[i:i + 1]]

    # The model is converted with batch size 1 (what a microcontroller runs), so shapes are
    # static and the converter folds shape arithmetic (Keras 3's Flatten would otherwise become
    # SHAPE / STRIDED_SLICE / PACK ops around a dynamic RESHAPE).
    if keras_module.__name__.startswith("tf_keras"):
        fn = tf.function(lambda x: model(x, training=False))
        spec = tf.TensorSpec([1, *calib.shape[1:]], tf.float32)
        converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function(spec)], model)
    else:
        inp = keras_module.Input(batch_shape=(1, *calib.shape[1:]))
        fixed = keras_module.Model(inp, model(inp))
        converter = tf.lite.TFLiteConverter.from_keras_model(fixed)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with warnings.catch_warnings(), _quiet_native_output():
        warnings.simplefilter("ignore")
        try:
            content = bytes(converter.convert())
        except Exception as e:
            raise UnsupportedModelError(f"TensorFlow could not quantize the model to int8 "
                                        f"({type(e).__name__}: {_first_line(e)})") from None
    return keras_output_order(content)


def keras_output_order(content: bytes) -> bytes:
    """The converted model with its subgraph's outputs in the Keras model's output order.

    TensorFlow's converter may list a Keras 3 multi-output model's outputs in another order (e.g.
    outputs 1, 0, 2); its serving signature names them `output_k` in Keras order. The outputs
    vector is permuted in place (the same int32 entries, nothing else in the file changes); a
    model whose signature does not name every output that way is returned as it is."""
    from ai_edge_litert import schema_py_generated as schema
    model = schema.Model.GetRootAs(content, 0)
    if model.SubgraphsLength() < 1 or model.SignatureDefsLength() < 1:
        return content
    sg = model.Subgraphs(0)
    current = [int(t) for t in sg.OutputsAsNumpy()] if sg.OutputsLength() > 1 else []
    sig = model.SignatureDefs(0)
    named = {}
    for k in range(sig.OutputsLength()):
        out = sig.Outputs(k)
        match = re.fullmatch(rb"output_(\d+)", out.Name() or b"")
        if match:
            named[int(match.group(1))] = int(out.TensorIndex())
    wanted = [named.get(k) for k in range(len(current))]
    if not current or sorted(current) != sorted(t for t in wanted if t is not None) or wanted == current:
        return content
    start = sg._tab.Vector(sg._tab.Offset(8))       # SubGraph.outputs: field 2, int32 entries
    patched = bytearray(content)
    patched[start:start + 4 * len(wanted)] = np.asarray(wanted, "<i4").tobytes()
    return bytes(patched)


@contextlib.contextmanager
def _quiet_native_output():
    """The converter's C++ code prints progress lines to the process's stdout/stderr; keep them
    off the user's terminal (they are not edgekit's output)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def keras_to_tflite(path: str | Path, calib) -> bytes:
    """Load a Keras model file and quantize it to int8 TFLite bytes, in a child Python process.

    Isolation keeps a corrupt file that makes HDF5 loop forever, or a converter crash, from taking
    edgekit down: the child is bounded by TIMEOUT_S and any failure becomes one sentence.
    `calib`: a .npy/.npz path, 'random', or an array of samples."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="edgekit-keras-") as tmp:
        calib_arg = calib
        if not isinstance(calib, (str, Path)):
            calib_arg = Path(tmp) / "calib.npy"
            np.save(calib_arg, np.asarray(calib, dtype=np.float32))
        out = Path(tmp) / "model.tflite"
        cmd = [sys.executable, "-m", "edgekit.frontend.keras", str(path), str(calib_arg), str(out)]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired:
            raise EdgekitError(f"loading and quantizing {path} did not finish within {TIMEOUT_S:g} s: the file "
                               "may be corrupt (EDGEKIT_KERAS_TIMEOUT sets the limit)") from None
        lines = proc.stderr.splitlines()
        for line in lines:
            if line.startswith("WARNING: --calib"):
                print(line, file=sys.stderr)
        if proc.returncode == 0 and out.exists():
            return out.read_bytes()
        for line in reversed(lines):
            if line.startswith(_CHILD_ERROR):
                kind, _, message = line[len(_CHILD_ERROR):].partition(": ")
                cls = getattr(errors, kind, EdgekitError)
                raise (cls if isinstance(cls, type) and issubclass(cls, EdgekitError) else EdgekitError)(message)
        tail = "; ".join(line.strip() for line in lines[-3:] if line.strip())[:300]
        raise EdgekitError(f"loading {path} stopped the Keras/TensorFlow process (exit status "
                           f"{proc.returncode}){': ' + tail if tail else ''}")


def _child_main(argv: list[str]) -> int:
    """python -m edgekit.frontend.keras MODEL CALIB OUT: the child side of keras_to_tflite."""
    path, calib, out = argv
    try:
        model, module = load_keras(path)
        data = load_calibration(calib, keras_input_shape(model))
        Path(out).write_bytes(quantize_keras(model, module, data))
    except EdgekitError as e:
        message = " ".join(str(e).split())
        print(f"{_CHILD_ERROR}{type(e).__name__}: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
