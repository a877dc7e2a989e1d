"""Early-exit heads on the Keras side (edgekit.train.exits, `edgekit exits`): where an exit can go,
what it costs, how it trains, and that the multi-exit model exports with every head bit-exact -
properties checked in seconds on small models and data."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_user_error, call
from conftest import assert_bit_exact
from train_helpers import fashion_split, toy_model

keras = pytest.importorskip("keras")

import edgekit.train as ekt                                          # noqa: E402
from edgekit.errors import EdgekitError                              # noqa: E402
from edgekit.train import exits                                      # noqa: E402
from edgekit.train.data import Data                                  # noqa: E402
from edgekit.train.graph import layer_macs                           # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def channel_data(n: int = 256, seed: int = 0) -> Data:
    """Inputs whose class (of 4; 3 used) is the brightest colour channel: learnable after global
    average pooling, so by an exit head at any depth."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.5, size=(n, 12, 12, 3)).astype(np.float32)
    y = rng.integers(0, 3, n)
    x[np.arange(n), :, :, y] += 0.5
    return Data(x, y.astype(np.int64), 4)


def test_exits_go_only_where_one_tensor_carries_everything():
    cuts = {c.layer: c for c in exits.cuts(toy_model())}
    # inside the residual block the stem's output skips ahead: no cut there
    assert not {"dw", "dw_bn", "dw_relu", "pw", "pw_bn"} & set(cuts)
    assert {"stem_relu", "residual_relu", "pool", "conv2"} <= set(cuts)
    assert cuts["stem_relu"].block_end and not cuts["stem"].block_end and not cuts["stem_bn"].block_end
    assert "gap" not in cuts and "logits" not in cuts          # not feature maps
    assert cuts["pool"].macs == cuts["residual_relu"].macs and 0 < cuts["stem_relu"].fraction < 1


def test_attach_by_name_and_by_fraction():
    model = toy_model()
    multi = exits.attach_exits(model, after=["pool", "stem_relu"])
    assert len(multi.outputs) == 3 and exits.exit_points(multi) == ["stem_relu", "pool", "softmax"]
    assert all(multi.get_layer(layer.name) is layer for layer in model.layers)    # the backbone is shared
    x = channel_data(8).x
    assert np.allclose(np.asarray(multi(x)[-1]), np.asarray(model(x)))
    full = sum(layer_macs(layer) for layer in model.layers)
    macs = exits.exit_macs(multi)
    cut = {c.layer: c.macs for c in exits.cuts(model)}
    assert macs[-1] == full
    assert macs[0] == cut["stem_relu"] + 8 * 4 and macs[1] == cut["pool"] + 8 * 4       # GAP + Dense(4)
    dw = exits.attach_exits(toy_model(), after=["pool"], head="dw")
    assert exits.exit_macs(dw)[0] == cut["pool"] + 9 * 6 * 6 * 8 + 8 * 4
    by_fraction = exits.attach_exits(toy_model(), at=[0.3])
    assert exits.exit_points(by_fraction)[0] == "stem_relu"


@pytest.mark.parametrize("kwargs, words", [
    (dict(after=["nosuch"]), ["no layer 'nosuch'"]),
    (dict(after=["dw_relu"]), ["cannot go after 'dw_relu'", "stem_relu"]),      # inside the residual block
    (dict(after=["softmax"]), ["cannot go after 'softmax'"]),                    # after the last layer
    (dict(after=["logits"]), ["cannot go after 'logits'"]),
    (dict(after=["pool", "pool"]), ["same place"]),
    (dict(at=[1.5]), ["between 0 and 1"]),
    (dict(), ["say where"]),
    (dict(after=["pool"], head="big"), ["--head big"]),
])
def test_bad_exit_requests_are_one_clear_sentence(kwargs, words):
    with pytest.raises(EdgekitError) as e:
        exits.attach_exits(toy_model(), **kwargs)
    for w in words:
        assert w in str(e.value), str(e.value)


