"""A cluster task's command line, before TensorFlow: the four flags TF1 trainers took (--ps-hosts,
--worker-hosts, --job-name and --task-index; TF1's distributed guide and its example trainer used
exactly these, TF_CONFIG came with Estimator and Keras, and a porter's launch scripts pass flags),
what each kind of task refuses, and the waits for peers that come before a Session (a Session's
first call waits inside TensorFlow, silent and deaf to Ctrl-C). No TensorFlow is imported here:
flags answer at once, and a taken port or a missing peer costs no import.
"""
import socket
import time
from typing import NamedTuple

import tae_config
from tae_files import UsageError

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
