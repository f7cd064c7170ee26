"""train.py on a cluster (tf1_cluster): one process per task, started with the four flags TF1
trainers took, --ps-hosts, --worker-hosts, --job-name and --task-index (TF1's distributed guide and
its example trainer used exactly these; TF_CONFIG came with Estimator and Keras, and a porter's
launch scripts pass flags).

    ps task      serves the variables until the chief says the run is done (`serve_ps`)
    worker 0     the chief: the run as on one machine (--out, --resume, every file), with its
                 shard of the training set; it publishes the run's settings and, epoch by epoch,
                 an instruction; it waits for the others' reports before the epoch's figures
    worker k>0   a follower: takes the settings from the chief, loads the data itself (its own
                 --data-dir where the path differs), trains its shard when told (`follow`)

TensorFlow is imported inside the functions: tae_cli imports this module before any flag is checked.

An epoch is the run's own number of steps (training examples // batch size, as on one machine),
shared out among the workers (tf1_cluster.shares); each worker draws its batches from its own
contiguous shard of the training set. The global step, the stages, the learning-rate schedule and
the checkpoints are therefore those of a single-machine run, and a checkpoint moves between the two.
With --sync-replicas on, every worker takes part in every step with its part of the batch
(Replica.sync_step, _follow_synchronously; docs/cluster.md, "Synchronous updates").
"""
import dataclasses
import json
import socket
import time
from typing import NamedTuple

import numpy as np

import tae_config
from tae_files import EXIT_CLUSTER_LOST, Stopped, UsageError

WAIT_SECONDS = 0.05  # a follower's pause between looks at the instruction
PAUSE = 0.0005  # a synchronous step's first pause between looks, doubling up to PAUSE_MOST
PAUSE_MOST = 0.005  # a step is milliseconds: a longer pause would be most of it
REPORT_EVERY = 30.0  # seconds between "still waiting" lines
FIRST_NOTICE = 3.0  # seconds of waiting for a peer before the first line that says whom


class ClusterArgs(NamedTuple):
    ps_hosts: tuple
    worker_hosts: tuple
    job: str
    index: int

    @property
    def chief(self):
        return self.job == "worker" and self.index == 0

    @property
    def name(self):
        return f"{self.job} {self.index}"

    @property
    def address(self):
        return (self.ps_hosts if self.job == "ps" else self.worker_hosts)[self.index]


def add_flags(parser):
    group = parser.add_argument_group("a cluster (docs/cluster.md): one process per task, each with all four")
    group.add_argument("--ps-hosts", metavar="HOST:PORT,...", help="the parameter server tasks")
    group.add_argument("--worker-hosts", metavar="HOST:PORT,...", help="the worker tasks; worker 0 is the chief")
    group.add_argument("--job-name", choices=("ps", "worker"), help="this process's job")
    group.add_argument("--task-index", type=int, metavar="K", help="this process's task in its job (from 0)")


def from_args(args):
    """ClusterArgs of the flags, or None without them; UsageError for a partial or bad set."""
    values = (args.ps_hosts, args.worker_hosts, args.job_name, args.task_index)
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        raise UsageError("a cluster task takes all four of --ps-hosts, --worker-hosts, --job-name and --task-index")
    hosts = {}
    for flag, text in (("--ps-hosts", args.ps_hosts), ("--worker-hosts", args.worker_hosts)):
        found = tuple(h.strip() for h in text.split(",") if h.strip())
        bad = [h for h in found if h.count(":") != 1 or not h.rsplit(":", 1)[1].isdigit()]
        if not found or bad:
            raise UsageError(f"{flag} takes HOST:PORT entries separated by commas; got {text!r}")
        port = next((h for h in found if not 1 <= int(h.rsplit(":", 1)[1]) <= 65535), None)
        if port is not None:
            raise UsageError(f"{flag}: {port} has no usable port; a port is a number from 1 to 65535")
        hosts[flag] = found
    ps, workers = hosts["--ps-hosts"], hosts["--worker-hosts"]
    if len(set(ps + workers)) != len(ps + workers):
        raise UsageError("--ps-hosts and --worker-hosts name the same HOST:PORT twice; each task has its own")
    count = len(ps) if args.job_name == "ps" else len(workers)
    if not 0 <= args.task_index < count:
        raise UsageError(f"--task-index must be between 0 and {count - 1} (the {args.job_name} hosts given); "
                         f"got {args.task_index}")
    return ClusterArgs(ps, workers, args.job_name, args.task_index)


