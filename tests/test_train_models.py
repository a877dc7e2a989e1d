"""edgekit compress end to end: the command on the bundled Fashion-MNIST model and the recipes on
the MLPerf Tiny models, each compressed model exported and its C run on the host and on the
emulated Cortex-M4, every output byte equal to TFLite's reference interpreter."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_user_error, call
from conftest import assert_bit_exact
from train_helpers import fashion_split

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _export_and_verify(model: Path, calib: Path, out: Path, emulate: bool, weights: str = "auto") -> dict:
    from edgekit.export import export
    from edgekit.run.verify import verify
    from edgekit.targets import get_target
    export(model, out, get_target("cortex-m4"), calib=calib, weights=weights, optimize="size")
    for where in ([False, True] if emulate else [False]):
        result = verify(out, count=4, seed=1, emulate=where)
        assert_bit_exact(result.outputs, result.reference, f"{model.name} {'M4' if where else 'host'}")
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def fashion_data(tmp_path_factory) -> Path:
    return fashion_split(tmp_path_factory.mktemp("fashion"))


@pytest.mark.parametrize("recipe, weights, formats", [
    (["--prune", "0.6", "--clusters", "16", "--bits", "4"], "auto", None),
    (["--structured", "0.5", "--bits", "8"], "int8", {"int8"}),
    (["--bits", "4"], "int4", {"int4"}),
])
def test_compress_command_then_export_is_bit_exact(capsys, tmp_path, fashion_data, qemu, recipe, weights, formats):
    out = tmp_path / "small.keras"
    rc, stdout, err = call(capsys, "compress", EXAMPLES / "fashion_dscnn.h5", "--data", fashion_data / "train.npz",
                           "--val", fashion_data / "val.npz", "--epochs", "1", "--batch-size", "32", "-o", out, *recipe)
    assert rc == 0, err
    report = json.loads(out.with_suffix(".json").read_text())
    assert report[0]["stage"] == "original" and report[-1]["stage"].startswith("qat")
    assert "| original |" in stdout and "wrote" in stdout
    exported = _export_and_verify(out, EXAMPLES / "fashion_calib.npy", tmp_path / "out", emulate=True,
                                  weights=weights)
    chosen = {l["weights"]["format"] for l in exported["layers"] if "weights" in l}
    if formats is not None:
        assert chosen == formats, chosen              # int4: every layer, no "int8 used"
    else:
        assert chosen & {"sparse", "huffman", "lut4"}, chosen
    if "--structured" in recipe:
        assert exported["totals"]["macs"] < 0.5 * report[0]["macs"]


def test_compress_refusals_write_nothing(capsys, tmp_path, fashion_data):
    out = tmp_path / "small.keras"
    base = ["compress", EXAMPLES / "fashion_dscnn.h5", "--data", fashion_data / "train.npz", "-o", out]
    x = np.load(fashion_data / "train.npz")["x"]
    np.savez(tmp_path / "u8.npz", x=(x * 255).astype(np.uint8), y=np.zeros(len(x), int))
    np.savez(tmp_path / "shape.npz", x=x[:, :20], y=np.zeros(len(x), int))
    cases = [
        (["--prune", "1.0"], "--prune 1"),
        (["--clusters", "1"], "--clusters 1"),
        (["--skip", "nosuchlayer", "--prune", "0.5"], "nosuchlayer"),
    ]
    for extra, words in cases:
        assert_user_error(*call(capsys, *base, *extra)[::2], words)
    for data, words in ((tmp_path / "u8.npz", "uint8"), (tmp_path / "shape.npz", "expects [N, 28, 28, 1]"),
                        (tmp_path / "missing.npz", "does not exist")):
        rc, _, err = call(capsys, "compress", EXAMPLES / "fashion_dscnn.h5", "--data", data, "-o", out)
        assert_user_error(rc, err, words)
    rc, _, err = call(capsys, "compress", EXAMPLES / "fashion_dscnn.h5", "--data", fashion_data / "train.npz",
                      "-o", tmp_path / "small.tflite")
    assert_user_error(rc, err, ".keras")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shape.npz", "u8.npz"]


def _self_distillation_data(model, n: int, seed: int = 0):
    """Inputs spread over the model's input range and the float model's own answers as targets
    (the MLPerf Tiny training sets are not here): classes for a classifier, the outputs of an
    autoencoder."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    x = rng.normal(0, 1, size=(n, *shape)).astype(np.float32)
    y = np.asarray(model.predict(x, verbose=0))
    return x, (np.argmax(y, 1) if y.shape[-1] > 1 and np.allclose(y.sum(1), 1, atol=1e-3) else y)


@pytest.mark.parametrize("name, source, recipe", [
    ("kws", "kws_ref_model_savedmodel", dict(prune=0.5, clusters=16, bits=4)),
    ("kws", "kws_ref_model_savedmodel", dict(structured=0.5, bits=8)),
    ("resnet", "pretrainedResnet.h5", dict(structured=0.25, prune=0.5, bits=8)),
    ("resnet", "pretrainedResnet.h5", dict(clusters=16, bits=4)),
    ("ad", "ad01.h5", dict(prune=0.8, clusters=16, bits=8)),
    ("ad", "ad01.h5", dict(structured=0.5, bits=4)),
])
def test_recipes_on_the_mlperf_models_export_bit_exact(tmp_path, shared_models, qemu, name, source, recipe):
    import edgekit.train as ekt
    model = ekt.load_model(shared_models / source)
    x, y = _self_distillation_data(model, 96)
    result = ekt.compress(model, (x, y), recipe=ekt.Recipe(epochs=1, batch_size=32, **recipe), verbose=0,
                          measure_int8=False)
    final = result.model
    for layer in result.report[-1].layers:
        if recipe.get("prune"):
            assert layer["zeros"] >= round(recipe["prune"] * layer["weights"]), layer
        if recipe.get("clusters"):
            assert layer["max_distinct_per_channel"] <= recipe["clusters"], layer
    if recipe.get("structured"):
        assert ekt.macs(final) < (1 - recipe["structured"] / 2) * ekt.macs(model)
    path = ekt.save_model(final, tmp_path / f"{name}.keras")
    np.save(tmp_path / "calib.npy", x[:32])
    weights = "int4" if recipe.get("bits") == 4 else "auto"
    exported = _export_and_verify(path, tmp_path / "calib.npy", tmp_path / "out", emulate=True,
                                  weights=weights)
    if weights == "int4":
        assert {l["weights"]["format"] for l in exported["layers"] if "weights" in l} == {"int4"}


def test_compress_refuses_a_custom_layer_by_name(capsys, tmp_path, fashion_data):
    """A model file naming a layer class from outside Keras is refused before anything runs."""
    import keras

    @keras.saving.register_keras_serializable(package="usercode")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return 2.0 * x

    inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inp)
    x = Doubler(name="doubler")(x)
    out = keras.layers.Dense(10, activation="softmax", name="head")(keras.layers.GlobalAveragePooling2D()(x))
    path = tmp_path / "custom.keras"
    keras.Model(inp, out).save(path)
    rc, _, err = call(capsys, "compress", path, "--data", fashion_data / "train.npz", "--prune", "0.5",
                      "-o", tmp_path / "small.keras")
    assert_user_error(rc, err, "doubler", "not from Keras")
    assert not (tmp_path / "small.keras").exists() and not (tmp_path / "small.json").exists()
