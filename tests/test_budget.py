"""Budget levels of a model with early exits, end to end: `edgekit exits` -> `edgekit export
--budgets` (calibrated on validation data) -> the C's ek_model_invoke_budget, on the host and on the
emulated Cortex-M4, against edgekit's integer reference's decision (edgekit.budget)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_user_error, call

keras = pytest.importorskip("keras")

from edgekit.api import load                                         # noqa: E402
from edgekit.budget import ALWAYS, NEVER, BudgetSpec, reference_budget  # noqa: E402
from edgekit.errors import EdgekitError                              # noqa: E402
from edgekit.export import export                                    # noqa: E402
from edgekit.run.intref import IntReference                          # noqa: E402
from edgekit.targets import get_target                               # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LOSSES = [float("inf"), 8.0, 0.0]       # a middle level that must exit early to be cheaper


@pytest.fixture(scope="module")
def fashion(tmp_path_factory) -> Path:
    """2,000 training and 400 validation images of Fashion-MNIST (Debian's dataset-fashion-mnist)."""
    sys.path.insert(0, str(EXAMPLES))
    from fashion_mnist import load_fashion_mnist, to_model_input
    (xtr, ytr), (xte, yte) = load_fashion_mnist()
    d = tmp_path_factory.mktemp("fashion")
    np.savez(d / "train.npz", x=to_model_input(xtr[:2000]), y=ytr[:2000].astype(np.int64))
    np.savez(d / "val.npz", x=to_model_input(xte[:400]), y=yte[:400].astype(np.int64))
    return d


@pytest.fixture(scope="module")
def multi(fashion, tmp_path_factory) -> Path:
    """The bundled DS-CNN with two exits (heads trained briefly, backbone frozen)."""
    from edgekit.cli import main
    path = tmp_path_factory.mktemp("exits") / "multi.keras"
    rc = main(["exits", str(EXAMPLES / "fashion_dscnn.h5"), "--data", str(fashion / "train.npz"), "--at", "0.25,0.5",
               "--freeze-backbone", "--epochs", "4", "-o", str(path)])
    assert rc == 0
    return path


@pytest.fixture(scope="module")
def exported(multi, fashion, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("budget") / "out"
    export(multi, out, get_target("cortex-m4"), calib=EXAMPLES / "fashion_calib.npy",
           budgets=BudgetSpec(3, str(fashion / "val.npz"), losses=LOSSES, battery_mv=[3800, 3500]))
    return out


def test_levels_are_calibrated_printed_and_compiled_in(exported):
    report = json.loads((exported / "report.json").read_text())
    b = report["budget"]
    assert [e["output"] for e in b["exits"]] == [0, 1, 2]          # Keras order: exit 1, exit 2, final
    macs = [e["macs"] for e in b["exits"]]
    assert macs[0] < macs[1] < macs[2] == b["full_macs"]
    levels = b["levels"]
    assert levels[0]["thresholds"] == [ALWAYS, NEVER, NEVER]
    assert levels[-1]["accuracy"] >= b["full_accuracy"]               # the top level loses nothing
    assert levels[1]["accuracy"] >= b["full_accuracy"] - 0.08
    cost = [lv["mean_macs"] for lv in levels]
    assert cost == sorted(cost) and cost[0] < cost[1] < b["full_macs"]
    assert sum(levels[1]["exits"][:2]) > 0                            # level 1 exits early on some inputs
    h = (exported / "model.h").read_text()
    table = ", ".join("{ " + ", ".join("EK_EXIT_NEVER" if t == NEVER else "EK_EXIT_ALWAYS" if t == ALWAYS
                                       else str(t) for t in lv["thresholds"]) + " }" for lv in levels)
    assert f"#define EK_MODEL_BUDGET_THRESHOLDS {{ {table} }}" in h
    assert "#define EK_MODEL_NUM_BUDGETS       3" in h and "#define EK_MODEL_BATTERY_MV        { 3800, 3500 }" in h
    assert re.search(r"int ek_model_invoke_budget\(const int8_t \*input, int8_t \*output, int32_t budget, "
                     r"int32_t \*exit_taken\);", h)


def test_c_takes_the_references_exit_at_every_level(exported, fashion):
    """Hundreds of inputs, every level: the host build's exit and scores are the reference's."""
    m = load(exported)
    x = m.quantize(np.load(fashion / "val.npz")["x"])
    outputs = IntReference.from_export(exported).run_outputs(x)
    seen = set()
    for level in range(3):
        exit_c, scores_c = m.predict_budget(x, level)
        exit_r, scores_r = reference_budget(m.report["budget"], outputs, level)
        np.testing.assert_array_equal(exit_c, exit_r, err_msg=f"level {level}")
        np.testing.assert_array_equal(scores_c, scores_r, err_msg=f"level {level}")
        seen.update(exit_c.tolist())
    assert seen == {0, 1, 2} or seen >= {0, 2}


def _traced_layers(out: Path, x: np.ndarray, level: int) -> set[int]:
    from edgekit.build import run_make
    run_make(out, "host", variables={"TRACE": "1"})
    binary = out / "build" / "host-trace" / "model_host"
    trace = out / f"trace{level}.txt"
    subprocess.run([str(binary)], input=x.tobytes(), capture_output=True, check=True,
                   env=dict(os.environ, EK_BUDGET=str(level), EK_TRACE_FILE=str(trace)))
    return {int(line.split()[1]) for line in trace.read_text().splitlines()}


def test_a_budget_that_allows_only_the_first_exit_never_runs_a_later_layer(exported, fashion):
    report = json.loads((exported / "report.json").read_text())
    first = report["budget"]["exits"][0]
    allowed = set(range(first["backbone_layers"][0], first["head_layers"][1] + 1))
    x = load(exported).quantize(np.load(fashion / "val.npz")["x"][:50])
    ran = _traced_layers(exported, x, 0)
    assert ran == allowed, (sorted(ran), sorted(allowed))
    assert _traced_layers(exported, x, 2) >= set(range(report["budget"]["exits"][2]["head_layers"][1] + 1)) - {
        i for e in report["budget"]["exits"][:2] for i in range(e["head_layers"][0], e["head_layers"][1] + 1)}


def test_battery_reading_picks_the_level(exported, tmp_path):
    harness = tmp_path / "battery.c"
    harness.write_text('#include <stdio.h>\n#include "model.h"\nint main(void) {\n'
                       '    const int mv[] = {4200, 3800, 3799, 3500, 3499, 3000};\n'
                       '    for (int i = 0; i < 6; ++i) printf("%d ", (int)ek_budget_for_battery_mv(mv[i]));\n'
                       '    return 0;\n}\n')
    kernels = sorted(str(p) for p in (exported / "kernels").glob("*.c"))
    exe = tmp_path / "battery"
    subprocess.run(["cc", "-std=c99", "-Wall", "-Werror", f"-I{exported}", f"-I{exported / 'kernels'}",
                    str(harness), str(exported / "model.c"), *kernels, "-o", str(exe)], check=True)
    assert subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split() == \
        ["2", "2", "1", "1", "0", "0"]


def test_a_level_out_of_range_on_the_host_is_one_line(exported, fashion):
    m = load(exported)
    with pytest.raises(EdgekitError, match="budget level 3 is out of range: the model has levels 0 to 2"):
        m.predict_budget(np.load(fashion / "val.npz")["x"][:2], 3)


def test_budget_refusals_write_nothing(capsys, tmp_path, multi, fashion):
    out = tmp_path / "out"
    base = ["export", multi, "--calib", EXAMPLES / "fashion_calib.npy", "-o", out]
    for extra, words in [(["--budgets", "3"], ["--val"]),
                         (["--val", fashion / "val.npz"], ["--budgets"]),
                         (["--budgets", "3", "--val", fashion / "val.npz", "--budget-loss", "1,0"], ["3 levels"]),
                         (["--budgets", "3", "--val", fashion / "val.npz", "--battery-mv", "3000,3500"], ["falling"]),
                         (["--budgets", "3", "--val", fashion / "train.npz.missing"], ["does not exist"])]:
        assert_user_error(*call(capsys, *base, *extra)[::2], *words)
        assert not out.exists()
    single = ["export", EXAMPLES / "fashion_dscnn.h5", "--calib", EXAMPLES / "fashion_calib.npy", "-o", out,
              "--budgets", "3", "--val", fashion / "val.npz"]
    assert_user_error(*call(capsys, *single)[::2], "early exits", "one output", "edgekit exits")
    assert not out.exists()


def test_bench_budget_refusals(capsys, exported, tmp_path):
    assert_user_error(*call(capsys, "bench", exported, "--emulate", "--budget", "5")[::2], "levels 0 to 2")
    assert_user_error(*call(capsys, "bench", exported, "--emulate", "--budget", "low")[::2], "'all'")
    assert_user_error(*call(capsys, "bench", exported, "--emulate", "--labels", "y.npy")[::2], "--inputs")


@pytest.mark.emulator
def test_every_level_on_the_m4_matches_and_costs_less_at_lower_levels(qemu, exported, fashion, tmp_path):
    from edgekit.measure.bench import BenchConfig, bench
    val = np.load(fashion / "val.npz")
    np.save(tmp_path / "x.npy", val["x"][:40])
    np.save(tmp_path / "y.npy", val["y"][:40])
    r = bench(exported, BenchConfig(runs=1, warmup=0, inputs=str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy"),
                                    budget="all"), emulate=True, progress=False)
    assert r.matched == 40                                   # ek_model_invoke: every head bit-exact
    rows = r.level_summary()
    assert [row["matched"] for row in rows] == [40, 40, 40]   # exits and scores = the reference's
    means = [row["mean"] for row in rows]
    assert means[0] < means[1] <= means[2] < r.latency()["mean"], means
    assert rows[0]["exits"] == [1.0, 0.0, 0.0]


@pytest.mark.emulator
def test_a_level_out_of_range_on_the_device_is_an_error_frame_and_the_link_goes_on(qemu, exported):
    from edgekit.build import firmware_elf
    from edgekit.run.emulate import Emulator
    from edgekit.run.link import DeviceError, ErrorCode
    elf = firmware_elf(exported)
    with Emulator(elf, "mps2-an386", icount=True, link_timeout=10.0) as emu:
        link = emu.link
        link.wait_banner()
        info = link.info()
        assert (info.budget_levels, info.exits, info.classes) == (3, 3, 10)
        link.set_input(bytes(info.input_size))
        with pytest.raises(DeviceError) as e:
            link.run(1, 0, budget=3)
        assert e.value.code == ErrorCode.OUT_OF_RANGE
        assert link.run(1, 0, budget=0) == 1 and link.exit_taken == 0
        link.exit()


def test_each_exit_has_a_tflite_signature_that_runs_only_up_to_it(exported):
    """For phones: model.tflite's exit<k> signatures (LiteRT) equal the full model's head k, and
    each holds only the operators its exit needs."""
    from ai_edge_litert import schema_py_generated as schema

    from edgekit.run.verify import verify
    result = verify(exported, count=12, seed=3)
    assert result.ok and [(key, k, n) for key, k, n in result.signatures] == [("exit0", 0, 12), ("exit1", 1, 12)]
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs((exported / "model.tflite").read_bytes(), 0))
    b = json.loads((exported / "report.json").read_text())["budget"]
    ops = [len(sg.operators) for sg in model.subgraphs]
    assert ops[1] == b["exits"][0]["head_layers"][1] + 1 < ops[2] < ops[0], ops


def test_eval_scores_every_level_as_the_calibration_did(exported, fashion):
    """`edgekit eval` on the calibration data reproduces the export's level table exactly."""
    from edgekit.run.evaluate import evaluate
    r = evaluate(exported, fashion / "val.npz", fashion / "val.npz")
    budget = json.loads((exported / "report.json").read_text())["budget"]
    assert [(lv["accuracy"], lv["exits"], lv["mean_macs"]) for lv in r.levels] == \
        [(lv["accuracy"], lv["exits"], lv["mean_macs"]) for lv in budget["levels"]]
    assert "budget level 2: accuracy" in r.describe()


@pytest.mark.emulator
def test_levels_chosen_on_measured_instructions_predict_the_m4(qemu, multi, fashion, tmp_path):
    """--budget-costs emulate: each layer's instructions measured once in QEMU; the levels' cost
    model then predicts what bench measures on other inputs within 1 %."""
    from edgekit.budget import exit_costs
    from edgekit.cli import main
    from edgekit.measure.bench import BenchConfig, bench
    out = tmp_path / "out"
    assert main(["export", str(multi), "--calib", str(EXAMPLES / "fashion_calib.npy"), "--budgets", "3",
                 "--val", str(fashion / "val.npz"), "--budget-loss", "inf,8,0", "--budget-costs", "emulate",
                 "-o", str(out)]) == 0
    b = json.loads((out / "report.json").read_text())["budget"]
    assert b["cost"] == "instructions" and all(lv["mean_instructions"] > 0 for lv in b["levels"])
    assert "instructions" in (out / "model.h").read_text()
    x = np.load(fashion / "train.npz")["x"][:30]
    np.save(tmp_path / "x.npy", x)
    r = bench(out, BenchConfig(runs=1, warmup=0, inputs=str(tmp_path / "x.npy"), budget="all"), emulate=True,
              progress=False)
    outputs = IntReference.from_export(out).run_outputs(load(out).quantize(x))
    backbone = [e["backbone_instructions"] for e in b["exits"]]
    head = [e["head_instructions"] for e in b["exits"]]
    for row, lv in zip(r.level_summary(), b["levels"]):
        taken, _ = reference_budget(b, outputs, lv["level"])
        predicted = exit_costs(backbone, head, lv["thresholds"])[taken].mean()
        assert row["matched"] == 30 and abs(row["mean"] - predicted) < 0.01 * predicted, (row, predicted)
