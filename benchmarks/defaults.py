"""How train.py's defaults were chosen: candidate settings of the default tied model, each run as a
`python train.py` command on scikit-learn's digits (200 epochs) and on MNIST (10 epochs, the
default for MNIST-sized data), against the PCA baseline with the same code size on the same split.

    python benchmarks/defaults.py [--data-dir ../shared/data/mnist] [--json benchmarks/results/defaults.json]

Every candidate gives all of its settings as flags, so the table stays reproducible whatever the
defaults are. The figures are metrics.json's: final test MSE, baselines, training seconds.
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist"
# --validation 0: the table was measured before the validation split existed (every training example
# trained, the last epoch reported); with it these commands give the same numbers, bit for bit.
COMMON = ["--mode", "tied", "--init", "glorot", "--loss", "mse", "--output-activation", "linear", "--seed", "0",
          "--validation", "0"]


def flags(activation, code, lr, schedule, batch):
    return ["--activation", activation, "--code-activation", code, "--lr", lr, "--lr-schedule", schedule,
            "--batch-size", batch]


CANDIDATES = {  # name -> flags (besides COMMON)
    "sigmoid, constant 1e-3, batch 100 (round 1's defaults)": flags("sigmoid", "sigmoid", "1e-3", "constant", "100"),
    "elu, linear code, constant 1e-3, batch 100": flags("elu", "linear", "1e-3", "constant", "100"),
    "elu, linear code, constant 1e-3, batch 32": flags("elu", "linear", "1e-3", "constant", "32"),
    "elu, linear code, cosine 1e-3, batch 100": flags("elu", "linear", "1e-3", "cosine", "100"),
    "elu, linear code, cosine 3e-3, batch 100": flags("elu", "linear", "3e-3", "cosine", "100"),
    "elu, linear code, cosine 3e-3, batch 32": flags("elu", "linear", "3e-3", "cosine", "32"),
    "relu, linear code, cosine 3e-3, batch 32": flags("relu", "linear", "3e-3", "cosine", "32"),
    "tanh, linear code, cosine 3e-3, batch 32": flags("tanh", "linear", "3e-3", "cosine", "32"),
}
DATASETS = {"digits": ["--dataset", "digits", "--epochs", "200"], "mnist": ["--dataset", "mnist", "--epochs", "10"]}


def run(args, out):
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), *args, "--out", str(out)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed: train.py {' '.join(args)}\n{r.stderr}")
    m = json.loads((out / "metrics.json").read_text())
    return {"command": "python train.py " + " ".join(args), "test_mse": m["final"]["test_mse"],
            "epochs": m["final"]["epochs"], "train_seconds": m["final"]["train_seconds"],
            "pca_mse": m["baselines"]["pca"]["test_mse"], "pca_components": m["baselines"]["pca"]["components"],
            "mean_mse": m["baselines"]["mean"]["test_mse"]}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(DEFAULT_DATA), help="MNIST IDX folder (default: %(default)s)")
    p.add_argument("--json", help="write the results here too")
    p.add_argument("--datasets", default="digits,mnist", help="(default: %(default)s)")
    args = p.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for data in args.datasets.split(","):
            extra = ["--data-dir", args.data_dir] if data == "mnist" else []
            for k, (name, candidate) in enumerate(CANDIDATES.items()):
                row = run(DATASETS[data] + extra + COMMON + candidate, pathlib.Path(tmp) / f"{data}-{k}")
                results.setdefault(data, {})[name] = row
                print(f"{data:<7} {name:<58} test mse {row['test_mse']:.5f} (PCA-{row['pca_components']} "
                      f"{row['pca_mse']:.5f}, mean {row['mean_mse']:.5f})  {row['epochs']} epochs "
                      f"{row['train_seconds']:.0f}s", flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
