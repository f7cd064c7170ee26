"""tf1_tied_ae against independent references: NumPy, finite differences, a 2018-style graph, PCA."""
import numpy as np
import pytest
import tensorflow as tf

import tae_config
import tf1_input
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


# --- graphs, names, shapes ------------------------------------------------------------------------

def test_build_runs_nothing_and_uses_a_new_graph():
    a, b = tae.build(tae.AEConfig(dims=SMALL)), tae.build(tae.AEConfig(dims=SMALL))
    assert a.graph is not b.graph and a.graph is not tf1.get_default_graph()
    assert a.graph.finalized and a.stages == () and a.input is None
    assert a.x.shape.as_list() == [None, SMALL[0]] and a.x.dtype == tf.float32
    assert a.train.code.shape.as_list() == [None, SMALL[-1]]
    assert a.train.reconstruction.shape.as_list() == [None, SMALL[0]]


KERNELS = {"encoder/layer_0/kernel": (12, 7), "encoder/layer_1/kernel": (7, 5), "encoder/layer_2/kernel": (5, 3)}
BIASES = {"encoder/layer_0/bias": (7,), "encoder/layer_1/bias": (5,), "encoder/layer_2/bias": (3,),
          "decoder/layer_0/bias": (5,), "decoder/layer_1/bias": (7,), "decoder/layer_2/bias": (12,)}
DECODER_KERNELS = {"decoder/layer_0/kernel": (3, 5), "decoder/layer_1/kernel": (5, 7), "decoder/layer_2/kernel": (7, 12)}
TRAINED = {  # mode -> the train head's var_list, and the finetune head's
    "tied": ({**KERNELS, **BIASES}, None),
    "untied": ({**KERNELS, **BIASES, **DECODER_KERNELS}, None),
    "sync": ({**KERNELS, **BIASES}, None),
    "tied-untied": ({**KERNELS, **BIASES}, {**KERNELS, **BIASES, **DECODER_KERNELS}),
}


@pytest.mark.parametrize("mode", tae.MODES)
def test_variable_names_shapes_and_var_lists(mode):
    ae = tae.build(tae.AEConfig(dims=SMALL, mode=mode))
    got = {n: tuple(v.shape.as_list()) for n, v in ae.variables.items()}
    assert got == {**KERNELS, **BIASES, **({} if mode == "tied" else DECODER_KERNELS)}
    assert got == tae.variable_shapes(ae.config)
    train, finetune = TRAINED[mode]
    assert {v.op.name: tuple(v.shape.as_list()) for v in ae.train.var_list} == train
    assert (ae.finetune is None) == (finetune is None)
    if finetune:
        assert {v.op.name for v in ae.finetune.var_list} == set(finetune)


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
            g_tied = s1.run(tf.gradients(tied.train.loss, [tied.variables[f"encoder/layer_{i}/kernel"] for i in range(3)]),
                            {tied.x: x})
        with untied.graph.as_default():
            names = [f"encoder/layer_{i}/kernel" for i in range(3)] + [f"decoder/layer_{j}/kernel" for j in range(3)]
            g = dict(zip(names, s2.run(tf.gradients(untied.train.loss, [untied.variables[n] for n in names]), {untied.x: x})))
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
            grads = s2.run(tf.gradients(untied.train.loss, [untied.variables[n] for n in names]), {untied.x: x})
        s1.run(sync.train.train_op, {sync.x: x})
        after = values(s1, sync)
    for n, g in zip(names, grads):
        np.testing.assert_allclose(after[n], before[n] - lr * g, atol=1e-6)


def test_finite_differences_against_numpy():
    dims = (6, 4, 3)
    ae = tae.build(tae.AEConfig(dims=dims, mode="tied", activation="sigmoid", code_activation="sigmoid", seed=3),
                   finalize=False)
    x = np.random.RandomState(1).rand(5, dims[0])
    with session(ae) as sess:
        vals = {k: v.astype(np.float64) for k, v in values(sess, ae).items()}
        loss_np = lambda v: np.mean((np_forward(v, x, dims) - x) ** 2)  # noqa: E731
        assert abs(sess.run(ae.train.loss, {ae.x: x}) - loss_np(vals)) < 1e-6
        names = sorted(vals)
        with ae.graph.as_default():
            grads = dict(zip(names, sess.run(tf.gradients(ae.train.loss, [ae.variables[n] for n in names]), {ae.x: x})))
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
            sess.run(ae.train.train_op, {ae.x: x})
        before = sess.run(ae.train.reconstruction, {ae.x: data[0]})
        sess.run(ae.untie_op)
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
                sess.run(ae.train.train_op, {ae.x: x})
            vals = values(sess, ae)
            for j in range(3):
                np.testing.assert_array_equal(vals[f"decoder/layer_{j}/kernel"], vals[f"encoder/layer_{2 - j}/kernel"].T)


