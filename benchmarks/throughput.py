"""Training throughput, samples per second, each contender in its own process on this machine.

    python benchmarks/throughput.py [--data-dir ../shared/data/mnist] [--rounds 5] [--json results.json]
        [--baseline DIR]   # also time the train.py of another checkout (git worktree add DIR <commit>)

Contenders, on the same architecture, batch size and data (MNIST when found, else uniform noise
of the same shape, which costs the same):
  ours-tied / ours-untied   train.py's own training loop (tied, and untied as the question's model)
  ours-tfdata               the same loop and tied model, its batches drawn by tf.data instead
  base-tied / base-untied   the same, from the checkout given with --baseline
  question                  the 2018 question's code as written: untied, feed_dict per batch
  keras-fit                 Keras 3 model.fit with the common tied recipe (a Dense-transpose layer)
  torch-eager               PyTorch eager, tied through F.linear on the encoder's weight (if installed)
  tf2-native                tf2_tied_ae (the same model in TF2's own idiom): its tf.function step over tf.data
  roofline                  TensorFlow's measured float32 matmul rate / the model's training FLOPs
All use sigmoid hidden units, Adam (lr 1e-3) and squared error; every contender trains two
epochs and is timed on the second. This machine's speed drifts (2x between days and hosts), so the
contenders run interleaved in rounds (A B C, A B C, ...), the matmul rate is measured in every
round too, and the medians over the rounds are compared: the ratios are the result.
"""
import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARCHS = {  # name -> (dims, batch size, code activation, output activation)
    "question": ((784, 196, 81, 49), 100, "sigmoid", "linear"),
    "hinton": ((784, 1000, 500, 250, 30), 256, "linear", "sigmoid"),
}
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist"


def load_data(data_dir):
    sys.path.insert(0, str(ROOT))
    import tae_data

    if data_dir and pathlib.Path(data_dir).exists():
        return tae_data.load("mnist", str(data_dir), log=lambda *_: None).train
    return np.random.RandomState(0).rand(60000, 784).astype(np.float32)


def training_flops(dims):
    """Per sample: forward = 2 x multiply-adds of encoder and decoder; training ~ 3 x forward."""
    macs = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    return 3 * 2 * 2 * macs


# --- contenders, each run in a fresh process ---------------------------------------------------

def run_ours(arch, data_dir, mode, tree=ROOT):
    dims, batch, code_act, out_act = ARCHS[arch]
    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, str(pathlib.Path(tree) / "train.py"), "--dims", ",".join(map(str, dims)), "--mode", mode,
                "--batch-size", str(batch), "--epochs", "2", "--activation", "sigmoid", "--code-activation", code_act,
                "--output-activation", out_act, "--out", os.path.join(tmp, "run")]
        args += ["--dataset", "mnist", "--data-dir", str(data_dir)] if data_dir else []
        if not data_dir:
            np.save(os.path.join(tmp, "noise.npy"), load_data(None))
            args += ["--dataset", os.path.join(tmp, "noise.npy")]
        subprocess.run(args, check=True, capture_output=True)
        metrics = json.load(open(os.path.join(tmp, "run", "metrics.json")))
    return metrics["epochs"][-1]["samples_per_s"]


def run_ours_tfdata(arch, data_dir, mode="tied"):
    """train.py's stage runner on the same model, its input drawn by tf.data (tf1_input's tfdata
    kind) instead of the resident cursor: the input pipeline is the only difference."""
    sys.path.insert(0, str(ROOT))
    import tae_cli
    import tae_data
    import tae_runner
    import tae_tasks
    import tf1_tied_ae

    tae_cli.import_tensorflow(verbose=False)  # as train.py: quiet, deterministic ops
    dims, batch, code_act, out_act = ARCHS[arch]
    ds = tae_data.Dataset("mnist", load_data(data_dir), load_data(None)[:1000], None, str(data_dir))
    model = tf1_tied_ae.AEConfig(dims=dims, mode=mode, activation="sigmoid", code_activation=code_act,
                                 output_activation=out_act)
    ae = tf1_tied_ae.build(model, tf1_tied_ae.Schedule(epochs=2, batch_size=batch), len(ds.train), input_kind="tfdata")
    with tempfile.TemporaryDirectory() as tmp:
        metrics = tae_runner.train(ae, tae_tasks.task_of("mnist"), ds, tmp, {}, log=lambda *_: None)
    return metrics["epochs"][-1]["samples_per_s"]


