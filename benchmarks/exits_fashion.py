"""Early-exit heads on a real task, the Keras side: the bundled Fashion-MNIST DS-CNN
(examples/fashion_dscnn.h5) with two exits, trained on the full Fashion-MNIST training set
(Debian's dataset-fashion-mnist), measured on all 10,000 test images.

    .venv/bin/python benchmarks/exits_fashion.py [--at 0.25 0.5] [--heads gap dw]
        [--modes frozen joint] [--epochs 3] [--json F]
    .venv/bin/python benchmarks/exits_fashion.py --budgets 4 [--heads dw] [--modes frozen]
        [--sample 300] [--json F]

For each head kind and training mode (frozen: the trained backbone kept, only the heads learn;
joint: every layer learns, the loss the sum of every exit's cross-entropy): each exit's MACs (the
backbone up to its point plus its head) and its accuracy, float and exact int8 (the multi-exit
model converted as `edgekit export` converts it, every head run by edgekit's integer reference,
which computes what the C computes bit for bit), and the training's wall time.

With --budgets N: the heads are trained on the first 55,000 training images; the model is
exported with `--budgets N`, its levels calibrated on the other 5,000 (never on the test set);
then per level: the thresholds, top-1 accuracy on all 10,000 test images (exact integer model =
the C), the share of inputs taken at each exit, and mean / p90 M4 instructions measured by `edgekit
bench --emulate --budget all` on a sample of the test images (every exit and score checked against
the reference's decision; the sample's exit shares beside the full set's show it is
representative), against the bundled model without exits on the same sample; and the flash and
RAM the exits add to the firmware.
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
    outs = ref.run_outputs(xq, batch=1000)
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


def budget_levels(args, train, test, calib_path: Path, work: Path) -> list[dict]:
    """The --budgets measurement (module docstring), one head kind and training mode."""
    import keras

    import edgekit.train as ekt
    from edgekit.api import load
    from edgekit.budget import BudgetSpec, format_budget, format_shares, reference_budget, threshold_words
    from edgekit.export import export
    from edgekit.measure.bench import BenchConfig, bench
    from edgekit.measure.budget_costs import measure_budget_costs
    from edgekit.run.evaluate import evaluate
    from edgekit.run.intref import IntReference
    from edgekit.targets import get_target
    from edgekit.train import exits
    from edgekit.train.data import Data
    head, mode = args.heads[0], args.modes[0]
    fit = Data(train.x[:55000], train.y[:55000], 10)
    np.savez(work / "val.npz", x=train.x[55000:], y=train.y[55000:])
    keras.utils.set_random_seed(0)
    model = ekt.load_model(REPO / "examples" / "fashion_dscnn.h5")
    multi = exits.attach_exits(model, at=args.at, head=head)
    exits.train_exits(multi, fit, None, epochs=args.epochs, learning_rate=1e-3 if mode == "frozen" else 3e-4,
                      batch_size=64, freeze_backbone=mode == "frozen", verbose=0)
    path = ekt.save_model(multi, work / "multi.keras")
    out = work / "out"
    spec = BudgetSpec(args.budgets, str(work / "val.npz"), costs=args.budget_costs)
    result = export(path, out, get_target("cortex-m4"), calib=calib_path, budgets=spec)
    if args.budget_costs == "emulate":
        result = measure_budget_costs(result, spec, get_target("cortex-m4"))
    print(format_budget(result.report["budget"]))
    m = load(out)
    xq = m.quantize(test.x)
    ref = IntReference.from_export(out)
    outputs = ref.run_outputs(xq, batch=1000)
    budget = m.report["budget"]
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(len(xq), args.sample, replace=False))
    np.save(work / "xs.npy", xq[sample])
    np.save(work / "ys.npy", test.y[sample])
    r = bench(out, BenchConfig(runs=1, warmup=0, inputs=str(work / "xs.npy"), labels=str(work / "ys.npy"),
                               budget="all"), emulate=True, progress=False)
    plain_out = work / "plain"
    export(REPO / "examples" / "fashion_dscnn.h5", plain_out, get_target("cortex-m4"), calib=calib_path)
    plain = bench(plain_out, BenchConfig(runs=1, warmup=0, inputs=str(work / "xs.npy")), emulate=True, progress=False)
    base = plain.latency()["mean"]
    np.savez(work / "test.npz", x=test.x, y=test.y)
    full_acc = float(evaluate(plain_out, work / "test.npz", work / "test.npz").accuracy)
    final = float(np.mean(np.argmax(outputs[budget["exits"][-1]["output"]].reshape(len(xq), -1), 1) == test.y))
    print(f"\nbudget levels, {head} heads ({mode}), on the 10,000 test images (exact integer model) and M4 "
          f"instructions on {args.sample} of them; the final exit of the model with exits: {final:.2%}; "
          f"the bundled model without exits: {full_acc:.2%}, {base:,.0f} "
          f"instructions (flash {plain.sizes['flash_bytes']:,}, RAM {plain.sizes['ram_bytes']:,}); with them, "
          f"ek_model_invoke (every head): {r.latency()['mean']:,.0f} (flash {r.sizes['flash_bytes']:,}, "
          f"RAM {r.sizes['ram_bytes']:,})\n")
    print("| level | allowed loss | thresholds | accuracy (10,000) | vs no exits | exits taken (10,000) | "
          "exits taken (sample) | mean instructions | p90 | vs no exits | matched |")
    print("|---:|---:|---|---:|---:|---|---|---:|---:|---:|---:|")
    rows = []
    for lv, row in zip(budget["levels"], r.level_summary()):
        taken, scores = reference_budget(budget, outputs, lv["level"])
        acc = float(np.mean(np.argmax(scores, 1) == test.y))
        hist = np.bincount(taken, minlength=len(budget["exits"])) / len(taken)
        th = " ".join(threshold_words(lv["thresholds"]))
        loss = "any" if lv["allowed_loss"] is None else f"{lv['allowed_loss']:g} pt"
        rows.append(dict(level=lv["level"], thresholds=lv["thresholds"], accuracy=acc, exits=hist.tolist(),
                         sample_exits=row["exits"], mean=row["mean"], p90=row["p90"], matched=row["matched"],
                         baseline_instructions=base, baseline_accuracy=full_acc))
        print(f"| {lv['level']} | {loss} | {th} | {acc:.2%} | {100 * (acc - full_acc):+.2f} pt | "
              + format_shares(hist) + " | " + format_shares(row["exits"])
              + f" | {row['mean']:,.0f} | {row['p90']:,.0f} | {base / row['mean']:.2f}x fewer | "
              f"{row['matched']}/{row['inputs']} |", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--at", nargs="+", type=float, default=[0.25, 0.5])
    ap.add_argument("--heads", nargs="+", default=["gap", "dw"], choices=["gap", "dw"])
    ap.add_argument("--modes", nargs="+", default=["frozen", "joint"], choices=["frozen", "joint"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--budgets", type=int, help="export with N budget levels and measure each (module docstring)")
    ap.add_argument("--sample", type=int, default=300, help="--budgets: test images run on the emulated M4")
    ap.add_argument("--budget-costs", choices=["macs", "emulate"], default="macs",
                    help="--budgets: calibrate on MACs or on per-layer instructions measured in QEMU")
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
    if args.budgets:
        import tempfile
        print(f"$ .venv/bin/python benchmarks/exits_fashion.py --budgets {args.budgets} --at "
              f"{' '.join(map(str, args.at))} --heads {args.heads[0]} --modes {args.modes[0]} --epochs {args.epochs} "
              f"--sample {args.sample} --budget-costs {args.budget_costs}\n")
        with tempfile.TemporaryDirectory() as work:
            rows = budget_levels(args, train, test, REPO / "examples" / "fashion_calib.npy", Path(work))
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
        return 0
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
