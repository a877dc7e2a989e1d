"""edgekit.train on Keras 3 models: pruning (depthwise included) to the exact sparsity, clusters
that survive int8, quantization-aware training whose int8 export agrees with it (and 4-bit
weights that all pack as int4), channels really removed with residual groups kept aligned,
distillation through keras.distillation, and the refusals - each a property checked in seconds
on small models (accuracy is benchmarks/compress_fashion.py's)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgekit.errors import EdgekitError, UnsupportedModelError
from train_helpers import to_tflite, toy_data, toy_model, weight_tensors

keras = pytest.importorskip("keras")

import edgekit.train as ekt                                     # noqa: E402
from edgekit.train import tune as fitting                        # noqa: E402
from edgekit.train.data import Data                             # noqa: E402
from edgekit.train.graph import kernel, kind                    # noqa: E402
from edgekit.train.qat import quantize_model, strip             # noqa: E402
from edgekit.train.structured import macs, prune_channels       # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def fashion():
    """The bundled Fashion-MNIST DS-CNN (Keras 2 .h5), its calibration images, 200 test images."""
    subset = np.load(EXAMPLES / "fashion_test_subset.npz")
    return SimpleNamespace(model=EXAMPLES / "fashion_dscnn.h5", calib=np.load(EXAMPLES / "fashion_calib.npy"),
                           x=subset["x"], y=subset["y"].astype(np.int64))


def _kernels(model):
    return {layer.name: np.asarray(kernel(layer).numpy()) for layer in model.layers if kind(layer)}


def _fit(model, data, callbacks=(), epochs=1, teacher=None, learning_rate=1e-3, **kw):
    return fitting.fit(model, data, None, epochs=epochs, learning_rate=learning_rate, batch_size=32,
                       callbacks=callbacks, teacher=teacher, verbose=0, **kw)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_pruning_reaches_the_exact_sparsity_in_every_layer(scope):
    model, data = toy_model(), toy_data()
    pruner = ekt.pruning(model, ekt.PolynomialDecay(0.75, end_step=10, frequency=2), scope)
    _fit(model, data, [pruner], epochs=2)
    kernels = _kernels(model)
    assert {"stem", "dw", "pw", "conv2", "logits"} == set(kernels)        # depthwise included
    zeros = {n: int((w == 0).sum()) for n, w in kernels.items()}
    if scope == "layer":
        for n, w in kernels.items():
            assert zeros[n] == round(0.75 * w.size), (n, zeros[n], w.size)
    else:
        total = sum(w.size for w in kernels.values())
        assert sum(zeros.values()) == round(0.75 * total)
        assert len({round(zeros[n] / kernels[n].size, 2) for n in kernels}) > 1   # one threshold, not per layer
    # the masks hold through more training (the constraints stay with the model)
    _fit(model, data, [ekt.keep_constraints(pruner.constraints)])
    assert {n: int((w == 0).sum()) for n, w in _kernels(model).items()} == zeros


def test_a_schedule_the_fit_cannot_reach_is_refused_before_training():
    model, data = toy_model(), toy_data(64)
    before = _kernels(model)
    pruner = ekt.pruning(model, ekt.PolynomialDecay(0.8, end_step=500))
    with pytest.raises(EdgekitError, match="reaches sparsity 0.8 at step 500, but this training runs 2 steps"):
        _fit(model, data, [pruner])
    assert all(np.array_equal(before[n], w) for n, w in _kernels(model).items())


def test_clusters_survive_fine_tuning_and_int8_conversion():
    model, data = toy_model(), toy_data()
    c = ekt.Constraints()
    ekt.prune_to([model.get_layer(n) for n in ("dw", "pw", "conv2", "logits")], 0.5, "layer", c)
    c = ekt.cluster(model, 8, constraints=c)
    _fit(model, data, [ekt.keep_constraints(c)])
    for name, w in _kernels(model).items():
        flat = w.reshape(-1, w.shape[-1]) if name != "dw" else w.reshape(-1, w.shape[-2])
        assert max(len(np.unique(flat[:, ch])) for ch in range(flat.shape[1])) <= 8, name
    assert np.mean(_kernels(model)["pw"] == 0) == 0.5                       # the zeros are kept
    # after BN folding and per-channel int8 quantization: still <= 8 values per output channel
    for op, w in weight_tensors(to_tflite(model, data.x[:64])):
        assert max(len(np.unique(w[:, ch])) for ch in range(w.shape[1])) <= 8, op


def test_qat_int8_agrees_with_the_exported_model(fashion):
    from edgekit.export import compile_program
    from edgekit.run.intref import IntReference
    model = ekt.load_model(fashion.model)
    qat, _ = quantize_model(model, 8, calib=fashion.calib)
    assert not any(type(layer).__name__ == "BatchNormalization" for layer in qat.layers)     # folded
    tflite = to_tflite(qat, fashion.calib)
    ref = IntReference(compile_program(tflite, target=None))
    from edgekit.frontend.tflite import load_tflite
    g = load_tflite(tflite)
    (scale, zp) = g.t(g.inputs[0]).qparams()
    xq = np.clip(np.round(fashion.x / np.float32(scale)) + zp, -128, 127).astype(np.int8)
    y8 = np.asarray(ref.run(xq))
    oscale, ozp = g.t(g.outputs[0]).qparams()
    y8f = (y8.astype(np.float32) - ozp) * oscale
    yq = np.asarray(qat(fashion.x, training=False))
    agree = np.mean(np.argmax(y8f, 1) == np.argmax(yq, 1))
    assert agree >= 0.98, agree
    assert np.abs(y8f - yq).mean() < 2 * oscale             # within two output steps on average
    # the converter took the QAT ranges: the input range is the calibration data's [0, 1]
    assert (scale, zp) == pytest.approx((1 / 255, -128))


def _quantizer_steps(qat, x):
    """{quantizer name: its output in int8 steps} for the QAT model on x."""
    quantizers = [layer for layer in qat.layers if isinstance(layer, ekt.ActivationQuantizer)]
    outs = keras.Model(qat.inputs, [q.output for q in quantizers])(x, training=False)
    return {q.name: np.round((np.asarray(o) - float(q.range_min.numpy())) / float(q.scale())) - 128
            for q, o in zip(quantizers, outs)}


def test_qat_rounds_every_convolution_as_the_int8_model(fashion):
    """Pruned to 80 %, 16 clusters, 4-bit: the case where plain fake quantization mispredicted the
    export by 3 pt (one-step rounding differences amplified by pruned depthwise filters). Every
    convolution and depthwise output of the QAT model equals the exported int8 model's byte for
    byte (edgekit's integer reference, layer by layer), where plain fake quantization (as the
    converter traces it) differs in many."""
    from edgekit.export import compile_program
    from edgekit.frontend.tflite import load_tflite
    from edgekit.run.intref import IntReference
    from edgekit.train.graph import stage_layers
    from edgekit.train.qat import converting
    model = ekt.load_model(fashion.model)
    constraints = ekt.Constraints()
    ekt.prune_to(stage_layers(model, "pruning"), 0.8, "layer", constraints)
    constraints = ekt.cluster(model, 16, constraints=constraints)
    qat, _ = quantize_model(model, 4, calib=fashion.calib, constraints=constraints)
    tflite = to_tflite(qat, fashion.calib)
    program = compile_program(tflite, target=None)
    g = load_tflite(tflite)
    (scale, zp) = g.t(g.inputs[0]).qparams()
    xq = np.clip(np.round(fashion.x / np.float32(scale)) + zp, -128, 127).astype(np.int8)
    traced = IntReference(program).trace_batch(xq)
    convs = [t for t, step in zip(traced, program.steps) if step.op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    names = [n for n in _quantizer_steps(qat, fashion.x[:1]) if n != "input_quant"][:len(convs)]
    assert len(convs) == 7 and len(names) == 7
    exact = _quantizer_steps(qat, fashion.x)
    with converting():
        plain = _quantizer_steps(qat, fashion.x)
    plain_differ = 0
    for name, t in zip(names, convs):
        int8 = np.asarray(t.values, np.float64).reshape(exact[name].shape)
        assert np.array_equal(exact[name], int8), (name, float(np.mean(exact[name] != int8)))
        plain_differ += int(np.sum(plain[name] != int8))
    assert plain_differ > 1000, plain_differ


def test_4bit_qat_packs_every_layer_as_int4(fashion):
    from edgekit.export import compile_program
    from edgekit.targets import get_target
    model = ekt.load_model(fashion.model)
    qat, _ = quantize_model(model, 4, calib=fashion.calib)
    _fit(qat, Data(fashion.x[:128], fashion.y[:128], 10))
    tflite = to_tflite(qat, fashion.calib)
    weights = weight_tensors(tflite)
    assert len(weights) == 8
    for op, w in weights:
        assert w.min() >= -7 and w.max() <= 7 and len(np.unique(w)) <= 15, op
    program = compile_program(tflite, target=get_target("cortex-m4"), weights="int4")
    chosen = [s.op.notes.weights for s in program.steps if s.op.notes.weights is not None]
    assert len(chosen) == 8 and all(c.format == "int4" for c in chosen), [(c.format, c.note) for c in chosen]


def test_strip_gives_a_stock_model_with_the_quantized_weights(fashion):
    model = ekt.load_model(fashion.model)
    qat, _ = quantize_model(model, 4, calib=fashion.calib)
    plain = strip(qat)
    assert all(type(layer).__module__.startswith("keras") for layer in plain.layers)
    assert len(plain.layers) == len([l for l in qat.layers if type(l).__name__ != "ActivationQuantizer"])
    for layer in plain.layers:
        if kind(layer) == "conv":
            w = np.asarray(kernel(layer).numpy())
            step = np.abs(w).max(axis=(0, 1, 2)) / 7
            assert np.allclose(w / step, np.round(w / step), atol=1e-3)       # on the 4-bit grid
    y_plain = np.asarray(plain(fashion.x[:50], training=False))
    assert np.mean(np.argmax(y_plain, 1) == np.argmax(np.asarray(qat(fashion.x[:50])), 1)) >= 0.9


def test_structured_pruning_removes_channels_and_keeps_residuals_aligned():
    model = toy_model()
    same = prune_channels(model, 0.0)
    x = toy_data(8).x
    assert np.allclose(same(x), model(x), atol=1e-6) and same.count_params() == model.count_params()
    small = prune_channels(model, 0.5)
    assert small.get_layer("stem").filters == 4 and small.get_layer("pw").filters == 4     # one group
    assert small.get_layer("conv2").filters == 8 and small.get_layer("logits").units == 4  # output kept
    a, b = small.get_layer("residual").input
    assert a.shape[-1] == b.shape[-1] == 4
    assert macs(small) < 0.4 * macs(model)
    assert small(x).shape == (8, 4)


def test_removing_channels_equals_zeroing_them():
    """Without BN or biases a removed channel contributed nothing once zeroed: outputs equal."""
    keras.utils.set_random_seed(1)
    L = keras.layers
    inp = keras.Input((6, 6, 2))
    x = L.Conv2D(6, 3, use_bias=False, activation="relu", name="c1")(inp)
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="d1")(x)
    x = L.Conv2D(5, 1, use_bias=False, activation="relu", name="c2")(x)
    x = L.Flatten(name="flat")(x)
    out = L.Dense(3, name="fc")(x)
    model = keras.Model(inp, out)
    small = prune_channels(model, 0.4)
    x = np.random.default_rng(0).uniform(size=(4, 6, 6, 2)).astype(np.float32)
    rows = slice(None)                                  # c2's input rows: c1's kept channels
    for name in ("c1", "c2"):
        w_full = np.asarray(kernel(model.get_layer(name)).numpy())
        w_small = np.asarray(kernel(small.get_layer(name)).numpy())
        kept = [c for c in range(w_full.shape[-1]) if any(np.allclose(w_full[:, :, rows, c], w_small[..., j])
                                                          for j in range(w_small.shape[-1]))]
        assert len(kept) == w_small.shape[-1] < w_full.shape[-1]
        zeroed = w_full.copy()
        zeroed[..., [c for c in range(w_full.shape[-1]) if c not in kept]] = 0
        kernel(model.get_layer(name)).assign(zeroed)
        rows = kept
    assert np.allclose(small(x), model(x), atol=1e-5)


def test_distillation_learns_from_the_teacher_not_the_labels():
    """With alpha = 1 the labels do not count: a half-width student (the teacher's channels, pruned)
    fine-tuned on random labels stays with the teacher when distilled, and drifts to the noise when
    trained on the labels."""
    data = toy_data(256)
    teacher = toy_model(seed=1)
    _fit(teacher, data, epochs=6, learning_rate=3e-3)
    assert fitting.evaluate(teacher, data) > 0.6          # it has something to teach
    noise = Data(data.x, np.random.default_rng(5).integers(0, 4, len(data)), 4)
    agreement = []
    for teach in (teacher, None):
        student = prune_channels(teacher, 0.5)
        _fit(student, noise, epochs=6, teacher=teach, alpha=1.0, learning_rate=3e-3)
        agreement.append(np.mean(np.argmax(student(data.x), 1) == np.argmax(teacher(data.x), 1)))
    distilled, on_labels = agreement
    assert distilled > on_labels + 0.15, (distilled, on_labels)
    assert all(layer.trainable for layer in teacher.layers)     # the Distiller's freeze is undone


def test_the_distillation_loss_is_hintons():
    from edgekit.train.tune import logits_distillation
    rng = np.random.default_rng(0)
    t, st = rng.normal(0, 4, (8, 10)).astype(np.float32), rng.normal(0, 4, (8, 10)).astype(np.float32)
    T = 4.0

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    p, q = softmax(t / T), softmax(st / T)
    expected = T * T * np.mean(np.sum(p * np.log(p / q), axis=1))
    loss = logits_distillation(T)
    assert float(loss.compute_loss(t, st)) == pytest.approx(expected, rel=1e-4)
    assert float(loss.compute_loss(t, t)) == pytest.approx(0.0, abs=1e-6)


def test_a_layer_no_stage_handles_is_named_and_can_be_skipped():
    L = keras.layers
    inp = keras.Input((10, 4))
    x = L.LSTM(6, name="lstm")(inp)
    out = L.Dense(3, activation="softmax", name="head")(x)
    model = keras.Model(inp, out)
    data = (np.zeros((20, 10, 4), np.float32), np.zeros(20, int))
    recipe = ekt.Recipe(prune=0.5, bits=None, epochs=1)
    with pytest.raises(UnsupportedModelError, match=r"layer 'lstm' \(LSTM\) cannot go through pruning.*--skip lstm"):
        ekt.compress(model, data, recipe=recipe, verbose=0, measure_int8=False)
    result = ekt.compress(model, data, recipe=ekt.Recipe(prune=0.5, bits=None, epochs=1, skip=("lstm",)),
                          verbose=0, measure_int8=False)
    assert np.mean(np.asarray(kernel(result.model.get_layer("head")).numpy()) == 0) == 0.5


def test_bad_data_is_refused_before_training():
    model = toy_model()
    before = _kernels(model)
    data = toy_data(32)
    with pytest.raises(EdgekitError, match="uint8"):
        ekt.compress(model, ((data.x * 255).astype(np.uint8), data.y), recipe=ekt.Recipe(prune=0.5), verbose=0)
    with pytest.raises(EdgekitError, match=r"expects \[N, 12, 12, 3\]"):
        ekt.compress(model, (data.x[:, :8], data.y), recipe=ekt.Recipe(prune=0.5), verbose=0)
    with pytest.raises(EdgekitError, match="--prune 1"):
        ekt.compress(model, (data.x, data.y), recipe=ekt.Recipe(prune=1.0), verbose=0)
    assert all(np.array_equal(before[n], w) for n, w in _kernels(model).items())


def test_compress_runs_every_stage_and_reports_each():
    model, data = toy_model(), toy_data(320)
    recipe = ekt.Recipe(structured=0.25, prune=0.5, clusters=8, bits=4, epochs=1, batch_size=32)
    result = ekt.compress(model, data, recipe=recipe, verbose=0)
    assert [s.stage for s in result.report] == ["original", "structured", "prune", "cluster", "qat4"]
    final = result.report[-1]
    assert final.int8_value is not None and final.macs < result.report[0].macs
    for layer in final.layers:
        assert layer["zeros"] >= round(0.5 * layer["weights"]) and layer["max_distinct_per_channel"] <= 8, layer
    assert final.weight_bytes["exported"] < result.report[0].weight_bytes["exported"]
    assert "| qat4 |" in result.table()


def test_the_seed_fixes_the_result():
    weights = []
    for _ in range(2):
        result = ekt.compress(toy_model(), toy_data(160), recipe=ekt.Recipe(prune=0.5, bits=8, epochs=1, seed=3),
                              verbose=0, measure_int8=False)
        weights.append(result.model.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(*weights))


def test_4bit_ranges_are_clipped_where_that_quantizes_better():
    from edgekit.train.qat import QuantConv2D, fit_clipping
    layer = QuantConv2D(4, 3, weight_bits=4)
    layer.build((None, 8, 8, 200))
    rng = np.random.default_rng(0)
    w = rng.laplace(0, 0.05, (3, 3, 200, 4)).astype(np.float32)     # heavy tails: 1,800 per channel
    w[..., 3] = rng.uniform(-0.1, 0.1, (3, 3, 200))                  # flat: nothing to clip
    layer.kernel.assign(w)
    chosen = fit_clipping(layer)
    assert np.all(chosen[:3] < 0.8) and chosen[3] > 0.9
    q_clipped = np.asarray(layer.quantized_kernel())
    layer.clip.assign(np.ones(4, np.float32))
    q_full = np.asarray(layer.quantized_kernel())
    err = lambda q: ((q - w) ** 2).reshape(-1, 4).sum(0)      # noqa: E731
    assert np.all(err(q_clipped) <= err(q_full) * (1 + 1e-6))
    assert np.all(err(q_clipped)[:3] < 0.9 * err(q_full)[:3])
    assert all(len(np.unique(q_clipped[..., c])) <= 15 for c in range(4))


def test_a_qat_model_saves_and_loads_whole(tmp_path, fashion):
    """Every variable comes back (Keras' Conv2D and Dense save only kernel and bias by themselves)."""
    model = ekt.load_model(fashion.model)
    qat, _ = quantize_model(model, 4, calib=fashion.calib)
    path = ekt.save_model(qat, tmp_path / "qat.keras")
    again = ekt.load_model(path)
    for a, b in zip(qat.weights, again.weights):
        assert a.path == b.path and np.array_equal(np.asarray(a.numpy()), np.asarray(b.numpy())), a.path
    assert np.array_equal(np.asarray(qat(fashion.x[:20])), np.asarray(again(fashion.x[:20])))
