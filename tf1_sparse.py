"""The ratings autoencoder's training step at the cost of the ratings: the pieces tf1_tied_ae builds
its sparse path from, and the lazy Adam update that goes with it. TF 1.15's API only.

With masked_mse only the stored (rated) values of a batch count, so a step needs neither the dense
batch nor the dense output (AutoRec's own code, NNRec, scores only observed entries):

    first layer   h_b = sum over the ratings (b, c, r) of r * W_0[c, :]: W_0's rows for the batch's
                  distinct items, looked up once each (`lookup`), times the batch's compact block
                  [rows, distinct items] (`first_layer`): not a [batch, width] x [width, hidden]
                  product
    last layer    y_(b,c) = g_b . V_last[:, c] + bias_last[c], only at the pairs asked for: tied,
                  V_last = W_0^T, so the columns are the rows `lookup` found; for a batch's own
                  ratings, one product of g with those rows, read off at the pairs
                  (`at_pairs_block`). Untied, the decoder's own kernel: in training, g times the
                  whole kernel read off at the pairs (`at_pairs_full`); for a few pairs a row
                  (scoring), its columns gathered and a product per pair (`at_pairs`)

A step costs rows x distinct items x hidden in the products. Measured on a MovieLens 20M-shaped set
(benchmarks/README.md), the compact block's dense products beat per-rating gathers and scatters
(tf.gather, unsorted_segment_sum) and tf.sparse.sparse_dense_matmul: moving 512-wide rows per
rating, not the arithmetic, was the cost.

The gradients reaching W_0 (both of them, tied) and the biases are IndexedSlices over the batch's
distinct items. The untied decoder kernel is [hidden, width]: reading its columns is a gather along
axis 1, whose gradient TensorFlow makes dense (a transpose and a scatter of the whole kernel), so in
training its last layer is the dense path's product, and that kernel is updated whole, as there.

`LazyAdamOptimizer` applies an IndexedSlices gradient to those rows only (TF 1.x's
tf.contrib.opt.LazyAdamOptimizer did the same): a row's moments decay only on the steps that touch
it. tf.train.AdamOptimizer, given the same IndexedSlices, decays every row's moments and moves
every row each step: exact Adam, at the cost of the whole kernel.

Everything here reads the kernels through tf.nn.embedding_lookup and tf.gather, the ops TensorFlow
gives partitioned variables.
"""
from typing import NamedTuple

import tensorflow as tf

tf1 = tf.compat.v1


class Lookup(NamedTuple):
    """What `lookup` found for a batch's ratings."""

    items: tf.Tensor  # [u] int64: the distinct column ids, increasing
    where: tf.Tensor  # [k] int64: each rating's index into items
    rows: tf.Tensor  # [u, hidden]: the kernel's rows for items (`nonempty`: one row of zeros when u = 0)


class SparsePass(NamedTuple):
    """A head (tf1_tied_ae.Head.sparse) on a fed SparseTensor of ratings (cfg.sparse_input): the rows' stored
    values are the input and the target, as the dense x is on the dense path."""

    input: tf.SparseTensor  # [batch, dims[0]] placeholder: each row's stored ratings (sorted, row-major)
    pairs: tf.Tensor  # [q, 2] int64 placeholder: (row of input, column) pairs to predict
    predictions: tf.Tensor  # [q] the clean model's output at pairs (after the output activation)
    training: NamedTuple  # the tf1_training.Training pass on input (its input and code are None: nothing dense)
    train_op: tf.Operation  # one step on the fed input, like Head.train_op


def nonempty(rows):
    """rows, or one row of zeros when there are none, so that no product below is empty: a batch
    without a rating has no items, and oneDNN's MatMul aborts the process (not an error: an abort)
    on an operand with no elements (TF 2.21, oneDNN on). Nothing indexes the zero row. A tf.cond,
    not a pad: a pad copies the rows every step, and its gradient copies them back."""
    return tf.cond(tf.size(rows) > 0, lambda: tf.identity(rows), lambda: tf.zeros([1, tf.shape(rows)[1]]))


def rows_of(kernel, ids):
    """kernel[ids]: a variable's rows, or a partitioned variable's (tf1_cluster: contiguous parts,
    as fixed_size_partitioner cuts them, which is the "div" strategy; TF 1.x's default is "mod")."""
    return tf1.nn.embedding_lookup(kernel, ids, partition_strategy="div")


