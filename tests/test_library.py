"""tf1_tied_ae against independent references: NumPy, finite differences, a 2018-style graph, PCA."""
import numpy as np
import pytest
import tensorflow as tf

import tf1_tied_ae as tae

tf1 = tf.compat.v1
SMALL = (12, 7, 5, 3)


def session(ae):
    sess = tf1.Session(graph=ae.graph)
    sess.run(ae.init_op)
    return sess


def values(sess, ae):
    return sess.run(ae.variables)


def load(sess, ae, vals):
    """Assign numbers into a finalised graph by feeding the variables' initializer inputs."""
    for name, v in ae.variables.items():
        v.load(vals[name], sess)


def batches(n, dim, size=16, seed=0):
    rng = np.random.RandomState(seed)
    return [rng.rand(size, dim).astype(np.float32) for _ in range(n)]


def np_forward(vals, x, dims, act=lambda z: 1 / (1 + np.exp(-z)), tied=True):
    """The model in NumPy, float64: sigmoid hidden and code layers, linear output."""
    L = len(dims) - 1
    h = x.astype(np.float64)
    for i in range(L):
        h = act(h @ vals[f"encoder/layer_{i}/kernel"] + vals[f"encoder/layer_{i}/bias"])
    for j in range(L):
        w = vals[f"encoder/layer_{L - 1 - j}/kernel"].T if tied else vals[f"decoder/layer_{j}/kernel"]
        h = h @ w + vals[f"decoder/layer_{j}/bias"]
        if j < L - 1:
            h = act(h)
    return h


# --- config ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    (dict(dims=(784,)), "dims"), (dict(dims=(10, 0)), "dims"), (dict(dims=(10, 2.5)), "dims"),
    (dict(dims=(10, -3)), "dims"), (dict(mode="transposed"), "mode"), (dict(activation="gelu"), "activation"),
    (dict(code_activation="x"), "code_activation"), (dict(loss="l1"), "loss"), (dict(init="he"), "init"),
    (dict(trainable="bias"), "trainable"), (dict(learning_rate=0), "learning_rate"),
    (dict(learning_rate=-1e-3), "learning_rate"), (dict(learning_rate=float("nan")), "learning_rate"),
    (dict(learning_rate=float("inf")), "learning_rate"), (dict(loss="xent", output_activation="linear"), "output_activation"),
    (dict(sync_every="batch"), "sync_every"), (dict(optimizer="rmsprop"), "optimizer"),
])
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        tae.AEConfig(**kwargs)


def test_config_is_frozen_and_resolves_defaults():
    cfg = tae.AEConfig(dims=[4, 2], loss="xent")
    assert cfg.dims == (4, 2) and cfg.output_activation == "sigmoid" and cfg.code_activation == "sigmoid"
    with pytest.raises(Exception):
        cfg.mode = "untied"
    assert tae.AEConfig(mode="tied", trainable="decoder")  # decoder biases alone: allowed


def test_build_runs_nothing_and_uses_a_new_graph():
    a, b = tae.build(tae.AEConfig(dims=SMALL)), tae.build(tae.AEConfig(dims=SMALL))
    assert a.graph is not b.graph and a.graph is not tf1.get_default_graph()
    assert a.graph.finalized
    assert a.x.shape.as_list() == [None, SMALL[0]] and a.x.dtype == tf.float32


@pytest.mark.parametrize("mode", tae.MODES)
def test_variable_names_and_shapes(mode):
    ae = tae.build(tae.AEConfig(dims=SMALL, mode=mode))
    got = {n: tuple(v.shape.as_list()) for n, v in ae.variables.items()}
    assert got == tae.variable_shapes(ae.config)
    assert ("decoder/layer_0/kernel" in got) == (mode != "tied")
    assert got["decoder/layer_2/bias"] == (SMALL[0],)  # the bias no encoder bias mirrors
    trained = {v.op.name for v in ae.var_list}
    expect = {n for n in got if not (n.startswith("decoder") and n.endswith("kernel") and mode != "untied")}
    assert trained == expect


# --- gradients -----------------------------------------------------------------------------------

