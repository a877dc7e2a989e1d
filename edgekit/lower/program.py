"""Lowering a Graph to a Program: the ordered kernel calls plus where every tensor lives.

A tensor lives in the caller's input buffer, the caller's output buffer, or the arena.
Aliasing ops (RESHAPE...) merge tensors into one storage group; the memory planner
(edgekit.plan) places each arena group by its lifetime, plus one scratch buffer per call
that asks for one (KernelCall.scratch_bytes, live only during that call).

In-place: a call's InPlace declarations (edgekit.lower.base) become planner Shares between the
storage groups of that input and the output; the planner uses one only where it is legal.

Operator order (choose_order): where the graph branches, the order of the kernel calls changes
which tensors are live together. Every topological order of the calls is enumerated (depth
first, in TFLite's order, at most MAX_ORDERS of them) and scored by its peak of live bytes; the
best few and TFLite's own order are then planned for real and the smallest arena wins, ties
going to TFLite's order. Chains (most models) have one order and cost nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from edgekit import formats
from edgekit.errors import UnsupportedModelError
from edgekit.ir import Graph, Op, short_name
from edgekit.lower import LOWERINGS, Alias, KernelCall
from edgekit.lower.base import TensorArg, TensorListArg
from edgekit.lower.exits import ExitSchedule, schedule_exits
from edgekit.plan import Buffer, Plan, Share, format_plan, plan_memory
from edgekit.targets import Target


@dataclass(frozen=True)
class Place:
    kind: str         # 'input' | 'output' | 'arena'
    offset: int = 0


MAX_ORDERS = 2000       # topological orders scored by peak live bytes
MAX_BRANCHED_STEPS = 300    # bigger graphs with branches keep TFLite's order
PLANNED_ORDERS = 4      # of which the best are planned for real (plus TFLite's order)


@dataclass
class Step:
    op: Op
    call: KernelCall
    source: int = -1      # the step's position in TFLite's order (before choose_order)


@dataclass(frozen=True)
class Segment:
    """Layers first..last (model.c's layer indices) after which the outputs `outputs` (indices in
    the model's output order) are complete: a caller that needs only the outputs up to a segment
    may stop after its last layer. `macs` counts the segment's own layers."""
    first: int
    last: int
    outputs: tuple[int, ...]
    macs: int


@dataclass
class Program:
    graph: Graph
    steps: list[Step]
    places: dict[int, Place]              # tensor index -> storage
    plan: Plan
    buffers: list[Buffer] = field(default_factory=list)
    buffer_names: dict[int, str] = field(default_factory=dict)
    exits: ExitSchedule | None = None     # lowered for early exits (edgekit.lower.exits)

    @property
    def input(self):
        return self.graph.t(self.graph.inputs[0])

    @property
    def outputs(self) -> list:
        """The output tensors in the model's output order (the .tflite subgraph's)."""
        return [self.graph.t(t) for t in self.graph.outputs]

    @property
    def output_offsets(self) -> list[int]:
        """Where each output starts in the caller's output buffer: back to back, in order."""
        return output_offsets(self.graph)

    @property
    def output_size(self) -> int:
        """Bytes of the caller's output buffer: every output."""
        return sum(t.nbytes for t in self.outputs)

    def output_ready(self) -> list[int]:
        """For each output, the last layer (step index) its value depends on (-1: none, e.g. an
        output that is the input reshaped)."""
        producers = self.graph.producers()
        step_of = {id(s.op): i for i, s in enumerate(self.steps)}
        memo: dict[int, int] = {}

        def last(t: int) -> int:
            if t in memo:
                return memo[t]
            memo[t] = -1
            p = producers.get(t)
            if p is None:
                return -1           # the input or a constant
            op = self.graph.ops[p]
            # an op without a step is an alias (RESHAPE...): its value is its input's
            memo[t] = max([step_of.get(id(op), -1)] + [last(i) for i in op.inputs if i >= 0])
            return memo[t]
        return [last(t) for t in self.graph.outputs]

    @property
    def segments(self) -> list[Segment]:
        """The layers split where outputs become complete, in layer order (one segment for a
        single-output model; layers past the last output, if any, form a segment of no outputs)."""
        ready = self.output_ready()
        ends = sorted({max(r, 0) for r in ready} | {len(self.steps) - 1})
        out, first = [], 0
        for end in ends:
            outs = tuple(k for k, r in enumerate(ready) if first <= max(r, 0) <= end)
            macs = sum(s.call.macs for s in self.steps[first:end + 1])
            out.append(Segment(first=first, last=end, outputs=outs, macs=int(macs)))
            first = end + 1
        return out

    def plan_text(self) -> str:
        order = [s.source for s in self.steps]
        lines = []
        if order != sorted(order):
            lines.append("op order (changed from TFLite's to lower the peak): "
                         + " ".join(str(i) for i in order) + "  (TFLite's op numbers)")
        else:
            lines.append("op order: TFLite's")
        for i, step in enumerate(self.steps):
            lines.append(f"  op {i:>3}: {step.op.kind:<18} {short_name(step.op.name, 40)}")
        return "\n".join(lines) + "\n" + format_plan(self.buffers, self.plan, self.buffer_names,
                                                      n_ops=len(self.steps))


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


def output_offsets(graph: Graph) -> list[int]:
    """Offset of each model output in the caller's output buffer (outputs back to back)."""
    offsets, at = [], 0
    for t in graph.outputs:
        offsets.append(at)
        at += graph.t(t).nbytes
    return offsets


def lower(graph: Graph, target: Target | None = None, exits: bool = False) -> Program:
    """Lower every op for `target` (None: portable kernels only) and plan the arena; with `exits`,
    in the exit schedule's order (edgekit.lower.exits: a classifier with early exits).

    The model input's storage group lives in the caller's input buffer and output k's in the
    caller's output buffer at its offset (Place("output", offset)); the planner places only
    the other groups. An output also read by later ops is read from there. Where an Alias would
    merge two of these boundary groups (the input and an output, or two outputs), the bytes are
    copied instead (ek_copy_s8)."""
    if len({graph.inputs[0], *graph.outputs}) != 1 + len(graph.outputs):
        raise ValueError("lower() needs an input and outputs that are distinct tensors "
                         "(edgekit.passes.check_io and separate_repeated_outputs)")
    steps: list[Step] = []
    groups = _Groups()
    boundary = {graph.inputs[0]: Place("input")}
    boundary.update({t: Place("output", off) for t, off in zip(graph.outputs, output_offsets(graph))})

    def pinned(t: int) -> Place | None:
        root = groups.find(t)
        return next((p for b, p in boundary.items() if groups.find(b) == root), None)

    for op in graph.ops:
        try:
            result = LOWERINGS[op.kind](graph, op, target)
        except (ValueError, KeyError, IndexError) as e:
            raise UnsupportedModelError(f"layer {op.location} cannot be compiled: {e}") from None
        if op.weights_boot and not isinstance(result, Alias):
            result = decode_at_boot(result)
        if isinstance(result, Alias):
            ends = (pinned(result.source), pinned(result.target))
            if None not in ends and ends[0] != ends[1]:
                # Two caller buffers (or two places in one) cannot be one storage: copy instead.
                steps.append(Step(op, _copy_call(graph, result)))
            else:
                groups.union(result.source, result.target)
        else:
            steps.append(Step(op, result))

    for i, step in enumerate(steps):
        step.source = i
    fixed = {groups.find(t): place for t, place in boundary.items()}
    steps = choose_order(graph, steps, groups.find, set(fixed))
    schedule = None
    if exits:
        steps, schedule = schedule_exits(graph, steps, groups.find, step_deps(steps, groups.find),
                                         step_writers(steps, groups.find))
    buffers, shares, members = arena_buffers(graph, steps, groups.find, set(fixed))
    plan = plan_memory(buffers, shares)
    places: dict[int, Place] = {}
    for g, ts in members.items():
        place = fixed.get(g) or Place("arena", plan.offsets[g])
        for t in ts:
            places[t] = place
    for i, step in enumerate(steps):
        if step.call.scratch_bytes > 0:
            places[_scratch_id(i)] = Place("arena", plan.offsets[_scratch_id(i)])
    names = {b.id: (short_name(graph.t(b.id).name, 40) if b.id >= 0 else f"scratch of op {-b.id - 1}")
             for b in buffers}
    return Program(graph=graph, steps=steps, places=places, plan=plan, buffers=buffers, buffer_names=names,
                   exits=schedule)


# The weight array of each kernel that has one (edgekit.lower: conv/depthwise 'filter', FC 'weights').
WEIGHT_ARRAYS = ("filter", "weights")


def decode_at_boot(call: KernelCall) -> KernelCall:
    """`--huffman-decode boot`: the call's int8 weight array, in whatever layout its kernel reads,
    is stored Huffman-coded in flash and decoded once by ek_model_init() into a RAM buffer; the
    kernel and its speed are unchanged (edgekit.passes.weights chose this for the layer)."""
    arrays = []
    for a in call.arrays:
        if a.name in WEIGHT_ARRAYS and a.ctype == "int8_t":
            enc = formats.encode("huffman", np.asarray(a.values, dtype=np.int8).reshape(1, -1))
            a = replace(a, boot_code=enc)
        arrays.append(a)
    return replace(call, arrays=arrays)


def _scratch_id(step: int) -> int:
    """Buffer id of a step's scratch buffer: negative, so never a tensor index."""
    return -1 - step


def arena_buffers(graph: Graph, steps: list[Step], find, fixed: set[int]):
    """Arena buffers (one per storage group outside `fixed`, one per scratch request), the
    in-place shares the calls declare, and the tensors of each group."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    size: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    shares: list[Share] = []
    for i, step in enumerate(steps):
        for t in _tensor_args(step):
            if graph.t(t).is_const:
                continue
            g = find(t)
            members.setdefault(g, [])
            if t not in members[g]:
                members[g].append(t)
            size[g] = max(size.get(g, 0), graph.t(t).nbytes)
            first[g] = min(first.get(g, i), i)
            last[g] = max(last.get(g, i), i)
        call = step.call
        if call.inplace:
            out_g = find(call.args[call.output_arg].index)
            for d in call.inplace_inputs():
                in_g = find(call.args[d.arg].index)
                if not graph.t(call.args[d.arg].index).is_const and in_g != out_g:
                    shares.append(Share(input=in_g, output=out_g, gap=d.gap))
    buffers = [Buffer(id=g, size=size[g], first=first[g], last=last[g])
               for g in sorted(first) if g not in fixed]
    buffers += [Buffer(id=_scratch_id(i), size=s.call.scratch_bytes, first=i, last=i)
                for i, s in enumerate(steps) if s.call.scratch_bytes > 0]
    arena_ids = {b.id for b in buffers}
    shares = [s for s in shares if s.input in arena_ids and s.output in arena_ids]
    return buffers, shares, members


def _peak_live(graph: Graph, steps: list[Step], find, fixed: set[int]) -> int:
    """Largest sum of live arena bytes at one op (a used-as-declared share counts once)."""
    buffers, shares, _ = arena_buffers(graph, steps, find, fixed)
    live = [0] * len(steps)
    for b in buffers:
        for i in range(b.first, b.last + 1):
            live[i] += b.size
    by_id = {b.id: b for b in buffers}
    for s in shares:
        a, b = by_id[s.input], by_id[s.output]
        if a.last == b.first:
            live[a.last] -= max(0, min(a.size, b.size) - s.gap)
    return max(live, default=0)


def _greedy_order(graph: Graph, steps: list[Step], deps: list[list[int]], find, fixed) -> list[int]:
    """A topological order built one call at a time: among the calls whose inputs are ready,
    the one that adds the fewest live bytes (its output minus the inputs it is the last reader
    of), ties by TFLite's order."""
    n = len(steps)
    readers: dict[int, set[int]] = {}
    for i, step in enumerate(steps):
        for t in _tensor_args(step):
            readers.setdefault(find(t), set()).add(i)
    nbytes = {}
    for step in steps:
        for t in _tensor_args(step):
            g = find(t)
            nbytes[g] = max(nbytes.get(g, 0), 0 if g in fixed or graph.t(t).is_const else graph.t(t).nbytes)
    done: set[int] = set()
    order: list[int] = []
    while len(order) < n:
        ready = [i for i in range(n) if i not in done and all(d in done for d in deps[i])]

        def growth(i: int) -> int:
            call = steps[i].call
            out_g = find(call.args[call.output_arg].index)
            ins = {find(t) for t in _tensor_args(steps[i])} - {out_g}
            freed = sum(nbytes[g] for g in ins if readers[g] <= done | {i})
            return nbytes[out_g] - freed

        pick = min(ready, key=lambda i: (growth(i), i))
        done.add(pick)
        order.append(pick)
    return order


def step_writers(steps: list[Step], find) -> dict[int, int]:
    """The step writing each storage group (its last writer)."""
    return {find(step.call.args[step.call.output_arg].index): i for i, step in enumerate(steps)}


def step_deps(steps: list[Step], find) -> list[list[int]]:
    """For each step, the steps whose outputs it reads."""
    writer = step_writers(steps, find)
    return [sorted({writer[find(t)] for t in _tensor_args(step)
                    if find(t) in writer and writer[find(t)] != i}) for i, step in enumerate(steps)]


def choose_order(graph: Graph, steps: list[Step], find, fixed: set[int]) -> list[Step]:
    """The order of `steps` with the smallest arena among TFLite's and the best-scored
    topological orders (see the module docstring); TFLite's order on ties."""
    n = len(steps)
    deps = step_deps(steps, find)
    if all(d == [i - 1] for i, d in enumerate(deps) if i > 0) or n > MAX_BRANCHED_STEPS:
        return steps          # a chain has one order only; very big graphs keep TFLite's
    orders: list[list[int]] = []
    indeg = [len(d) for d in deps]
    users = [[] for _ in range(n)]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    prefix: list[int] = []

    def visit() -> bool:
        if len(orders) >= MAX_ORDERS:
            return False
        if len(prefix) == n:
            orders.append(list(prefix))
            return True
        for i in range(n):
            if indeg[i] == 0 and i not in done:
                done.add(i)
                prefix.append(i)
                for u in users[i]:
                    indeg[u] -= 1
                visit()
                for u in users[i]:
                    indeg[u] += 1
                prefix.pop()
                done.discard(i)
        return True

    done: set[int] = set()
    visit()
    orders.append(_greedy_order(graph, steps, deps, find, fixed))
    scored = sorted(orders, key=lambda o: (_peak_live(graph, [steps[i] for i in o], find, fixed), o))
    candidates = [list(range(n))]
    for o in scored:
        if len(candidates) > PLANNED_ORDERS:
            break
        if o not in candidates:
            candidates.append(o)
    best, best_arena = None, None
    for o in candidates:
        ordered = [steps[i] for i in o]
        buffers, shares, _ = arena_buffers(graph, ordered, find, fixed)
        arena = plan_memory(buffers, shares).arena_size
        if best_arena is None or arena < best_arena:
            best, best_arena = ordered, arena
    return best


def _copy_call(graph: Graph, alias: Alias) -> KernelCall:
    return KernelCall(kernel="ek_copy_s8", params=dict(size=graph.t(alias.target).nbytes),
                      args=[TensorArg(alias.source), TensorArg(alias.target)])


def _tensor_args(step: Step) -> list[int]:
    out: list[int] = []
    for a in step.call.args:
        if isinstance(a, TensorArg):
            out.append(a.index)
        elif isinstance(a, TensorListArg):
            out.extend(a.indices)
    return out
