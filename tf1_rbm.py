"""Greedy layer-wise RBM pretraining as TensorFlow 1.x graphs (Hinton & Salakhutdinov, Science 2006).

A stack of restricted Boltzmann machines, one per encoder layer, trained one after another with one
step of contrastive divergence (CD-1) on mini-batches:

    ph  = p(h=1 | v)  = sigmoid(v W + b)      (top RBM with linear code: ph = v W + b)
    h  ~ Bernoulli(ph)                        (top RBM: h = ph + N(0, 1), Gaussian hidden units)
    pv  = sigmoid(h W^T + a)                  (binary-logistic visible units, probabilities used)
    nh  = p(h=1 | pv)
    inc = momentum * inc + lr * ((v^T ph - pv^T nh) / batch - weight_cost * W);  W += inc
          (likewise a, b with their own increments and no weight cost)

RBM k trains on the hidden probabilities of RBMs 0..k-1, computed in the graph from the batch.
Unrolling (`unroll`) turns the stack into the tied autoencoder of tf1_tied_ae exactly:
W_k -> encoder/layer_k/kernel, b_k -> encoder/layer_k/bias, a_k -> decoder/layer_{L-1-k}/bias.

The samples come from counter-based random numbers keyed by (seed, layer, global step), so an RBM
stage resumed from a checkpoint draws the same samples as an uninterrupted one. The momentum is a
function of the global step too. Defaults (tf1_config.RBMConfig) are the paper's Matlab code's.

Variables: rbm/layer_{k}/{weights [dims[k], dims[k+1]], visible_bias [dims[k]],
hidden_bias [dims[k+1]]} and their momentum increments `<name>_inc`.
"""
import random
from typing import NamedTuple, Tuple

import tensorflow as tf

import tf1_input
from tf1_config import RBMConfig  # noqa: F401  (re-exported: the stack's settings)

tf1 = tf.compat.v1


class RBMLayer(NamedTuple):
    weights: tf.Variable  # [dims[k], dims[k+1]]
    visible_bias: tf.Variable  # [dims[k]]
    hidden_bias: tf.Variable  # [dims[k+1]]
    linear: bool  # Gaussian hidden units (the top RBM under a linear code)


class RBMStack(NamedTuple):
    """What `build_rbms` returns: the stack alone, in its own graph."""

    config: RBMConfig
    graph: tf.Graph
    input: tf1_input.Pipeline
    layers: Tuple[RBMLayer, ...]
    stages: Tuple[tf1_input.Stage, ...]
    global_step: tf.Variable
    init_op: tf.Operation
    saver: tf1.train.Saver


def hidden_probs(v, layer):
    pre = tf.matmul(v, layer.weights) + layer.hidden_bias
    return pre if layer.linear else tf.sigmoid(pre)


def rbm_variables(cfg):
    """rbm/layer_{k}/..., weights 0.1 * N(0, 1) and zero biases (the paper's code)."""
    layers, increments = [], []
    top = len(cfg.dims) - 2
    for k in range(len(cfg.dims) - 1):
        with tf1.variable_scope(f"rbm/layer_{k}"):
            w = tf1.get_variable("weights", cfg.dims[k : k + 2], initializer=tf1.random_normal_initializer(0.0, 0.1))
            a = tf1.get_variable("visible_bias", [cfg.dims[k]], initializer=tf1.zeros_initializer())
            b = tf1.get_variable("hidden_bias", [cfg.dims[k + 1]], initializer=tf1.zeros_initializer())
            increments.append([tf1.get_variable(f"{v.op.name.split('/')[-1]}_inc", v.shape, trainable=False,
                                                initializer=tf1.zeros_initializer()) for v in (w, a, b)])
        layers.append(RBMLayer(w, a, b, cfg.linear_top and k == top))
    return layers, increments


