"""Budget levels of a model with early exits: the rule that picks an exit, and its calibration.

An inference at budget level L walks the exits in order (edgekit.lower.exits: cheapest first, the
final classifier last). Level L has one threshold per exit, an int16:

  NEVER (32767)     the exit is not evaluated at this level: its head does not run
  ALWAYS (-32768)   the exit is taken when reached: the level's deepest exit (later ones NEVER)
  t                 the head runs; the exit is taken when its confidence >= t

An exit's confidence is computed from its int8 scores (softmax or logits) with integers only, so
the C (model.c's ek_exit_confidence) and this module decide identically:

  margin   top-1 minus top-2 score, 0..255 (two equal maxima: 0)
  max      the top-1 score, -128..127 (on an int8 softmax: the probability in 256ths, minus 128)

`calibrate` picks each level's thresholds on validation data from the exact integer model's
outputs (edgekit's integer reference = the C): level L may lose at most `losses[L]` points of
top-1 accuracy against the final exit; among the tables that do, the one with the fewest mean
MACs wins (then the more accurate, then the higher thresholds). Every early exit's candidates are
NEVER plus up to `per_exit` confidence values at evenly spaced ranks of its validation
confidences, searched exhaustively.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError

NEVER = 32767
ALWAYS = -32768
RULES = ("margin", "max")
MAX_TABLES = 40_000          # threshold tables scored per level and depth


def default_losses(levels: int) -> list[float]:
    """Allowed accuracy loss (points) per level, lowest level first: level 0 always takes the first
    exit (unbounded loss), the top level loses nothing on the validation data, the levels between
    1, 2, 4... points from the top down."""
    if levels < 2:
        raise EdgekitError(f"--budgets {levels}: pass at least 2 levels")
    middle = [float(2 ** i) for i in range(levels - 2)][::-1]
    return [math.inf] + middle + [0.0]


def confidence(scores: np.ndarray, rule: str) -> np.ndarray:
    """int32 [N]: each row's confidence (module docstring) of int8 scores [N, classes]."""
    s = np.sort(scores.astype(np.int32), axis=1)
    if rule == "margin":
        return s[:, -1] - s[:, -2]
    if rule == "max":
        return s[:, -1]
    raise EdgekitError(f"--exit-rule {rule}: pass one of {', '.join(RULES)}")


def decide(conf: np.ndarray, thresholds) -> np.ndarray:
    """The exit taken [N] by each inference, given every exit's confidence [N, K] and one level's
    thresholds [K] (the first exit whose confidence reaches its threshold)."""
    hit = conf >= np.asarray(thresholds, np.int32)[None, :]      # the ALWAYS exit: True
    return np.argmax(hit, axis=1)


def threshold_words(thresholds, never: str = "never", always: str = "always") -> list[str]:
    """Each threshold as printed: `never`, `always` or the number."""
    return [never if t == NEVER else always if t == ALWAYS else str(t) for t in thresholds]


def format_shares(shares, sep: str = " ") -> str:
    """The share of inferences at each exit, as percentages."""
    return sep.join(f"{100 * v:.0f}%" for v in shares)


def evaluated(thresholds) -> list[int]:
    """The exits whose heads run (when reached) at a level."""
    return [k for k, t in enumerate(thresholds) if t != NEVER]


@dataclass
class Level:
    level: int
    thresholds: list[int]            # per exit (NEVER / ALWAYS / t)
    deepest: int                     # the exit taken when no earlier one is confident
    allowed_loss: float              # points; inf: level 0
    accuracy: float                  # top-1 on the validation data, exact integer model
    mean_macs: float
    exits: list[float]               # share of inferences taken at each exit
    mean_instructions: float | None = None   # with measured per-layer instructions (--budget-costs emulate)

    def as_json(self) -> dict:
        d = asdict(self)
        d["allowed_loss"] = None if math.isinf(self.allowed_loss) else self.allowed_loss
        return d


def level_cost(schedule, taken: np.ndarray, thresholds) -> np.ndarray:
    """MACs of each inference [N] that stops at `taken` under `thresholds`."""
    return exit_costs([s.backbone_macs for s in schedule.stages], [s.head_macs for s in schedule.stages],
                      thresholds)[taken]