def refuse_flags(cluster, args, given):
    """A ps task takes no run flags; a follower only the data's own paths (it takes the rest from
    the chief); the chief refuses what has no cluster form."""
    run_flags = [f.name for f in given] + [name for name, on in (
        ("--out", args.out), ("--resume", args.resume), ("--compare", args.compare), ("--preset", args.preset),
        ("--encode", args.encode), ("--reconstruct", args.reconstruct), ("--to", args.to),
        ("--recommend", args.recommend is not None), ("--export", args.export)) if on]
    if cluster.job == "ps":
        if run_flags:
            raise UsageError(f"{run_flags[0]} does nothing for a ps task (it serves the variables); drop it")
        return
    if not cluster.chief:
        paths = ("data_dir", "test_file")
        other = [n for n in run_flags if n not in ("--data-dir", "--test-file", "--dataset")]
        other += [f.name for f in given if f.field == "dataset" and not tae_config.is_path(given[f])]
        if other:
            raise UsageError(f"{other[0]} does nothing on worker {cluster.index}: a follower takes the run's settings "
                             f"from the chief (worker 0); give it only the data's paths ({', '.join('--' + p.replace('_', '-') for p in paths)}, "
                             "--dataset FILE)")
        return
    for name in ("--compare", "--encode", "--reconstruct", "--recommend", "--export", "--to"):
        if name in run_flags:
            raise UsageError(f"{name} runs on one machine: drop the cluster flags")


def refuse_run(run, model, cluster):
    """What the chief's run cannot be on a cluster, before anything is written."""
    workers = len(cluster.worker_hosts)
    if run.sync_replicas and run.batch_size % workers:
        raise UsageError(batch_error(run.batch_size, workers))
    if run.sync_replicas and model.dense_refeed:
        raise UsageError("--dense-refeed makes a second update a step, which --sync-replicas cannot aggregate: "
                         "drop one of them")
    if run.pretrain != "none":
        raise UsageError("--pretrain rbm runs on one machine: pretrain there, then resume the run on the cluster "
                         "with --resume")


def check_port(cluster):
    """UsageError naming this task's port if another process holds it (a bind on every interface with
    SO_REUSEADDR, as gRPC binds: a port left in TIME_WAIT by a task that died is free to it): said
    before TensorFlow is imported."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", int(cluster.address.rsplit(":", 1)[1])))
        except OSError:
            raise port_taken(cluster) from None


def port_taken(cluster):
    return UsageError(f"{cluster.name} cannot listen on {cluster.address}: the port is in use by another process; "
                      f"stop that process or give this task another port (--{cluster.job}-hosts)")


def start_server(cluster):
    """This process's tf.train.Server (imports TensorFlow); UsageError naming the port if it is taken."""
    import tensorflow as tf

    import tf1_cluster

    spec = tf1_cluster.cluster_spec(cluster.ps_hosts, cluster.worker_hosts)
    config = tf1_cluster.session_config(cluster.job, cluster.index)
    try:
        return spec, tf.compat.v1.train.Server(spec, cluster.job, cluster.index, config=config)
    except tf.errors.UnknownError:  # "Could not start gRPC server": taken since check_port
        raise port_taken(cluster) from None


class Notice:
    """When a wait is worth a line: `first` seconds after it began, then every REPORT_EVERY."""

    def __init__(self, first=FIRST_NOTICE):
        self.due_at = time.time() + first

    def due(self):
        if time.time() < self.due_at:
            return False
        self.due_at = time.time() + REPORT_EVERY
        return True


