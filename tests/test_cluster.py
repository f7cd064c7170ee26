"""A cluster on localhost (tf1_cluster, tae_cluster): ps tasks and workers on 127.0.0.1 with free
ports. The ps tasks and the follower run as threads of this process (one TensorFlow import); a
chief that gets killed runs as a process of its own. Every task ends by itself: the chief's finish
stops the others, and each thread is joined with a time limit."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import ROOT, call

DIGITS = ["--dataset", "digits", "--dims", "64,16,4", "--batch-size", "32", "--seed", "3"]
LIMIT = 60  # seconds any task may take


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def cluster_flags(ps=1, workers=2):
    ports = free_ports(ps + workers)
    hosts = [f"127.0.0.1:{p}" for p in ports]
    return ["--ps-hosts", ",".join(hosts[:ps]), "--worker-hosts", ",".join(hosts[ps:])]


class Task(threading.Thread):
    """train.py's main with these flags in a thread of this process; `code` once it returns."""

    def __init__(self, *args):
        super().__init__(daemon=True)
        self.args, self.code = [str(a) for a in args], None

    def run(self):
        import tae_cli

        self.code = tae_cli.main(self.args)


def run_chief(capsys, *args):
    """The chief (worker 0) in this thread, as `call`, bounded: past LIMIT seconds a SIGTERM makes it
    stop at its next call boundary (its own handler), so a cluster that hangs fails the test."""
    watchdog = threading.Timer(LIMIT, os.kill, (os.getpid(), signal.SIGTERM))
    watchdog.start()
    try:
        return call(capsys, *args)
    finally:
        watchdog.cancel()


def start_others(flags, ps=1, workers=2, extra=()):
    tasks = [Task(*flags, "--job-name", "ps", "--task-index", k) for k in range(ps)]
    tasks += [Task(*flags, "--job-name", "worker", "--task-index", k, *extra) for k in range(1, workers)]
    for t in tasks:
        t.start()
    return tasks


def join(tasks):
    for t in tasks:
        t.join(LIMIT)
    assert [t.code for t in tasks] == [0] * len(tasks), "every task ends by itself, exit 0"


def write_ratings(path, users=48, items=30, seed=0):
    rng = np.random.RandomState(seed)
    lines = [f"{u}\t{i}\t{rng.randint(1, 6)}" for u in range(1, users + 1) for i in range(1, items + 1)
             if rng.rand() < 0.4]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_cluster_flags_are_one_line(tmp_path, capsys):
    flags = cluster_flags()
    for args, words in [
        (["--job-name", "ps", "--task-index", "0"], "takes all four"),
        (["--ps-hosts", "localhost", "--worker-hosts", "127.0.0.1:1", "--job-name", "ps", "--task-index", "0"],
         "HOST:PORT"),
        ([*flags, "--job-name", "worker", "--task-index", "2"], "between 0 and 1"),
        (["--ps-hosts", "127.0.0.1:0", "--worker-hosts", "127.0.0.1:1", "--job-name", "ps", "--task-index", "0"],
         "127.0.0.1:0 has no usable port"),
        (["--ps-hosts", "127.0.0.1:2", "--worker-hosts", "127.0.0.1:99999", "--job-name", "ps", "--task-index", "0"],
         "127.0.0.1:99999 has no usable port"),
        ([*flags, "--job-name", "ps", "--task-index", "0", "--epochs", "3"], "does nothing for a ps task"),
        ([*flags, "--job-name", "worker", "--task-index", "1", "--epochs", "3"], "takes the run's settings"),
        ([*flags, "--job-name", "worker", "--task-index", "0", "--compare"], "runs on one machine"),
        ([*flags, "--job-name", "worker", "--task-index", "0", "--dataset", "digits", "--pretrain", "rbm", "--activation", "sigmoid", "--output-activation", "sigmoid",
          "--out", tmp_path / "r"], "--pretrain rbm runs on one machine"),
    ]:
        code, out, err = call(capsys, *args)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_waits_for_a_peer_are_spoken_and_stopped_at_once_and_a_taken_port_is_one_line(tmp_path):
    """A chief started before its ps task says whom it waits for within seconds and stops at once
    on SIGTERM (143), its new --out never made; a ps task on a port another process
    holds is one line, exit 2. Real processes: a signal must reach one that waits."""
    flags = {signal.SIGTERM: cluster_flags()}  # Ctrl-C in the same wait is Python's KeyboardInterrupt: 130
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = ["--ps-hosts", f"127.0.0.1:{taken.getsockname()[1]}", "--worker-hosts", "127.0.0.1:1"]
    start = lambda *args, **kw: subprocess.Popen([sys.executable, str(ROOT / "train.py"), *map(str, args)],  # noqa: E731
                                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    np.save(tmp_path / "rows.npy", np.random.RandomState(0).rand(40, 16).astype(np.float32))  # no scikit-learn to import
    data = ["--dataset", tmp_path / "rows.npy", "--dims", "16,4"]
    chiefs = {sig: start(*flags[sig], "--job-name", "worker", "--task-index", 0, *data, "--out", tmp_path / f"run{sig}")
              for sig in flags}
    ps = start(*busy, "--job-name", "ps", "--task-index", 0)
    try:
        for sig, chief in chiefs.items():
            t0 = time.time()
            line = chief.stdout.readline()  # TensorFlow's import, the digits, then the wait's first line
            assert line == f"worker 0: waiting for ps 0 at {flags[sig][1]} to start (Ctrl-C stops this task)\n", line
            assert time.time() - t0 < 30
            chief.send_signal(sig)
            out, err = chief.communicate(timeout=20)
            assert chief.returncode == 128 + sig and err.count("\n") == 1, err
            assert not (tmp_path / f"run{sig}").exists()
        out, err = ps.communicate(timeout=LIMIT)
        assert ps.returncode == 2 and err == (f"train.py: error: ps 0 cannot listen on {busy[1]}: the port is in use by "
                                              "another process; stop that process or give this task another port "
                                              "(--ps-hosts)\n"), err
    finally:
        for p in (*chiefs.values(), ps):
            p.kill()
        taken.close()


def checkpoint_shapes(folder):
    import tensorflow as tf

    prefix = tf.train.latest_checkpoint(str(folder))
    return dict(tf.train.list_variables(prefix))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["images", "ratings"])
