"""Early-exit heads on a real task, the Keras side: the bundled Fashion-MNIST DS-CNN
(examples/fashion_dscnn.h5) with two exits, trained on the full Fashion-MNIST training set
(Debian's dataset-fashion-mnist), measured on all 10,000 test images.

    .venv/bin/python benchmarks/exits_fashion.py [--at 0.25 0.5] [--heads gap dw]
        [--modes frozen joint] [--epochs 3] [--json F]

For each head kind and training mode (frozen: the trained backbone kept, only the heads learn;
joint: every layer learns, the loss the sum of every exit's cross-entropy): each exit's MACs (the
backbone up to its point plus its head) and its accuracy, float and exact int8 (the multi-exit
model converted as `edgekit export` converts it, every head run by edgekit's integer reference,
which computes what the C computes bit for bit), and the training's wall time. The budgeted C
runtime that stops at an exit is not built yet (issue 12): these are the accuracies and MAC
costs a budget level would choose from.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "examples"))

import numpy as np  # noqa: E402


def int8_exit_accuracies(multi, calib: np.ndarray, x: np.ndarray, y: np.ndarray) -> list[float]:
    """Accuracy of each output of the exact int8 model, in the Keras model's output order (the
    converter names output k 'StatefulPartitionedCall...:k' but may list them in another order)."""
    import keras

    from edgekit.export import compile_program
    from edgekit.frontend.keras import quantize_keras
    from edgekit.run.intref import IntReference
    tflite = quantize_keras(multi, keras, calib)
    program = compile_program(tflite, label="exits", target=None)
    graph = program.graph
    scale, zp = graph.t(graph.inputs[0]).qparams()
    xq = np.clip(np.round(x / np.float32(scale)) + zp, -128, 127).astype(np.int8)
    ref = IntReference(program)
    outs = [np.concatenate(parts) for parts in zip(*(ref.run_outputs(xq[i:i + 1000])
                                                     for i in range(0, len(xq), 1000)))]
    order = []
    for t in graph.outputs:
        m = re.search(r":(\d+)$", graph.t(t).name)
        if m is None:
            raise SystemExit(f"cannot tell which Keras output TFLite output '{graph.t(t).name}' is")
        order.append(int(m.group(1)))
    acc = [0.0] * len(outs)
    for k, o in zip(order, outs):
        acc[k] = float(np.mean(np.argmax(o.reshape(len(o), -1), axis=1) == y))
    return acc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--at", nargs="+", type=float, default=[0.25, 0.5])
    ap.add_argument("--heads", nargs="+", default=["gap", "dw"], choices=["gap", "dw"])
    ap.add_argument("--modes", nargs="+", default=["frozen", "joint"], choices=["frozen", "joint"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    import keras

    import edgekit.train as ekt
    from edgekit.train import exits
    from edgekit.train.data import Data
    from fashion_mnist import load_fashion_mnist, to_model_input
    (xtr, ytr), (xte, yte) = load_fashion_mnist()
    train = Data(to_model_input(xtr), ytr.astype(np.int64), 10)
    test = Data(to_model_input(xte), yte.astype(np.int64), 10)
    calib = np.load(REPO / "examples" / "fashion_calib.npy")
    print(f"$ .venv/bin/python benchmarks/exits_fashion.py --at {' '.join(map(str, args.at))} --heads "
          f"{' '.join(args.heads)} --modes {' '.join(args.modes)} --epochs {args.epochs}\n")
    print("| head | training | exit | after layer | MACs | of the full model | float | int8 (exact) | train time |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    rows = []
    for head in args.heads:
        for mode in args.modes:
            keras.utils.set_random_seed(0)
            model = ekt.load_model(REPO / "examples" / "fashion_dscnn.h5")
            multi = exits.attach_exits(model, at=args.at, head=head)
            start = time.time()
            exits.train_exits(multi, train, None, epochs=args.epochs, learning_rate=1e-3 if mode == "frozen" else 3e-4,
                              batch_size=64, freeze_backbone=mode == "frozen", verbose=0)
            seconds = round(time.time() - start)
            report = exits.exit_report(multi, test)
            int8 = int8_exit_accuracies(multi, calib, test.x, test.y)
            for r, a8 in zip(report, int8):
                r.update(head=head, training=mode, int8_accuracy=a8, seconds=seconds)
                rows.append(r)
                print(f"| {head} | {mode} | {r['exit']} | {r['after']} | {r['macs']:,} | {r['macs_fraction']:.0%} | "
                      f"{r['accuracy']:.2%} | {a8:.2%} | {seconds} s |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
