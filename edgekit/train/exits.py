"""Early-exit heads for a Keras 3 classifier: attach small classifiers part way through the
backbone, train them, and report what each exit costs and scores.

    multi = attach_exits(model, at=(0.25, 0.5))          # or after=("block1_pw_relu", ...)
    train_exits(multi, train, validation, epochs=3)      # the sum of every exit's cross-entropy
    exit_report(multi, validation)                       # per exit: layer, MACs, accuracy

The model's outputs become [exit_1, ..., exit_k, final]: each head is a Keras layer chain named
`exit<k>_*` reading one backbone tensor, ending in the final output's softmax. An exit can only go
where the whole state of the network passes through one tensor (a "cut": no earlier layer's
output skips past it, so a residual block's inside is not one) and that tensor is a feature map
[N, H, W, C]; `at` picks, for each fraction, the cut whose backbone MACs are nearest that share of
the model's, among cuts that end a block (the next layer is not BatchNormalization or an
activation of the same op).

Heads (`head`):
  'gap'  GlobalAveragePooling2D -> Dense(classes) -> Softmax: C * classes MACs, the cheapest;
  'dw'   DepthwiseConv2D 3x3 -> ReLU -> GlobalAveragePooling2D -> Dense -> Softmax: 9 * H * W * C
         more, a little spatial mixing before the pooling.

Training (`train_exits`) is Keras' fit on the multi-output model: the weighted sum of every output's
cross-entropy (weights default to 1 each), optionally with self-distillation (`distill` alpha:
each exit learns from a mix of the labels and the final exit's temperature-softened predictions,
taken from the model before this training), and optionally with the backbone frozen (only the
heads learn; BatchNormalization keeps its statistics) for a model that is already trained.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import keras

from edgekit.errors import EdgekitError
from edgekit.train.data import Data
from edgekit.train.graph import consumers, is_softmax_layer, kind, layer_macs

HEADS = ("gap", "dw")
# Layers that continue the op before them (a head after the op would read its unfinished output).
_CONTINUES = ("BatchNormalization", "ReLU", "Activation", "LeakyReLU", "PReLU", "ELU")


@dataclass
class Cut:
    """A layer after which the whole state passes through its one output tensor."""
    layer: str
    index: int
    macs: int               # MACs of the backbone up to and including this layer
    fraction: float         # macs / the model's MACs
    block_end: bool         # the next layer does not continue this one's op (BN, activation)
    shape: tuple


def cuts(model) -> list[Cut]:
    """Every place an exit can go, in model order (see the module docstring)."""
    layers = model.layers
    index = {layer.name: i for i, layer in enumerate(layers)}
    users = consumers(model)
    total = sum(layer_macs(layer) for layer in layers) or 1
    out, reach, running = [], -1, 0
    for i, layer in enumerate(layers):
        running += layer_macs(layer)
        mine = [index[u.name] for u in users.get(layer.name, [])]
        # no edge from an earlier layer jumps past i
        if reach <= i and mine and len(layer.output.shape) == 4 and type(layer).__name__ != "InputLayer" \
                and running < total:
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            block_end = not (len(mine) == 1 and nxt is not None and type(nxt).__name__ in _CONTINUES)
            out.append(Cut(layer.name, i, running, running / total, block_end,
                           tuple(int(d) for d in layer.output.shape[1:])))
        reach = max([reach] + mine)
    return out


def choose_exits(model, after=None, at=None) -> list[Cut]:
    """The cuts named by `after` (layer names) or nearest the MAC fractions `at`, in model order."""
    if (after is None) == (at is None):
        raise EdgekitError("say where the exits go: after=LAYER,... (by name) or at=FRACTION,... (of the MACs)")
    available = cuts(model)
    by_name = {c.layer: c for c in available}
    if after is not None:
        chosen = []
        names = {layer.name for layer in model.layers}
        for name in after:
            if name not in names:
                raise EdgekitError(f"--after {name}: the model has no layer '{name}'")
            if name not in by_name:
                ends = ", ".join(c.layer for c in available if c.block_end) or "none"
                raise EdgekitError(f"--after {name}: an exit cannot go after '{name}' (its output is not a "
                                   f"feature map the rest of the model reads alone, or it is the last one); "
                                   f"places that can take one: {ends}")
            chosen.append(by_name[name])
    else:
        ends = [c for c in available if c.block_end]
        if not ends:
            raise EdgekitError("the model has no place for an exit (no feature map that carries its whole state)")
        chosen = []
        for f in at:
            if not 0.0 < float(f) < 1.0:
                raise EdgekitError(f"--at {f:g}: pass a fraction of the model's MACs between 0 and 1")
            best = min(ends, key=lambda c: (abs(c.fraction - float(f)), c.index))
            chosen.append(best)
    chosen = sorted({c.index: c for c in chosen}.values(), key=lambda c: c.index)
    if len(chosen) < len(after if after is not None else at):
        raise EdgekitError("two exits would go to the same place: name distinct layers or pass farther-apart "
                           f"fractions (places: {', '.join(f'{c.layer} ({c.fraction:.0%})' for c in available)})")
    return chosen


def _classes(model) -> int:
    shape = model.outputs[-1].shape
    if len(model.outputs) != 1 or len(shape) != 2 or int(shape[-1]) < 2:
        raise EdgekitError("exits go on a classifier with one output [N, classes]")
    return int(shape[-1])


def _head(x, k: int, head: str, classes: int, final_activation: str):
    L = keras.layers
    if head == "dw":
        x = L.DepthwiseConv2D(3, padding="same", name=f"exit{k}_dw")(x)
        x = L.ReLU(name=f"exit{k}_relu")(x)
    x = L.GlobalAveragePooling2D(name=f"exit{k}_gap")(x)
    x = L.Dense(classes, name=f"exit{k}_logits")(x)
    if final_activation == "softmax":
        x = L.Softmax(name=f"exit{k}_softmax")(x)
    return x


def _activation(tensor) -> str:
    """'softmax' when the layer making `tensor` ends in a softmax, else 'linear'."""
    op = tensor._keras_history.operation
    own = kind(op) == "dense" and op.get_config().get("activation") == "softmax"
    return "softmax" if is_softmax_layer(op) or own else "linear"


def attach_exits(model, after=None, at=None, head: str = "gap", seed: int = 0):
    """A model computing `model` plus exit heads (see the module docstring): outputs
    [exit_1, ..., exit_k, final]. The backbone's layers are `model`'s own (shared, not copied)."""
    if head not in HEADS:
        raise EdgekitError(f"--head {head}: pass one of {', '.join(HEADS)}")
    if len(model.inputs) != 1:
        raise EdgekitError("exits go on a model with one input")
    classes = _classes(model)
    chosen = choose_exits(model, after=after, at=at)
    keras.utils.set_random_seed(seed)
    activation = _activation(model.outputs[0])
    heads = [_head(model.get_layer(c.layer).output, k, head, classes, activation)
             for k, c in enumerate(chosen, start=1)]
    return keras.Model(model.inputs[0], heads + [model.outputs[0]], name=f"{model.name}_exits")


def exit_layers(multi) -> list[list]:
    """Per output of a multi-exit model, the layers of its head (empty for the final output)."""
    out = []
    for t in multi.outputs[:-1]:
        k = t._keras_history.operation.name.split("_")[0]
        out.append([layer for layer in multi.layers if layer.name.startswith(k + "_")])
    return out + [[]]


def exit_points(multi) -> list[str]:
    """The backbone layer each exit reads (the final output: its last layer)."""
    points = []
    for head in exit_layers(multi)[:-1]:
        first = head[0]
        points.append(first._inbound_nodes[0].input_tensors[0]._keras_history.operation.name)
    return points + [multi.outputs[-1]._keras_history.operation.name]


def exit_macs(multi) -> list[int]:
    """MACs of each exit when the model stops there: the backbone up to its point plus its head
    (the final output: the backbone alone)."""
    heads = exit_layers(multi)
    head_names = {layer.name for h in heads for layer in h}
    backbone = [layer for layer in multi.layers if layer.name not in head_names]
    running, upto = 0, {}
    for layer in backbone:
        running += layer_macs(layer)
        upto[layer.name] = running
    out = []
    for head, point in zip(heads, exit_points(multi)):
        out.append(upto[point] + sum(layer_macs(layer) for layer in head))
    return out


def train_exits(multi, train: Data, validation: Data | None = None, epochs: int = 3, learning_rate: float = 1e-3,
                batch_size: int = 64, weights=None, distill: float = 0.0, temperature: float = 4.0,
                freeze_backbone: bool = False, verbose: int = 1):
    """Train a multi-exit model in place with Keras' fit (see the module docstring). `weights`: one
    loss weight per output (default 1 each); `distill`: the share of each exit's target taken from
    the final exit's softened predictions (0: labels only)."""
    if not train.classification:
        raise EdgekitError("exits are trained on class labels: pass class indices or one-hot labels as y")
    n = len(multi.outputs)
    weights = [1.0] * n if weights is None else [float(w) for w in weights]
    if len(weights) != n or min(weights) < 0 or not any(weights):
        raise EdgekitError(f"--loss-weights: pass {n} non-negative weights, one per output (exits, then the final)")
    if not temperature > 0:
        raise EdgekitError(f"--temperature {temperature:g}: pass a positive number")
    if not 0.0 <= distill <= 1.0:
        raise EdgekitError(f"--distill {distill:g}: pass the share of the soft targets, from 0 to 1")
    heads = exit_layers(multi)
    head_names = {layer.name for h in heads for layer in h}
    frozen = []
    if freeze_backbone:
        for layer in multi.layers:
            if layer.name not in head_names and layer.trainable:
                frozen.append(layer)
                layer.trainable = False
    onehot = np.eye(train.classes, dtype=np.float32)[train.y]
    targets = [onehot] * n
    if distill > 0:
        soft = _softened_final(multi, train.x, temperature)
        mixed = (1.0 - distill) * onehot + distill * soft
        targets = [mixed] * (n - 1) + [onehot]
    losses = [keras.losses.CategoricalCrossentropy(from_logits=_activation(t) != "softmax")
              for t in multi.outputs]
    multi.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=losses, loss_weights=weights,
                  metrics=[["accuracy"]] * n)
    val = None
    if validation is not None:
        val = (validation.x, [np.eye(train.classes, dtype=np.float32)[validation.y]] * n)
    try:
        multi.fit(train.x, targets, batch_size=batch_size, epochs=epochs, shuffle=True,
                  validation_data=val, verbose=verbose)
    finally:
        for layer in frozen:
            layer.trainable = True
    return multi


