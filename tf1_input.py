"""The training input as TF1 graph parts: the data set held once in the graph, batches drawn in
the graph, several training steps per Session call, and the Stage a training run is made of.

    examples   [N, D] float32 variable, filled once (`load`), never saved (LOCAL_VARIABLES); or, with
               `nnz` (ratings), a CSR matrix (data/indptr, data/columns, data/values; each row's
               columns sorted) whose drawn rows are a tf.SparseTensor (`next_sparse_batch`) or that
               made dense (`next_batch`): memory grows with the stored values, not N x D
    epoch      `start_epoch_op` takes the epoch's order (a permutation, fed), the batch size B and
               the step to start at, so a run resumed mid-epoch sees exactly the batches it missed;
               each draw gathers the next B rows of the order (batches past N // B are never drawn).
               Two ways, the same batches: `resident`, a cursor in a variable (the default), and
               `tfdata`, the TF1 idiom (Dataset.from_tensor_slices(order).skip(start * B)
               .batch(B, drop_remainder).map(gather).prefetch(1) through an initializable iterator),
               which measured slower here (benchmarks/README.md, "Training speed").
    steps      `multi_step` runs n steps in one tf.while_loop (n fed to `steps_placeholder`), each
               on the next batch; a training loop pays one Session call per n steps.

The epoch in progress also lives in the graph, in two saved variables, so that a checkpoint taken
mid-epoch holds it with the global step: `progress/figure_sum` (the sum of the step figures so far,
float64) and `progress/seconds` (set from Python before a save). Building runs nothing.
"""
from typing import Callable, NamedTuple, Optional

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1


class Pipeline(NamedTuple):
    """The training set in the graph and the iterator over its batches (see the module docstring)."""

    num_examples: int
    init_op: tf.Operation  # reserves `examples`, zeroes the cursor (in the model's init_op; run before `load`)
    rows_placeholder: tf.Tensor  # [n, D] float32: a block of rows for load_rows_op
    offset_placeholder: tf.Tensor  # int32: where that block starts
    load_rows_op: tf.Operation
    order_placeholder: tf.Tensor  # [N] int32: the epoch's order
    batch_size_placeholder: tf.Tensor  # int64: the stage's batch size (for start_epoch_op)
    start_placeholder: tf.Tensor  # int64, default 0: the step within the epoch to start at
    start_epoch_op: tf.Operation  # initialises the iterator; resets `progress` unless start > 0
    steps_placeholder: tf.Tensor  # int32, default 1: how many steps a multi_step tensor runs
    next_batch: Callable[[], tf.Tensor]  # builds a draw of the next batch: [B, D] float32
    figure_sum: tf.Variable  # progress/figure_sum: float64, the epoch's step figures so far
    seconds: tf.Variable  # progress/seconds: float64, the epoch's training seconds so far
    seconds_placeholder: tf.Tensor
    set_seconds_op: tf.Operation
    sparse_placeholders: Optional[tuple] = None  # sparse: (indptr [N+1] int64, columns [nnz] int32, values [nnz])
    # for load_rows_op, which then fills the CSR arrays in one call (rows_placeholder and offset are None)
    next_sparse_batch: Optional[Callable[[], tf.SparseTensor]] = None  # sparse: the draw as a SparseTensor


class Stage(NamedTuple):
    """One part of a run: `epochs` epochs of `steps_per_epoch` steps, from global step `first_step`."""

    name: str  # in logs and metrics: "rbm 1", "tied", "untied", "sync"
    record: str  # the metrics.json list its epochs go to: "epochs" (the autoencoder) or "pretrain"
    epochs: int
    first_epoch: int  # epochs of the same record before this stage (numbering carries on)
    first_step: int  # global step at the stage's start
    batch_size: int
    steps_per_epoch: int  # num_examples // batch_size: the shuffled remainder waits for another epoch
    epoch_seed: int  # epoch e's order is epoch_order(seed, epoch_seed + e, N)
    steps: Optional[tf.Tensor]  # [n] float32: the figures of n steps (losses), from multi_step; None where the
    # placement builds no loop (a synchronous replica's step is tf1_cluster.synchronous_step)
    enter: Optional[tf.Operation]  # runs once before the first step (the untie)
    epoch_end: Optional[tf.Operation]  # runs after every epoch (a per-epoch sync; the unrolling)
    head: Optional[object]  # what evaluates it on fed data (tf1_tied_ae.Head), None for an RBM

    @property
    def last_step(self):
        return self.first_step + self.epochs * self.steps_per_epoch


def epochs_stage(name, epochs, first_epoch, first_step, batch_size, steps_per_epoch, steps, head, enter=None,
                 epoch_end=None):
    """An autoencoder's Stage (its epochs go to metrics.json's "epochs"); epoch e's order is seeded by
    first_epoch + e, so the numbering carries on across stages."""
    return Stage(name=name, record="epochs", epochs=epochs, first_epoch=first_epoch, first_step=first_step,
                 batch_size=batch_size, steps_per_epoch=steps_per_epoch, epoch_seed=first_epoch, steps=steps,
                 enter=enter, epoch_end=epoch_end, head=head)


