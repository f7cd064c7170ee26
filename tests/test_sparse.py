"""The sparse training path (tf1_sparse; AEConfig.sparse_input) against the dense one: the same loss
and gradients in every mode with masking noise and dropout; exact Adam on it trains to the dense
path's variables; lazy Adam against NumPy; the loop's key properties; train.py's choice of path,
its refusals, and a sparse run's predictions against the model by hand."""
import csv
import json

import numpy as np
import pytest
import tensorflow as tf

import tae_ratings
import tae_ratings_matrix
import tf1_input
import tf1_sparse
import tf1_tied_ae as tae
from conftest import call, loop_variables
from tf1_config import ConfigError, Schedule
from test_recommend import columns, generated, numpy_reconstruction, small

tf1 = tf.compat.v1
MODES = ("tied", "untied", "sync", "tied-untied")


def ratings(rows=9, width=13, seed=0):
    """A small ratings matrix in 1..5, a third rated, one row with a single rating: dense and CSR."""
    rng = np.random.RandomState(seed)
    dense = ((rng.rand(rows, width) < 0.35) * rng.randint(1, 6, (rows, width))).astype(np.float32)
    dense[2] = 0
    dense[2, 5] = 3
    at = np.argwhere(dense != 0)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(at[:, 0], minlength=rows))]).astype(np.int64)
    return dense, (indptr, at[:, 1].astype(np.int64), dense[dense != 0])


def config(mode, width=13, **kw):
    return tae.AEConfig(dims=(width, 7, 5, 3), mode=mode, loss="masked_mse", sparse_input=True, **kw)


def final_trained_head(ae):
    return ae.finetune if ae.config.mode == "tied-untied" else ae.train


@pytest.mark.parametrize("mode", MODES)
def test_loss_gradients_and_outputs_equal_the_dense_paths(mode):
    """On the same batch: the training loss and every gradient of the sparse pass equal the dense
    pass's (masking noise drawn per stored value, dropout on the hidden layers and the code, exact
    weight decay), and the clean outputs at the rated pairs equal the dense reconstruction there."""
    dense, _ = ratings()
    at = np.argwhere(dense != 0)
    cfg = config(mode, mask_noise=0.3, code_dropout=0.2, hidden_dropout=0.1, weight_decay=1e-2)
    ae = tae.build(cfg, finalize=False)
    head = final_trained_head(ae)
    with ae.graph.as_default():
        grads = [tf.gradients(t, list(head.var_list)) for t in (head.training.objective, head.sparse.training.objective)]
        grads = [[tf.convert_to_tensor(g) for g in gs] for gs in grads]
        with tf1.Session() as sess:
            sess.run(ae.init_op)
            sess.run(ae.global_step.assign(5))  # the noise's key: any step
            feed = {ae.x: dense, head.sparse.input: (at, dense[dense != 0], dense.shape), head.sparse.pairs: at}
            found = sess.run(dict(dense=head.training.loss, sparse=head.sparse.training.loss, grads=grads,
                                  recon=head.reconstruction, at_pairs=head.sparse.predictions,
                                  noisy=head.training.input), feed)
    assert 0.1 < np.mean(found["noisy"][dense != 0] == 0) < 0.5  # the masking noise did mask ratings
    np.testing.assert_allclose(found["sparse"], found["dense"], rtol=1e-6)
    for a, b in zip(*found["grads"]):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(found["at_pairs"], found["recon"][at[:, 0], at[:, 1]], rtol=1e-5, atol=1e-6)


