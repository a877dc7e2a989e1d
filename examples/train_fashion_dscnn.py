#!/usr/bin/env python
"""Train edgekit's bundled example model: a small DS-CNN on Fashion-MNIST.

Keras 2 (tf_keras) is used on purpose so that the saved ``.h5`` is a Keras 2
HDF5 file like the MLPerf Tiny reference models.  Only stock layers are used
(no Lambda, nothing custom).

Outputs (written next to this script unless --out-dir is given):
    fashion_dscnn.h5            trained float model (Keras 2 HDF5, no optimizer)
    fashion_calib.npy           100 training images, float32 [100,28,28,1], for int8 PTQ
    fashion_test_subset.npz     x: first 200 test images float32 [200,28,28,1], y: uint8 labels
    fashion_dscnn.json          float + int8 test accuracy, parameter count, settings

Retrain (about 2 minutes on 2 idle CPU cores):
    python examples/train_fashion_dscnn.py

Needs Fashion-MNIST offline: ``sudo apt-get install dataset-fashion-mnist``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Deterministic oneDNN / op behaviour must be requested before TF is imported.
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402  Keras 2 API (the .h5 must be a Keras 2 file)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fashion_mnist import load_fashion_mnist, to_model_input  # noqa: E402

N_CALIB = 100
N_TEST_SUBSET = 200


def build_model(stem: int = 24, widths=(32, 64, 64), bn_momentum: float = 0.9) -> keras.Model:
    """Conv2D stem (stride 2) + depthwise-separable blocks + GAP + Dense + Softmax.

    Block i: DepthwiseConv2D 3x3 (stride 2 in block 2) -> BN -> ReLU
             -> Conv2D 1x1 -> BN -> ReLU
    """
    bn = dict(momentum=bn_momentum, epsilon=1e-3)
    inp = keras.Input(shape=(28, 28, 1), name="input")
    x = keras.layers.Conv2D(stem, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inp)
    x = keras.layers.BatchNormalization(name="stem_bn", **bn)(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    strides = (1, 2, 1, 1)
    for i, w in enumerate(widths):
        s = strides[i]
        p = f"block{i + 1}_"
        x = keras.layers.DepthwiseConv2D(3, strides=s, padding="same", use_bias=False, name=p + "dw")(x)
        x = keras.layers.BatchNormalization(name=p + "dw_bn", **bn)(x)
        x = keras.layers.ReLU(name=p + "dw_relu")(x)
        x = keras.layers.Conv2D(w, 1, use_bias=False, name=p + "pw")(x)
        x = keras.layers.BatchNormalization(name=p + "pw_bn", **bn)(x)
        x = keras.layers.ReLU(name=p + "pw_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(10, name="logits")(x)
    out = keras.layers.Softmax(name="softmax")(x)
    return keras.Model(inp, out, name="fashion_dscnn")


def activation_bytes_int8(model: keras.Model) -> dict:
    """Rough int8 activation estimate: largest tensor and largest in+out pair."""
    largest, pair = 0, 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        ins = layer.input if isinstance(layer.input, list) else [layer.input]
        n_in = sum(int(np.prod(t.shape[1:])) for t in ins)
        n_out = int(np.prod(layer.output.shape[1:]))
        largest = max(largest, n_in, n_out)
        pair = max(pair, n_in + n_out)
    return {"largest_tensor_bytes": largest, "largest_in_plus_out_bytes": pair}


def int8_ptq_accuracy(model: keras.Model, calib: np.ndarray, x: np.ndarray, y: np.ndarray):
    """Full-integer int8 PTQ with TFLiteConverter; evaluate with LiteRT BUILTIN_REF kernels."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    def rep():
        for i in range(len(calib)):
            yield [calib[i : i + 1]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    tflite = conv.convert()

    interp = Interpreter(
        model_content=tflite, experimental_op_resolver_type=OpResolverType.BUILTIN_REF
    )
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    scale, zp = inp["quantization"]
    # Quantize the input with the model's own input scale / zero point.
    xq = np.clip(np.round(x / scale) + zp, -128, 127).astype(np.int8)
    preds = np.empty(len(x), np.int64)
    for i in range(len(x)):
        interp.set_tensor(inp["index"], xq[i : i + 1])
        interp.invoke()
        preds[i] = int(np.argmax(interp.get_tensor(out["index"])[0]))
    acc = float(np.mean(preds == y))
    info = {
        "input_scale": float(scale),
        "input_zero_point": int(zp),
        "output_scale": float(out["quantization"][0]),
        "output_zero_point": int(out["quantization"][1]),
        "tflite_bytes": len(tflite),
    }
    return acc, info, tflite


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3, help="peak Adam learning rate (cosine decay)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--stem", type=int, default=24)
    ap.add_argument("--widths", type=str, default="32,64,64", help="pointwise widths of the blocks")
    ap.add_argument("--data-dir", type=str, default=None, help="directory with the idx .gz files")
    ap.add_argument("--out-dir", type=str, default=str(HERE))
    ap.add_argument("--save-tflite", action="store_true", help="also write fashion_dscnn_int8.tflite")
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 PTQ evaluation")
    args = ap.parse_args(argv)

    t_start = time.time()
    keras.utils.set_random_seed(args.seed)  # python, numpy and TF seeds
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception as e:  # pragma: no cover - older TF
        print("op determinism not available:", e)

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    (xtr_u8, ytr), (xte_u8, yte) = load_fashion_mnist(args.data_dir)
    x_train, x_test = to_model_input(xtr_u8), to_model_input(xte_u8)
    y_train, y_test = ytr.astype(np.int64), yte.astype(np.int64)

    widths = tuple(int(w) for w in args.widths.split(","))
    model = build_model(args.stem, widths)
    model.summary(line_length=96)
    n_params = int(model.count_params())
    n_trainable = int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    act = activation_bytes_int8(model)
    print(f"params: {n_params} ({n_trainable} trainable), int8 activations: {act}")

    steps_per_epoch = int(np.ceil(len(x_train) / args.batch_size))
    lr = keras.optimizers.schedules.CosineDecay(args.lr, decay_steps=args.epochs * steps_per_epoch, alpha=0.02)
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )

    # Shuffling is done by Keras from the seeded global RNG.
    t0 = time.time()
    hist = model.fit(
        x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=2
    )
    train_seconds = time.time() - t0

    _, float_acc = model.evaluate(x_test, y_test, batch_size=500, verbose=0)
    print(f"float test accuracy: {float_acc:.4f}  (training {train_seconds:.1f} s)")

    h5_path = out_dir / "fashion_dscnn.h5"
    model.save(h5_path, include_optimizer=False, save_format="h5")

    # Calibration data: 100 training images, evenly spread over the training set.
    calib_idx = np.random.RandomState(args.seed).choice(len(x_train), N_CALIB, replace=False)
    calib_idx.sort()
    calib = x_train[calib_idx].astype(np.float32)
    np.save(out_dir / "fashion_calib.npy", calib)
    np.savez_compressed(
        out_dir / "fashion_test_subset.npz",
        x=x_test[:N_TEST_SUBSET].astype(np.float32),
        y=yte[:N_TEST_SUBSET].astype(np.uint8),
    )

    result = {
        "model": "fashion_dscnn",
        "dataset": "Fashion-MNIST (Debian dataset-fashion-mnist, 60000 train / 10000 test)",
        "input": "float32 [1,28,28,1], pixels / 255",
        "architecture": {"stem": args.stem, "block_widths": list(widths), "block_dw_strides": [1, 2, 1, 1][: len(widths)]},
        "params": n_params,
        "trainable_params": n_trainable,
        "int8_activation_estimate": act,
        "float_test_accuracy": round(float(float_acc), 4),
        "float_train_accuracy_last_epoch": round(float(hist.history["accuracy"][-1]), 4),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": {"peak": args.lr, "schedule": "cosine decay to 2%", "optimizer": "Adam"},
        "seed": args.seed,
        "train_seconds": round(train_seconds, 1),
        "command": "python examples/train_fashion_dscnn.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
        "calibration": {"file": "fashion_calib.npy", "source": f"{N_CALIB} training images, RandomState({args.seed}).choice", "indices_first": calib_idx[:5].tolist()},
        "test_subset": {"file": "fashion_test_subset.npz", "source": f"first {N_TEST_SUBSET} test images"},
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "tf_keras": keras.__version__,
            "numpy": np.__version__,
        },
    }

    if not args.no_int8:
        t0 = time.time()
        int8_acc, qinfo, tflite = int8_ptq_accuracy(model, calib, x_test, y_test)
        print(f"int8 PTQ test accuracy (LiteRT BUILTIN_REF): {int8_acc:.4f}  ({time.time() - t0:.1f} s)")
        result["int8_test_accuracy"] = round(int8_acc, 4)
        result["int8"] = {
            "converter": "tf.lite.TFLiteConverter.from_keras_model, Optimize.DEFAULT, TFLITE_BUILTINS_INT8, "
            "int8 input/output, representative dataset = fashion_calib.npy",
            "interpreter": "ai_edge_litert Interpreter, OpResolverType.BUILTIN_REF",
            **qinfo,
        }
        try:
            import ai_edge_litert

            result["versions"]["ai_edge_litert"] = getattr(ai_edge_litert, "__version__", "unknown")
        except Exception:
            pass
        if args.save_tflite:
            (out_dir / "fashion_dscnn_int8.tflite").write_bytes(tflite)

    result["total_seconds"] = round(time.time() - t_start, 1)
    with open(out_dir / "fashion_dscnn.json", "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(json.dumps({k: result[k] for k in ("params", "float_test_accuracy", "int8_test_accuracy", "train_seconds", "total_seconds") if k in result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
