"""Measured instructions of every weight format's kernels, layer by layer, on the MLPerf Tiny
models and their tfmot variants: the source of the kernel registry's costs (edgekit/lower/kernels.py,
Kernel.cost: the estimates `--weights auto` compares formats with).

    .venv/bin/python benchmarks/format_costs.py [--models kws resnet ad] [--json F] [--layers]

Each (variant, format) pair below is exported for cortex-m4 with `--weights FORMAT`, once with
the _dsp kernels and once with the portable ones (`get_target(..., portable=True)`), built with
PROFILE=1 and run by `edgekit bench --emulate` (QEMU -icount: exact, repeatable instruction
counts per layer; every output checked against the reference). Each layer that took the format
gives one measurement; the summary fits, per kernel (the C function the layer ran):
  dense formats (int8, int4, lut4, lut8): instructions per MAC, the sum over the layers'
      instructions over the sum of their MACs (patches, requantization and loop overheads
      included, so short rows cost more per MAC);
  sparse: least squares of instructions = per_entry * stored entries (fillers included) * output
      pixels + per_output * output values (each output row's setup and requantization);
  huffman: least squares of instructions = decode * weights + mac * MACs over the layers (a
      fully connected layer uses each weight once, a convolution once per output pixel), on
      layers whose code is over int8 values (huff_books, the codebook-index remap, is measured
      apart: the registry's Cost.books).
--layers prints every layer: measured, estimated by the weight-format pass (est) and their ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from compression import MODELS, MODELS_DIR, model_path  # noqa: E402  (one place for the model list)
from edgekit.lower.kernels import kernel  # noqa: E402

# (variant, format): each format on the variant whose layers can all take it.
PAIRS = [("int8", "int8"), ("int4", "int4"), ("clustered", "lut4"), ("clustered", "lut8"),
         ("pruned", "sparse"), ("pruned", "huffman"), ("int8", "huffman")]
KIND = {"CONV_2D": "conv", "FULLY_CONNECTED": "fc", "DEPTHWISE_CONV_2D": "dwconv"}


def layer_units(path: Path) -> list[dict]:
    """Weights, output pixels, stored sparse entries (fillers included) and whether Huffman codes
    codebook indices, of each conv / FC / depthwise layer of the model in order."""
    from edgekit import formats
    from edgekit.frontend.tflite import load_tflite
    from edgekit.passes.weights import output_pixels, weight_rows
    graph = load_tflite(path)
    units = []
    for op in graph.ops:
        if op.kind not in KIND:
            continue
        rows = weight_rows(graph, op)
        sparse = formats.encode("sparse", rows)
        units.append(dict(weights=int(rows.size), pixels=output_pixels(graph, op),
                          entries=int(sparse.array("windex")[-1]), rows=int(rows.shape[0]),
                          huff_books="book" in formats.encode("huffman", rows).fields))
    return units


def measure(path: Path, fmt: str, dsp: bool, tmp: Path) -> list[dict]:
    from edgekit.measure.bench import BenchConfig, bench
    from edgekit.export import export
    from edgekit.targets import get_target

    out = tmp / f"{path.stem}-{fmt}-{'dsp' if dsp else 'portable'}"
    result = export(path, out, get_target("cortex-m4", portable=not dsp), weights=fmt, optimize="speed")
    r = bench(out, BenchConfig(runs=1, warmup=0, count=1, profile=True), emulate=True, progress=False)
    if r.matched != len(r.per_input):
        raise SystemExit(f"{path.name} --weights {fmt}: outputs differ from the reference")
    measured = {l["index"]: l["value"] for l in r.layers}
    layers = [l for l in result.report["layers"] if l["op"] in KIND]
    units = layer_units(path)           # the program keeps the model's conv / FC / depthwise order
    if len(units) != len(layers):
        raise SystemExit(f"{path.name}: {len(layers)} weighted layers in the report, {len(units)} in the model")
    rows = []
    for layer, u in zip(layers, units):
        w = layer.get("weights")
        if not w or w["format"] != fmt:
            continue
        rows.append(dict(kind=KIND[layer["op"]], format=fmt, kernel=layer["kernel"], macs=layer["macs"],
                         measured=measured[layer["index"]], est=w["est_instructions"], **u))
    return rows


def fit(rows: list[dict]) -> dict:
    """Kernel.cost of each measured kernel (see the docstring). Huffman: an FC layer decodes and
    multiplies each weight once, so its decoding cost per weight is its instructions per weight
    less the int8 FC kernel's cost per MAC of the same kernel set (the same dot products run on
    the decoded rows); a convolution's cost per MAC is what its instructions leave after that
    decoding. Layers coded over codebook indices are left out."""
    by_kernel: dict = defaultdict(list)
    for r in rows:
        by_kernel[r["kernel"]].append(r)
    cost: dict = {}
    for name, rs in sorted(by_kernel.items()):
        fmt = rs[0]["format"]
        if fmt == "sparse":
            a = np.array([[r["entries"] * r["pixels"], r["rows"] * r["pixels"]] for r in rs], np.float64)
            b = np.array([r["measured"] for r in rs], np.float64)
            (per_entry, per_output), *_ = np.linalg.lstsq(a, b, rcond=None)
            cost[name] = dict(per_entry=per_entry, per_output=per_output)
        elif fmt != "huffman":
            cost[name] = dict(per_mac=sum(r["measured"] for r in rs) / sum(r["macs"] for r in rs))
    for suffix, fc_int8 in (("_dsp", "ek_fc_s8_dsp"), ("", "ek_fc_s8")):
        fc = [r for r in by_kernel.get(f"ek_fc_s8_huff{suffix}", []) if not r["huff_books"]]
        conv = [r for r in by_kernel.get(f"ek_conv2d_s8_huff{suffix}", []) if not r["huff_books"]]
        if not fc or fc_int8 not in cost:
            continue
        decode = sum(r["measured"] for r in fc) / sum(r["weights"] for r in fc) - cost[fc_int8]["per_mac"]
        cost[f"ek_fc_s8_huff{suffix}"] = dict(per_mac=cost[fc_int8]["per_mac"], decode=decode)
        if conv:
            rest = sum(r["measured"] - decode * r["weights"] for r in conv)
            cost[f"ek_conv2d_s8_huff{suffix}"] = dict(per_mac=rest / sum(r["macs"] for r in conv), decode=decode)
    return cost


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--layers", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--formats", nargs="+", help="only the (variant, format) pairs of these formats")
    args = ap.parse_args()
    if not MODELS_DIR.is_dir():
        print(f"the MLPerf Tiny models are not at {MODELS_DIR}", file=sys.stderr)
        return 2
    print("$ .venv/bin/python benchmarks/format_costs.py --models " + " ".join(args.models) +
          (" --formats " + " ".join(args.formats) if args.formats else "") + (" --layers" if args.layers else "") + "\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dsp in (True, False):
            for model in args.models:
                for variant, fmt in PAIRS:
                    if args.formats and fmt not in args.formats:
                        continue
                    for r in measure(model_path(model, variant), fmt, dsp, Path(tmp)):
                        rows.append(dict(r, kernels="dsp" if dsp else "portable", model=model, variant=variant))
    if args.layers:
        print("| kernels | model | variant | kernel | MACs | measured | instr./MAC | est | est / measured |")
        print("|---|---|---|---|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['kernels']} | {r['model']} | {r['variant']} | {r['kernel']} | {r['macs']:,} | "
                  f"{r['measured']:,.0f} | {r['measured'] / r['macs']:.2f} | {r['est']:,} | "
                  f"{r['est'] / r['measured']:.2f} |")
        print()
    groups = defaultdict(list)
    for r in rows:
        groups[r["kernel"]].append(r)
    print("| kernel | layers | instructions | est / measured |")
    print("|---|---:|---:|---:|")
    for name, rs in sorted(groups.items()):
        measured = sum(r["measured"] for r in rs)
        print(f"| {name} | {len(rs)} | {measured:,.0f} | {sum(r['est'] for r in rs) / measured:.2f} |")
    cost = fit(rows)
    print("\nKernel.cost (edgekit/lower/kernels.py), measured vs registered:")
    for name, figures in sorted(cost.items()):
        registered = kernel(name).cost
        text = ", ".join(f"{k}={v:.2f} ({getattr(registered, k):.2f})" for k, v in sorted(figures.items()))
        print(f"    {name:28s} {text}")
    summary = [dict(kernel=name, **v) for name, v in sorted(cost.items())]
    if args.json:
        Path(args.json).write_text(json.dumps(dict(layers=rows, summary=summary), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
