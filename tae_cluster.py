"""train.py on a cluster (docs/cluster.md): the lives of the processes TF1 trainers started, one per
task, each with its tf.train.Server. Their flags and waits come first (tae_cluster_args); the
worker's graph and the chief's side of each epoch are tae_replica's.

    ps task      serves the variables until the chief says the run is done (`serve_ps`)
    worker 0     the chief: the run as on one machine (--out, --resume, every file), with its shard
                 of the training set; tae_cli builds its Replica and hands it to the stage runner
    worker k>0   a follower: takes the settings from the chief, loads the data itself (its own
                 --data-dir where the path differs), trains its shard when told (`follow`)

The global step, the stages, the learning-rate schedule and the checkpoints are those of a
single-machine run, and a checkpoint moves between the two. With --sync-replicas on, every worker
takes part in every step with its part of the batch (`_follow_synchronously`; docs/cluster.md,
"Synchronous updates").
"""
import dataclasses
import json
import time

import tensorflow as tf

import tae_config
import tf1_cluster
import tf1_input
from tae_cluster_args import REPORT_EVERY, Notice, port_taken
from tae_files import EXIT_CLUSTER_LOST, Stopped, UsageError, lost
from tae_replica import PAUSE, PAUSE_MOST, WAIT_SECONDS, build_replica, finish_queue, settings_variable, shares
from tae_tasks import task_of

tf1 = tf.compat.v1


def start_server(cluster):
    """This process's (spec, tf.train.Server); UsageError naming the port if it is taken."""
    spec = tf1_cluster.cluster_spec(cluster.ps_hosts, cluster.worker_hosts)
    config = tf1_cluster.session_config(cluster.job, cluster.index)
    try:
        return spec, tf1.train.Server(spec, cluster.job, cluster.index, config=config)
    except tf.errors.UnknownError:  # "Could not start gRPC server": taken since tae_cluster_args.check_port
        raise port_taken(cluster) from None


def serve_ps(cluster, log=print, poll_seconds=0.2):
    """A ps task's life: serve the variables until the chief's finish token, looking every
    poll_seconds. The queue is polled by its size, never by a dequeue with a time limit: a timed-out
    dequeue on a remote task is not always withdrawn, and would take the next token from whoever
    waits for it."""
    _, server = start_server(cluster)
    log(f"ps {cluster.index}: serving at {cluster.address} until the chief's run is done")
    graph = tf.Graph()
    with graph.as_default():
        waiting = finish_queue(cluster.index).size()
    with tf1.Session(server.target, graph=graph, config=tf1_cluster.session_config("ps", cluster.index)) as sess:
        while not sess.run(waiting):
            time.sleep(poll_seconds)
    log(f"ps {cluster.index}: the run is done")
    return 0


def read_settings(cluster, server, log):
    """The chief's published settings (waits for a chief to publish them)."""
    graph = tf.Graph()
    with graph.as_default():
        settings = settings_variable()
        ready = tf1.is_variable_initialized(settings)
    notice = Notice(first=0)
    with tf1.Session(server.target, graph=graph, config=tf1_cluster.session_config("worker", cluster.index)) as sess:
        while True:
            text = sess.run(settings) if sess.run(ready) else b""
            if text:
                return json.loads(text)
            if notice.due():
                log(f"worker {cluster.index}: waiting for the chief (worker 0 at {cluster.worker_hosts[0]}) to publish "
                    "the run (Ctrl-C stops this task)")
            time.sleep(WAIT_SECONDS * 10)


