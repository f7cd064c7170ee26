"""Tied-weight autoencoders as TensorFlow 1.x graphs (tf.compat.v1) on TensorFlow 2.x.

The model (L = len(dims) - 1 layers each side, rev = dims reversed):

    encoder  h_{i+1} = f(h_i W_i + b_i)                      W_i: [dims[i], dims[i+1]]
    decoder  g_{j+1} = f(g_j V_j + c_j),  g_0 = code          c_j: [rev[j+1]]
    tied     V_j = W_{L-1-j}^T                                (no decoder kernel variable)

The decoder keeps its own biases c_j: the last one has dims[0] entries, and no encoder bias has
that size, so there is nothing to mirror (Vincent et al. 2008 call the pair b and b').

Four ways to treat the decoder kernels V_j (AEConfig.mode):
    untied       independent variables: the 2018 question's own graph.
    tied         V_j is W^T inside the graph (`decode`), so the gradient reaching W_i is the sum of
                 the encoder-path and the (transposed) decoder-path gradients.
    sync         the accepted answer: V_j are trainable=False variables, re-assigned W^T after
                 every step (or epoch). Only the encoder path moves W_i: a different gradient.
    tied-untied  Hinton & Salakhutdinov (2006): train tied, then `untie_op` copies W^T into
                 independent V_j variables and the `finetune` head trains all of them.

What trains is a list handed to `minimize(var_list=...)` (AEConfig.trainable; tf1_config's
`trainable_names`). Variable names are the checkpoint format and the porting interface:
    encoder/layer_{i}/kernel [dims[i], dims[i+1]]    encoder/layer_{i}/bias [dims[i+1]]
    decoder/layer_{j}/kernel [rev[j], rev[j+1]]      decoder/layer_{j}/bias [rev[j+1]]
(no decoder kernels in a tied model). Checkpoints also hold `global_step`, the optimizer's state
under `train/` (Adam: `train/<variable>/Adam`, `.../Adam_1`, `train/beta1_power`, `train/beta2_power`)
and `finetune/` (tied-untied), and, when built with a schedule, `progress/*` (tf1_input) and `rbm/*`.

Around it: tf1_training (regularisers, learning rate), tf1_input (the training set in the graph, the
multi-step loop), tf1_sparse, tf1_rbm, tf1_checkpoints, tf1_cluster. This module only builds graphs.
"""
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import tensorflow as tf

import tf1_checkpoints
import tf1_input
import tf1_rbm
import tf1_sparse
import tf1_training
from tf1_config import (MODES, TRAINABLE, AEConfig, ConfigError, OneMachine, RBMConfig, Schedule,  # noqa: F401
                        check_build, trainable_names, variable_shapes)  # (AEConfig, Schedule, ... re-exported)

tf1 = tf.compat.v1
ACTIVATIONS = {"sigmoid": tf.sigmoid, "relu": tf.nn.relu, "elu": tf.nn.elu, "selu": tf.nn.selu, "tanh": tf.tanh,
               "softplus": tf.nn.softplus, "linear": tf.identity}
OPTIMIZERS = {"adam": tf1.train.AdamOptimizer, "lazyadam": tf1_sparse.LazyAdamOptimizer,
              "sgd": tf1.train.GradientDescentOptimizer}


def _variable(cfg, kind, shape, getter, given, trainable=True):
    """kind ("kernel", "bias") in the current scope; given: a caller's {kind: initializer}, else cfg.init's."""
    init = (given or {}).get(kind)
    if init is None and cfg.init == "snippet":  # the question: tf.random_normal(shape) for weights and biases alike
        init = tf1.random_normal_initializer(0.0, 1.0)
    elif init is None and kind == "bias":
        init = tf1.zeros_initializer()
    elif init is None and cfg.init == "he":  # contrib's variance_scaling_initializer(): stddev sqrt(1.3 * 2 / fan_in),
        init = tf1.truncated_normal_initializer(0.0, (2.6 / shape[0]) ** 0.5)  # the 1.3 for the cut at 2 stddevs
    elif init is None:
        init = tf1.glorot_uniform_initializer()  # contrib's xavier_initializer()
    return tf1.get_variable(kind, shape, initializer=init, trainable=trainable, custom_getter=getter)