def run_question(arch, data_dir):
    """The question's graph and loop: lists of tf.Variable, feed_dict of a numpy slice per batch."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf

    tf1 = tf.compat.v1
    tf1.disable_eager_execution()
    dims, batch, code_act, out_act = ARCHS[arch]
    data = load_data(data_dir)
    X = tf1.placeholder(tf.float32, [None, dims[0]])
    encoderWeights, encoderBiases, decoderWeights, decoderBiases = [], [], [], []
    rev = dims[::-1]
    for i in range(len(dims) - 1):
        encoderWeights.append(tf.Variable(tf1.random_normal([dims[i], dims[i + 1]], stddev=0.05)))
        encoderBiases.append(tf.Variable(tf1.zeros([dims[i + 1]])))
        decoderWeights.append(tf.Variable(tf1.random_normal([rev[i], rev[i + 1]], stddev=0.05)))
        decoderBiases.append(tf.Variable(tf1.zeros([rev[i + 1]])))
    layer = X
    for i in range(len(dims) - 1):
        z = tf.add(tf.matmul(layer, encoderWeights[i]), encoderBiases[i])
        layer = z if (i == len(dims) - 2 and code_act == "linear") else tf.nn.sigmoid(z)
    for i in range(len(rev) - 1):
        layer = tf.add(tf.matmul(layer, decoderWeights[i]), decoderBiases[i])
        if i < len(rev) - 2 or out_act == "sigmoid":
            layer = tf.nn.sigmoid(layer)
    loss = tf1.losses.mean_squared_error(labels=X, predictions=layer)
    optimizer = tf1.train.AdamOptimizer(1e-3).minimize(loss)
    steps = len(data) // batch
    with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        for epoch in range(2):
            order = np.random.permutation(len(data))
            t0 = time.time()
            for k in range(steps):
                _, c = sess.run([optimizer, loss], feed_dict={X: data[order[k * batch : (k + 1) * batch]]})
            seconds = time.time() - t0
    return steps * batch / seconds


def run_keras(arch, data_dir):
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    import keras

    dims, batch, code_act, out_act = ARCHS[arch]
    data = load_data(data_dir)

    class DenseTranspose(keras.layers.Layer):
        """Decoder layer: inputs @ dense.kernel^T + its own bias."""

        def __init__(self, dense, activation=None, **kw):
            super().__init__(**kw)
            self.dense, self.activation = dense, keras.activations.get(activation)

        def build(self, input_shape):
            self.bias = self.add_weight(shape=(self.dense.kernel.shape[0],), initializer="zeros", name="bias")

        def call(self, inputs):
            return self.activation(tf.matmul(inputs, self.dense.kernel, transpose_b=True) + self.bias)

    inputs = keras.Input((dims[0],))
    encoders, h = [], inputs
    for i, d in enumerate(dims[1:]):
        layer = keras.layers.Dense(d, activation=code_act if i == len(dims) - 2 else "sigmoid")
        encoders.append(layer)
        h = layer(h)
    for j, layer in enumerate(reversed(encoders)):
        h = DenseTranspose(layer, activation=out_act if j == len(encoders) - 1 else "sigmoid")(h)
    model = keras.Model(inputs, h)
    model.compile(keras.optimizers.Adam(1e-3), "mse")

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.time() - self.t0

    timer = Timer()
    model.fit(data, data, batch_size=batch, epochs=2, shuffle=True, verbose=0, callbacks=[timer])
    return (len(data) // batch) * batch / timer.seconds


def run_torch(arch, data_dir):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    dims, batch, code_act, out_act = ARCHS[arch]
    data = torch.from_numpy(load_data(data_dir))
    enc = [torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])]
    dec_bias = [torch.nn.Parameter(torch.zeros(d)) for d in dims[::-1][1:]]
    params = [p for layer in enc for p in layer.parameters()] + dec_bias
    opt = torch.optim.Adam(params, lr=1e-3)

    def forward(x):
        for i, layer in enumerate(enc):
            x = layer(x)
            x = x if (i == len(enc) - 1 and code_act == "linear") else torch.sigmoid(x)
        for j, layer in enumerate(reversed(enc)):
            x = F.linear(x, layer.weight.t(), dec_bias[j])  # tied: the encoder weight, transposed
            if j < len(enc) - 1 or out_act == "sigmoid":
                x = torch.sigmoid(x)
        return x

    steps = len(data) // batch
    for epoch in range(2):
        order = torch.randperm(len(data))
        t0 = time.time()
        for k in range(steps):
            x = data[order[k * batch : (k + 1) * batch]]
            loss = F.mse_loss(forward(x), x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        seconds = time.time() - t0
    return steps * batch / seconds


def run_tf2(arch, data_dir):
    """tf2_tied_ae, the TF2-native model: its tf.function step over a tf.data pipeline (shuffled,
    batched, prefetched), one Python call per step, as TensorFlow's custom-training-loop guide has it."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.path.insert(0, str(ROOT))
    import tensorflow as tf

    import tf2_tied_ae
    from tf1_config import AEConfig

    dims, batch, code_act, out_act = ARCHS[arch]
    data = load_data(data_dir)
    cfg = AEConfig(dims=dims, mode="tied", activation="sigmoid", code_activation=code_act,
                   output_activation=out_act, loss="mse", learning_rate=1e-3)
    trainer = tf2_tied_ae.Trainer(tf2_tied_ae.TiedAutoEncoder(cfg))
    batches = tf.data.Dataset.from_tensor_slices(data).shuffle(len(data), seed=0).batch(batch, drop_remainder=True)
    for epoch in range(2):
        t0 = time.time()
        for x in batches.prefetch(1):
            loss = trainer.step(x)
        float(loss)  # the last step done
        seconds = time.time() - t0
    return (len(data) // batch) * batch / seconds


def run_matmul(n=2048, repeats=30):
    """TensorFlow's float32 matmul rate in GFLOP/s (n x n by n x n, best of a few rounds)."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf

    a = tf.random.uniform((n, n)) / n  # keeps the chain's values bounded
    b = tf.random.uniform((n, n))

    @tf.function
    def chain(a, b):
        for _ in range(repeats):  # each product feeds the next: nothing for the optimiser to merge
            b = tf.matmul(a, b)
        return b

    chain(a, b).numpy()
    best = 0.0
    for _ in range(3):
        t0 = time.time()
        chain(a, b).numpy()
        best = max(best, 2 * n ** 3 * repeats / (time.time() - t0) / 1e9)
    return best


WORKERS = {
    "ours-tied": lambda arch, d, base: run_ours(arch, d, "tied"),
    "ours-untied": lambda arch, d, base: run_ours(arch, d, "untied"),
    "ours-tfdata": lambda arch, d, base: run_ours_tfdata(arch, d),
    "base-tied": lambda arch, d, base: run_ours(arch, d, "tied", base),
    "base-untied": lambda arch, d, base: run_ours(arch, d, "untied", base),
    "question": lambda arch, d, base: run_question(arch, d),
    "keras-fit": lambda arch, d, base: run_keras(arch, d),
    "torch-eager": lambda arch, d, base: run_torch(arch, d),
    "tf2-native": lambda arch, d, base: run_tf2(arch, d),
}


def measure(name, arch, data_dir, baseline):
    """One run of one contender in a new process: samples/s (GFLOP/s for matmul), or the reason it
    cannot run here (a string)."""
    cmd = [sys.executable, __file__, "--worker", name, "--arch", arch, "--data-dir", str(data_dir or ""),
           "--baseline", str(baseline or "")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if r.returncode != 0:
        return (r.stderr.strip().splitlines() or ["failed"])[-1]
    return float(r.stdout.strip().splitlines()[-1])


def versions():
    found = {"python": platform.python_version(), "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}"}
    for mod in ("tensorflow", "keras", "torch", "numpy"):
        try:
            found[mod] = __import__(mod).__version__
        except ImportError:
            found[mod] = None
    return found


def run_rounds(arch, contenders, args):
    """Every contender once per round, in the same order each round; the matmul rate each round."""
    runs = {name: [] for name in ["matmul"] + contenders}
    skipped = {}
    for r in range(args.rounds):
        for name in runs:
            if name in skipped:
                continue
            got = measure(name, arch, args.data_dir or None, args.baseline)
            if isinstance(got, str):
                skipped[name] = got
            else:
                runs[name].append(got)
        print(f"  round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {v[-1]:.0f}" for n, v in runs.items() if v),
              flush=True)
    return runs, skipped


def report(arch, runs, skipped):
    dims, batch = ARCHS[arch][:2]
    gflops = float(np.median(runs["matmul"]))
    row = {"dims": dims, "batch": batch, "matmul_gflops": gflops, "roofline": gflops * 1e9 / training_flops(dims),
           "runs": runs, "skipped": skipped}
    row.update({name: float(np.median(v)) for name, v in runs.items() if v and name != "matmul"})
    print(f"\n{arch}: {'-'.join(map(str, dims))}, batch {batch}; {training_flops(dims) / 1e6:.2f} MFLOP/sample "
          f"for training; matmul {gflops:.0f} GFLOP/s (median of {len(runs['matmul'])} rounds)")
    print(f"  {'contender':<12} {'samples/s':>10} {'x roofline':>10} {'ours-tied/it':>13}")
    for name in [n for n in runs if n != "matmul"] + ["roofline"]:
        if name in skipped:
            print(f"  {name:<12} {'skipped':>10}  ({skipped[name]})")
            continue
        v = row[name]
        print(f"  {name:<12} {v:>10.0f} {v / row['roofline']:>10.2f} {row['ours-tied'] / v:>13.2f}")
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else "",
                   help="MNIST IDX folder (default: ../shared/data/mnist if present, else noise)")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--arch", choices=list(ARCHS), help="only this architecture")
    p.add_argument("--rounds", type=int, default=5, help="rounds of every contender; medians count (default: 5)")
    p.add_argument("--baseline", default="", help="a checkout whose train.py also runs (base-tied, base-untied)")
    p.add_argument("--only", help="comma-separated contenders to run (default: all)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(run_matmul() if args.worker == "matmul" else
              WORKERS[args.worker](args.arch, args.data_dir or None, args.baseline or None))
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    contenders = args.only.split(",") if args.only else [n for n in WORKERS if args.baseline or
                                                         not n.startswith("base-")]
    results = {"versions": versions(), "data": args.data_dir or "uniform noise, 60000 x 784", "rounds": args.rounds,
               "baseline": args.baseline or None}
    for arch in [args.arch] if args.arch else ARCHS:
        print(f"{arch}: {len(contenders)} contenders, {args.rounds} rounds", flush=True)
        results[arch] = report(arch, *run_rounds(arch, contenders, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
