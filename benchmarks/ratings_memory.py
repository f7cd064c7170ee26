"""Where a ratings run's memory goes, stage by stage, in bytes per rating.

    python benchmarks/ratings_memory.py [--set ml20m] [--orientation user]

Generates the set as benchmarks/ratings_scale.py does (train.tsv and test.tsv, a tenth held out),
then takes a ratings run's data path in one process, as train.py takes it, and reads the kernel's
counters after each stage: the resident set after it (VmRSS) and the peak during it (VmHWM, reset
before each stage through /proc/self/clear_refs). Stages: importing TensorFlow; reading the files
(tae_ratings.load_user_ratings); carving out the validation tenth (split_validation); arranging the
training ratings as the CSR matrix and the bias model (arrange: the parsed training arrays are
released after it); building DeepRecommender's n,512,512,1024 net for the sparse path with lazy
Adam and putting the CSR matrix in its graph (tf1_input.load). "Held" is the growth of the resident
set over TensorFlow's, divided by the training ratings; "peak" the stage's peak over the same base.
Linux only. It writes benchmarks/results/ratings_memory.json.
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def counters():
    """(VmRSS, VmHWM) of this process in bytes."""
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return tuple(int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM"))


def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def measure(train_path, test_path, orientation):
    """The stages in this process (a fresh one: see main): [{stage, rss, peak, seconds}], the counts."""
    stages = []

    def stage(name, fn):
        reset_peak()
        t0 = time.time()
        out = fn()
        rss, peak = counters()
        stages.append(dict(stage=name, rss=rss, peak=peak, seconds=round(time.time() - t0, 1)))
        return out

    import tae_cli

    tae_cli.hide_native_stderr()  # TensorFlow's start-up lines, as train.py hides them
    stages.append(dict(stage="python and NumPy", rss=counters()[0], peak=counters()[0], seconds=0))
    stage("import TensorFlow", lambda: tae_cli.import_tensorflow(False))
    import tensorflow as tf

    import tae_ratings
    import tae_ratings_matrix
    import tf1_config
    import tf1_input
    import tf1_tied_ae

    data = stage("read the files", lambda: tae_ratings.load_user_ratings(train_path, test_path))
    stage("carve out the validation tenth", lambda: tae_ratings.split_validation(data, 0.1))
    counts = {"training": len(data.train), "validation": len(data.validation), "test": len(data.test)}
    ds = stage("arrange: CSR matrix, bias model", lambda: tae_ratings_matrix.arrange(data, orientation))

    def graph():
        cfg = tf1_config.AEConfig(dims=(ds.width, 512, 512, 1024), mode="tied", activation="selu",
                                  code_activation="selu", loss="masked_mse", optimizer="lazyadam",
                                  sparse_input=True, seed=0)
        ae = tf1_tied_ae.build(cfg, tf1_config.Schedule(epochs=1, batch_size=128), ds.rows, nnz=len(ds.matrix.values))
        sess = tf.compat.v1.Session(graph=ae.graph)
        sess.run(ae.init_op)
        tf1_input.load(sess, ae.input, ds.train)
        return sess

    stage("the model's graph, the CSR matrix in it", graph).close()
    return dict(ratings=counts, tensorflow=tf.__version__, stages=stages)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--set", default="ml20m", help="ratings_scale.py's set (default: %(default)s)")
    p.add_argument("--orientation", default="user", choices=("user", "item"), help="(default: %(default)s)")
    p.add_argument("--scratch", default=tempfile.gettempdir(), help="where the generated files go (default: %(default)s)")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"), help="(default: %(default)s)")
    p.add_argument("--measure", nargs=2, metavar=("TRAIN", "TEST"), help=argparse.SUPPRESS)  # the child's part
    args = p.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure, args.orientation)))
        return
    import ratings_scale

    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        train_path, test_path = ratings_scale.generate(pathlib.Path(scratch), args.set)
        # a fresh process: the generator's freed memory would otherwise be reused and hide the stages' growth
        child = subprocess.run([sys.executable, __file__, "--orientation", args.orientation, "--measure",
                                str(train_path), str(test_path)], capture_output=True, text=True, check=True)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    stages, counts = result["stages"], result["ratings"]
    base, ratings = stages[1]["rss"], counts["training"]
    print(f"{args.set}, {args.orientation}-based: {ratings:,} training, {counts['validation']:,} validation and "
          f"{counts['test']:,} test ratings")
    print(f"{'stage':42} {'RSS MiB':>8} {'peak MiB':>9} {'held B/r':>9} {'peak B/r':>9} {'s':>6}")
    print(f"{stages[0]['stage']:42} {stages[0]['rss'] / 2**20:8.0f}")
    for s in stages[1:]:
        s["held_bytes_per_rating"] = round((s["rss"] - base) / ratings, 1)
        s["peak_bytes_per_rating"] = round((s["peak"] - base) / ratings, 1)
        print(f"{s['stage']:42} {s['rss'] / 2**20:8.0f} {s['peak'] / 2**20:9.0f} {s['held_bytes_per_rating']:9.1f} "
              f"{s['peak_bytes_per_rating']:9.1f} {s['seconds']:6.1f}")
    path = pathlib.Path(args.results) / "ratings_memory.json"
    results = json.load(open(path)) if path.exists() else {}
    results[f"{args.set}, {args.orientation}"] = result
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
