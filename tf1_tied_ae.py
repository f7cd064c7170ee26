"""Tied-weight autoencoders as TensorFlow 1.x graphs (tf.compat.v1) on TensorFlow 2.x.

The model (L = len(dims) - 1 layers each side, rev = dims reversed):

    encoder  h_{i+1} = f(h_i W_i + b_i)                      W_i: [dims[i], dims[i+1]]
    decoder  g_{j+1} = f(g_j V_j + c_j),  g_0 = code          c_j: [rev[j+1]]
    tied     V_j = W_{L-1-j}^T                                (no decoder kernel variable)

The decoder keeps its own biases c_j: the last one has dims[0] entries, and no encoder bias has
that size, so there is nothing to mirror (Vincent et al. 2008 call the pair b and b').

Four ways to treat the decoder kernels V_j (AEConfig.mode):
    untied       independent variables: the 2018 question's own graph.
    tied         V_j is W^T inside the graph, so the gradient reaching W_i is the sum of the
                 encoder-path and the (transposed) decoder-path gradients.
    sync         the accepted answer: V_j are trainable=False variables, re-assigned W^T after
                 every step (or epoch). Only the encoder path moves W_i: a different gradient.
    tied-untied  Hinton & Salakhutdinov (2006): train tied, then `untie_op` copies W^T into
                 independent V_j variables and the `finetune` head trains all of them.

A model is made of stages (tf1_input.Stage): with RBM pretraining, one per RBM (tf1_rbm), whose
last epoch ends by unrolling the stack into the autoencoder; then the `train` head's stage; then,
for tied-untied, the `finetune` head's, which starts with the untie.

Variable names are the checkpoint format and the porting interface:
    encoder/layer_{i}/kernel [dims[i], dims[i+1]]    encoder/layer_{i}/bias [dims[i+1]]
    decoder/layer_{j}/kernel [rev[j], rev[j+1]]      decoder/layer_{j}/bias [rev[j+1]]
(no decoder kernels in a tied model). Checkpoints also hold `global_step`, the optimizer's state
under `train/` (Adam: `train/<variable>/Adam`, `.../Adam_1`, `train/beta1_power`, `train/beta2_power`)
and `finetune/` (tied-untied), and, when built with a run, `progress/*` (tf1_input) and `rbm/*`.

This module only builds graphs: importing it or calling `build` runs nothing, reads no data and
changes no global TensorFlow setting. Every `build` makes a new tf.Graph and finalises it.
"""
from typing import Dict, NamedTuple, Optional, Tuple

import tensorflow as tf

import tf1_input
import tf1_rbm
from tae_config import MODES, TRAINABLE, AEConfig, RunConfig, rbm_config  # noqa: F401  (the library's config)

tf1 = tf.compat.v1
ACTIVATIONS = {"sigmoid": tf.sigmoid, "relu": tf.nn.relu, "elu": tf.nn.elu, "selu": tf.nn.selu, "tanh": tf.tanh,
               "linear": tf.identity}
OPTIMIZERS = {"adam": tf1.train.AdamOptimizer, "sgd": tf1.train.GradientDescentOptimizer}


class Head(NamedTuple):
    """One way through the model on the fed (or default) batch `x`, with its loss and training op."""

    code: tf.Tensor  # [batch, dims[-1]] float32
    reconstruction: tf.Tensor  # [batch, dims[0]] float32, after the output activation
    loss: tf.Tensor  # scalar float32, the training loss (mse or xent, mean over all entries)
    sse: tf.Tensor  # [batch] float32, sum over pixels of (x - reconstruction)^2 (Hinton 2006's unit)
    train_op: tf.Operation  # one optimizer step on exactly var_list (then sync's re-assignment)
    var_list: Tuple[tf.Variable, ...]  # what train_op may change


class AutoEncoder(NamedTuple):
    """What `build` returns. `finetune`, `sync_op`, `untie_op` are None where the mode has none;
    `input` and `stages` exist when built with a run."""

    config: AEConfig
    graph: tf.Graph
    x: tf.Tensor  # [None, dims[0]] float32: a placeholder (with the next batch as default, with a run)
    variables: Dict[str, tf.Variable]  # the names in the module docstring
    train: Head  # the mode's head: tied, untied or sync decoder; tied-untied's first stage
    finetune: Optional[Head]  # tied-untied: the untied decoder's head
    sync_op: Optional[tf.Operation]  # sync: decoder kernels <- encoder kernels^T
    untie_op: Optional[tf.Operation]  # tied-untied: the same copy, once, between the stages
    global_step: tf.Variable
    init_op: tf.Operation  # initialises everything (and syncs a sync model's decoder)
    saver: tf1.train.Saver  # every global variable; checkpoint state files with relative paths
    input: Optional[tf1_input.Pipeline]
    stages: Tuple[tf1_input.Stage, ...]  # in order; RBMs first when pretraining