def test_sync_every_epoch_waits_for_the_epoch_end():
    run = tae.Schedule(epochs=2, batch_size=10, sync_every="epoch")
    ae = tae.build(tae.AEConfig(dims=SMALL, mode="sync", seed=5, learning_rate=1e-2), run, 30)
    (stage,) = ae.stages
    assert stage.epoch_end is ae.sync_op and stage.epochs == 2 and stage.steps_per_epoch == 3
    with session(ae) as sess:
        frozen = sess.run(ae.variables["decoder/layer_0/kernel"])
        for x in batches(3, SMALL[0]):
            sess.run(ae.train.train_op, {ae.x: x})
        np.testing.assert_array_equal(sess.run(ae.variables["decoder/layer_0/kernel"]), frozen)
        sess.run(stage.epoch_end)
        vals = values(sess, ae)
    np.testing.assert_array_equal(vals["decoder/layer_0/kernel"], vals["encoder/layer_2/kernel"].T)


@pytest.mark.parametrize("mode", tae.MODES)
@pytest.mark.parametrize("trainable", tae.TRAINABLE)
def test_trainable_scope(mode, trainable):
    ae = tae.build(tae.AEConfig(dims=SMALL, mode=mode, trainable=trainable, seed=6, learning_rate=1e-2))
    with session(ae) as sess:
        before = values(sess, ae)
        for x in batches(4, SMALL[0]):
            sess.run(ae.train.train_op, {ae.x: x})
        after = values(sess, ae)
    trained = {v.op.name for v in ae.train.var_list}
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
    question = tae_config.PRESETS["question"][0]  # the question's settings, whatever the defaults
    assert question["activation"] == question["code_activation"] == "sigmoid" and question["learning_rate"] == lr
    ae = tae.build(tae.AEConfig(dims=dims, **question, seed=7))
    data = batches(25, dims[0], size=32, seed=3)
    with session(ae) as sess:
        vals = values(sess, ae)
        ours = [sess.run([ae.train.loss, ae.train.train_op], {ae.x: x})[0] for x in data]
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
            sess.run(ae.train.train_op, {ae.x: data})
        mse = sess.run(ae.train.loss, {ae.x: data})
    assert mse <= pca_mse * 1.02, (mse, pca_mse)
    assert mse >= pca_mse * (1 - 1e-3)  # PCA is the optimum: nothing linear beats it


# --- checkpoints ---------------------------------------------------------------------------------

OPTIMIZER_STATE = {"train/beta1_power", "train/beta2_power"} | {
    f"train/{n}/{slot}" for n in {**KERNELS, **BIASES} for slot in ("Adam", "Adam_1")}


@pytest.mark.parametrize("mode", tae.MODES)
def test_saver_round_trip(tmp_path, mode):
    cfg = tae.AEConfig(dims=SMALL, mode=mode, seed=8, learning_rate=1e-2)
    x = batches(1, SMALL[0])[0]
    ae = tae.build(cfg)
    with session(ae) as sess:
        sess.run(ae.train.train_op, {ae.x: x})
        want = sess.run(ae.train.reconstruction, {ae.x: x})
        path = ae.saver.save(sess, str(tmp_path / "model"), global_step=ae.global_step)
    names = {n for n, _ in tf.train.list_variables(path)}
    model = {**KERNELS, **BIASES, **({} if mode == "tied" else DECODER_KERNELS)}
    untied_slots = {f"train/{n}/{s}" for n in DECODER_KERNELS for s in ("Adam", "Adam_1")}
    finetune = {f"finetune/{n}/{s}" for n in model for s in ("Adam", "Adam_1")} | {
        "finetune/beta1_power", "finetune/beta2_power"}
    assert names == set(model) | {"global_step"} | OPTIMIZER_STATE | (untied_slots if mode == "untied" else set()) | (
        finetune if mode == "tied-untied" else set())
    assert 'model_checkpoint_path: "model-1"' in (tmp_path / "checkpoint").read_text()  # relative: movable
    again = tae.build(cfg)
    with tf1.Session(graph=again.graph) as sess:
        again.saver.restore(sess, tf.train.latest_checkpoint(str(tmp_path)))
        np.testing.assert_array_equal(sess.run(again.train.reconstruction, {again.x: x}), want)
        assert sess.run(again.global_step) == 1