def encoder_variables(cfg, getter=None, initializers=None):
    """encoder/layer_{i}/{kernel,bias}, as two lists (the question's encoderWeights/Biases). getter: a
    custom getter every variable is made through (a placement's); initializers: a caller's {"kernel":
    ..., "bias": ...} in place of cfg.init's."""
    kernels, biases = [], []
    for i in range(len(cfg.dims) - 1):
        with tf1.variable_scope(f"encoder/layer_{i}"):
            kernels.append(_variable(cfg, "kernel", cfg.dims[i : i + 2], getter, initializers))
            biases.append(_variable(cfg, "bias", [cfg.dims[i + 1]], getter, initializers))
    return kernels, biases


def decoder_variables(cfg, getter=None, initializers=None):
    """decoder/layer_{j}/bias always, decoder/layer_{j}/kernel unless tied; j counts from the code.
    Only untied mode trains the kernels from the start (sync's are copies; tied-untied's wait)."""
    rev = cfg.dims[::-1]
    kernels, biases = [], []
    for j in range(len(rev) - 1):
        with tf1.variable_scope(f"decoder/layer_{j}"):
            if cfg.mode != "tied":
                kernels.append(_variable(cfg, "kernel", rev[j : j + 2], getter, initializers, cfg.mode == "untied"))
            biases.append(_variable(cfg, "bias", [rev[j + 1]], getter, initializers))
    return kernels, biases


def name_of(variable):
    """A model variable's name ("encoder/layer_0/kernel"), also of one a placement stores in parts."""
    return variable.name.split(":")[0]


def encode(cfg, x, kernels, biases, drop=None, first=None):
    """x [batch, dims[0]] -> code [batch, dims[-1]]: f(h W_i + b_i), code_activation last.
    drop(h, layer): dropout after each layer's activation in training (tf1_training.Draws.drop).
    first: x W_0 computed otherwise (the sparse path's tf1_sparse.first_layer); x is then unused."""
    h = x
    for i, (w, b) in enumerate(zip(kernels, biases)):
        act = cfg.code_activation if i == len(kernels) - 1 else cfg.activation
        h = ACTIVATIONS[act]((first if i == 0 and first is not None else tf.matmul(h, w)) + b)
        h = h if drop is None else drop(h, i)
    return h


def decode(cfg, code, biases, kernels=None, encoder_kernels=None, drop=None, last=None):
    """code [batch, dims[-1]] -> (logits, reconstruction), both [batch, dims[0]].

    Pass `kernels` (untied: V_j) or `encoder_kernels` (tied: V_j = W_{L-1-j}^T). drop: as encode's,
    on the decoder's hidden layers (numbered on from the encoder's). last(g): the last layer's logits
    computed otherwise (the sparse path's outputs at the rated pairs only, tf1_sparse.last_layer).
    """
    g = code
    n = len(biases)
    for j in range(n):
        if j == n - 1 and last is not None:
            g = last(g)
        elif kernels is not None:
            g = tf.matmul(g, kernels[j]) + biases[j]
        else:
            # THE TYING: decoder layer j multiplies by the transpose of encoder layer L-1-j. The
            # transpose lives inside the graph, so d loss / d W_i sums the encoder-path and the
            # decoder-path gradients; transpose_b reads W in place (no transposed copy per step).
            g = tf.matmul(g, encoder_kernels[n - 1 - j], transpose_b=True) + biases[j]
        if j < n - 1:
            g = ACTIVATIONS[cfg.activation](g)
            g = g if drop is None else drop(g, n + j)
    return g, ACTIVATIONS[cfg.output_activation](g)