def _initializer(cfg, kind):
    if cfg.init == "snippet":  # the question: tf.random_normal(shape) for weights and biases alike
        return tf1.random_normal_initializer(0.0, 1.0)
    return tf1.glorot_uniform_initializer() if kind == "kernel" else tf1.zeros_initializer()


def encoder_variables(cfg):
    """encoder/layer_{i}/{kernel,bias}, as two lists (the question's encoderWeights/Biases)."""
    kernels, biases = [], []
    for i in range(len(cfg.dims) - 1):
        with tf1.variable_scope(f"encoder/layer_{i}"):
            kernels.append(tf1.get_variable("kernel", cfg.dims[i : i + 2], initializer=_initializer(cfg, "kernel")))
            biases.append(tf1.get_variable("bias", [cfg.dims[i + 1]], initializer=_initializer(cfg, "bias")))
    return kernels, biases


def decoder_variables(cfg):
    """decoder/layer_{j}/bias always, decoder/layer_{j}/kernel unless tied; j counts from the code.
    Only untied mode trains the kernels from the start (sync's are copies; tied-untied's wait)."""
    rev = cfg.dims[::-1]
    kernels, biases = [], []
    for j in range(len(rev) - 1):
        with tf1.variable_scope(f"decoder/layer_{j}"):
            if cfg.mode != "tied":
                kernels.append(tf1.get_variable("kernel", rev[j : j + 2], initializer=_initializer(cfg, "kernel"),
                                                trainable=cfg.mode == "untied"))
            biases.append(tf1.get_variable("bias", [rev[j + 1]], initializer=_initializer(cfg, "bias")))
    return kernels, biases


def encode(cfg, x, kernels, biases):
    """x [batch, dims[0]] -> code [batch, dims[-1]]: f(h W_i + b_i), code_activation last."""
    h = x
    for i, (w, b) in enumerate(zip(kernels, biases)):
        act = cfg.code_activation if i == len(kernels) - 1 else cfg.activation
        h = ACTIVATIONS[act](tf.matmul(h, w) + b)
    return h


def decode(cfg, code, biases, kernels=None, encoder_kernels=None):
    """code [batch, dims[-1]] -> (logits, reconstruction), both [batch, dims[0]].

    Pass `kernels` (untied: V_j) or `encoder_kernels` (tied: V_j = W_{L-1-j}^T).
    """
    g = code
    n = len(biases)
    for j in range(n):
        if kernels is not None:
            g = tf.matmul(g, kernels[j]) + biases[j]
        else:
            # THE TYING: decoder layer j multiplies by the transpose of encoder layer L-1-j. The
            # transpose lives inside the graph, so d loss / d W_i sums the encoder-path and the
            # decoder-path gradients; transpose_b reads W in place (no transposed copy per step).
            g = tf.matmul(g, encoder_kernels[n - 1 - j], transpose_b=True) + biases[j]
        if j < n - 1:
            g = ACTIVATIONS[cfg.activation](g)
    return g, ACTIVATIONS[cfg.output_activation](g)


def loss_terms(cfg, x, logits, reconstruction):
    """Scalar training loss, and the per-example sum of squared errors [batch] used to report."""
    if cfg.loss == "mse":  # as the question: mean over batch and pixels
        loss = tf1.losses.mean_squared_error(labels=x, predictions=reconstruction)
    else:  # xent: the numerically stable form on the logits
        loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits))
    return loss, tf.reduce_sum(tf.math.squared_difference(x, reconstruction), axis=1)


def make_optimizer(cfg, global_step, first_step=0, decay_steps=None):
    """The optimizer. Its learning rate is a callable, so that a step built inside a while_loop
    reads the schedule at that step's global step; cosine counts from `first_step` (after the
    RBMs) over `decay_steps` (cfg.lr_decay_steps unless that is None)."""
    def lr():
        if cfg.lr_schedule == "cosine":  # a function of global_step, so it resumes where it stopped
            return tf1.train.cosine_decay(cfg.learning_rate, global_step - first_step,
                                          cfg.lr_decay_steps or decay_steps)
        return cfg.learning_rate

    if cfg.lr_schedule == "cosine" and not (cfg.lr_decay_steps or decay_steps):
        raise ValueError("lr_schedule cosine needs lr_decay_steps, or a run to take the length from")
    return OPTIMIZERS[cfg.optimizer](lr)


