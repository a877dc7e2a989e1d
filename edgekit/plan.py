"""Static memory planner: places every intermediate tensor in one arena by lifetime.

The plan is a pure, deterministic function of (buffer sizes, lifetimes, declared in-place pairs):

  1. Each buffer lives from the op that writes it to the last op that reads it (inclusive).
     Two buffers conflict when these intervals intersect: an op's inputs and outputs are live
     at the same time, so no op writes over a tensor it is still reading -- except:
  2. In-place pairs. A Share(input, output, gap) says the kernel of op h may write `output`
     over `input` (edgekit.lower.base.InPlace states what the kernel promises). The planner uses
     it only when it is legal: input.last == h == output.first (the input dies at the op that
     writes the output), each buffer is the input of at most one used share and the output of
     at most one (the first declared legal one wins); the gap is rounded up to ALIGN. A used
     share fixes offset(output) = offset(input) - gap; buffers joined by shares form a chain
     placed as one block (fixed relative offsets, lifetime = the union).
  3. Blocks are placed greedily, one after the other, each at the lowest offset (a multiple of
     ALIGN) where it overlaps no already placed block it conflicts with in time: the busy
     intervals of conflicting blocks, sorted by offset, are scanned first-fit.
  4. Several deterministic orders of placement are tried (STRATEGIES: largest first as TFLite
     Micro's greedy planner, then by first use, by lifetime length, by size x lifetime), first
     without and then with the in-place shares; the smallest arena wins, ties going to the
     earlier try (so the plain largest-first plan stays when nothing is gained).
  5. The arena size is the highest end offset, rounded up to ALIGN.

check_plan() independently verifies that no two conflicting buffers share a byte except a used
share at its handover op with offset(output) <= offset(input) - gap, and format_plan() prints the
plan as a table with an ASCII lifetime chart.
"""
from __future__ import annotations

from dataclasses import dataclass, field

ALIGN = 4


@dataclass(frozen=True)
class Buffer:
    id: int
    size: int       # bytes
    first: int      # index of the op that writes it
    last: int       # index of the last op that reads it (>= first)


@dataclass(frozen=True)
class Share:
    """`output` may overlap `input` at the op where one dies and the other is born, provided
    offset(output) <= offset(input) - gap."""
    input: int
    output: int
    gap: int = 0


@dataclass(frozen=True)
class Plan:
    offsets: dict[int, int]     # buffer id -> byte offset in the arena
    arena_size: int
    shares: tuple[Share, ...] = ()      # the in-place shares the plan uses
    strategy: str = ""                  # which placement order won


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _conflict(a: Buffer, b: Buffer) -> bool:
    return a.first <= b.last and b.first <= a.last


def legal_shares(buffers: list[Buffer], shares) -> tuple[Share, ...]:
    """The declared shares the planner may use (rule 2), in declaration order."""
    by_id = {b.id: b for b in buffers}
    used_in, used_out, out = set(), set(), []
    for s in shares:
        a, b = by_id.get(s.input), by_id.get(s.output)
        if a is None or b is None or a.id == b.id or s.gap < 0:
            continue
        if a.last != b.first or a.id in used_in or b.id in used_out:
            continue
        used_in.add(a.id)
        used_out.add(b.id)
        out.append(Share(s.input, s.output, _align(s.gap)))   # a bigger gap is as legal
    return tuple(out)


@dataclass
class _Block:
    members: list[tuple[Buffer, int]]       # (buffer, offset relative to the block)
    size: int
    first: int
    last: int
    key_id: int


def _blocks(buffers: list[Buffer], shares: tuple[Share, ...]) -> list[_Block]:
    by_id = {b.id: b for b in buffers}
    next_of = {s.input: s for s in shares}          # input id -> share into its output
    has_prev = {s.output for s in shares}
    blocks = []
    for head in sorted(buffers, key=lambda b: b.id):
        if head.id in has_prev:
            continue
        chain, rel, cur = [(head, 0)], 0, head.id
        while cur in next_of:
            s = next_of[cur]
            rel -= s.gap
            cur = s.output
            chain.append((by_id[cur], rel))
        low = min(r for _, r in chain)
        members = [(b, r - low) for b, r in chain]
        blocks.append(_Block(members, max(r + b.size for b, r in members),
                             min(b.first for b, _ in members), max(b.last for b, _ in members),
                             min(b.id for b, _ in members)))
    return blocks