def wait_for_ps(cluster, log=print, pause=0.5):
    """Return once every ps task accepts a connection on its port, saying whom it waits for (a
    Session's first call would otherwise wait inside TensorFlow, silent and deaf to Ctrl-C). A host
    that does not resolve is a UsageError; a port that refuses is a task not started yet."""
    waiting, notice = dict(enumerate(cluster.ps_hosts)), Notice()
    while True:
        for k, address in list(waiting.items()):
            host, port = address.rsplit(":", 1)
            try:
                with socket.create_connection((host, int(port)), timeout=1.0):
                    del waiting[k]
            except socket.gaierror:
                raise UsageError(f"--ps-hosts: the host of {address} is not known here; give a name or address this "
                                 "machine resolves") from None
            except OSError:
                pass
        if not waiting:
            return
        if notice.due():
            log(f"{cluster.name}: waiting for " + ", ".join(f"ps {k} at {a}" for k, a in waiting.items())
                + " to start (Ctrl-C stops this task)")
        time.sleep(pause)


def batch_error(batch_size, workers):
    return (f"--batch-size {batch_size} does not split among {workers} workers: with --sync-replicas each step is the "
            f"batch, a part from each worker; give a multiple of {workers}")


def serve_ps(cluster, log=print):
    import tf1_cluster

    _, server = start_server(cluster)
    log(f"ps {cluster.index}: serving at {cluster.ps_hosts[cluster.index]} until the chief's run is done")
    tf1_cluster.serve(server, cluster.index)
    log(f"ps {cluster.index}: the run is done")
    return 0


