"""MovieLens 100K, the five canonical folds (u1..u5): the tied and the untied autoencoder in both
orientations, each trained by train.py with its recipe, beside scikit-surprise's BaselineOnly, SVD
and SVD++ (defaults, random_state 0) on the same folds, when scikit-surprise is installed.

The recipes were chosen on u1's validation ratings (a seeded tenth of u1.base) alone; the test
files choose nothing. Variants run interleaved by fold (u1: A B C D, u2: A B C D, ...), two at a
time, so this machine's drift spreads over all of them alike. Results: benchmarks/results/movielens.json.

    python benchmarks/movielens.py                      # about 15 minutes on 2 cores
    python benchmarks/movielens.py --only "item, untied" --folds u1
"""
import argparse
import concurrent.futures
import json
import pathlib
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-100k"
FOLDS = ("u1", "u2", "u3", "u4", "u5")
# One hidden (code) layer of 500 sigmoid units, linear output, masked squared error, Adam with a
# cosine decay over 80 epochs, batches of 64, the epoch of the lowest validation RMSE kept. Every
# setting is a flag here, so the rows do not move when train.py's ratings defaults do.
RECIPE = {"--dims": "{width},500", "--code-activation": "sigmoid", "--batch-size": "64", "--epochs": "80",
          "--lr-schedule": "cosine", "--lr": "1e-3", "--mask-noise": "0"}
VARIANTS = {  # each with the settings of its lowest u1 validation RMSE (weight decay 1e-3, 3e-3 or 1e-2;
    # with or without 10% masking noise and a learning rate of 3e-3; README)
    "item, untied": {"--orientation": "item", "--mode": "untied", "--weight-decay": "3e-3", "--mask-noise": "0.1",
                     "--lr": "3e-3"},
    "item, tied": {"--orientation": "item", "--mode": "tied", "--weight-decay": "3e-3", "--mask-noise": "0.1",
                   "--lr": "3e-3"},
    "user, untied": {"--orientation": "user", "--mode": "untied", "--weight-decay": "1e-3"},
    "user, tied": {"--orientation": "user", "--mode": "tied", "--weight-decay": "1e-2", "--mask-noise": "0.1",
                   "--lr": "3e-3"},
}

# DeepRecommender's recipe (Kuchaiev & Ginsburg 2017), affordable on the sparse path: deep SELU
# layers n,512,512,1024, dropout on the code, batches of 128, constrained (tied) and not, dense
# re-feeding (which trains on the dense output: the dense path, Adam) on and off. `--deep` runs these.
DEEP = {"--dims": "{width},512,512,1024", "--activation": "selu", "--code-activation": "selu", "--code-dropout": "0.8",
        "--batch-size": "128", "--weight-decay": "0", "--mask-noise": "0", "--lr": "1e-3"}
DEEP_VARIANTS = {f"{o}, deep {mode}{', refeed' if refeed else ''}": {
    **DEEP, "--orientation": o, "--mode": mode, **({"--dense-refeed": "on"} if refeed else {})}
    for o in ("user", "item") for mode in ("untied", "tied") for refeed in (False, True)}


