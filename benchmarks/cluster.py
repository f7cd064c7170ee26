"""Steps per second and bytes sent per step of a training step on a localhost cluster (tf1_cluster),
1, 2 and 4 ps tasks, the sparse path against the dense one, beside the same step on one machine.

    python benchmarks/cluster.py [--users 20000] [--ps 1,2,4] [--rounds 2]

The data: users drawn as in benchmarks/ratings_scale.py's ML-20M-shaped set (26,744 items, item
popularity Zipf-like, 20 or more ratings a user), the first --users of them (the batches are the same
shape as the full set's; only the number of batches differs), user-based, DeepRecommender's
n,512,512,1024 SELU net, tied, dropout 0.8 on the code, batches of 128. Every task is a server in
this process (tf.train.Server), talking over gRPC on 127.0.0.1 as separate machines would; one
worker steps. Bytes per step: what the loopback interface received (/proc/net/dev: every byte one
task sent another, both directions, gRPC's framing included) over the timed steps, median of the
rounds. Steps per second: the median over --rounds rounds of 48 steps (3 calls of 16) after 16
warm-up steps, the configurations interleaved.
On 2 cores a cluster cannot be faster than one machine: the point is what crosses the network, from
which the README works out, on paper, the workers and ps bandwidth a real cluster needs.
Results: benchmarks/results/cluster.json.
"""
import argparse
import json
import os
import pathlib
import socket
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

ITEMS, USERS, RATINGS = 26_744, 138_493, 20_000_263  # ratings_scale.SETS["ml20m"]
BATCH = 128


def loopback_bytes():
    """Bytes received on the loopback interface so far (/proc/net/dev): every byte one task sends
    another over 127.0.0.1, gRPC's framing included."""
    for line in open("/proc/net/dev"):
        name, _, fields = line.partition(":")
        if name.strip() == "lo":
            return int(fields.split()[0])
    raise SystemExit("no loopback interface in /proc/net/dev")
PATHS = {"sparse, lazy Adam": dict(sparse_input=True, optimizer="lazyadam"),
         "dense, Adam": dict(sparse_input=False, optimizer="adam")}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ratings(users, seed=0):
    """The first `users` users' ratings of the ML-20M-shaped set, as a CSR (indptr, columns, values)."""
    import ratings_scale

    rng = np.random.RandomState(seed)
    codes = np.sort(ratings_scale.pairs(rng, users, ITEMS, int(RATINGS * users / USERS), skewed=True))
    user, item = codes // ITEMS, codes % ITEMS
    values = (rng.randint(1, 11, len(codes)) / 2.0).astype(np.float32)  # 0.5 to 5 in halves
    indptr = np.concatenate([[0], np.cumsum(np.bincount(user, minlength=users))]).astype(np.int64)
    return indptr, item.astype(np.int64), values


def model(path):
    from tf1_config import AEConfig

    return AEConfig(dims=(ITEMS, 512, 512, 1024), activation="selu", code_activation="selu", code_dropout=0.8,
                    mode="tied", loss="masked_mse", lr_schedule="constant", seed=0, **PATHS[path])


