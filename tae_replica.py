"""One worker's part of a cluster run (docs/cluster.md): its graph (tf1_tied_ae.build with
tf1_cluster's placement) holding its shard of the training set, the coordination ops by which the
chief leads the workers, and the chief's side of each epoch (`Replica`), which the stage runner
drives as it is handed it.

    coordination  what the workers share besides the model, all on ps task 0 and none of it saved:
                  the run's settings (a string the chief writes, the followers read), the chief's
                  instruction (an int64 vector: INSTRUCTION), a FIFOQueue of the workers' "done"
                  reports ([sequence, worker]), one of a synchronous run's "pushed" reports
                  ([sequence, worker, step]), and one FIFOQueue per ps task whose token ends that task
    shards        an epoch is the run's own number of steps (training examples // batch size),
                  shared out among the workers (`shares`); each draws from its own contiguous rows
"""
import json
import time
from typing import NamedTuple

import numpy as np
import tensorflow as tf

import tf1_cluster
import tf1_tied_ae
from tae_cluster_args import Notice, batch_error
from tae_files import UsageError

tf1 = tf.compat.v1
INSTRUCTION = ("sequence", "stage", "epoch", "steps", "stop")  # the instruction vector's fields
QUEUE_CAPACITY = 1024  # reports waiting to be read: far more than workers
WAIT_SECONDS = 0.05  # a pause between looks at a queue or the instruction
PAUSE = 0.0005  # a synchronous step's first pause between looks, doubling up to PAUSE_MOST
PAUSE_MOST = 0.005  # a step is milliseconds: a longer pause would be most of it


class Coordination(NamedTuple):
    """The ops by which the chief leads the workers (see the module docstring)."""

    instruction: tf.Variable  # int64 [5]: INSTRUCTION; in no collection: never saved or initialised by others
    initialized: tf.Tensor  # bool: whether the instruction exists yet (a chief has started)
    instruction_in: tf.Tensor  # int64 [5] placeholder
    publish: tf.Operation  # instruction <- instruction_in
    settings: tf.Variable  # string: the run's settings (the chief's config.json, as text), likewise unsaved
    settings_in: tf.Tensor  # string placeholder
    publish_settings: tf.Operation
    step_in: tf.Tensor  # int64 placeholder
    set_step: tf.Operation  # global_step <- step_in (the chief, at an epoch's end)
    done_in: tf.Tensor  # int64 [2] placeholder: [sequence, worker]
    report_done: tf.Operation
    waiting_done: tf.Tensor  # int32: reports in the queue
    take_done: tf.Tensor  # int64 [2]: the next report (run it only when one waits: see `serve`)
    finish: tf.Operation  # one token to every ps task's queue: `serve` returns
    pushed_in: tf.Tensor  # int64 [3] placeholder: [sequence, worker, global step] (synchronous runs)
    pushed: object  # the FIFOQueue of those: a follower's "my gradient for that step is in" (`after_push`)
    waiting_pushed: tf.Tensor  # int32: such reports in the queue
    take_pushed: tf.Tensor  # int64 [3]: the next one (the chief alone takes them)


def finish_queue(ps_task):
    with tf1.device(f"/job:ps/task:{ps_task}"):
        return tf1.FIFOQueue(1, tf.int64, shapes=[[]], shared_name=f"cluster_finish_{ps_task}",
                             name=f"cluster_finish_{ps_task}")


def settings_variable():
    """The run's settings as the chief published them (a string on ps task 0; '' before)."""
    with tf1.device("/job:ps/task:0"), tf1.variable_scope("cluster", reuse=tf1.AUTO_REUSE):
        return tf1.get_variable("settings", [], tf.string, tf1.constant_initializer(""), trainable=False,
                                collections=[])


def coordination(num_ps, global_step):
    """The Coordination ops, built into the default graph (a worker's, before it is finalised)."""
    settings = settings_variable()
    with tf1.device("/job:ps/task:0"), tf1.variable_scope("cluster"):
        instruction = tf1.get_variable("instruction", [len(INSTRUCTION)], tf.int64, tf1.zeros_initializer(),
                                       trainable=False, collections=[])
        instruction_in = tf1.placeholder(tf.int64, [len(INSTRUCTION)], name="instruction_in")
        settings_in = tf1.placeholder(tf.string, [], name="settings_in")
        step_in = tf1.placeholder(tf.int64, [], name="step_in")
        done = tf1.FIFOQueue(QUEUE_CAPACITY, tf.int64, shapes=[[2]], shared_name="cluster_done", name="done")
        pushed = tf1.FIFOQueue(QUEUE_CAPACITY, tf.int64, shapes=[[3]], shared_name="cluster_pushed", name="pushed")
        pushed_in = tf1.placeholder(tf.int64, [3], name="pushed_in")
        done_in = tf1.placeholder(tf.int64, [2], name="done_in")
        publish = instruction.assign(instruction_in).op
        report = done.enqueue(done_in)
        take, waiting = done.dequeue(), done.size()
        initialized = tf.identity(tf1.is_variable_initialized(instruction))  # used: no "never used" warning
        publish_settings = settings.assign(settings_in).op
    set_step = global_step.assign(step_in).op
    finish = tf.group(*[finish_queue(k).enqueue(tf.constant(1, tf.int64)) for k in range(num_ps)])
    return Coordination(instruction=instruction, initialized=initialized, instruction_in=instruction_in,
                        publish=publish, settings=settings, settings_in=settings_in,
                        publish_settings=publish_settings, step_in=step_in, set_step=set_step, done_in=done_in,
                        report_done=report, waiting_done=waiting, take_done=take, finish=finish, pushed_in=pushed_in,
                        pushed=pushed, waiting_pushed=pushed.size(), take_pushed=pushed.dequeue())