def loss_terms(cfg, x, logits, reconstruction):
    """Scalar training loss, and the per-example sum of squared errors [batch] used to report
    (masked_mse: over the observed values only, so unrated items are never learned as zeros)."""
    squared = tf.math.squared_difference(x, reconstruction)
    if cfg.loss == "masked_mse":  # AutoRec's and DeepRecommender's loss: observed ratings only
        observed = tf.cast(tf.not_equal(x, 0.0), tf.float32)
        squared = squared * observed
        loss = tf.reduce_sum(squared) / tf.maximum(tf.reduce_sum(observed), 1.0)
    elif cfg.loss == "mse":  # as the question: mean over batch and pixels
        loss = tf1.losses.mean_squared_error(labels=x, predictions=reconstruction)
    else:  # xent: the numerically stable form on the logits
        loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits))
    return loss, tf.reduce_sum(squared, axis=1)


def assign_transposes(dst_kernels, encoder_kernels, read=OneMachine.read):
    """Decoder kernel j <- encoder kernel L-1-j, transposed (sync, untie and unrolling use this)."""
    n = len(dst_kernels)
    assigned = [dst_kernels[j].assign(tf.transpose(read(encoder_kernels[n - 1 - j]))) for j in range(n)]
    return tf.group(*tf.nest.flatten(assigned))  # a placement's variable in parts assigns a list


class Head(NamedTuple):
    """One way through the model on the fed (or default) batch `x`, with its loss and training op.
    code, reconstruction, loss and sse are the clean model's: no noise, no dropout."""

    code: tf.Tensor  # [batch, dims[-1]] float32
    reconstruction: tf.Tensor  # [batch, dims[0]] float32, after the output activation
    loss: tf.Tensor  # scalar float32: the loss of the clean pass, no weight decay (mse, xent or masked_mse)
    sse: tf.Tensor  # [batch] float32, sum over pixels of (x - reconstruction)^2 (Hinton 2006's unit)
    train_op: tf.Operation  # one optimizer step on exactly var_list (then sync's re-assignment)
    var_list: Tuple[tf.Variable, ...]  # what train_op may change
    training: tf1_training.Training  # the training step's own pass on x (regularisers applied)
    decoder: str  # "tied" (the encoder's kernels, transposed) or "untied" (the decoder's own kernels)
    learning_rate: tf.Tensor  # scalar float32: the rate the next step uses (the schedule at global_step)
    optimizer: tf1.train.Optimizer  # what train_op steps with (a synchronous replica wraps it: tf1_cluster)
    pass_on: Callable  # (batch, replica=0) -> Training: the pass on a drawn batch, with worker `replica`'s draws
    after: Optional[Callable] = None  # builds what follows each update (sync mode's re-assignment)
    sparse: Optional[tf1_sparse.SparsePass] = None  # cfg.sparse_input: the same head on sparse input


class _Parts(NamedTuple):
    """build's working set: encoder, decoder (kernels, biases); epoch_examples, what an epoch counts."""

    cfg: AEConfig
    x: tf.Tensor
    encoder: tuple
    decoder: tuple
    variables: Dict[str, tf.Variable]
    global_step: tf.Variable
    pipe: Optional[tf1_input.Pipeline]
    image_shape: Optional[Tuple[int, int]]
    epoch_examples: Optional[int]
    placement: object


class _Model:
    """The model's clean passes, decoding with the decoder's own kernels (untied) or W^T (tied)."""

    def __init__(self, cfg, encoder, decoder, untied):
        self.cfg, self.untied, (self.enc_w, self.enc_b), (self.dec_w, self.dec_b) = cfg, untied, encoder, decoder

    def forward(self, x, inputs, drop=None):
        """(code, reconstruction, loss, sse) of `inputs`, scored against x."""
        code = encode(self.cfg, inputs, self.enc_w, self.enc_b, drop)
        logits, recon = decode(self.cfg, code, self.dec_b, kernels=self.dec_w, drop=drop) if self.untied else \
            decode(self.cfg, code, self.dec_b, encoder_kernels=self.enc_w, drop=drop)
        return (code, recon, *loss_terms(self.cfg, x, logits, recon))

    def sparse_forward(self, batch, inputs, pairs=None, drop=None):
        """(code, output at pairs, the tf1_sparse.Lookup of its items) of a SparseTensor batch whose
        values are replaced by `inputs`; pairs [q, 2] (row, column), None: the batch's own rated pairs."""
        first, last, found = tf1_sparse.ends(self, batch, inputs, pairs)
        code = encode(self.cfg, None, self.enc_w, self.enc_b, drop, first=first)
        _, output = decode(self.cfg, code, self.dec_b, kernels=self.dec_w if self.untied else None,
                           encoder_kernels=None if self.untied else self.enc_w, drop=drop, last=last)
        return code, output, found