def assign_transposes(dst_kernels, encoder_kernels):
    """Decoder kernel j <- encoder kernel L-1-j, transposed (sync, untie and unrolling use this)."""
    n = len(dst_kernels)
    return tf.group(*[dst_kernels[j].assign(tf.transpose(encoder_kernels[n - 1 - j])) for j in range(n)])


def trainable_names(cfg, finetune=False):
    """Names handed to minimize(var_list=...): every variable of the model that `trainable` allows,
    less the kernels that are copies (sync; tied-untied before the untie)."""
    names = []
    for name in variable_shapes(cfg):
        if cfg.trainable not in ("all", name.split("/")[0]):
            continue
        if name.startswith("decoder/") and name.endswith("/kernel") and cfg.mode != "untied" and not finetune:
            continue
        names.append(name)
    return names


def variable_shapes(cfg):
    """The model's variables, {name: shape}, in creation order."""
    dims, rev = cfg.dims, cfg.dims[::-1]
    shapes = {}
    for i in range(len(dims) - 1):
        shapes[f"encoder/layer_{i}/kernel"] = (dims[i], dims[i + 1])
        shapes[f"encoder/layer_{i}/bias"] = (dims[i + 1],)
    for j in range(len(rev) - 1):
        if cfg.mode != "tied":
            shapes[f"decoder/layer_{j}/kernel"] = (rev[j], rev[j + 1])
        shapes[f"decoder/layer_{j}/bias"] = (rev[j + 1],)
    return shapes


class _Parts(NamedTuple):
    """The graph pieces the heads are made from (build's working set)."""

    cfg: AEConfig
    x: tf.Tensor
    encoder: tuple  # (kernels, biases)
    decoder: tuple  # (kernels, biases)
    global_step: tf.Variable
    pipe: Optional[tf1_input.Pipeline]


def head(parts, name, untied, var_list, optimizer, after=None):
    """A Head on the model's `x` and, with a pipeline, its multi-step tensor on drawn batches.
    untied: decode with the decoder's own kernels (untied, sync, finetune) or W^T (tied)."""
    cfg, (enc_w, enc_b), (dec_w, dec_b) = parts.cfg, parts.encoder, parts.decoder

    def forward(x):
        code = encode(cfg, x, enc_w, enc_b)
        logits, recon = decode(cfg, code, dec_b, kernels=dec_w) if untied else decode(cfg, code, dec_b,
                                                                                       encoder_kernels=enc_w)
        return (code, recon, *loss_terms(cfg, x, logits, recon))

    def step(loss):  # sync's frozen copies are outside var_list: no gradient reaches W through them
        update = optimizer.minimize(loss, parts.global_step, var_list=list(var_list))
        if after is None:
            return update
        with tf.control_dependencies([update]):
            return after()

    def loop_step(batch):  # the same step on a drawn batch, inside the multi-step loop
        batch_loss = forward(batch)[2]
        return batch_loss, step(batch_loss)

    with tf1.variable_scope(name):  # the optimizer's slots: name/<variable>/Adam...
        code, recon, loss, sse = forward(parts.x)
        train_op = step(loss)
        steps = tf1_input.multi_step(parts.pipe, loop_step) if parts.pipe is not None else None
    return Head(code, recon, loss, sse, train_op, tuple(var_list)), steps


def stage(name, epochs, first_epoch, first_step, run, pipe, steps, head_, enter=None, epoch_end=None):
    per_epoch = pipe.num_examples // run.batch_size
    return tf1_input.Stage(name, "epochs", epochs, first_epoch, first_step, run.batch_size, per_epoch, first_epoch,
                           steps, enter, epoch_end, head_)


