"""Models with several outputs (issue 10): each output lives in the caller's output buffer at its
offset (outputs back to back, in the .tflite's output order), and every byte of every output
equals TFLite's reference, tolerance 0, on the host build, on the emulated Cortex-M4 and in
edgekit's integer reference.

Models (Keras 3, weights drawn from fixed seeds, int8 PTQ on fixed-seed representative data):
  two_heads  conv -> head A (global average pool + dense); conv -> conv -> head B (conv): the
             outputs are computed at different depths (the converter lists head B first;
             edgekit.frontend.keras puts them back in Keras' order)
  shared     four outputs: the flattened pooled features, which the dense layer under both
             heads also reads (from the output buffer), softmax probabilities and a tanh score
             (the two heads), and the model input itself, flattened (an alias of the input: a copy)
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from cli_helpers import assert_user_error, call, patched
from conftest import assert_bit_exact, test_inputs
import edgekit
from edgekit.api import join_outputs, split_outputs
from edgekit.errors import UnsupportedModelError
from edgekit.run.evaluate import evaluate
from edgekit.export import compile_program, export
from edgekit.run.intref import IntReference
from edgekit.lower.program import Place
from edgekit.run.reference import reference_outputs
from edgekit.targets import get_target
from edgekit.run.verify import VerifyResult, boundary_qparams, load_inputs, verify
from opmodels import _convert, _set_weights, _tf

SAMPLES = 16      # representative samples for the int8 quantization


def _two_heads(keras):
    layers = keras.layers
    x = keras.Input((12, 12, 3), batch_size=1, name="x")
    c1 = layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(x)
    a = layers.Dense(4, name="head_a")(layers.GlobalAveragePooling2D(name="gap_a")(c1))
    c2 = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="c2")(c1)
    b = layers.Conv2D(6, 3, padding="same", name="head_b")(c2)
    return keras.Model(x, [a, b])


def _shared(keras):
    layers = keras.layers
    x = keras.Input((10, 10, 4), batch_size=1, name="x")
    c1 = layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(x)
    features = layers.Flatten(name="features")(layers.MaxPooling2D(2, name="pool")(c1))
    d = layers.Dense(6, activation="relu", name="d")(features)
    probs = layers.Softmax(name="probs")(layers.Dense(3, name="logits")(d))
    score = layers.Dense(2, activation="tanh", name="score")(d)
    return keras.Model(x, [features, probs, score, layers.Flatten(name="echo")(x)])


def _two_inputs(keras):
    a = keras.Input((8,), batch_size=1, name="a")
    b = keras.Input((8,), batch_size=1, name="b")
    return keras.Model([a, b], keras.layers.Dense(3, name="fc")(keras.layers.Add(name="add")([a, b])))


def _keras_model(build, seed: int = 0):
    """The model with every weight drawn from a fixed seed, and its representative samples (one
    array per input each)."""
    tf, keras = _tf()
    keras.backend.clear_session()
    rng = np.random.default_rng(seed)
    model = build(keras)
    _set_weights(model, rng, {})
    samples = [[rng.uniform(-1, 1, (1, *i.shape[1:])).astype(np.float32) for i in model.inputs]
               for _ in range(SAMPLES)]
    return model, samples


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """name -> .tflite path (int8 in and out; 'float_outputs': two_heads with float outputs),
    plus the two_heads Keras archive and its calibration data for the Keras import path."""
    tf, _ = _tf()
    d = tmp_path_factory.mktemp("multi_output")
    paths = {}
    for name, build in (("two_heads", _two_heads), ("shared", _shared), ("two_inputs", _two_inputs)):
        model, samples = _keras_model(build)
        paths[name] = d / f"{name}.tflite"
        paths[name].write_bytes(_convert(tf, model, samples))
        if name == "two_heads":
            paths["float_outputs"] = d / "float_outputs.tflite"
            paths["float_outputs"].write_bytes(_convert(tf, model, samples, float_outputs=True))
            paths["keras"] = d / "two_heads.keras"
            model.save(paths["keras"])
            paths["calib"] = d / "calib.npy"
            np.save(paths["calib"], np.concatenate([s[0] for s in samples]))
    return paths


@pytest.fixture(scope="module")
def two_heads_host(models, tmp_path_factory):
    """two_heads from its .keras file through edgekit's Keras import, built for the host with
    ASan/UBSan."""
    out = tmp_path_factory.mktemp("two_heads_host") / "out"
    return edgekit.compile(models["keras"], target="host", calib=str(models["calib"]), out_dir=out, sanitize=True)


def assert_outputs_exact(got, ref, what: str, count: int) -> None:
    """Both answers are lists of `count` outputs, each bit-exact."""
    assert isinstance(got, list) and isinstance(ref, list) and len(got) == len(ref) == count, what
    for k, (g, r) in enumerate(zip(got, ref)):
        assert_bit_exact(g, r, f"{what}: output {k}")


# --------------------------------------------------------------------------
# Host build, integer reference, report and model.h
# --------------------------------------------------------------------------

def test_two_heads_keras_host(two_heads_host):
    m = two_heads_host
    x = test_inputs(m.input_shape[1:], n=8, seed=3)
    y = m.predict(x)
    ref = reference_outputs(m.tflite_path, x)
    assert_outputs_exact(y, ref, "two_heads (host)", 2)
    assert_outputs_exact(IntReference.from_export(m.out_dir).run(x), ref, "two_heads (intref)", 2)
    # The converter lists head B (1x6x6x6, the deeper one) first; the export has Keras' order.
    assert m.output_shapes == [(1, 4), (1, 6, 6, 6)]
    assert [a.shape for a in y] == [(8, 4), (8, 6, 6, 6)]

    flat = m.predict_flat(x)
    assert flat.shape == (8, 6 * 6 * 6 + 4) and m.output_size == 220
    np.testing.assert_array_equal(flat, join_outputs(ref, m.output_layout))
    for part, r in zip(split_outputs(flat, m.output_layout), ref):
        np.testing.assert_array_equal(part, r)
    with pytest.raises(edgekit.errors.EdgekitError, match="has 2 outputs: use output_shapes"):
        m.output_shape

    deq = m.dequantize(y)
    for o, q, f in zip(m.output_layout, y, deq):
        assert f.dtype == np.float32
        np.testing.assert_allclose(f, (q.astype(np.int32) - o["zero_point"]) * o["scale"], rtol=1e-6)


def test_report_and_header(two_heads_host):
    m = two_heads_host
    report = json.loads((m.out_dir / "report.json").read_text())
    outputs = report["outputs"]
    assert [(o["shape"], o["offset"], o["size"], o["dtype"]) for o in outputs] == \
           [([1, 4], 0, 4, "int8"), ([1, 6, 6, 6], 4, 216, "int8")]
    assert all(o["name"] and not o["float_in_model"] for o in outputs)
    # "output" is model.h's EK_MODEL_OUTPUT_*: output 0, plus the size of every output.
    assert report["output"]["shape"] == [1, 4] and report["output"]["total_size"] == 220
    assert report["totals"]["io_bytes"] == 12 * 12 * 3 + 220
    # each head's last layer, in model.h and the report's segments (head A is done before head B's
    # second convolution or after it, as the op order has it; either way its segment says so)
    lasts = [o["last_layer"] for o in outputs]
    assert sorted(lasts) == [s["layers"][1] for s in report["segments"]]
    assert [s["outputs"] for s in report["segments"]] == [[lasts.index(min(lasts))], [lasts.index(max(lasts))]]
    header = (m.out_dir / "model.h").read_text()
    for line in ("#define EK_MODEL_OUTPUT_SIZE       220", "#define EK_MODEL_NUM_OUTPUTS       2",
                 "#define EK_MODEL_OUTPUT1_OFFSET    4", "#define EK_MODEL_OUTPUT1_SIZE      216",
                 "#define EK_MODEL_OUTPUT0_DIMS      { 1, 4 }", "#define EK_MODEL_OUTPUT1_RANK      4",
                 f"#define EK_MODEL_OUTPUT1_ZERO_POINT ({outputs[1]['zero_point']})",
                 f"#define EK_MODEL_OUTPUT1_LAST_LAYER ({outputs[1]['last_layer']})"):
        assert line in header, line
    # Each head writes its place in the caller's buffer; nothing is copied.
    code = (m.out_dir / "model.c").read_text()
    assert "output + 4, NULL);" in code and "ek_copy_s8" not in code


def test_lowering_places_outputs_in_the_output_buffer(models):
    program = compile_program(models["shared"].read_bytes())
    g = program.graph
    assert program.output_offsets == [0, 3, 403, 603] and program.output_size == 605
    for t, offset in zip(g.outputs, program.output_offsets):
        assert program.places[t] == Place("output", offset)
    out_groups = {t for t, p in program.places.items() if p.kind == "output"}
    assert not out_groups & {b.id for b in program.buffers}, "an output was planned in the arena"
    # The input, flattened, is output 1: a copy (the caller's two buffers cannot be one storage).
    copies = [s for s in program.steps if s.call.kernel == "ek_copy_s8"]
    assert len(copies) == 1 and program.places[copies[0].call.args[1].index] == Place("output", 3)


def test_segments_say_where_each_output_is_complete(models):
    """Program.segments split the layers where outputs become complete (what early exits stop
    at); each output's last layer is the last one its value depends on, found by walking its
    producers, here checked against the layer that writes it."""
    program = compile_program(models["shared"].read_bytes())
    ready = program.output_ready()
    writer = {s.call.args[s.call.output_arg].index: i for i, s in enumerate(program.steps)}
    for k, t in enumerate(program.graph.outputs):
        if t in writer:                  # written by a layer (not an alias of the input)
            assert ready[k] == writer[t], (k, ready, writer.get(t))
    segments = program.segments
    assert [s.first for s in segments] == [0] + [s.last + 1 for s in segments[:-1]]
    assert segments[-1].last == len(program.steps) - 1
    assert sorted(k for s in segments for k in s.outputs) == list(range(len(ready)))
    assert sum(s.macs for s in segments) == sum(s.call.macs for s in program.steps)
    for s in segments:
        assert all(max(ready[k], 0) <= s.last for k in s.outputs)
    # the features (200 bytes) are complete before the two heads (3 and 2 bytes) that read them
    by_size = {t.nbytes: k for k, t in enumerate(program.outputs)}
    assert ready[by_size[200]] < min(ready[by_size[3]], ready[by_size[2]])


def test_output_read_by_later_layers(models, tmp_path):
    """The features (output 2) are read by the next dense layer from the output buffer."""
    m = edgekit.compile(models["shared"], target="host", out_dir=tmp_path / "out", sanitize=True)
    x = test_inputs(m.input_shape[1:], n=8, seed=4)
    ref = reference_outputs(m.tflite_path, x)
    assert_outputs_exact(m.predict(x), ref, "shared (host)", 4)
    assert_outputs_exact(IntReference.from_export(m.out_dir).run(x), ref, "shared (intref)", 4)
    np.testing.assert_array_equal(ref[1], x.reshape(8, -1))       # output 1 is the input, flattened
    code = (m.out_dir / "model.c").read_text()
    assert re.search(r"ek_maxpool_s8\(&ek_l\d+_params, arena \+ 0, output \+ 403\);", code)
    assert re.search(r"ek_fc_s8\(&ek_l\d+_params, output \+ 403, ", code), "the dense layer reads the features"
    assert re.search(r"ek_copy_s8\(&ek_l\d+_params, input, output \+ 3\);", code)


def test_repeated_output(models, tmp_path):
    """An output listed twice gets two places in the buffer: the second is a copy of the first."""
    def repeat_first(m):
        m.subgraphs[0].outputs = np.append(m.subgraphs[0].outputs, m.subgraphs[0].outputs[0])
    src = tmp_path / "repeated.tflite"
    src.write_bytes(patched(models["two_heads"].read_bytes(), repeat_first))
    m = edgekit.compile(src, target="host", out_dir=tmp_path / "out", sanitize=True)
    x = test_inputs(m.input_shape[1:], n=6, seed=5)
    y, ref = m.predict(x), reference_outputs(src, x)
    assert_outputs_exact(y, ref, "repeated output (host)", 3)
    np.testing.assert_array_equal(y[2], y[0])
    assert [o["offset"] for o in m.output_layout] == [0, 216, 220]
    assert re.search(r"ek_copy_s8\(&ek_l\d+_params, output, output \+ 220\);", (m.out_dir / "model.c").read_text())


def test_float_outputs(models, tmp_path):
    """Both outputs float in the file (DEQUANTIZE): the C gives their int8 side; the reference
    maps each float output back through its own quantization."""
    out = tmp_path / "out"
    result = export(models["float_outputs"], out, get_target("host"))
    assert all(o["float_in_model"] for o in result.report["outputs"])
    qparams = boundary_qparams(result.report)["output_qparams"]
    assert qparams == [(o["scale"], o["zero_point"]) for o in result.report["outputs"]]
    assert qparams[0] != qparams[1]
    v = verify(out, count=6)
    assert v.ok and v.describe().startswith("6/6 outputs match"), v.describe()


# --------------------------------------------------------------------------
# edgekit verify, eval
# --------------------------------------------------------------------------

def test_verify_cli(two_heads_host, capsys, tmp_path):
    rc, out, err = call(capsys, "verify", two_heads_host.out_dir, "--count", "7",
                        "--save-outputs", tmp_path / "y.npy")
    assert rc == 0 and out.strip() == "7/7 outputs match the TFLite reference (host)", (out, err)
    x = load_inputs(None, two_heads_host, 7, 0)
    saved = np.load(tmp_path / "y.npy")          # several outputs: the flat buffers, [N, total]
    np.testing.assert_array_equal(saved, join_outputs(reference_outputs(two_heads_host.tflite_path, x),
                                                      two_heads_host.output_layout))
    rc, out, err = call(capsys, "verify", two_heads_host.out_dir, "--layers", "--count", "3")
    assert rc == 0 and out.startswith("3/3 outputs match") and "all 5 layers match" in out, (out, err)


def test_verify_names_the_differing_output(two_heads_host):
    m = two_heads_host
    x = test_inputs(m.input_shape[1:], n=5, seed=6)
    flat = m.predict_flat(x)
    wrong = flat.copy()
    wrong[3, 4 + 5] += 1                         # output 1 (head B, 1x6x6x6), index [0, 0, 5], sample 3
    v = VerifyResult(outputs=flat, reference=wrong, layout=m.output_layout, where="host")
    name = m.output_layout[1]["name"]
    assert not v.ok and v.matched == 4
    assert v.describe() == (
        f"4/5 outputs match the TFLite reference (host); differing: output 1 '{name}' on 1 of 5 samples; "
        f"first difference at sample 3, output 1 '{name}', index [0, 0, 5]: got {flat[3, 9]}, "
        f"reference {wrong[3, 9]}")
    wrong[1, 2] -= 1                             # output 0 too: index [2] of 1x4
    d = VerifyResult(outputs=flat, reference=wrong, layout=m.output_layout, where="host").describe()
    assert f"differing: output 0 '{m.output_layout[0]['name']}' on 1 of 5 samples, output 1" in d, d
    assert "first difference at sample 1, output 0" in d and "index [2]" in d, d


def test_eval_scores_output_0(two_heads_host, tmp_path):
    m = two_heads_host
    x = test_inputs(m.input_shape[1:], n=20, seed=7)
    np.save(tmp_path / "x.npy", x)
    result = evaluate(m.out_dir, tmp_path / "x.npy")
    flat = IntReference.from_export(m.out_dir).run_flat(x)
    np.testing.assert_array_equal(result.outputs, flat)
    np.testing.assert_array_equal(result.predictions, np.argmax(flat[:, :4], axis=1))
    assert f"scored on output 0 '{m.output_layout[0]['name']}' of 2" in result.describe()


# --------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------

def test_two_inputs_refused(models, tmp_path, capsys):
    rc, out, err = call(capsys, "export", models["two_inputs"], "--target", "host", "-o", tmp_path / "out")
    assert_user_error(rc, err, "the model has 2 inputs; edgekit compiles models with one input")
    assert not (tmp_path / "out").exists()
    from edgekit.frontend.keras import keras_input_shape
    model, _ = _keras_model(_two_inputs)
    with pytest.raises(UnsupportedModelError, match="^the model has 2 inputs; edgekit compiles models with one input$"):
        keras_input_shape(model)


def test_output_that_is_the_input_refused(models, tmp_path, capsys):
    def input_as_output(m):
        m.subgraphs[0].outputs = np.append(m.subgraphs[0].outputs, m.subgraphs[0].inputs[0])
    src = tmp_path / "echo.tflite"
    src.write_bytes(patched(models["two_heads"].read_bytes(), input_as_output))
    rc, _, err = call(capsys, "export", src, "--target", "host", "-o", tmp_path / "out")
    assert_user_error(rc, err, "the model's output 2 is its input: there is nothing to compile")


# --------------------------------------------------------------------------
# The emulated Cortex-M4 (QEMU mps2-an386) over the serial link
# --------------------------------------------------------------------------

@pytest.mark.emulator
def test_two_heads_on_emulated_m4(two_heads_host, tmp_path, capsys, qemu):
    from edgekit.run.emulate import run_firmware
    out = tmp_path / "m4"
    export(two_heads_host.tflite_path, out, get_target("cortex-m4"))
    m = edgekit.load(out)
    x = test_inputs(m.input_shape[1:], n=5, seed=8)
    y, machine = run_firmware(m, x)
    assert machine == "mps2-an386"
    assert_outputs_exact(y, reference_outputs(m.tflite_path, x), "two_heads (emulated Cortex-M4)", 2)

    rc, text, err = call(capsys, "verify", out, "--emulate", "--count", "4")
    assert rc == 0 and text.strip() == "4/4 outputs match the TFLite reference (mps2-an386)", (text, err)

    rc, text, err = call(capsys, "bench", out, "--emulate", "--count", "2", "--runs", "2", "--warmup", "0",
                         "--save-outputs", tmp_path / "y.npy", "--json", tmp_path / "b.json")
    assert rc == 0 and "outputs matched: 2/2" in text, (text, err)
    x = load_inputs(None, m, 2, 0)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"),
                                  join_outputs(reference_outputs(m.tflite_path, x), m.output_layout))
    assert all(e["match"] and e["first_diff_output"] is None
               for e in json.loads((tmp_path / "b.json").read_text())["per_input"])


@pytest.mark.emulator
def test_shared_on_emulated_m4(models, tmp_path, qemu):
    from edgekit.run.emulate import run_firmware
    export(models["shared"], tmp_path / "m4", get_target("cortex-m4"))
    m = edgekit.load(tmp_path / "m4")
    x = test_inputs(m.input_shape[1:], n=5, seed=9)
    y, _ = run_firmware(m, x)
    assert_outputs_exact(y, reference_outputs(m.tflite_path, x), "shared (emulated Cortex-M4)", 4)
