"""Quantization-aware training for Keras 3 that matches TFLite's int8 numerics.

`quantize_model(model, bits)` returns a model the TFLite converter turns into exactly the int8
model it simulates:
  - BatchNormalization after a Conv2D / DepthwiseConv2D / Dense is folded into its kernel and
    bias first (with the moving statistics, as the converter folds it), so training sees the
    weights that will be quantized;
  - weights are fake-quantized as TFLite stores them: per output channel, symmetric, narrow range
    (Conv2D, DepthwiseConv2D), per tensor (Dense, FULLY_CONNECTED's int8 weights); `bits=4` gives
    16-level weights (-7..7 times a 4-bit scale), which the converter writes as int8 tensors
    holding -7..7, so `edgekit export --weights int4` packs every such layer;
  - activations are fake-quantized per tensor, asymmetric, 8 bits, wherever TFLite has an int8
    tensor: the model input and each op's output after its fused activation (conv + ReLU is one
    tensor), except ops that keep their input's scale (pooling, reshapes, padding) and softmax,
    whose output scale TFLite fixes; the ranges are moving averages of the batches' min and max
    while training, frozen in inference.
The fake quantization is keras.quantizers.fake_quant_with_min_max_vars, which on TensorFlow is
tf.quantization.fake_quant_*: the converter reads its ranges, so the int8 model's scales and zero
points are the QAT model's. Straight-through gradients; the weight ranges follow the weights.

Rounding as the integer kernels round. A convolution's int8 output is not round(real / scale):
its bias is an int32 on the grid input scale x weight scale, and TFLite's requantization
(MultiplyByQuantizedMultiplier) rounds twice, first to 2^-R of an output step (R: the right shift
of the channel's multiplier input x weight / output scale), then to a step, ties away from zero.
Measured on the Fashion-MNIST DS-CNN pruned to 80 %, clustered and 4-bit: ~3 % of the first
convolution's outputs differed by one step from plain fake quantization (2^-4 of a step there),
the pruned depthwise layer after it amplified them up to 15 steps, and the QAT model scored
83.0 % where its int8 export scored 79.7 %. So each Conv2D / DepthwiseConv2D quantizer (its layer
linked to it and to its input's quantizer by `link_requantization`, which `quantize_model` and
edgekit.train.load_model call) rounds its input that way, and the layer snaps its bias to the
int32 grid: the QAT model computes the int8 model's bytes (training sees them through
straight-through gradients). Dense keeps plain rounding (per-tensor FULLY_CONNECTED rounds once
in LiteRT, twice in TFLite Micro). The TFLite converter must not see these ops: edgekit's
conversion (edgekit.frontend.keras.quantize_keras) runs inside `converting()`, which turns them
off; the model's graph is then plain fake quantization, as before.

The QAT model is what `edgekit export` should get (its layers are registered Keras classes,
module edgekit.train.qat, which edgekit's loaders accept); `strip(model)` gives a stock Keras
model with the quantized weights, for tools that do not know these layers.
"""
from __future__ import annotations

import contextlib
import weakref

import numpy as np

import keras
from keras import ops

from edgekit.errors import EdgekitError

# Layers after which no activation quantizer goes: TFLite gives their output the input's scale,
# or (softmax) a fixed one.
_SAME_SCALE = ("MaxPooling2D", "AveragePooling2D", "MaxPooling1D", "AveragePooling1D", "Reshape", "Flatten",
               "Dropout", "ZeroPadding2D", "Identity", "Softmax", "InputLayer", "SpatialDropout2D",
               "GaussianNoise", "ActivityRegularization")
_RELU_ACTIVATIONS = ("relu", "relu6")
# Activations whose int8 output scale TFLite fixes (SOFTMAX, LOGISTIC 1/256; TANH 1/128).
_FIXED_SCALE_ACTIVATIONS = ("softmax", "sigmoid", "tanh")


def _weight_range(w, axes):
    m = ops.max(ops.abs(w), axis=axes)
    return ops.stop_gradient(ops.maximum(m, 1e-8))


