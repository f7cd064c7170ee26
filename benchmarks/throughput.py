"""Training throughput, samples per second, each contender in its own process on this machine.

    python benchmarks/throughput.py [--data-dir ../shared/data/mnist] [--json results.json]

Contenders, on the same architecture, batch size and data (MNIST when found, else uniform noise
of the same shape, which costs the same):
  ours-tied / ours-untied   train.py's own training loop (tied, and untied as the question's model)
  question                  the 2018 question's code as written: untied, feed_dict per batch
  keras-fit                 Keras 3 model.fit with the common tied recipe (a Dense-transpose layer)
  torch-eager               PyTorch eager, tied through F.linear on the encoder's weight (if installed)
  roofline                  TensorFlow's measured float32 matmul rate / the model's training FLOPs
All use sigmoid hidden units, Adam (lr 1e-3) and squared error; every contender trains two
epochs and is timed on the second; each runs --repeats times (default 3) and the median counts,
since a shared 2-core machine varies by 10-20% from run to run.
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
    import datasets

    if data_dir and pathlib.Path(data_dir).exists():
        return datasets.load("mnist", str(data_dir), log=lambda *_: None).train
    return np.random.RandomState(0).rand(60000, 784).astype(np.float32)


def training_flops(dims):
    """Per sample: forward = 2 x multiply-adds of encoder and decoder; training ~ 3 x forward."""
    macs = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    return 3 * 2 * 2 * macs


# --- contenders, each run in a fresh process ---------------------------------------------------

def run_ours(arch, data_dir, mode):
    dims, batch, code_act, out_act = ARCHS[arch]
    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, str(ROOT / "train.py"), "--dims", ",".join(map(str, dims)), "--mode", mode,
                "--batch-size", str(batch), "--epochs", "2", "--code-activation", code_act,
                "--output-activation", out_act, "--out", os.path.join(tmp, "run")]
        args += ["--dataset", "mnist", "--data-dir", str(data_dir)] if data_dir else []
        if not data_dir:
            np.save(os.path.join(tmp, "noise.npy"), load_data(None))
            args += ["--dataset", os.path.join(tmp, "noise.npy")]
        subprocess.run(args, check=True, capture_output=True)
        metrics = json.load(open(os.path.join(tmp, "run", "metrics.json")))
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
    "ours-tied": lambda arch, d: run_ours(arch, d, "tied"),
    "ours-untied": lambda arch, d: run_ours(arch, d, "untied"),
    "question": run_question,
    "keras-fit": run_keras,
    "torch-eager": run_torch,
}


def worker(name, arch, data_dir):
    if name == "matmul":
        return run_matmul()
    return WORKERS[name](arch, data_dir)


def measure(name, arch, data_dir, repeats):
    """Run one contender `repeats` times, each in a new process: (median samples/s (or GFLOP/s),
    all the runs), or (None, the reason) when it cannot run here."""
    cmd = [sys.executable, __file__, "--worker", name, "--arch", arch, "--data-dir", str(data_dir or "")]
    found = []
    for _ in range(repeats):
        r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        if r.returncode != 0:
            return None, (r.stderr.strip().splitlines() or ["failed"])[-1]
        found.append(float(r.stdout.strip().splitlines()[-1]))
    return float(np.median(found)), found


def versions():
    found = {"python": platform.python_version(), "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}"}
    for mod in ("tensorflow", "keras", "torch", "numpy"):
        try:
            found[mod] = __import__(mod).__version__
        except ImportError:
            found[mod] = None
    return found


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else "",
                   help="MNIST IDX folder (default: ../shared/data/mnist if present, else noise)")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--arch", choices=list(ARCHS), help="only this architecture")
    p.add_argument("--repeats", type=int, default=3, help="runs per contender; the median counts (default: 3)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(worker(args.worker, args.arch, args.data_dir or None))
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    results = {"versions": versions(), "data": args.data_dir or "uniform noise, 60000 x 784"}
    gflops, runs = measure("matmul", "question", None, args.repeats)
    results["matmul_gflops"], results["matmul_gflops_runs"] = gflops, runs
    print(f"TensorFlow float32 matmul (2048^3): {gflops:.1f} GFLOP/s")
    for arch in [args.arch] if args.arch else ARCHS:
        dims, batch = ARCHS[arch][:2]
        row = {"dims": dims, "batch": batch, "roofline": gflops * 1e9 / training_flops(dims)}
        for name in WORKERS:
            row[name], runs = measure(name, arch, args.data_dir or None, args.repeats)
            row[f"{name}_skipped" if row[name] is None else f"{name}_runs"] = runs
        results[arch] = row
        print(f"\n{arch}: {'-'.join(map(str, dims))}, batch {batch}; training {training_flops(dims) / 1e6:.2f} "
              f"MFLOP/sample")
        print(f"  {'contender':<12} {'samples/s':>10} {'x roofline':>10} {'ours-tied/it':>13}")
        for name in list(WORKERS) + ["roofline"]:
            v = row[name]
            if v is None:
                print(f"  {name:<12} {'skipped':>10}  ({row.get(name + '_skipped')})")
                continue
            print(f"  {name:<12} {v:>10.0f} {v / row['roofline']:>10.2f} {row['ours-tied'] / v:>13.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