@pytest.mark.parametrize("kind", tf1_input.INPUTS)
def test_pipeline_draws_the_given_order_and_resumes_mid_epoch(kind):
    data = np.arange(10 * SMALL[0], dtype=np.float32).reshape(10, SMALL[0]) / 100
    ae = tae.build(tae.AEConfig(dims=SMALL, seed=0), tae.Schedule(epochs=1, batch_size=3), 10, input_kind=kind)
    pipe = ae.input
    order = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0], np.int32)
    with session(ae) as sess:
        tf1_input.load(sess, pipe, data, rows=3)  # blocks that do not divide N
        sess.run(pipe.start_epoch_op, {pipe.order_placeholder: order, pipe.batch_size_placeholder: 3})
        first, second = sess.run(ae.x), sess.run(ae.x)
        fed = sess.run(ae.x, {ae.x: data[:2]})  # feeding still overrides
        sess.run(pipe.start_epoch_op, {pipe.order_placeholder: order, pipe.batch_size_placeholder: 4,
                                       pipe.start_placeholder: 1})
        resumed = sess.run(ae.x)
        if kind == "tfdata":  # drop_remainder: 10 // 4 = 2 batches, 1 skipped (the runner never asks)
            with pytest.raises(tf.errors.OutOfRangeError):
                sess.run(ae.x)
    np.testing.assert_array_equal(first, data[[9, 8, 7]])
    np.testing.assert_array_equal(second, data[[6, 5, 4]])
    np.testing.assert_array_equal(fed, data[:2])
    np.testing.assert_array_equal(resumed, data[[5, 4, 3, 2]])


def test_progress_lives_in_the_graph_and_survives_a_mid_epoch_start():
    ae = tae.build(tae.AEConfig(dims=SMALL, seed=0), tae.Schedule(epochs=1, batch_size=5), 20)
    pipe, (stage,) = ae.input, ae.stages
    order = np.arange(20, dtype=np.int32)
    with session(ae) as sess:
        tf1_input.load(sess, pipe, np.random.RandomState(0).rand(20, SMALL[0]).astype(np.float32))
        sess.run(pipe.start_epoch_op, {pipe.order_placeholder: order, pipe.batch_size_placeholder: 5})
        losses = sess.run(stage.steps, {pipe.steps_placeholder: 2})
        sess.run(pipe.set_seconds_op, {pipe.seconds_placeholder: 1.5})
        assert sess.run(pipe.figure_sum) == pytest.approx(float(np.sum(losses, dtype=np.float64)))
        sess.run(pipe.start_epoch_op, {pipe.order_placeholder: order, pipe.batch_size_placeholder: 5,
                                       pipe.start_placeholder: 2})  # a resume keeps the epoch's sums
        assert sess.run(pipe.seconds) == 1.5 and sess.run(pipe.figure_sum) > 0
        sess.run(pipe.start_epoch_op, {pipe.order_placeholder: order, pipe.batch_size_placeholder: 5})
        assert sess.run([pipe.figure_sum, pipe.seconds]) == [0.0, 0.0]  # a new epoch starts them at 0


REGULARISED = dict(mask_noise=0.2, gaussian_noise=0.1, code_dropout=0.3, hidden_dropout=0.2, weight_decay=1e-3)


def run_stages(ae, run, data, step):
    """Train the built model `ae` through its stages on `data` in the epochs' stored order, in a
    fresh session (its own initial values); step(sess, stage, pipe) returns one epoch's losses.
    Returns (losses, variables, global step)."""
    pipe = ae.input
    with session(ae) as sess:
        tf1_input.load(sess, pipe, data)
        losses = []
        for stage in ae.stages:
            if stage.enter is not None:
                sess.run(stage.enter)
            sess.run(pipe.start_epoch_op, {pipe.order_placeholder: np.arange(len(data), dtype=np.int32),
                                           pipe.batch_size_placeholder: run.batch_size})
            losses += [float(v) for v in step(sess, stage, pipe)]
            if stage.epoch_end is not None:
                sess.run(stage.epoch_end)
        return losses, values(sess, ae), sess.run(ae.global_step)