def _fake_quant_kernel(w, bits: int, m, per_channel_shape=None):
    """Symmetric narrow-range fake quantization to [-m, m]: per output channel (the last axis of w
    seen with the static shape per_channel_shape; m a vector) or, per_channel_shape None, per
    tensor (m a scalar)."""
    if per_channel_shape is None:
        return keras.quantizers.fake_quant_with_min_max_vars(w, -m, m, num_bits=bits, narrow_range=True)
    shape = tuple(int(d) for d in w.shape)
    view = w if per_channel_shape == shape else ops.reshape(w, per_channel_shape)
    q = keras.quantizers.fake_quant_with_min_max_vars(view, -m, m, num_bits=bits, narrow_range=True,
                                                      axis=len(per_channel_shape) - 1)
    return q if per_channel_shape == shape else ops.reshape(q, shape)


# Links made by link_requantization (weak: a link never keeps a layer alive, and Keras never
# tracks or saves it): activation quantizer -> (the Conv2D / DepthwiseConv2D it quantizes, that
# layer's input quantizer); weight layer -> its input quantizer.
_OUTPUT_LINKS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_INPUT_LINKS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_EMULATE = [True]


@contextlib.contextmanager
def converting():
    """Plain fake quantization only (no bias grid, no two-step rounding): what the TFLite
    converter must trace to read the ranges and weights. edgekit's quantize_keras enters it."""
    _EMULATE.append(False)
    try:
        yield
    finally:
        _EMULATE.pop()


def _round_away(x):
    """Round half away from zero (TFLite's integer rounding)."""
    return ops.sign(x) * ops.floor(ops.abs(x) + 0.5)


def _straight_through(x, y):
    """y forward, the identity backward."""
    return x + ops.stop_gradient(y - x)


class _QuantWeights:
    """Shared by the three weight layers: the weight bits, the weight range and its clipping
    ratio, the fake-quantized bias and activation."""

    def __init__(self, *args, weight_bits: int = 8, **kwargs):
        super().__init__(*args, **kwargs)
        if weight_bits not in (4, 8):
            raise EdgekitError(f"--bits {weight_bits}: pass 8 or 4")
        self.weight_bits = int(weight_bits)

    def _channels(self) -> int:
        """The output channels that have a weight range each (0: one range for the kernel)."""
        raise NotImplementedError

    def build(self, input_shape):
        super().build(input_shape)
        # The clipping ratio of the weight range, per output channel (or one): 1.0 (the largest
        # magnitude, as the converter quantizes) unless fit_clipping chose a smaller one.
        shape = (self._channels(),) if self._channels() else ()
        self.clip = self.add_weight(shape=shape, initializer=keras.initializers.Ones(), trainable=False,
                                    name="clip")

    # Keras' Conv2D and Dense save only their kernel and bias: every variable, clip included.
    def save_own_variables(self, store):
        for i, v in enumerate(self.weights):
            store[str(i)] = v

    def load_own_variables(self, store):
        if len(store.keys()) != len(self.weights):
            raise ValueError(f"layer '{self.name}' expects {len(self.weights)} variables, the file has "
                             f"{len(store.keys())}: it was saved by another edgekit version; quantize the "
                             "model again")
        for i, v in enumerate(self.weights):
            v.assign(store[str(i)])

    def weight_range(self):
        """The fake quantization's range [-m, m] of the kernel: m, the largest magnitude times the
        clipping ratio, per output channel (a vector) or one (Dense)."""
        channels = self._channels()
        if not channels:
            return _weight_range(self.kernel, None) * self.clip
        return _weight_range(ops.reshape(self.kernel, (-1, channels)), (0,)) * self.clip

    def weight_scales(self):
        """The weights' quantization scale: per output channel (a vector), or one (Dense)."""
        return self.weight_range() / (2 ** (self.weight_bits - 1) - 1)

    def quantized_bias(self):
        """The bias as the int8 model holds it: an int32 on the grid input scale x weight scale
        (when the layer is linked to its input's quantizer), else the float bias."""
        source = _INPUT_LINKS.get(self)
        if source is None or not _EMULATE[-1]:
            return self.bias
        grid = ops.stop_gradient(source.scale() * self.weight_scales())
        return _straight_through(self.bias, _round_away(self.bias / grid) * grid)

    def _finish(self, outputs):
        if self.use_bias:
            outputs = ops.add(outputs, self.quantized_bias())
        return self.activation(outputs) if self.activation is not None else outputs

    def get_config(self):
        return {**super().get_config(), "weight_bits": self.weight_bits}


