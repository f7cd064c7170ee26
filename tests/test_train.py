"""train.py end to end on scikit-learn's digits: every output file, --epochs 0, --resume, --compare,
the loaders on real MNIST, a user's own .npy. The slow parts (TensorFlow's import) are paid once
by calling main() in this process; a few runs go through a real subprocess to see what a user sees."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import tae_config
import tae_data
from conftest import ROOT, call, decode_png




def run_cli(*args, cwd, env=None):
    """python train.py in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=240, env=env)


@pytest.mark.slow
def test_default_command_on_a_fresh_machine(tmp_path):
    """`python train.py`, nothing else, as a new user runs it: the digits fallback, every output
    file, quiet, and a model that beats the PCA baseline of its own code size on the same split."""
    home = tmp_path / "home"  # no ~/.keras cache, no ./data: the digits fallback
    env = dict(os.environ, HOME=str(home))
    r = run_cli(cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # TensorFlow's start-up noise is hidden
    assert "scikit-learn's 8x8 digits" in r.stdout and "--dataset mnist" in r.stdout
    (run,) = (tmp_path / "checkpoints").iterdir()
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["dims"] == [64, 16, 4, 4] and cfg["model"]["mode"] == "tied"  # the question's rule, 8x8
    metrics = json.loads((run / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics["epochs"]] == list(range(1, 201))
    for key in ("train_loss", "test_loss", "test_mse", "test_sse_per_image", "seconds", "samples_per_s"):
        assert np.isfinite(metrics["epochs"][-1][key]), key
    final, baselines = metrics["final"], metrics["baselines"]
    assert final["test_sse_per_image"] == pytest.approx(final["test_mse"] * 64)
    assert baselines["pca"]["components"] == 4  # the code size
    assert final["test_mse"] < baselines["pca"]["test_mse"] < baselines["mean"]["test_mse"]
    last = r.stdout.strip().splitlines()[-2]
    assert final["best_epoch"] == min(metrics["epochs"], key=lambda m: m["validation_sse_per_image"])["epoch"]
    assert last.startswith(f"final (epoch {final['best_epoch']} of 200, the lowest validation error): "
                           f"test mse {final['test_mse']:.5f}; PCA-4 {baselines['pca']['test_mse']:.5f}; "
                           f"mean image {baselines['mean']['test_mse']:.5f}"), last
    assert decode_png(run / "recon.png").shape[-1] in (3, 4) and decode_png(run / "codes.png").ndim == 3
    assert (run / "export" / "saved_model.pb").exists() and 0.5 < final["knn5_accuracy"]["codes"] <= 1
    assert decode_png(run / "curves.png").ndim == 3
    assert tf.train.latest_checkpoint(str(run)).endswith(f"ckpt-{200 * ((1437 - 143) // 32)}")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # what its server reads with

    scalars = EventAccumulator(str(run)).Reload()
    assert {"loss/train", "loss/validation", "loss/test", "validation/sse_per_image", "test/sse_per_image",
            "learning_rate"} == set(scalars.Tags()["scalars"])
    assert [e.step for e in scalars.Scalars("loss/train")] == [k * 40 for k in range(1, 201)]
    assert {m["decoder"] for m in metrics["epochs"]} == {"tied"}
    assert [m["learning_rate"] for m in metrics["epochs"]] == pytest.approx([1e-3] * 200)  # constant, logged
    assert (run / "best_checkpoint").read_text().startswith(f'model_checkpoint_path: "best-{final["best_epoch"] * 40}"')


def test_the_question_preset_is_one_flag_away(tmp_path, capsys):
    code, _, err = call(capsys, "--dataset", "digits", "--preset", "question", "--mode", "tied", "--epochs", "1",
                        "--out", tmp_path / "run")
    assert code == 0, err
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    question = dict(tae_config.PRESETS["question"][0], mode="tied")  # a given flag overrides the preset
    assert {k: saved["model"][k] for k in question} == question and saved["run"]["batch_size"] == 100


def test_the_hinton_preset_is_the_best_recipe_and_wants_28x28_images(tmp_path, capsys):
    images = np.random.RandomState(0).randint(0, 256, (350, 28, 28)).astype(np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=images[:300], x_test=images[300:])
    code, _, err = call(capsys, "--preset", "hinton", "--dataset", "mnist", "--data-dir", tmp_path / "mnist.npz",
                        "--epochs", "1", "--validation", "100", "--out", tmp_path / "run")
    assert code == 0, err
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["dims"] == [784, 1000, 500, 250, 30] and saved["model"]["shift"] == 1
    assert saved["model"]["mode"] == "untied" and saved["run"]["batch_size"] == 100 and saved["run"]["epochs"] == 1
    for data, line in ((["--dataset", "digits"], "the data has 64 values per example: give it --dataset mnist"),
                       (["--dataset", "movielens"], "--preset hinton does not apply to ratings (theirs: question")):
        code, out, err = call(capsys, "--preset", "hinton", *data, "--out", tmp_path / "refused")
        assert code == 2 and line in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "refused").exists()


def test_epochs_zero_saves_and_evaluates_the_initial_model(tmp_path, capsys):
    code, out, _ = call(capsys, "--dataset", "digits", "--epochs", "0", "--out", tmp_path / "run")
    assert code == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs"] == [] and metrics["final"]["test_sse_per_image"] > 0
    assert tf.train.latest_checkpoint(str(tmp_path / "run")).endswith("ckpt-0")


def test_resume_continues_and_refuses_other_flags(tmp_path, capsys):
    out = tmp_path / "run"
    assert call(capsys, "--dataset", "digits", "--mode", "tied-untied", "--epochs", "2", "--batch-size", "100",
                "--out", out)[0] == 0
    code, stdout, _ = call(capsys, "--out", out, "--resume", "--epochs", "4")
    assert code == 0 and "resuming" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["stage"] for m in metrics["epochs"]] == ["tied", "untied", "untied", "untied"]  # the untie stays put
    assert sorted(p.name for p in out.glob("ckpt-*.index")) == [f"ckpt-{k * 12}.index" for k in (2, 3, 4)]  # pruned
    code, _, err = call(capsys, "--out", out, "--resume", "--mode", "tied", "--loss", "xent")
    assert code == 2 and "--mode tied (run has tied-untied)" in err and "--loss xent (run has mse)" in err
    code, stdout, _ = call(capsys, "--out", out, "--resume")
    assert code == 0 and "is complete (4 epochs)" in stdout and "--epochs N, with N above 4" in stdout


