"""The autoencoder on TensorFlow's own distributed runtime, TF1 style: the graph pieces of
between-graph replication over parameter servers and workers.

    cluster     tf.train.ClusterSpec({"ps": [...], "worker": [...]}), one tf.train.Server per process
    placement   `Placement`, handed to tf1_tied_ae.build: tf.train.replica_device_setter puts every
                variable (the model's, the optimizer's slots, global_step) on the ps tasks and every
                other op on this worker; the wide variables (one row or column per input value) are
                cut into one part per ps task with tf.fixed_size_partitioner, through a custom
                getter; the training set held in the graph stays on this worker
    session     tf.Session(server.target) with device_filters: a worker talks to the ps tasks and to
                itself only, so workers start, stop and die without the others noticing
    synchronous `synchronous_step`: tf.train.SyncReplicasOptimizer around a head's optimizer, a step
                the mean of one gradient from every worker

A partitioned variable keeps its name, and `Placement.settle` gives its optimizer slots the names a
single machine saves them under, so a cluster's checkpoint is a single machine's. How the workers
are led (who initialises, who saves, when an epoch starts) is the program's (tae_cluster), as in
TF1's own example trainer. Only TF 1.15's API is used (tests/test_tf1_api.py); building runs nothing.
"""
import re
from typing import NamedTuple

import tensorflow as tf

import tf1_tied_ae

tf1 = tf.compat.v1


def cluster_spec(ps_hosts, worker_hosts):
    """The cluster of TF1's --ps_hosts / --worker_hosts flags: lists of "host:port"."""
    return tf1.train.ClusterSpec({"ps": list(ps_hosts), "worker": list(worker_hosts)})


def worker_device(task_index):
    return f"/job:worker/task:{task_index}"


def session_config(job, task_index):
    """A worker sees the ps tasks and itself; a ps task itself alone."""
    seen = ["/job:ps", worker_device(task_index)] if job == "worker" else [f"/job:ps/task:{task_index}"]
    return tf1.ConfigProto(device_filters=seen, allow_soft_placement=True)


class Placement:
    """Worker `task`'s placement of a model of `dims` (tf1_tied_ae.OneMachine's attributes): the model
    on the ps tasks (round robin, a part of each wide variable on each), the rest here. synchronous:
    the stages get no multi-step loop (a synchronous step is one Session call: `synchronous_step`)."""

    def __init__(self, spec, task, dims, synchronous=False):
        self.local = worker_device(task)
        self.model = tf1.train.replica_device_setter(cluster=spec, worker_device=self.local)
        self.partitions, self.loop = spec.num_tasks("ps"), not synchronous
        last = len(dims) - 2
        # the wide variables and the axis they are cut along: encoder layer 0's kernel by rows, the
        # last decoder kernel by columns and its bias, where the first kernel's rows are cut
        self.wide = {"encoder/layer_0/kernel": 0, f"decoder/layer_{last}/kernel": 1, f"decoder/layer_{last}/bias": 0}

    def getter(self, getter, name, *args, **kw):
        """The custom getter the model's variables are made through (TF calls it with the true getter
        and get_variable's arguments by keyword): a wide one in parts."""
        if name in self.wide and self.partitions > 1:
            kw["partitioner"] = tf1.fixed_size_partitioner(self.partitions, self.wide[name])
        return getter(name, *args, **kw)

    @staticmethod
    def parts(variable):
        """The tf.Variables behind a model variable: a partitioned one stands for its parts (what an
        optimizer's var_list and a Saver see)."""
        return [variable] if isinstance(variable, tf.Variable) else list(variable)

    @staticmethod
    def read(variable):
        """A variable's value, read where the caller builds it (inside its control dependencies). A
        partitioned variable is concatenated from its parts' reads: converted to a tensor as it is,
        it drops the control dependencies (PartitionedVariable.as_tensor), and a read meant to
        follow an update could see the value before it."""
        parts = Placement.parts(variable)
        if len(parts) == 1:
            return parts[0].read_value()
        whole, part = variable.get_shape().as_list(), parts[0].get_shape().as_list()
        axis = next(i for i, (a, b) in enumerate(zip(part, whole)) if a != b)
        return tf.concat([p.read_value() for p in parts], axis)

    @staticmethod
    def settle():
        """Checkpoint names for the optimizer slots of partitioned variables. TF 1.x derives the
        whole slot's name by cutting the variable's name off the slot's, which mangles it when the
        optimizer works in a scope of its own ("train/.../part_0/Adam" -> ".../art_0/Adam"); each
        part's slot is given the name a single machine saves the slot under, "train/<variable>/Adam"."""
        for slot in tf1.global_variables():
            info = getattr(slot, "_save_slice_info", None)
            whole = re.sub(r"/part_\d+(?=/)", "", slot.op.name)  # only a slot's name has a part inside it
            if info is not None and whole != slot.op.name:
                slot._set_save_slice_info(tf.Variable.SaveSliceInfo(whole, info.full_shape, info.var_offset,
                                                                    info.var_shape))


