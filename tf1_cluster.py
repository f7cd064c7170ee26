"""The autoencoder on TensorFlow's own distributed runtime, TF1 style: parameter servers and
workers, between-graph replication.

    cluster       tf.train.ClusterSpec({"ps": [...], "worker": [...]}), one tf.train.Server per process
    placement     tf.train.replica_device_setter: every variable (the model's, the optimizer's slots,
                  global_step) on the ps tasks, every other op on this worker; the wide variables
                  (one row or column per input value) cut into one part per ps task with
                  tf.fixed_size_partitioner; the training set held in the graph stays on this worker
    session       tf.Session(server.target) with device_filters: a worker talks to the ps tasks and to
                  itself only, so workers start, stop and die without the others noticing
    coordination  what the workers share besides the model, all on ps task 0 and none of it saved:
                  the run's settings (a string the chief writes, the followers read), the chief's
                  instruction (an int64 vector: INSTRUCTION), a FIFOQueue
                  of the workers' "done" reports ([sequence, worker]), one of a synchronous run's
                  "pushed" reports ([sequence, worker, step]), and one FIFOQueue per ps task
                  whose token ends that task (`serve`)

Worker 0, the chief, initialises or restores the model, runs the stage switches (the untie), writes
every file and tells the others which epoch to train; each worker trains its own shard of the
training set and reports. The updates are asynchronous (each worker's steps apply to the shared
variables as they come), or synchronous (Placement.replicas: each head's SyncStep, TF1's
SyncReplicasOptimizer, a step the mean of one gradient from every worker; a follower reports each
push through a FIFOQueue, `after_push`). The variables keep their single-machine names (a partitioned one is saved
whole by tf.train.Saver), so a checkpoint restores on one machine and on a cluster alike.

Only TF 1.15's API is used (tests/test_tf1_api.py); building runs nothing.
"""
import time
from typing import NamedTuple

import tensorflow as tf

import tf1_tied_ae

tf1 = tf.compat.v1
INSTRUCTION = ("sequence", "stage", "epoch", "steps", "stop")  # the instruction vector's fields
QUEUE_CAPACITY = 1024  # done reports waiting to be read: far more than workers


def cluster_spec(ps_hosts, worker_hosts):
    """The cluster of TF1's --ps_hosts / --worker_hosts flags: lists of "host:port"."""
    return tf1.train.ClusterSpec({"ps": list(ps_hosts), "worker": list(worker_hosts)})


def worker_device(task_index):
    return f"/job:worker/task:{task_index}"


def placement(spec, task_index, synchronous=False):
    """tf1_tied_ae.Placement of worker `task_index`: the model on the ps tasks (round robin, a part
    of each partitioned variable on each), the rest here; synchronous: every head also gets its
    SyncStep over all the workers."""
    device = worker_device(task_index)
    return tf1_tied_ae.Placement(model=tf1.train.replica_device_setter(cluster=spec, worker_device=device),
                                 local=device, partitions=spec.num_tasks("ps"),
                                 replicas=spec.num_tasks("worker") if synchronous else 0, task=task_index)


def session_config(job, task_index):
    """A worker sees the ps tasks and itself; a ps task itself alone."""
    seen = ["/job:ps", worker_device(task_index)] if job == "worker" else [f"/job:ps/task:{task_index}"]
    return tf1.ConfigProto(device_filters=seen, allow_soft_placement=True)


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


def _finish_queue(ps_task):
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
    finish = tf.group(*[_finish_queue(k).enqueue(tf.constant(1, tf.int64)) for k in range(num_ps)])
    return Coordination(instruction=instruction, initialized=initialized, instruction_in=instruction_in,
                        publish=publish, settings=settings, settings_in=settings_in,
                        publish_settings=publish_settings, step_in=step_in, set_step=set_step, done_in=done_in,
                        report_done=report, waiting_done=waiting, take_done=take, finish=finish, pushed_in=pushed_in,
                        pushed=pushed, waiting_pushed=pushed.size(),
                        take_pushed=pushed.dequeue())


def after_push(coordination, sync_step):
    """A follower's synchronous step and its report in one Session call: the report (fed to
    coordination.pushed_in) is sent once the gradient is in the accumulators."""
    with tf.control_dependencies([sync_step.push]), tf1.device("/job:ps/task:0"):
        return coordination.pushed.enqueue(coordination.pushed_in)


def serve(server, task_index, stop=lambda: False, poll_seconds=0.2):
    """A ps task's life: serve the variables until the chief's finish token (or until stop() is
    true), looking every poll_seconds. The queues are polled by their size, never by a dequeue with
    a time limit: a timed-out dequeue on a remote task is not always withdrawn, and would take the
    next token from whoever waits for it."""
    graph = tf.Graph()
    with graph.as_default():
        waiting = _finish_queue(task_index).size()
    with tf1.Session(server.target, graph=graph, config=session_config("ps", task_index)) as sess:
        while not stop():
            if sess.run(waiting):
                return
            time.sleep(poll_seconds)


def shares(steps, workers):
    """`steps` split among `workers` as evenly as it goes, the first ones taking one more."""
    return [steps // workers + (1 if w < steps % workers else 0) for w in range(workers)]


def local_initializer(device):
    """The initialisers of the default graph's variables on `device`: a follower's own (the training
    set held in its graph, progress/*), not the shared model, which the chief initialises."""
    mine = [v for v in tf1.global_variables() + tf1.local_variables() if v.device.startswith(device)]
    return tf.group(*[v.initializer for v in mine])
