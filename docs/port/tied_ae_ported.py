"""tied_ae_2017.py (beside this file) ported onto tf1_tied_ae, for TensorFlow 2.12-2.21: the same
network, noise, loss and optimiser, built by the library; docs/porting.md walks through the diff.

    python tied_ae_ported.py --epochs 10 --keep_prob 0.95 --data_dir MNIST_data
    python tied_ae_ported.py --digits --epochs 20          # scikit-learn's 8x8 digits, no download

Copy the library's files (docs/porting.md lists them) beside this one. What changed, line for line:
tf.app.flags -> argparse; the tutorials' reader -> `read_data_sets` below; the six variables and
the forward pass -> AEConfig(dims, mode="tied", activation="elu", code_activation="linear");
contrib's variance_scaling_initializer() -> init="he"; contrib's l2_regularizer(l2) ->
weight_decay=l2 (both scale * sum(w^2) / 2); dropout with keep_prob, its scaling undone (masking
noise) -> mask_noise=1 - keep_prob; cross-entropy on the logits -> loss="xent"; Adam -> the default
optimizer; the Session and the Saver -> ae.graph's, with tf.compat.v1.Session(graph=ae.graph).
"""
import argparse
import gzip
import os

import numpy as np
import tensorflow as tf

import tf1_tied_ae as tae

tf1 = tf.compat.v1


def read_data_sets(folder, validation_size=5000):
    """What the tutorials' input_data.read_data_sets(folder) gave, its images: float32 in [0, 1]
    (uint8 times 1 / 255), the first 5,000 training images held out. (train, validation, test)."""
    def images(name):
        with gzip.open(os.path.join(folder, name)) as f:
            data = f.read()
        n, rows, cols = np.frombuffer(data, ">i4", 3, 4)
        pixels = np.frombuffer(data, np.uint8, n * rows * cols, 16).reshape(n, rows * cols)
        return np.multiply(pixels.astype(np.float32), 1.0 / 255.0)

    train = images("train-images-idx3-ubyte.gz")
    return train[validation_size:], train[:validation_size], images("t10k-images-idx3-ubyte.gz")


def digits():
    """scikit-learn's 8x8 digits in [0, 1] (its own copy: no download), the last fifth for testing."""
    from sklearn.datasets import load_digits

    x = (load_digits().data / 16.0).astype(np.float32)
    cut = len(x) * 4 // 5
    return x[:cut], None, x[cut:]


def config(flags, width):
    """The 2017 network: width-256-64 (MNIST) tied, ELU, a linear code, cross-entropy."""
    hidden = (256, 64) if width == 784 else (32, 16)
    return tae.AEConfig(dims=(width, *hidden), mode="tied", init="he", activation="elu", code_activation="linear",
                        loss="xent", mask_noise=1 - flags.keep_prob, weight_decay=flags.l2,
                        learning_rate=flags.learning_rate, seed=flags.seed)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=10, help="passes over the training images (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=100, help="images per step (default: %(default)s)")
    p.add_argument("--learning_rate", type=float, default=1e-3, help="Adam's learning rate (default: %(default)s)")
    p.add_argument("--keep_prob", type=float, default=0.95, help="the fraction of input pixels kept (default: %(default)s)")
    p.add_argument("--l2", type=float, default=1e-4, help="L2 regularisation of the weights (default: %(default)s)")
    p.add_argument("--data_dir", default="MNIST_data", help="MNIST's IDX files (default: %(default)s)")
    p.add_argument("--digits", action="store_true", help="scikit-learn's 8x8 digits instead of MNIST")
    p.add_argument("--save_path", default="/tmp/tied_ae/model.ckpt", help="the checkpoint (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="the graph's seed and the batches' order (default: %(default)s)")
    flags = p.parse_args(argv)
    train, _, test = digits() if flags.digits else read_data_sets(flags.data_dir)
    ae = tae.build(config(flags, train.shape[1]))
    order = np.random.RandomState(flags.seed)
    with tf1.Session(graph=ae.graph) as sess:
        sess.run(ae.init_op)
        for epoch in range(flags.epochs):
            batches = order.permutation(len(train))
            for k in range(len(train) // flags.batch_size):
                sess.run(ae.train.train_op, {ae.x: train[batches[k * flags.batch_size : (k + 1) * flags.batch_size]]})
            test_xent = sess.run(ae.train.loss, {ae.x: test})  # the clean pass: no noise (keep_prob 1.0)
            print("epoch %d: test cross-entropy %.4f" % (epoch + 1, test_xent))
        os.makedirs(os.path.dirname(os.path.abspath(flags.save_path)), exist_ok=True)
        ae.saver.save(sess, flags.save_path)
    return test_xent


if __name__ == "__main__":
    main()
