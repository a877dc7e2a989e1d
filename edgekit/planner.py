"""Static memory planner: places every intermediate tensor in one arena by lifetime.

The plan is a pure, deterministic function of (buffer sizes, lifetimes):

  1. Each buffer lives from the op that writes it to the last op that reads it (inclusive).
     Two buffers conflict when these intervals intersect: an op's inputs and outputs are live
     at the same time, so no op ever writes over a tensor it is still reading.
  2. Buffers are placed greedily, largest first (ties: earlier first use, then lower id).
  3. A buffer goes to the lowest offset (rounded up to ALIGN) where it overlaps no already
     placed buffer that it conflicts with in time: the gaps between conflicting buffers,
     sorted by offset, are scanned first-fit.
  4. The arena size is the highest end offset, rounded up to ALIGN.

check_plan() independently verifies that no two conflicting buffers share a byte, and
format_plan() prints the plan as a table with an ASCII lifetime chart.
"""
from __future__ import annotations

from dataclasses import dataclass

ALIGN = 4


@dataclass(frozen=True)
class Buffer:
    id: int
    size: int       # bytes
    first: int      # index of the op that writes it
    last: int       # index of the last op that reads it (>= first)


@dataclass(frozen=True)
class Plan:
    offsets: dict[int, int]     # buffer id -> byte offset in the arena
    arena_size: int


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _conflict(a: Buffer, b: Buffer) -> bool:
    return a.first <= b.last and b.first <= a.last


def plan_memory(buffers: list[Buffer]) -> Plan:
    order = sorted(buffers, key=lambda b: (-b.size, b.first, b.id))
    placed: list[tuple[Buffer, int]] = []
    offsets: dict[int, int] = {}
    for buf in order:
        busy = sorted((off, off + other.size) for other, off in placed if _conflict(buf, other))
        candidate = 0
        for start, end in busy:
            if candidate + buf.size <= start:
                break
            candidate = max(candidate, _align(end))
        offsets[buf.id] = candidate
        placed.append((buf, candidate))
    arena = _align(max((offsets[b.id] + b.size for b in buffers), default=0))
    plan = Plan(offsets=offsets, arena_size=arena)
    check_plan(buffers, plan)
    return plan


def check_plan(buffers: list[Buffer], plan: Plan) -> None:
    """Raise AssertionError if two buffers that are live at the same time share a byte,
    or if a buffer lies outside the arena or is misaligned."""
    for b in buffers:
        off = plan.offsets[b.id]
        if off < 0 or off % ALIGN or off + b.size > plan.arena_size:
            raise AssertionError(f"buffer {b.id} at {off}+{b.size} is outside the arena or misaligned")
    for i, a in enumerate(buffers):
        for b in buffers[i + 1:]:
            if _conflict(a, b):
                oa, ob = plan.offsets[a.id], plan.offsets[b.id]
                if oa < ob + b.size and ob < oa + a.size:
                    raise AssertionError(f"buffers {a.id} and {b.id} are live together and overlap")


def format_plan(buffers: list[Buffer], plan: Plan, names: dict[int, str] | None = None,
                n_ops: int | None = None) -> str:
    """A readable table: offset, size, lifetime and a chart with one column per op."""
    names = names or {}
    n_ops = n_ops if n_ops is not None else max((b.last for b in buffers), default=-1) + 1
    lines = [f"arena {plan.arena_size} bytes, {len(buffers)} buffers, {n_ops} ops",
             f"{'offset':>8} {'size':>8}  {'ops':>7}  {'lifetime':<{max(n_ops, 8)}}  tensor"]
    for b in sorted(buffers, key=lambda b: (plan.offsets[b.id], b.first)):
        chart = "".join("#" if b.first <= i <= b.last else "." for i in range(n_ops))
        lines.append(f"{plan.offsets[b.id]:>8} {b.size:>8}  {b.first:>3}-{b.last:<3}  "
                     f"{chart:<{max(n_ops, 8)}}  {names.get(b.id, b.id)}")
    return "\n".join(lines)
