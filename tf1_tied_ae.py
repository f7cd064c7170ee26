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
                 independent V_j variables and `finetune.train_op` trains all of them.

Variable names are the checkpoint format and the porting interface:
    encoder/layer_{i}/kernel [dims[i], dims[i+1]]    encoder/layer_{i}/bias [dims[i+1]]
    decoder/layer_{j}/kernel [rev[j], rev[j+1]]      decoder/layer_{j}/bias [rev[j+1]]
(no decoder kernels in a tied model). Checkpoints also hold `global_step`, `untied` (tied-untied
only) and the optimizer's state under `train/` (Adam: `train/<variable>/Adam`, `.../Adam_1`,
`train/beta1_power`, `train/beta2_power`) and, for tied-untied's second stage, `finetune/`.

This module only builds graphs: importing it or calling `build` runs nothing, reads no data and
changes no global TensorFlow setting. Every `build` makes a new tf.Graph and finalises it.
"""
import dataclasses
import math
from typing import NamedTuple, Optional, Tuple

import tensorflow as tf

tf1 = tf.compat.v1

MODES = ("untied", "tied", "sync", "tied-untied")
INITS = ("glorot", "snippet")
ACTIVATIONS = {
    "sigmoid": tf.sigmoid,
    "relu": tf.nn.relu,
    "elu": tf.nn.elu,
    "selu": tf.nn.selu,
    "tanh": tf.tanh,
    "linear": tf.identity,
}
LOSSES = ("mse", "xent")
TRAINABLE = ("all", "encoder", "decoder")
SYNC_EVERY = ("step", "epoch")
LR_SCHEDULES = ("constant", "cosine")
OPTIMIZERS = {"adam": tf1.train.AdamOptimizer, "sgd": tf1.train.GradientDescentOptimizer}


def _choice(field, value, allowed):
    if value not in allowed:
        raise ValueError(f"{field} must be one of {', '.join(map(str, allowed))}; got {value!r}")


@dataclasses.dataclass(frozen=True)
class AEConfig:
    """Everything that defines a graph; train.py's flags mirror these fields one to one."""

    dims: Tuple[int, ...] = (784, 196, 81, 49)  # input size, hidden sizes..., code size
    mode: str = "tied"  # untied | tied | sync | tied-untied (see the module docstring)
    init: str = "glorot"  # glorot: Glorot-uniform kernels, zero biases; snippet: N(0, 1) for all
    activation: str = "sigmoid"  # hidden layers, encoder and decoder
    code_activation: Optional[str] = None  # code layer; None = `activation` (Hinton: linear)
    output_activation: Optional[str] = None  # None = linear for mse (the question's), sigmoid for xent
    loss: str = "mse"  # mse: tf.losses.mean_squared_error; xent: sigmoid cross-entropy on logits
    trainable: str = "all"  # which parameters minimize(var_list=...) may change
    optimizer: str = "adam"  # adam (the question's) | sgd (plain gradient descent, for checks)
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"  # constant | cosine (decays to 0 over lr_decay_steps)
    lr_decay_steps: Optional[int] = None  # cosine: steps to decay over (train.py: the whole run)
    seed: Optional[int] = 0  # graph-level seed; None for a random one
    sync_every: str = "step"  # sync mode: re-assign decoder kernels after every step or epoch

    def __post_init__(self):
        try:
            dims = tuple(self.dims)
        except TypeError:
            raise ValueError(f"dims must be a sequence of sizes; got {self.dims!r}") from None
        if len(dims) < 2:
            raise ValueError(f"dims needs at least 2 sizes (input and code); got {dims!r}")
        for d in dims:
            if isinstance(d, bool) or not isinstance(d, int) or d <= 0:
                raise ValueError(f"dims must be positive integers; got {d!r} in {dims!r}")
        object.__setattr__(self, "dims", dims)
        _choice("mode", self.mode, MODES)
        _choice("init", self.init, INITS)
        _choice("activation", self.activation, tuple(ACTIVATIONS))
        if self.code_activation is None:
            object.__setattr__(self, "code_activation", self.activation)
        _choice("code_activation", self.code_activation, tuple(ACTIVATIONS))
        _choice("loss", self.loss, LOSSES)
        if self.output_activation is None:
            object.__setattr__(self, "output_activation", "sigmoid" if self.loss == "xent" else "linear")
        _choice("output_activation", self.output_activation, ("linear", "sigmoid"))
        if self.loss == "xent" and self.output_activation != "sigmoid":
            raise ValueError("output_activation must be sigmoid with loss xent (it is the loss's own link)")
        _choice("trainable", self.trainable, TRAINABLE)
        _choice("sync_every", self.sync_every, SYNC_EVERY)
        _choice("optimizer", self.optimizer, tuple(OPTIMIZERS))
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"learning_rate must be a positive finite number; got {lr!r}")
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        steps = self.lr_decay_steps
        if self.lr_schedule == "cosine" and (isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0):
            raise ValueError(f"lr_decay_steps must be a positive integer with lr_schedule cosine; got {steps!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"seed must be an integer or None; got {self.seed!r}")
        if not trainable_names(self):
            raise ValueError(f"trainable={self.trainable!r} leaves nothing to train in mode {self.mode!r}")


def variable_shapes(cfg):
    """The model's variables, {name: shape}, in creation order (the checkpoint format)."""
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


def trainable_names(cfg, finetune=False):
    """Names handed to minimize(var_list=...). Sync kernels and tied-untied's decoder kernels
    before the untie are never trained; `finetune` is tied-untied's second stage."""
    names = []
    for name in variable_shapes(cfg):
        part = name.split("/")[0]
        if cfg.trainable not in ("all", part):
            continue
        if name.startswith("decoder/") and name.endswith("/kernel"):
            if cfg.mode == "sync" or (cfg.mode == "tied-untied" and not finetune):
                continue
        names.append(name)
    return names


class Head(NamedTuple):
    """One way through the decoder, with its loss and training op."""

    reconstruction: tf.Tensor  # [batch, dims[0]] float32, after the output activation
    loss: tf.Tensor  # scalar float32, the training loss (mse or xent, mean over all entries)
    sse: tf.Tensor  # [batch] float32, sum over pixels of (x - reconstruction)^2 (Hinton 2006)
    train_op: tf.Operation  # one optimizer step on the var_list (then the sync, in sync mode)
    var_list: Tuple[tf.Variable, ...]  # exactly what train_op may change
    train_steps: Optional[tf.Tensor] = None  # resident data only: [n] float32, the losses of n steps
    # run in one Session call (n = resident.steps_placeholder), each exactly as train_op on a drawn batch


class ResidentInput(NamedTuple):
    """Training data held in the graph, batches drawn in the graph (no per-step feed).
    Fill it with `load_resident` after `init_op` (which `AutoEncoder.init_op` includes)."""

    init_op: tf.Operation  # initialises the data, order and cursor variables (zeros)
    rows_placeholder: tf.Tensor  # [n, dims[0]] float32: a block of examples for load_rows_op
    offset_placeholder: tf.Tensor  # int32: where that block starts
    load_rows_op: tf.Operation  # writes the block into the resident copy
    order_placeholder: tf.Tensor  # [N] int32: the epoch's shuffled order
    start_placeholder: tf.Tensor  # int32 scalar, default 0: the step within the epoch to start at
    start_epoch_op: tf.Operation  # stores the order and sets the cursor to that step
    batch_size: int  # batches are order[k*B:(k+1)*B]; a partial last batch is dropped
    steps_placeholder: tf.Tensor  # int32 scalar, default 1: how many steps Head.train_steps runs


class AutoEncoder(NamedTuple):
    """What `build` returns; `finetune`, `sync_op`, `untie_op` are None where the mode has none."""

    config: AEConfig
    graph: tf.Graph
    x: tf.Tensor  # [None, dims[0]] float32 placeholder (with_default when data is resident)
    code: tf.Tensor  # [batch, dims[-1]] float32
    reconstruction: tf.Tensor
    loss: tf.Tensor
    sse: tf.Tensor
    train_op: tf.Operation
    var_list: Tuple[tf.Variable, ...]
    variables: dict  # name -> tf.Variable: the names of `variable_shapes`
    global_step: tf.Variable
    init_op: tf.Operation  # initialises everything (and syncs a sync model's decoder)
    saver: tf1.train.Saver  # all global variables: model, optimizer state, global_step
    sync_op: Optional[tf.Operation]  # sync mode: decoder kernels <- encoder kernels^T
    untie_op: Optional[tf.Operation]  # tied-untied: the same copy, and sets `untied`
    untied: Optional[tf.Variable]  # tied-untied: a bool, True once untie_op has run
    finetune: Optional[Head]  # tied-untied's second stage: the untied decoder's head
    resident: Optional[ResidentInput]
    train_steps: Optional[tf.Tensor]  # resident data only: see Head.train_steps


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


def decoder_variables(cfg, with_kernels, trainable_kernels):
    """decoder/layer_{j}/bias (always) and decoder/layer_{j}/kernel (where asked), j from the code."""
    rev = cfg.dims[::-1]
    kernels, biases = [], []
    for j in range(len(rev) - 1):
        with tf1.variable_scope(f"decoder/layer_{j}"):
            if with_kernels:
                kernels.append(
                    tf1.get_variable("kernel", rev[j : j + 2], initializer=_initializer(cfg, "kernel"),
                                     trainable=trainable_kernels))
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


def make_optimizer(cfg, global_step):
    """The optimizer; its learning rate is a callable, so that a step built inside a while_loop
    reads the schedule at that step's global_step."""
    def lr():
        if cfg.lr_schedule == "cosine":  # a function of global_step, so it resumes where it stopped
            return tf1.train.cosine_decay(cfg.learning_rate, global_step, cfg.lr_decay_steps)
        return cfg.learning_rate

    return OPTIMIZERS[cfg.optimizer](lr)


def train_op(optimizer, loss, var_list, global_step, after=None):
    """One optimizer step on exactly `var_list` (then `after()`, e.g. sync's re-assignment);
    everything else in the graph keeps its value."""
    step = optimizer.minimize(loss, global_step, var_list=list(var_list))
    if after is None:
        return step
    with tf.control_dependencies([step]):
        return after()


def assign_transposes(dst_kernels, encoder_kernels):
    """Decoder kernel j <- encoder kernel L-1-j, transposed (sync and untie both use this)."""
    n = len(dst_kernels)
    return tf.group(*[dst_kernels[j].assign(tf.transpose(encoder_kernels[n - 1 - j])) for j in range(n)])


def resident_input(num_examples, dim, batch_size):
    """An in-graph copy of the training set and a batch drawn from it by a cursor: (spec, draw)."""
    if num_examples < batch_size:
        raise ValueError(f"batch_size {batch_size} is larger than the {num_examples} resident examples")
    local = [tf1.GraphKeys.LOCAL_VARIABLES]  # not saved: the data is not part of the model
    with tf1.variable_scope("data"):
        # Empty(init=False) reserves the memory without writing it: its pages stay unresident
        # until load_resident writes the rows (a zeros initializer would touch them all first)
        data = tf1.get_variable("examples", [num_examples, dim], trainable=False, collections=local,
                                initializer=lambda shape, dtype, **_: tf.raw_ops.Empty(shape=shape, dtype=dtype))
        order = tf1.get_variable("order", [num_examples], tf.int32, trainable=False,
                                 initializer=tf1.zeros_initializer(), collections=local)
        cursor = tf1.get_variable("cursor", [], tf.int32, trainable=False, initializer=tf1.zeros_initializer(),
                                  collections=local)
        rows_ph = tf1.placeholder(tf.float32, [None, dim], name="rows_in")
        offset_ph = tf1.placeholder(tf.int32, [], name="rows_offset")
        # rows are written in place, a block at a time: no second full copy of the data set
        load_rows = data[offset_ph : offset_ph + tf.shape(rows_ph)[0]].assign(rows_ph).op
        order_ph = tf1.placeholder(tf.int32, [num_examples], name="order_in")
        start_ph = tf1.placeholder_with_default(0, [], name="start_step")  # resuming mid-epoch
        start_epoch = tf.group(order.assign(order_ph), cursor.assign(start_ph * batch_size))
        steps_ph = tf1.placeholder_with_default(1, [], name="steps")

    def draw():  # the next batch of the epoch's order; the cursor moves with every draw
        end = cursor.assign_add(batch_size)
        return tf.gather(data, order[end - batch_size : end])

    init = tf.group(data.initializer, order.initializer, cursor.initializer)
    spec = ResidentInput(init, rows_ph, offset_ph, load_rows, order_ph, start_ph, start_epoch, batch_size, steps_ph)
    return spec, draw


def train_loop(loss_fn, step_fn, steps):
    """`steps` training steps in one tf.while_loop: [steps] float32 losses, each taken before its
    step's update, as `sess.run([loss, train_op])` would give them. loss_fn() builds a step's
    loss on a freshly drawn batch; step_fn(loss) its update. The explicit control dependencies
    order each step's reads after the previous step's writes."""
    def body(i, losses):
        loss = loss_fn()
        with tf.control_dependencies([step_fn(loss)]):
            return i + 1, losses.write(i, tf.identity(loss))

    _, losses = tf.while_loop(lambda i, _: i < steps, body, [0, tf.TensorArray(tf.float32, size=steps)])
    return losses.stack()


def build(cfg, resident=None, finalize=True):
    """Build the autoencoder of `cfg` into a new, finalised tf.Graph; nothing runs.

    resident: optional (num_examples, batch_size). Then `ae.x` defaults to a batch drawn in the
    graph from the resident training set (see ResidentInput); feeding `ae.x` still overrides it.
    finalize=False leaves the graph open for extra ops (tests add tf.gradients); a finalised graph
    turns an op accidentally built inside a training loop into an error.
    """
    if not isinstance(cfg, AEConfig):
        raise TypeError("build takes an AEConfig")
    graph = tf.Graph()
    with graph.as_default():
        if cfg.seed is not None:
            tf1.set_random_seed(cfg.seed)  # the graph's seed: op seeds follow from creation order
        spec = None
        if resident is not None:
            spec, draw = resident_input(resident[0], cfg.dims[0], resident[1])
            x = tf1.placeholder_with_default(draw(), [None, cfg.dims[0]], name="x")
        else:
            x = tf1.placeholder(tf.float32, [None, cfg.dims[0]], name="x")
        enc_w, enc_b = encoder_variables(cfg)
        dec_w, dec_b = decoder_variables(cfg, with_kernels=cfg.mode != "tied",
                                         trainable_kernels=cfg.mode == "untied")
        untied = None
        if cfg.mode == "tied-untied":
            untied = tf1.get_variable("untied", [], tf.bool, initializer=tf1.constant_initializer(False),
                                      trainable=False)
        variables = {v.op.name: v for v in enc_w + enc_b + dec_w + dec_b}
        global_step = tf1.train.get_or_create_global_step()

        def forward(inputs, untied_decoder):
            """(code, logits, reconstruction, loss, sse) of the model on `inputs`."""
            h = encode(cfg, inputs, enc_w, enc_b)
            if untied_decoder:  # untied, sync (its frozen copies are variables outside var_list, so
                # no gradient reaches W through the decoder), and tied-untied after the untie
                out = decode(cfg, h, dec_b, kernels=dec_w)
            else:  # tied, and tied-untied's first stage
                out = decode(cfg, h, dec_b, encoder_kernels=enc_w)
            return (h, *out, *loss_terms(cfg, inputs, *out))

        def head(name, names, untied_decoder, after=None):
            _, _, recon, loss, sse = forward(x, untied_decoder)
            var_list = tuple(variables[n] for n in names)
            with tf1.variable_scope(name):  # the optimizer's slots: name/<variable>/Adam...
                optimizer = make_optimizer(cfg, global_step)
                step = train_op(optimizer, loss, var_list, global_step, after)
            loop = None
            if spec is not None:
                loop = train_loop(lambda: forward(draw(), untied_decoder)[3],
                                  lambda loss_: train_op(optimizer, loss_, var_list, global_step, after),
                                  spec.steps_placeholder)
            return Head(recon, loss, sse, step, var_list, loop)

        code = forward(x, cfg.mode in ("untied", "sync"))[0]
        sync_op = untie_op = finetune = None
        resync = None
        if cfg.mode == "sync":
            sync_op = assign_transposes(dec_w, enc_w)
            if cfg.sync_every == "step":
                resync = lambda: assign_transposes(dec_w, enc_w)  # noqa: E731
        main = head("train", trainable_names(cfg), cfg.mode in ("untied", "sync"), resync)
        if cfg.mode == "tied-untied":
            untie_op = tf.group(assign_transposes(dec_w, enc_w), untied.assign(True))
            finetune = head("finetune", trainable_names(cfg, finetune=True), True)

        init = tf.group(tf1.global_variables_initializer(), tf1.local_variables_initializer())
        if sync_op is not None:  # the frozen copies start equal to the transposes
            with tf.control_dependencies([init]):
                init = assign_transposes(dec_w, enc_w)
        saver = tf1.train.Saver(tf1.global_variables(), max_to_keep=3)
        if finalize:
            graph.finalize()
    return AutoEncoder(cfg, graph, x, code, main.reconstruction, main.loss, main.sse, main.train_op, main.var_list,
                       variables, global_step, init, saver, sync_op, untie_op, untied, finetune, spec,
                       main.train_steps)


def load_values(sess, ae, values):
    """Set the named model variables ({name: array}) in a running session, adding no ops: each
    variable's initializer is run with its initial value fed (what Variable.load did in TF1)."""
    for name, value in values.items():
        var = ae.variables[name]
        sess.run(var.initializer, {var.initializer.inputs[1]: value})


def load_resident(sess, resident, data, rows=4096):
    """Copy `data` [N, dims[0]] into the graph's resident variable, a block of rows at a time (runs
    ops built with the graph; adds none). Run resident.init_op (or the model's init_op) first."""
    for start in range(0, len(data), rows):
        sess.run(resident.load_rows_op, {resident.rows_placeholder: data[start : start + rows],
                                         resident.offset_placeholder: start})


def stage_head(ae, untied):
    """The head to train and evaluate: `finetune` once a tied-untied model is untied."""
    if untied and ae.finetune is not None:
        return ae.finetune
    return Head(ae.reconstruction, ae.loss, ae.sse, ae.train_op, ae.var_list, ae.train_steps)