def shard_bounds(examples, batch_size, workers, synchronous=False):
    """Each worker's rows [start, stop) of the training set: as many as its share of an epoch's steps
    draws (synchronous: every step, batch_size // workers rows each), the last one also the remainder."""
    import tf1_cluster

    if synchronous:
        steps, batch_size = [examples // batch_size] * workers, batch_size // workers
    else:
        steps = tf1_cluster.shares(examples // batch_size, workers)
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
    stage runner (tae_runner) calls the chief's methods; `follow` is a follower's loop."""

    def __init__(self, cluster, server, ae, coordination, local_init, data, examples, full_rows=None, pushes=None):
        self.cluster, self.server, self.ae, self.coord, self.local_init = cluster, server, ae, coordination, local_init
        self.data, self.examples, self.full_rows = data, examples, full_rows  # the shard; the whole set's size
        self.workers = len(cluster.worker_hosts)
        self.sequence = 0  # the chief's last instruction
        self.pushes = pushes  # synchronous: stage index -> a follower's push-and-report op (tf1_cluster.after_push)

    @property
    def synchronous(self):
        return self.pushes is not None

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
        import tf1_cluster

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
                sess.run(self.ae.stages[-1].head.sync.init_tokens)
        self.sequence = int(sess.run(c.instruction)[0])
        sess.run(c.publish_settings, {c.settings_in: json.dumps({**settings, "cluster_examples": self.examples})})

    def begin_epoch(self, sess, stage_index, epoch, steps):
        """Publish the epoch (its remaining `steps`, shared out); returns this worker's share."""
        import tf1_cluster

        self.sequence += 1
        if self.synchronous:  # the accumulators' step: where this stage's pushes are fresh from
            sess.run(self.ae.stages[stage_index].head.sync.chief_init)
        sess.run(self.coord.publish, {self.coord.instruction_in: [self.sequence, stage_index, epoch, steps, 0]})
        return steps if self.synchronous else tf1_cluster.shares(steps, self.workers)[0]

    def sync_step(self, sess, stage, step, log, stop):
        """The chief's part of synchronous global step `step`: its own gradient, then, once every
        follower has reported its own in, the mean applied. Returns the chief's loss, or None if
        stopped while waiting (the step's gradients are then in flight: see `started`)."""
        sync, c = stage.head.sync, self.coord
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


def build_replica(model, schedule, task, ds, cluster, full_rows=False, started=None, synchronous=False):
    """This worker's graph (tf1_tied_ae.build with tf1_cluster.placement, the coordination ops
    added) holding its shard, and its Replica. started: (spec, server) if the server is up.
    synchronous: each step the mean of one gradient from every worker (--sync-replicas)."""
    import tf1_cluster
    import tf1_tied_ae

    data, examples, keywords = task.graph_input(ds)
    workers = len(cluster.worker_hosts)
    if synchronous and schedule.batch_size % workers:
        raise UsageError(batch_error(schedule.batch_size, workers))
    if examples // schedule.batch_size < (1 if synchronous else workers):
        raise UsageError(f"an epoch has {examples // schedule.batch_size} steps (examples // --batch-size), fewer "
                         f"than the {workers} workers: lower --batch-size or use fewer workers")
    spec, server = started or start_server(cluster)
    start, stop = shard_bounds(examples, schedule.batch_size, workers, synchronous)[cluster.index]
    mine = shard(data, start, stop)
    extra = {"nnz": len(mine[2])} if "nnz" in keywords else {}
    ae = tf1_tied_ae.build(model, schedule, stop - start, finalize=False, placement=tf1_cluster.placement(
        spec, cluster.index, synchronous), epoch_examples=examples, **{**keywords, **extra})
    with ae.graph.as_default():
        coord = tf1_cluster.coordination(spec.num_tasks("ps"), ae.global_step)
        pushes = {i: tf1_cluster.after_push(coord, s.head.sync) for i, s in enumerate(ae.stages)} if synchronous \
            else None
        local_init = tf1_cluster.local_initializer(tf1_cluster.worker_device(cluster.index))
    ae.graph.finalize()
    return Replica(cluster, server, ae, coord, local_init, mine, examples, data if full_rows else None, pushes)


def read_settings(cluster, server, log):
    """The chief's published settings (waits for a chief to publish them)."""
    import tensorflow as tf

    import tf1_cluster

    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        settings = tf1_cluster.settings_variable()
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
    import tensorflow as tf

    import tae_cli
    import tae_runner

    spec, server = start_server(cluster)  # check_port and wait_for_ps ran first (tae_cli)
    saved = read_settings(cluster, server, log)
    model, run = tae_config.merge(saved, {}, "the chief's run")
    paths = {f.field: v for f, v in given.items() if f.field in ("data_dir", "test_file", "dataset")}
    run = dataclasses.replace(run, **paths)
    task = tae_cli.task_of(run.dataset)
    model, run, ds = task.load(model, None, run)
    examples = task.graph_input(ds)[1]
    if examples != saved["cluster_examples"]:
        raise UsageError(f"worker {cluster.index}'s data gives {examples} training examples, the chief's "
                         f"{saved['cluster_examples']}: give it the same data set (--data-dir)")
    replica = build_replica(model, run.schedule(model), task, ds, cluster, started=(spec, server),
                            synchronous=run.sync_replicas)
    try:
        return _follow(replica, model, log)
    except (tf.errors.UnavailableError, tf.errors.AbortedError) as e:
        raise Stopped(EXIT_CLUSTER_LOST, f"worker {cluster.index}: {tae_runner.lost(e)}; start the lost task and the "
                      "chief again (--resume), then this worker") from None


def _follow(replica, model, log):
    import tensorflow as tf

    import tae_runner
    import tf1_cluster
    import tf1_input

    cluster, ae, coord = replica.cluster, replica.ae, replica.coord
    with tf.compat.v1.Session(replica.target, graph=ae.graph, config=replica.session_config()) as sess:
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
            stage = ae.stages[stage_index]
            pipe = ae.input
            order = tae_runner.epoch_order(model.seed, stage.epoch_seed + epoch, pipe.num_examples)
            if replica.synchronous:
                if not _follow_synchronously(replica, sess, sequence, stage_index, epoch, order):
                    continue  # take the instruction and the global step again
            else:
                sess.run(pipe.start_epoch_op, {pipe.order_placeholder: order,
                                               pipe.batch_size_placeholder: stage.batch_size})
                mine = tf1_cluster.shares(steps, replica.workers)[cluster.index]
                k = 0
                while k < mine:
                    n = min(tae_runner.STEPS_PER_CALL, mine - k)
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
        sess.run(stage.head.sync.local_step_init)
        sess.run(replica.pushes[stage_index], {coord.pushed_in: [sequence, index, step]})
    return True