def test_a_cluster_trains_and_its_checkpoint_is_a_single_machines(kind, tmp_path, capsys):
    """2 ps tasks and 2 workers: the wide variables in two parts, one on each ps. The loss falls,
    each epoch is the run's own number of global steps, the checkpoint holds whole variables under
    the single-machine names; images: a run begun on one machine goes on on the cluster, and a
    single-process restore gives the chief's test figure; ratings (the sparse path, tied then
    untied): a cluster's run goes on on one machine."""
    out = tmp_path / "run"
    if kind == "images":
        data = [*DIGITS, "--mode", "tied-untied", "--lr-schedule", "constant"]
    else:  # the ratings defaults: the sparse path, lazy Adam; tied, then untied
        data = ["--dataset", write_ratings(tmp_path / "r.tsv"), "--dims", "48,8", "--batch-size", "4",
                "--seed", "1", "--mode", "tied-untied", "--lr-schedule", "constant"]
    flags = cluster_flags(ps=2)
    others = start_others(flags, ps=2)
    if kind == "images":  # two epochs on one machine (tied, untied), then the cluster resumes the run to 4
        code, _, err = call(capsys, *data, "--epochs", 2, "--out", out)
        assert code == 0, err
        code, stdout, err = run_chief(capsys, *flags, "--job-name", "worker", "--task-index", 0, "--out", out, "--resume",
                                 "--epochs", 4)
        assert code == 0 and "resuming" in stdout, err
    else:
        code, stdout, err = run_chief(capsys, *flags, "--job-name", "worker", "--task-index", 0, *data, "--epochs", 2,
                                 "--out", out)
    assert code == 0, err
    join(others)
    metrics = json.loads((out / "metrics.json").read_text())
    epochs = metrics["epochs"]
    assert metrics["status"] == "done" and len(epochs) == (4 if kind == "images" else 2)
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    steps = epochs[0]["global_step"]
    assert [e["global_step"] for e in epochs] == [steps * (k + 1) for k in range(len(epochs))], "an epoch's steps, exactly"
    shapes = checkpoint_shapes(out)
    assert shapes["encoder/layer_0/kernel"] == ([64, 16] if kind == "images" else [48, 8])
    assert not any("part_" in name for name in shapes), ("saved whole, under the single-machine names", shapes)
    if kind == "images":
        import tae_data

        assert [e["decoder"] for e in epochs] == ["tied", "untied", "untied", "untied"]
        assert shapes["decoder/layer_1/kernel"] == [16, 64]
        test = tae_data.load("digits", None, log=lambda *_: None).test
        np.save(tmp_path / "test.npy", test)
        code, _, err = call(capsys, "--out", out, "--reconstruct", tmp_path / "test.npy", "--to", tmp_path / "r.npy")
        assert code == 0, err
        sse = ((np.load(tmp_path / "r.npy") - test) ** 2).sum(axis=1).mean()
        np.testing.assert_allclose(sse, metrics["final"]["test_sse_per_image"], rtol=1e-5)
    else:
        assert [e["decoder"] for e in epochs] == ["tied", "untied"]  # the untie on the chief
        code, stdout, err = call(capsys, "--out", out, "--resume", "--epochs", 3)  # one machine, from the cluster's
        assert code == 0 and "resuming" in stdout, err
        more = json.loads((out / "metrics.json").read_text())["epochs"]
        assert [e["global_step"] for e in more] == [steps * (k + 1) for k in range(3)]