@keras.saving.register_keras_serializable(package="edgekit")
class QuantConv2D(_QuantWeights, keras.layers.Conv2D):
    """Conv2D whose kernel is fake-quantized per output channel (TFLite's CONV_2D int8 filter)."""

    def _channels(self) -> int:
        return int(self.filters)

    def quantized_kernel(self):
        k = self.kernel
        return _fake_quant_kernel(k, self.weight_bits, self.weight_range(), tuple(int(d) for d in k.shape))

    def call(self, inputs):
        return self._finish(self.convolution_op(inputs, self.quantized_kernel()))


@keras.saving.register_keras_serializable(package="edgekit")
class QuantDepthwiseConv2D(_QuantWeights, keras.layers.DepthwiseConv2D):
    """DepthwiseConv2D whose kernel is fake-quantized per output channel (input channel x
    multiplier, TFLite's DEPTHWISE_CONV_2D filter)."""

    def _channels(self) -> int:
        return int(self.kernel.shape[-2] * self.kernel.shape[-1])

    def quantized_kernel(self):
        k = self.kernel
        kh, kw = (int(d) for d in k.shape[:2])
        return _fake_quant_kernel(k, self.weight_bits, self.weight_range(), (kh, kw, self._channels()))

    def call(self, inputs):
        outputs = ops.depthwise_conv(inputs, self.quantized_kernel(), strides=self.strides, padding=self.padding,
                                     dilation_rate=self.dilation_rate, data_format=self.data_format)
        return self._finish(outputs)


@keras.saving.register_keras_serializable(package="edgekit")
class QuantDense(_QuantWeights, keras.layers.Dense):
    """Dense whose kernel is fake-quantized per tensor (TFLite's FULLY_CONNECTED int8 weights)."""

    def _channels(self) -> int:
        return 0

    def quantized_kernel(self):
        return _fake_quant_kernel(self.kernel, self.weight_bits, self.weight_range())

    def call(self, inputs, training=None):
        return self._finish(ops.matmul(inputs, self.quantized_kernel()))


@keras.saving.register_keras_serializable(package="edgekit")
class ActivationQuantizer(keras.layers.Layer):
    """Per-tensor asymmetric 8-bit fake quantization of an activation. The range [min, max]
    (always containing 0) is the first training batch's, then a moving average with `momentum`;
    inference uses the stored range."""

    def __init__(self, momentum: float = 0.99, **kwargs):
        super().__init__(**kwargs)
        self.momentum = float(momentum)

    def build(self, input_shape):
        zero = keras.initializers.Zeros()
        self.range_min = self.add_weight(shape=(), initializer=zero, trainable=False, name="range_min")
        self.range_max = self.add_weight(shape=(), initializer=zero, trainable=False, name="range_max")
        self.seen = self.add_weight(shape=(), initializer=zero, trainable=False, name="seen")

    def call(self, x, training=None):
        if training:
            lo = ops.minimum(ops.min(ops.stop_gradient(x)), 0.0)
            hi = ops.maximum(ops.max(ops.stop_gradient(x)), 0.0)
            first = ops.equal(self.seen, 0.0)
            m = self.momentum
            self.range_min.assign(ops.where(first, lo, m * self.range_min + (1 - m) * lo))
            self.range_max.assign(ops.where(first, hi, m * self.range_max + (1 - m) * hi))
            self.seen.assign(1.0)
        lo, hi = self.range_min, ops.maximum(self.range_max, self.range_min + 1e-6)
        link = _OUTPUT_LINKS.get(self)
        if link is not None and _EMULATE[-1]:
            x = _straight_through(x, self._requantized(x, *link))
        return keras.quantizers.fake_quant_with_min_max_vars(x, lo, hi, num_bits=8, narrow_range=False)

    def scale(self):
        """The step of this tensor's int8 grid (fake quantization nudges the range, not its width)."""
        return (ops.maximum(self.range_max, self.range_min + 1e-6) - self.range_min) / 255.0

    def _requantized(self, x, layer, source):
        """x (the output of `layer`, on its input's grid `source`) rounded as TFLite requantizes
        a convolution's accumulator: to 2^-R of an output step (R = the right shift of the
        channel's multiplier M = input scale x weight scale / output scale, M = q 2^-R with q in
        [0.5, 1)), then to a step, ties away from zero. The result is on the output grid."""
        step = ops.stop_gradient(self.scale())
        m = ops.stop_gradient(source.scale() * layer.weight_scales() / step)
        exponent = ops.floor(ops.log2(m)) + 1.0                # M = q 2^exponent, q in [0.5, 1)
        fine = ops.power(2.0, ops.maximum(-exponent, 0.0))     # 2^R
        z = x / step
        return _round_away(_round_away(z * fine) / fine) * step

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum}


