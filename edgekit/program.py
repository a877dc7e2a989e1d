"""Lowering a Graph to a Program: the ordered kernel calls plus where every tensor lives.

A tensor lives in the caller's input buffer, the caller's output buffer, or the arena.
Aliasing ops (RESHAPE...) merge tensors into one storage group; the memory planner
(edgekit.planner) places each arena group by its lifetime.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import UnsupportedModelError
from .ir import Graph, Op, short_name
from .ops import LOWERINGS, Alias, KernelCall
from .ops.base import TensorArg, TensorListArg
from .planner import Buffer, Plan, format_plan, plan_memory
from .targets import Target


@dataclass(frozen=True)
class Place:
    kind: str         # 'input' | 'output' | 'arena'
    offset: int = 0


@dataclass
class Step:
    op: Op
    call: KernelCall


@dataclass
class Program:
    graph: Graph
    steps: list[Step]
    places: dict[int, Place]              # tensor index -> storage
    plan: Plan
    buffers: list[Buffer] = field(default_factory=list)
    buffer_names: dict[int, str] = field(default_factory=dict)

    @property
    def input(self):
        return self.graph.t(self.graph.inputs[0])

    @property
    def output(self):
        return self.graph.t(self.graph.outputs[0])

    def plan_text(self) -> str:
        return format_plan(self.buffers, self.plan, self.buffer_names, n_ops=len(self.steps))


class _Groups:
    """Union-find over tensor indices (alias groups)."""

    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, t: int) -> int:
        self.parent.setdefault(t, t)
        while self.parent[t] != t:
            self.parent[t] = self.parent[self.parent[t]]
            t = self.parent[t]
        return t

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def lower(graph: Graph, target: Target | None = None) -> Program:
    """Lower every op for `target` (None: portable kernels only) and plan the arena."""
    steps: list[Step] = []
    groups = _Groups()
    model_in, model_out = graph.inputs[0], graph.outputs[0]
    for op in graph.ops:
        try:
            result = LOWERINGS[op.kind](graph, op, target)
        except (ValueError, KeyError, IndexError) as e:
            raise UnsupportedModelError(f"layer {op.location} cannot be compiled: {e}") from None
        if isinstance(result, Alias):
            ends = {groups.find(result.source), groups.find(result.target)}
            if ends == {groups.find(model_in), groups.find(model_out)} and len(ends) == 2:
                # The caller's input and output buffers cannot be one storage: copy instead.
                steps.append(Step(op, _copy_call(graph, result)))
            else:
                groups.union(result.source, result.target)
        else:
            steps.append(Step(op, result))

    in_group, out_group = groups.find(model_in), groups.find(model_out)

    # Lifetimes of arena groups, in step indices.
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    size: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    for i, step in enumerate(steps):
        for t in _tensor_args(step):
            if graph.t(t).is_const:
                continue
            g = groups.find(t)
            members.setdefault(g, [])
            if t not in members[g]:
                members[g].append(t)
            size[g] = max(size.get(g, 0), graph.t(t).nbytes)
            first[g] = min(first.get(g, i), i)
            last[g] = max(last.get(g, i), i)
    buffers = [Buffer(id=g, size=size[g], first=first[g], last=last[g])
               for g in sorted(first) if g not in (in_group, out_group)]
    plan = plan_memory(buffers)
    places: dict[int, Place] = {}
    for g, ts in members.items():
        place = (Place("input") if g == in_group else Place("output") if g == out_group
                 else Place("arena", plan.offsets[g]))
        for t in ts:
            places[t] = place
    names = {b.id: short_name(graph.t(b.id).name, 40) for b in buffers}
    return Program(graph=graph, steps=steps, places=places, plan=plan, buffers=buffers, buffer_names=names)


def _copy_call(graph: Graph, alias: Alias) -> KernelCall:
    return KernelCall(kernel="ek_copy_s8", header="ek_copy.h", sources=("ek_copy_s8.c",),
                      params_type="ek_copy_params", params=dict(size=graph.t(alias.target).nbytes),
                      args=[TensorArg(alias.source), TensorArg(alias.target)])


def _tensor_args(step: Step) -> list[int]:
    out: list[int] = []
    for a in step.call.args:
        if isinstance(a, TensorArg):
            out.append(a.index)
        elif isinstance(a, TensorListArg):
            out.extend(a.indices)
    return out