def looped(*calls):
    """A stage's steps tensor run as `calls` Session calls of that many steps each."""
    return lambda sess, stage, pipe: [v for n in calls for v in sess.run(stage.steps, {pipe.steps_placeholder: n})]


def fed(sess, stage, pipe):
    """A stage's 10 steps as 10 calls of its fed train_op (no loop)."""
    return [sess.run([stage.head.training.loss, stage.head.train_op])[0] for _ in range(10)]


MULTI_STEP_CASES = [(m, {}) for m in tae.MODES] + [("tied-untied", REGULARISED)]


@pytest.mark.parametrize("mode, extra", MULTI_STEP_CASES)
def test_the_loops_steps_in_any_pieces_are_the_fed_steps(mode, extra):
    """What resume relies on: the multi-step loop run as 7 + 3 steps gives bit-identical losses and
    variables to 10 calls of one step each in a graph built again (learning-rate schedule, noise
    and dropout included: keyed by the global step); the same fetch on the same graph runs the same
    kernels, so this holds with oneDNN on and off (docs/porting.md, "Bit for bit": what these tests
    promise). And the loop's step is the fed train_op's step (the first graph again, from its
    initial values): the same losses and variables to float rounding. Not bit for bit: another
    fetch is another graph to grappler, whose arithmetic optimiser may re-associate a sum
    differently in each (seen with oneDNN on: a 1-ulp difference in the loss)."""
    data = np.random.RandomState(0).rand(100, SMALL[0]).astype(np.float32)
    cfg = tae.AEConfig(dims=SMALL, mode=mode, lr_schedule="cosine", learning_rate=1e-2, **extra)
    run = tae.Schedule(epochs=2, batch_size=10, tied_epochs=1 if mode == "tied-untied" else None)
    ae = tae.build(cfg, run, len(data))
    rebuilt = tae.build(cfg, run, len(data))  # as a resumed process builds it again
    (a, va, sa), (b, vb, sb), (c, vc, sc) = (run_stages(model, run, data, step) for model, step in
                                             ((ae, looped(7, 3)), (rebuilt, looped(*(1,) * 10)), (ae, fed)))
    assert a == b and sa == sb == sc == len(a) == len(c) == 10 * (2 if mode == "tied-untied" else 1)
    for name in va:
        assert np.array_equal(va[name], vb[name]), name
    np.testing.assert_allclose(c, a, rtol=1e-5)
    assert a[-1] < a[0]  # it trained
    for name in va:
        np.testing.assert_allclose(vc[name], va[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_stages_say_what_runs_when():
    run = tae.Schedule(epochs=5, batch_size=10, tied_epochs=2)
    ae = tae.build(tae.AEConfig(dims=SMALL, mode="tied-untied", lr_schedule="cosine"), run, 95)
    tied, untied = ae.stages
    assert (tied.name, tied.epochs, tied.first_step, tied.steps_per_epoch, tied.head) == ("tied", 2, 0, 9, ae.train)
    assert (untied.name, untied.epochs, untied.first_epoch, untied.first_step) == ("untied", 3, 2, 18)
    assert untied.enter is ae.untie_op and untied.head is ae.finetune and tied.enter is None
    assert tae.final_head(ae) is ae.finetune
    never = tae.build(tae.AEConfig(dims=SMALL, mode="tied-untied"), tae.Schedule(epochs=2, tied_epochs=2), 100)
    assert tae.final_head(never) is never.train  # an untied stage of 0 epochs never unties


# --- regularisers ----------------------------------------------------------------------------------

SIGMOID = dict(activation="sigmoid", code_activation="sigmoid")  # np_forward's model


def np_mse(vals, inputs, target, dims, tied=True):
    return float(np.mean((np_forward(vals, inputs, dims, tied=tied) - target) ** 2))


def test_input_noise_corrupts_the_training_pass_only():
    """Masking noise zeroes a fraction of the inputs and leaves the rest as they are (Theano's dA);
    Gaussian noise is added after it; the training loss is the NumPy model on the noisy input scored
    against the clean one; evaluation sees no noise. The noise is a function of the global step."""
    dims = (200, 30, 10)
    x = np.random.RandomState(0).uniform(0.1, 1, (64, 200)).astype(np.float32)
    for cfg in (tae.AEConfig(dims=dims, mask_noise=0.3, **SIGMOID), tae.AEConfig(dims=dims, gaussian_noise=0.2, **SIGMOID),
                tae.AEConfig(dims=dims, mask_noise=0.5, gaussian_noise=0.1, **SIGMOID)):
        ae = tae.build(cfg)
        with session(ae) as sess:
            t = ae.train.training
            noisy, train_loss, loss, again = sess.run([t.input, t.loss, ae.train.loss, t.input], {ae.x: x})
            vals = values(sess, ae)
            sess.run(ae.train.train_op, {ae.x: x})
            moved = sess.run(t.input, {ae.x: x})
        masked = noisy == 0 if not cfg.gaussian_noise else np.abs(noisy) < 1e-12
        if cfg.mask_noise and not cfg.gaussian_noise:
            assert abs(masked.mean() - cfg.mask_noise) < 0.02
            np.testing.assert_array_equal(noisy[~masked], x[~masked])
        if cfg.gaussian_noise and not cfg.mask_noise:
            diff = noisy - x
            assert abs(diff.std() - cfg.gaussian_noise) < 0.005 and abs(diff.mean()) < 0.005
        if cfg.mask_noise and cfg.gaussian_noise:  # masked values become pure noise around 0
            kept = np.abs(noisy - x) < 4 * cfg.gaussian_noise
            assert abs((1 - kept.mean()) - cfg.mask_noise * np.mean(x > 4 * cfg.gaussian_noise)) < 0.03
        np.testing.assert_allclose(train_loss, np_mse(vals, noisy, x, dims), rtol=1e-5)
        np.testing.assert_allclose(loss, np_mse(vals, x, x, dims), rtol=1e-5)  # evaluation: clean
        assert np.array_equal(noisy, again) and not np.array_equal(noisy, moved)  # same step, same noise


def test_dropout_drops_the_code_in_training_only():
    """Inverted dropout on the code: each value 0 or the clean code / (1 - rate); the training loss
    is the NumPy decoder on that code; hidden dropout also changes the training pass, never evaluation."""
    dims = (20, 16, 64)
    x = batches(1, 20, size=256)[0]
    cfg = tae.AEConfig(dims=dims, code_dropout=0.4, **SIGMOID)
    ae = tae.build(cfg)
    with session(ae) as sess:
        code, dropped, train_loss, loss = sess.run([ae.train.code, ae.train.training.code, ae.train.training.loss,
                                                    ae.train.loss], {ae.x: x})
        vals = values(sess, ae)
    zero = dropped == 0
    assert abs(zero.mean() - 0.4) < 0.02
    np.testing.assert_allclose(dropped[~zero], code[~zero] / 0.6, rtol=1e-6)
    recon = dropped.astype(np.float64) @ vals["encoder/layer_1/kernel"].T + vals["decoder/layer_0/bias"]
    recon = 1 / (1 + np.exp(-recon)) @ vals["encoder/layer_0/kernel"].T + vals["decoder/layer_1/bias"]
    np.testing.assert_allclose(train_loss, np.mean((recon - x) ** 2), rtol=1e-5)
    np.testing.assert_allclose(loss, np_mse(vals, x, x, dims), rtol=1e-5)
    hidden = tae.build(tae.AEConfig(dims=dims, hidden_dropout=0.5, **SIGMOID))
    with session(hidden) as sess:
        vals = values(sess, hidden)
        train_loss, loss, code, dropped = sess.run([hidden.train.training.loss, hidden.train.loss, hidden.train.code,
                                                    hidden.train.training.code], {hidden.x: x})
    np.testing.assert_allclose(loss, np_mse(vals, x, x, dims), rtol=1e-5)
    assert abs(train_loss - loss) > 1e-4 and not np.allclose(code, dropped)  # the hidden layer was dropped


@pytest.mark.parametrize("mode", tae.MODES)
def test_weight_decay_is_l2_on_each_trained_kernel_once(mode):
    """One SGD step with weight decay wd moves each kernel in var_list by an extra -lr * wd * W,
    once (a tied kernel too: it is one variable), and no bias; the objective adds wd * sum(W^2) / 2."""
    lr, wd = 0.1, 0.5
    x = batches(1, SMALL[0])[0]
    ends = {}
    for decay in (0.0, wd):
        ae = tae.build(tae.AEConfig(dims=SMALL, mode=mode, optimizer="sgd", learning_rate=lr, weight_decay=decay,
                                    seed=4))
        head = ae.finetune if mode == "tied-untied" else ae.train
        with session(ae) as sess:
            if ae.untie_op is not None:
                sess.run(ae.untie_op)
            before = values(sess, ae)
            loss, objective = sess.run([head.training.loss, head.training.objective], {ae.x: x})
            sess.run(head.train_op, {ae.x: x})
            ends[decay] = values(sess, ae)
        trained = {v.op.name for v in head.var_list}
        kernels = [n for n in trained if n.endswith("/kernel")]
        np.testing.assert_allclose(objective - loss, decay * sum(np.sum(before[n].astype(np.float64) ** 2)
                                                                 for n in kernels) / 2, rtol=1e-5)
    for name in ends[0.0]:
        extra = ends[wd][name] - ends[0.0][name]
        expect = -lr * wd * before[name] if name in kernels else 0 * before[name]
        if mode == "sync" and name.startswith("decoder/") and name.endswith("/kernel"):  # the copy follows W^T
            mirror = f"encoder/layer_{len(SMALL) - 2 - int(name.split('_')[1][0])}/kernel"
            expect = -lr * wd * before[mirror].T
        np.testing.assert_allclose(extra, expect, atol=1e-6, err_msg=name)
    assert ("decoder/layer_0/kernel" in kernels) == (mode in ("untied", "tied-untied"))


# --- ratings: a sparse training set and the masked loss ---------------------------------------------

def csr(dense):
    """(indptr, columns, values) of a dense matrix's non-zero entries, row by row (NumPy)."""
    rows, cols = np.nonzero(dense)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(dense)))]).astype(np.int64)
    return indptr, cols.astype(np.int64), dense[rows, cols].astype(np.float32)


