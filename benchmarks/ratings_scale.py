"""Ratings at scale, through train.py: seconds per epoch and peak resident memory of the dense and
the sparse path on generated ratings files of real data sets' shapes.

    uniform   100,000 users x 20,000 items x 10,000,000 ratings, every pair equally likely, ratings
              1..5 from a rank-8 model plus noise (the set the dense path was first measured on)
    ml20m     MovieLens 20M's shape: 138,493 users x 26,744 items x 20,000,263 ratings; item
              popularity Zipf-like (every item rated, the most rated in 0.5% of the ratings), at
              least 20 ratings a user, log-normal (median 121, 99th percentile 488), ratings 0.5..5
              in halves
    netflix   the Netflix prize's shape: 477,412 users x 17,768 items x 98,074,901 ratings, skewed
              alike, ratings 1..5

Each row is one train.py run of one epoch (--epochs 1: the cosine schedule over that epoch); the
epoch's training seconds are metrics.json's, the peak RSS train.py's own (benchmarks/peak.py). A set's
contenders run one after another (an epoch each: minutes, so once), with a 2048^3 matmul's rate
measured before and after: compare ratios within a run, and times across days only through that rate. Generated sets say nothing
about RMSE: quality is MovieLens' (benchmarks/movielens.py).

    python benchmarks/ratings_scale.py --sets uniform,ml20m     # about 40 minutes on 2 cores
    python benchmarks/ratings_scale.py --sets netflix
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

import peak

ROOT = pathlib.Path(__file__).resolve().parents[1]
SETS = {"uniform": (100_000, 20_000, 10_000_000), "ml20m": (138_493, 26_744, 20_000_263),
        "netflix": (477_412, 17_768, 98_074_901)}
# DeepRecommender's ML-20M / Netflix net: n,512,512,1024 SELU, dropout 0.8 on the code, batch 128
DEEP = ["--dims", "{width},512,512,1024", "--activation", "selu", "--code-activation", "selu", "--code-dropout", "0.8",
        "--batch-size", "128", "--mask-noise", "0", "--weight-decay", "0", "--lr", "1e-3"]
CONTENDERS = {  # set -> [(label, orientation, flags)]; train.py's ratings defaults otherwise
    "uniform": [("user-based, defaults (untied), dense path, adam", "user", ["--sparse", "off"]),
                ("user-based, defaults (untied), sparse path, lazyadam", "user", []),
                ("user-based, tied, dense path, adam", "user", ["--mode", "tied", "--sparse", "off"]),
                ("user-based, tied, sparse path, lazyadam", "user", ["--mode", "tied"]),
                ("item-based, defaults (untied), dense path, adam", "item", ["--sparse", "off"]),
                ("item-based, defaults (untied), sparse path, lazyadam", "item", []),
                ("item-based, tied, sparse path, lazyadam", "item", ["--mode", "tied"])],
    "ml20m": [(f"user-based, 512,512,1024 SELU, {label}", "user", DEEP + flags)
              for label, flags in (("tied, sparse path, lazyadam", ["--mode", "tied"]),
                                   ("untied, sparse path, lazyadam", ["--mode", "untied"]),
                                   ("tied, dense path, adam", ["--mode", "tied", "--sparse", "off"]))],
    "netflix": [("user-based, 512,512,1024 SELU, tied, sparse path, lazyadam", "user", DEEP + ["--mode", "tied"])],
}
for i, (label, orientation, flags) in enumerate(CONTENDERS["uniform"]):  # batches of 64, as the first scale table's
    CONTENDERS["uniform"][i] = (label, orientation, ["--batch-size", "64", *flags])


def counts_per_user(rng, users, total, low=20, sigma=0.6):
    """Ratings per user: log-normal around the mean, at least `low`, summing to exactly `total`."""
    raw = rng.lognormal(0, sigma, users)
    n = np.maximum(low, np.floor(raw / raw.sum() * total)).astype(np.int64)
    while n.sum() != total:  # spread the rounding over random users, never below `low`
        diff = total - n.sum()
        pick = rng.choice(users, min(abs(diff), users), replace=False)
        n[pick] += np.sign(diff)
        n = np.maximum(n, low)
    return n


def pairs(rng, users, items, total, skewed):
    """(user, item) codes (user * items + item), each user's items distinct: drawn by popularity
    (Zipf-like, exponent 0.9, over a seeded order of the items) or uniformly; a user's draws beyond
    their count are dropped at random, and a user left short draws again."""
    n = counts_per_user(rng, users, total) if skewed else np.bincount(rng.randint(0, users, total), minlength=users)
    n = np.minimum(n, items)
    cdf = np.cumsum((1.0 / np.arange(1, items + 1) ** 0.9)[rng.permutation(items)])
    cdf /= cdf[-1]
    kept, who = [], np.arange(users)
    need = n.copy()
    while len(who):
        draws = np.repeat(who, need[who] * 3 // 2 + 8)
        what = np.searchsorted(cdf, rng.rand(len(draws))) if skewed else rng.randint(0, items, len(draws))
        codes = np.unique(draws.astype(np.int64) * items + np.minimum(what, items - 1))
        if kept:  # a second round: not an item the user has already
            codes = codes[~np.isin(codes, kept[-1][np.isin(kept[-1] // items, who)])]
        user = codes // items
        codes = codes[np.lexsort((rng.rand(len(codes)), user))]  # each user's distinct draws in random order
        user = codes // items
        rank = np.arange(len(codes)) - np.searchsorted(user, user)
        kept.append(np.sort(np.concatenate([kept.pop() if kept else np.empty(0, np.int64), codes[rank < need[user]]])))
        need = n - np.bincount(kept[-1] // items, minlength=users)
        who = np.flatnonzero(need)
    return kept[-1]


def generate(folder, name, seed=0):
    """train.tsv and test.tsv of set `name` (user, item, rating; a seeded tenth in test)."""
    users, items, total = SETS[name]
    rng = np.random.RandomState(seed)
    codes = rng.permutation(pairs(rng, users, items, total, skewed=name != "uniform"))
    u, i = codes // items, codes % items
    p, q = rng.randn(users, 8).astype(np.float32) / 2, rng.randn(items, 8).astype(np.float32) / 2
    halves = name == "ml20m"
    cut = total - total // 10
    for file, part in (("train.tsv", slice(0, cut)), ("test.tsv", slice(cut, total))):
        with open(folder / file, "w") as f:
            for start in range(part.start, part.stop, 1_000_000):
                s = slice(start, min(start + 1_000_000, part.stop))
                r = 3.5 + np.einsum("ij,ij->i", p[u[s]], q[i[s]]) + rng.randn(s.stop - s.start) / 2
                r = np.clip(np.rint(r * 2) / 2, 0.5, 5) if halves else np.clip(np.rint(r), 1, 5)
                f.write("".join(f"{a}\t{b}\t{c:g}\n" for a, b, c in zip(u[s].tolist(), i[s].tolist(), r.tolist())))
    return folder / "train.tsv", folder / "test.tsv"


def run(train, test, orientation, flags, out, width):
    cmd = [sys.executable, str(ROOT / "train.py"), "--dataset", str(train), "--test-file", str(test),
           "--orientation", orientation, "--epochs", "1", *[f.format(width=width) for f in flags], "--out", str(out)]
    start = time.time()
    p, peak_mib = peak.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode:
        raise SystemExit(f"train.py failed: {' '.join(cmd)}\n{p.stderr}")
    metrics, config = json.load(open(out / "metrics.json")), json.load(open(out / "config.json"))
    return {"wall_seconds": round(time.time() - start, 1), "epoch_train_seconds": round(metrics["epochs"][0]["seconds"], 1),
            "peak_rss_mib": round(peak_mib), "trainable_params": metrics["final"]["trainable_params"],
            "sparse_input": config["model"]["sparse_input"], "optimizer": config["model"]["optimizer"],
            "batch_size": config["run"]["batch_size"], "test_rmse": round(metrics["final"]["test_rmse"], 4),
            "command": " ".join(cmd[1:])}


def chosen(label, only):
    """Whether each comma-separated part of `only` is a whole part of `label`'s."""
    parts = {part.strip() for part in label.split(",")}
    return all(part.strip() in parts for part in only.split(","))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sets", default="uniform,ml20m", help="of " + ", ".join(SETS) + " (default: %(default)s)")
    p.add_argument("--only", help='run only the contenders whose label has each of these comma-separated parts, '
                                  'whole: "tied, sparse path" (not the untied row)')
    p.add_argument("--scratch", default=tempfile.gettempdir(), help="where the generated files go (default: %(default)s)")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"), help="(default: %(default)s)")
    args = p.parse_args()
    path = pathlib.Path(args.results) / "ratings_scale.json"
    results = json.load(open(path)) if path.exists() else {}
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import throughput

    for name in args.sets.split(","):
        users, items, total = SETS[name]
        with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
            scratch = pathlib.Path(scratch)
            t0 = time.time()
            train, test = generate(scratch, name)
            print(f"{name}: {users} users x {items} items, {total} ratings: generated in {time.time() - t0:.0f} s",
                  flush=True)
            entry = results.setdefault(name, {})
            entry["shape"] = [users, items, total]
            entry["matmul_gflops_before"] = round(throughput.run_matmul())
            for label, orientation, flags in CONTENDERS[name]:
                if args.only and not chosen(label, args.only):
                    continue
                row = run(train, test, orientation, flags, scratch / "run", items if orientation == "user" else users)
                subprocess.run(["rm", "-rf", str(scratch / "run")], check=True)
                entry[label] = row
                path.write_text(json.dumps(results, indent=2) + "\n")  # after every run: a later failure keeps it
                print(f"  {label}: epoch {row['epoch_train_seconds']:.0f} s ({row['wall_seconds']:.0f} s in all), "
                      f"peak RSS {row['peak_rss_mib']} MiB, {row['trainable_params']} parameters", flush=True)
            entry["matmul_gflops_after"] = round(throughput.run_matmul())
            path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
