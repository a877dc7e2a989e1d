"""Offline loader for Fashion-MNIST as shipped by Debian.

The Debian package ``dataset-fashion-mnist`` installs the original idx files to
``/usr/share/datasets/fashion-mnist``.  Nothing here downloads anything.

    >>> from fashion_mnist import load_fashion_mnist
    >>> (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    >>> x_train.shape, x_train.dtype, y_train.dtype
    ((60000, 28, 28), dtype('uint8'), dtype('uint8'))
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "FASHION_MNIST_DIR"

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# idx type codes (third byte of the magic number) -> numpy dtype (big endian)
_IDX_DTYPES = {
    0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one (optionally gzip-compressed) idx file into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an idx file (bad magic {data[:4]!r})")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown idx type code 0x{type_code:02x}")
    dtype = _IDX_DTYPES[type_code]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    count = int(np.prod(shape)) if shape else 1
    expected = header + count * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: size {len(data)} != expected {expected} for shape {shape}")
    arr = np.frombuffer(data, dtype, count=count, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def dataset_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Locate the directory with the idx files, or raise a helpful error."""
    d = Path(data_dir or os.environ.get(ENV_VAR) or DEFAULT_DIR)
    missing = [n for pair in _FILES.values() for n in pair if not (d / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {d} (missing: {', '.join(missing)}).\n"
            "Install it with:  sudo apt-get install dataset-fashion-mnist\n"
            f"or point ${ENV_VAR} (or data_dir=) at a directory holding the idx .gz files."
        )
    return d


def load_split(split: str, data_dir: str | os.PathLike | None = None):
    """Return (images uint8 [N,28,28], labels uint8 [N]) for 'train' or 'test'."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    d = dataset_dir(data_dir)
    img_name, lbl_name = _FILES[split]
    x = read_idx(d / img_name)
    y = read_idx(d / lbl_name)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"unexpected shapes {x.shape} / {y.shape} for split {split!r}")
    return x, y


def load_fashion_mnist(data_dir: str | os.PathLike | None = None):
    """Return ((x_train, y_train), (x_test, y_test)) like keras.datasets, uint8."""
    return load_split("train", data_dir), load_split("test", data_dir)


def to_model_input(x: np.ndarray) -> np.ndarray:
    """uint8 [N,28,28] -> float32 [N,28,28,1] scaled to [0, 1]."""
    return (x.astype(np.float32) / 255.0)[..., None]


if __name__ == "__main__":
    (xtr, ytr), (xte, yte) = load_fashion_mnist()
    print("train", xtr.shape, xtr.dtype, ytr.shape, np.bincount(ytr))
    print("test ", xte.shape, xte.dtype, yte.shape, np.bincount(yte))
