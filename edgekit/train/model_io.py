"""Models in and out of the training side: every Keras file edgekit reads becomes a Keras 3
model built from stock layers, and a compressed model is written whole or not at all.

Inputs: Keras 3 `.keras` archives and `.h5` files, Keras 2 (tf_keras) `.h5` files, and Keras 2
SavedModel directories (the MLPerf Tiny KWS model ships as one). Keras 3 refuses Keras 2's
DepthwiseConv2D configs (they carry `groups`); a loader-only subclass drops it, and the loaded
model is rebuilt with the stock class so that nothing edgekit-specific is saved.
The same safety rule as `edgekit export`: a model file is data, never code (no Lambda layers,
no layer classes from outside Keras, except edgekit's own quantization layers).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgekit.errors import EdgekitError


def _keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    return keras


def _loader_objects(keras) -> dict:
    class DepthwiseConv2D(keras.layers.DepthwiseConv2D):
        """Keras 2's config carries `groups` (always 1 here), which Keras 3 rejects."""
        def __init__(self, *args, groups=1, **kwargs):
            super().__init__(*args, **kwargs)

    return {"DepthwiseConv2D": DepthwiseConv2D}


def stock_layers(model):
    """`model` with every loader-only subclass replaced by its stock Keras class (same weights)."""
    keras = _keras()
    stock = {cls.__name__: cls for cls in (keras.layers.DepthwiseConv2D,)}

    def clone(layer):
        cls = stock.get(type(layer).__name__)
        if cls is None or type(layer) is cls:
            return layer.__class__.from_config(layer.get_config())
        return cls.from_config(layer.get_config())

    if all(type(layer).__module__.startswith("keras") for layer in model.layers):
        return model
    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def load_model(source):
    """A Keras 3 model from a keras.Model (returned as is), a `.keras` / `.h5` file, or a Keras 2
    SavedModel directory."""
    keras = _keras()
    if isinstance(source, keras.Model):
        return source
    path = Path(source)
    if not path.exists():
        raise EdgekitError(f"{path} does not exist")
    if path.is_dir():
        return _load_savedmodel(path)
    from edgekit.frontend import keras as kimp
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        _, config = kimp._read_h5(path)
        kimp._check_config(config, str(path))
        from edgekit.train.qat import link_requantization    # also registers edgekit's layers with Keras
        try:
            model = keras.models.load_model(str(path), compile=False, custom_objects=_loader_objects(keras))
        except Exception as e:
            raise EdgekitError(f"{path} could not be loaded by Keras {keras.__version__} "
                               f"({type(e).__name__}: {kimp._first_line(e)})") from None
        model = stock_layers(model)
        link_requantization(model)
        return model
    if suffix == ".keras":
        from edgekit.train.qat import link_requantization
        model, _ = kimp.load_keras(path)
        link_requantization(model)          # a QAT model rounds as its int8 export again
        return model
    raise EdgekitError(f"{path}: unknown model format '{suffix}'; pass a .keras or .h5 file or a "
                       "Keras SavedModel directory")


def _load_savedmodel(path: Path):
    """A Keras 2 SavedModel directory: loaded with tf_keras, written as a Keras 2 .h5, read back
    into Keras 3 (the graph is TensorFlow's; no Python code from the directory runs)."""
    if not (path / "saved_model.pb").is_file():
        raise EdgekitError(f"{path} is a directory but not a SavedModel (no saved_model.pb): pass a "
                           ".keras or .h5 file")
    import tf_keras
    try:
        k2 = tf_keras.models.load_model(str(path), compile=False)
    except Exception as e:
        raise EdgekitError(f"{path} could not be loaded as a Keras 2 SavedModel ({type(e).__name__}: "
                           f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''})") from None
    if not hasattr(k2, "get_config") or not hasattr(k2, "layers"):
        raise EdgekitError(f"{path} is a SavedModel without Keras metadata: save the model with Keras")
    with tempfile.TemporaryDirectory(prefix="edgekit-sm-") as tmp:
        h5 = Path(tmp) / "model.h5"
        k2.save(str(h5), include_optimizer=False, save_format="h5")
        return load_model(h5)


def check_output_path(out, what: str) -> Path:
    """-o of a training command, checked before any training: a .keras (or .h5) in an existing directory."""
    out = Path(out)
    if out.suffix.lower() not in (".keras", ".h5"):
        raise EdgekitError(f"-o {out}: name the {what} .keras (or .h5)")
    if not out.resolve().parent.is_dir():
        raise EdgekitError(f"cannot write -o {out}: its directory does not exist")
    return out


def save_model(model, path) -> Path:
    """Write `model` to `path` (.keras or .h5, by its suffix) atomically: a file that is there is
    complete."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".keras", ".h5"):
        raise EdgekitError(f"-o {path}: name the output .keras (or .h5)")
    if not path.resolve().parent.is_dir():
        raise EdgekitError(f"cannot write {path}: its directory does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".edgekit-", suffix=suffix, dir=path.resolve().parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