@pytest.mark.parametrize("kind", tf1_input.INPUTS)
def test_a_sparse_training_set_draws_the_dense_rows(kind):
    """Rows held as CSR and scattered into dense batches in the graph equal the dense rows (empty
    rows included), in the epoch's order, with the same resume-mid-epoch start."""
    rng = np.random.RandomState(0)
    dense = (rng.randint(1, 6, (12, 9)) * (rng.rand(12, 9) < 0.3)).astype(np.float32)
    dense[4] = 0  # a user with no ratings
    order = rng.permutation(12).astype(np.int32)
    graph = tf.Graph()
    with graph.as_default():
        pipe = tf1_input.pipeline(12, 9, kind, nnz=int(np.count_nonzero(dense)))
        batch = pipe.next_batch()
        init = tf.group(tf1.local_variables_initializer(), tf1.global_variables_initializer())
    with tf1.Session(graph=graph) as sess:
        sess.run(init)
        tf1_input.load(sess, pipe, csr(dense))
        sess.run(pipe.start_epoch_op, {pipe.order_placeholder: order, pipe.batch_size_placeholder: 5})
        drawn = [sess.run(batch), sess.run(batch)]
        sess.run(pipe.start_epoch_op, {pipe.order_placeholder: order, pipe.batch_size_placeholder: 5,
                                       pipe.start_placeholder: 1})
        resumed = sess.run(batch)
    np.testing.assert_array_equal(drawn[0], dense[order[:5]])
    np.testing.assert_array_equal(drawn[1], dense[order[5:10]])
    np.testing.assert_array_equal(resumed, dense[order[5:10]])


