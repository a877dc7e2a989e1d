"""Fine-tuning as every stage does it: Keras' own fit (its progress bars, its callbacks), on the
labels or a teacher's soft targets (keras.distillation), the stage's weight constraints kept
after every step. BatchNormalization keeps learning its statistics: after pruning, the
convolutions' outputs change, and frozen statistics measurably slow the recovery (on the
Fashion-MNIST DS-CNN at 80 % sparsity, 3 epochs of 6,000 images: 68 % with BN learning, 41 %
frozen)."""
from __future__ import annotations

import warnings

import numpy as np

import keras

from edgekit.train.data import Data


def logits_model(model):
    """`model` up to its logits: the input of a final softmax (the same layers, so training it
    trains `model`), or `model` itself when it does not end in one."""
    from edgekit.train.graph import is_softmax_layer
    last = model.outputs[0]._keras_history.operation
    if is_softmax_layer(last):
        return keras.Model(model.inputs, last.input)
    return model


def logits_distillation(temperature: float):
    """Hinton's soft-target loss, T^2 * KL(softmax(teacher / T) || softmax(student / T)).

    The loss is given as a KLDivergence instance: Keras 3.15.1's LogitsDistillation softens the
    logits into probabilities only for an instance, and its default, the string "kl_divergence",
    becomes a plain function that it applies to the scaled logits themselves, clipped to
    [1e-7, 1] (measured: the loss went negative and the distilled student learned nothing)."""
    return keras.distillation.LogitsDistillation(temperature=temperature, loss=keras.losses.KLDivergence())


def fit(model, train: Data, validation: Data | None, epochs: int, learning_rate: float, batch_size: int,
        callbacks=(), teacher=None, temperature: float = 4.0, alpha: float = 0.5, verbose: int = 1,
        decay: bool = False):
    """Train `model` in place: on the labels, or distilled from `teacher` (a loss of alpha times
    the temperature-softened logit distillation loss plus 1 - alpha times the label loss). Adam at
    `learning_rate`; with `decay`, falling to 0 along a cosine over the run's steps (a fine-tune
    that settles: quantization-aware training uses it; at a constant rate 4-bit QAT of the
    Fashion-MNIST DS-CNN ended 0.9 pt lower)."""
    if decay:
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, max(1, -(-len(train.x) // batch_size) * epochs))
    optimizer = keras.optimizers.Adam(learning_rate)
    if teacher is None:
        loss = "sparse_categorical_crossentropy" if train.classification else "mean_squared_error"
        metrics = ["accuracy"] if train.classification else []
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
        trained = model
    else:
        student = logits_model(model)
        teacher_logits = logits_model(teacher)
        if train.classification:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=student is not model)
            distill = logits_distillation(temperature)
        else:
            loss = "mean_squared_error"
            distill = keras.distillation.LogitsDistillation(temperature=1.0, loss="mean_squared_error")
        # The Distiller freezes its teacher, whose layers are the caller's: they are thawed after.
        frozen = [(layer, layer.trainable) for layer in teacher.layers] + [(teacher, teacher.trainable)]
        trained = keras.distillation.Distiller(teacher=teacher_logits, student=student,
                                               distillation_losses=distill, student_loss_weight=1.0 - alpha)
        trained.compile(optimizer=optimizer, loss=loss)
    val = (validation.x, validation.y) if validation is not None else None
    try:
        trained.fit(train.x, train.y, batch_size=batch_size, epochs=epochs, shuffle=True, callbacks=list(callbacks),
                    validation_data=val if teacher is None else None, verbose=verbose)
    finally:
        if teacher is not None:
            for layer, trainable in frozen:
                layer.trainable = trainable
    return model


def evaluate(model, data: Data, batch_size: int = 256) -> float:
    """Accuracy of a classifier (fraction), or the mean squared error of a regression."""
    with warnings.catch_warnings():      # Keras 2 files' models take a list of one input
        warnings.filterwarnings("ignore", message="The structure of `inputs`")
        y = np.concatenate([np.asarray(model(data.x[i:i + batch_size], training=False))
                            for i in range(0, len(data), batch_size)])
    if data.classification:
        return float(np.mean(np.argmax(y, axis=1) == data.y))
    return float(np.mean((np.asarray(y, np.float64) - data.y) ** 2))
