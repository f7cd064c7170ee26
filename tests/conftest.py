"""Shared test set-up: quiet TensorFlow, the project on sys.path, the real-data locations."""
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

SHARED_DATA = ROOT.parent / "shared" / "data"


def call(capsys, *args):
    """train.py's main in this process: (exit code, stdout, stderr)."""
    import tae_cli

    code = tae_cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def decode_png(path):
    """A PNG file's pixels, decoded by TensorFlow: the file is a real, whole PNG."""
    import tensorflow as tf

    return tf.io.decode_png(tf.io.read_file(str(path))).numpy()


@pytest.fixture
def mnist_dir():
    path = SHARED_DATA / "mnist"
    if not (path / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found at {path} (only developers' machines and CI have ../shared)")
    return path


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test of many seconds (whole runs); started first, so that the "
                                       "two xdist workers finish together")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: the rest keep their order


def loop_variables(build, data, order, batch_size, pieces):
    """The model's variables after one epoch's steps run through its stage's multi-step loop in
    `pieces` (calls of n steps each): build() makes the graph, data fills its training set."""
    import numpy as np
    import tensorflow as tf

    import tf1_input

    ae = build()
    with tf.compat.v1.Session(graph=ae.graph) as sess:
        sess.run(ae.init_op)
        tf1_input.load(sess, ae.input, data)
        sess.run(ae.input.start_epoch_op, {ae.input.order_placeholder: np.asarray(order, np.int32),
                                           ae.input.batch_size_placeholder: batch_size})
        for n in pieces:
            sess.run(ae.stages[-1].steps, {ae.input.steps_placeholder: n})
        return sess.run(ae.variables)