def test_masked_loss_counts_the_observed_ratings_only():
    """masked_mse is the mean squared error over the non-zero inputs (NumPy), so what the model
    predicts for an unrated item never enters the loss or its gradient."""
    dims = (9, 5, 3)
    rng = np.random.RandomState(1)
    x = (rng.randint(1, 6, (6, 9)) * (rng.rand(6, 9) < 0.4)).astype(np.float32)
    ae = tae.build(tae.AEConfig(dims=dims, loss="masked_mse", **SIGMOID), finalize=False)
    with ae.graph.as_default():
        grad = tf.gradients(ae.train.loss, ae.train.reconstruction)[0]
    with session(ae) as sess:
        loss, sse, recon, g = sess.run([ae.train.loss, ae.train.sse, ae.train.reconstruction, grad], {ae.x: x})
        vals = values(sess, ae)
    seen = x != 0
    np.testing.assert_allclose(recon, np_forward(vals, x, dims), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss, np.sum(((recon - x) ** 2)[seen]) / seen.sum(), rtol=1e-5)
    np.testing.assert_allclose(sse, np.sum(np.where(seen, (recon - x) ** 2, 0), axis=1), rtol=1e-5)
    assert np.all(g[~seen] == 0) and np.all(g[seen] != 0)


def test_a_masked_model_trains_the_same_on_sparse_and_dense_rows():
    """The stage's steps on a CSR training set and on the same rows stored dense: the same losses and
    variables, bit for bit (the sparse rows are only ever made dense inside the graph)."""
    rng = np.random.RandomState(2)
    dense = (rng.randint(1, 6, (40, 12)) * (rng.rand(40, 12) < 0.3)).astype(np.float32)
    order = rng.permutation(40).astype(np.int32)
    cfg = tae.AEConfig(dims=(12, 6, 3), loss="masked_mse", code_dropout=0.2, seed=3)
    results = []
    for data, nnz in ((dense, None), (csr(dense), int(np.count_nonzero(dense)))):
        ae = tae.build(cfg, tae.Schedule(epochs=1, batch_size=8), 40, nnz=nnz)
        pipe, (stage,) = ae.input, ae.stages
        with session(ae) as sess:
            tf1_input.load(sess, pipe, data)
            sess.run(pipe.start_epoch_op, {pipe.order_placeholder: order, pipe.batch_size_placeholder: 8})
            losses = sess.run(stage.steps, {pipe.steps_placeholder: 5})
            results.append((losses, values(sess, ae)))
    (a, va), (b, vb) = results
    assert np.array_equal(a, b) and np.all(np.isfinite(a))
    for name in va:
        assert np.array_equal(va[name], vb[name]), name