def test_tied_gradient_is_the_sum_of_both_paths():
    tied = tae.build(tae.AEConfig(dims=SMALL, mode="tied", seed=1), finalize=False)
    untied = tae.build(tae.AEConfig(dims=SMALL, mode="untied"), finalize=False)
    x = batches(1, SMALL[0])[0]
    with session(tied) as s1, session(untied) as s2:
        vals = values(s1, tied)
        for j in range(3):
            vals[f"decoder/layer_{j}/kernel"] = vals[f"encoder/layer_{2 - j}/kernel"].T
        load(s2, untied, vals)
        with tied.graph.as_default():
            g_tied = s1.run(tf.gradients(tied.loss, [tied.variables[f"encoder/layer_{i}/kernel"] for i in range(3)]),
                            {tied.x: x})
        with untied.graph.as_default():
            names = [f"encoder/layer_{i}/kernel" for i in range(3)] + [f"decoder/layer_{j}/kernel" for j in range(3)]
            g = dict(zip(names, s2.run(tf.gradients(untied.loss, [untied.variables[n] for n in names]), {untied.x: x})))
    for i in range(3):
        enc_path, dec_path = g[f"encoder/layer_{i}/kernel"], g[f"decoder/layer_{2 - i}/kernel"].T
        np.testing.assert_allclose(g_tied[i], enc_path + dec_path, atol=1e-5)
        assert np.abs(dec_path).max() > 1e-4  # the decoder path is really there


def test_sync_sgd_step_moves_encoder_by_encoder_path_only():
    lr = 0.5
    sync = tae.build(tae.AEConfig(dims=SMALL, mode="sync", optimizer="sgd", learning_rate=lr, seed=2))
    untied = tae.build(tae.AEConfig(dims=SMALL, mode="untied"), finalize=False)
    x = batches(1, SMALL[0])[0]
    with session(sync) as s1, session(untied) as s2:
        before = values(s1, sync)
        load(s2, untied, before)
        names = [f"encoder/layer_{i}/kernel" for i in range(3)]
        with untied.graph.as_default():
            grads = s2.run(tf.gradients(untied.loss, [untied.variables[n] for n in names]), {untied.x: x})
        s1.run(sync.train_op, {sync.x: x})
        after = values(s1, sync)
    for n, g in zip(names, grads):
        np.testing.assert_allclose(after[n], before[n] - lr * g, atol=1e-6)


def test_finite_differences_against_numpy():
    dims = (6, 4, 3)
    ae = tae.build(tae.AEConfig(dims=dims, mode="tied", seed=3), finalize=False)
    x = np.random.RandomState(1).rand(5, dims[0])
    with session(ae) as sess:
        vals = {k: v.astype(np.float64) for k, v in values(sess, ae).items()}
        loss_np = lambda v: np.mean((np_forward(v, x, dims) - x) ** 2)  # noqa: E731
        assert abs(sess.run(ae.loss, {ae.x: x}) - loss_np(vals)) < 1e-6
        names = sorted(vals)
        with ae.graph.as_default():
            grads = dict(zip(names, sess.run(tf.gradients(ae.loss, [ae.variables[n] for n in names]), {ae.x: x})))
    eps = 1e-6
    for n in names:
        fd = np.zeros_like(vals[n])
        for idx in np.ndindex(*vals[n].shape):
            plus, minus = dict(vals), dict(vals)
            plus[n], minus[n] = vals[n].copy(), vals[n].copy()
            plus[n][idx] += eps
            minus[n][idx] -= eps
            fd[idx] = (loss_np(plus) - loss_np(minus)) / (2 * eps)
        np.testing.assert_allclose(grads[n], fd, atol=2e-6, rtol=1e-3, err_msg=n)


# --- stages ----------------------------------------------------------------------------------------

def test_untie_is_exact_then_fine_tuning_unties():
    ae = tae.build(tae.AEConfig(dims=SMALL, mode="tied-untied", seed=4, learning_rate=1e-2))
    data = batches(10, SMALL[0])
    with session(ae) as sess:
        for x in data:
            sess.run(ae.train_op, {ae.x: x})
        before = sess.run(ae.reconstruction, {ae.x: data[0]})
        assert not sess.run(ae.untied)
        sess.run(ae.untie_op)
        assert sess.run(ae.untied)
        after = sess.run(ae.finetune.reconstruction, {ae.x: data[0]})
        assert np.abs(before - after).max() <= 1e-7
        vals = values(sess, ae)
        for j in range(3):
            np.testing.assert_array_equal(vals[f"decoder/layer_{j}/kernel"], vals[f"encoder/layer_{2 - j}/kernel"].T)
        for x in data:
            sess.run(ae.finetune.train_op, {ae.x: x})
        vals = values(sess, ae)
    assert not np.allclose(vals["decoder/layer_0/kernel"], vals["encoder/layer_2/kernel"].T)