def follow(cluster, given, log=print):
    """A follower's life: the chief's settings, its own data and shard, then each instruction's
    share of an epoch, until the chief says the run is done. Returns the exit code."""
    spec, server = start_server(cluster)  # check_port and wait_for_ps ran first (tae_cli)
    saved = read_settings(cluster, server, log)
    model, run = tae_config.merge(saved, {}, "the chief's run")
    paths = {f.field: v for f, v in given.items() if f.field in ("data_dir", "test_file", "dataset")}
    run = dataclasses.replace(run, **paths)
    task = task_of(run.dataset)  # this process's data kind, chosen once from the chief's settings
    model, run, ds = task.load(model, None, run)
    examples = task.graph_input(ds)[1]
    if examples != saved["cluster_examples"]:
        raise UsageError(f"worker {cluster.index}'s data gives {examples} training examples, the chief's "
                         f"{saved['cluster_examples']}: give it the same data set (--data-dir)")
    replica = build_replica(model, run.schedule(model), task, ds, cluster, (spec, server),
                            synchronous=run.sync_replicas)
    try:
        return _follow(replica, model, log)
    except (tf.errors.UnavailableError, tf.errors.AbortedError) as e:
        raise Stopped(EXIT_CLUSTER_LOST, f"worker {cluster.index}: {lost(e)}; start the lost task and the "
                      "chief again (--resume), then this worker") from None


def _follow(replica, model, log):
    cluster, ae, coord = replica.cluster, replica.ae, replica.coord
    with tf1.Session(replica.target, graph=ae.graph, config=replica.session_config()) as sess:
        sess.run(replica.local_init)
        tf1_input.load(sess, ae.input, replica.data)
        done, notice = None, Notice(first=REPORT_EVERY)
        log(f"worker {cluster.index}: {ae.input.num_examples} training examples, following the chief")
        while True:
            sequence, stage_index, epoch, steps, stop = (int(v) for v in sess.run(coord.instruction))
            if stop:
                log(f"worker {cluster.index}: the run is done")
                return 0
            if sequence == done or sequence == 0:
                if notice.due():
                    log(f"worker {cluster.index}: waiting for the chief (worker 0 at {cluster.worker_hosts[0]}) to "
                        "start the next epoch")
                time.sleep(WAIT_SECONDS)
                continue
            notice = Notice(first=REPORT_EVERY)
            stage, pipe = ae.stages[stage_index], ae.input
            order = tf1_input.epoch_order(model.seed, stage.epoch_seed + epoch, pipe.num_examples)
            if replica.synchronous:
                if not _follow_synchronously(replica, sess, sequence, stage_index, epoch, order):
                    continue  # take the instruction and the global step again
            else:
                sess.run(pipe.start_epoch_op, {pipe.order_placeholder: order,
                                               pipe.batch_size_placeholder: stage.batch_size})
                mine, k = shares(steps, replica.workers)[cluster.index], 0
                while k < mine:
                    n = min(tae_config.STEPS_PER_CALL, mine - k)
                    sess.run(stage.steps, {pipe.steps_placeholder: n})
                    k += n
            sess.run(coord.report_done, {coord.done_in: [sequence, cluster.index]})
            done = sequence


def _follow_synchronously(replica, sess, sequence, stage_index, epoch, order):
    """A follower's synchronous epoch: from the step the global step stands at (a follower that
    restarts joins the step in progress), for each step, wait until the chief has applied the one
    before, then push this worker's gradient and report it. False if the chief's instruction
    changed meanwhile (a new chief) or the global step passed this worker's step."""
    ae, coord, index = replica.ae, replica.coord, replica.cluster.index
    stage, pipe = ae.stages[stage_index], ae.input
    first = stage.first_step + epoch * stage.steps_per_epoch
    k = int(sess.run(ae.global_step)) - first
    if not 0 <= k < stage.steps_per_epoch:
        return True
    sess.run(pipe.start_epoch_op, {pipe.order_placeholder: order, pipe.start_placeholder: k,
                                   pipe.batch_size_placeholder: replica.batch(stage)})
    for step in range(first + k, first + stage.steps_per_epoch):
        pause = PAUSE
        while True:
            at, instruction = sess.run([ae.global_step, coord.instruction])
            if instruction[0] != sequence or at > step:  # a new chief, or the steps went on without this
                return False  # worker: start again from the instruction and the global step as they stand
            if at == step:
                break
            time.sleep(pause)
            pause = min(2 * pause, PAUSE_MOST)
        sess.run(replica.syncs[stage_index].local_step_init)
        sess.run(replica.pushes[stage_index], {coord.pushed_in: [sequence, index, step]})
    return True
