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

Regularisers (AEConfig shift, mask_noise, gaussian_noise, code_dropout, hidden_dropout, weight_decay)
act on the training pass only (`regularisers`, `weight_decay`); each Head's code, reconstruction, loss
and sse are the clean model's, and Head.training holds the pass a step takes. `build_inference`
makes the clean forward pass alone, for serving (tae_export's SavedModel).

With cfg.sparse_input (masked_mse on a CSR training set, ratings) the stages' steps read each batch
as a tf.SparseTensor: the first layer from the batch's ratings, the last only at the rated pairs
(tf1_sparse), the same loss and gradients as the dense batch's; each Head then also has a
SparsePass, the same head on a fed sparse placeholder, with the outputs at any fed pairs.

A model is made of stages (tf1_input.Stage): with RBM pretraining, one per RBM (tf1_rbm), whose
last epoch ends by unrolling the stack into the autoencoder; then the `train` head's stage; then,
for tied-untied, the `finetune` head's, which starts with the untie.

Variable names are the checkpoint format and the porting interface:
    encoder/layer_{i}/kernel [dims[i], dims[i+1]]    encoder/layer_{i}/bias [dims[i+1]]
    decoder/layer_{j}/kernel [rev[j], rev[j+1]]      decoder/layer_{j}/bias [rev[j+1]]
(no decoder kernels in a tied model). Checkpoints also hold `global_step`, the optimizer's state
under `train/` (Adam: `train/<variable>/Adam`, `.../Adam_1`, `train/beta1_power`, `train/beta2_power`)
and `finetune/` (tied-untied), and, when built with a schedule, `progress/*` (tf1_input) and `rbm/*`.

This module only builds graphs: importing it or calling `build` runs nothing, reads no data and
changes no global TensorFlow setting. Every `build` makes a new tf.Graph and finalises it.
"""
import random
import re
from typing import Dict, NamedTuple, Optional, Tuple

import tensorflow as tf

import tf1_input
import tf1_rbm
import tf1_sparse
from tf1_config import (MODES, TRAINABLE, AEConfig, ConfigError, RBMConfig, Schedule,  # noqa: F401  (re-exported)
                        trainable_names, variable_shapes)

tf1 = tf.compat.v1
ACTIVATIONS = {"sigmoid": tf.sigmoid, "relu": tf.nn.relu, "elu": tf.nn.elu, "selu": tf.nn.selu, "tanh": tf.tanh,
               "linear": tf.identity}
OPTIMIZERS = {"adam": tf1.train.AdamOptimizer, "lazyadam": tf1_sparse.LazyAdamOptimizer,
              "sgd": tf1.train.GradientDescentOptimizer}


class Training(NamedTuple):
    """What a training step on `x` computes. Without regularisers, input is x and code and loss are
    the Head's own tensors."""

    input: tf.Tensor  # [batch, dims[0]]: x after masking and Gaussian noise
    code: tf.Tensor  # [batch, dims[-1]]: the code after dropout
    loss: tf.Tensor  # scalar: the loss of the noisy, dropped-out pass against the clean x
    objective: tf.Tensor  # scalar: loss + the weight decay; what minimize sees


class Head(NamedTuple):
    """One way through the model on the fed (or default) batch `x`, with its loss and training op.
    code, reconstruction, loss and sse are the clean model's: no noise, no dropout."""

    code: tf.Tensor  # [batch, dims[-1]] float32
    reconstruction: tf.Tensor  # [batch, dims[0]] float32, after the output activation
    loss: tf.Tensor  # scalar float32, the training loss (mse or xent, mean over all entries)
    sse: tf.Tensor  # [batch] float32, sum over pixels of (x - reconstruction)^2 (Hinton 2006's unit)
    train_op: tf.Operation  # one optimizer step on exactly var_list (then sync's re-assignment)
    var_list: Tuple[tf.Variable, ...]  # what train_op may change
    training: Training  # the training step's own pass on x (regularisers applied)
    decoder: str  # "tied" (the encoder's kernels, transposed) or "untied" (the decoder's own kernels)
    learning_rate: tf.Tensor  # scalar float32: the rate the next step uses (the schedule at global_step)
    sparse: Optional["SparsePass"] = None  # cfg.sparse_input: the same head on sparse input
    sync: Optional["SyncStep"] = None  # a synchronous cluster run (Placement.replicas): one step a Session call


class SyncStep(NamedTuple):
    """One synchronous step of a worker's replica, tf.train.SyncReplicasOptimizer around the head's
    optimizer: every worker runs `push` on its next batch (its gradient to the accumulators on the
    ps tasks, a token taken), the chief runs `apply` once all have pushed (the mean gradient
    applied, global_step + 1, a token for each worker). Outside the multi-step loop: the
    optimizer's ops cannot live in a tf.while_loop's function graph (docs/cluster.md)."""

    loss: tf.Tensor  # the worker's training loss on its batch (run with push)
    push: tf.Operation  # the worker's gradient to the accumulators; adds loss to progress/figure_sum
    apply: tf.Operation  # the chief's: the mean of the pushed gradients applied (then sync mode's re-assignment)
    local_step_init: tf.Operation  # the worker's gradients are stamped with global_step (run before push)
    chief_init: tf.Operation  # the accumulators' step set to global_step (the chief, at each epoch's start)
    init_tokens: tf.Operation  # the token queue's first tokens (the chief, once a run)


class SparsePass(NamedTuple):
    """A head on a fed SparseTensor of ratings (cfg.sparse_input; tf1_sparse): the rows' stored
    values are the input and the target, as the dense x is on the dense path."""

    input: tf.SparseTensor  # [batch, dims[0]] placeholder: each row's stored ratings (sorted, row-major)
    pairs: tf.Tensor  # [q, 2] int64 placeholder: (row of input, column) pairs to predict
    predictions: tf.Tensor  # [q] the clean model's output at pairs (after the output activation)
    training: Training  # the training pass on input (input and code of it are None: nothing dense)
    train_op: tf.Operation  # one step on the fed input, like Head.train_op


class Placement(NamedTuple):
    """Where `build` puts a graph for between-graph replication on a cluster (tf1_cluster.placement):
    each worker builds the same graph with its own `local` device."""

    model: object  # a device function (tf1.train.replica_device_setter): variables, slots and global_step
    # on the parameter servers, every other op on this worker
    local: str  # this worker's device: the training set held in the graph and progress/*, one per worker
    partitions: int  # the wide variables (encoder layer 0's kernel, the last decoder kernel and bias) in parts
    replicas: int = 0  # synchronous updates over this many workers (each head's SyncStep); 0: asynchronous
    task: int = 0  # this worker's index: keys its noise and dropout apart from the others' in a synchronous step


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


def _initializer(cfg, kind):
    if cfg.init == "snippet":  # the question: tf.random_normal(shape) for weights and biases alike
        return tf1.random_normal_initializer(0.0, 1.0)
    return tf1.glorot_uniform_initializer() if kind == "kernel" else tf1.zeros_initializer()


def _split(partitions, axis, wide):
    """The partitioner of a wide variable (one row or column per input value) on a cluster: that
    many contiguous parts along `axis` (tf1_cluster); None keeps it whole."""
    return tf1.fixed_size_partitioner(partitions, axis) if wide and partitions and partitions > 1 else None


def encoder_variables(cfg, partitions=None):
    """encoder/layer_{i}/{kernel,bias}, as two lists (the question's encoderWeights/Biases).
    partitions: the first kernel (one row per input value) in that many parts, by rows."""
    kernels, biases = [], []
    for i in range(len(cfg.dims) - 1):
        with tf1.variable_scope(f"encoder/layer_{i}"):
            kernels.append(tf1.get_variable("kernel", cfg.dims[i : i + 2], initializer=_initializer(cfg, "kernel"),
                                            partitioner=_split(partitions, 0, i == 0)))
            biases.append(tf1.get_variable("bias", [cfg.dims[i + 1]], initializer=_initializer(cfg, "bias")))
    return kernels, biases


def decoder_variables(cfg, partitions=None):
    """decoder/layer_{j}/bias always, decoder/layer_{j}/kernel unless tied; j counts from the code.
    Only untied mode trains the kernels from the start (sync's are copies; tied-untied's wait).
    partitions: the last kernel (one column per output value) in that many parts by columns, its
    bias likewise, cut where the first encoder kernel's rows are."""
    rev = cfg.dims[::-1]
    kernels, biases = [], []
    for j in range(len(rev) - 1):
        last = j == len(rev) - 2
        with tf1.variable_scope(f"decoder/layer_{j}"):
            if cfg.mode != "tied":
                kernels.append(tf1.get_variable("kernel", rev[j : j + 2], initializer=_initializer(cfg, "kernel"),
                                                trainable=cfg.mode == "untied", partitioner=_split(partitions, 1, last)))
            biases.append(tf1.get_variable("bias", [rev[j + 1]], initializer=_initializer(cfg, "bias"),
                                           partitioner=_split(partitions, 0, last)))
    return kernels, biases


def name_of(variable):
    """A model variable's name ("encoder/layer_0/kernel"), whole or partitioned (a partitioned
    variable has no single op; its parts are .../kernel/part_0, ...)."""
    return variable.name.split(":")[0]


def parts_of(variables):
    """The tf.Variables behind `variables`: a partitioned one stands for its parts (what an
    optimizer's var_list and a Saver see)."""
    return [part for v in variables for part in ([v] if isinstance(v, tf.Variable) else list(v))]


def name_slots_whole(optimizer, var_list):
    """Checkpoint names for a partitioned variable's optimizer slots. TF 1.x derives the whole slot's
    name by cutting the variable's name off the slot's, which mangles it when the optimizer works in
    a scope of its own ("train/.../part_0/Adam" -> ".../art_0/Adam"); each part's slot is given the
    name a single machine saves the slot under, "train/<variable>/Adam", so the checkpoints agree."""
    for v in var_list:
        for part in ([] if isinstance(v, tf.Variable) else list(v)):
            for slot in (optimizer.get_slot(part, n) for n in optimizer.get_slot_names()):
                info = getattr(slot, "_save_slice_info", None)
                if info is not None:
                    whole = re.sub(r"/part_\d+(?=/)", "", slot.op.name)
                    slot._set_save_slice_info(tf.Variable.SaveSliceInfo(whole, info.full_shape, info.var_offset,
                                                                        info.var_shape))


def _keep(h, layer, drop):
    return h if drop is None else drop(h, layer)


def encode(cfg, x, kernels, biases, drop=None, first=None):
    """x [batch, dims[0]] -> code [batch, dims[-1]]: f(h W_i + b_i), code_activation last.
    drop(h, layer): dropout after each layer's activation in training (`regularisers`).
    first: x W_0 computed otherwise (the sparse path's tf1_sparse.first_layer); x is then unused."""
    h = x
    for i, (w, b) in enumerate(zip(kernels, biases)):
        act = cfg.code_activation if i == len(kernels) - 1 else cfg.activation
        h = _keep(ACTIVATIONS[act]((first if i == 0 and first is not None else tf.matmul(h, w)) + b), i, drop)
    return h


def decode(cfg, code, biases, kernels=None, encoder_kernels=None, drop=None, last=None):
    """code [batch, dims[-1]] -> (logits, reconstruction), both [batch, dims[0]].

    Pass `kernels` (untied: V_j) or `encoder_kernels` (tied: V_j = W_{L-1-j}^T). drop: as encode's,
    on the decoder's hidden layers (numbered on from the encoder's). last(g): the last layer's logits
    computed otherwise (the sparse path's outputs at the rated pairs only, tf1_sparse.at_pairs).
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
            g = _keep(ACTIVATIONS[cfg.activation](g), n + j, drop)
    return g, ACTIVATIONS[cfg.output_activation](g)


def regularised(cfg):
    return bool(cfg.shift or cfg.mask_noise or cfg.gaussian_noise or cfg.code_dropout or cfg.hidden_dropout)


SHIFT = 500  # the shifts' purpose in regularisers' key (below the dropout layers' 2 + layer)


def shift_images(x, image_shape, offsets, most):
    """x [batch, H * W] with each image moved by its own (down, right) offsets [batch, 2] int32, each
    in [-most, most]: pixels moved out are lost, pixels moved in are 0. Two gathers on the padded
    images, so the data set is never copied."""
    h, w = image_shape
    padded = tf.pad(tf.reshape(x, [-1, h, w]), [[0, 0], [most, most], [most, most]])
    rows = tf.expand_dims(tf.range(h), 0) + most - offsets[:, :1]  # output row r is input row r - down
    cols = tf.expand_dims(tf.range(w), 0) + most - offsets[:, 1:]
    moved = tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    return tf.reshape(moved, [-1, h * w])


def regularisers(cfg, global_step, image_shape=None, replica=0):
    """The training pass's random parts. Their random numbers are counter-based,
    keyed by (seed, purpose, global step), so a resumed run draws what an uninterrupted one would.

    corrupt: masking noise (each value kept with probability 1 - mask_noise, else 0: the denoising
    autoencoder's corruption as in Theano's dA), then Gaussian noise. With masked_mse the masking
    draws one number per stored (non-zero) value, in row-major order, so that the dense and the
    sparse path (corrupt_values, on a SparseTensor's values) mask the same ratings. drop: inverted
    dropout, code_dropout on the code (layer L-1), hidden_dropout on every other layer but the output.
    shift(x): each image of x ([batch, H * W], image_shape (H, W)) moved by a random offset in
    [-cfg.shift, cfg.shift] on each axis (`shift_images`); the moved image is the example, input and
    target. replica: a synchronous step's worker index, which keys its draws apart from the other
    workers' at the same step (0 keys them as on one machine). Returns (corrupt, corrupt_values, drop, shift)."""
    seed = cfg.seed if cfg.seed is not None else random.randrange(2 ** 31)
    code_layer = len(cfg.dims) - 2

    def key(purpose):  # purpose 0: masking, 1: Gaussian, 2 + layer: dropout, SHIFT: the shifts
        return tf.stack([tf.constant(seed * 1024 + 512 + purpose + replica * 2 ** 42, tf.int64),
                         global_step.read_value()])

    def corrupt_values(values):  # masked_mse: the stored values, in row-major order
        if not cfg.mask_noise:
            return values
        return values * tf.cast(tf.random.stateless_uniform(tf.shape(values), key(0)) >= cfg.mask_noise, values.dtype)

    def corrupt(x):
        if cfg.mask_noise and cfg.loss == "masked_mse":  # only the ratings are drawn for: as the sparse path
            stored = tf.where(tf.not_equal(x, 0.0))
            x = tf.scatter_nd(stored, corrupt_values(tf.gather_nd(x, stored)), tf.shape(x, out_type=tf.int64))
        elif cfg.mask_noise:
            x = x * tf.cast(tf.random.stateless_uniform(tf.shape(x), key(0)) >= cfg.mask_noise, x.dtype)
        if cfg.gaussian_noise:
            x = x + cfg.gaussian_noise * tf.random.stateless_normal(tf.shape(x), key(1))
        return x

    def drop(h, layer):  # inverted dropout from TF 1.15's ops; the same numbers as TF 2's stateless_dropout
        rate = cfg.code_dropout if layer == code_layer else cfg.hidden_dropout
        if not rate:
            return h
        keep = tf.random.stateless_uniform(tf.shape(h), key(2 + layer)) >= rate
        return h * (1.0 / (1.0 - rate)) * tf.cast(keep, h.dtype)

    def shift(x):
        if not cfg.shift:
            return x
        draws = tf.random.stateless_uniform(tf.stack([tf.shape(x)[0], 2]), key(SHIFT))
        offsets = tf.cast(tf.floor(draws * (2 * cfg.shift + 1)), tf.int32) - cfg.shift
        return shift_images(x, image_shape, offsets, cfg.shift)

    return corrupt, corrupt_values, drop, shift


def weight_decay(cfg, var_list, touched=None):
    """weight_decay * sum(w^2) / 2 over the kernels in var_list: the gradient adds weight_decay * W.
    A tied model's kernels are each in var_list once, so each is decayed once.

    touched (lazyadam on the sparse path): the tf1_sparse.Lookup of the batch's distinct items; the
    two wide kernels (the first encoder kernel's rows, the last decoder kernel's columns) are
    decayed at those only, so the decay's gradient touches no other row. The rows are the lookup's
    own (its zero row, if any, adds nothing): the decay's gradient and the layer's meet in one
    tensor, and the kernel gets a single update over distinct rows. The decoder kernel's columns
    are picked by a 0/1 mask rather than a gather along axis 1: its gradient is dense either way,
    and the mask's is a product where the gather's is a transpose and a scatter."""
    kernels = [v for v in var_list if name_of(v).endswith("/kernel")]
    if not cfg.weight_decay or not kernels:
        return None
    last = f"decoder/layer_{len(cfg.dims) - 2}/kernel"

    def part(w):
        if touched is None or name_of(w) not in ("encoder/layer_0/kernel", last):
            return w
        if name_of(w).startswith("encoder/"):
            return touched.rows
        return tf1_sparse.mask_columns(w, touched.items)

    return cfg.weight_decay * tf.add_n([tf.nn.l2_loss(part(w)) for w in kernels])


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


def learning_rate(cfg, global_step, first_step=0, decay_steps=None):
    """The schedule as a callable that builds the rate at the global step (the optimizer is given the
    callable, so that a step built inside a while_loop reads the schedule at that step's global step):
    cosine counts from `first_step` (after the RBMs) over `decay_steps` (cfg.lr_decay_steps unless
    that is None); a warm-up multiplies it, rising linearly over the first warmup_steps steps."""
    def lr():
        rate = cfg.learning_rate
        if cfg.lr_schedule == "cosine":  # a function of global_step, so it resumes where it stopped
            rate = tf1.train.cosine_decay(cfg.learning_rate, global_step - first_step, cfg.lr_decay_steps or decay_steps)
        if cfg.warmup_steps:  # the k-th step (k = 1, 2, ...) at k / warmup_steps of the rate
            done = tf.cast(global_step - first_step + 1, tf.float32)
            rate = rate * tf.minimum(1.0, done / float(cfg.warmup_steps))
        return rate

    if cfg.lr_schedule == "cosine" and not (cfg.lr_decay_steps or decay_steps):
        raise ValueError("lr_schedule cosine needs lr_decay_steps, or a run to take the length from")
    return lr


def value_of(variable):
    """A variable's value, read where the caller builds it (inside its control dependencies). A
    partitioned variable is concatenated from its parts' reads: converted to a tensor as it is, it
    drops the control dependencies (PartitionedVariable.as_tensor), and a read meant to follow an
    update could see the value before it."""
    if isinstance(variable, tf.Variable):
        return variable.read_value()
    parts = list(variable)
    if len(parts) == 1:
        return parts[0].read_value()
    whole, part = variable.get_shape().as_list(), parts[0].get_shape().as_list()
    axis = next(i for i, (a, b) in enumerate(zip(part, whole)) if a != b)
    return tf.concat([p.read_value() for p in parts], axis)


def assign_transposes(dst_kernels, encoder_kernels):
    """Decoder kernel j <- encoder kernel L-1-j, transposed (sync, untie and unrolling use this)."""
    n = len(dst_kernels)
    assigned = [dst_kernels[j].assign(tf.transpose(value_of(encoder_kernels[n - 1 - j]))) for j in range(n)]
    return tf.group(*[a for one in assigned for a in (one if isinstance(one, list) else [one])])  # a list per partitioned one


class _Parts(NamedTuple):
    """The graph pieces the heads are made from (build's working set)."""

    cfg: AEConfig
    x: tf.Tensor
    encoder: tuple  # (kernels, biases)
    decoder: tuple  # (kernels, biases)
    global_step: tf.Variable
    pipe: Optional[tf1_input.Pipeline]
    image_shape: Optional[Tuple[int, int]]
    epoch_examples: Optional[int]  # what an epoch counts: the training set's size (the pipeline's, or all shards')
    replicas: int = 0  # Placement.replicas
    task: int = 0  # Placement.task


def head(parts, name, untied, var_list, rate, after=None):
    """A Head on the model's `x` and, with a pipeline, its multi-step tensor on drawn batches.
    untied: decode with the decoder's own kernels (untied, sync, finetune) or W^T (tied).
    With cfg.sparse_input the Head also has a SparsePass, and the drawn batches are sparse."""
    cfg, (enc_w, enc_b), (dec_w, dec_b) = parts.cfg, parts.encoder, parts.decoder
    optimizer = OPTIMIZERS[cfg.optimizer](rate)  # rate: learning_rate's callable
    corrupt, corrupt_values, drop, shift = regularisers(cfg, parts.global_step, parts.image_shape)

    def forward(x, inputs, drop=None):  # the reconstruction of `inputs` is scored against x
        code = encode(cfg, inputs, enc_w, enc_b, drop)
        logits, recon = decode(cfg, code, dec_b, kernels=dec_w, drop=drop) if untied else decode(
            cfg, code, dec_b, encoder_kernels=enc_w, drop=drop)
        return (code, recon, *loss_terms(cfg, x, logits, recon))

    def sparse_forward(batch, inputs, pairs=None, drop=None):
        """(code, output at pairs, the tf1_sparse.Lookup of its items) of a SparseTensor batch whose values are
        replaced by `inputs`; pairs [q, 2] (row, column), None: the batch's own rated pairs."""
        found = tf1_sparse.lookup(enc_w[0], batch.indices[:, 1], cfg.dims[0])
        code = encode(cfg, None, enc_w, enc_b, drop, first=tf1_sparse.first_layer(batch, inputs, found))
        own, last_b = batch.indices, dec_b[-1]
        if pairs is None and untied:  # the batch's own pairs: the whole product, read off (tf1_sparse's docstring)
            last = lambda g: tf1_sparse.at_pairs_full(g, dec_w[-1], last_b, own)  # noqa: E731
        elif pairs is None:  # tied: one product over the batch's distinct items, the rows the lookup found
            last = lambda g: tf1_sparse.at_pairs_block(g, own[:, 0], found.where, found.rows, last_b,  # noqa: E731
                                                       found.items)
        else:  # other pairs than the input's (scoring): their own distinct columns, a pair at a time
            items, where = tf.unique(pairs[:, 1], out_idx=tf.int64)
            columns = tf1_sparse.columns_of(dec_w[-1], items) if untied else tf1_sparse.nonempty(
                tf1_sparse.rows_of(enc_w[0], items))
            last = lambda g: tf1_sparse.at_pairs(g, pairs[:, 0], where, columns, last_b, pairs[:, 1])  # noqa: E731
        _, output = decode(cfg, code, dec_b, kernels=dec_w if untied else None,
                           encoder_kernels=None if untied else enc_w, drop=drop, last=last)
        return code, output, found

    def training(x, clean=None, draws=(corrupt, corrupt_values, drop, shift)):
        if clean is not None and not regularised(cfg):
            noisy, (code, _, loss, _) = x, clean
        else:
            x = draws[3](x)  # the moved image is the example: the target too
            noisy = draws[0](x)
            code, _, loss, _ = forward(x, noisy, draws[2])
        decay = weight_decay(cfg, var_list)
        return Training(noisy, code, loss, loss if decay is None else loss + decay)

    def sparse_training(batch, draws=(corrupt, corrupt_values, drop, shift)):  # masked_mse over the batch's
        # stored values: those of `training` on its dense form
        code, output, found = sparse_forward(batch, draws[1](batch.values), drop=draws[2])
        squared = tf.math.squared_difference(batch.values, output)
        loss = tf.reduce_sum(squared) / tf.maximum(tf.cast(tf.size(squared), tf.float32), 1.0)
        decay = weight_decay(cfg, var_list, touched=found if cfg.optimizer == "lazyadam" else None)
        return Training(None, code, loss, loss if decay is None else loss + decay)

    def step(objective, x):  # sync's frozen copies are outside var_list: no gradient reaches W through them
        update = optimizer.minimize(objective, parts.global_step, var_list=parts_of(var_list))
        if cfg.dense_refeed:
            # DeepRecommender's dense re-feeding (Kuchaiev & Ginsburg 2017): after the step on x, its
            # dense output y = f(x), as updated, is a new example, input and target both; a second
            # update on it, which does not count as a step of its own (global_step moves once)
            with tf.control_dependencies([update]):  # every read below comes after the first update
                y = tf.stop_gradient(forward(x, x)[1])
                again = training(y)
                update = optimizer.minimize(again.objective, var_list=parts_of(var_list))
        if after is None:
            return update
        with tf.control_dependencies([update]):
            return after()

    def loop_step(batch):  # the same step on a drawn batch, inside the multi-step loop
        trained = sparse_training(batch) if cfg.sparse_input else training(batch)
        return trained.loss, step(trained.objective, batch)

    with tf1.variable_scope(name):  # the optimizer's slots: name/<variable>/Adam...
        clean = forward(parts.x, parts.x)
        trained = training(parts.x, clean)
        train_op = step(trained.objective, parts.x)
        sparse = None
        if cfg.sparse_input:
            fed = tf1.sparse_placeholder(tf.float32, [None, cfg.dims[0]], name="sparse_x")
            pairs = tf1.placeholder(tf.int64, [None, 2], name="pairs")
            sparse_trained = sparse_training(fed)
            sparse = SparsePass(input=fed, pairs=pairs, predictions=sparse_forward(fed, fed.values, pairs)[1],
                                training=sparse_trained, train_op=step(sparse_trained.objective, None))
        # a synchronous replica steps through its SyncStep alone: no multi-step loop (Stage.steps None)
        steps = tf1_input.multi_step(parts.pipe, loop_step, cfg.sparse_input) if parts.pipe is not None and \
            not parts.replicas else None
        sync = None
        if parts.replicas and parts.pipe is not None:
            draws = regularisers(cfg, parts.global_step, parts.image_shape, replica=parts.task)
            trained_here = sparse_training(parts.pipe.next_sparse_batch(), draws) if cfg.sparse_input else \
                training(parts.pipe.next_batch(), draws=draws)
            sync = synchronous_step(optimizer, trained_here, var_list, parts, after)
        name_slots_whole(optimizer, var_list)
        now = tf.cast(rate(), tf.float32, name="learning_rate")  # what the next step uses, for the logs
    code, reconstruction, loss, sse = clean
    return Head(code=code, reconstruction=reconstruction, loss=loss, sse=sse, train_op=train_op,
                var_list=tuple(var_list), training=trained, decoder="untied" if untied else "tied",
                learning_rate=now, sparse=sparse, sync=sync), steps


def _as_rows(gradient):
    """A dense gradient as IndexedSlices over every row: the same update (lazy Adam moves every row)."""
    rows = tf.shape(gradient, out_type=tf.int64)[0]
    return tf.IndexedSlices(gradient, tf.range(rows), tf.shape(gradient, out_type=tf.int64))


def synchronous_step(optimizer, trained, var_list, parts, after=None):
    """The SyncStep of a head whose `optimizer` trains var_list on the pass `trained` (a batch drawn
    from the worker's shard): tf.train.SyncReplicasOptimizer aggregating one gradient from each of
    parts.replicas workers. Its accumulators and token queue live on the ps tasks under shared names
    (`<variable>/grad_accum`, `sync_token_q`): a tied-untied run's two heads use the same ones, one
    stage after the other. The caller paces the workers (each pushes once a global step): the
    optimizer itself takes the first N gradients to come, whoever sends them."""
    sync = tf1.train.SyncReplicasOptimizer(optimizer, replicas_to_aggregate=parts.replicas,
                                           total_num_replicas=parts.replicas)
    grads = sync.compute_gradients(trained.objective, var_list=parts_of(var_list))
    if parts.cfg.sparse_input:  # the last bias's gradient is over the batch's items when tied, whole when untied:
        # one kind for both stages, which share its accumulator by name (a dense one and a sparse one cannot)
        last = f"decoder/layer_{len(parts.cfg.dims) - 2}/bias"
        grads = [(_as_rows(g) if re.sub(r"/part_\d+$", "", name_of(v)) == last and isinstance(g, tf.Tensor) else g, v)
                 for g, v in grads]
    push = sync.apply_gradients(grads, parts.global_step)
    with tf.control_dependencies([push]):
        push = parts.pipe.figure_sum.assign_add(tf.cast(trained.loss, tf.float64)).op
    apply = sync.get_chief_queue_runner().enqueue_ops[0]
    tf.identity(sync.ready_for_local_init_op)  # MonitoredSession's; unused here (no "never used" error line)
    if after is not None:
        with tf.control_dependencies([apply]):
            apply = after()
    # two rounds of tokens: a worker that died between its push and its report, and pushed again,
    # takes one more than its share; the pacing, not the tokens, keeps each worker to one push a step
    return SyncStep(loss=trained.loss, push=push, apply=apply, local_step_init=sync.local_step_init_op,
                    chief_init=sync.chief_init_op, init_tokens=sync.get_init_tokens_op(2 * parts.replicas))


def stage(name, epochs, first_epoch, first_step, schedule, examples, steps, head_, enter=None, epoch_end=None):
    return tf1_input.Stage(name=name, record="epochs", epochs=epochs, first_epoch=first_epoch, first_step=first_step,
                           batch_size=schedule.batch_size, steps_per_epoch=examples // schedule.batch_size,
                           epoch_seed=first_epoch, steps=steps, enter=enter, epoch_end=epoch_end, head=head_)


def build(cfg, schedule=None, num_examples=None, finalize=True, input_kind="resident", nnz=None, image_shape=None,
          placement=None, epoch_examples=None):
    """Build the autoencoder of `cfg` into a new, finalised tf.Graph; nothing runs.

    With a `schedule` (tf1_config.Schedule) and `num_examples`, the graph also holds the training
    set (ae.input: fill it with tf1_input.load) and the run's stages (ae.stages), RBMs first when
    schedule.rbm is set; `ae.x` then defaults to the next batch. input_kind: tf1_input's resident
    cursor or tfdata (the same batches). nnz: the training set is a sparse CSR matrix with that many
    stored values (ratings; fill it with (indptr, columns, values)). image_shape: (H, W) of the
    examples, H * W = dims[0], for cfg.shift. finalize=False leaves the graph open for extra ops
    (tests add tf.gradients). placement (a Placement): the graph as one worker's replica on a cluster,
    the model on the parameter servers and the wide variables partitioned; the same names, so the
    checkpoints are a single machine's. epoch_examples: the training set's size when the graph holds
    one worker's shard of it (num_examples rows): the stages' steps per epoch count the whole set.
    """
    if not isinstance(cfg, AEConfig):
        raise TypeError("build takes an AEConfig")
    if (schedule is None) != (num_examples is None) or not isinstance(schedule, (Schedule, type(None))):
        raise ValueError("give both a tf1_config.Schedule and num_examples, or neither")
    if cfg.shift and (image_shape is None or image_shape[0] * image_shape[1] != cfg.dims[0]):
        raise ValueError(f"shift moves images: give image_shape (H, W) with H * W = dims[0] = {cfg.dims[0]}")
    if cfg.sparse_input and schedule is not None and nnz is None:
        raise ValueError("sparse_input trains on a sparse training set: give nnz (the CSR matrix's stored values)")
    graph = tf.Graph()
    with graph.as_default(), tf1.device(placement.model if placement else None):
        if cfg.seed is not None:
            tf1.set_random_seed(cfg.seed)  # the graph's seed: op seeds follow from creation order
        global_step = tf1.train.get_or_create_global_step()
        with tf1.device(placement.local if placement else None):  # each worker's own, never the servers'
            pipe = tf1_input.pipeline(num_examples, cfg.dims[0], input_kind, nnz) if schedule else None
        default = pipe.next_batch() if pipe else None
        x = tf1.placeholder_with_default(default, [None, cfg.dims[0]], "x") if pipe else \
            tf1.placeholder(tf.float32, [None, cfg.dims[0]], "x")
        partitions = placement.partitions if placement else None
        parts = _Parts(cfg, x, encoder_variables(cfg, partitions), decoder_variables(cfg, partitions), global_step, pipe,
                       tuple(image_shape) if image_shape else None, epoch_examples or num_examples,
                       placement.replicas if placement else 0, placement.task if placement else 0)
        model = _heads_and_stages(parts, schedule)
        init = tf.group(tf1.global_variables_initializer(), tf1.local_variables_initializer())
        if model["sync_op"] is not None:  # the frozen copies start equal to the transposes
            with tf.control_dependencies([init]):
                init = assign_transposes(parts.decoder[0], parts.encoder[0])
        saver = tf1.train.Saver(max_to_keep=3, save_relative_paths=True)
        variables = {name_of(v): v for v in [*parts.encoder[0], *parts.encoder[1], *parts.decoder[0],
                                            *parts.decoder[1]]}
        # a second Saver for the best epoch: its own bookkeeping, so the rolling one never prunes it
        best_saver = tf1.train.Saver([*variables.values(), global_step], max_to_keep=1, save_relative_paths=True,
                                     name="best_saver")
        if finalize:
            graph.finalize()
    return AutoEncoder(config=cfg, graph=graph, x=x, variables=variables, global_step=global_step, init_op=init,
                       saver=saver, best_saver=best_saver, input=pipe, **model)


def _heads_and_stages(parts, schedule):
    """The heads, the ops between them, and (with a schedule) the stages, as build's dict of parts."""
    cfg, (enc_w, enc_b), (dec_w, dec_b) = parts.cfg, parts.encoder, parts.decoder
    variables = {name_of(v): v for v in [*enc_w, *enc_b, *dec_w, *dec_b]}
    rbm_cfg = schedule.rbm if schedule else None
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
    per_epoch = parts.epoch_examples // schedule.batch_size if schedule else 0
    decay = max(1, schedule.epochs * per_epoch) if schedule else None  # cosine over all the autoencoder's steps
    sync_op = assign_transposes(dec_w, enc_w) if cfg.mode == "sync" else None
    resync = (lambda: assign_transposes(dec_w, enc_w)) if sync_op is not None and (
        schedule is None or schedule.sync_every == "step") else None
    names = trainable_names(cfg)
    train, train_steps = head(parts, "train", cfg.mode in ("untied", "sync"), [variables[n] for n in names],
                              learning_rate(cfg, parts.global_step, first, decay), resync)
    finetune = untie_op = None
    if cfg.mode == "tied-untied":
        untie_op = tf.group(assign_transposes(dec_w, enc_w), name="untie")
        finetune, finetune_steps = head(parts, "finetune", True,
                                        [variables[n] for n in trainable_names(cfg, finetune=True)],
                                        learning_rate(cfg, parts.global_step, first, decay))
    if schedule:
        tied = schedule.tied_epochs if cfg.mode == "tied-untied" else schedule.epochs  # Schedule: half, unless given
        epoch_end = sync_op if schedule.sync_every == "epoch" and sync_op is not None else None
        stages += (stage("tied" if untie_op is not None else cfg.mode, tied, 0, first, schedule, parts.epoch_examples, train_steps,
                         train, epoch_end=epoch_end),)
        if untie_op is not None:
            stages += (stage("untied", schedule.epochs - tied, tied, stages[-1].last_step, schedule, parts.epoch_examples,
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