def test_sync_keeps_the_decoder_transposed_after_every_step():
    ae = tae.build(tae.AEConfig(dims=SMALL, mode="sync", seed=5, learning_rate=1e-2))
    with session(ae) as sess:
        for x in [None] + batches(5, SMALL[0]):
            if x is not None:
                sess.run(ae.train_op, {ae.x: x})
            vals = values(sess, ae)
            for j in range(3):
                np.testing.assert_array_equal(vals[f"decoder/layer_{j}/kernel"], vals[f"encoder/layer_{2 - j}/kernel"].T)


def test_sync_every_epoch_waits_for_sync_op():
    ae = tae.build(tae.AEConfig(dims=SMALL, mode="sync", sync_every="epoch", seed=5, learning_rate=1e-2))
    with session(ae) as sess:
        frozen = sess.run(ae.variables["decoder/layer_0/kernel"])
        for x in batches(3, SMALL[0]):
            sess.run(ae.train_op, {ae.x: x})
        np.testing.assert_array_equal(sess.run(ae.variables["decoder/layer_0/kernel"]), frozen)
        sess.run(ae.sync_op)
        vals = values(sess, ae)
    np.testing.assert_array_equal(vals["decoder/layer_0/kernel"], vals["encoder/layer_2/kernel"].T)


@pytest.mark.parametrize("mode", tae.MODES)
@pytest.mark.parametrize("trainable", tae.TRAINABLE)
def test_trainable_scope(mode, trainable):
    ae = tae.build(tae.AEConfig(dims=SMALL, mode=mode, trainable=trainable, seed=6, learning_rate=1e-2))
    with session(ae) as sess:
        before = values(sess, ae)
        for x in batches(4, SMALL[0]):
            sess.run(ae.train_op, {ae.x: x})
        after = values(sess, ae)
    trained = {v.op.name for v in ae.var_list}
    for name in before:
        if name in trained:
            assert not np.array_equal(before[name], after[name]), name
        elif not (mode == "sync" and name.endswith("kernel") and trainable != "decoder"):
            # everything outside var_list is bit-identical (sync's copies follow the encoder by design)
            assert np.array_equal(before[name], after[name]), name
    assert all(n.startswith(trainable) for n in trained) or trainable == "all"


# --- fidelity with the question's code ------------------------------------------------------------

def snippet_graph(vals, dims, lr):
    """The 2018 question's graph as written: lists of tf.Variable, tf.add(tf.matmul()), no scopes."""
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [None, dims[0]])
        rev = dims[::-1]
        encoderWeights, encoderBiases, decoderWeights, decoderBiases = [], [], [], []
        for i in range(len(dims) - 1):
            encoderWeights.append(tf.Variable(vals[f"encoder/layer_{i}/kernel"]))
            encoderBiases.append(tf.Variable(vals[f"encoder/layer_{i}/bias"]))
            decoderWeights.append(tf.Variable(vals[f"decoder/layer_{i}/kernel"]))
            decoderBiases.append(tf.Variable(vals[f"decoder/layer_{i}/bias"]))
        layer = x
        for i in range(len(dims) - 1):
            layer = tf.nn.sigmoid(tf.add(tf.matmul(layer, encoderWeights[i]), encoderBiases[i]))
        for i in range(len(rev) - 1):
            layer = tf.add(tf.matmul(layer, decoderWeights[i]), decoderBiases[i])
            if i < len(rev) - 2:
                layer = tf.nn.sigmoid(layer)
        loss = tf1.losses.mean_squared_error(labels=x, predictions=layer)
        opt = tf1.train.AdamOptimizer(lr).minimize(loss)
        init = tf1.global_variables_initializer()
    return g, x, loss, opt, init


def test_same_loss_trace_as_the_question_code():
    dims, lr = (784, 196, 81, 49), 1e-3
    ae = tae.build(tae.AEConfig(dims=dims, mode="untied", init="snippet", learning_rate=lr, seed=7))
    data = batches(25, dims[0], size=32, seed=3)
    with session(ae) as sess:
        vals = values(sess, ae)
        ours = [sess.run([ae.loss, ae.train_op], {ae.x: x})[0] for x in data]
    g, x, loss, opt, init = snippet_graph(vals, dims, lr)
    with tf1.Session(graph=g) as sess:
        sess.run(init)
        theirs = [sess.run([loss, opt], {x: b})[0] for b in data]
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    assert ours[-1] < ours[0]


# --- the linear case is PCA -------------------------------------------------------------------------

