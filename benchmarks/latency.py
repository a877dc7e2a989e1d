"""Instructions per inference of the MLPerf Tiny models on the emulated Cortex-M4 (and M7).

    .venv/bin/python benchmarks/latency.py [--targets cortex-m4 cortex-m7] [--runs 5] [--json out.json]

Each model is exported, built with arm-none-eabi-gcc -O2 and run by `edgekit bench --emulate`:
QEMU under `-icount shift=3,sleep=off`, where the board's 25 MHz timer counts exactly 5 guest
instructions per tick, so the figures are deterministic (the script runs every model twice and
says whether the two sessions agree). Outputs are checked against TFLite's reference each run.
TFLM figures are those stated in issue 4 (same QEMU, same flags).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO.parent / "shared" / "models" / "mlperf-tiny"
MODELS = [("KWS DS-CNN", "kws_ref_model.tflite"), ("ResNet-8", "pretrainedResnet_quant.tflite"),
          ("FC autoencoder", "ad01_int8.tflite")]
TFLM = {"kws_ref_model.tflite": (43_111_859, 7_697_387), "pretrainedResnet_quant.tflite": (107_492_395, 29_861_587),
        "ad01_int8.tflite": (1_953_804, 582_906)}   # TFLM reference kernels, TFLM + CMSIS-NN


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", nargs="+", default=["cortex-m4"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    if not MODELS_DIR.is_dir():
        print(f"the MLPerf Tiny models are not at {MODELS_DIR}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    from edgekit.bench import BenchConfig, bench
    from edgekit.export import export
    from edgekit.targets import get_target

    print(f"$ .venv/bin/python benchmarks/latency.py --targets {' '.join(args.targets)} --runs {args.runs}\n")
    rows, ok = [], True
    with tempfile.TemporaryDirectory() as tmp:
        for target_name in args.targets:
            for label, file in MODELS:
                out = Path(tmp) / f"{target_name}-{file}"
                result = export(MODELS_DIR / file, out, get_target(target_name))
                macs = result.report["totals"]["macs"]
                medians = []
                for _ in range(2):
                    r = bench(out, BenchConfig(runs=args.runs, warmup=1, count=2), emulate=True, progress=False)
                    ok &= r.matched == len(r.per_input)
                    medians.append(r.latency()["median"])
                ref, cmsis = TFLM[file]
                rows.append(dict(target=target_name, model=label, file=file, macs=macs,
                                 instructions=medians[0], same_twice=medians[0] == medians[1],
                                 per_mac=medians[0] / macs, vs_tflm_ref=medians[0] / ref,
                                 vs_tflm_cmsis=medians[0] / cmsis, outputs_match=r.matched == len(r.per_input),
                                 arena_bytes=result.report["totals"]["arena_bytes"]))
    print("| target | model | MACs | instructions / inference | instructions / MAC | same in 2 sessions | "
          "vs TFLM ref. kernels | vs TFLM + CMSIS-NN | outputs match |")
    print("|---|---|---:|---:|---:|---|---:|---:|---|")
    for r in rows:
        print(f"| {r['target']} | {r['model']} | {r['macs']:,} | {r['instructions']:,.0f} | {r['per_mac']:.2f} | "
              f"{'yes' if r['same_twice'] else 'NO'} | {r['vs_tflm_ref']:.2f}x | {r['vs_tflm_cmsis']:.2f}x | "
              f"{'yes' if r['outputs_match'] else 'NO'} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
