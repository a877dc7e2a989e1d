"""The INT4 variant of an MLPerf Tiny reference model, made with tensorflow-model-optimization (tfmot)
on tf_keras: the one producer here of TFLite's packed INT4 weight tensors (TensorType 17, two per
byte, low nibble first), which edgekit imports and TFLite Micro runs. edgekit.train's own 4-bit QAT
writes int8 tensors holding -7..7 instead (what the TFLite converter makes of Keras 3 fake
quantization), so the INT4 import path needs this producer.

Imported only by model_variants.py's child process for the 'int4' kind: importing tfmot sets
TF_USE_LEGACY_KERAS=1, which would break Keras 3 in the same process.

QAT with DefaultNBitQuantizeScheme(num_bits_weight=4, num_bits_activation=8) on every Conv2D,
DepthwiseConv2D and Dense, fine-tuned for a few steps on model_variants' self-distillation data
(the float model's own outputs as targets), BatchNormalization statistics frozen, converted with
int8 input and output. Runs in TFLM, not in LiteRT's BUILTIN_REF when it has a depthwise
convolution (no DEPTHWISE_CONV_2D version 7 there).
"""
from __future__ import annotations

import contextlib
import time

import numpy as np

from model_variants import BATCH, EPOCHS, LEARNING_RATE, MODELS, SEED, SHARED_MODELS, TRAIN_SAMPLES, \
    reference_input, samples

# tfmot's activation quantizers track ranges with an EMA of decay 0.999 from an initial [-6, 6]: a
# run of a few dozen steps would keep ~[-6, 6]. The QAT fine-tune uses this decay instead.
QAT_EMA_DECAY = 0.7


def _load_float_model(keras, model: str):
    src = SHARED_MODELS / MODELS[model][0]
    m = keras.models.load_model(str(src), compile=False)
    if not isinstance(m, keras.Model) or not any(len(l.weights) for l in m.layers):
        raise RuntimeError(f"{src} did not load as a tf_keras model with layers")
    return m


def _freeze_batchnorm(keras, model) -> None:
    """Fine-tuning on synthetic data must not move the BatchNormalization statistics (with
    trainable=False, tf_keras runs BN in inference mode; the flag survives tfmot's cloning)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def _fold_dense_batchnorm(keras, model):
    """The same float model with every Dense -> BatchNormalization [-> Activation] of a layer chain folded
    into one Dense (with that activation). QAT needs both:
    - TFLite's FULLY_CONNECTED has per-tensor weights, so the converter cannot fold a BN's per-unit scale
      into fake-quantized weights and leaves those FCs in float;
    - tfmot's LayerReluActivationQuantize gives a Dense followed by Activation('relu') a
      NoOpQuantizeConfig, which drops its weight quantizer too: the converter then makes per-channel
      INT8 weights, not INT4."""
    layers = model.layers
    if not any(isinstance(a, keras.layers.Dense) and isinstance(b, keras.layers.BatchNormalization)
               for a, b in zip(layers, layers[1:])):
        return model
    inp = keras.Input(shape=model.input_shape[1:])
    y, i = inp, int(isinstance(layers[0], keras.layers.InputLayer))
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, keras.layers.Dense) and isinstance(nxt, keras.layers.BatchNormalization):
            kernel, *bias = layer.get_weights()
            bias = bias[0] if bias else np.zeros(kernel.shape[1], np.float32)
            gamma, beta, mean, var = nxt.get_weights()   # a BN with center and scale
            k = gamma / np.sqrt(var + nxt.epsilon)
            config = dict(layer.get_config(), use_bias=True)
            i += 2
            if (config["activation"] == "linear" and i < len(layers)
                    and isinstance(layers[i], keras.layers.Activation)):
                config["activation"] = layers[i].get_config()["activation"]
                i += 1
            dense = keras.layers.Dense.from_config(config)
            y = dense(y)
            dense.set_weights([kernel * k, (bias - mean) * k + beta])
        else:
            clone = layer.__class__.from_config(layer.get_config())
            y = clone(y)
            clone.set_weights(layer.get_weights())
            i += 1
    folded = keras.Model(inp, y, name=model.name + "_bnfolded")
    x = np.random.default_rng(0).normal(size=(4, *model.input_shape[1:])).astype(np.float32)
    a, b = model(x, training=False).numpy(), folded(x, training=False).numpy()
    if not np.allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.abs(a).max())):
        raise RuntimeError(f"{model.name}: folding BatchNormalization into Dense changed the outputs "
                           "(the model is not a chain of layers?)")
    return folded


def _fine_tune(keras, model, x, y, classifier: bool) -> None:
    loss = keras.losses.CategoricalCrossentropy() if classifier else keras.losses.MeanSquaredError()
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss=loss)
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=True, verbose=0)


def _convert(tf, model) -> bytes:
    """Batch-1 concrete function -> TFLite with int8 input and output (the QAT model carries its ranges)."""
    fn = tf.function(lambda x: model(x, training=False))
    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32)
    # The converter saves its trackable object as a SavedModel: a bare module that holds just the
    # variables saves ~5x faster than the Keras model (which traces every layer's call again).
    holder = tf.Module()
    holder.weights = list(model.variables)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function(spec)], holder)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return bytes(converter.convert())


@contextlib.contextmanager
def _qat_ema_decay(decay: float):
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

    original = quant_ops.MovingAvgQuantize

    def moving_avg_quantize(*args, **kwargs):
        kwargs["ema_decay"] = decay
        return original(*args, **kwargs)

    quant_ops.MovingAvgQuantize = moving_avg_quantize
    try:
        yield
    finally:
        quant_ops.MovingAvgQuantize = original


def build_int4(model: str) -> tuple[bytes, dict, int]:
    """(the .tflite, seconds per phase, the float model's number of Conv2D/DepthwiseConv2D/Dense layers)."""
    times = {}
    t = time.monotonic()
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras
    times["import"] = time.monotonic() - t

    t = time.monotonic()
    keras.backend.clear_session()  # fresh layer-name counters: the same bytes alone or after other builds
    keras.utils.set_random_seed(SEED)  # python random, numpy and tf
    tf.config.experimental.enable_op_determinism()
    shape, scale, zero_point = reference_input(model)
    float_model = _load_float_model(keras, model)
    if tuple(float_model.input_shape[1:]) != shape:
        raise RuntimeError(f"{model}: Keras input {float_model.input_shape[1:]} != reference {shape}")
    rng = np.random.default_rng(SEED)
    x = samples(rng, TRAIN_SAMPLES[model], shape, scale, zero_point)
    y = float_model.predict(x, batch_size=64, verbose=0)
    classifier = model != "ad"
    _freeze_batchnorm(keras, float_model)
    times["load"] = time.monotonic() - t

    t = time.monotonic()
    q = tfmot.quantization.keras
    scheme = q.experimental.default_n_bit.DefaultNBitQuantizeScheme(num_bits_weight=4, num_bits_activation=8)
    with _qat_ema_decay(QAT_EMA_DECAY):
        final = q.quantize_apply(q.quantize_annotate_model(_fold_dense_batchnorm(keras, float_model)), scheme)
        _fine_tune(keras, final, x, y, classifier)
    times["fine_tune"] = time.monotonic() - t

    t = time.monotonic()
    tflite = _convert(tf, final)
    times["convert"] = time.monotonic() - t
    n_layers = sum(isinstance(l, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense))
                   for l in float_model.layers)
    return tflite, times, n_layers