def test_joint_training_teaches_every_exit():
    model = toy_model(seed=1)
    multi = exits.attach_exits(model, after=["stem_relu", "pool"])
    train, val = channel_data(384, seed=1), channel_data(128, seed=2)
    before = exits.exit_report(multi, val)
    exits.train_exits(multi, train, val, epochs=6, learning_rate=1e-2, batch_size=32, verbose=0)
    after = exits.exit_report(multi, val)
    for b, a in zip(before, after):
        assert a["accuracy"] >= 0.8 and a["accuracy"] > b["accuracy"] + 0.2, (b, a)


def test_frozen_backbone_trains_only_the_heads():
    model = toy_model(seed=2)
    multi = exits.attach_exits(model, after=["pool"])
    backbone = {v.path: np.asarray(v.numpy()).copy() for layer in model.layers for v in layer.weights}
    head = {v.path: np.asarray(v.numpy()).copy() for v in multi.get_layer("exit1_logits").weights}
    exits.train_exits(multi, channel_data(128), None, epochs=1, learning_rate=1e-2, batch_size=32,
                      freeze_backbone=True, verbose=0)
    for layer in model.layers:
        assert layer.trainable or not layer.weights            # thawed again after training
        for v in layer.weights:
            assert np.array_equal(np.asarray(v.numpy()), backbone[v.path]), v.path   # BN statistics included
    assert any(not np.array_equal(np.asarray(v.numpy()), head[v.path]) for v in multi.get_layer("exit1_logits").weights)


