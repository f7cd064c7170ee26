"""RBM pretraining (tf1_rbm): CD-1 learns, unrolling is exact against NumPy, and a run interrupted
inside the RBM stages resumes to the same numbers as one that never stopped."""
import json
import signal

import numpy as np
import pytest
import tensorflow as tf

import tae_cli
import tae_commands
import tae_config
import tae_flags
import tae_task_images
import tae_tasks
import tae_data
import tae_files
import tf1_input
import tf1_rbm
import tf1_tied_ae as tae
from tae_config import AEConfig, RunConfig
from tae_files import RunFolder

tf1 = tf.compat.v1
DIMS = (64, 32, 16, 4)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def run_stage(sess, pipe, stage, epochs):
    """Train one stage by hand (what tae_runner does), returning each epoch's mean figure."""
    means = []
    for epoch in range(epochs):
        order = np.random.RandomState(epoch).permutation(pipe.num_examples).astype(np.int32)
        sess.run(pipe.start_epoch_op, {pipe.order_placeholder: order, pipe.batch_size_placeholder: stage.batch_size})
        means.append(float(np.mean(sess.run(stage.steps, {pipe.steps_placeholder: stage.steps_per_epoch}))))
        if stage.epoch_end is not None:
            sess.run(stage.epoch_end)
    return means


