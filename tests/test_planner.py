"""The memory planner is a pure function: exact offsets for known lifetimes, the overlap check,
and the plan printout."""
from __future__ import annotations

import pytest

from edgekit.plan import ALIGN, Buffer, Plan, check_plan, format_plan, plan_memory


def test_chain_reuses_memory_alternately():
    # a -> b -> c -> d: each op reads one buffer and writes the next.
    bufs = [Buffer(0, 100, 0, 1), Buffer(1, 100, 1, 2), Buffer(2, 100, 2, 3), Buffer(3, 100, 3, 4)]
    plan = plan_memory(bufs)
    assert plan.offsets == {0: 0, 1: 100, 2: 0, 3: 100}
    assert plan.arena_size == 200


def test_largest_first_and_gap_filling():
    # big lives 0-2, small1 0-0 and small2 2-2 conflict with big but not with each other.
    bufs = [Buffer(0, 40, 0, 0), Buffer(1, 400, 0, 2), Buffer(2, 40, 2, 2), Buffer(3, 30, 1, 1)]
    plan = plan_memory(bufs)
    assert plan.offsets[1] == 0                  # largest first, at the bottom
    assert plan.offsets[0] == 400 and plan.offsets[2] == 400 and plan.offsets[3] == 400
    assert plan.arena_size == 440


def test_alignment_of_offsets_and_size():
    bufs = [Buffer(0, 5, 0, 1), Buffer(1, 3, 1, 2), Buffer(2, 7, 0, 2)]
    plan = plan_memory(bufs)
    assert plan.offsets == {2: 0, 0: 8, 1: 16}
    assert all(off % ALIGN == 0 for off in plan.offsets.values())
    assert plan.arena_size == 20


def test_residual_branch_keeps_skip_tensor_alive():
    # x (0-3) feeds conv1 (op 1) and the add (op 3); conv1 -> y (1-2) -> conv2 -> z (2-3).
    bufs = [Buffer(0, 64, 0, 3), Buffer(1, 64, 1, 2), Buffer(2, 64, 2, 3)]
    plan = plan_memory(bufs)
    assert sorted(plan.offsets.values()) == [0, 64, 128]
    assert plan.arena_size == 192


def test_empty_and_deterministic():
    assert plan_memory([]) == Plan(offsets={}, arena_size=0)
    bufs = [Buffer(i, 16 * (i % 3 + 1), i // 2, i // 2 + 2) for i in range(12)]
    assert plan_memory(bufs) == plan_memory(list(reversed(bufs)))


def test_check_plan_rejects_overlap_and_misalignment():
    bufs = [Buffer(0, 100, 0, 1), Buffer(1, 100, 1, 2)]
    with pytest.raises(AssertionError, match="overlap"):
        check_plan(bufs, Plan(offsets={0: 0, 1: 52}, arena_size=200))
    with pytest.raises(AssertionError, match="misaligned"):
        check_plan(bufs, Plan(offsets={0: 0, 1: 102}, arena_size=300))
    with pytest.raises(AssertionError, match="outside"):
        check_plan(bufs, Plan(offsets={0: 0, 1: 100}, arena_size=150))
    check_plan(bufs, Plan(offsets={0: 0, 1: 100}, arena_size=200))


def test_format_plan_shows_offsets_and_lifetimes():
    bufs = [Buffer(0, 100, 0, 1), Buffer(1, 100, 1, 2)]
    text = format_plan(bufs, plan_memory(bufs), {0: "conv_out", 1: "dw_out"}, n_ops=3)
    assert "arena 200 bytes, 2 buffers, 3 ops" in text
    assert "       0      100    0-1    ##." in text and "conv_out" in text
    assert "     100      100    1-2    .##" in text and "dw_out" in text