def build(cfg, run=None, num_examples=None, finalize=True, input_kind="resident"):
    """Build the autoencoder of `cfg` into a new, finalised tf.Graph; nothing runs.

    With `run` (a RunConfig with epochs set) and `num_examples`, the graph also holds the training
    set (ae.input: fill it with tf1_input.load) and the run's stages (ae.stages), RBMs included when
    run.pretrain is rbm; `ae.x` then defaults to the next batch. input_kind: tf1_input's resident
    cursor or tfdata (the same batches). finalize=False leaves the graph open for extra ops (tests
    add tf.gradients).
    """
    if not isinstance(cfg, AEConfig):
        raise TypeError("build takes an AEConfig")
    if (run is None) != (num_examples is None) or (run is not None and run.epochs is None):
        raise ValueError("give both run (with epochs set) and num_examples, or neither")
    graph = tf.Graph()
    with graph.as_default():
        if cfg.seed is not None:
            tf1.set_random_seed(cfg.seed)  # the graph's seed: op seeds follow from creation order
        global_step = tf1.train.get_or_create_global_step()
        pipe = tf1_input.pipeline(num_examples, cfg.dims[0], input_kind) if run else None
        default = pipe.next_batch() if pipe else None
        x = tf1.placeholder_with_default(default, [None, cfg.dims[0]], "x") if pipe else \
            tf1.placeholder(tf.float32, [None, cfg.dims[0]], "x")
        parts = _Parts(cfg, x, encoder_variables(cfg), decoder_variables(cfg), global_step, pipe)
        model = _heads_and_stages(parts, run)
        init = tf.group(tf1.global_variables_initializer(), tf1.local_variables_initializer())
        if model["sync_op"] is not None:  # the frozen copies start equal to the transposes
            with tf.control_dependencies([init]):
                init = assign_transposes(parts.decoder[0], parts.encoder[0])
        saver = tf1.train.Saver(max_to_keep=3, save_relative_paths=True)
        if finalize:
            graph.finalize()
    variables = {v.op.name: v for v in [*parts.encoder[0], *parts.encoder[1], *parts.decoder[0], *parts.decoder[1]]}
    return AutoEncoder(cfg, graph, x, variables, model["train"], model["finetune"], model["sync_op"],
                       model["untie_op"], global_step, init, saver, pipe, model["stages"])


def _heads_and_stages(parts, run):
    """The heads, the ops between them, and (with a run) the stages, as build's dict of parts."""
    cfg, (enc_w, enc_b), (dec_w, dec_b) = parts.cfg, parts.encoder, parts.decoder
    variables = {v.op.name: v for v in [*enc_w, *enc_b, *dec_w, *dec_b]}
    rbm_cfg = rbm_config(cfg, run) if run else None
    stages, first = (), 0
    if rbm_cfg:
        layers, stages = tf1_rbm.rbm_stages(rbm_cfg, parts.pipe, parts.global_step)
        unroll = tf1_rbm.unroll(layers, enc_w, enc_b, dec_b)
        if dec_w:  # models with decoder kernels start them as the transposes (the unrolled model)
            with tf.control_dependencies([unroll]):
                unroll = assign_transposes(dec_w, enc_w)
        unroll = tf.group(unroll, name="unroll_rbms")
        stages = stages[:-1] + (stages[-1]._replace(epoch_end=unroll),)
        first = stages[-1].last_step
    per_epoch = parts.pipe.num_examples // run.batch_size if run else 0
    decay = max(1, run.epochs * per_epoch) if run else None  # cosine over all the autoencoder's steps
    sync_op = assign_transposes(dec_w, enc_w) if cfg.mode == "sync" else None
    resync = (lambda: assign_transposes(dec_w, enc_w)) if sync_op is not None and (
        run is None or run.sync_every == "step") else None
    names = trainable_names(cfg)
    train, train_steps = head(parts, "train", cfg.mode in ("untied", "sync"), [variables[n] for n in names],
                              make_optimizer(cfg, parts.global_step, first, decay), resync)
    finetune = untie_op = None
    if cfg.mode == "tied-untied":
        untie_op = tf.group(assign_transposes(dec_w, enc_w), name="untie")
        finetune, finetune_steps = head(parts, "finetune", True,
                                        [variables[n] for n in trainable_names(cfg, finetune=True)],
                                        make_optimizer(cfg, parts.global_step, first, decay))
    if run:
        tied = run.tied_epochs if cfg.mode == "tied-untied" else run.epochs
        epoch_end = sync_op if run.sync_every == "epoch" and sync_op is not None else None
        stages += (stage("tied" if untie_op is not None else cfg.mode, tied, 0, first, run, parts.pipe, train_steps,
                         train, epoch_end=epoch_end),)
        if untie_op is not None:
            stages += (stage("untied", run.epochs - tied, tied, stages[-1].last_step, run, parts.pipe,
                             finetune_steps, finetune, enter=untie_op),)
    return dict(train=train, finetune=finetune, sync_op=sync_op, untie_op=untie_op, stages=stages)


def final_head(ae):
    """The head that evaluates the model after its stages: the last autoencoder stage that trains
    (the untied one once tied-untied has untied), else `train`."""
    return next((s.head for s in reversed(ae.stages) if s.head is not None and s.epochs), ae.train)