def cd1_step(cfg, v, layer, increments, momentum, seed):
    """One CD-1 update of `layer` on the batch v: (mean reconstruction sse per example, update op).
    seed: int64 [2], the counter-based random numbers' key."""
    ph = hidden_probs(v, layer)
    if layer.linear:
        h = ph + tf.random.stateless_normal(tf.shape(ph), seed)
    else:
        h = tf.cast(tf.random.stateless_uniform(tf.shape(ph), seed) < ph, tf.float32)
    pv = tf.sigmoid(tf.matmul(h, layer.weights, transpose_b=True) + layer.visible_bias)
    nh = hidden_probs(pv, layer)
    n = tf.cast(tf.shape(v)[0], tf.float32)
    lr = cfg.learning_rate_linear if layer.linear else cfg.learning_rate
    grads = [(tf.matmul(v, ph, transpose_a=True) - tf.matmul(pv, nh, transpose_a=True)) / n
             - cfg.weight_cost * layer.weights, tf.reduce_mean(v - pv, axis=0), tf.reduce_mean(ph - nh, axis=0)]
    updates = [var.assign_add(inc.assign(momentum * inc + lr * g))
               for var, inc, g in zip(layer[:3], increments, grads)]
    return tf.reduce_mean(tf.reduce_sum(tf.square(v - pv), axis=1)), tf.group(*updates)


def rbm_stages(cfg, pipe, global_step, first_step=0):
    """The stack's layers and one Stage per RBM, built into the default graph; the stages take
    global steps first_step, first_step + 1, ... in order."""
    layers, increments = rbm_variables(cfg)
    steps_per_epoch = pipe.num_examples // cfg.batch_size
    seed = cfg.seed if cfg.seed is not None else random.randrange(2 ** 31)
    stages = []
    for k, layer in enumerate(layers):
        start = first_step + k * cfg.epochs * steps_per_epoch

        def step(batch, k=k, layer=layer, start=start):
            v = batch
            for below in layers[:k]:  # the data as RBM k sees it: fixed, only RBM k's step updates
                v = hidden_probs(v, below)
            now = global_step.read_value()
            momentum = tf1.where(now - start < cfg.momentum_switch_epoch * steps_per_epoch, *cfg.momentum)
            key = tf.stack([tf.constant(seed * 64 + k, tf.int64), now])
            figure, update = cd1_step(cfg, v, layer, increments[k], momentum, key)
            with tf.control_dependencies([update]):
                return figure, global_step.assign_add(1)

        stages.append(tf1_input.Stage(name=f"rbm {k + 1}", record="pretrain", epochs=cfg.epochs, first_epoch=0,
                                      first_step=start, batch_size=cfg.batch_size, steps_per_epoch=steps_per_epoch,
                                      epoch_seed=1000 + k * cfg.epochs, steps=tf1_input.multi_step(pipe, step),
                                      enter=None, epoch_end=None, head=None))
    return tuple(layers), tuple(stages)


def unroll(layers, encoder_kernels, encoder_biases, decoder_biases):
    """An op that sets the autoencoder's variables to the stack's parameters (the tied model)."""
    last = len(layers) - 1
    return tf.group(*[op for k, layer in enumerate(layers) for op in (
        encoder_kernels[k].assign(layer.weights), encoder_biases[k].assign(layer.hidden_bias),
        decoder_biases[last - k].assign(layer.visible_bias))])


def unrolled_stages(cfg, pipe, global_step, encoder, decoder, assign_transposes):
    """The RBM stages, the last one's epochs ending by unrolling the stack into the autoencoder's
    (kernels, biases) encoder and decoder; a model with decoder kernels starts them as the encoder's
    transposes (assign_transposes(decoder kernels, encoder kernels) -> op): the unrolled model."""
    (enc_w, enc_b), (dec_w, dec_b) = encoder, decoder
    layers, stages = rbm_stages(cfg, pipe, global_step)
    done = unroll(layers, enc_w, enc_b, dec_b)
    if dec_w:
        with tf.control_dependencies([done]):
            done = assign_transposes(dec_w, enc_w)
    done = tf.group(done, name="unroll_rbms")
    return stages[:-1] + (stages[-1]._replace(epoch_end=done),)


def build_rbms(cfg, num_examples):
    """The stack alone, in a new finalised graph, training on `num_examples` examples held in it."""
    graph = tf.Graph()
    with graph.as_default():
        if cfg.seed is not None:
            tf1.set_random_seed(cfg.seed)
        global_step = tf1.train.get_or_create_global_step()
        pipe = tf1_input.pipeline(num_examples, cfg.dims[0])
        layers, stages = rbm_stages(cfg, pipe, global_step)
        init = tf.group(tf1.global_variables_initializer(), tf1.local_variables_initializer())
        saver = tf1.train.Saver(max_to_keep=3, save_relative_paths=True)
        graph.finalize()
    return RBMStack(cfg, graph, pipe, layers, stages, global_step, init, saver)