def test_validation_picks_the_best_epoch_and_stops_early(tmp_path, capsys):
    """The first 143 digits are held out; the best epoch is the lowest validation error, its checkpoint
    is kept apart from the rolling three, the final figures are its own, and --patience stops the run."""
    out = tmp_path / "run"
    code, stdout, _ = call(capsys, "--dataset", "digits", "--dims", "64,512,16", "--mode", "untied", "--lr", "0.003",
                           "--batch-size", "100", "--epochs", "40", "--patience", "2", "--out", out)
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    epochs, final = metrics["epochs"], metrics["final"]
    best = min(epochs, key=lambda m: m["validation_sse_per_image"])
    assert final["best_epoch"] == best["epoch"] and final["validation_sse_per_image"] == best["validation_sse_per_image"]
    # it stopped 2 epochs after the best, before the 40 it was given (512 untied units overfit 1,294 images)
    assert final["stopped_early"] == len(epochs) == best["epoch"] + 2 < 40 and "stopping early" in stdout
    assert final["test_sse_per_image"] == pytest.approx(best["test_sse_per_image"], rel=1e-6)  # the best's weights
    assert final["test_sse_per_image"] != pytest.approx(epochs[-1]["test_sse_per_image"], rel=1e-6)
    assert (out / "best_checkpoint").read_text().startswith(f'model_checkpoint_path: "best-{best["global_step"]}"')
    assert [p.name for p in out.glob("best-*.index")] == [f"best-{best['global_step']}.index"]  # one kept
    assert len(list(out.glob("ckpt-*.index"))) == 3
    code, stdout, _ = call(capsys, "--out", out, "--resume")
    assert code == 0 and f"stopped early after epoch {len(epochs)} of 40" in stdout
    code, _, err = call(capsys, "--dataset", "digits", "--validation", "0", "--patience", "2", "--out", tmp_path / "x")
    assert code == 2 and "--patience does nothing here" in err and not (tmp_path / "x").exists()