def distinct(columns, width):
    """(items, where) of `columns` ([k] int64, each in [0, width)): the distinct ones in increasing
    order and each one's index into them, as np.unique(columns, return_inverse=True) gives them.
    From a [width] marker (tf.where lists its set places in order) and a binary search of each
    column among them. Not tf.unique for its order: tf.unique lists items as they first appear, and
    increasing items make every gradient below run over distinct, increasing rows, which lets
    LazyAdamOptimizer skip the base class's summing of repeats (0.15 ms here against tf.unique's
    0.05 ms on a batch's 18,000 ratings, standalone; the summing it saves took about 2 ms)."""
    present = tf.scatter_nd(columns[:, None], tf.ones_like(columns, tf.int32), tf.cast([width], tf.int64)) > 0
    items = tf.where(present)[:, 0]
    return items, tf.searchsorted(items, columns, out_type=tf.int64)


def lookup(kernel, columns, width):
    """The rows of `kernel` ([width, hidden]) for the distinct `columns` ([k] int64), once each."""
    items, where = distinct(columns, width)
    return Lookup(items, where, nonempty(rows_of(kernel, items)))


def first_layer(batch, inputs, found):
    """The first layer's pre-activation without its bias, [batch rows, hidden]: each row's ratings
    (`inputs`, the batch's values after any masking) times W_0's rows (`found`, from `lookup` on the
    batch's columns), summed per row. Computed as a dense product of the batch's compact block
    [rows, distinct items] (zeros where a row has no rating of an item) with those rows of W_0: its
    gradient is dense over the distinct items and nothing else. Rows with no ratings give 0."""
    where = tf.stack([batch.indices[:, 0], found.where], axis=1)
    block = tf.scatter_nd(where, inputs, tf.stack([batch.dense_shape[0], tf.shape(found.rows, out_type=tf.int64)[0]]))
    return tf.matmul(block, found.rows)


def gather_columns(kernel, columns):
    """kernel[:, columns]: a gather along axis 1, whose gradient is dense (the whole kernel). It
    gathers from the kernel read as one tensor where the step runs (tf.identity): on a cluster the
    gradient's shape op is colocated with the gathered tensor, and colocated with the variable's own
    read it would be pinned to the parameter server against the worker's device (TF refuses the
    graph). On one machine the identity forwards the same buffer."""
    return tf.gather(tf.identity(kernel), columns, axis=1)


def mask_columns(kernel, columns):
    """kernel ([hidden, width]) with every column but the distinct `columns` zeroed: a dense product."""
    width = tf.shape(kernel, out_type=tf.int64)[1:]
    return tf.identity(kernel) * tf.scatter_nd(columns[:, None], tf.ones_like(columns, tf.float32), width)


def columns_of(kernel, items):
    """An untied last decoder kernel's columns for `items` ([hidden, width] -> [len(items), hidden],
    `nonempty`). A gather along axis 1: its gradient is dense (the whole kernel)."""
    return nonempty(tf.transpose(gather_columns(kernel, items)))


def at_pairs_block(g, pairs_rows, where, columns_rows, bias, items):
    """at_pairs as one product: every row of g against every distinct item ([rows, u]), then the
    asked pairs read off. Cheaper than the per-pair products when the pairs are many per row. The
    bias is read at the distinct items, then at the pairs: its gradient is over `items` (distinct),
    where a read per pair would repeat an index per rating and need summing before the update."""
    every = tf.matmul(g, columns_rows, transpose_b=True)
    return tf.gather_nd(every, tf.stack([pairs_rows, where], axis=1)) + tf.gather(tf.gather(bias, items), where)


def at_pairs_full(g, kernel, bias, pairs):
    """An untied last layer's logits at the batch's own pairs [q, 2] (row, column): g times the
    whole kernel ([rows, width], as on the dense path), read off at the pairs. Its gradient is a
    dense product too, where a gather of the kernel's columns would be a gather along axis 1 and,
    backwards, a dense scatter: slower than the product it saves."""
    every = tf.matmul(g, kernel) + bias
    return tf.gather_nd(every, pairs)


def at_pairs(g, pairs_rows, where, columns_rows, bias, pair_columns):
    """The last layer's logits at each asked pair [q]: g [batch, hidden] is the last hidden layer;
    pairs_rows [q] each pair's row in the batch; columns_rows [u, hidden] the last kernel's columns
    (transposed) for the distinct items; where [q] each pair's index into them."""
    return tf.reduce_sum(tf.gather(g, pairs_rows) * tf.gather(columns_rows, where), axis=1) + tf.gather(
        bias, pair_columns)