def placement(spec, task_index, dims, synchronous=False):
    """The Placement of worker `task_index` for a model of `dims` on the cluster `spec`."""
    return Placement(spec, task_index, dims, synchronous)


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


def _as_rows(gradient):
    """A dense gradient as IndexedSlices over every row: the same update (lazy Adam moves every row)."""
    rows = tf.shape(gradient, out_type=tf.int64)[0]
    return tf.IndexedSlices(gradient, tf.range(rows), tf.shape(gradient, out_type=tf.int64))


def synchronous_step(ae, head, replicas, task, place):
    """The SyncStep of `head` (of ae, built with `place` and not finalised; built into its graph):
    the head's optimizer in a tf.train.SyncReplicasOptimizer aggregating one gradient from each of
    `replicas` workers, on the pass over a batch drawn from this worker's shard with worker `task`'s
    draws. Its accumulators and token queue live on the ps tasks under shared names
    (`<variable>/grad_accum`, `sync_token_q`): a tied-untied run's two heads use the same ones, one
    stage after the other. The caller paces the workers (each pushes once a global step): the
    optimizer itself takes the first N gradients to come, whoever sends them."""
    cfg, pipe = ae.config, ae.input
    with ae.graph.as_default(), tf1.device(place.model):
        trained = head.pass_on(pipe.next_sparse_batch() if cfg.sparse_input else pipe.next_batch(), task)
        sync = tf1.train.SyncReplicasOptimizer(head.optimizer, replicas_to_aggregate=replicas,
                                               total_num_replicas=replicas)
        grads = sync.compute_gradients(trained.objective, var_list=[p for v in head.var_list for p in place.parts(v)])
        if cfg.sparse_input:  # the last bias's gradient is over the batch's items when tied, whole when untied:
            # one kind for both stages, which share its accumulator by name (a dense one and a sparse one cannot)
            last = f"decoder/layer_{len(cfg.dims) - 2}/bias"
            grads = [(_as_rows(g) if re.sub(r"/part_\d+$", "", tf1_tied_ae.name_of(v)) == last and
                      isinstance(g, tf.Tensor) else g, v) for g, v in grads]
        push = sync.apply_gradients(grads, ae.global_step)
        with tf.control_dependencies([push]):
            push = pipe.figure_sum.assign_add(tf.cast(trained.loss, tf.float64)).op
        apply = sync.get_chief_queue_runner().enqueue_ops[0]
        tf.identity(sync.ready_for_local_init_op)  # MonitoredSession's; unused here (no "never used" error line)
        if head.after is not None:
            with tf.control_dependencies([apply]):
                apply = head.after()
        # two rounds of tokens: a worker that died between its push and its report, and pushed again,
        # takes one more than its share; the pacing, not the tokens, keeps each worker to one push a step
        return SyncStep(loss=trained.loss, push=push, apply=apply, local_step_init=sync.local_step_init_op,
                        chief_init=sync.chief_init_op, init_tokens=sync.get_init_tokens_op(2 * replicas))


def local_initializer(device):
    """The initialisers of the default graph's variables on `device`: a follower's own (the training
    set held in its graph, progress/*), not the shared model, which the chief initialises."""
    mine = [v for v in tf1.global_variables() + tf1.local_variables() if v.device.startswith(device)]
    return tf.group(*[v.initializer for v in mine])
