"""train.py on ratings: a run end to end on generated ratings (predictions.csv against the model's
own reconstruction, no leakage through the runner, --recommend), the refusals, and a short
MovieLens 100K run when the real files are present."""
import csv
import json

import numpy as np
import pytest

import tae_cli
import tae_config
import tae_export
import tae_ratings
import tae_ratings_matrix
from conftest import SHARED_DATA, call

ML100K = SHARED_DATA / "ml-100k"
SMALL = ["--batch-size", "8", "--dims", "{width},16", "--code-activation", "sigmoid"]



def generated(path, users=50, items=40, seed=0):
    """Rank-2 ratings on 1..5 for a third of the (user, item) pairs, as a CSV file with a header;
    user ids 101.. and item ids 7, 14, ... (ids are the file's, not positions)."""
    rng = np.random.RandomState(seed)
    u, v = rng.randn(users, 2), rng.randn(items, 2)
    lines = ["user,item,rating"]
    for a in range(users):
        for b in range(items):
            if rng.rand() < 0.35:
                lines.append(f"{101 + a},{7 * (b + 1)},{int(np.clip(np.round(3 + u[a] @ v[b]), 1, 5))}")
    path.write_text("\n".join(lines) + "\n")
    return path


def small(width, epochs=3):
    return [a.format(width=width) for a in SMALL] + ["--epochs", str(epochs)]