def ends(model, batch, inputs, pairs=None):
    """(first, last, found) of a model (tf1_tied_ae's: cfg, enc_w, dec_w, dec_b, untied) on a
    SparseTensor batch whose values are replaced by `inputs`: the first layer's product
    (`first_layer`), the last layer's logits function (`last_layer`) at `pairs` or the batch's own
    rated pairs, and the `lookup` of the batch's items."""
    found = lookup(model.enc_w[0], batch.indices[:, 1], model.cfg.dims[0])
    first = first_layer(batch, inputs, found)
    last = last_layer(model.untied, model.dec_w[-1] if model.untied else None, model.enc_w[0], model.dec_b[-1], found,
                      batch.indices, pairs)
    return first, last, found


def last_layer(untied, decoder_kernel, encoder_kernel, bias, found, own, pairs=None):
    """The last layer's logits, as decode(last=...) takes them (a function of the last hidden layer
    g): at the batch's own rated pairs `own` ([k, 2], the SparseTensor's indices), or at other
    `pairs` ([q, 2] (row, column), scoring). untied: the decoder's own kernel, else the encoder's
    first kernel transposed (found: its `lookup` for the batch's items)."""
    if pairs is None and untied:  # the whole product, read off (see the module docstring)
        return lambda g: at_pairs_full(g, decoder_kernel, bias, own)
    if pairs is None:  # tied: one product over the batch's distinct items, the rows the lookup found
        return lambda g: at_pairs_block(g, own[:, 0], found.where, found.rows, bias, found.items)
    items, where = tf.unique(pairs[:, 1], out_idx=tf.int64)  # their own distinct columns, a pair at a time
    columns = columns_of(decoder_kernel, items) if untied else nonempty(rows_of(encoder_kernel, items))
    return lambda g: at_pairs(g, pairs[:, 0], where, columns, bias, pairs[:, 1])


class LazyAdamOptimizer(tf1.train.AdamOptimizer):
    """Adam that, given an IndexedSlices gradient, updates only the rows it names: their first and
    second moments take the step's gradient and the rows move; the other rows, and their moments,
    stay as they are (TF 1.x's tf.contrib.opt.LazyAdamOptimizer). A dense gradient gets exact Adam.

    What it changes about the objective's optimisation: a row's moments decay once per step that
    touches it rather than once per step, so a rarely rated item keeps momentum from long ago and
    takes larger steps than under exact Adam; the bias correction still counts all steps. With no
    rows skipped (every row in every batch) it is exact Adam."""

    def _lazy_rows(self, var, indices, grad):  # indices are distinct (_summed_if_repeated)
        dtype = var.dtype.base_dtype
        beta1_power, beta2_power = self._get_beta_accumulators()
        beta1, beta2 = tf.cast(self._beta1_t, dtype), tf.cast(self._beta2_t, dtype)
        rate = tf.cast(self._lr_t, dtype) * tf.sqrt(1 - tf.cast(beta2_power, dtype)) / (1 - tf.cast(beta1_power, dtype))
        m, v = self.get_slot(var, "m"), self.get_slot(var, "v")
        m_rows = beta1 * tf.gather(m, indices) + (1 - beta1) * grad
        v_rows = beta2 * tf.gather(v, indices) + (1 - beta2) * tf.square(grad)
        moments = [tf1.scatter_update(m, indices, m_rows), tf1.scatter_update(v, indices, v_rows)]
        with tf.control_dependencies(moments):
            step = tf1.scatter_sub(var, indices, rate * m_rows / (tf.sqrt(v_rows) + tf.cast(self._epsilon_t, dtype)))
        return tf.group(step, *moments)

    def _resource_apply_sparse(self, grad, var, indices):
        return self._lazy_rows(var, indices, grad)

    def _apply_sparse(self, grad, var):  # reference variables (TF 1.x without resource variables)
        return self._lazy_rows(var, grad.indices, grad.values)

    def _resource_apply_sparse_duplicate_indices(self, grad, handle, indices):
        return self._lazy_rows(handle, *_summed_if_repeated(grad, indices)[::-1])

    def _apply_sparse_duplicate_indices(self, grad, var):
        values, indices = _summed_if_repeated(grad.values, grad.indices)
        return self._lazy_rows(var, indices, values)


def _summed_if_repeated(values, indices):
    """(values, indices) with the values of a repeated index summed, as the base class does before
    every sparse update (tf.unique and a segment sum over the whole gradient: 2-3 ms a step on an
    ML-20M-sized batch); passed through as they are when the indices are strictly increasing,
    which the sparse path's gradients are (they come from `distinct`'s items)."""
    def summed():
        unique, where = tf.unique(indices)
        return tf.math.unsorted_segment_sum(values, where, tf.shape(unique)[0]), unique

    increasing = tf.reduce_all(indices[1:] > indices[:-1])
    return tf.cond(increasing, lambda: (tf.identity(values), tf.identity(indices)), summed)
