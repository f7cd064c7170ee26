"""What a training step adds around the model (tf1_tied_ae), as TF1 graph parts: the regularisers'
random parts (masking and Gaussian noise, dropout, shifted images), the weight decay, and the
learning-rate schedule. They act on the training pass only: evaluation, codes and reconstructions
see the clean model.

The random numbers are counter-based (tf.random.stateless_*), keyed by (seed, purpose, global
step), so a run resumed from a checkpoint draws exactly what an uninterrupted one would. The
schedule is a function of the global step for the same reason. TF 1.15's API only.
"""
import random
from typing import NamedTuple

import tensorflow as tf

import tf1_sparse

tf1 = tf.compat.v1
SHIFT = 500  # the shifts' purpose in regularisers' key (below the dropout layers' 2 + layer)


def regularised(cfg):
    """Whether a training pass differs from the clean one (noise, dropout or shifts)."""
    return bool(cfg.shift or cfg.mask_noise or cfg.gaussian_noise or cfg.code_dropout or cfg.hidden_dropout)


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


class Draws:
    """The training pass's random parts (`regularisers`): corrupt(x), corrupt_values(values),
    drop(h, layer), shift(x). Building them makes no op; each call makes the ops of one draw."""

    def __init__(self, cfg, global_step, image_shape=None, replica=0):
        self.cfg, self.global_step, self.image_shape, self.replica = cfg, global_step, image_shape, replica
        self.seed = cfg.seed if cfg.seed is not None else random.randrange(2 ** 31)

    def key(self, purpose):
        """purpose 0: masking, 1: Gaussian, 2 + layer: dropout, SHIFT: the shifts."""
        return tf.stack([tf.constant(self.seed * 1024 + 512 + purpose + self.replica * 2 ** 42, tf.int64),
                         self.global_step.read_value()])

    def corrupt_values(self, values):
        """masked_mse: the stored values, in row-major order."""
        if not self.cfg.mask_noise:
            return values
        keep = tf.random.stateless_uniform(tf.shape(values), self.key(0)) >= self.cfg.mask_noise
        return values * tf.cast(keep, values.dtype)

    def corrupt(self, x):
        cfg = self.cfg
        if cfg.mask_noise and cfg.loss == "masked_mse":  # only the ratings are drawn for: as the sparse path
            stored = tf.where(tf.not_equal(x, 0.0))
            x = tf.scatter_nd(stored, self.corrupt_values(tf.gather_nd(x, stored)), tf.shape(x, out_type=tf.int64))
        elif cfg.mask_noise:
            x = x * tf.cast(tf.random.stateless_uniform(tf.shape(x), self.key(0)) >= cfg.mask_noise, x.dtype)
        if cfg.gaussian_noise:
            x = x + cfg.gaussian_noise * tf.random.stateless_normal(tf.shape(x), self.key(1))
        return x

    def drop(self, h, layer):
        """Inverted dropout from TF 1.15's ops; the same numbers as TF 2's stateless_dropout."""
        rate = self.cfg.code_dropout if layer == len(self.cfg.dims) - 2 else self.cfg.hidden_dropout
        if not rate:
            return h
        keep = tf.random.stateless_uniform(tf.shape(h), self.key(2 + layer)) >= rate
        return h * (1.0 / (1.0 - rate)) * tf.cast(keep, h.dtype)

    def shift(self, x):
        if not self.cfg.shift:
            return x
        draws = tf.random.stateless_uniform(tf.stack([tf.shape(x)[0], 2]), self.key(SHIFT))
        offsets = tf.cast(tf.floor(draws * (2 * self.cfg.shift + 1)), tf.int32) - self.cfg.shift
        return shift_images(x, self.image_shape, offsets, self.cfg.shift)


