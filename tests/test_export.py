"""Using a trained run: --encode/--reconstruct against a NumPy forward pass of the checkpoint's own
numbers, in every decoder arrangement; bad input refused; the SavedModel loaded in a fresh process
the TF2 way and the TF1 way; the codes' nearest-neighbour accuracy against scikit-learn."""
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import tae_cli
import tae_data
import tae_export
from tae_files import RunFolder
from conftest import call

TINY = ["--dataset", "digits", "--dims", "64,16,4", "--batch-size", "100", "--epochs", "2"]



def numpy_model(checkpoint, untied):
    """encode and reconstruct in NumPy, float64, from the checkpoint's values (ELU hidden, linear
    code and output: the defaults)."""
    reader = tf.train.load_checkpoint(checkpoint)
    v = lambda name: reader.get_tensor(name).astype(np.float64)  # noqa: E731
    elu = lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0)))  # noqa: E731

    def encode(x):
        return elu(x @ v("encoder/layer_0/kernel") + v("encoder/layer_0/bias")) @ v("encoder/layer_1/kernel") \
            + v("encoder/layer_1/bias")

    def reconstruct(x):
        w0 = v("decoder/layer_0/kernel") if untied else v("encoder/layer_1/kernel").T
        w1 = v("decoder/layer_1/kernel") if untied else v("encoder/layer_0/kernel").T
        return elu(encode(x) @ w0 + v("decoder/layer_0/bias")) @ w1 + v("decoder/layer_1/bias")

    return encode, reconstruct


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    path = tmp_path_factory.mktemp("input") / "some.npy"
    np.save(path, (tae_data.load_digits().test[:50] * 255).round().astype(np.uint8).reshape(50, 8, 8))
    return path  # uint8 8x8 images, as a user would have them: divided by 255 like the run's own data