def columns(ratings_file, orientation, test_file=None):
    """The training matrix's width that train.py will build: the run's own split, recomputed."""
    data = tae_ratings.load_user_ratings(ratings_file, test_file)
    tae_ratings.split_validation(data, len(data.train) // 10)
    return tae_ratings_matrix.arrange(data, orientation).width


def numpy_reconstruction(path, out):
    """The run's split rebuilt and its training rows reconstructed in NumPy from the variables of
    the checkpoint the run's figures describe (one sigmoid code layer, untied, linear output)."""
    config = json.load(open(out / "config.json"))
    data = tae_ratings.split_validation(tae_ratings.load_user_ratings(path), config["run"]["validation"])
    ds = tae_ratings_matrix.arrange(data, config["run"]["orientation"])
    trained = tae_export.restore(str(out))
    with trained.sess:
        values = trained.sess.run(trained.model.variables)
    W0, b0 = values["encoder/layer_0/kernel"], values["encoder/layer_0/bias"]
    V0, c0 = values["decoder/layer_0/kernel"], values["decoder/layer_0/bias"]
    dense = ds.matrix.dense(np.arange(ds.rows))
    return ds, (1 / (1 + np.exp(-(dense @ W0 + b0)))) @ V0 + c0


@pytest.fixture(scope="module")
def ratings_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ratings")
    path = generated(folder / "ratings.csv")
    out = folder / "run"
    width = columns(path, "user")
    # 40 epochs: enough for the users' rows to differ (an untrained model predicts nearly alike for all)
    assert tae_cli.main(["--dataset", str(path), "--orientation", "user", "--mode", "untied", *small(width, 40),
                         "--out", str(out)]) == 0
    return path, out


def test_a_ratings_run_writes_predictions_that_are_the_models_own(ratings_run):
    """predictions.csv holds every test rating once; its RMSE is metrics.json's; each warm
    prediction is the restored model's reconstruction of the user's training row (NumPy, from the
    exported SavedModel's variables) at the item, clipped; cold ones are the bias model's."""
    path, out = ratings_run
    metrics = json.load(open(out / "metrics.json"))
    config = json.load(open(out / "config.json"))
    final = metrics["final"]
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    data = tae_ratings.load_user_ratings(path)
    assert len(rows) == len(data.test) == final["test_ratings"] and config["rating_scale"] == [1.0, 5.0]
    got = np.array([float(r["prediction"]) for r in rows])
    truth = np.array([float(r["rating"]) for r in rows])
    assert np.sqrt(np.mean((got - truth) ** 2)) == pytest.approx(final["test_rmse"], abs=1e-3)
    assert final["cold_test_ratings"] == sum(r["cold"] == "1" for r in rows)
    assert {"validation_rmse", "test_rmse", "validation_mae"} <= set(metrics["epochs"][0])
    assert final["best_epoch"] == min(metrics["epochs"], key=lambda r: r["validation_rmse"])["epoch"]
    assert set(metrics["baselines"]) == {"global mean", "user and item biases"}
    rates = [m["learning_rate"] for m in metrics["epochs"]]  # the cosine schedule, logged each epoch
    assert rates == sorted(rates, reverse=True) and rates[0] < 3e-3 and rates[-1] < 1e-6
    assert config["rating_scale_from"] == "implied"
    ds, recon = numpy_reconstruction(path, out)  # the model by hand, from the best checkpoint
    r, c, usable = tae_ratings_matrix.positions(ds.idx, data.test, "user")
    np.testing.assert_allclose(got[usable], np.clip(recon[r[usable], c[usable]], 1, 5), atol=2e-4)


def test_the_runner_never_feeds_test_ratings(tmp_path, capsys):
    """The same run with every test rating's value changed: every prediction is the same (only the
    errors move), so nothing of the test ratings reached the model or the choice of epoch."""
    path = generated(tmp_path / "all.csv", seed=1)
    lines = path.read_text().splitlines()[1:]
    train, test = lines[: len(lines) * 9 // 10], lines[len(lines) * 9 // 10:]
    (tmp_path / "train.csv").write_text("\n".join(train) + "\n")
    (tmp_path / "test.csv").write_text("\n".join(test) + "\n")
    flipped = [",".join(x.split(",")[:2] + [str(6 - int(x.split(",")[2]))]) for x in test]
    (tmp_path / "flipped.csv").write_text("\n".join(flipped) + "\n")
    width = columns(tmp_path / "train.csv", "item", tmp_path / "test.csv")
    predictions = []
    for name in ("test", "flipped"):
        code, _, err = call(capsys, "--dataset", tmp_path / "train.csv", "--test-file", tmp_path / f"{name}.csv",
                            *small(width), "--out", tmp_path / name)
        assert code == 0, err
        predictions.append([r["prediction"] for r in csv.DictReader(open(tmp_path / name / "predictions.csv"))])
    assert predictions[0] == predictions[1]


def test_recommend_lists_unrated_items_best_first(ratings_run, capsys):
    path, out = ratings_run
    code, text, err = call(capsys, "--out", out, "--recommend", 101)
    assert code == 0, err
    lines = text.splitlines()[1:]
    assert len(lines) == 10
    items = [int(line.split("item ")[1]) for line in lines]
    values = [float(line.split()[1]) for line in lines]
    data = tae_ratings.load_user_ratings(path)
    rated = set(data.train.items[data.train.users == 101]) | set(data.test.items[data.test.users == 101])
    assert not rated & set(items) and values == sorted(values, reverse=True)
    ds, recon = numpy_reconstruction(path, out)  # the user's row, by hand: each item's own value, and
    row = dict(zip(ds.idx.item_ids.tolist(), np.clip(recon[np.searchsorted(ds.idx.user_ids, 101)], 1, 5)))
    np.testing.assert_allclose(values, [row[i] for i in items], atol=0.006)  # (printed to 2 decimals)
    top = sorted((v for i, v in row.items() if i not in rated), reverse=True)[:10]  # the ten best unrated
    np.testing.assert_allclose(values, top, atol=0.006)
    code, printed, err = call(capsys, "--out", out, "--recommend", 5)
    assert code == 2 and "user 5 has no training ratings" in err and len(err.strip().splitlines()) == 1
    assert printed == ""  # no table header before the refusal


@pytest.mark.parametrize("case", ["missing_column", "not_a_number", "no_rows", "no_overlap", "duplicate", "duplicate_spaced", "rating_zero",
                                  "out_of_stated_scale", "test_out_of_scale", "test_pair_trained", "scale_on_movielens",
                                  "split_on_file",
                                  "orientation_on_images", "xent", "dims", "encode_ratings", "recommend_images"])
def test_bad_ratings_input_is_one_line_and_writes_nothing(tmp_path, capsys, case, ratings_run):
    path, out = ratings_run
    bad = tmp_path / "bad.csv"
    args = {
        "missing_column": (["--dataset", bad], "1,2\n", "line 1 has 2 columns"),
        "not_a_number": (["--dataset", bad], "1,2,3\n1,3,x\n", "'x' is not a number"),
        "no_rows": (["--dataset", bad], "user,item,rating\n", "has no ratings"),
        "no_overlap": (["--dataset", path, "--test-file", bad], "9999,9999,3\n", "share no user and no item"),
        "duplicate": (["--dataset", bad], "1,2,4\n1,3,5\n2,2,1\n1,2,4\n", "lines 1 and 4 both rate item 2 by user 1"),
        "rating_zero": (["--dataset", bad, "--rating-scale", "0,5"], "1,2,4\n1,3,0\n2,2,1\n", "line 2: a rating of 0"),
        "duplicate_spaced": (["--dataset", bad], "u i r\n\n1 2 4\n\n1 2 3\n", "lines 3 and 5 both rate item 2 by user 1"),
        "out_of_stated_scale": (["--dataset", bad, "--rating-scale", "1,5"], "1,2,4\n1,3,7\n",
                                "line 2: the rating 7 is outside the rating scale 1 to 5"),
        "test_out_of_scale": (["--dataset", path, "--test-file", bad], "101,7,9\n",
                              "line 1: the rating 9 is outside the rating scale 1 to 5"),
        "test_pair_trained": (["--dataset", path, "--test-file", bad], None, "is a training rating too"),
        "scale_on_movielens": (["--dataset", "movielens", "--data-dir", ML100K, "--rating-scale", "1,5"], None,
                               "--rating-scale does nothing"),  # MovieLens' scale is its own
        "split_on_file": (["--dataset", path, "--split", "u2"], None, "--split does nothing here"),
        "orientation_on_images": (["--dataset", "digits", "--orientation", "user"], None, "--orientation does nothing"),
        "xent": (["--dataset", path, "--loss", "xent"], None, "--loss xent needs targets in [0, 1]"),
        "dims": (["--dataset", path, "--dims", "30,10"], None, "--dims must start with"),
        "encode_ratings": (["--out", out, "--encode", bad], None, "is a ratings run: use --recommend"),
        "recommend_images": (None, None, "--recommend takes a ratings run; "),
    }[case]
    flags, text, words = args
    if case == "scale_on_movielens" and not ML100K.exists():
        pytest.skip(f"MovieLens 100K not found at {ML100K} (only developers' machines and CI have ../shared)")
    if case == "test_pair_trained":  # the file's second rating, and one that is only a test rating
        text = path.read_text().splitlines()[2] + "\n9999,9999,3\n"
    if text is not None:
        bad.write_text(text)
    if flags is None:  # an image run's folder, made without training: config.json is what is read
        images = tmp_path / "images"
        images.mkdir()
        (images / "config.json").write_text(json.dumps({"model": {}, "run": {"dataset": "auto"},
                                                          "data_source": "scikit-learn load_digits (bundled)"}))
        flags = ["--out", images, "--recommend", 1]
    target = tmp_path / "run"
    code, _, err = call(capsys, *flags, *([] if "--out" in flags else ["--out", target]))
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not target.exists()
    if case == "recommend_images":  # the run's data, not "trained on auto"
        assert "was trained on images (scikit-learn load_digits (bundled))" in err, err


def test_movielens_u1_short_run_and_titles(tmp_path, capsys):
    if not (ML100K / "u1.base").exists():
        pytest.skip(f"MovieLens 100K not found at {ML100K} (only developers' machines and CI have ../shared)")
    out = tmp_path / "ml"
    code, text, err = call(capsys, "--dataset", "movielens", "--data-dir", ML100K, "--epochs", "4", "--batch-size",
                           "128", "--weight-decay", "1e-3", "--out", out)
    assert code == 0, err
    final = json.load(open(out / "metrics.json"))["final"]
    # the bias baseline of the same split (u1, 10% of u1.base held out): better than the global mean
    baselines = json.load(open(out / "metrics.json"))["baselines"]
    assert baselines["user and item biases"]["rmse"] < baselines["global mean"]["rmse"]
    assert final["test_ratings"] == 20000 and 0 < final["cold_test_ratings"] < 100
    assert final["test_rmse"] < baselines["global mean"]["rmse"] - 0.1  # 4 epochs learn more than the mean (0.99, 1.15)
    code, text, err = call(capsys, "--out", out, "--recommend", 1)
    assert code == 0 and len(text.splitlines()) == 11 and "(19" in text, (text, err)


def test_compare_runs_on_ratings_each_variant_on_the_path_its_loss_allows(tmp_path, capsys):
    """--compare on a ratings file: the question's variant (mse) on the dense path with Adam, the
    modes on the ratings default (masked_mse, the sparse path, lazy Adam), one table. (0 epochs: each
    variant's graph built, its initial model scored and exported; the training loop is other tests'.)"""
    path = generated(tmp_path / "ratings.csv", users=30, items=20)
    out = tmp_path / "cmp"
    code, text, err = call(capsys, "--dataset", path, "--compare", *small(columns(path, "item"), 0), "--out", out)
    assert code == 0, err
    results = json.load(open(out / "compare.json"))
    assert set(results) == {"snippet", "untied", "sync", "tied", "tied-untied", "baselines"}
    assert all(np.isfinite(results[v]["test_rmse"]) for v in tae_config.COMPARE)
    snippet, tied = (json.load(open(out / v / "config.json"))["model"] for v in ("snippet", "tied"))
    assert (snippet["loss"], snippet["sparse_input"], snippet["optimizer"]) == ("mse", False, "adam")
    assert (tied["loss"], tied["sparse_input"], tied["optimizer"]) == ("masked_mse", True, "lazyadam")
    assert "snippet" in text and "user and item biases" in text
