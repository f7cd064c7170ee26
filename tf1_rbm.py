"""Greedy layer-wise RBM pretraining as TensorFlow 1.x graphs (Hinton & Salakhutdinov, Science 2006).

A stack of restricted Boltzmann machines, one per encoder layer, trained one after another with one
step of contrastive divergence (CD-1) on mini-batches:

    ph  = p(h=1 | v)  = sigmoid(v W + b)      (top RBM with linear code: ph = v W + b)
    h  ~ Bernoulli(ph)                        (top RBM: h = ph + N(0, 1), Gaussian hidden units)
    pv  = sigmoid(h W^T + a)                  (binary-logistic visible units, probabilities used)
    nh  = p(h=1 | pv)
    inc = momentum * inc + lr * ((v^T ph - pv^T nh) / batch - weight_cost * W);  W += inc
          (likewise a, b with their own increments and no weight cost)

RBM k is trained on the hidden probabilities of RBMs 0..k-1 (computed in the graph from the resident
training set). Unrolling (`unrolled_values`) gives the tied autoencoder of tf1_tied_ae exactly:
W_k -> encoder/layer_k/kernel, b_k -> encoder/layer_k/bias, a_k -> decoder/layer_{L-1-k}/bias.

Defaults are the paper's (its Matlab code): weights 0.1 * N(0, 1), zero biases, learning rate 0.1
(0.001 for the linear top RBM), momentum 0.5 for the first 5 epochs then 0.9, weight cost 2e-4,
mini-batches of 100.

Variables: rbm/layer_{k}/{weights [dims[k], dims[k+1]], visible_bias [dims[k]],
hidden_bias [dims[k+1]]}, their momentum increments `<name>_inc`, and rbm/step.
Like tf1_tied_ae, building runs nothing and every build makes a new, finalised tf.Graph.
"""
import dataclasses
import math
from typing import NamedTuple, Optional, Tuple

import tensorflow as tf

tf1 = tf.compat.v1