class Setup:
    """One configuration: its servers (none on one machine), graph and session, data loaded."""

    def __init__(self, path, ps, data):
        import tensorflow as tf

        import tf1_cluster
        import tf1_input
        import tf1_tied_ae
        from tf1_config import Schedule

        tf1 = tf.compat.v1
        rows = len(data[0]) - 1
        placement, target, config = None, "", None
        if ps:
            spec = tf1_cluster.cluster_spec([f"127.0.0.1:{free_port()}" for _ in range(ps)],
                                            [f"127.0.0.1:{free_port()}"])
            self.servers = [tf1.train.Server(spec, "ps", k) for k in range(ps)] + [tf1.train.Server(spec, "worker", 0)]
            placement, target, config = tf1_cluster.placement(spec, 0, model(path).dims), self.servers[-1].target, \
                tf1_cluster.session_config("worker", 0)
        self.ae = tf1_tied_ae.build(model(path), Schedule(epochs=1, batch_size=BATCH), rows, nnz=len(data[2]),
                                    placement=placement)
        self.sess = tf1.Session(target, graph=self.ae.graph, config=config)
        self.sess.run(self.ae.init_op)
        tf1_input.load(self.sess, self.ae.input, data)
        pipe = self.ae.input
        order = np.random.RandomState(0).permutation(rows).astype(np.int32)
        self.sess.run(pipe.start_epoch_op, {pipe.order_placeholder: order, pipe.batch_size_placeholder: BATCH})
        self.steps = self.ae.stages[-1].steps
        self.calls = 0
        self.call(16)  # warm-up

    def call(self, n, **kw):
        self.calls += n
        if self.calls > self.ae.input.num_examples // BATCH:  # start the order again before it runs out
            pipe = self.ae.input
            self.sess.run(pipe.start_epoch_op, {pipe.order_placeholder: np.arange(pipe.num_examples, dtype=np.int32),
                                                pipe.batch_size_placeholder: BATCH})
            self.calls = n
        return self.sess.run(self.steps, {self.ae.input.steps_placeholder: n}, **kw)

    def measure(self):
        """(seconds, loopback bytes) per step over 48 steps in 3 calls."""
        received, start = loopback_bytes(), time.perf_counter()
        for _ in range(3):
            self.call(16)
        return (time.perf_counter() - start) / 48, (loopback_bytes() - received) / 48


