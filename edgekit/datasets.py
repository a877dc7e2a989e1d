"""Data a user passes in: arrays from .npy/.npz files, inputs quantized with the model input's
scale and zero point, class labels checked against the model's classes. No edgekit imports
beyond errors: every layer (export, eval, bench, the Python API) uses these."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError


def load_array(path: str | Path, option: str, key: str) -> np.ndarray:
    """An array from a .npy file, or from a .npz file (its array `key`, or its only array)."""
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise EdgekitError(f"{option} {path} does not exist") from None
    except OSError as e:
        raise EdgekitError(f"cannot read {option} {path}: {e.strerror or e}") from None
    except ValueError:
        raise EdgekitError(f"{option} {path} is not a .npy or .npz file (numpy.save / numpy.savez)") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            names = list(data.keys())
            if key in names:
                return data[key]
            if len(names) == 1:
                return data[names[0]]
            raise EdgekitError(f"{option} {path} holds the arrays {', '.join(names) or 'none'}; name the "
                               f"one to use '{key}'")
    return data


def prepare_labels(y: np.ndarray, path, n: int, classes: int) -> np.ndarray:
    """Integer class labels [N] (or one-hot [N, classes]) as int64, checked against the data."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2 and y.shape[1] == classes and classes > 1:
        y = np.argmax(y, axis=1)              # one-hot
    if y.ndim != 1:
        raise EdgekitError(f"--labels {path} holds shape {list(y.shape)}: pass one integer class per sample "
                           f"([N]) or one-hot rows ([N, {classes}])")
    if len(y) != n:
        raise EdgekitError(f"--labels {path} holds {len(y):,} labels for {n:,} samples of --data")
    if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating)
                                                   and np.all(np.isfinite(y)) and np.all(y == np.round(y)))):
        raise EdgekitError(f"--labels {path} is {y.dtype} with non-integer values: pass integer class labels")
    y = y.astype(np.int64)
    bad = np.flatnonzero((y < 0) | (y >= classes))
    if len(bad):
        raise EdgekitError(f"--labels {path}: label {int(y[bad[0]])} of sample {int(bad[0])} is not a class of "
                           f"the model's output (0 to {classes - 1})")
    return y


def quantize_input(x: np.ndarray, report: dict) -> np.ndarray:
    shape = tuple(report["input"]["shape"][1:])
    x = np.asarray(x)
    if x.shape == shape:
        x = x[None]
    if x.shape[1:] != shape:
        raise EdgekitError(f"inputs have shape {list(x.shape)}, but the model expects [N, "
                           f"{', '.join(map(str, shape))}]")
    if x.dtype == np.int8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise EdgekitError(f"inputs are {x.dtype}: pass int8 (already quantized) or float32 values")
    scale, zp = np.float32(report["input"]["scale"]), report["input"]["zero_point"]
    q = np.round(x.astype(np.float32) / scale) + zp
    return np.clip(q, -128, 127).astype(np.int8)


def prepare_data(x: np.ndarray, path, report: dict, option: str = "--data") -> np.ndarray:
    """The dataset as int8 [N, *input_shape]: int8 as is, float quantized; one sentence otherwise."""
    shape = tuple(report["input"]["shape"][1:])
    if x.ndim == 0 or x.shape[1:] != shape:
        raise EdgekitError(f"{option} {path} holds shape {list(x.shape)}, but the model takes "
                           f"[N, {', '.join(map(str, shape))}]")
    if x.shape[0] == 0:
        raise EdgekitError(f"{option} {path} holds no samples")
    if x.dtype != np.int8 and not np.issubdtype(x.dtype, np.floating):
        raise EdgekitError(f"{option} {path} is {x.dtype}: pass int8 (already quantized) or float values "
                           "(quantized with the model input's scale and zero point)")
    return quantize_input(x, report)