@dataclasses.dataclass(frozen=True)
class RBMConfig:
    dims: Tuple[int, ...] = (784, 1000, 500, 250, 30)  # visible size, then each RBM's hidden size
    linear_top: bool = True  # the top RBM has Gaussian (linear) hidden units: a linear code layer
    learning_rate: float = 0.1  # binary-binary RBMs
    learning_rate_linear: float = 0.001  # the top RBM when linear_top
    weight_cost: float = 2e-4
    initial_momentum: float = 0.5
    final_momentum: float = 0.9
    momentum_switch_epoch: int = 5  # epochs (0-based) from this one on use final_momentum
    seed: Optional[int] = 0

    def __post_init__(self):
        dims = tuple(self.dims) if isinstance(self.dims, (list, tuple)) else None
        if not dims or len(dims) < 2 or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in dims):
            raise ValueError(f"dims must be at least 2 positive integers; got {self.dims!r}")
        object.__setattr__(self, "dims", dims)
        for field in ("learning_rate", "learning_rate_linear"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{field} must be a positive finite number; got {v!r}")
        for field in ("weight_cost", "initial_momentum", "final_momentum"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{field} must be a finite number >= 0; got {v!r}")
        if not isinstance(self.momentum_switch_epoch, int) or self.momentum_switch_epoch < 0:
            raise ValueError(f"momentum_switch_epoch must be an integer >= 0; got {self.momentum_switch_epoch!r}")


class RBMLayer(NamedTuple):
    weights: tf.Variable
    visible_bias: tf.Variable
    hidden_bias: tf.Variable
    linear: bool  # Gaussian hidden units
    train_op: tf.Operation  # one CD-1 step on a resident batch (momentum from `momentum`)
    recon_sse: tf.Tensor  # [batch]: sum over visible units of (v - pv)^2, this step's batch
    hidden: tf.Tensor  # [batch, dims[k+1]] hidden probabilities of `x` (for the next RBM)


class RBMStack(NamedTuple):
    config: RBMConfig
    graph: tf.Graph
    x: tf.Tensor  # [None, dims[0]]: placeholder_with_default, the resident batch by default
    momentum: tf.Tensor  # float32 scalar placeholder_with_default(initial_momentum)
    layers: Tuple[RBMLayer, ...]
    step: tf.Variable  # CD-1 steps taken, over all layers
    init_op: tf.Operation
    saver: tf1.train.Saver
    resident: object  # tf1_tied_ae.ResidentInput


def hidden_probs(v, w, b, linear):
    pre = tf.matmul(v, w) + b
    return pre if linear else tf.sigmoid(pre)


def cd1_step(cfg, v, w, a, b, increments, momentum, linear, step):
    """One CD-1 update of (w, a, b) on the batch v; returns (train op, per-example recon sse)."""
    ph = hidden_probs(v, w, b, linear)
    if linear:
        h = ph + tf.random.normal(tf.shape(ph))
    else:
        h = tf.cast(tf.random.uniform(tf.shape(ph)) < ph, tf.float32)
    pv = tf.sigmoid(tf.matmul(h, w, transpose_b=True) + a)
    nh = hidden_probs(pv, w, b, linear)
    n = tf.cast(tf.shape(v)[0], tf.float32)
    lr = cfg.learning_rate_linear if linear else cfg.learning_rate
    grads = [
        (tf.matmul(v, ph, transpose_a=True) - tf.matmul(pv, nh, transpose_a=True)) / n - cfg.weight_cost * w,
        tf.reduce_mean(v - pv, axis=0),
        tf.reduce_mean(ph - nh, axis=0),
    ]
    updates = []
    for var, inc, g in zip((w, a, b), increments, grads):
        new_inc = inc.assign(momentum * inc + lr * g)
        updates.append(var.assign_add(new_inc))
    with tf.control_dependencies(updates):
        train = step.assign_add(1).op
    return train, tf.reduce_sum(tf.square(v - pv), axis=1)


def build_rbms(cfg, resident):
    """The whole stack in one new graph. resident: (num_examples, batch_size) of the training set."""
    import tf1_tied_ae as tae

    graph = tf.Graph()
    with graph.as_default():
        if cfg.seed is not None:
            tf1.set_random_seed(cfg.seed)
        spec, draw = tae.resident_input(resident[0], cfg.dims[0], resident[1])
        x = tf1.placeholder_with_default(draw(), [None, cfg.dims[0]], name="x")
        momentum = tf1.placeholder_with_default(float(cfg.initial_momentum), [], name="momentum")
        step = tf1.get_variable("rbm/step", [], tf.int64, initializer=tf1.zeros_initializer(), trainable=False)
        layers, v = [], x
        top = len(cfg.dims) - 2
        for k in range(len(cfg.dims) - 1):
            nv, nh = cfg.dims[k], cfg.dims[k + 1]
            linear = cfg.linear_top and k == top
            with tf1.variable_scope(f"rbm/layer_{k}"):
                w = tf1.get_variable("weights", [nv, nh], initializer=tf1.random_normal_initializer(0.0, 0.1))
                a = tf1.get_variable("visible_bias", [nv], initializer=tf1.zeros_initializer())
                b = tf1.get_variable("hidden_bias", [nh], initializer=tf1.zeros_initializer())
                incs = [tf1.get_variable(f"{name}_inc", var.shape, initializer=tf1.zeros_initializer(), trainable=False)
                        for name, var in (("weights", w), ("visible_bias", a), ("hidden_bias", b))]
            # v: the hidden probabilities of the RBMs below (fixed: only this RBM's op updates it)
            train, sse = cd1_step(cfg, v, w, a, b, incs, momentum, linear, step)
            hidden = hidden_probs(v, w, b, linear)
            layers.append(RBMLayer(w, a, b, linear, train, sse, hidden))
            v = hidden
        init = tf.group(tf1.global_variables_initializer(), tf1.local_variables_initializer())
        saver = tf1.train.Saver(tf1.global_variables(), max_to_keep=2)
        graph.finalize()
    return RBMStack(cfg, graph, x, momentum, tuple(layers), step, init, saver, spec)


def unrolled_values(layer_values, decoder_kernels=False):
    """[(W, a, b) per RBM] -> {tf1_tied_ae variable name: array}: the tied autoencoder they unroll
    to; decoder_kernels=True adds decoder/layer_{L-1-k}/kernel = W_k^T for models that have them."""
    L = len(layer_values)
    values = {}
    for k, (w, a, b) in enumerate(layer_values):
        values[f"encoder/layer_{k}/kernel"] = w
        values[f"encoder/layer_{k}/bias"] = b
        values[f"decoder/layer_{L - 1 - k}/bias"] = a
        if decoder_kernels:
            values[f"decoder/layer_{L - 1 - k}/kernel"] = w.T.copy()
    return values
