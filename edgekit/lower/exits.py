"""The exit schedule: a classifier with early exits, lowered so that it can stop at any exit.

A model with early exits (edgekit.train.exits) has several outputs of one shape, [1, classes]:
each exit's scores, the final classifier's last. Ordered by what they cost (the MACs of the
layers each output depends on), output k of that order is exit k. The layers are then put in
this order (`schedule_exits`), each exit's in two runs of consecutive layers:

  backbone k  the layers exit k needs that a later exit needs as well (not already scheduled)
  head k      the layers only exit k needs

    backbone 0, head 0, backbone 1, head 1, ..., backbone K-1, head K-1 (the final classifier)

so `ek_model_invoke_budget` (model.c) runs backbone 0, then head 0 if the budget level evaluates
exit 0, returns if exit 0 is confident enough, and otherwise goes on with backbone 1. A head's
tensors are read by no later layer, so skipping a head, or stopping after one, leaves nothing a
later layer needs unwritten: the memory plan made for the full order holds for every prefix of it
with heads left out. Within each run the layers keep the order they had (TFLite's, or the one
edgekit.lower.program.choose_order picked for a smaller arena).
"""
from __future__ import annotations

from dataclasses import dataclass

from edgekit.errors import EdgekitError


@dataclass(frozen=True)
class ExitStage:
    """One exit: its output (index in the model's output order) and its two runs of layers,
    [first, last] step indices (first > last: empty), with their MACs."""
    output: int
    backbone: tuple[int, int]
    head: tuple[int, int]
    backbone_macs: int
    head_macs: int


@dataclass(frozen=True)
class ExitSchedule:
    stages: tuple[ExitStage, ...]     # exit order: cheapest first, the final classifier last
    classes: int

    @property
    def outputs(self) -> list[int]:
        return [s.output for s in self.stages]


def exit_outputs_check(graph) -> int:
    """The number of classes every output has; one sentence when the model is not a classifier
    with exits (at least two outputs, each int8 [1, classes] or [classes], classes >= 2)."""
    outs = [graph.t(t) for t in graph.outputs]
    if len(outs) < 2:
        raise EdgekitError("--budgets needs a model with early exits (several classifier outputs), but this model "
                           "has one output: add exits with `edgekit exits`")
    sizes = set()
    for k, t in enumerate(outs):
        dims = [int(d) for d in t.shape]
        if t.dtype != "int8" or not (len(dims) == 1 or (len(dims) == 2 and dims[0] == 1)) or dims[-1] < 2:
            raise EdgekitError(f"--budgets: output {k} ({t.name}) is {t.dtype} {dims}, not a classifier's scores "
                               "([1, classes] int8): every output of a model with exits must be one")
        sizes.add(dims[-1])
    if len(sizes) != 1:
        raise EdgekitError(f"--budgets: the outputs have different numbers of classes ({sorted(sizes)}): every "
                           "exit must score the same classes")
    return sizes.pop()


def schedule_exits(graph, steps: list, find, deps: list[list[int]], writer: dict[int, int]) -> tuple[list, ExitSchedule]:
    """`steps` (edgekit.lower.program.Step) reordered as the module docstring says, and the
    schedule; `find`: a tensor's storage group (aliases merged), `deps`: the steps each step
    reads from, `writer`: the step writing each storage group (edgekit.lower.program.step_deps,
    step_writers)."""
    classes = exit_outputs_check(graph)
    n = len(steps)

    def ancestors(t: int) -> set[int]:
        todo = [writer[find(t)]] if find(t) in writer else []
        seen: set[int] = set()
        while todo:
            i = todo.pop()
            if i not in seen:
                seen.add(i)
                todo.extend(deps[i])
        return seen

    need = [ancestors(t) for t in graph.outputs]
    macs = [int(s.call.macs) for s in steps]
    cost = [sum(macs[i] for i in n) for n in need]
    order = sorted(range(len(graph.outputs)), key=lambda k: (cost[k], k))
    if any(cost[k] >= cost[order[-1]] for k in order[:-1]):
        raise EdgekitError("--budgets: two outputs cost the same, so no output is the final classifier after "
                           "the others: exits must come before the final output")
    done: set[int] = set()
    new: list[int] = []
    stages = []
    for pos, k in enumerate(order):
        later = set().union(*(need[j] for j in order[pos + 1:]))
        backbone = [i for i in range(n) if i in need[k] and i in later and i not in done]
        done.update(backbone)
        head = [i for i in range(n) if i in need[k] and i not in done]
        done.update(head)
        b0 = len(new)
        new.extend(backbone)
        h0 = len(new)
        new.extend(head)
        stages.append(ExitStage(output=k, backbone=(b0, h0 - 1), head=(h0, len(new) - 1),
                                backbone_macs=sum(macs[i] for i in backbone), head_macs=sum(macs[i] for i in head)))
    rest = [i for i in range(n) if i not in done]
    if rest:
        raise EdgekitError(f"--budgets: layer {steps[rest[0]].op.location} feeds no output; remove it")
    return [steps[i] for i in new], ExitSchedule(stages=tuple(stages), classes=classes)