class Synchronous:
    """--sync-replicas' step on 1 ps task and 2 workers (both servers in this process): each worker's
    graph holds half the users and draws half the batch; a step is worker 1's push (in a thread),
    the chief's push, then the chief's apply, in the order tae_replica and tae_cluster pace them (threading events
    here, where the program polls the global step and a report queue: this times TensorFlow's part)."""

    def __init__(self, path, data):
        import threading

        import tensorflow as tf

        import tae_replica
        import tf1_cluster
        import tf1_input
        import tf1_tied_ae
        from tf1_config import Schedule

        tf1 = tf.compat.v1
        rows = len(data[0]) - 1
        spec = tf1_cluster.cluster_spec([f"127.0.0.1:{free_port()}"], [f"127.0.0.1:{free_port()}" for _ in range(2)])
        self.servers = [tf1.train.Server(spec, "ps", 0)] + [tf1.train.Server(spec, "worker", w) for w in range(2)]
        self.workers = []
        for w, (start, stop) in enumerate(tae_replica.shard_bounds(rows, BATCH, 2, synchronous=True)):
            shard = tae_replica.shard(data, start, stop)
            place = tf1_cluster.placement(spec, w, model(path).dims, synchronous=True)
            ae = tf1_tied_ae.build(model(path), Schedule(epochs=1, batch_size=BATCH), stop - start, nnz=len(shard[2]),
                                   placement=place, epoch_examples=rows, finalize=False)
            sync = tf1_cluster.synchronous_step(ae, ae.stages[-1].head, 2, w, place)
            with ae.graph.as_default():  # the chief initialises the model; worker 1 only its own variables
                init = ae.init_op if w == 0 else tf1_cluster.local_initializer(tf1_cluster.worker_device(w))
            ae.graph.finalize()
            sess = tf1.Session(self.servers[1 + w].target, graph=ae.graph, config=tf1_cluster.session_config("worker", w))
            sess.run(init)
            if w == 0:
                sess.run(sync.init_tokens)
            tf1_input.load(sess, ae.input, shard)
            self.workers.append((ae, sess, stop - start, sync))
        self.go, self.done = threading.Event(), threading.Event()
        self.threading = threading
        self.restart()
        for _ in range(16):  # warm-up
            self.step()

    def restart(self):
        for ae, sess, rows, _ in self.workers:
            pipe = ae.input
            sess.run(pipe.start_epoch_op, {pipe.order_placeholder: np.arange(rows, dtype=np.int32),
                                           pipe.batch_size_placeholder: BATCH // 2})
        self.steps_left = min(rows for _, _, rows, _ in self.workers) // (BATCH // 2)

    def push(self, w):
        _, sess, _, sync = self.workers[w]
        sess.run(sync.local_step_init)
        sess.run(sync.push)

    def step(self):
        if self.steps_left < 1:
            self.restart()
        self.steps_left -= 1
        follower = self.threading.Thread(target=self.push, args=(1,))
        follower.start()
        self.push(0)
        follower.join()
        _, sess, _, sync = self.workers[0]
        sess.run(sync.apply)

    def measure(self):
        """(seconds, loopback bytes) per step over 48 steps."""
        received, start = loopback_bytes(), time.perf_counter()
        for _ in range(48):
            self.step()
        return (time.perf_counter() - start) / 48, (loopback_bytes() - received) / 48


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=20_000, help="(default: %(default)s)")
    p.add_argument("--ps", default="1,2,4", help="ps task counts (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=2, help="(default: %(default)s)")
    p.add_argument("--synchronous", action="store_true", help="also --sync-replicas' step: 1 ps, 2 workers")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"), help="(default: %(default)s)")
    args = p.parse_args()
    import throughput

    gflops = [throughput.run_matmul()]
    data = ratings(args.users)
    print(f"{args.users} users, {len(data[2])} ratings, {ITEMS} items; matmul {gflops[0]:.0f} GFLOP/s", flush=True)
    setups = {(path, ps): Setup(path, ps, data) for path in PATHS for ps in [0, *map(int, args.ps.split(","))]}
    if args.synchronous:
        setups.update({(path, "sync"): Synchronous(path, data) for path in PATHS})
    seconds, sent = {key: [] for key in setups}, {key: [] for key in setups}
    for _ in range(args.rounds):  # interleaved: every configuration once a round
        for key, setup in setups.items():
            took, moved = setup.measure()
            seconds[key].append(took)
            sent[key].append(moved)
    rows = {}
    for (path, ps), setup in setups.items():
        name = f"{path}, " + ("synchronous, 1 ps, 2 workers" if ps == "sync" else "one machine" if not ps else f"{ps} ps")
        rows[name] = {"path": path, "ps_tasks": 1 if ps == "sync" else ps, "workers": 2 if ps == "sync" else 1,
                      "synchronous": ps == "sync", "steps_per_s": 1.0 / float(np.median(seconds[(path, ps)])),
                      "seconds_per_step_rounds": seconds[(path, ps)], "bytes_per_step_rounds": sent[(path, ps)],
                      "bytes_per_step": float(np.median(sent[(path, ps)]))}
        print(f"{name:<34} {rows[name]['steps_per_s']:7.2f} steps/s  {rows[name]['bytes_per_step'] / 2**20:9.2f} MiB "
              "a step between tasks", flush=True)
    gflops.append(throughput.run_matmul())
    # on paper: an ML-20M epoch (USERS // BATCH steps) in 60 s, workers at this machine's speed; each
    # ps task's traffic at that rate (a 10 Gbit/s link carries 1,250 MB/s)
    steps = USERS // BATCH
    paper = {}
    for path in PATHS:
        one = rows[f"{path}, one machine"]["steps_per_s"]
        per_ps = {r["ps_tasks"]: r["bytes_per_step"] * steps / 60.0 / r["ps_tasks"] for r in rows.values()
                  if r["path"] == path and r["ps_tasks"] and not r["synchronous"]}
        paper[path] = {"steps_per_epoch": steps, "steps_per_s_needed": steps / 60.0,
                       "workers_at_one_machine_speed": int(np.ceil(steps / 60.0 / one)),
                       "bytes_per_s_per_ps_task": per_ps}
        print(f"{path}: an ML-20M epoch ({steps} steps) in 60 s needs {steps / 60:.1f} steps/s: "
              f"{paper[path]['workers_at_one_machine_speed']} workers at this machine's {one:.2f} steps/s; each ps "
              "task then carries " + ", ".join(f"{v / 1e6:.0f} MB/s with {k} ps" for k, v in per_ps.items()), flush=True)
    results = {"users": args.users, "ratings": int(len(data[2])), "items": ITEMS, "batch_size": BATCH,
               "matmul_gflops_before_after": gflops, "rows": rows, "on_paper": paper,
               "command": "python benchmarks/cluster.py " + " ".join(sys.argv[1:])}
    path = pathlib.Path(args.results) / "cluster.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"matmul {gflops[0]:.0f} / {gflops[1]:.0f} GFLOP/s; wrote {path}")
    os._exit(0)  # the servers have no shutdown: end the process with them


if __name__ == "__main__":
    main()