def _softened_final(multi, x: np.ndarray, temperature: float, batch: int = 512) -> np.ndarray:
    """softmax(final logits / T) of the model as it is now (the teacher for self-distillation)."""
    from edgekit.train.tune import logits_model
    final = keras.Model(multi.inputs[0], multi.outputs[-1])
    logits = logits_model(final)
    z = np.concatenate([np.asarray(logits(x[i:i + batch], training=False)) for i in range(0, len(x), batch)])
    if logits is final and _activation(multi.outputs[-1]) == "softmax":
        z = np.log(np.clip(z, 1e-12, 1.0))
    z = z / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


def exit_report(multi, validation: Data, batch: int = 256) -> list[dict]:
    """Per output (exits, then the final): the layer it reads, its MACs and their share of the
    full model's, and its accuracy on `validation`."""
    ys = [[] for _ in multi.outputs]
    for i in range(0, len(validation), batch):
        outs = multi(validation.x[i:i + batch], training=False)
        for k, o in enumerate(outs):
            ys[k].append(np.asarray(o))
    macs = exit_macs(multi)
    rows = []
    for k, (point, m) in enumerate(zip(exit_points(multi), macs)):
        y = np.concatenate(ys[k])
        rows.append({"exit": k + 1 if k < len(macs) - 1 else "final", "after": point, "macs": int(m),
                     "macs_fraction": round(m / macs[-1], 4),
                     "accuracy": float(np.mean(np.argmax(y, axis=1) == validation.y))})
    return rows


def format_exit_report(rows: list[dict]) -> str:
    lines = ["| exit | after layer | MACs | of the full model | accuracy |", "|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['exit']} | {r['after']} | {r['macs']:,} | {r['macs_fraction']:.0%} | "
                     f"{r['accuracy']:.2%} |")
    return "\n".join(lines)
