"""Training data: `.npz` files with `x` and `y`, checked against the model before any training.

Labels are class indices [N] or one-hot [N, C] for a classifier (a model whose output is [N, C]);
a model whose output has the shape of `y` otherwise (an autoencoder: y = x) is a regression,
scored by mean squared error. Every problem is one sentence, raised before training starts.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError


@dataclass
class Data:
    x: np.ndarray           # float32 [N, *input_shape]
    y: np.ndarray           # int64 [N] class indices, or float32 targets shaped like the output
    classes: int            # number of classes, 0 for a regression

    @property
    def classification(self) -> bool:
        return self.classes > 0

    def __len__(self) -> int:
        return int(self.x.shape[0])


def read_npz(path, option: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) from an .npz file holding arrays named x and y."""
    path = Path(path)
    if not path.is_file():
        raise EdgekitError(f"{option} {path} {'is not a file' if path.exists() else 'does not exist'}: "
                           "pass an .npz file with arrays x and y (numpy.savez('data.npz', x=x, y=y))")
    try:
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files"):
                raise EdgekitError(f"{option} {path} is a .npy array, not an .npz archive: save it with "
                                   "numpy.savez('data.npz', x=x, y=y)")
            missing = [k for k in ("x", "y") if k not in f.files]
            if missing:
                raise EdgekitError(f"{option} {path} has no array named {' or '.join(missing)} (it has "
                                   f"{', '.join(f.files) or 'none'}): save it with numpy.savez('data.npz', x=x, y=y)")
            return np.asarray(f["x"]), np.asarray(f["y"])
    except EdgekitError:
        raise
    except Exception as e:      # not a zip, truncated, pickled objects
        raise EdgekitError(f"cannot read {option} {path}: {str(e).strip().splitlines()[0][:150] if str(e).strip() else type(e).__name__}"
                           ": pass an .npz file with arrays x and y") from None


def check_data(model, x, y, option: str = "data") -> Data:
    """x and y checked against `model`'s one input and output: shapes, dtypes, labels."""
    x, y = np.asarray(x), np.asarray(y)
    in_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    out_shape = tuple(int(d) for d in model.outputs[0].shape[1:])
    if x.ndim == 0 or x.shape[1:] != in_shape:
        raise EdgekitError(f"{option}: x has shape {list(x.shape)}, but the model expects [N, "
                           f"{', '.join(map(str, in_shape))}]")
    if len(x) == 0:
        raise EdgekitError(f"{option}: x holds no samples")
    if x.dtype == np.uint8 or x.dtype == np.int8:
        raise EdgekitError(f"{option}: x is {x.dtype}, but the model takes float inputs: scale it as the "
                           "model was trained (e.g. x.astype('float32') / 255) and save again")
    if not np.issubdtype(x.dtype, np.floating):
        raise EdgekitError(f"{option}: x holds {x.dtype} values; pass float32 inputs")
    if not np.all(np.isfinite(x)):
        raise EdgekitError(f"{option}: x holds NaN or infinite values")
    if len(y) != len(x):
        raise EdgekitError(f"{option}: x has {len(x)} samples but y has {len(y)}")
    x = x.astype(np.float32)
    classes = out_shape[0] if len(out_shape) == 1 and out_shape[0] > 1 else 0
    one_hot = classes and y.shape == (len(x), classes) and _one_hot(y)
    if classes and (y.ndim == 1 or one_hot):
        if one_hot:
            y = np.argmax(y, axis=1)
        if not (np.issubdtype(y.dtype, np.integer) or
                (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)))):
            raise EdgekitError(f"{option}: y holds {y.dtype} values that are not class indices; the model "
                               f"has {classes} outputs: pass class indices [N] or one-hot labels [N, {classes}]")
        y = y.astype(np.int64)
        if y.min() < 0 or y.max() >= classes:
            raise EdgekitError(f"{option}: labels run from {y.min()} to {y.max()}, but the model has "
                               f"{classes} classes (0 to {classes - 1})")
        return Data(x, y, classes)
    if y.shape[1:] != out_shape:
        raise EdgekitError(f"{option}: y has shape {list(y.shape)}, but the model's output is [N, "
                           f"{', '.join(map(str, out_shape))}]")
    return Data(x, y.astype(np.float32), 0)


def _one_hot(y: np.ndarray) -> bool:
    return bool(np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1))


def load_data(path, model, option: str) -> Data:
    x, y = read_npz(path, option)
    return check_data(model, x, y, f"{option} {path}")