def _step(parts, passes, optimizer, objective, x, after):
    """One update of passes.var_list on `objective` (the pass on x), then `after` (sync's copies);
    sync's frozen copies are outside var_list: no gradient reaches W through them."""
    var_list = [p for v in passes.var_list for p in parts.placement.parts(v)]
    update = optimizer.minimize(objective, parts.global_step, var_list=var_list)
    if parts.cfg.dense_refeed:
        # DeepRecommender's dense re-feeding (Kuchaiev & Ginsburg 2017): after the step on x, its
        # dense output y = f(x), as updated, is a new example, input and target both; a second
        # update on it, which does not count as a step of its own (global_step moves once)
        with tf.control_dependencies([update]):  # every read below comes after the first update
            y = tf.stop_gradient(passes.model.forward(x, x)[1])
            update = optimizer.minimize(passes.dense(y).objective, var_list=var_list)
    if after is None:
        return update
    with tf.control_dependencies([update]):
        return after()


def head(parts, name, untied, var_list, rate, after=None):
    """A Head on the model's `x` and, with a pipeline, its multi-step tensor on drawn batches.
    untied: decode with the decoder's own kernels (untied, sync, finetune) or W^T (tied).
    With cfg.sparse_input the Head also has a SparsePass, and the drawn batches are sparse."""
    cfg, model = parts.cfg, _Model(parts.cfg, parts.encoder, parts.decoder, untied)
    passes = tf1_training.TrainingPass(cfg, model, var_list, name_of, parts.global_step, parts.image_shape)
    optimizer = OPTIMIZERS[cfg.optimizer](rate)  # rate: learning_rate's callable

    def loop_step(batch):  # the step on a drawn batch, inside the multi-step loop
        trained = passes.on(batch)
        return trained.loss, _step(parts, passes, optimizer, trained.objective, batch, after)

    with tf1.variable_scope(name):  # the optimizer's slots: name/<variable>/Adam...
        clean = model.forward(parts.x, parts.x)
        trained = passes.dense(parts.x, clean)
        train_op = _step(parts, passes, optimizer, trained.objective, parts.x, after)
        sparse = None
        if cfg.sparse_input:
            fed = tf1.sparse_placeholder(tf.float32, [None, cfg.dims[0]], name="sparse_x")
            pairs = tf1.placeholder(tf.int64, [None, 2], name="pairs")
            on_fed = passes.sparse(fed)
            predictions = model.sparse_forward(fed, fed.values, pairs)[1]
            sparse = tf1_sparse.SparsePass(fed, pairs, predictions, on_fed,
                                           _step(parts, passes, optimizer, on_fed.objective, None, after))
        steps = tf1_input.multi_step(parts.pipe, loop_step, cfg.sparse_input) if parts.pipe is not None and \
            parts.placement.loop else None
        now = tf.cast(rate(), tf.float32, name="learning_rate")  # what the next step uses, for the logs
        # the losses' graph names say what each holds (a TF1 code base's `loss` often held the weight decay)
        loss = tf.identity(clean[2], name="clean_loss_without_weight_decay")
        trained = trained._replace(loss=tf.identity(trained.loss, name="training_loss_without_weight_decay"),
                                   objective=tf.identity(trained.objective, name="training_loss_with_weight_decay"))
    code, reconstruction, _, sse = clean
    return Head(code=code, reconstruction=reconstruction, loss=loss, sse=sse, train_op=train_op,
                var_list=tuple(var_list), training=trained, decoder="untied" if untied else "tied",
                learning_rate=now, optimizer=optimizer, pass_on=passes.on, after=after, sparse=sparse), steps


class AutoEncoder(NamedTuple):
    """What `build` returns. `finetune`, `sync_op`, `untie_op` are None where the mode has none;
    `input` and `stages` exist when built with a schedule."""

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
    best_saver: tf1.train.Saver  # the model's variables and global_step, one kept: the best epoch so far
    input: Optional[tf1_input.Pipeline]
    stages: Tuple[tf1_input.Stage, ...]  # in order; RBMs first when pretraining


