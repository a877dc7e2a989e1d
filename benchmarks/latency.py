"""Instructions per inference of the MLPerf Tiny models on the emulated Cortex-M4 / M7, portable
C kernels vs the DSP kernel variants, against TFLM's figures; plus a MobileNetV1-style model
that is not one of the shared models.

    .venv/bin/python benchmarks/latency.py [--targets cortex-m4 cortex-m7] [--runs 3] [--layers]
                                           [--no-mobilenet] [--json F]

Each model is exported twice (`--kernels portable` and the default DSP selection), built with
arm-none-eabi-gcc -O2 and run by `edgekit bench --emulate`: QEMU under `-icount shift=3,sleep=off`,
where the board's 25 MHz timer counts exactly 5 guest instructions per tick, so the figures are
deterministic; the DSP build is benched in two sessions and the script says whether they agree.
Outputs are checked against TFLite's reference on every run. --layers adds a per-layer table
(firmware built with PROFILE=1). TFLM figures are those stated in issue 4 (same QEMU, same flags).

The fourth model, benchmarks/mobilenet_style.py (MobileNetV1 0.25x, 96x96x3, 2 classes: the visual
wake words shape; random weights, int8 PTQ on fixed-seed noise, cached under
~/.cache/edgekit-tests/), is not a shared model and edgekit was never tuned on it. There are no
TFLM instruction counts for it (TFLM + CMSIS-NN firmware cannot be built here, and no TFLM
reference-kernel firmware was measured either): those columns say "n/a". Its TFLM arena is
measured here with the tflite-micro Python interpreter (as benchmarks/model_figures.py does), not
quoted from the issue.
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
# TFLM reference kernels, TFLM + CMSIS-NN (instructions per inference), TFLM arena bytes.
TFLM = {"kws_ref_model.tflite": (43_111_859, 7_697_387, 22_820),
        "pretrainedResnet_quant.tflite": (107_492_395, 29_861_587, 54_996),
        "ad01_int8.tflite": (1_953_804, 582_906, 2_580)}
MOBILENET_LABEL = "MobileNetV1-style (not a shared model)"


def mobilenet_model() -> tuple[Path, int]:
    """The MobileNet-style .tflite and TFLM's arena for it, measured with the tflite-micro
    Python interpreter (64-bit host build, reference kernels) after one inference."""
    import numpy as np
    sys.path.insert(0, str(REPO / "benchmarks"))
    from mobilenet_style import INPUT_SHAPE, mobilenet_tflite
    from model_figures import tflm_figures
    path = mobilenet_tflite()
    fig, _ = tflm_figures(path.read_bytes(), np.zeros((1, *INPUT_SHAPE), dtype=np.int8))
    return path, fig["total_bytes"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", nargs="+", default=["cortex-m4"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--layers", action="store_true", help="per-layer instructions (PROFILE=1 builds)")
    ap.add_argument("--no-mobilenet", action="store_true",
                    help="only the three MLPerf Tiny models (skip benchmarks/mobilenet_style.py)")
    ap.add_argument("--json")
    args = ap.parse_args()
    if not MODELS_DIR.is_dir():
        print(f"the MLPerf Tiny models are not at {MODELS_DIR}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    from edgekit.measure.bench import BenchConfig, bench
    from edgekit.build import firmware_elf, firmware_size
    from edgekit.export import export
    from edgekit.targets import get_target

    cmd = f"$ .venv/bin/python benchmarks/latency.py --targets {' '.join(args.targets)} --runs {args.runs}"
    print(cmd + (" --layers" if args.layers else "") + (" --no-mobilenet" if args.no_mobilenet else "") + "\n")
    models = [(label, file, MODELS_DIR / file, True) for label, file in MODELS]
    tflm = dict(TFLM)
    if not args.no_mobilenet:
        path, tflm_arena = mobilenet_model()
        models.append((MOBILENET_LABEL, path.name, path, False))
        tflm[path.name] = (None, None, tflm_arena)
    rows, layer_rows, ok = [], [], True
    with tempfile.TemporaryDirectory() as tmp:
        for target_name in args.targets:
            for label, file, path, shared in models:
                figures = {}
                for kernels in ("portable", "dsp"):
                    out = Path(tmp) / f"{target_name}-{kernels}-{file}"
                    result = export(path, out, get_target(target_name, portable=kernels == "portable"))
                    sessions = 2 if kernels == "dsp" else 1
                    medians = []
                    for _ in range(sessions):
                        r = bench(out, BenchConfig(runs=args.runs, warmup=1, count=2, profile=args.layers),
                                  emulate=True, progress=False)
                        ok &= r.matched == len(r.per_input)
                        medians.append(r.latency()["median"])
                    figures[kernels] = dict(instructions=medians[0], same=len(set(medians)) == 1,
                                            layers=r.layers, report=result.report,
                                            flash=firmware_size(firmware_elf(out))["flash_bytes"])
                macs = figures["dsp"]["report"]["totals"]["macs"]
                ref, cmsis, tflm_arena = tflm[file]
                dsp, portable = figures["dsp"], figures["portable"]
                arena_io = dsp["report"]["totals"]["arena_bytes"] + dsp["report"]["totals"]["io_bytes"]
                rows.append(dict(target=target_name, model=label, file=file, shared_model=shared, macs=macs,
                                 portable=portable["instructions"], dsp=dsp["instructions"],
                                 same_twice=dsp["same"], per_mac=dsp["instructions"] / macs,
                                 dsp_speedup=portable["instructions"] / dsp["instructions"],
                                 vs_cmsis=dsp["instructions"] / cmsis if cmsis else None,
                                 vs_tflm_ref=dsp["instructions"] / ref if ref else None,
                                 flash=dsp["flash"], arena_io=arena_io, tflm_arena=tflm_arena,
                                 tflm_arena_source="issue 4" if shared else "measured: tflite-micro Python interpreter",
                                 vs_tflm_arena=arena_io / tflm_arena))
                if args.layers:
                    for lp, ld in zip(portable["layers"], dsp["layers"]):
                        layer_rows.append(dict(target=target_name, model=label, index=ld["index"], op=ld["op"],
                                               portable=lp["value"], dsp=ld["value"]))
    print("| target | model | MACs | portable kernels | DSP kernels | DSP speed-up | instr./MAC | "
          "same in 2 sessions | vs TFLM + CMSIS-NN | vs TFLM ref. | flash bytes | arena + I/O bytes | "
          "TFLM arena | vs TFLM arena |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    ratio = lambda v: "n/a" if v is None else f"{v:.2f}x"  # noqa: E731
    for r in rows:
        print(f"| {r['target']} | {r['model']} | {r['macs']:,} | {r['portable']:,.0f} | {r['dsp']:,.0f} | "
              f"{r['dsp_speedup']:.2f}x | {r['per_mac']:.2f} | {'yes' if r['same_twice'] else 'NO'} | "
              f"{ratio(r['vs_cmsis'])} | {ratio(r['vs_tflm_ref'])} | {r['flash']:,} | {r['arena_io']:,} | "
              f"{r['tflm_arena']:,}{'' if r['shared_model'] else ' (measured)'} | {r['vs_tflm_arena']:.2f}x |")
    if not args.no_mobilenet:
        print(f"\n{MOBILENET_LABEL}: benchmarks/mobilenet_style.py (MobileNetV1 0.25x, 96x96x3, 2 classes; "
              "random weights, int8 PTQ on fixed-seed noise); edgekit was never tuned on it. No TFLM "
              "instruction counts exist for it (TFLM + CMSIS-NN firmware cannot be built here; no TFLM "
              "reference-kernel firmware was measured): n/a, not estimated. Its TFLM arena is measured "
              "with the tflite-micro Python interpreter (64-bit host build, reference kernels); the other "
              "TFLM arenas are issue 4's figures.")
    if layer_rows:
        print("\n| target | model | layer | op | portable | DSP | speed-up |")
        print("|---|---|---:|---|---:|---:|---:|")
        for l in layer_rows:
            print(f"| {l['target']} | {l['model']} | {l['index']} | {l['op']} | {l['portable']:,.0f} | "
                  f"{l['dsp']:,.0f} | {l['portable'] / max(l['dsp'], 1):.1f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(models=rows, layers=layer_rows), indent=2) + "\n")
    if not ok:
        print("\nSOME OUTPUTS DID NOT MATCH THE REFERENCE", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