# Placement orders tried, in order of preference (ties keep the earlier one).
STRATEGIES = {
    "size": lambda k: (-k.size, k.first, k.key_id),
    "first-use": lambda k: (k.first, -k.size, k.key_id),
    "lifetime": lambda k: (-(k.last - k.first), -k.size, k.key_id),
    "area": lambda k: (-k.size * (k.last - k.first + 1), k.first, k.key_id),
}


def _place(blocks: list[_Block], key) -> tuple[dict[int, int], int]:
    placed: list[tuple[_Block, int]] = []
    offsets: dict[int, int] = {}
    for blk in sorted(blocks, key=key):
        busy = sorted((off, off + other.size) for other, off in placed
                      if blk.first <= other.last and other.first <= blk.last)
        candidate = 0
        for start, end in busy:
            if candidate + blk.size <= start:
                break
            candidate = max(candidate, _align(end))
        placed.append((blk, candidate))
        for b, rel in blk.members:
            offsets[b.id] = candidate + rel
    arena = _align(max((off + blk.size for blk, off in placed), default=0))
    return offsets, arena


def plan_memory(buffers: list[Buffer], shares=()) -> Plan:
    """Place `buffers` in one arena; `shares` are the declared in-place pairs (rule 2)."""
    if not buffers:
        return Plan(offsets={}, arena_size=0)
    usable = legal_shares(buffers, shares)
    best: Plan | None = None
    for use in (((), usable) if usable else ((),)):
        blocks = _blocks(buffers, use)
        for name, key in STRATEGIES.items():
            offsets, arena = _place(blocks, key)
            if best is None or arena < best.arena_size:
                label = name + (" + in-place" if use else "")
                best = Plan(offsets=offsets, arena_size=arena, shares=use, strategy=label)
    check_plan(buffers, best)
    return best


def check_plan(buffers: list[Buffer], plan: Plan) -> None:
    """Raise AssertionError if two buffers that are live at the same time share a byte (other
    than a used in-place share at its handover op with offset(output) <= offset(input) - gap),
    or if a buffer lies outside the arena or is misaligned."""
    by_id = {b.id: b for b in buffers}
    for b in buffers:
        off = plan.offsets[b.id]
        if off < 0 or off % ALIGN or off + b.size > plan.arena_size:
            raise AssertionError(f"buffer {b.id} at {off}+{b.size} is outside the arena or misaligned")
    allowed = {}
    for s in plan.shares:
        a, b = by_id[s.input], by_id[s.output]
        if a.last != b.first:
            raise AssertionError(f"share {s}: buffer {a.id} does not die where {b.id} is born")
        allowed[frozenset((a.id, b.id))] = s
    for i, a in enumerate(buffers):
        for b in buffers[i + 1:]:
            if _conflict(a, b):
                oa, ob = plan.offsets[a.id], plan.offsets[b.id]
                if oa < ob + b.size and ob < oa + a.size:
                    s = allowed.get(frozenset((a.id, b.id)))
                    if s is not None and plan.offsets[s.output] <= plan.offsets[s.input] - s.gap:
                        continue
                    raise AssertionError(f"buffers {a.id} and {b.id} are live together and overlap")


def format_plan(buffers: list[Buffer], plan: Plan, names: dict[int, str] | None = None,
                n_ops: int | None = None) -> str:
    """A readable table: offset, size, lifetime and a chart with one column per op; buffers
    written in place over another are marked '@' at the handover op and named in the last column."""
    names = names or {}
    n_ops = n_ops if n_ops is not None else max((b.last for b in buffers), default=-1) + 1
    over = {s.output: s for s in plan.shares}
    head = f"arena {plan.arena_size} bytes, {len(buffers)} buffers, {n_ops} ops"
    if plan.shares:
        head += f", {len(plan.shares)} in place"
    lines = [head, f"{'offset':>8} {'size':>8}  {'ops':>7}  {'lifetime':<{max(n_ops, 8)}}  tensor"]
    for b in sorted(buffers, key=lambda b: (plan.offsets[b.id], b.first)):
        chart = "".join("@" if i == b.first and b.id in over else "#" if b.first <= i <= b.last else "."
                        for i in range(n_ops))
        note = ""
        if b.id in over:
            s = over[b.id]
            note = f"  (in place over {names.get(s.input, s.input)} at op {b.first}" + \
                   (f", {s.gap} bytes below)" if s.gap else ")")
        lines.append(f"{plan.offsets[b.id]:>8} {b.size:>8}  {b.first:>3}-{b.last:<3}  "
                     f"{chart:<{max(n_ops, 8)}}  {names.get(b.id, b.id)}{note}")
    return "\n".join(lines)