def epochs_done(out):
    try:
        return len(json.loads((out / "metrics.json").read_text()).get("epochs", []))
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def wait_for(predicate, what):
    deadline = time.time() + LIMIT
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def process(*args):
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_killed_worker_rejoins_and_a_killed_chief_resumes(tmp_path, capsys):
    """Worker 1 killed mid-run and started again: it rejoins, and the chief's epochs keep their exact
    global steps. Then the chief killed: the ps task and the worker wait, and the chief's --resume
    carries the run to its end from the last checkpoint; every task then stops by itself."""
    out, epochs = tmp_path / "run", 7
    flags = cluster_flags()
    ps = start_others(flags, workers=1)
    follower = process(*flags, "--job-name", "worker", "--task-index", 1)
    chief = process(*flags, "--job-name", "worker", "--task-index", 0, *DIGITS, "--dims", "64,256,4",
                    "--batch-size", "8", "--epochs", epochs, "--lr-schedule", "constant", "--out", out)
    try:
        wait_for(lambda: epochs_done(out) >= 2, "two epochs")
        follower.send_signal(signal.SIGKILL)
        follower.wait(LIMIT)
        again = start_others(flags, ps=0)  # worker 1 again, as a thread of this process
        wait_for(lambda: epochs_done(out) >= 4, "the epochs after the rejoin")
        chief.send_signal(signal.SIGKILL)
        chief.wait(LIMIT)
    finally:
        for p in (follower, chief):
            if p.poll() is None:
                p.kill()
    kept = epochs_done(out)
    assert kept < epochs, "the chief was killed before the end"
    code, stdout, err = run_chief(capsys, *flags, "--job-name", "worker", "--task-index", 0, "--out", out, "--resume")
    assert code == 0 and "resuming" in stdout, err
    join(ps + again)
    metrics = json.loads((out / "metrics.json").read_text())
    steps = metrics["epochs"][0]["global_step"]
    assert metrics["status"] == "done" and [e["epoch"] for e in metrics["epochs"]] == list(range(1, epochs + 1))
    assert [e["global_step"] for e in metrics["epochs"]] == [steps * (k + 1) for k in range(epochs)]
    assert metrics["epochs"][-1]["train_loss"] < metrics["epochs"][0]["train_loss"]


def variables(folder):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(folder)))
    return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}


@pytest.mark.slow
def test_synchronous_updates_are_a_single_machines_steps_and_reproducible(tmp_path, capsys):
    """--sync-replicas on 2 ps tasks and 2 workers, ratings on the sparse path, tied then untied
    (the untie on the chief; the stages share the accumulators): each epoch is the single machine's
    number of global steps (a resume on one machine at the same batch goes on with them), the loss falls, and two runs of the same cluster size end with the same
    variables, bit for bit. The run goes on on one machine. --sync-replicas alone, and a batch that
    does not split among the workers, are refused in one line."""
    data = ["--dataset", write_ratings(tmp_path / "r.tsv"), "--dims", "48,8", "--batch-size", "4", "--seed", "1",
            "--mode", "tied-untied", "--lr-schedule", "constant", "--mask-noise", "0.1", "--sync-replicas", "on"]
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        flags = cluster_flags(ps=2)
        others = start_others(flags, ps=2)
        code, _, err = run_chief(capsys, *flags, "--job-name", "worker", "--task-index", 0, *data, "--epochs", 2,
                                 "--out", out)
        assert code == 0, err
        join(others)
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    epochs, steps = metrics["epochs"], metrics["epochs"][0]["global_step"]
    assert [e["global_step"] for e in epochs] == [steps, 2 * steps]
    assert [e["decoder"] for e in epochs] == ["tied", "untied"]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert json.loads((runs[0] / "config.json").read_text())["run"]["sync_replicas"] is True
    a, b = variables(runs[0]), variables(runs[1])
    assert a.keys() == b.keys() and all(np.array_equal(a[n], b[n]) for n in a), "the same variables, bit for bit"
    code, stdout, err = call(capsys, "--out", runs[0], "--resume", "--epochs", 3)  # one machine, from the cluster's:
    assert code == 0 and "resuming" in stdout, err  # its epoch, at the same batch, is as many steps
    assert json.loads((runs[0] / "metrics.json").read_text())["epochs"][-1]["global_step"] == 3 * steps

    for args, words in [(data, "a cluster run's setting"),
                        ([*cluster_flags(), "--job-name", "worker", "--task-index", 0, *data, "--batch-size", 5,
                          "--out", tmp_path / "c"], "does not split among 2 workers")]:
        code, _, err = call(capsys, *args)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not (tmp_path / "c").exists()