def build(cfg, schedule=None, num_examples=None, finalize=None, input_kind="resident", nnz=None, image_shape=None,
          placement=None, epoch_examples=None, x=None, initializers=None, init_from=None, init_map=None):
    """Build the autoencoder of `cfg`; nothing runs. Into a new tf.Graph, finalised (finalize=False
    leaves it open), or, with `x` (the caller's [batch, dims[0]] float32 tensor: a placeholder, a
    tf.data batch), into x's graph at its top scope, whose seed and finalising stay the caller's.

    With a `schedule` (tf1_config.Schedule) and `num_examples`, the graph also holds the training
    set (ae.input: fill it with tf1_input.load) and the run's stages (ae.stages), RBMs first when
    schedule.rbm is set; `ae.x` then defaults to the next batch. input_kind: tf1_input's resident
    cursor or tfdata (the same batches). nnz: the training set is a sparse CSR matrix with that many
    stored values (ratings; fill it with (indptr, columns, values)). image_shape: (H, W) of the
    examples for cfg.shift. placement: where the pieces go (OneMachine's attributes; a cluster's
    worker: tf1_cluster.placement). epoch_examples: the training set's size when the graph holds
    part of it (one worker's shard of num_examples rows). initializers: a caller's {"kernel": ...,
    "bias": ...} for cfg.init's. init_from: a checkpoint whose values the variables start from,
    init_map {its name: the model's} (None: the model's own names), checked first (tf1_checkpoints)."""
    check_build(cfg, schedule, num_examples, image_shape, nnz, x)
    placement, graph = placement or OneMachine(), tf.Graph() if x is None else x.graph
    mapping = tf1_checkpoints.assignment(init_from, variable_shapes(cfg), init_map) if init_from else None
    with graph.as_default(), tf1.device(placement.model):
        if cfg.seed is not None and x is None:
            tf1.set_random_seed(cfg.seed)  # the graph's seed: op seeds follow from creation order
        global_step = tf1.train.get_or_create_global_step()
        with tf1.device(placement.local):
            pipe = tf1_input.pipeline(num_examples, cfg.dims[0], input_kind, nnz) if schedule else None
        given, default = x, pipe.next_batch() if pipe else None
        x = x if given is not None else tf1.placeholder_with_default(default, [None, cfg.dims[0]], "x") if pipe \
            else tf1.placeholder(tf.float32, [None, cfg.dims[0]], "x")
        encoder = encoder_variables(cfg, placement.getter, initializers)
        decoder = decoder_variables(cfg, placement.getter, initializers)
        variables = {name_of(v): v for v in [*encoder[0], *encoder[1], *decoder[0], *decoder[1]]}
        if mapping:
            tf1_checkpoints.init_from(init_from, mapping, variables)
        parts = _Parts(cfg, x, encoder, decoder, variables, global_step, pipe,
                       tuple(image_shape) if image_shape else None, epoch_examples or num_examples, placement)
        model = _heads_and_stages(parts, schedule)
        placement.settle()
        init = tf.group(tf1.global_variables_initializer(), tf1.local_variables_initializer())
        if model["sync_op"] is not None:  # the frozen copies start equal to the transposes
            with tf.control_dependencies([init]):
                init = assign_transposes(decoder[0], encoder[0], placement.read)
        saver = tf1.train.Saver(max_to_keep=3, save_relative_paths=True)
        # a second Saver for the best epoch: its own bookkeeping, so the rolling one never prunes it
        best_saver = tf1.train.Saver([*variables.values(), global_step], max_to_keep=1, save_relative_paths=True,
                                     name="best_saver")
    if finalize or (finalize is None and given is None):
        graph.finalize()
    return AutoEncoder(config=cfg, graph=graph, x=x, variables=variables, global_step=global_step, init_op=init,
                       saver=saver, best_saver=best_saver, input=pipe, **model)