@pytest.mark.parametrize("flags, untied", [
    (["--mode", "sync"], True),
    (["--mode", "tied-untied", "--tied-epochs", "2"], False),  # never untied: the tied decoder
    (["--mode", "tied-untied", "--tied-epochs", "1", "--validation", "0"], True),  # after the untie
])
def test_encode_and_reconstruct_match_the_checkpoint(tmp_path, capsys, images, flags, untied):
    out = tmp_path / "run"
    assert call(capsys, *TINY, *flags, "--out", out)[0] == 0
    metrics = json.loads((out / "metrics.json").read_text())
    checkpoint, record = RunFolder(out).chosen(metrics)
    assert record["decoder"] == ("untied" if untied else "tied")  # recorded, not inferred
    code, stdout, _ = call(capsys, "--out", out, "--encode", images)
    assert code == 0 and f"by {checkpoint.rsplit('/', 1)[1]}" in stdout
    code, _, _ = call(capsys, "--out", out, "--reconstruct", images, "--to", tmp_path / "r.npy")
    assert code == 0
    x = np.load(images).reshape(50, 64) / 255.0
    encode, reconstruct = numpy_model(checkpoint, untied)
    np.testing.assert_allclose(np.load(str(images).replace(".npy", ".codes.npy")), encode(x), atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "r.npy"), reconstruct(x), atol=1e-5)
    assert (out / "export" / "saved_model.pb").exists()
    (tmp_path / "r.npy").unlink()
    (images.parent / "some.codes.npy").unlink()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "done"
    assert tae_cli.main([*TINY, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("case, words", [
    ("width", ["has 10 values per example", "takes 64"]),
    ("nan", ["NaN or infinite"]),
    ("range", ["outside the run's training data range [0, 1]"]),
    ("exists", ["exists; move it away"]),
    ("both_to", ["--to names one output file"]),
    ("flag", ["--epochs does nothing with --encode"]),
    ("no_run", ["holds no run"]),
])
def test_bad_input_to_encode_is_one_line_and_writes_nothing(tmp_path, capsys, finished, case, words):
    data = np.random.RandomState(0).rand(5, 64).astype(np.float32)
    args = ["--out", finished, "--encode", tmp_path / "in.npy"]
    if case == "width":
        data = data[:, :10]
    elif case == "nan":
        data[2, 3] = np.nan
    elif case == "range":
        data[0, 0] = 3.0
    elif case == "exists":
        (tmp_path / "in.codes.npy").write_bytes(b"keep")
    elif case == "both_to":
        args += ["--reconstruct", tmp_path / "in.npy", "--to", tmp_path / "x.npy"]
    elif case == "flag":
        args += ["--epochs", "3"]
    elif case == "no_run":
        args[1] = tmp_path
    np.save(tmp_path / "in.npy", data)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = call(capsys, *args)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if case == "exists":
        assert (tmp_path / "in.codes.npy").read_bytes() == b"keep"


LOAD_BOTH_WAYS = """
import sys, numpy as np, tensorflow as tf
folder, x = sys.argv[1], np.load(sys.argv[2])
loaded = tf.saved_model.load(folder)  # TF2
tf2 = {k: loaded.signatures[k](x=tf.constant(x)) for k in ("encode", "reconstruct", "serving_default")}
tf1 = tf.compat.v1
with tf1.Session(graph=tf.Graph()) as sess:  # TF1
    meta = tf1.saved_model.loader.load(sess, ["serve"], folder)
    run = lambda sig, out: sess.run(meta.signature_def[sig].outputs[out].name, {meta.signature_def[sig].inputs["x"].name: x})
    v1 = {"code": run("encode", "code"), "reconstruction": run("reconstruct", "reconstruction")}
np.savez(sys.argv[3], tf2_code=tf2["encode"]["code"].numpy(), tf2_recon=tf2["reconstruct"]["reconstruction"].numpy(),
         tf2_default=tf2["serving_default"]["reconstruction"].numpy(), tf1_code=v1["code"], tf1_recon=v1["reconstruction"])
"""


def test_the_saved_model_loads_both_ways_in_a_fresh_process(tmp_path, finished):
    x = tae_data.load_digits().test[:20]
    np.save(tmp_path / "x.npy", x)
    r = subprocess.run([sys.executable, "-c", LOAD_BOTH_WAYS, str(finished / "export"), str(tmp_path / "x.npy"),
                        str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    got = np.load(tmp_path / "out.npz")
    checkpoint, _ = RunFolder(finished).chosen()
    encode, reconstruct = numpy_model(checkpoint, untied=False)
    for key in ("tf2_code", "tf1_code"):
        np.testing.assert_allclose(got[key], encode(x), atol=1e-6, err_msg=key)
    for key in ("tf2_recon", "tf2_default", "tf1_recon"):
        np.testing.assert_allclose(got[key], reconstruct(x), atol=1e-6, err_msg=key)


def test_the_codes_nearest_neighbour_accuracy_is_scikit_learns(finished):
    """metrics.json's 5-NN accuracies, against scikit-learn's PCA and KNeighborsClassifier on codes
    written by --encode (the run's training split: the digits after the first 143)."""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KNeighborsClassifier

    final = json.loads((finished / "metrics.json").read_text())["final"]
    ds = tae_data.split_validation(tae_data.load_digits(), 143)
    trained = tae_export.restore(str(finished))
    with trained.sess:
        train_codes, test_codes = (tae_export.run_model(trained, d, "encode") for d in (ds.train, ds.test))
    knn = lambda a, b: KNeighborsClassifier(5).fit(a, ds.train_labels).score(b, ds.test_labels)  # noqa: E731
    pca = PCA(4).fit(ds.train)
    assert final["knn5_accuracy"]["codes"] == pytest.approx(knn(train_codes, test_codes), abs=1e-9)
    assert final["knn5_accuracy"]["pca"] == pytest.approx(knn(pca.transform(ds.train), pca.transform(ds.test)), abs=1e-9)
    assert tf.io.decode_png(tf.io.read_file(str(finished / "codes.png"))).shape[-1] in (3, 4)


def test_data_wider_than_pca_max_dim_fits_no_pca_in_the_codes_report_either(tmp_path, capsys, monkeypatch):
    """Above tae_data.PCA_MAX_DIM values per example (lowered here to 63 for the 64-value digits)
    neither the baselines nor the codes report fit PCA to the data: no D x D scatter is eigen-
    decomposed; the codes are still scored and drawn."""
    fit = tae_data.top_directions

    def guarded(scatter, k):
        if scatter.shape[0] > 63:
            pytest.fail(f"PCA fitted on {scatter.shape[0]} values per example, over PCA_MAX_DIM")
        return fit(scatter, k)

    monkeypatch.setattr(tae_data, "PCA_MAX_DIM", 63)
    monkeypatch.setattr(tae_data, "top_directions", guarded)
    out = tmp_path / "run"
    code, stdout, _ = call(capsys, *TINY, "--out", out)
    final = json.loads((out / "metrics.json").read_text())["final"]
    assert code == 0 and "5-NN accuracy on the codes" in stdout and "on PCA-" not in stdout
    assert final["knn5_accuracy"]["pca"] is None and 0 < final["knn5_accuracy"]["codes"] <= 1
    assert (out / "codes.png").exists()