def test_self_distillation_targets_are_the_final_exits_softened_predictions():
    model = toy_model(seed=3)
    multi = exits.attach_exits(model, after=["pool"])
    x = channel_data(16).x
    soft = exits._softened_final(multi, x, temperature=4.0)
    final = np.asarray(model(x))
    assert np.allclose(soft.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(np.argmax(soft, 1), np.argmax(final, 1))
    assert soft.max() < final.max() + 1e-6                   # softer than the final output itself
    logits = np.log(final)
    expect = np.exp(logits / 4 - (logits / 4).max(1, keepdims=True))
    assert np.allclose(soft, expect / expect.sum(1, keepdims=True), atol=1e-5)
    with pytest.raises(EdgekitError, match="--distill"):
        exits.train_exits(multi, channel_data(32), None, epochs=1, distill=1.5, verbose=0)
    with pytest.raises(EdgekitError, match="--loss-weights"):
        exits.train_exits(multi, channel_data(32), None, epochs=1, weights=[1, 1, 1], verbose=0)


@pytest.fixture(scope="module")
def fashion_data(tmp_path_factory) -> Path:
    return fashion_split(tmp_path_factory.mktemp("fashion"))


def test_exits_command_then_export_is_bit_exact_on_every_head(capsys, tmp_path, fashion_data, qemu):
    from edgekit.export import export
    from edgekit.run.verify import verify
    from edgekit.targets import get_target
    out = tmp_path / "multi.keras"
    rc, stdout, err = call(capsys, "exits", EXAMPLES / "fashion_dscnn.h5", "--data", fashion_data / "train.npz",
                           "--val", fashion_data / "val.npz", "--at", "0.25,0.5", "--epochs", "1",
                           "--batch-size", "32", "-o", out)
    assert rc == 0, err
    rows = json.loads(out.with_suffix(".json").read_text())
    assert [r["exit"] for r in rows] == [1, 2, "final"] and rows[0]["macs"] < rows[1]["macs"] < rows[2]["macs"]
    assert "| final | softmax |" in stdout
    export(out, tmp_path / "out", get_target("cortex-m4"), calib=EXAMPLES / "fashion_calib.npy")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(report["outputs"]) == 3
    for emulate in (False, True):
        result = verify(tmp_path / "out", count=4, seed=1, emulate=emulate)
        assert_bit_exact(result.outputs, result.reference, f"multi-exit {'M4' if emulate else 'host'}")


def test_exits_command_refusals_write_nothing(capsys, tmp_path, fashion_data):
    out = tmp_path / "multi.keras"
    base = ["exits", EXAMPLES / "fashion_dscnn.h5", "--data", fashion_data / "train.npz", "-o", out]
    for extra, words in [([], ["--after", "--at"]), (["--after", "x", "--at", "0.5"], ["--after", "--at"]),
                         (["--after", "nosuch"], ["nosuch"]), (["--after", "softmax"], ["softmax"]),
                         (["--at", "0.5,2"], ["between 0 and 1"]), (["--at", "a,b"], ["numbers"]),
                         (["--at", "0.5", "--loss-weights", "1,1,1"], ["2 weights"]),
                         (["--at", "0.5", "--epochs", "0"], ["--epochs 0"]),
                         (["--at", "0.5", "--temperature", "0"], ["--temperature 0", "positive"]),
                         (["--at", "0.5", "--distill", "2"], ["--distill 2", "0 to 1"])]:
        assert_user_error(*call(capsys, *base, *extra)[::2], *words)
        assert not out.exists() and not out.with_suffix(".json").exists()


@pytest.mark.parametrize("name, source", [("kws", "kws_ref_model_savedmodel"), ("resnet", "pretrainedResnet.h5")])
def test_exits_on_the_mlperf_models_export_bit_exact(tmp_path, shared_models, qemu, name, source):
    """Heads on the two MLPerf Tiny classifiers (their training sets are not here: the heads learn
    the float model's own answers on random inputs, backbone frozen; this checks placement, cost and
    exactness, not accuracy). ResNet-8's exits can only go between its residual stacks."""
    from edgekit.api import load
    from edgekit.budget import BudgetSpec, reference_budget
    from edgekit.export import export
    from edgekit.measure.bench import BenchConfig, bench
    from edgekit.run.intref import IntReference
    from edgekit.run.verify import verify
    from edgekit.targets import get_target
    model = ekt.load_model(shared_models / source)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, size=(96, *(int(d) for d in model.inputs[0].shape[1:]))).astype(np.float32)
    y = np.argmax(np.asarray(model.predict(x, verbose=0)), 1)
    multi = exits.attach_exits(model, at=[0.3, 0.6])
    points = exits.exit_points(multi)[:-1]
    if name == "resnet":
        assert all(type(multi.get_layer(p)).__name__ in ("Activation", "ReLU") for p in points), points
    data = ekt.check_data(model, x, y)
    exits.train_exits(multi, data, None, epochs=1, batch_size=32, freeze_backbone=True, verbose=0)
    macs = exits.exit_macs(multi)
    assert macs[0] < macs[1] < 0.8 * macs[2]
    path = ekt.save_model(multi, tmp_path / f"{name}_exits.keras")
    np.save(tmp_path / "calib.npy", x[:32])
    # budget levels calibrated on the float model's own answers (no labelled data here)
    np.savez(tmp_path / "val.npz", x=x, y=y)
    export(path, tmp_path / "out", get_target("cortex-m4"), calib=tmp_path / "calib.npy",
           budgets=BudgetSpec(3, str(tmp_path / "val.npz"), losses=[float("inf"), 20.0, 0.0]))
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(report["outputs"]) == 3 and len(report["budget"]["levels"]) == 3
    for emulate in (False, True):
        result = verify(tmp_path / "out", count=3, seed=1, emulate=emulate)
        assert_bit_exact(result.outputs, result.reference, f"{name} with exits {'M4' if emulate else 'host'}")
        assert result.ok, result.describe()          # with every exit<k> signature of model.tflite
    m = load(tmp_path / "out")
    xq = m.quantize(x[:48])
    outputs = IntReference.from_export(tmp_path / "out").run_outputs(xq)
    for level in range(3):
        for got, want in zip(m.predict_budget(xq, level), reference_budget(report["budget"], outputs, level)):
            np.testing.assert_array_equal(got, want, err_msg=f"{name} level {level}")
    r = bench(tmp_path / "out", BenchConfig(runs=1, warmup=0, count=4, budget="all"), emulate=True, progress=False)
    rows = r.level_summary()
    assert r.matched == 4 and all(row["matched"] == 4 for row in rows)
    assert rows[0]["mean"] < rows[2]["mean"] and rows[0]["exits"][0] == 1.0