def test_cd1_lowers_reconstruction_error():
    data = tae_data.load_digits().train
    stack = tf1_rbm.build_rbms(tae_config.RBMConfig(dims=DIMS, epochs=8, batch_size=50, seed=0), len(data))
    with tf1.Session(graph=stack.graph) as sess:
        sess.run(stack.init_op)
        tf1_input.load(sess, stack.input, data)
        errors = [run_stage(sess, stack.input, s, 8) for s in stack.stages]
        assert sess.run(stack.global_step) == 3 * 8 * (len(data) // 50)
    for k, errs in enumerate(errors):
        # the linear top RBM learns at the paper's rate 0.001: slower, but it must still improve
        assert errs[-1] < (0.99 if k == len(errors) - 1 else 0.8) * errs[0], (k, errs)


@pytest.mark.parametrize("mode", ["tied-untied", "untied"])
def test_unrolling_is_exact_and_matches_numpy(mode):
    data = tae_data.load_digits().train[:500]
    cfg = AEConfig(dims=DIMS, mode=mode, activation="sigmoid", code_activation="linear", output_activation="sigmoid")
    run = RunConfig(epochs=1, batch_size=50, pretrain="rbm", pretrain_epochs=2, rbm_batch_size=50,
                    tied_epochs=0 if mode == "tied-untied" else None)
    ae = tae.build(cfg, run.schedule(cfg), len(data))
    rbms, train = ae.stages[:3], ae.stages[3]
    assert [s.name for s in ae.stages] == ["rbm 1", "rbm 2", "rbm 3"] + (
        ["tied", "untied"] if mode == "tied-untied" else ["untied"])
    assert rbms[-1].epoch_end is not None and train.first_step == 3 * 2 * 10
    x = data[:20]
    with tf1.Session(graph=ae.graph) as sess:
        sess.run(ae.init_op)
        tf1_input.load(sess, ae.input, data)
        for stage in rbms:
            run_stage(sess, ae.input, stage, 2)  # the last one ends by unrolling
        names = [f"rbm/layer_{k}/{p}" for k in range(3) for p in ("weights", "visible_bias", "hidden_bias")]
        by_name = {v.op.name: v for v in ae.graph.get_collection(tf1.GraphKeys.GLOBAL_VARIABLES)}
        rbm = sess.run({n: by_name[n] for n in names})  # variable names are the public interface
        got = sess.run(ae.variables)
        recon = sess.run(ae.train.reconstruction, {ae.x: x})
        if mode == "tied-untied":
            sess.run(ae.untie_op)
            np.testing.assert_array_equal(sess.run(ae.finetune.reconstruction, {ae.x: x}), recon)
    for k in range(3):
        w, a, b = (rbm[f"rbm/layer_{k}/{p}"] for p in ("weights", "visible_bias", "hidden_bias"))
        assert np.array_equal(got[f"encoder/layer_{k}/kernel"], w)
        assert np.array_equal(got[f"encoder/layer_{k}/bias"], b)
        assert np.array_equal(got[f"decoder/layer_{2 - k}/bias"], a)
        assert np.array_equal(got[f"decoder/layer_{2 - k}/kernel"], w.T)
    # NumPy, float64: logistic encoder, linear code, then the RBMs run top-down (visible biases)
    h = x.astype(np.float64)
    for k in range(3):
        h = h @ rbm[f"rbm/layer_{k}/weights"] + rbm[f"rbm/layer_{k}/hidden_bias"]
        h = h if k == 2 else sigmoid(h)
    for k in reversed(range(3)):
        h = sigmoid(h @ rbm[f"rbm/layer_{k}/weights"].T + rbm[f"rbm/layer_{k}/visible_bias"])
    np.testing.assert_allclose(recon, h, atol=1e-5)


class StopAfter:
    """A stop request that arrives after `n` looks, as a SIGINT arriving mid-run would."""

    def __init__(self, n):
        self.n = n

    @property
    def signum(self):
        self.n -= 1
        return signal.SIGINT if self.n < 0 else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


RBM_RUN = ["--dataset", "digits", "--dims", "64,32,16,4", "--activation", "sigmoid", "--code-activation", "linear",
           "--output-activation",
           "sigmoid", "--mode", "tied-untied", "--pretrain", "rbm", "--rbm-batch-size", "50", "--pretrain-epochs",
           "3", "--epochs", "2", "--batch-size", "50"]


def records(folder):
    m = json.loads((folder / "metrics.json").read_text())
    return m, [(r["stage"], r["epoch"], r.get("recon_sse_per_example"), r.get("train_loss"), r.get("test_loss"))
               for r in m["pretrain"] + m["epochs"]]


@pytest.mark.slow
def test_interrupted_pretraining_resumes_to_the_same_numbers(tmp_path, capsys):
    assert tae_cli.main(RBM_RUN + ["--out", str(tmp_path / "straight")]) == 0
    args = tae_cli.make_parser().parse_args(RBM_RUN)
    model_values, run = tae_config.early_configs(tae_flags.given_flags(args))
    ds = tae_data.load("digits")
    model, run = tae_task_images.resolve(model_values, run, ds.image_shape, 64, len(ds.train), ds.name)
    tae_data.split_validation(ds, run.validation)  # as train.py does
    out = tmp_path / "stopped"
    RunFolder(out).prepare()
    with pytest.raises(tae_files.Stopped) as e:  # 28 steps an epoch: a look after 16, one at the end
        tae_commands.train_one(tae_tasks.task_of("digits"), model, run, ds, out, stop=StopAfter(8))
    assert e.value.code == 130 and "interrupted in the rbm 2 stage at epoch 2, step 16" in str(e.value)
    assert json.loads((out / "metrics.json").read_text())["status"] == "interrupted"
    assert tae_cli.main(["--out", str(out), "--resume"]) == 0
    (a, ra), (b, rb) = records(tmp_path / "straight"), records(out)
    assert b["status"] == "done" and len(rb) == 3 * 3 + 2
    assert ra == rb  # exact: the samples are keyed by the global step, the batches by the epoch
    assert rb[2][2] < rb[0][2]  # RBM 1 learned


def test_pretrain_needs_logistic_units(tmp_path, capsys):
    code = tae_cli.main(["--dataset", "digits", "--pretrain", "rbm", "--activation", "relu",
                         "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "--pretrain rbm unrolls logistic RBMs" in err and not (tmp_path / "r").exists()