def test_a_partitioned_kernel_is_read_after_what_it_depends_on():
    """tf1_cluster.Placement.read reads a partitioned variable inside the caller's control
    dependencies (the synchronous step's re-assignment of sync mode's copies reads the kernel after
    the update); converted to a tensor as it is, a PartitionedVariable drops them."""
    import tensorflow as tf

    import tf1_cluster

    tf1 = tf.compat.v1
    with tf.Graph().as_default():
        kernel = tf1.get_variable("k", [4, 3], initializer=tf1.zeros_initializer(),
                                  partitioner=tf1.fixed_size_partitioner(2), use_resource=True)
        update = tf.group(*[part.assign(tf.ones_like(part)) for part in kernel])
        with tf.control_dependencies([update]):
            read = tf1_cluster.Placement.read(kernel)
            dropped = tf.convert_to_tensor(kernel)  # what tf.transpose(kernel) takes
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            assert not sess.run(dropped).any(), "the plain conversion does not wait for the update"
            assert (sess.run(read) == 1).all()


def test_sync_modes_copies_follow_a_synchronous_update():
    """--mode sync under --sync-replicas: the accepted answer's frozen decoder copies are re-assigned
    after the synchronous update is applied, from the updated kernels (partitioned, as on a cluster:
    read inside the update's control dependencies, tf1_cluster.Placement.read). One worker's SyncStep
    on one machine (replicas=1: the accumulators local, the two ps parts too), so no servers."""
    import tensorflow as tf

    import tf1_cluster
    import tf1_input
    import tf1_tied_ae as tae

    tf1 = tf.compat.v1
    cfg = tae.AEConfig(dims=(64, 16, 4), mode="sync", seed=0)
    spec = tf1_cluster.cluster_spec(["127.0.0.1:1", "127.0.0.1:2"], ["127.0.0.1:3"])
    place = tf1_cluster.placement(spec, 0, cfg.dims, synchronous=True)
    place.model, place.local = None, None  # the parts and names of a cluster's graph, on this process's devices
    ae = tae.build(cfg, tae.Schedule(epochs=1, batch_size=10), 40, placement=place, finalize=False)
    sync = tf1_cluster.synchronous_step(ae, ae.stages[-1].head, 1, 0, place)
    data = np.random.RandomState(0).rand(40, 64).astype(np.float32)
    with ae.graph.as_default():  # the kernels whole (two parts each), read after a step's Session call
        kernels = [place.read(ae.variables[f"encoder/layer_{i}/kernel"]) for i in range(2)]
        copies = [place.read(ae.variables[f"decoder/layer_{j}/kernel"]) for j in range(2)]
    assert len(place.parts(ae.variables["encoder/layer_0/kernel"])) == 2 and ae.stages[-1].steps is None
    with tf1.Session(graph=ae.graph) as sess:
        sess.run(ae.init_op)
        tf1_input.load(sess, ae.input, data)
        sess.run(ae.input.start_epoch_op, {ae.input.order_placeholder: np.arange(40, dtype=np.int32),
                                           ae.input.batch_size_placeholder: 10})
        sess.run([sync.init_tokens, sync.chief_init])
        before = sess.run(kernels)
        for step in range(20):  # a read that misses the update is a race: many steps to lose it
            sess.run(sync.local_step_init)
            sess.run(sync.push)
            sess.run(sync.apply)
            w, v = sess.run([kernels, copies])
            assert sess.run(ae.global_step) == step + 1
            for j in range(2):  # the copies are the transposes of the kernels as updated by this step
                assert np.array_equal(v[j], w[1 - j].T), (step, j)
        assert not np.array_equal(before[0], w[0]), "the step trained the encoder"
