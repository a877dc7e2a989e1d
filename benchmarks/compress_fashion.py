"""edgekit compress on a real task: the bundled Fashion-MNIST DS-CNN (examples/fashion_dscnn.h5)
through each recipe on the full Fashion-MNIST training set (Debian's dataset-fashion-mnist),
measured on all 10,000 test images.

    .venv/bin/python benchmarks/compress_fashion.py [--recipes NAME ...] [--epochs N] [--json F]

For each recipe: accuracy of the float model, of the QAT model (Keras, fake-quantized) and of the
exported int8 C (the export's model.tflite run by edgekit's integer reference, which computes
what the C computes bit for bit: `edgekit eval`), weight bytes in the formats `edgekit export
--weights auto --optimize size` chose against the float32 kernels, MACs, M4 instructions per
inference (`edgekit bench --emulate`: the firmware in QEMU, every output checked against TFLite's
reference), and the recipe's wall time on this machine. The distillation row compares a
half-width student trained alone with the same student distilled from the full model (same
initial weights, same epochs, same data order).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))

import numpy as np  # noqa: E402

RECIPES = {
    # name: (Recipe fields, export --weights)
    "qat8": (dict(bits=8), "auto"),
    "qat4": (dict(bits=4), "int4"),
    "prune80-cluster16-qat8": (dict(prune=0.8, clusters=16, bits=8), "auto"),
    "prune80-cluster16-qat4": (dict(prune=0.8, clusters=16, bits=4), "auto"),
    "structured50-qat8": (dict(structured=0.5, bits=8), "auto"),
    "structured50-prune70-cluster16-qat4": (dict(structured=0.5, prune=0.7, clusters=16, bits=4), "auto"),
}


def fashion():
    from fashion_mnist import load_fashion_mnist, to_model_input
    (xtr, ytr), (xte, yte) = load_fashion_mnist()
    return (to_model_input(xtr), ytr.astype(np.int64)), (to_model_input(xte), yte.astype(np.int64))


def measure_export(model_path: Path, calib: Path, test: tuple, weights: str, tmp: Path) -> dict:
    from edgekit.export import export
    from edgekit.measure.bench import BenchConfig, bench
    from edgekit.run.evaluate import evaluate
    from edgekit.targets import get_target
    out = tmp / (model_path.stem + "-out")
    result = export(model_path, out, get_target("cortex-m4"), calib=calib, weights=weights,
                    optimize="size" if weights == "auto" else "speed")
    np.savez(tmp / "test.npz", x=test[0], y=test[1])
    ev = evaluate(out, tmp / "test.npz", tmp / "test.npz")
    r = bench(out, BenchConfig(runs=1, warmup=0, count=2), emulate=True, progress=False)
    layers = [l for l in result.report["layers"] if "weights" in l]
    return dict(int8_accuracy=float(ev.accuracy), weight_bytes=sum(l["weights"]["weight_format_bytes"] for l in layers),
                formats=sorted({l["weights"]["format"] for l in layers}), macs=result.report["totals"]["macs"],
                instructions=int(r.latency()["median"]), exact=r.matched == len(r.per_input))


def run_recipe(name, fields, weights, train, test, epochs, tmp: Path, saved: Path | None = None,
               qat_lr: float | None = None) -> dict:
    """Compress, save (to `saved` when given), export, evaluate and bench one recipe; with a
    `saved` directory holding this recipe's model and row from an earlier run, only measure."""
    import edgekit.train as ekt
    if saved is not None and (saved / f"{name}.json").exists():
        row = json.loads((saved / f"{name}.json").read_text())
        row.update(measure_export(saved / f"{name}.keras", REPO / "examples" / "fashion_calib.npy", test, weights, tmp))
        return row
    model = ekt.load_model(REPO / "examples" / "fashion_dscnn.h5")
    start = time.time()
    result = ekt.compress(model, train, validation=test, recipe=ekt.Recipe(epochs=epochs, qat_learning_rate=qat_lr, **fields), verbose=2,
                          measure_int8=False)
    seconds = time.time() - start
    final = result.model
    path = ekt.save_model(final, (saved or tmp) / f"{name}.keras")
    # float: the model before quantization-aware training (the last stage before it)
    row = dict(recipe=name, seconds=round(seconds), original_accuracy=result.report[0].float_value,
               float_accuracy=result.report[-2].float_value, qat_accuracy=result.report[-1].float_value,
               float32_bytes=result.report[0].float32_weight_bytes, stages=[s.stage for s in result.report])
    if saved is not None:
        (saved / f"{name}.json").write_text(json.dumps(row))
    row.update(measure_export(path, REPO / "examples" / "fashion_calib.npy", test, weights, tmp))
    return row