QUANT_LAYERS = {"Conv2D": QuantConv2D, "DepthwiseConv2D": QuantDepthwiseConv2D, "Dense": QuantDense}
EDGEKIT_LAYERS = (*(c.__name__ for c in QUANT_LAYERS.values()), ActivationQuantizer.__name__)


def _is_relu(layer) -> bool:
    name = type(layer).__name__
    if name == "ReLU":
        cfg = layer.get_config()
        return (not cfg.get("negative_slope") and not cfg.get("threshold")
                and cfg.get("max_value") in (None, 6, 6.0))
    if name == "Activation":
        return layer.get_config().get("activation") in _RELU_ACTIVATIONS
    return False


def _last_axis_bn(layer) -> bool:
    if not isinstance(layer, keras.layers.BatchNormalization):
        return False
    axis = layer.get_config().get("axis", -1)
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    return axis in (-1, len(layer.input.shape) - 1)


_MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate")


def _plan(model):
    """On the original graph, in model order: {BatchNormalization name: the weighted layer it
    folds into}, the names of the layers whose output gets an activation quantizer (the last
    layer of each fused op: weighted layer -> folded BN -> ReLU, or merge -> ReLU), and {weighted
    layer: its own softmax / sigmoid / tanh activation}, which the QAT model applies after the
    quantizer as a layer of its own (TFLite has it as an op with a fixed output scale)."""
    from edgekit.train.graph import consumers, kind
    users = consumers(model)
    outputs = {t._keras_history.operation.name for t in model.outputs}

    def sole(layer):
        u = users.get(layer.name, [])
        return u[0] if len(u) == 1 and layer.name not in outputs else None

    folds, quantized, fused, split = {}, set(), set(), {}
    for layer in model.layers:
        name = type(layer).__name__
        if layer.name in fused or name in _SAME_SCALE:
            continue
        if name == "Activation" and layer.get_config().get("activation") in _FIXED_SCALE_ACTIVATIONS:
            continue
        tail = layer
        activation = layer.get_config().get("activation") if kind(layer) is not None else None
        if activation not in (None, "linear", *_RELU_ACTIVATIONS):
            split[layer.name] = activation      # softmax, sigmoid, tanh: TFLite ops of their own
            quantized.add(layer.name)
            continue
        if kind(layer) is not None:
            nxt = sole(tail)
            if nxt is not None and _last_axis_bn(nxt):
                folds[nxt.name] = layer
                fused.add(nxt.name)
                tail = nxt
        if kind(layer) is not None and layer.get_config().get("activation") in ("linear", None) or name in _MERGES:
            nxt = sole(tail)
            if nxt is not None and _is_relu(nxt):
                fused.add(nxt.name)
                tail = nxt
        quantized.add(tail.name)
    return folds, quantized, split


def link_requantization(model) -> int:
    """Link every Conv2D / DepthwiseConv2D / Dense QAT layer of `model` to its input's activation
    quantizer (for the int32 bias grid) and every quantizer of a Conv2D / DepthwiseConv2D output
    (directly, or after its fused ReLU) to that layer (for TFLite's two-step rounding); see the
    module docstring. Layers between a quantizer and a weight layer that keep the scale (pooling,
    padding, reshapes) are looked through. Returns how many quantizers were linked."""
    from edgekit.train.graph import producers

    def source_quantizer(layer):
        ins = producers(layer)
        while len(ins) == 1 and not isinstance(ins[0], ActivationQuantizer):
            if type(ins[0]).__name__ not in _SAME_SCALE or type(ins[0]).__name__ in ("InputLayer", "Softmax"):
                return None
            ins = producers(ins[0])
        return ins[0] if len(ins) == 1 else None

    linked = 0
    for layer in model.layers:
        if isinstance(layer, _QuantWeights):
            source = source_quantizer(layer)
            if source is not None:
                _INPUT_LINKS[layer] = source
        if not isinstance(layer, ActivationQuantizer):
            continue
        ins = producers(layer)
        if len(ins) == 1 and _is_relu(ins[0]):
            ins = producers(ins[0])
        if len(ins) == 1 and isinstance(ins[0], (QuantConv2D, QuantDepthwiseConv2D)) and ins[0] in _INPUT_LINKS:
            _OUTPUT_LINKS[layer] = (ins[0], _INPUT_LINKS[ins[0]])
            linked += 1
    return linked


