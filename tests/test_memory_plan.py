"""The memory-saving rules of the planner and the lowering: in-place sharing (exact offsets, the
legality rule, the overlap check), placement strategies, operator order, scratch buffers, and the
printed plan. Whole models stay bit-exact in test_ops / test_mlperf_models."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from edgekit.emit.codegen import _layer
from edgekit.lower.base import InPlace, KernelCall, ScratchArg, TensorArg
from edgekit.plan import Buffer, Plan, Share, check_plan, format_plan, legal_shares, plan_memory
from edgekit.lower.program import Place, Program, Step, arena_buffers, choose_order


# ---- in place: the planner ------------------------------------------------------------------

def test_elementwise_chain_runs_in_place():
    # conv -> a (0-1) -> relu -> b (1-2) -> lut -> c (2-3) -> fc; relu and lut declare in place.
    bufs = [Buffer(0, 100, 0, 1), Buffer(1, 100, 1, 2), Buffer(2, 100, 2, 3)]
    assert plan_memory(bufs).arena_size == 200
    plan = plan_memory(bufs, [Share(0, 1), Share(1, 2)])
    assert plan.offsets == {0: 0, 1: 0, 2: 0}
    assert plan.arena_size == 100
    assert plan.shares == (Share(0, 1), Share(1, 2))


def test_share_is_ignored_when_the_input_lives_on():
    # b is written at op 1 but a is read again at op 2 (a residual add): no sharing.
    bufs = [Buffer(0, 100, 0, 2), Buffer(1, 100, 1, 2)]
    assert legal_shares(bufs, [Share(0, 1)]) == ()
    plan = plan_memory(bufs, [Share(0, 1)])
    assert plan.offsets == {0: 0, 1: 100} and plan.shares == ()


def test_only_one_input_shares_an_output():
    # ADD of two same-shape inputs that both die at the add: the first declared one is used.
    bufs = [Buffer(0, 64, 0, 2), Buffer(1, 64, 1, 2), Buffer(2, 64, 2, 3)]
    assert legal_shares(bufs, [Share(0, 2), Share(1, 2)]) == (Share(0, 2),)
    plan = plan_memory(bufs, [Share(0, 2), Share(1, 2)])
    assert plan.offsets == {0: 0, 2: 0, 1: 64} and plan.arena_size == 128


def test_share_with_a_gap_places_the_output_below_the_input():
    # A sliding-window kernel that needs its output 24 bytes below its input (gap rounded to 4).
    bufs = [Buffer(0, 100, 0, 1), Buffer(1, 100, 1, 2)]
    plan = plan_memory(bufs, [Share(0, 1, gap=22)])
    assert plan.shares == (Share(0, 1, gap=24),)
    assert plan.offsets == {1: 0, 0: 24}
    assert plan.arena_size == 124


def test_in_place_only_when_it_saves_memory():
    # A share that saves nothing (the peak is elsewhere) leaves the plain plan in place.
    bufs = [Buffer(0, 8, 0, 1), Buffer(1, 8, 1, 2), Buffer(2, 400, 2, 3), Buffer(3, 400, 3, 4)]
    plan = plan_memory(bufs, [Share(0, 1)])
    assert plan.shares == () and plan.strategy == "size" and plan.arena_size == 800


def test_check_plan_allows_only_used_shares_at_their_handover():
    bufs = [Buffer(0, 100, 0, 1), Buffer(1, 100, 1, 2)]
    check_plan(bufs, Plan({0: 0, 1: 0}, 100, shares=(Share(0, 1),)))
    with pytest.raises(AssertionError, match="overlap"):       # not declared
        check_plan(bufs, Plan({0: 0, 1: 0}, 100))
    with pytest.raises(AssertionError, match="overlap"):       # output above its input
        check_plan(bufs, Plan({0: 0, 1: 4}, 104, shares=(Share(0, 1),)))
    with pytest.raises(AssertionError, match="overlap"):       # gap not respected
        check_plan(bufs, Plan({0: 8, 1: 0}, 108, shares=(Share(0, 1, gap=12),)))
    check_plan(bufs, Plan({0: 12, 1: 0}, 112, shares=(Share(0, 1, gap=12),)))
    late = [Buffer(0, 100, 0, 2), Buffer(1, 100, 1, 2)]
    with pytest.raises(AssertionError, match="does not die"):
        check_plan(late, Plan({0: 0, 1: 0}, 100, shares=(Share(0, 1),)))


def test_format_plan_marks_in_place_buffers():
    bufs = [Buffer(0, 100, 0, 1), Buffer(1, 100, 1, 2)]
    text = format_plan(bufs, plan_memory(bufs, [Share(0, 1)]), {0: "conv_out", 1: "relu_out"}, n_ops=3)
    assert "arena 100 bytes, 2 buffers, 3 ops, 1 in place" in text
    assert "       0      100    0-1    ##." in text
    assert "       0      100    1-2    .@#       relu_out  (in place over conv_out at op 1)" in text


# ---- placement strategies ---------------------------------------------------------------------

def test_first_use_order_beats_largest_first_when_it_packs_tighter():
    # Largest first: 80 at 0, 60 at 0, the 40 living 1-3 at 80, the 40 living 3-4 at 120: 160.
    # By first use: the 40 living 1-3 at 0, then 80 and 60 above it, the other 40 at 100: 140.
    bufs = [Buffer(0, 80, 2, 2), Buffer(1, 60, 3, 5), Buffer(2, 40, 3, 4), Buffer(3, 40, 1, 3)]
    plan = plan_memory(bufs)
    assert plan.strategy == "first-use" and plan.arena_size == 140
    assert plan.offsets == {3: 0, 0: 40, 1: 40, 2: 100}


# ---- operator order ---------------------------------------------------------------------------

def _fake(sizes: dict[int, int], calls: list[tuple[tuple[int, ...], int]], inplace=None):
    graph = SimpleNamespace(t=lambda i: SimpleNamespace(nbytes=sizes[i], is_const=False))
    steps = []
    for i, (reads, write) in enumerate(calls):
        call = KernelCall(kernel="ek_copy_s8", params={},   # any registered kernel
                          args=[TensorArg(r) for r in reads] + [TensorArg(write)],
                          inplace=(inplace or {}).get(i, ()))
        steps.append(Step(op=None, call=call, source=i))
    return graph, steps


def test_branches_are_reordered_to_lower_the_peak():
    # in -> A; two branches A -> big B1 -> small C1 and A -> big B2 -> small C2; add -> out.
    # TFLite's order runs both big convs before the small ones (B1 and B2 live together).
    sizes = {0: 16, 1: 100, 2: 1000, 3: 1000, 4: 12, 5: 12, 6: 12}
    calls = [((0,), 1), ((1,), 2), ((1,), 3), ((2,), 4), ((3,), 5), ((4, 5), 6)]
    graph, steps = _fake(sizes, calls)
    fixed = {0, 6}
    tflite_plan = plan_memory(*arena_buffers(graph, steps, lambda t: t, fixed)[:2])
    assert tflite_plan.arena_size == 2100
    order = choose_order(graph, steps, lambda t: t, fixed)
    assert [s.source for s in order] == [0, 1, 3, 2, 4, 5]
    buffers, shares, _ = arena_buffers(graph, order, lambda t: t, fixed)
    plan = plan_memory(buffers, shares)
    assert plan.arena_size == 1112
    assert plan.offsets == {2: 0, 3: 0, 1: 1000, 4: 1100, 5: 1000}


def test_order_of_a_chain_and_of_no_gain_is_tflites():
    sizes = {0: 16, 1: 100, 2: 100, 3: 16}
    graph, steps = _fake(sizes, [((0,), 1), ((1,), 2), ((2,), 3)])
    assert choose_order(graph, steps, lambda t: t, {0, 3}) == steps
    # A residual block: every order has the same peak, so TFLite's stays.
    sizes = {0: 16, 1: 64, 2: 64, 3: 64, 4: 16}
    graph, steps = _fake(sizes, [((0,), 1), ((1,), 2), ((2,), 3), ((1, 3), 4)])
    assert choose_order(graph, steps, lambda t: t, {0, 4}) == steps


def test_lowering_declarations_become_shares():
    # relu (call 1) declares InPlace(0); the add (call 2) declares its two inputs.
    sizes = {0: 16, 1: 64, 2: 64, 3: 64, 4: 16}
    graph, steps = _fake(sizes, [((0,), 1), ((1,), 2), ((1, 2), 3), ((3,), 4)],
                         inplace={1: (InPlace(0),), 2: (0, 1)})
    buffers, shares, _ = arena_buffers(graph, steps, lambda t: t, {0, 4})
    assert shares == [Share(1, 2), Share(1, 3), Share(2, 3)]
    plan = plan_memory(buffers, shares)
    # 1 is read again by the add, so the relu may not write over it; both add inputs die at
    # the add and the first declared one (1) takes the output.
    assert plan.shares == (Share(1, 3),)
    assert plan.offsets == {1: 0, 3: 0, 2: 64} and plan.arena_size == 128


def test_inplace_declaration_must_name_an_input():
    call = KernelCall(kernel="k", params={},
                      args=[TensorArg(1), TensorArg(2)], inplace=(1,))
    with pytest.raises(ValueError, match="does not name an input"):
        call.inplace_inputs()


# ---- scratch buffers --------------------------------------------------------------------------

def test_scratch_buffer_lives_during_its_call_and_renders_as_arena_pointer():
    sizes = {0: 16, 1: 100, 2: 100, 3: 16}
    graph, steps = _fake(sizes, [((0,), 1), ((1,), 2), ((2,), 3)])
    steps[1].call.scratch_bytes = 36
    steps[1].call.args.insert(2, ScratchArg())
    buffers, shares, _ = arena_buffers(graph, steps, lambda t: t, {0, 3})
    assert Buffer(-2, 36, 1, 1) in buffers
    plan = plan_memory(buffers, shares)
    assert plan.offsets == {1: 0, 2: 100, -2: 200} and plan.arena_size == 236
    places = {1: Place("arena", 0), 2: Place("arena", 100), 0: Place("input"), 3: Place("output"),
              -2: Place("arena", 200)}
    graph.t = lambda i: SimpleNamespace(nbytes=sizes[i], is_const=False, shape=(1, sizes[i]), name=f"t{i}")
    for s in steps:
        s.op = SimpleNamespace(kind="OP", name="op", inputs=[0], outputs=[1])
    program = Program(graph=graph, steps=steps, places=places, plan=plan, buffers=buffers)
    assert _layer(program, 1).args == ["arena + 0", "arena + 100", "arena + 200"]


def test_scratch_of_an_in_place_call_overlaps_neither_its_input_nor_its_output():
    # ek_conv2d_s8_1x1_dsp in place (InPlace(0, 0)) with its 4-pixel buffer in scratch: the input
    # dies and the output is born at the call, the scratch lives only there, so the output may
    # share the input's bytes but the scratch conflicts with both and goes beside them.
    sizes = {0: 16, 1: 100, 2: 100, 3: 16}
    graph, steps = _fake(sizes, [((0,), 1), ((1,), 2), ((2,), 3)], inplace={1: (InPlace(0, 0),)})
    steps[1].call.scratch_bytes = 36
    steps[1].call.args.append(ScratchArg())
    buffers, shares, _ = arena_buffers(graph, steps, lambda t: t, {0, 3})
    assert Buffer(1, 100, 0, 1) in buffers and Buffer(2, 100, 1, 2) in buffers and Buffer(-2, 36, 1, 1) in buffers
    plan = plan_memory(buffers, shares)
    check_plan(buffers, plan)
    assert plan.shares == (Share(1, 2),)
    assert plan.offsets == {1: 0, 2: 0, -2: 100} and plan.arena_size == 136