def epoch_order(seed, epoch_seed, n):
    """An epoch's shuffled order of n examples, for start_epoch_op: a function of (seed, epoch_seed)
    alone, so a resumed run repeats it (NumPy's RandomState, int32)."""
    return np.random.RandomState([seed or 0, epoch_seed]).permutation(n).astype(np.int32)


def pipeline(num_examples, dim, kind="resident", nnz=None):
    """The Pipeline of an [num_examples, dim] float32 training set, built into the default graph.
    kind: resident (an in-graph cursor over the epoch's order; the default: the faster here) or
    tfdata (the TF1 tf.data idiom; benchmarks/throughput.py compares the two). Both draw the same
    batches in the same order. nnz: hold the set as a sparse CSR matrix with that many stored
    values instead (ratings: memory grows with nnz; batches drawn sparse, or made dense in the graph)."""
    if kind not in INPUTS:
        raise ValueError(f"kind must be one of {', '.join(INPUTS)}; got {kind!r}")
    local = [tf1.GraphKeys.LOCAL_VARIABLES]  # not part of the model: never saved
    with tf1.variable_scope("data"):
        if nnz is None:
            store, rows, offset, load_rows, gather, sparse = _dense(num_examples, dim, local)
        else:
            store, load_rows, gather, sparse = _sparse(num_examples, dim, nnz, local)
            rows = offset = None
        order = tf1.placeholder(tf.int32, [num_examples], name="order")
        batch = tf1.placeholder(tf.int64, [], name="batch_size")
        start = tf1.placeholder_with_default(tf.constant(0, tf.int64), [], name="start_step")
        steps = tf1.placeholder_with_default(1, [], name="steps")
        begin, draw, init = INPUTS[kind](gather, order, batch, start, local)
    next_batch = (lambda: densify(draw())) if nnz is not None else draw
    with tf1.variable_scope("progress"):
        figure_sum = tf1.get_variable("figure_sum", [], tf.float64, tf1.zeros_initializer(), trainable=False)
        seconds = tf1.get_variable("seconds", [], tf.float64, tf1.zeros_initializer(), trainable=False)
        seconds_in = tf1.placeholder(tf.float64, [], name="seconds_in")
        set_seconds = seconds.assign(seconds_in).op
        fresh, zero = start <= 0, tf.constant(0.0, tf.float64)  # a resumed epoch keeps the checkpoint's sums
        start_epoch = tf.group(begin, figure_sum.assign(tf1.where(fresh, zero, figure_sum)),
                               seconds.assign(tf1.where(fresh, zero, seconds)))
    return Pipeline(num_examples=num_examples, init_op=tf.group(*[v.initializer for v in store], init),
                    rows_placeholder=rows, offset_placeholder=offset, load_rows_op=load_rows, order_placeholder=order,
                    batch_size_placeholder=batch, start_placeholder=start, start_epoch_op=start_epoch,
                    steps_placeholder=steps, next_batch=next_batch, figure_sum=figure_sum, seconds=seconds,
                    seconds_placeholder=seconds_in, set_seconds_op=set_seconds, sparse_placeholders=sparse,
                    next_sparse_batch=draw if nnz is not None else None)


def _empty(shape, dtype, **_):  # reserves the memory without writing it (zeros would touch every page)
    return tf.raw_ops.Empty(shape=shape, dtype=dtype)


def _dense(num_examples, dim, local):
    examples = tf1.get_variable("examples", [num_examples, dim], trainable=False, collections=local,
                                initializer=_empty)
    rows = tf1.placeholder(tf.float32, [None, dim], name="rows")
    offset = tf1.placeholder(tf.int32, [], name="offset")
    load_rows = examples[offset : offset + tf.shape(rows)[0]].assign(rows).op  # in place, no second copy
    return (examples,), rows, offset, load_rows, lambda index: tf.gather(examples, index), None


def _sparse(num_examples, dim, nnz, local):
    """A CSR matrix in three local variables (each row's columns sorted); a draw of rows `index` is
    a SparseTensor [len(index), dim] of their stored values (`densify` makes it a dense batch)."""
    new = lambda name, dtype, shape: tf1.get_variable(name, shape, dtype, trainable=False,  # noqa: E731
                                                      collections=local, initializer=_empty)
    # columns int32: 4 bytes a rating less than int64 (a width beyond 2**31 columns is not a dense layer's)
    indptr, columns, values = new("indptr", tf.int64, [num_examples + 1]), new("columns", tf.int32, [nnz]), \
        new("values", tf.float32, [nnz])
    feeds = (tf1.placeholder(tf.int64, [num_examples + 1], name="indptr_in"),
             tf1.placeholder(tf.int32, [nnz], name="columns_in"), tf1.placeholder(tf.float32, [nnz], name="values_in"))
    load = tf.group(*[v.assign(f) for v, f in zip((indptr, columns, values), feeds)])

    def gather(index):  # a SparseTensor: row-major, each row's columns in the CSR's (sorted) order
        index = tf.cast(index, tf.int64)
        positions = tf.ragged.range(tf.gather(indptr, index), tf.gather(indptr, index + 1))
        where = tf.stack([positions.value_rowids(), tf.cast(tf.gather(columns, positions.flat_values), tf.int64)], axis=1)
        shape = tf.stack([tf.size(index, out_type=tf.int64), tf.constant(dim, tf.int64)])
        return tf.SparseTensor(where, tf.gather(values, positions.flat_values), shape)

    return (indptr, columns, values), load, gather, feeds