def fold_batchnorm(layer, bn) -> list[np.ndarray]:
    """[kernel, bias] of `layer` (Conv2D, DepthwiseConv2D, Dense) with the BatchNormalization
    after it folded in: per output channel s = gamma / sqrt(moving_variance + epsilon),
    kernel * s, (bias - moving_mean) * s + beta."""
    from edgekit.train.graph import kernel, kind
    w = np.asarray(kernel(layer).numpy(), np.float64)
    b = np.asarray(layer.bias.numpy(), np.float64) if layer.use_bias else 0.0
    params = {v.name: np.asarray(v.numpy(), np.float64) for v in bn.weights}
    n = params["moving_mean"].shape[0]
    s = params.get("gamma", np.ones(n)) / np.sqrt(params["moving_variance"] + bn.epsilon)
    bias = (b - params["moving_mean"]) * s + params.get("beta", np.zeros(n))
    w = w * s.reshape(w.shape[-2:]) if kind(layer) == "depthwise" else w * s
    return [w.astype(np.float32), np.broadcast_to(bias, (n,)).astype(np.float32)]


def quantize_model(model, bits: int = 8, calib: np.ndarray | None = None, constraints=None):
    """The QAT model of `model` (see the module docstring): returns (qat model, constraints on
    it). `calib`: inputs whose min / max start each activation range (as the converter's
    calibration would set it); without them the first training batch does. `constraints`
    (pruning masks, clusters) are carried over to the folded kernels."""
    from edgekit.train.cluster import per_channel
    from edgekit.train.graph import kind
    if bits not in (4, 8):
        raise EdgekitError(f"--bits {bits}: pass 8 or 4")
    if len(model.inputs) != 1:
        raise EdgekitError(f"the model has {len(model.inputs)} inputs; quantization-aware training takes "
                           "models with one input")
    folds, quantized, split = _plan(model)
    folded = {layer.name: bn for bn, layer in ((model.get_layer(b), l) for b, l in folds.items())}
    made = {}

    def clone(layer):
        cls = QUANT_LAYERS.get(type(layer).__name__) if kind(layer) is not None else None
        config = layer.get_config()
        if cls is None:
            return layer.__class__.from_config(config)
        if layer.name in folded:
            config["use_bias"] = True
        if layer.name in split:
            config["activation"] = "linear"
        return cls.from_config({**config, "weight_bits": bits})

    def quantize_input(t):
        if isinstance(t, keras.KerasTensor) and type(t._keras_history.operation).__name__ == "InputLayer":
            if "input" not in made:
                made["input"] = ActivationQuantizer(name="input_quant")(t)
            return made["input"]
        return t

    def call(layer, *args, **kwargs):
        if layer.name in folds:                 # folded into the layer before: not called
            out = args[0]
        else:
            out = layer(*keras.tree.map_structure(quantize_input, args), **kwargs)
        if layer.name in quantized:
            out = ActivationQuantizer(name=f"{layer.name}_quant")(out)
        if layer.name in split:
            out = keras.layers.Activation(split[layer.name], name=f"{layer.name}_{split[layer.name]}")(out)
        return out

    functional = model if type(model).__name__ == "Functional" else _functional(model)
    cloned = keras.models.clone_model(functional, clone_function=clone, call_function=call)
    outputs = cloned.outputs[0] if len(cloned.outputs) == 1 else cloned.outputs
    qmodel = keras.Model(cloned.inputs[0], outputs, name=model.name)     # one input, not a list of one
    for layer in qmodel.layers:
        if isinstance(layer, ActivationQuantizer) or not layer.weights:
            continue
        source = functional.get_layer(layer.name)
        weights = fold_batchnorm(source, folded[layer.name]) if layer.name in folded else source.get_weights()
        for v, w in zip(layer.weights, weights):        # a quantized layer's clip stays 1.0 here
            v.assign(w)
    link_requantization(qmodel)
    if calib is not None:
        calibrate(functional, qmodel, quantized, calib)
    rebound = None
    if constraints:
        rebound = per_channel(constraints).rebind(qmodel)
        rebound.apply()
    if bits == 4:
        for layer in qmodel.layers:
            if isinstance(layer, _QuantWeights):
                fit_clipping(layer)
    return qmodel, rebound