def test_a_best_checkpoint_lost_to_a_kill_is_saved_again_on_resume(tmp_path, capsys, monkeypatch):
    """A kill between the rolling and the best checkpoint of an epoch leaves the best unsaved; the
    resume saves it from the restored step before training on."""
    import tae_runner

    out = tmp_path / "run"
    assert call(capsys, "--dataset", "digits", "--batch-size", "100", "--epochs", "2", "--out", out)[0] == 0
    final = json.loads((out / "metrics.json").read_text())["final"]
    assert final["best_epoch"] == 2
    saved = {p.name: p.read_bytes() for p in out.glob("best*")}
    for name in saved:
        (out / name).unlink()  # as if killed after ckpt-24 was written and before best-24

    class StopAtOnce:  # Ctrl-C at the first look of the resumed run
        signum = 2

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    monkeypatch.setattr(tae_runner, "StopRequest", StopAtOnce)
    code, stdout, err = call(capsys, "--out", out, "--resume", "--epochs", "4")  # stops after epoch 3
    assert code == 130 and "interrupted after epoch 3" in err
    assert "saved best-24: the best epoch's checkpoint (epoch 2) was missing" in stdout
    if json.loads((out / "metrics.json").read_text())["epochs"][2]["validation_sse_per_image"] >= \
            final["validation_sse_per_image"]:  # epoch 3 is no better: best-24 stands, as it was first written
        assert {p.name: p.read_bytes() for p in out.glob("best-24.*")} == {k: v for k, v in saved.items()
                                                                         if k != "best_checkpoint"}
    else:
        assert [p.name for p in out.glob("best-*.index")] == ["best-36.index"]


def test_the_validation_split_is_the_first_examples():
    ds = tae_data.load_digits()
    whole = ds.train.copy()
    tae_data.split_validation(ds, 143)
    assert np.array_equal(ds.validation, whole[:143]) and np.array_equal(ds.train, whole[143:])
    assert ds.validation.base is None  # a copy: dropping train later frees the rest


@pytest.mark.slow
def test_baselines_match_scikit_learn(tmp_path):
    """The mean image and PCA-k, fitted on the training part, scored on the test part; PCA against
    scikit-learn's (an independent SVD), the float64 covariance summed in small chunks."""
    from sklearn.decomposition import PCA

    ds = tae_data.load("digits")
    got = tae_data.baselines(ds.train, ds.test, 4, chunk=100)
    pca = PCA(4).fit(ds.train)
    want = np.mean(np.sum((ds.test - pca.inverse_transform(pca.transform(ds.test))) ** 2, axis=1))
    assert got["pca"]["test_sse_per_image"] == pytest.approx(want, rel=1e-5) and got["pca"]["components"] == 4
    assert got["pca"]["test_mse"] == pytest.approx(want / 64, rel=1e-5)
    mean = np.mean((ds.test - ds.train.mean(axis=0)) ** 2)
    assert got["mean"]["test_mse"] == pytest.approx(mean, rel=1e-5)
    wide = np.zeros((3, tae_data.PCA_MAX_DIM + 1), np.float32)
    assert tae_data.baselines(wide, wide, 2)["pca"] is None


