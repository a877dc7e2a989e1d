"""edgekit.train: the training side, on Keras 3 - pruning (depthwise and structured included),
k-means clustering, quantization-aware training (int8, 4-bit weights) and distillation -
producing models that `edgekit export` compiles into the formats they were compressed for.

    import edgekit.train as ekt
    result = ekt.compress(model, (x, y), validation=(xv, yv), recipe=ekt.Recipe(prune=0.8, bits=4))
    result.model, result.report

The building blocks, for a training loop of one's own: ekt.pruning (a callback with a schedule),
ekt.cluster, ekt.keep_constraints (a callback keeping zeros and shared values through any later
training), ekt.quantize_model / ekt.strip (QAT), ekt.prune_channels (structured), ekt.fit
(fine-tuning, distilled from a teacher through keras.distillation).

Importing this package imports Keras (and TensorFlow); edgekit's compiler does not need it.
TensorFlow's oneDNN kernels are turned off for training (TF_ENABLE_ONEDNN_OPTS=0, when this
package is imported before TensorFlow): with them, fine-tuning a channel-pruned ResNet-8 from its
teacher crashed the process (heap corruption, TF 2.21, reproducible), and without them an epoch
of the Fashion-MNIST DS-CNN is no slower (6.7 s against 7.5 s for 10,000 images on 2 cores).
"""
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from edgekit.train.model_io import load_model, save_model
from edgekit.train.data import Data, check_data, load_data
from edgekit.train.constraints import Constraints, keep_constraints
from edgekit.train.prune import PolynomialDecay, StepSchedule, magnitude_masks, prune_to, pruning, sparsity
from edgekit.train.cluster import cluster, distinct_values, kmeans_1d
from edgekit.train.qat import ActivationQuantizer, quantize_model, strip
from edgekit.train.structured import macs, prune_channels
from edgekit.train.tune import evaluate, fit
from edgekit.train.recipe import CompressResult, Recipe, StageReport, compress

__all__ = ["load_model", "save_model", "Data", "check_data", "load_data", "Constraints", "keep_constraints",
           "PolynomialDecay", "StepSchedule", "magnitude_masks", "prune_to", "pruning", "sparsity",
           "cluster", "distinct_values", "kmeans_1d", "ActivationQuantizer", "quantize_model", "strip",
           "macs", "prune_channels", "evaluate", "fit", "CompressResult", "Recipe", "StageReport", "compress"]
