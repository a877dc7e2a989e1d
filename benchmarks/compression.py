"""Compressed weight formats on the MLPerf Tiny models: flash, arena and instructions per inference
on the emulated Cortex-M4, for each model variant and each `--weights` format.

    .venv/bin/python benchmarks/compression.py [--models kws resnet ad]
        [--variants int8 pruned clustered int4] [--formats int8 int4 lut4 lut8 sparse huffman auto]
        [--target cortex-m4] [--kernels auto|portable] [--json F]

Variants: the shared int8 model itself, and tests/model_variants.py's variants (the test suite's,
from the same cache, asked for with `python tests/model_variants.py --paths`): pruned to 80 %, clustered to 16 clusters, pruned to 80 % then clustered to 16
with the zeros kept (Deep Compression's pipeline), all three made with edgekit.train on every conv,
depthwise and FC layer; QAT 4-bit with INT4 weight tensors made with tfmot. Short fine-tuning on
synthetic data: the figures are about size and exactness, not accuracy. Each (variant, format) is exported
with `--weights FORMAT` (`auto` = `--weights auto --optimize size`), built with arm-none-eabi-gcc
-O2 and run by `edgekit bench --emulate` (QEMU -icount: instructions are exact and repeatable);
every output is checked against the reference (LiteRT's reference kernels, TFLite Micro for INT4
models). A forced format a layer cannot take falls back to int8 for that layer: the "layers"
column says how many conv/FC/depthwise layers took the format. `--kernels portable` keeps the
portable C kernels on a core with the DSP extension (as `edgekit export --kernels portable`).

Columns: weights = bytes of the conv/FC/depthwise weight arrays in the chosen formats (int8 =
one byte per weight); constants = every constant array (weights, biases, multipliers);
flash = text + data of the firmware (arm-none-eabi-size); arena = the activation arena.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO.parent / "shared" / "models" / "mlperf-tiny"
MODELS = {"kws": ("KWS DS-CNN", "kws_ref_model.tflite"),
          "resnet": ("ResNet-8", "pretrainedResnet_quant.tflite"),
          "ad": ("FC autoencoder", "ad01_int8.tflite")}
VARIANTS = ("int8", "pruned", "clustered", "pruned-clustered", "int4")
FORMATS = ("int8", "int4", "lut4", "lut8", "sparse", "huffman", "auto")


def model_paths(models, variants) -> dict[tuple[str, str], Path]:
    """(model, variant) -> .tflite: the shared int8 models, and the test suite's cached variants
    (tests/model_variants.py --paths builds the missing ones, in a process of its own)."""
    paths = {(m, "int8"): MODELS_DIR / MODELS[m][1] for m in models if "int8" in variants}
    wanted = [(m, v) for m in models for v in variants if v != "int8"]
    if wanted:
        cmd = [sys.executable, str(REPO / "tests" / "model_variants.py"), "--paths"]
        proc = subprocess.run(cmd + [x for pair in wanted for x in pair], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"building the model variants failed:\n{proc.stderr[-3000:]}")
        built = json.loads(proc.stdout.strip().splitlines()[-1])
        paths.update({(m, v): Path(built[f"{m}/{v}"]) for m, v in wanted})
    return paths


def measure(path: Path, fmt: str, target_name: str, portable: bool, tmp: Path) -> dict:
    from edgekit.measure.bench import BenchConfig, bench
    from edgekit.build import firmware_elf, firmware_size
    from edgekit.export import export
    from edgekit.targets import get_target

    out = tmp / f"{path.stem}-{fmt}"
    weights, optimize = ("auto", "size") if fmt == "auto" else (fmt, "speed")
    result = export(path, out, get_target(target_name, portable=portable), weights=weights,
                    optimize=optimize)
    report = result.report
    layers = [l for l in report["layers"] if "weights" in l]
    took = sum(1 for l in layers if l["weights"]["format"] == fmt)      # auto: see `formats`
    formats = sorted({l["weights"]["format"] for l in layers})
    r = bench(out, BenchConfig(runs=1, warmup=0, count=2), emulate=True, progress=False)
    return dict(format=fmt, formats=formats, layers_took=took, layers=len(layers),
                weight_bytes=sum(l["weights"]["weight_format_bytes"] for l in layers),
                int8_weight_bytes=sum(l["weights"]["int8_weight_bytes"] for l in layers),
                constants=report["totals"]["weight_bytes"],
                flash=firmware_size(firmware_elf(out))["flash_bytes"],
                arena=report["totals"]["arena_bytes"], instructions=r.latency()["median"],
                exact=r.matched == len(r.per_input))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    ap.add_argument("--target", default="cortex-m4")
    ap.add_argument("--kernels", choices=["auto", "portable"], default="auto",
                    help="portable: the plain C kernels even where the core has the DSP extension")
    ap.add_argument("--json")
    args = ap.parse_args()
    if not MODELS_DIR.is_dir():
        print(f"the MLPerf Tiny models are not at {MODELS_DIR}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    print("$ .venv/bin/python benchmarks/compression.py --models " + " ".join(args.models) +
          " --variants " + " ".join(args.variants) + " --formats " + " ".join(args.formats) +
          f" --target {args.target} --kernels {args.kernels}\n")
    print("| model | variant | --weights | layers in format | weights bytes | vs int8 | constants | "
          "flash | arena | instructions | vs int8 | exact |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    rows, ok = [], True
    paths = model_paths(args.models, args.variants)
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for variant in args.variants:
                path = paths[model, variant]
                base = None
                for fmt in args.formats:
                    r = measure(path, fmt, args.target, args.kernels == "portable", Path(tmp))
                    r.update(model=MODELS[model][0], variant=variant)
                    base = base or (r if fmt == "int8" else None)
                    ok &= r["exact"]
                    rows.append(r)
                    vs_bytes = r["weight_bytes"] / r["int8_weight_bytes"]
                    vs_instr = f"{r['instructions'] / base['instructions']:.2f}x" if base else "n/a"
                    took = (", ".join(r["formats"]) if fmt == "auto"
                            else f"{r['layers_took']}/{r['layers']}")
                    print(f"| {r['model']} | {variant} | {fmt} | {took} | {r['weight_bytes']:,} | "
                          f"{vs_bytes:.2f}x | {r['constants']:,} | {r['flash']:,} | {r['arena']:,} | "
                          f"{r['instructions']:,.0f} | {vs_instr} | {'yes' if r['exact'] else 'NO'} |",
                          flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    if not ok:
        print("\nSOME OUTPUTS DID NOT MATCH THE REFERENCE", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
