"""Budget levels on an MLPerf Tiny model: what early exits cost and save on the emulated M4.

    .venv/bin/python benchmarks/exits_mlperf.py [--model resnet|kws] [--budgets 3] [--inputs 600]
        [--sample 100] [--shared ../shared]

The model's training data is not here, so this measures cost, not accuracy: exits are attached at
the cuts nearest 30 % and 60 % of the MACs, their heads trained (backbone frozen) on synthetic
inputs to agree with the float model's own answers, the budget levels calibrated on other
synthetic inputs with those answers as labels (so "agreement" below is agreement with the float
model on synthetic data, not accuracy on a task), and each level run by `edgekit bench --emulate
--budget all` on a sample, every exit and score checked against the reference's decision. The
model without exits (the same Keras model, converted the same way) is benched on the same sample.

Synthetic inputs: ResNet-8, smooth images (4x4 uniform 0..255 noise upsampled to 32x32; the float
model spreads them over several classes); KWS, normal noise of deviation 10 (the float model calls
nearly all of them class 11, "unknown", so its levels all take the first exit: cost only).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

MODELS = {"kws": "kws_ref_model_savedmodel", "resnet": "pretrainedResnet.h5"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="resnet")
    ap.add_argument("--budgets", type=int, default=3)
    ap.add_argument("--inputs", type=int, default=600, help="random inputs: half train the heads, half calibrate")
    ap.add_argument("--sample", type=int, default=100, help="inputs run on the emulated M4")
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    args = ap.parse_args()
    import keras

    import edgekit.train as ekt
    from edgekit.budget import BudgetSpec, format_budget
    from edgekit.export import export
    from edgekit.measure.bench import BenchConfig, bench
    from edgekit.targets import get_target
    from edgekit.train import exits
    source = args.shared / "models" / "mlperf-tiny" / MODELS[args.model]
    print(f"$ .venv/bin/python benchmarks/exits_mlperf.py --model {args.model} --budgets {args.budgets} "
          f"--inputs {args.inputs} --sample {args.sample}\n")
    keras.utils.set_random_seed(0)
    model = ekt.load_model(source)
    rng = np.random.default_rng(0)
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    if args.model == "resnet":
        low = rng.uniform(0, 255, size=(args.inputs, shape[0] // 8, shape[1] // 8, shape[2]))
        x = np.repeat(np.repeat(low, 8, axis=1), 8, axis=2).astype(np.float32)
    else:
        x = rng.normal(0, 10, size=(args.inputs, *shape)).astype(np.float32)
    y = np.argmax(np.asarray(model.predict(x, verbose=0)), 1)
    half = args.inputs // 2
    multi = exits.attach_exits(model, at=[0.3, 0.6])
    exits.train_exits(multi, ekt.check_data(model, x[:half], y[:half]), None, epochs=5, batch_size=32,
                      freeze_backbone=True, verbose=0)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        path = ekt.save_model(multi, work / "multi.keras")
        np.save(work / "calib.npy", x[:64])
        np.savez(work / "val.npz", x=x[half:], y=y[half:])
        result = export(path, work / "out", get_target("cortex-m4"), calib=work / "calib.npy",
                        budgets=BudgetSpec(args.budgets, str(work / "val.npz")))
        print(format_budget(result.report["budget"]).replace("accuracy", "agreement"))
        sample = x[half:half + args.sample]
        np.save(work / "xs.npy", sample)
        np.save(work / "ys.npy", y[half:half + args.sample])
        r = bench(work / "out", BenchConfig(runs=1, warmup=0, inputs=str(work / "xs.npy"),
                                            labels=str(work / "ys.npy"), budget="all"), emulate=True, progress=False)
        plain_path = ekt.save_model(model, work / "plain.keras")
        export(plain_path, work / "plain", get_target("cortex-m4"), calib=work / "calib.npy")
        plain = bench(work / "plain", BenchConfig(runs=1, warmup=0, inputs=str(work / "xs.npy")), emulate=True,
                      progress=False)
    base = plain.latency()["mean"]
    print(f"\n{args.model}: the model without exits {base:,.0f} instructions (flash {plain.sizes['flash_bytes']:,}, "
          f"RAM {plain.sizes['ram_bytes']:,}); with exits, ek_model_invoke (every head) {r.latency()['mean']:,.0f} "
          f"(flash {r.sizes['flash_bytes']:,}, RAM {r.sizes['ram_bytes']:,}); {args.sample} synthetic inputs on the M4\n")
    print("| level | agreement with the float model (sample) | exits taken | mean instructions | p90 | vs no exits | matched |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for row in r.level_summary():
        print(f"| {row['level']} | {row['accuracy']:.0%} | " + " ".join(f"{v:.0%}" for v in row["exits"])
              + f" | {row['mean']:,.0f} | {row['p90']:,.0f} | {base / row['mean']:.2f}x fewer | "
              f"{row['matched']}/{row['inputs']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