def test_user_npy(tmp_path, capsys):
    rng = np.random.RandomState(0)
    images = (rng.rand(300, 6, 6) * 255).astype(np.uint8)
    np.save(tmp_path / "mine.npy", images)
    code, out, err = call(capsys, "--dataset", tmp_path / "mine.npy", "--epochs", "1", "--batch-size", "30",
                          "--out", tmp_path / "run")
    assert code == 0, err
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["model"]["dims"] == [36, 9, 4, 1]  # the question's rule on 6x6
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())["final"]
    test = images[270:].reshape(30, 36) / 255.0  # the last tenth is the test set
    mean = images[27:270].reshape(-1, 36).mean(axis=0) / 255.0  # the training rows after the validation tenth
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["baselines"]["mean"]["test_sse_per_image"] \
        == pytest.approx(np.mean(np.sum((test - mean) ** 2, axis=1)), rel=1e-5)
    assert np.isfinite(final["test_sse_per_image"]) and final["test_sse_per_image"] == pytest.approx(final["test_mse"] * 36)
    assert decode_png(tmp_path / "run" / "recon.png").shape[:2] == (220, 1000)  # 10 images over their reconstructions


def test_idx_and_npz_loaders_on_real_mnist(mnist_dir, tmp_path):
    ds = tae_data.load("mnist", str(mnist_dir))
    assert ds.train.shape == (60000, 784) and ds.test.shape == (10000, 784) and ds.image_shape == (28, 28)
    assert ds.train.dtype == np.float32 and ds.train.min() == 0 and ds.train.max() == 1
    raw = tae_data.read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(raw.reshape(10000, -1) / np.float32(255), ds.test)
    # the normalisation constants everyone quotes for MNIST's training images: mean 0.1307, std 0.3081
    assert abs(ds.train.mean() - 0.1307) < 1e-4 and abs(ds.train.std() - 0.3081) < 1e-4
    labels = tae_data.read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and labels[0] == 7
    np.savez(tmp_path / "mnist.npz", x_train=raw[:100], x_test=raw[100:150])
    npz = tae_data.load("mnist", str(tmp_path / "mnist.npz"))
    np.testing.assert_array_equal(npz.train, ds.test[:100])
    plain = tmp_path / "plain"
    plain.mkdir()
    import gzip
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        (plain / name).write_bytes(gzip.decompress((mnist_dir / (name + ".gz")).read_bytes()))
    np.testing.assert_array_equal(tae_data.load("mnist", str(plain)).test, ds.test)


@pytest.mark.slow
def test_train_on_real_mnist_uses_the_question_dims(mnist_dir, tmp_path, capsys):
    # the whole program on real MNIST, kept short: 59,000 held out for validation leave 1,000 to fit
    # the codes' 5-NN on, and --epochs 0 evaluates the initial model (training is tested on digits)
    code, out, err = call(capsys, "--data-dir", mnist_dir, "--epochs", "0", "--batch-size", "600", "--validation", "59000",
                          "--out", tmp_path / "run")
    assert code == 0, err
    assert f"MNIST from {mnist_dir}" in out
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["model"]["dims"] == [784, 196, 81, 49]


def test_fashion_mnist_folder(tmp_path):
    folder = ROOT.parent / "shared" / "data" / "fashion-mnist"
    if not (folder / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real Fashion-MNIST not found at {folder}")
    ds = tae_data.load("fashion_mnist", str(folder))
    assert ds.train.shape == (60000, 784) and ds.test.shape == (10000, 784)
    assert 0.2 < ds.train.mean() < 0.4  # clothing covers more of the frame than digits do


def test_download_failure_is_one_clear_line(tmp_path, capsys, monkeypatch):
    """--dataset mnist with no local copy downloads; offline, that is a clear error (the download
    function is replaced so that the suite never touches the network)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tae_data, "KERAS_CACHE", tmp_path / "no-cache")
    monkeypatch.setitem(tae_data.LOCAL, "mnist", [tmp_path / "data" / "mnist"])

    def offline():
        raise OSError("network unreachable")

    monkeypatch.setattr(tf.keras.datasets.mnist, "load_data", offline)
    code, _, err = call(capsys, "--dataset", "mnist", "--epochs", "1")
    assert code == 2 and "could not download mnist" in err and "--data-dir" in err
    assert len(err.strip().splitlines()) == 1
