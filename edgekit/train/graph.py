"""What the training stages need to know about a Keras 3 model's layers and its graph.

The weighted layers every stage handles are Conv2D, DepthwiseConv2D and Dense (the TFLite
CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED that edgekit compiles); BatchNormalization is
folded, never compressed. Any other layer holding trainable weights (an LSTM, a custom layer)
stops a stage with one sentence naming it, unless the user skips it.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from edgekit.errors import UnsupportedModelError


def _keras():
    import keras
    return keras


def weighted_kinds():
    keras = _keras()
    return {keras.layers.Conv2D: "conv", keras.layers.DepthwiseConv2D: "depthwise", keras.layers.Dense: "dense"}


def kind(layer) -> str | None:
    """'conv', 'depthwise' or 'dense' for a layer whose kernel the stages compress, else None."""
    for cls, name in weighted_kinds().items():
        if isinstance(layer, cls) and type(layer).__name__ in (cls.__name__, "Quant" + cls.__name__):
            return name
    return None


def kernel(layer):
    """The kernel variable of a Conv2D, DepthwiseConv2D or Dense layer."""
    for v in layer.weights:
        if v.name == "kernel":
            return v
    raise UnsupportedModelError(f"layer '{layer.name}' has no kernel")


def channel_view(layer, w):
    """The kernel as [..., output channels] (a depthwise kernel's in x multiplier flattened, in the
    order TFLite's [1, kh, kw, in * multiplier] filter has them)."""
    if kind(layer) == "depthwise":
        return w.reshape(*w.shape[:-2], w.shape[-2] * w.shape[-1])
    return w


def stage_layers(model, stage: str, skip=()):
    """The layers `stage` compresses, in model order; refuses layers it cannot handle."""
    skip = set(skip)
    unknown = skip - {layer.name for layer in model.layers}
    if unknown:
        raise UnsupportedModelError(f"--skip names no layer of the model: {', '.join(sorted(unknown))}")
    out = []
    for layer in model.layers:
        if layer.name in skip:
            continue
        if kind(layer) is not None:
            out.append(layer)
        elif layer.trainable_weights and not _foldable(layer):
            raise UnsupportedModelError(
                f"layer '{layer.name}' ({type(layer).__name__}) cannot go through {stage}: edgekit "
                f"compresses Conv2D, DepthwiseConv2D and Dense layers; pass --skip {layer.name} to leave "
                "it as it is")
    return out


def _foldable(layer) -> bool:
    keras = _keras()
    return isinstance(layer, keras.layers.BatchNormalization)


def producers(layer) -> list:
    """The layers whose outputs `layer` takes (its first call in the model)."""
    node = layer._inbound_nodes[0] if layer._inbound_nodes else None
    if node is None:
        return []
    return [t._keras_history.operation for t in node.input_tensors]


def consumers(model) -> dict:
    """layer name -> the layers that take its output, in model order."""
    out = defaultdict(list)
    for layer in model.layers:
        for p in producers(layer):
            out[p.name].append(layer)
    return out


def is_softmax_layer(layer) -> bool:
    """A layer that is only a softmax: Softmax, or Activation('softmax') (its input is the logits)."""
    name = type(layer).__name__
    return name == "Softmax" or (name == "Activation" and layer.get_config().get("activation") == "softmax")


def layer_macs(layer) -> int:
    """Multiply-accumulates of one Conv2D / DepthwiseConv2D / Dense layer for one input (0 for others)."""
    k = kind(layer)
    if k is None:
        return 0
    out = layer.output.shape
    w = layer.weights[0].shape
    if k == "conv":
        return int(np.prod(out[1:])) * int(np.prod(w[:-1]))
    if k == "depthwise":
        return int(np.prod(out[1:])) * int(w[0] * w[1])
    return int(np.prod(out[1:-1] or (1,))) * int(w[0] * w[1])