def after_push(coord, sync_step):
    """A follower's synchronous step and its report in one Session call: the report (fed to
    coord.pushed_in) is sent once the gradient is in the accumulators."""
    with tf.control_dependencies([sync_step.push]), tf1.device("/job:ps/task:0"):
        return coord.pushed.enqueue(coord.pushed_in)


def shares(steps, workers):
    """`steps` split among `workers` as evenly as it goes, the first ones taking one more."""
    return [steps // workers + (1 if w < steps % workers else 0) for w in range(workers)]


def shard_bounds(examples, batch_size, workers, synchronous=False):
    """Each worker's rows [start, stop) of the training set: as many as its share of an epoch's steps
    draws (synchronous: every step, batch_size // workers rows each), the last one also the remainder."""
    if synchronous:
        steps, batch_size = [examples // batch_size] * workers, batch_size // workers
    else:
        steps = shares(examples // batch_size, workers)
    starts = np.concatenate([[0], np.cumsum(steps) * batch_size])
    return [(int(starts[w]), int(starts[w + 1]) if w < workers - 1 else examples) for w in range(workers)]


def shard(data, start, stop):
    """Rows [start, stop) of what tf1_input.load takes: an array, or a CSR (indptr, columns, values)."""
    if isinstance(data, np.ndarray):
        return data[start:stop]
    indptr, columns, values = data
    a, b = indptr[start], indptr[stop]
    return indptr[start : stop + 1] - a, columns[a:b], values[a:b]


class Replica:
    """One worker's part of a cluster run: its server, its graph's coordination ops, its shard. The
    stage runner (tae_runner) calls the chief's methods; tae_cluster.follow is a follower's loop."""

    def __init__(self, cluster, server, ae, coord, local_init, data, examples, full_rows=None, syncs=None,
                 pushes=None):
        self.cluster, self.server, self.ae, self.coord, self.local_init = cluster, server, ae, coord, local_init
        self.data, self.examples, self.full_rows = data, examples, full_rows  # the shard; the whole set's size
        self.workers = len(cluster.worker_hosts)
        self.sequence = 0  # the chief's last instruction
        self.syncs = syncs  # synchronous: stage index -> its head's tf1_cluster.SyncStep
        self.pushes = pushes  # synchronous: stage index -> a follower's push-and-report op (`after_push`)

    @property
    def synchronous(self):
        return self.syncs is not None

    def batch(self, stage):
        """What this worker draws a step: the stage's batch, or its part of a synchronous step's."""
        return stage.batch_size // self.workers if self.synchronous else stage.batch_size

    def workers_at(self, indices):
        """"worker 1 at HOST:PORT, ...": whom a wait is for."""
        return ", ".join(f"worker {k} at {self.cluster.worker_hosts[k]}" for k in sorted(indices))

    @property
    def target(self):
        return self.server.target

    def session_config(self):
        return tf1_cluster.session_config("worker", self.cluster.index)

    # --- the chief -------------------------------------------------------------------------------
    def refuse_leftovers(self, sess):
        """Before the chief writes anything: a synchronous run cannot go on on ps tasks that still
        hold an earlier chief's state (the gradients of the step it stopped in would be averaged into
        the next)."""
        if self.synchronous and sess.run(self.coord.initialized):
            raise UsageError("the ps tasks hold an earlier chief's synchronous run, with the gradients of the step it "
                             "stopped in: start the ps tasks and the other workers again, then this chief")

    def started(self, sess, settings):
        """After the model is initialised or restored: the coordination state (kept from an earlier
        chief if the ps tasks still hold it) and the run's settings, for the followers."""
        c = self.coord
        if not sess.run(c.initialized):
            sess.run([c.instruction.initializer, c.settings.initializer])
            if self.synchronous:
                sess.run(self.syncs[len(self.ae.stages) - 1].init_tokens)
        self.sequence = int(sess.run(c.instruction)[0])
        sess.run(c.publish_settings, {c.settings_in: json.dumps({**settings, "cluster_examples": self.examples})})

    def begin_epoch(self, sess, stage_index, epoch, steps):
        """Publish the epoch (its remaining `steps`, shared out); returns this worker's share."""
        self.sequence += 1
        if self.synchronous:  # the accumulators' step: where this stage's pushes are fresh from
            sess.run(self.syncs[stage_index].chief_init)
        sess.run(self.coord.publish, {self.coord.instruction_in: [self.sequence, stage_index, epoch, steps, 0]})
        return steps if self.synchronous else shares(steps, self.workers)[0]

    def sync_step(self, sess, stage, step, log, stop):
        """The chief's part of synchronous global step `step`: its own gradient, then, once every
        follower has reported its own in, the mean applied. Returns the chief's loss, or None if
        stopped while waiting (the step's gradients are then in flight: see `started`)."""
        sync, c = self.syncs[self.ae.stages.index(stage)], self.coord
        sess.run(sync.local_step_init)
        loss = sess.run([sync.loss, sync.push])[0]
        waiting, notice, pause = set(range(1, self.workers)), Notice(), PAUSE
        while waiting:
            if stop.signum is not None:
                return None
            if not sess.run(c.waiting_pushed):
                if notice.due():
                    log(f"waiting for {self.workers_at(waiting)} at step {step + 1}")
                time.sleep(pause)
                pause = min(2 * pause, PAUSE_MOST)
                continue
            sequence, worker, at = sess.run(c.take_pushed)
            if sequence == self.sequence and at == step:
                waiting.discard(int(worker))
            pause = PAUSE
        sess.run(sync.apply)
        return loss

    def end_epoch(self, sess, step, log, stop):
        """Wait for every follower's report of this epoch, then set the global step to the epoch's
        end (a follower that restarted mid-epoch trained its share again: the count stays exact)."""
        waiting, notice = set(range(1, self.workers)), Notice()
        while waiting:
            if stop.signum is not None:
                return False
            if not sess.run(self.coord.waiting_done):  # the chief alone takes reports: one waits, none blocks
                if notice.due():
                    log(f"waiting for {self.workers_at(waiting)} to finish the epoch")
                time.sleep(WAIT_SECONDS)
                continue
            sequence, worker = sess.run(self.coord.take_done)
            if sequence == self.sequence:
                waiting.discard(int(worker))
        sess.run(self.coord.set_step, {self.coord.step_in: step})
        return True

    def finish(self, sess):
        """The run is done: the followers stop, then the ps tasks."""
        sess.run(self.coord.publish, {self.coord.instruction_in: [self.sequence + 1, 0, 0, 0, 1]})
        sess.run(self.coord.finish)

    def training_rows(self, run_on, fetch, batch=4096):
        """The chief's graph holds one shard: the whole training set is fed from NumPy instead."""
        rows = self.full_rows
        return [rows[i : i + batch] if fetch is None else run_on(fetch, rows[i : i + batch])
                for i in range(0, len(rows), batch)]


def build_replica(model, schedule, task, ds, cluster, started, full_rows=False, synchronous=False, init=None):
    """This worker's graph (tf1_tied_ae.build with tf1_cluster's placement, the coordination ops
    added) holding its shard, and its Replica. started: (spec, server), the server up. synchronous:
    each step the mean of one gradient from every worker (--sync-replicas). init: build's init_from
    and init_map, if any."""
    data, examples, keywords = task.graph_input(ds)
    workers = len(cluster.worker_hosts)
    if synchronous and schedule.batch_size % workers:
        raise UsageError(batch_error(schedule.batch_size, workers))
    if examples // schedule.batch_size < (1 if synchronous else workers):
        raise UsageError(f"an epoch has {examples // schedule.batch_size} steps (examples // --batch-size), fewer "
                         f"than the {workers} workers: lower --batch-size or use fewer workers")
    spec, server = started
    start, stop = shard_bounds(examples, schedule.batch_size, workers, synchronous)[cluster.index]
    mine = shard(data, start, stop)
    extra = {"nnz": len(mine[2])} if "nnz" in keywords else {}
    place = tf1_cluster.placement(spec, cluster.index, model.dims, synchronous)
    ae = tf1_tied_ae.build(model, schedule, stop - start, finalize=False, placement=place, epoch_examples=examples,
                           **{**keywords, **extra, **(init or {})})
    syncs = {i: tf1_cluster.synchronous_step(ae, s.head, workers, cluster.index, place)
             for i, s in enumerate(ae.stages)} if synchronous else None
    with ae.graph.as_default():
        coord = coordination(spec.num_tasks("ps"), ae.global_step)
        pushes = {i: after_push(coord, sync) for i, sync in syncs.items()} if synchronous else None
        local_init = tf1_cluster.local_initializer(tf1_cluster.worker_device(cluster.index))
    ae.graph.finalize()
    return Replica(cluster, server, ae, coord, local_init, mine, examples, data if full_rows else None, syncs, pushes)