def densify(batch):
    """A SparseTensor batch as a dense one, zeros where nothing is stored."""
    return tf.scatter_nd(batch.indices, batch.values, batch.dense_shape)


def _resident(gather, order, batch, start, local):
    """The epoch's order, the batch size and a cursor in local variables; each draw moves the cursor."""
    new = lambda name, dtype, shape: tf1.get_variable(name, shape, dtype, tf1.zeros_initializer(),  # noqa: E731
                                                      trainable=False, collections=local)
    order_v, batch_v, cursor = new("order", tf.int32, order.shape), new("batch", tf.int64, []), new("cursor", tf.int64, [])
    begin = tf.group(order_v.assign(order), batch_v.assign(batch), cursor.assign(start * batch))

    def next_batch():
        size = batch_v.read_value()
        end = cursor.assign_add(size)
        return gather(order_v[end - size : end])

    return begin, next_batch, tf.group(order_v.initializer, batch_v.initializer, cursor.initializer)


def _tfdata(gather, order, batch, start, local):
    """tf.data through an initializable iterator: the order, skipped to the start step, batched with
    drop_remainder, gathered from the training set and prefetched."""
    batches = (tf.data.Dataset.from_tensor_slices(order).skip(start * batch).batch(batch, drop_remainder=True)
               .map(gather).prefetch(1))
    iterator = tf1.data.make_initializable_iterator(batches)
    return iterator.initializer, iterator.get_next, tf.no_op()


INPUTS = {"resident": _resident, "tfdata": _tfdata}


def load(sess, pipe, data, rows=4096):
    """Copy `data` [N, D] into the graph's training set, a block of rows at a time (runs ops built
    with the graph; adds none); a sparse pipeline takes (indptr, columns, values), CSR. Run the
    model's init_op first."""
    if pipe.sparse_placeholders is not None:
        if len(data[0]) != pipe.num_examples + 1:
            raise ValueError(f"the graph holds {pipe.num_examples} rows; got an indptr of {len(data[0])}")
        sess.run(pipe.load_rows_op, dict(zip(pipe.sparse_placeholders, data)))
        return
    if len(data) != pipe.num_examples:
        raise ValueError(f"the graph holds {pipe.num_examples} examples; got {len(data)}")
    for start in range(0, len(data), rows):
        sess.run(pipe.load_rows_op, {pipe.rows_placeholder: data[start : start + rows], pipe.offset_placeholder: start})


def over_rows(sess, pipe, fetch, batch=4096):
    """sess.run(fetch) over the training set held in the graph, in its stored order, `batch` rows a
    call (fetch: tensors of a batch drawn from pipe, such as a model's x that defaults to the next
    batch): a list of results, the last one short. Runs ops built with the graph; adds none."""
    n = pipe.num_examples
    b = min(batch, n)
    sess.run(pipe.start_epoch_op, {pipe.order_placeholder: np.arange(n, dtype=np.int32), pipe.batch_size_placeholder: b})
    out = [sess.run(fetch) for _ in range(n // b)]
    if n % b:  # the rest: an order that starts with the last n % b rows, drawn as one batch
        sess.run(pipe.start_epoch_op, {pipe.order_placeholder: np.roll(np.arange(n, dtype=np.int32), n % b),
                                       pipe.batch_size_placeholder: n % b})
        out.append(sess.run(fetch))
    return out


def multi_step(pipe, step_fn, sparse=False):
    """n steps in one tf.while_loop, n = pipe.steps_placeholder: [n] float32, each step's figure.

    step_fn(batch) builds one step on a freshly drawn batch (sparse: the SparseTensor draw of a
    sparse pipeline) and returns (figure, update op); the
    figure is computed before the update, as sess.run([loss, train_op]) gives it. The control
    dependency orders each step's reads after the previous step's writes. The figures' sum is
    added to progress/figure_sum in the same Session call."""
    def body(i, figures):
        figure, update = step_fn(pipe.next_sparse_batch() if sparse else pipe.next_batch())
        with tf.control_dependencies([update]):
            return i + 1, figures.write(i, tf.identity(figure))

    n = pipe.steps_placeholder
    _, figures = tf.while_loop(lambda i, _: i < n, body, [0, tf.TensorArray(tf.float32, size=n)])
    figures = figures.stack()
    with tf.control_dependencies([pipe.figure_sum.assign_add(tf.reduce_sum(tf.cast(figures, tf.float64)))]):
        return tf.identity(figures)
