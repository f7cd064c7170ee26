"""Ratings at scale: a generated set of 100,000 users x 20,000 items with 10 million ratings trains
one epoch in each orientation through train.py; wall seconds, the epoch's training seconds and peak
resident memory (the process's own, from wait4), and the same at half the ratings and at half the
users, to show how memory grows.

The ratings: random distinct (user, item) pairs, each rating a rank-8 model plus noise, rounded to
1..5; a tenth held out as the test file. The run is train.py's ratings recipe with --epochs 1
(cosine over that one epoch), validation a tenth of the training ratings, as a user would run it.

    python benchmarks/ratings_scale.py                  # about 15 minutes on 2 cores
    python benchmarks/ratings_scale.py --sizes 100000,20000,10000000
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
SIZES = ((100_000, 20_000, 10_000_000), (100_000, 20_000, 5_000_000), (50_000, 20_000, 10_000_000))


def generate(folder, users, items, count, seed=0):
    """train.tsv and test.tsv (user, item, rating; a tenth in test), written in chunks."""
    rng = np.random.RandomState(seed)
    codes = np.unique(rng.randint(0, users * items, int(count * 1.02), dtype=np.int64))
    codes = rng.permutation(codes)[:count]
    u, i = codes // items, codes % items
    p, q = rng.randn(users, 8).astype(np.float32) / 2, rng.randn(items, 8).astype(np.float32) / 2
    cut = count - count // 10
    for name, part in (("train.tsv", slice(0, cut)), ("test.tsv", slice(cut, count))):
        with open(folder / name, "w") as f:
            for start in range(part.start, part.stop, 1_000_000):
                s = slice(start, min(start + 1_000_000, part.stop))
                r = np.clip(np.rint(3.5 + np.einsum("ij,ij->i", p[u[s]], q[i[s]]) + rng.randn(s.stop - s.start) / 2), 1, 5)
                f.write("".join(f"{a}\t{b}\t{int(c)}\n" for a, b, c in zip(u[s].tolist(), i[s].tolist(), r.tolist())))
    return folder / "train.tsv", folder / "test.tsv"


def run(train, test, orientation, out):
    cmd = [sys.executable, str(ROOT / "train.py"), "--dataset", str(train), "--test-file", str(test),
           "--orientation", orientation, "--epochs", "1", "--batch-size", "64", "--out", str(out)]
    start = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(p.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"train.py failed: {' '.join(cmd)}\n{p.stderr.read()}")
    metrics = json.load(open(out / "metrics.json"))
    return {"wall_seconds": time.time() - start, "epoch_train_seconds": metrics["epochs"][0]["seconds"],
            "peak_rss_mib": usage.ru_maxrss / 1024, "trainable_params": metrics["final"]["trainable_params"],
            "test_rmse": metrics["final"]["test_rmse"], "bias_rmse": metrics["baselines"]["user and item biases"]["rmse"]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", help="users,items,ratings (default: the three of SIZES)")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"), help="(default: %(default)s)")
    args = p.parse_args()
    sizes = [tuple(map(int, args.sizes.split(",")))] if args.sizes else SIZES
    path = pathlib.Path(args.results) / "ratings_scale.json"
    results = json.load(open(path)) if path.exists() else {}
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import throughput

    results["matmul_gflops_before"] = throughput.run_matmul()
    for users, items, count in sizes:
        with tempfile.TemporaryDirectory() as scratch:
            scratch = pathlib.Path(scratch)
            t0 = time.time()
            train, test = generate(scratch, users, items, count)
            print(f"{users} users x {items} items, {count} ratings: generated in {time.time() - t0:.0f} s", flush=True)
            for orientation in ("user", "item"):
                row = run(train, test, orientation, scratch / orientation)
                results[f"{users}x{items}, {count} ratings, {orientation}-based"] = row
                print(f"  {orientation}-based: {row['wall_seconds']:.0f} s in all, the epoch {row['epoch_train_seconds']:.0f} s, "
                      f"peak RSS {row['peak_rss_mib']:.0f} MiB, {row['trainable_params']} parameters, "
                      f"test RMSE {row['test_rmse']:.4f} (biases {row['bias_rmse']:.4f})", flush=True)
    results["matmul_gflops_after"] = throughput.run_matmul()
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"matmul {results['matmul_gflops_before']:.0f} / {results['matmul_gflops_after']:.0f} GFLOP/s; wrote {path}")


if __name__ == "__main__":
    main()