def exit_costs(backbone: list, head: list, thresholds) -> np.ndarray:
    """Cost (MACs, or instructions) of an inference stopping at each exit [K] under `thresholds`:
    every backbone up to it, the heads the level evaluates before it, and its own head."""
    heads = evaluated(thresholds)
    return np.array([sum(backbone[j] + (head[j] if j in heads or j == k else 0) for j in range(k + 1))
                     for k in range(len(thresholds))], np.float64)


def calibrate(schedule, conf: np.ndarray, correct: np.ndarray, losses: list[float],
              per_exit: int = 32, instructions: tuple[list, list] | None = None) -> list[Level]:
    """One Level per entry of `losses` (module docstring). conf, correct: [N, K] per exit.
    `instructions`: each exit's backbone and head instructions (measured, stage_instructions):
    the levels then minimize mean instructions instead of mean MACs, and report both."""
    n, k = conf.shape
    full = float(correct[:, -1].mean())
    candidates = [_candidates(conf[:, j], per_exit) for j in range(k - 1)]
    levels = []
    for level, loss in enumerate(losses):
        best = None
        for deepest in range(k):
            tables = _tables(candidates[:deepest], deepest, k)
            for table in tables:
                taken = decide(conf, table)
                acc = float(correct[np.arange(n), taken].mean())
                if not math.isinf(loss) and acc < full - loss / 100 - 1e-12:
                    continue
                cost = float((level_cost(schedule, taken, table) if instructions is None else
                              exit_costs(*instructions, table)[taken]).mean())
                key = (cost, -acc, deepest, [-t for t in table])
                if best is None or key < best[0]:
                    best = (key, table, acc, cost, taken)
        key, table, acc, cost, taken = best
        hist = np.bincount(taken, minlength=k) / n
        levels.append(Level(level=level, thresholds=[int(t) for t in table], deepest=table.index(ALWAYS),
                            allowed_loss=loss, accuracy=acc, mean_macs=float(level_cost(schedule, taken, table).mean()),
                            exits=[float(h) for h in hist],
                            mean_instructions=None if instructions is None else cost))
    return levels


def _candidates(conf: np.ndarray, per_exit: int) -> list[int]:
    """NEVER and up to `per_exit` thresholds from one exit's validation confidences."""
    values = np.unique(conf)
    if len(values) > per_exit:
        ranks = np.sort(conf)[np.linspace(0, len(conf) - 1, per_exit).astype(int)]
        values = np.unique(ranks)
    return [NEVER] + [int(v) for v in values[::-1]]


def _tables(candidates: list[list[int]], deepest: int, k: int):
    """Every threshold table whose deepest exit is `deepest`, the candidates thinned so that at
    most MAX_TABLES are scored."""
    if deepest:
        keep = max(2, int(MAX_TABLES ** (1 / deepest)))
        candidates = [c if len(c) <= keep else [c[0]] + [c[1 + i] for i in
                                                         np.linspace(0, len(c) - 2, keep - 1).astype(int)]
                      for c in candidates]
    for head in itertools.product(*candidates):
        yield list(head) + [ALWAYS] + [NEVER] * (k - deepest - 1)


def format_levels(levels: list[Level], full_accuracy: float, full_macs: int, rule: str) -> str:
    """The level table export prints."""
    lines = [f"budget levels ({rule} rule; accuracy on --val with the exact integer model, full model "
             f"{100 * full_accuracy:.2f}%, {full_macs:,} MACs):"]
    for lv in levels:
        th = " ".join(threshold_words(lv.thresholds))
        bound = "any" if math.isinf(lv.allowed_loss) else f"{lv.allowed_loss:g} pt"
        hist = format_shares(lv.exits)
        instr = (f"  mean instructions ~{lv.mean_instructions:,.0f}" if lv.mean_instructions is not None else "")
        lines.append(f"  level {lv.level}: loss <= {bound:<6} thresholds [{th}]  accuracy {100 * lv.accuracy:.2f}%  "
                     f"mean MACs {lv.mean_macs:,.0f} ({full_macs / max(lv.mean_macs, 1):.2f}x fewer){instr}  exits {hist}")
    return "\n".join(lines)