def distillation_row(train, test, epochs: int, tmp: Path) -> dict:
    """A half-width student (the bundled model's channels halved, fresh weights) trained alone
    and distilled from the full model, from the same initial weights."""
    import keras

    import edgekit.train as ekt
    from edgekit.train.data import Data
    teacher = ekt.load_model(REPO / "examples" / "fashion_dscnn.h5")
    keras.utils.set_random_seed(7)
    student = ekt.prune_channels(teacher, 0.5)
    for layer in student.layers:                       # re-initialized as Keras initializes them
        if not layer.weights:
            continue
        fresh = layer.__class__.from_config(layer.get_config())
        fresh.build(layer.input.shape)
        layer.set_weights(fresh.get_weights())
    init = student.get_weights()
    tr, te = Data(train[0], train[1], 10), Data(test[0], test[1], 10)
    out = {}
    for how, teach in (("alone", None), ("distilled", teacher)):
        student.set_weights(init)
        keras.utils.set_random_seed(7)
        start = time.time()
        ekt.fit(student, tr, None, epochs=epochs, learning_rate=3e-3, batch_size=128, teacher=teach,
                temperature=4.0, alpha=0.7, verbose=2)
        out[how] = dict(accuracy=ekt.evaluate(student, te), seconds=round(time.time() - start))
    return dict(recipe="distillation (half-width student)", teacher_accuracy=ekt.evaluate(teacher, te),
                params=int(student.count_params()), teacher_params=int(teacher.count_params()), **out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES) + ["distill"],
                    choices=list(RECIPES) + ["distill"])
    ap.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs per stage (default 3)")
    ap.add_argument("--qat-lr", type=float, default=None, help="QAT learning rate (default: edgekit's)")
    ap.add_argument("--distill-epochs", type=int, default=8, help="epochs of each distillation student")
    ap.add_argument("--train-limit", type=int, default=None, help="use only this many training images")
    ap.add_argument("--saved", type=Path, help="keep each recipe's model here; a model already there is only "
                    "measured again (export, eval, bench), not retrained")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.saved:
        args.saved.mkdir(parents=True, exist_ok=True)
    train, test = fashion()
    if args.train_limit:
        train = (train[0][:args.train_limit], train[1][:args.train_limit])
    print(f"$ .venv/bin/python benchmarks/compress_fashion.py --recipes {' '.join(args.recipes)} --epochs "
          f"{args.epochs} --distill-epochs {args.distill_epochs}" + (f" --qat-lr {args.qat_lr}" if args.qat_lr else "")
          + (f" --train-limit {args.train_limit}" if args.train_limit else "") + "\n", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.recipes:
            if name == "distill":
                rows.append(distillation_row(train, test, args.distill_epochs, Path(tmp)))
            else:
                fields, weights = RECIPES[name]
                rows.append(run_recipe(name, fields, weights, train, test, args.epochs, Path(tmp), args.saved,
                                       args.qat_lr))
            print(json.dumps(rows[-1]), flush=True)
    print()
    print("| recipe | float | QAT | int8 C (exact) | weight bytes | vs float32 | formats | MACs | M4 instructions | "
          "exact | wall time |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---|---:|")
    for r in rows:
        if "alone" in r:
            continue
        print(f"| {r['recipe']} | {100 * r['float_accuracy']:.2f} % | {100 * r['qat_accuracy']:.2f} % | "
              f"{100 * r['int8_accuracy']:.2f} % | {r['weight_bytes']:,} | {r['float32_bytes'] / r['weight_bytes']:.1f}x | "
              f"{', '.join(r['formats'])} | {r['macs']:,} | {r['instructions']:,} | {'yes' if r['exact'] else 'NO'} | "
              f"{r['seconds']} s |")
    for r in rows:
        if "alone" in r:
            print(f"\ndistillation: half-width student ({r['params']:,} params; teacher {r['teacher_params']:,} at "
                  f"{100 * r['teacher_accuracy']:.2f} %): trained alone {100 * r['alone']['accuracy']:.2f} %, "
                  f"distilled {100 * r['distilled']['accuracy']:.2f} % ({args.distill_epochs} epochs each)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if all(r.get("exact", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