def width(data_dir, fold, orientation):
    """The training matrix's width of a fold as train.py builds it (its validation tenth carved out)."""
    sys.path.insert(0, str(ROOT))
    import tae_ratings
    import tae_ratings_matrix

    data = tae_ratings.load_movielens(data_dir, fold)
    tae_ratings.split_validation(data, len(data.train) // 10)
    return tae_ratings_matrix.arrange(data, orientation).width


def run_variant(name, fold, data_dir, scratch):
    settings = {**RECIPE, **{**VARIANTS, **DEEP_VARIANTS}[name]}
    settings["--dims"] = settings["--dims"].format(width=width(data_dir, fold, settings["--orientation"]))
    flags = [part for pair in settings.items() for part in pair]
    out = pathlib.Path(scratch) / f"{name.replace(', ', '-')}-{fold}"
    cmd = [sys.executable, str(ROOT / "train.py"), "--dataset", "movielens", "--data-dir", str(data_dir), "--split",
           fold, "--out", str(out), *flags]
    start = time.time()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode:
        raise SystemExit(f"train.py failed ({p.returncode}): {shlex.join(cmd)}\n{p.stderr}")
    final = json.load(open(out / "metrics.json"))["final"]
    return {"test_rmse": final["test_rmse"], "test_mae": final["test_mae"], "best_epoch": final["best_epoch"],
            "validation_rmse": final["validation_rmse"], "trainable_params": final["trainable_params"],
            "train_seconds": final["train_seconds"], "wall_seconds": time.time() - start,
            "cold_test_ratings": final["cold_test_ratings"],
            "command": shlex.join(["python", "train.py"] + cmd[2:]).replace(str(data_dir), "DIR").replace(
                str(out), "RUN")}


def surprise_rows(data_dir, folds):
    """scikit-surprise's BaselineOnly, SVD and SVD++ (defaults, random_state 0) on the folds."""
    try:
        import surprise
    except ImportError:
        print("scikit-surprise is not installed: its rows are skipped (pip install scikit-surprise)")
        return {}
    reader = surprise.Reader(line_format="user item rating timestamp", sep="\t")
    data = surprise.Dataset.load_from_folds([(str(data_dir / f"{f}.base"), str(data_dir / f"{f}.test")) for f in folds],
                                            reader)
    rows = {}
    for name, make in (("surprise BaselineOnly", lambda: surprise.BaselineOnly(verbose=False)),
                       ("surprise SVD", lambda: surprise.SVD(random_state=0)),
                       ("surprise SVD++", lambda: surprise.SVDpp(random_state=0))):
        found = {}
        for fold, (train, test) in zip(folds, surprise.model_selection.PredefinedKFold().split(data)):
            start = time.time()
            predictions = make().fit(train).test(test)
            found[fold] = {"test_rmse": surprise.accuracy.rmse(predictions, verbose=False),
                           "test_mae": surprise.accuracy.mae(predictions, verbose=False),
                           "wall_seconds": time.time() - start}
        rows[name] = found
        print(f"{name:<30} " + " ".join(f"{found[f]['test_rmse']:.4f}" for f in folds)
              + f"  mean {np.mean([found[f]['test_rmse'] for f in folds]):.4f}")
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=str(DEFAULT_DATA), help="the ml-100k folder (default: %(default)s)")
    p.add_argument("--folds", default=",".join(FOLDS), help="(default: %(default)s)")
    p.add_argument("--only", help="run just these variants, separated by ';' (the others keep their results)")
    p.add_argument("--deep", action="store_true", help="DeepRecommender's recipe (DEEP_VARIANTS) instead")
    p.add_argument("--no-surprise", action="store_true", help="skip scikit-surprise's rows")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"), help="(default: %(default)s)")
    args = p.parse_args()
    data_dir, folds = pathlib.Path(args.data_dir), args.folds.split(",")
    names = args.only.split(";") if args.only else list(DEEP_VARIANTS if args.deep else VARIANTS)
    path = pathlib.Path(args.results) / "movielens.json"
    results = json.load(open(path)) if path.exists() else {}
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import throughput

    results["matmul_gflops_before"] = throughput.run_matmul()
    jobs = [(name, fold) for fold in folds for name in names]  # interleaved by fold
    with tempfile.TemporaryDirectory() as scratch, concurrent.futures.ThreadPoolExecutor(2) as pool:
        done = pool.map(lambda job: (job, run_variant(*job, data_dir, scratch)), jobs)
        for (name, fold), row in done:
            results.setdefault(name, {})[fold] = row
            print(f"{name:<30} {fold}: test RMSE {row['test_rmse']:.4f} (best epoch {row['best_epoch']}, "
                  f"{row['trainable_params']} parameters, {row['wall_seconds']:.0f} s)", flush=True)
    results["matmul_gflops_after"] = throughput.run_matmul()
    if not args.no_surprise:
        results.update(surprise_rows(data_dir, folds))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{'':<30} " + " ".join(f"{f:>6}" for f in FOLDS) + "    mean")
    for name, row in results.items():
        if isinstance(row, dict) and all(f in row for f in FOLDS):
            print(f"{name:<30} " + " ".join(f"{row[f]['test_rmse']:.4f}" for f in FOLDS)
                  + f"  {np.mean([row[f]['test_rmse'] for f in FOLDS]):.4f}")
    print(f"matmul {results['matmul_gflops_before']:.0f} / {results['matmul_gflops_after']:.0f} GFLOP/s; wrote {path}")


if __name__ == "__main__":
    main()