def test_dense_refeed_is_a_second_step_on_the_models_own_output(mode="tied"):  # the constrained decoder
    """dense_refeed's one step equals two plain steps: the step on x, then one on y = f(x) computed
    by the updated model (input and target both), from the same initial values; global_step moves
    once. Checked on the fed train_op and on the stage's multi-step loop alike."""
    rng = np.random.RandomState(4)
    x = (rng.randint(1, 6, (8, 10)) * (rng.rand(8, 10) < 0.4)).astype(np.float32)
    base = dict(dims=(10, 6, 3), mode=mode, loss="masked_mse", seed=5, weight_decay=1e-3)
    refeed = tae.build(tae.AEConfig(dense_refeed=True, **base), tae.Schedule(epochs=1, batch_size=8), 8)
    plain = tae.build(tae.AEConfig(**base))
    with session(refeed) as sess:
        start = values(sess, refeed)
        sess.run(refeed.train.train_op, {refeed.x: x})
        got, step = values(sess, refeed), sess.run(refeed.global_step)
        pipe, (stage,) = refeed.input, refeed.stages  # the loop: the same step on a drawn batch
        load(sess, refeed, start)
        sess.run([v.initializer for v in refeed.graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
                  if "Adam" in v.op.name or "power" in v.op.name])
        tf1_input.load(sess, pipe, x)
        sess.run(pipe.start_epoch_op, {pipe.order_placeholder: np.arange(8, dtype=np.int32),
                                       pipe.batch_size_placeholder: 8})
        sess.run(stage.steps, {pipe.steps_placeholder: 1})
        looped = values(sess, refeed)
    with session(plain) as sess:
        load(sess, plain, start)
        sess.run(plain.train.train_op, {plain.x: x})
        y = sess.run(plain.train.reconstruction, {plain.x: x})
        sess.run(plain.train.train_op, {plain.x: y})
        want = values(sess, plain)
    assert step == 1 and set(got) == set(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(looped[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)
        assert not np.allclose(want[name], start[name]), name