@dataclass
class BudgetSpec:
    """`edgekit export --budgets N --val val.npz [--budget-loss ...] [--exit-rule ...] [--battery-mv ...]
    [--budget-costs macs|emulate]`."""
    levels: int
    val: str                              # .npz with x and y (labels as integers or one-hot)
    losses: list[float] | None = None     # per level, lowest first (default_losses)
    rule: str = "margin"
    battery_mv: list[int] | None = None   # levels-1 floors, highest first (default_battery_mv)
    costs: str = "macs"                   # 'emulate': per-layer instructions measured in QEMU

    def check(self) -> None:
        if self.levels < 2 or self.levels > 16:
            raise EdgekitError(f"--budgets {self.levels}: pass 2 to 16 levels")
        if self.costs not in ("macs", "emulate"):
            raise EdgekitError(f"--budget-costs {self.costs}: pass macs or emulate")
        if self.rule not in RULES:
            raise EdgekitError(f"--exit-rule {self.rule}: pass one of {', '.join(RULES)}")
        if self.losses is not None:
            if len(self.losses) != self.levels:
                raise EdgekitError(f"--budget-loss has {len(self.losses)} values for {self.levels} levels: pass one "
                                   "allowed loss in points per level, lowest level first (inf: any)")
            if any(not (v >= 0) for v in self.losses) or any(a < b for a, b in zip(self.losses, self.losses[1:])):
                raise EdgekitError("--budget-loss: pass losses of at least 0 points that do not grow with the level "
                                   "(a higher level spends more to lose less), lowest level first")
        if self.battery_mv is not None:
            mv = self.battery_mv
            if len(mv) != self.levels - 1:
                raise EdgekitError(f"--battery-mv has {len(mv)} values for {self.levels} levels: pass {self.levels - 1} "
                                   "millivolt floors, highest first (a reading at or above the first gets the top level)")
            if any(not 0 < v < 100_000 for v in mv) or any(a <= b for a, b in zip(mv, mv[1:])):
                raise EdgekitError("--battery-mv: pass falling millivolt floors between 1 and 99999, highest first")


def default_battery_mv(levels: int) -> list[int]:
    """Floors for a single Li-ion cell: from 3,900 mV down to 3,400 mV in equal steps."""
    if levels == 2:
        return [3700]
    return [int(round(v / 10) * 10) for v in np.linspace(3900, 3400, levels - 1)]


@dataclass
class Evidence:
    """Every exit's confidence and correctness on the validation data [N, K] (exit order)."""
    conf: np.ndarray
    correct: np.ndarray
    source: str


def exit_evidence(program, tflite: bytes, spec: BudgetSpec, label: str) -> Evidence:
    """Every exit's int8 scores on spec.val from edgekit's integer reference (what the C computes),
    as each exit's confidence (spec.rule) and whether its top-1 is the label."""
    from edgekit.datasets import prepare_data, prepare_labels
    from edgekit.run.intref import IntReference
    from edgekit.train.data import read_npz
    spec.check()
    schedule = program.exits
    x, y = read_npz(spec.val, "--val")
    scale, zero_point = program.input.qparams()
    shape = [int(d) for d in program.input.shape]
    xq = prepare_data(x, f"{spec.val} (x)", dict(input=dict(shape=shape, scale=scale, zero_point=zero_point)),
                      "--val")
    labels = prepare_labels(y, f"{spec.val} (y)", len(x), schedule.classes)
    ref = IntReference.from_tflite(tflite, label=label)
    outs = ref.run_outputs(xq, batch=512)
    scores = [outs[k].reshape(len(xq), -1) for k in schedule.outputs]
    return Evidence(conf=np.stack([confidence(s, spec.rule) for s in scores], axis=1),
                    correct=np.stack([np.argmax(s, axis=1) == labels for s in scores], axis=1),
                    source=f"{Path(spec.val).name} ({len(xq):,} samples)")


def stage_instructions(schedule, layer_instructions: list[float]) -> tuple[list[float], list[float]]:
    """Each exit's backbone and head instructions from per-layer figures (model.c's layer order)."""
    def run(first: int, last: int) -> float:
        return float(sum(layer_instructions[first:last + 1]))
    return ([run(*st.backbone) for st in schedule.stages], [run(*st.head) for st in schedule.stages])


