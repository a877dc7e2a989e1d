#!/usr/bin/env python
"""Check that the bundled fashion_dscnn.h5 loads in tf_keras (Keras 2) and Keras 3.

tf_keras writes ``groups: 1`` into every DepthwiseConv2D config; Keras 3's
DepthwiseConv2D does not accept that keyword, so a plain Keras 3
``load_model`` of this file raises ``TypeError ... Unrecognized keyword
arguments passed to DepthwiseConv2D: {'groups': 1}``.  Passing a tiny
subclass that drops ``groups`` via ``custom_objects`` fixes it; this script
shows both and compares the outputs with tf_keras.

    python examples/check_fashion_dscnn.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
H5 = HERE / "fashion_dscnn.h5"


def keras3_custom_objects():
    """custom_objects that let Keras 3 load tf_keras .h5 files with depthwise layers."""
    import keras

    class DepthwiseConv2D(keras.layers.DepthwiseConv2D):
        def __init__(self, *args, groups=None, **kwargs):  # tf_keras writes groups=1
            super().__init__(*args, **kwargs)

    class SeparableConv2D(keras.layers.SeparableConv2D):
        def __init__(self, *args, groups=None, **kwargs):
            super().__init__(*args, **kwargs)

    return {"DepthwiseConv2D": DepthwiseConv2D, "SeparableConv2D": SeparableConv2D}


def main() -> int:
    import tensorflow as tf  # noqa: F401  (initialises TF once for both Keras versions)
    import tf_keras
    import keras

    sub = np.load(HERE / "fashion_test_subset.npz")
    x, y = sub["x"], sub["y"]

    m2 = tf_keras.models.load_model(H5, compile=False)
    p2 = m2.predict(x, verbose=0)
    print(f"tf_keras {tf_keras.__version__}: loaded, {m2.count_params()} params, "
          f"subset accuracy {np.mean(p2.argmax(1) == y):.3f}")

    ok = True
    try:
        keras.models.load_model(H5, compile=False, safe_mode=True)
        print(f"keras {keras.__version__} plain load: OK (no workaround needed)")
    except Exception as e:  # expected with Keras 3.x
        msg = str(e).splitlines()
        tail = [l for l in msg if "Unrecognized keyword" in l or "groups" in l][-1:] or msg[-1:]
        print(f"keras {keras.__version__} plain load: {type(e).__name__}: {tail[0].strip()[:200]}")

    m3 = keras.models.load_model(H5, compile=False, safe_mode=True, custom_objects=keras3_custom_objects())
    p3 = np.asarray(m3.predict(x, verbose=0))
    diff = float(np.max(np.abs(p3 - p2)))
    same_argmax = bool(np.array_equal(p3.argmax(1), p2.argmax(1)))
    w_equal = all(np.array_equal(a, b) for a, b in zip(m2.get_weights(), m3.get_weights()))
    print(f"keras {keras.__version__} with custom_objects: loaded, {m3.count_params()} params, "
          f"weights identical={w_equal}, max |p3-p2|={diff:.3g}, same argmax={same_argmax}")
    ok &= w_equal and same_argmax and diff < 1e-5
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
