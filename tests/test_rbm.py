"""RBM pretraining (tf1_rbm): CD-1 learns, unrolling is exact, and train.py runs and resumes it."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import datasets
import tf1_rbm
import tf1_tied_ae as tae
import train
from conftest import ROOT

tf1 = tf.compat.v1
DIMS = (64, 32, 16, 4)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def train_stack(epochs, dims=DIMS, batch=50):
    data = datasets.load_digits().train
    stack = tf1_rbm.build_rbms(tf1_rbm.RBMConfig(dims=dims, seed=0), resident=(len(data), batch))
    steps = len(data) // batch
    errors = {k: [] for k in range(len(stack.layers))}
    sess = tf1.Session(graph=stack.graph)
    sess.run(stack.init_op)
    tae.load_resident(sess, stack.resident, data)
    for k, layer in enumerate(stack.layers):
        for epoch in range(epochs):
            order = np.random.RandomState(epoch).permutation(len(data)).astype(np.int32)
            sess.run(stack.resident.start_epoch_op, {stack.resident.order_placeholder: order})
            errs = [sess.run([layer.train_op, layer.recon_sse])[1].mean() for _ in range(steps)]
            errors[k].append(np.mean(errs))
    values = [tuple(sess.run([l.weights, l.visible_bias, l.hidden_bias])) for l in stack.layers]
    sess.close()
    return values, errors, data


@pytest.fixture(scope="module")
def stack():
    return train_stack(epochs=8)


def test_cd1_lowers_reconstruction_error(stack):
    _, errors, _ = stack
    for k, errs in errors.items():
        # the linear top RBM learns at the paper's rate 0.001: slower, but it must still improve
        assert errs[-1] < (0.99 if k == len(errors) - 1 else 0.8) * errs[0], (k, errs)


def test_bad_rbm_config():
    for kwargs, field in [(dict(dims=(5,)), "dims"), (dict(learning_rate=0), "learning_rate"),
                          (dict(weight_cost=-1.0), "weight_cost"), (dict(final_momentum=float("nan")), "final_momentum")]:
        with pytest.raises(ValueError, match=field):
            tf1_rbm.RBMConfig(**kwargs)


def test_unrolling_is_exact_and_matches_numpy(stack):
    values, _, data = stack
    cfg = tae.AEConfig(dims=DIMS, mode="tied-untied", code_activation="linear", output_activation="sigmoid")
    ae = tae.build(cfg)
    x = data[:20]
    with tf1.Session(graph=ae.graph) as sess:
        sess.run(ae.init_op)
        tae.load_values(sess, ae, tf1_rbm.unrolled_values(values))
        got = sess.run(ae.variables)
        recon = sess.run(ae.reconstruction, {ae.x: x})
        sess.run(ae.untie_op)
        untied = sess.run(ae.finetune.reconstruction, {ae.x: x})
    for k, (w, a, b) in enumerate(values):
        assert np.array_equal(got[f"encoder/layer_{k}/kernel"], w)
        assert np.array_equal(got[f"encoder/layer_{k}/bias"], b)
        assert np.array_equal(got[f"decoder/layer_{len(values) - 1 - k}/bias"], a)
    # NumPy, float64: logistic encoder, linear code, then the RBMs run top-down (visible biases)
    h = x.astype(np.float64)
    for k, (w, a, b) in enumerate(values):
        h = h @ w + b
        h = h if k == len(values) - 1 else sigmoid(h)
    for w, a, b in reversed(values):
        h = sigmoid(h @ w.T + a)
    np.testing.assert_allclose(recon, h, atol=1e-5)
    assert np.abs(untied - recon).max() <= 1e-7


def test_untied_mode_gets_transposed_decoder_kernels(stack):
    values, _, _ = stack
    unrolled = tf1_rbm.unrolled_values(values, decoder_kernels=True)
    for k, (w, _, _) in enumerate(values):
        assert np.array_equal(unrolled[f"decoder/layer_{len(values) - 1 - k}/kernel"], w.T)


RBM_RUN = ["--dataset", "digits", "--dims", "64,32,16,4", "--code-activation", "linear", "--output-activation",
           "sigmoid", "--mode", "tied-untied", "--pretrain", "rbm", "--rbm-batch-size", "10"]


def test_pretrain_cli_interrupt_and_resume_across_stages(tmp_path):
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *RBM_RUN, "--pretrain-epochs", "40",
                          "--epochs", "2", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    state = out / "rbm_checkpoint"
    while not (state.exists() and "rbm-ckpt-0" not in state.read_text().split("\n")[0]):
        assert p.poll() is None, p.communicate()
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "while pretraining RBM" in err, err
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "--out", str(out), "--resume"], capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert [(m["layer"], m["epoch"]) for m in metrics["pretrain"]] == [(k, e) for k in range(3) for e in range(1, 41)]
    assert len(metrics["epochs"]) == 2 and metrics["status"] == "done"
    assert metrics["pretrain"][39]["recon_sse_per_example"] < metrics["pretrain"][0]["recon_sse_per_example"]


def test_pretrain_needs_logistic_units(tmp_path, capsys):
    code = train.main(["--dataset", "digits", "--pretrain", "rbm", "--activation", "relu", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "--pretrain rbm" in err and not (tmp_path / "r").exists()
