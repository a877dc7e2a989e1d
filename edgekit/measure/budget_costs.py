"""`edgekit export --budgets N --budget-costs emulate`: budget levels chosen on instructions.

By default the levels are calibrated on MACs, which export knows exactly. A layer's instructions
per MAC differ widely (a first convolution with one input channel costs more per MAC than a
pointwise one), so MACs saved can overstate time saved. With `emulate`, the exported firmware is
built with the per-layer profile and run once in QEMU (`bench --profile`: each layer's
instructions, nearly the same for every input), each exit's backbone and head get their measured
instructions, the levels are calibrated again to the fewest mean instructions, and the export is
written again with that table (its mean instructions are then estimates from the measured
layers; `edgekit bench --budget all` measures them)."""
from __future__ import annotations

from edgekit.budget import BudgetSpec, budget_report
from edgekit.errors import EdgekitError
from edgekit.export import ExportResult, export_program
from edgekit.measure.bench import BenchConfig, bench
from edgekit.targets import Target


def require_emulator(target: Target) -> None:
    """--budget-costs emulate needs a target QEMU runs (checked before the export's work)."""
    if not target.can_emulate or target.is_host:
        raise EdgekitError(f"--budget-costs emulate measures on an emulated board, which {target.name} has none of: "
                           "use --budget-costs macs")


def measure_budget_costs(result: ExportResult, spec: BudgetSpec, target: Target) -> ExportResult:
    require_emulator(target)
    run = bench(result.out_dir, BenchConfig(runs=1, warmup=0, count=1, profile=True), emulate=True, progress=False)
    if run.unit != "instructions" or not run.layers:
        raise EdgekitError("the profiled firmware gave no per-layer instructions: use --budget-costs macs")
    layers = [float(layer["value"]) for layer in run.layers]
    budget = budget_report(result.program, spec, result.evidence, layers, measured_on=run.where)
    report = result.report
    again = export_program(result.program, result.out_dir, target, report["model"], report["source"],
                           tflite=result.tflite, weights=report.get("weights"), budget=budget)
    again.evidence = result.evidence
    return again