def fit_clipping(layer, ratios=np.linspace(0.5, 1.0, 51)) -> np.ndarray:
    """Set `layer`'s clipping ratio, per output channel (one for Dense), to the one in `ratios`
    whose quantized weights are nearest the float weights (least squared error). At 4 bits the
    largest weight alone should not set the step: 15 levels spread over a rare outlier leave most
    weights on two or three of them. Returns the ratios chosen."""
    from edgekit.train.graph import channel_view
    levels = 2 ** (layer.weight_bits - 1) - 1
    w = np.asarray(layer.kernel.numpy(), np.float64)
    if isinstance(layer, QuantDense):            # one range for the whole kernel
        wc = w.reshape(-1, 1)
    else:
        wc = channel_view(layer, w)
        wc = wc.reshape(-1, wc.shape[-1])
    m = np.maximum(np.abs(wc).max(axis=0), 1e-8)
    errors = []
    for r in ratios:
        step = r * m / levels
        q = np.clip(np.round(wc / step), -levels, levels) * step
        errors.append(((q - wc) ** 2).sum(axis=0))
    best = np.asarray(ratios)[np.argmin(np.stack(errors), axis=0)]
    layer.clip.assign(best.astype(np.float32) if len(layer.clip.shape) else np.float32(best[0]))
    return best


def _functional(model):
    """A Sequential model as a Functional one (same layers)."""
    inp = keras.Input(batch_shape=model.inputs[0].shape)
    return keras.Model(inp, model(inp))


def calibrate(model, qmodel, quantized, x: np.ndarray, batch: int = 256) -> None:
    """Start each activation quantizer's range at the min / max of the tensor it quantizes over
    `x`, computed on the float model (as the converter's calibration does)."""
    names = sorted(quantized)
    probe = keras.Model(model.inputs[0], [model.inputs[0]] + [model.get_layer(n).output for n in names])
    lo = hi = None
    for i in range(0, len(x), batch):
        outs = probe(x[i:i + batch], training=False)
        mins = np.array([float(ops.min(o)) for o in outs])
        maxs = np.array([float(ops.max(o)) for o in outs])
        lo = mins if lo is None else np.minimum(lo, mins)
        hi = maxs if hi is None else np.maximum(hi, maxs)
    for name, a, b in zip(["input"] + names, lo, hi):
        q = qmodel.get_layer(f"{name}_quant")
        q.range_min.assign(min(float(a), 0.0))
        q.range_max.assign(max(float(b), 0.0))
        q.seen.assign(1.0)


def strip(model):
    """A stock Keras model computing what the QAT model computes in float: each quantized layer
    becomes its Keras layer holding the fake-quantized weights, the activation quantizers go
    (their ranges with them: for an int8 model with the QAT ranges, export the QAT model)."""
    stock = {cls: getattr(keras.layers, name) for name, cls in QUANT_LAYERS.items()}

    def clone(layer):
        cls = stock.get(type(layer))
        config = layer.get_config()
        if cls is None:
            return layer.__class__.from_config(config)
        config.pop("weight_bits", None)
        return cls.from_config(config)

    def call(layer, *args, **kwargs):
        if isinstance(layer, ActivationQuantizer):
            return args[0]
        return layer(*args, **kwargs)

    plain = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for layer in plain.layers:
        if not layer.weights:
            continue
        source = model.get_layer(layer.name)
        weights = source.get_weights()
        if type(source) in stock:
            weights = [np.asarray(source.quantized_kernel())] + weights[1:len(layer.weights)]
        layer.set_weights(weights)
    return plain