def budget_report(program, spec: BudgetSpec, evidence: Evidence, layer_instructions: list[float] | None = None,
                  measured_on: str = "") -> dict:
    """report.json's "budget" for a Program lowered with exits: each level's thresholds
    (calibrate), on MACs, or on `layer_instructions` (per layer, measured on `measured_on`)."""
    schedule = program.exits
    losses = spec.losses if spec.losses is not None else default_losses(spec.levels)
    instructions = stage_instructions(schedule, layer_instructions) if layer_instructions is not None else None
    levels = calibrate(schedule, evidence.conf, evidence.correct, losses, instructions=instructions)
    correct = evidence.correct
    alone = exit_costs([st.backbone_macs for st in schedule.stages], [st.head_macs for st in schedule.stages],
                       [NEVER] * len(schedule.stages))        # each exit with no other head evaluated
    report = dict(
        rule=spec.rule, calibrated_on=evidence.source, classes=schedule.classes,
        cost="instructions" if instructions else "MACs",
        exits=[dict(exit=k, output=st.output, backbone_layers=list(st.backbone), head_layers=list(st.head),
                    backbone_macs=st.backbone_macs, head_macs=st.head_macs,
                    accuracy=float(correct[:, k].mean()), macs=int(alone[k]))
               for k, st in enumerate(schedule.stages)],
        full_accuracy=float(correct[:, -1].mean()),
        full_macs=int(alone[-1]),                                           # the model without its exits
        levels=[lv.as_json() for lv in levels],
        battery_mv=spec.battery_mv or default_battery_mv(spec.levels),
    )
    if instructions:
        backbone, head = instructions
        report.update(measured_on=measured_on, full_instructions=float(sum(backbone) + head[-1]))
        for e, b, h in zip(report["exits"], backbone, head):
            e.update(backbone_instructions=b, head_instructions=h)
    return report


def reference_budget(budget: dict, outputs: list[np.ndarray], level: int) -> tuple[np.ndarray, np.ndarray]:
    """What ek_model_invoke_budget answers at `level`, from every output of the exact integer
    model (edgekit's integer reference, [N, ...] each in the model's output order) and report.json's
    "budget": (the exit taken [N], its int8 scores [N, classes])."""
    if not 0 <= level < len(budget["levels"]):
        raise EdgekitError(f"budget level {level} is out of range: the model has levels 0 to {len(budget['levels']) - 1}")
    scores = [outputs[e["output"]].reshape(len(outputs[0]), -1) for e in budget["exits"]]
    conf = np.stack([confidence(s, budget["rule"]) for s in scores], axis=1)
    taken = decide(conf, budget["levels"][level]["thresholds"])
    return taken.astype(np.int64), np.stack(scores, axis=1)[np.arange(len(taken)), taken]


def level_macs(budget: dict, taken: np.ndarray, level: int) -> np.ndarray:
    """MACs of each inference [N] that took exit `taken` at `level`, from report.json's "budget"."""
    exits = budget["exits"]
    return exit_costs([e["backbone_macs"] for e in exits], [e["head_macs"] for e in exits],
                      budget["levels"][level]["thresholds"])[taken]


def format_budget(budget: dict) -> str:
    """The exits and the level table, as export prints them."""
    lines = ["exits (cheapest first; accuracy on --val with the exact integer model):"]
    for e in budget["exits"]:
        lines.append(f"  exit {e['exit']}: output {e['output']}, {e['macs']:,} MACs to here "
                     f"({100 * e['macs'] / budget['full_macs']:.0f}%), accuracy {100 * e['accuracy']:.2f}%")
    levels = [Level(**dict(lv, allowed_loss=math.inf if lv["allowed_loss"] is None else lv["allowed_loss"]))
              for lv in budget["levels"]]
    lines.append(format_levels(levels, budget["full_accuracy"], budget["full_macs"], budget["rule"]))
    if budget.get("cost") == "instructions":
        lines.append(f"(levels chosen on instructions per layer measured on {budget['measured_on']}; the model without "
                     f"its exits: ~{budget['full_instructions']:,.0f})")
    mv = budget["battery_mv"]
    top = len(levels) - 1
    lines.append("battery (ek_budget_for_battery_mv): " + ", ".join(
        f">= {v} mV: level {top - i}" for i, v in enumerate(mv)) + ", below: level 0")
    return "\n".join(lines)