def _heads_and_stages(parts, schedule):
    """The heads, the ops between them, and (with a schedule) the stages, as build's dict of parts."""
    cfg, (enc_w, _), (dec_w, _), read = parts.cfg, parts.encoder, parts.decoder, parts.placement.read
    transposes = lambda: assign_transposes(dec_w, enc_w, read)  # noqa: E731  (decoder kernels <- encoder's^T)
    stages = tf1_rbm.unrolled_stages(schedule.rbm, parts.pipe, parts.global_step, parts.encoder, parts.decoder,
                                     lambda *_: transposes()) if schedule and schedule.rbm else ()
    first = stages[-1].last_step if stages else 0
    per_epoch = parts.epoch_examples // schedule.batch_size if schedule else 0
    rate = lambda: tf1_training.learning_rate(  # noqa: E731  (cosine over all the autoencoder's steps)
        cfg, parts.global_step, first, max(1, schedule.epochs * per_epoch) if schedule else None)
    sync_op = transposes() if cfg.mode == "sync" else None
    resync = transposes if sync_op is not None and (schedule is None or schedule.sync_every == "step") else None
    train, train_steps = head(parts, "train", cfg.mode in ("untied", "sync"),
                              [parts.variables[n] for n in trainable_names(cfg)], rate(), resync)
    finetune = untie_op = None
    if cfg.mode == "tied-untied":
        untie_op = tf.group(transposes(), name="untie")
        finetune, finetune_steps = head(parts, "finetune", True,
                                        [parts.variables[n] for n in trainable_names(cfg, finetune=True)], rate())
    if schedule:
        tied = schedule.tied_epochs if cfg.mode == "tied-untied" else schedule.epochs  # Schedule: half, unless given
        epoch_end, per = sync_op if schedule.sync_every == "epoch" else None, (schedule.batch_size, per_epoch)
        stages += (tf1_input.epochs_stage("tied" if untie_op is not None else cfg.mode, tied, 0, first, *per,
                                          train_steps, train, epoch_end=epoch_end),)
        if untie_op is not None:
            stages += (tf1_input.epochs_stage("untied", schedule.epochs - tied, tied, stages[-1].last_step, *per,
                                              finetune_steps, finetune, enter=untie_op),)
    return dict(train=train, finetune=finetune, sync_op=sync_op, untie_op=untie_op, stages=stages)


class Inference(NamedTuple):
    """The clean forward pass alone, for serving: no optimiser, no input pipeline, no noise."""

    graph: tf.Graph
    x: tf.Tensor  # [None, dims[0]] float32 placeholder
    code: tf.Tensor  # [None, dims[-1]]
    reconstruction: tf.Tensor  # [None, dims[0]]
    variables: Dict[str, tf.Variable]  # the module docstring's names, restorable from any checkpoint
    saver: tf1.train.Saver  # those variables only


def build_inference(cfg, untied):
    """A new graph (not finalised: a SavedModel builder adds its ops) with the model's variables
    and its clean forward pass. untied: decode with the decoder's own kernels (untied and sync
    models, and tied-untied after the untie) rather than the encoder's transposes."""
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(0 if cfg.seed is None else cfg.seed)  # initial values, replaced by a restore
        x = tf1.placeholder(tf.float32, [None, cfg.dims[0]], "x")
        (enc_w, enc_b), (dec_w, dec_b) = encoder_variables(cfg), decoder_variables(cfg)
        code = tf.identity(encode(cfg, x, enc_w, enc_b), name="code")
        _, recon = decode(cfg, code, dec_b, kernels=dec_w) if untied else decode(cfg, code, dec_b,
                                                                                  encoder_kernels=enc_w)
        recon = tf.identity(recon, name="reconstruction")
        variables = {name_of(v): v for v in [*enc_w, *enc_b, *dec_w, *dec_b]}
        saver = tf1.train.Saver(list(variables.values()))
    return Inference(graph=graph, x=x, code=code, reconstruction=recon, variables=variables, saver=saver)


def final_head(ae):
    """The head that evaluates the model after its stages: the last autoencoder stage that trains
    (the untied one once tied-untied has untied), else `train`."""
    return next((s.head for s in reversed(ae.stages) if s.head is not None and s.epochs), ae.train)