def test_linear_tied_autoencoder_reaches_pca():
    rng = np.random.RandomState(0)
    n, d, k = 400, 16, 4
    data = (rng.randn(n, 6) @ rng.randn(6, d) + 0.3 * rng.randn(n, d) + 2.0).astype(np.float32)
    centred = data - data.mean(0)
    s = np.linalg.svd(centred, compute_uv=False)
    pca_mse = (s[k:] ** 2).sum() / (n * d)
    cfg = tae.AEConfig(dims=(d, k), mode="tied", activation="linear", loss="mse", learning_rate=0.02, seed=0)
    ae = tae.build(cfg)
    with session(ae) as sess:
        for _ in range(3000):
            sess.run(ae.train_op, {ae.x: data})
        mse = sess.run(ae.loss, {ae.x: data})
    assert mse <= pca_mse * 1.02, (mse, pca_mse)
    assert mse >= pca_mse * (1 - 1e-3)  # PCA is the optimum: nothing linear beats it


# --- checkpoints ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", tae.MODES)
def test_saver_round_trip(tmp_path, mode):
    cfg = tae.AEConfig(dims=SMALL, mode=mode, seed=8, learning_rate=1e-2)
    x = batches(1, SMALL[0])[0]
    ae = tae.build(cfg)
    with session(ae) as sess:
        sess.run(ae.train_op, {ae.x: x})
        want = sess.run(ae.reconstruction, {ae.x: x})
        path = ae.saver.save(sess, str(tmp_path / "model"), global_step=ae.global_step)
    names = {n for n, _ in tf.train.list_variables(path)}
    model = {n for n in names if not n.startswith(("train/", "finetune/"))} - {"global_step", "untied"}
    assert model == set(tae.variable_shapes(cfg))
    again = tae.build(cfg)
    with tf1.Session(graph=again.graph) as sess:
        again.saver.restore(sess, tf.train.latest_checkpoint(str(tmp_path)))
        np.testing.assert_array_equal(sess.run(again.reconstruction, {again.x: x}), want)
        assert sess.run(again.global_step) == 1


def test_resident_input_draws_the_given_order():
    data = np.arange(10 * SMALL[0], dtype=np.float32).reshape(10, SMALL[0]) / 100
    ae = tae.build(tae.AEConfig(dims=SMALL, seed=0), resident=(10, 3))
    order = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0], np.int32)
    with session(ae) as sess:
        tae.load_resident(sess, ae.resident, data, rows=3)  # blocks that do not divide N
        sess.run(ae.resident.start_epoch_op, {ae.resident.order_placeholder: order})
        first = sess.run(ae.x)
        second = sess.run(ae.x)
        fed = sess.run(ae.x, {ae.x: data[:2]})  # feeding still overrides
    np.testing.assert_array_equal(first, data[[9, 8, 7]])
    np.testing.assert_array_equal(second, data[[6, 5, 4]])
    np.testing.assert_array_equal(fed, data[:2])


@pytest.mark.parametrize("mode", tae.MODES)
def test_train_steps_loop_equals_single_steps(mode):
    """Head.train_steps (n steps in one while_loop) gives bit-identical losses and variables to n
    separate train_op calls on the same resident batches, learning-rate schedule included."""
    data = np.random.RandomState(0).rand(100, SMALL[0]).astype(np.float32)
    cfg = tae.AEConfig(dims=SMALL, mode=mode, lr_schedule="cosine", lr_decay_steps=30, learning_rate=1e-2)
    results = []
    for looped in (False, True):
        ae = tae.build(cfg, resident=(100, 10))
        with session(ae) as sess:
            tae.load_resident(sess, ae.resident, data)
            losses = []
            for stage in (False, True) if mode == "tied-untied" else (False,):
                if stage:
                    sess.run(ae.untie_op)
                head = tae.stage_head(ae, stage)
                sess.run(ae.resident.start_epoch_op, {ae.resident.order_placeholder: np.arange(100, dtype=np.int32)})
                if looped:
                    for n in (7, 3):
                        losses += list(sess.run(head.train_steps, {ae.resident.steps_placeholder: n}))
                else:
                    losses += [sess.run([head.loss, head.train_op])[0] for _ in range(10)]
            results.append((losses, values(sess, ae), sess.run(ae.global_step)))
    (a, va, sa), (b, vb, sb) = results
    assert a == b and sa == sb == len(a)
    for name in va:
        assert np.array_equal(va[name], vb[name]), name