def regularisers(cfg, global_step, image_shape=None, replica=0):
    """The training pass's random parts, keyed by (seed, purpose, global step).

    corrupt: masking noise (each value kept with probability 1 - mask_noise, else 0: the denoising
    autoencoder's corruption as in Theano's dA), then Gaussian noise. With masked_mse the masking
    draws one number per stored (non-zero) value, in row-major order, so that the dense and the
    sparse path (corrupt_values, on a SparseTensor's values) mask the same ratings. drop: inverted
    dropout, code_dropout on the code (layer L-1), hidden_dropout on every other layer but the output.
    shift(x): each image of x ([batch, H * W], image_shape (H, W)) moved by a random offset in
    [-cfg.shift, cfg.shift] on each axis (`shift_images`); the moved image is the example, input and
    target. replica: a synchronous step's worker index, which keys its draws apart from the other
    workers' at the same step (0 keys them as on one machine). Returns a Draws."""
    return Draws(cfg, global_step, image_shape, replica)


def weight_decay(cfg, var_list, name_of, touched=None):
    """weight_decay * sum(w^2) / 2 over the kernels in var_list: the gradient adds weight_decay * W.
    A tied model's kernels are each in var_list once, so each is decayed once. name_of(variable):
    its model name ("encoder/layer_0/kernel").

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


class Training(NamedTuple):
    """What a training step on `x` computes. Without regularisers, input is x and code and loss hold
    the clean pass's values."""

    input: tf.Tensor  # [batch, dims[0]]: x after masking and Gaussian noise (None on the sparse path)
    code: tf.Tensor  # [batch, dims[-1]]: the code after dropout
    loss: tf.Tensor  # scalar: the loss of the noisy, dropped-out pass against the clean x
    objective: tf.Tensor  # scalar: loss + the weight decay; what minimize sees


class TrainingPass:
    """A head's training pass around the model's own passes: model.forward(x, inputs, drop) ->
    (code, reconstruction, loss, sse) of `inputs` scored against x, and model.sparse_forward(batch,
    inputs, drop=) -> (code, output at the batch's rated pairs, the tf1_sparse.Lookup of its items),
    with the regularisers' draws and the weight decay of var_list (name_of: a variable's model name)."""

    def __init__(self, cfg, model, var_list, name_of, global_step, image_shape=None):
        self.cfg, self.model, self.var_list, self.name_of = cfg, model, var_list, name_of
        self.global_step, self.image_shape = global_step, image_shape
        self.draws = regularisers(cfg, global_step, image_shape)

    def objective(self, loss, touched=None):
        decay = weight_decay(self.cfg, self.var_list, self.name_of, touched)
        return loss if decay is None else loss + decay

    def dense(self, x, clean=None, draws=None):
        """The pass on x; clean: the clean pass's (code, reconstruction, loss, sse), which it is
        when nothing regularises."""
        draws = draws or self.draws
        if clean is not None and not regularised(self.cfg):
            noisy, (code, _, loss, _) = x, clean
        else:
            x = draws.shift(x)  # the moved image is the example: the target too
            noisy = draws.corrupt(x)
            code, _, loss, _ = self.model.forward(x, noisy, draws.drop)
        return Training(noisy, code, loss, self.objective(loss))

    def sparse(self, batch, draws=None):
        """masked_mse over a SparseTensor batch's stored values: `dense` on its dense form."""
        draws = draws or self.draws
        code, output, found = self.model.sparse_forward(batch, draws.corrupt_values(batch.values), drop=draws.drop)
        squared = tf.math.squared_difference(batch.values, output)
        loss = tf.reduce_sum(squared) / tf.maximum(tf.cast(tf.size(squared), tf.float32), 1.0)
        return Training(None, code, loss, self.objective(loss, found if self.cfg.optimizer == "lazyadam" else None))

    def on(self, batch, replica=0):
        """The pass on a drawn batch (sparse: a SparseTensor), with worker `replica`'s draws (0: as on
        one machine): what the multi-step loop and a synchronous replica's step train on."""
        draws = self.draws if replica == 0 else regularisers(self.cfg, self.global_step, self.image_shape, replica)
        return self.sparse(batch, draws) if self.cfg.sparse_input else self.dense(batch, draws=draws)