def test_predictions_at_pairs_other_than_the_inputs():
    """The clean output at any (row, column) pair is the dense reconstruction's there, whether the
    pair is rated or not."""
    dense, _ = ratings()
    pairs = np.array([[0, 0], [0, 12], [2, 5], [2, 6], [8, 3], [8, 3]], np.int64)
    for mode in ("tied", "untied"):
        ae = tae.build(config(mode))
        with tf1.Session(graph=ae.graph) as sess:
            sess.run(ae.init_op)
            at = np.argwhere(dense != 0)
            got, recon = sess.run([ae.train.sparse.predictions, ae.train.reconstruction],
                                  {ae.x: dense, ae.train.sparse.input: (at, dense[dense != 0], dense.shape),
                                   ae.train.sparse.pairs: pairs})
        np.testing.assert_allclose(got, recon[pairs[:, 0], pairs[:, 1]], rtol=1e-5, atol=1e-6)


def trained(cfg, csr, rows, epochs=3, batch=3):
    """The variables after `epochs` epochs through the graph's pipeline and multi-step loop."""
    ae = tae.build(cfg, Schedule(epochs=epochs, batch_size=batch, tied_epochs=1 if cfg.mode == "tied-untied" else None),
                   rows, nnz=len(csr[2]))
    with tf1.Session(graph=ae.graph) as sess:
        sess.run(ae.init_op)
        tf1_input.load(sess, ae.input, csr)
        for stage in ae.stages:
            if stage.enter is not None:
                sess.run(stage.enter)
            for epoch in range(stage.epochs):
                order = np.random.RandomState(epoch).permutation(rows).astype(np.int32)
                sess.run(ae.input.start_epoch_op, {ae.input.order_placeholder: order,
                                                   ae.input.batch_size_placeholder: batch})
                sess.run(stage.steps, {ae.input.steps_placeholder: stage.steps_per_epoch})
        return sess.run(ae.variables)


def test_exact_adam_on_the_sparse_path_trains_to_the_dense_paths_variables():
    """Two epochs of tied-untied (a tied epoch, the untie, an untied epoch) through the multi-step
    loop from the same CSR set, with masking noise and weight decay: the sparse path with
    tf.train.AdamOptimizer ends where the dense path ends (floats)."""
    _, csr = ratings()
    kw = dict(mask_noise=0.2, weight_decay=1e-3, learning_rate=1e-2)
    sparse = trained(config("tied-untied", **kw), csr, 9, epochs=2)
    dense = trained(tae.AEConfig(dims=(13, 7, 5, 3), mode="tied-untied", loss="masked_mse", **kw), csr, 9, epochs=2)
    assert sparse.keys() == dense.keys()
    for name in dense:
        np.testing.assert_allclose(sparse[name], dense[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_the_sparse_loop_in_pieces_equals_one_piece():
    """6 + 3 steps of the loop give the variables of 9 single steps, bit for bit (what resume relies
    on), with the masking noise and dropout keyed by the step and lazy Adam."""
    _, csr = ratings()
    cfg = config("tied", mask_noise=0.2, code_dropout=0.2, optimizer="lazyadam", weight_decay=1e-3)
    build = lambda: tae.build(cfg, Schedule(epochs=1, batch_size=1), 9, nnz=len(csr[2]))  # noqa: E731
    found = [loop_variables(build, csr, np.arange(9)[::-1], 1, pieces) for pieces in ((6, 3), (1,) * 9)]
    for name in found[0]:
        assert np.array_equal(found[0][name], found[1][name]), name


def test_lazy_adam_moves_only_the_touched_rows_as_adam_would():
    """Two steps of LazyAdamOptimizer on IndexedSlices gradients against Adam's update written in
    NumPy for the named rows; the other rows and their moments do not move; a dense gradient gets
    exactly tf.train.AdamOptimizer's update."""
    rng = np.random.RandomState(0)
    start = rng.randn(6, 4).astype(np.float32)
    steps = [(np.array([1, 4]), rng.randn(2, 4).astype(np.float32)), (np.array([4, 5]), rng.randn(2, 4).astype(np.float32))]
    graph = tf.Graph()
    with graph.as_default():
        var = tf1.get_variable("w", initializer=start, use_resource=True)
        indices, values = tf1.placeholder(tf.int64, [None]), tf1.placeholder(tf.float32, [None, 4])
        opt = tf1_sparse.LazyAdamOptimizer(0.1)
        update = opt.apply_gradients([(tf.IndexedSlices(values, indices, tf.constant([6, 4], tf.int64)), var)])
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for i, g in steps:
                sess.run(update, {indices: i, values: g})
            got, m_got = sess.run([var, opt.get_slot(var, "m")])
    want, m, v = start.astype(np.float64), np.zeros((6, 4)), np.zeros((6, 4))
    for t, (i, g) in enumerate(steps, 1):
        m[i] = 0.9 * m[i] + 0.1 * g
        v[i] = 0.999 * v[i] + 0.001 * g.astype(np.float64) ** 2
        want[i] -= 0.1 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m[i] / (np.sqrt(v[i]) + 1e-8)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(m_got, m, rtol=1e-5)
    assert np.array_equal(got[[0, 2, 3]], start[[0, 2, 3]]) and not m_got[[0, 2, 3]].any()

    dense_grad = rng.randn(6, 4).astype(np.float32)
    found = []
    for make in (tf1_sparse.LazyAdamOptimizer, tf1.train.AdamOptimizer):
        with tf.Graph().as_default():
            var = tf1.get_variable("w", initializer=start, use_resource=True)
            update = make(0.1).apply_gradients([(tf.constant(dense_grad), var)])
            with tf1.Session() as sess:
                sess.run(tf1.global_variables_initializer())
                sess.run(update)
                found.append(sess.run(var))
    assert np.array_equal(*found)


def test_lazy_adam_sums_repeated_indices_and_distinct_matches_numpy():
    """Indices that repeat or are out of order are summed first (the base class's rule), strictly
    increasing ones go through as they are: both give the update of the summed gradient. And
    `distinct` finds np.unique's items and inverse, an empty batch included."""
    rng = np.random.RandomState(1)
    start = rng.randn(6, 3).astype(np.float32)
    g = rng.randn(3, 3).astype(np.float32)
    found = []
    for indices, values in ((np.array([5, 1, 5]), g), (np.array([1, 5]), np.stack([g[1], g[0] + g[2]]))):
        with tf.Graph().as_default():
            var = tf1.get_variable("w", initializer=start, use_resource=True)
            opt = tf1_sparse.LazyAdamOptimizer(0.1)
            update = opt.apply_gradients([(tf.IndexedSlices(tf.constant(values), tf.constant(indices, tf.int64),
                                                            tf.constant([6, 3], tf.int64)), var)])
            with tf1.Session() as sess:
                sess.run(tf1.global_variables_initializer())
                sess.run(update)
                found.append(sess.run([var, opt.get_slot(var, "v")]))
    np.testing.assert_allclose(found[0][0], found[1][0], rtol=1e-6)
    np.testing.assert_allclose(found[0][1], found[1][1], rtol=1e-6)
    assert not np.array_equal(found[0][0], start)

    with tf.Graph().as_default():
        columns = tf1.placeholder(tf.int64, [None])
        items, where = tf1_sparse.distinct(columns, 40)
        with tf1.Session() as sess:
            for c in (rng.randint(0, 40, 25), np.array([39, 0, 39]), np.zeros(0, np.int64)):
                got_items, got_where = sess.run([items, where], {columns: c})
                want_items, want_where = np.unique(c, return_inverse=True)
                assert np.array_equal(got_items, want_items) and np.array_equal(got_where, want_where.ravel())


@pytest.mark.parametrize("mode", ["tied", "untied"])
def test_a_batch_without_ratings_steps_and_moves_nothing_wide(mode):
    """A batch whose rows hold no rating: the step runs (oneDNN aborts the process on a product
    with an empty operand: `nonempty` keeps every product non-empty), its loss is 0, and lazy Adam
    moves no row of the wide first kernel."""
    cfg = config(mode, optimizer="lazyadam")
    ae = tae.build(cfg)
    head = final_trained_head(ae)
    empty = (np.zeros((0, 2), np.int64), np.zeros(0, np.float32), (3, 13))
    with tf1.Session(graph=ae.graph) as sess:
        sess.run(ae.init_op)
        kernel = ae.variables["encoder/layer_0/kernel"]
        before = sess.run(kernel)
        loss, _ = sess.run([head.sparse.training.loss, head.sparse.train_op], {head.sparse.input: empty})
        assert loss == 0 and np.array_equal(sess.run(kernel), before)
        assert sess.run(head.sparse.predictions, {head.sparse.input: empty, head.sparse.pairs: np.zeros((0, 2))}).size == 0


def test_the_library_refuses_what_the_sparse_path_cannot_do():
    with pytest.raises(ConfigError, match="masked_mse"):
        tae.AEConfig(loss="mse", sparse_input=True)
    for field in ("gaussian_noise", "dense_refeed"):
        with pytest.raises(ConfigError, match=field):
            tae.AEConfig(loss="masked_mse", sparse_input=True, **{field: 0.1 if field == "gaussian_noise" else True})
    with pytest.raises(ConfigError, match="lazyadam"):
        tae.AEConfig(loss="masked_mse", optimizer="lazyadam")
    with pytest.raises(ValueError, match="nnz"):
        tae.build(config("tied"), Schedule(epochs=1), 9)


@pytest.mark.slow
def test_train_py_chooses_the_path_and_refuses_in_one_line(tmp_path, capsys):
    """By default the sparse path with lazy Adam; exact Adam takes the dense path unless --sparse
    on; --sparse off is the dense path with Adam; what cannot be is one line, exit 2."""
    path = generated(tmp_path / "ratings.csv")
    width = columns(path, "user")
    base = ["--dataset", path, "--orientation", "user", *small(width, 1)]
    for k, (extra, sparse, optimizer) in enumerate((([], True, "lazyadam"), (["--optimizer", "adam"], False, "adam"),
                                                    (["--sparse", "off"], False, "adam"))):
        out = tmp_path / f"run{k}"
        code, _, err = call(capsys, *base, *extra, "--out", out)
        assert code == 0, err
        model = json.load(open(out / "config.json"))["model"]
        assert (model["sparse_input"], model["optimizer"]) == (sparse, optimizer)
    for extra, words in ((["--sparse", "on", "--gaussian-noise", "0.1"], "--sparse cannot go with --gaussian-noise"),
                         (["--sparse", "on", "--loss", "mse"], "--sparse needs --loss masked_mse"),
                         (["--sparse", "off", "--optimizer", "lazyadam"], "--optimizer lazyadam updates only")):
        code, _, err = call(capsys, *base, *extra, "--out", tmp_path / "refused")
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "refused").exists()
    code, _, err = call(capsys, "--dataset", "digits", "--sparse", "on", "--epochs", "1", "--out", tmp_path / "img")
    assert code == 2 and "--sparse" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_sparse_lazy_run_predicts_what_the_model_computes(tmp_path, capsys):
    """A run on the sparse path with lazy Adam: each warm prediction in predictions.csv (made at the
    test pairs only) is the restored model's whole-row reconstruction at the item, in NumPy; and
    changing every test rating moves no prediction."""
    path = generated(tmp_path / "ratings.csv")
    width = columns(path, "user")
    out = tmp_path / "run"
    args = ["--dataset", path, "--orientation", "user", "--mode", "untied", "--sparse", "on", "--optimizer",
            "lazyadam", "--weight-decay", "1e-3", *small(width, 8)]
    code, _, err = call(capsys, *args, "--out", out)
    assert code == 0, err
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    got = np.array([float(r["prediction"]) for r in rows])
    data = tae_ratings.load_user_ratings(path)
    ds, recon = numpy_reconstruction(path, out)
    r, c, usable = tae_ratings_matrix.positions(ds.idx, data.test, "user")
    np.testing.assert_allclose(got[usable], np.clip(recon[r[usable], c[usable]], 1, 5), atol=2e-4)
