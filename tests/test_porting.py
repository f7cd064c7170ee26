"""docs/porting.md held to real use: the files it tells a porter to copy are exactly the library's,
and alone in an empty folder they run the README's ten-line example and the guide's code."""
import ast
import re
import shutil
import sys

import pytest

from conftest import ROOT

DOC = ROOT / "docs" / "porting.md"


def copy_list():
    """The files docs/porting.md names in its section "The files a porter copies", first paragraph."""
    section = DOC.read_text().split("## The files a porter copies", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"`(\w+\.py)`", section.strip().split("\n\n")[0])


def imported_closure(module):
    """The project's modules that `module` needs, by their imports (itself included)."""
    found, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in found or not (ROOT / f"{name}.py").exists():
            continue
        found.add(name)
        for node in ast.walk(ast.parse((ROOT / f"{name}.py").read_text())):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                todo.append(node.module)
    return found


def python_blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_porting_the_copy_list_is_the_librarys_import_closure():
    """Exactly what tf1_tied_ae imports, transitively, and no program (tae_*) module."""
    listed = copy_list()
    assert len(listed) == len(set(listed)) >= 5
    assert {name[:-3] for name in listed} == imported_closure("tf1_tied_ae")


def test_porting_the_listed_files_alone_run_the_readme_example_and_the_guide(tmp_path, monkeypatch):
    """The listed files in an empty folder, the only place the library is imported from (the
    project's folder off sys.path, its modules forgotten): every ```python block of the README (its
    ten-line example), then of the guide, as written, there. A file missing from the list is an
    ImportError. (In this process, whose TensorFlow is imported already: a fresh one pays 5 s for it.)"""
    for name in copy_list():
        shutil.copy(ROOT / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path)] + [p for p in sys.path if p not in ("", str(ROOT), ".")])
    project = {name: module for name, module in sys.modules.items() if name.startswith(("tf1_", "tf2_", "tae_"))}
    for name in project:
        monkeypatch.delitem(sys.modules, name)
    try:
        for k, block in enumerate(python_blocks(ROOT / "README.md") + python_blocks(DOC)):
            exec(compile(block, f"block {k + 1}", "exec"), {"__name__": "__port__"})
        found = {name: module.__file__ for name, module in sys.modules.items() if name.startswith("tf1_")}
    finally:
        for name in [n for n in sys.modules if n.startswith(("tf1_", "tf2_", "tae_"))]:
            del sys.modules[name]  # this test's copies; the project's come back with monkeypatch's undo
    assert found and all(path.startswith(str(tmp_path)) for path in found.values()), found
    assert (tmp_path / "checkpoints" / "mine").is_dir()  # the README's example saved its checkpoint there


# --- the table's rows: each TF1 idiom, its replacement on TF 2.12-2.21, and TF 1.x's meaning --------------

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from test_tf1_api import members, needs_golden  # noqa: E402

tf1 = tf.compat.v1
KERAS3 = int(getattr(tf.keras, "__version__", "2").split(".")[0]) >= 3  # TF >= 2.16 brings Keras 3


def run(graph, fetches, feed=None, init=True):
    with tf1.Session(graph=graph) as sess:
        if init:
            sess.run(tf1.global_variables_initializer())
        return sess.run(fetches, feed)


def test_porting_initialize_all_variables_eval_and_run():
    """tf.initialize_all_variables() is tf1.global_variables_initializer() (the old name still in
    tf.compat.v1); tensor.eval() and op.run() use the default session: inside `with
    tf1.Session(graph=g):` they work as in 1.x, outside one they are refused (loud)."""
    with tf.Graph().as_default() as g:
        v = tf1.get_variable("v", initializer=3.0)
        old, new = tf1.initialize_all_variables(), tf1.global_variables_initializer()
        y = v * 2
    with tf1.Session(graph=g):
        old.run()
        assert y.eval() == 6.0
        new.run()
    with pytest.raises(ValueError, match="default session"):
        y.eval()


def test_porting_placeholders_need_a_graph():
    """Loud: in TF 2's eager mode a placeholder raises; inside a graph's block it is TF 1.x's."""
    with pytest.raises(RuntimeError, match="eager"):
        tf1.placeholder(tf.float32, [None, 3])
    with tf.Graph().as_default() as g:
        x = tf1.placeholder(tf.float32, [None, 3])
        y = 2 * x
    assert run(g, y, {x: np.ones((2, 3))}).tolist() == [[2.0] * 3] * 2


def test_porting_a_session_opened_after_the_block_needs_graph():
    """Loud: tf1.Session() opened after the `with graph.as_default()` block runs the global graph,
    empty in TF 2, where a TF 1.x script's one default graph held everything; Session(graph=g) runs g."""
    with tf.Graph().as_default() as g:
        y = tf.constant(3.0) * 2
    with pytest.raises(RuntimeError, match="graph is empty"):
        with tf1.Session() as sess:
            sess.run(y)
    assert run(g, y, init=False) == 6.0


def test_porting_ops_a_method_makes_later_go_inside_the_block():
    """Loud: an op made outside the graph's block, on a tensor of the graph (a method called later, as
    TF 1.x code bases did), is made eagerly and refused; re-entering the block makes it in the graph."""
    with tf.Graph().as_default() as g:
        h = tf.ones([2, 3])
    with pytest.raises((TypeError, ValueError), match="out of scope|graph"):
        tf.matmul(h, tf.ones([3, 1]))
    with g.as_default():
        y = tf.matmul(h, tf.ones([3, 1]))
    assert run(g, y, init=False).tolist() == [[3.0], [3.0]]


def test_porting_optimizers_are_tf1_train_and_step_as_in_tf1():
    """Loud: tf.train.AdamOptimizer is gone from tf; tf1.train.AdamOptimizer is TF 1.x's Adam, whose
    epsilon is the "epsilon hat" of Kingma & Ba's section 2 (1e-8): one step checked in NumPy.
    Keras's Adam defaults to epsilon 1e-7 (a quiet difference for a port that switches)."""
    assert not hasattr(tf, "train") or not hasattr(tf.train, "AdamOptimizer")
    w0, g = np.array([1.0, -2.0], np.float32), np.array([0.5, 0.25], np.float32)
    with tf.Graph().as_default() as graph:
        w = tf1.get_variable("w", initializer=w0)
        step = tf1.train.AdamOptimizer(0.1).apply_gradients([(tf.constant(g), w)])
    with tf1.Session(graph=graph) as sess:
        sess.run(tf1.global_variables_initializer())
        sess.run(step)
        got = sess.run(w)
    m, v = 0.1 * g, 0.001 * g ** 2  # (1 - beta1) g, (1 - beta2) g^2
    rate = 0.1 * np.sqrt(1 - 0.999) / (1 - 0.9)
    np.testing.assert_allclose(got, w0 - rate * m / (np.sqrt(v) + 1e-8), rtol=1e-6)
    assert tf.keras.optimizers.Adam().epsilon == pytest.approx(1e-7)


def test_porting_dropout_takes_the_drop_rate_now(golden=members):
    """Silent: tf.nn.dropout(x, 0.95) in TF 2 drops 95% (its second argument is the rate); in TF 1.x
    the same call kept 95% (keep_prob, TF 1.15's signature). tf1.nn.dropout(x, keep_prob=) keeps the
    1.x meaning; rate = 1 - keep_prob is the TF 2 call. Kept values are scaled by 1 / keep."""
    spec = golden(["tensorflow", "nn"])
    if spec is not None:  # TF 1.15's own signature: keep_prob came second
        assert spec["dropout"][1] >= {"x", "keep_prob"}
    x = tf.ones([200, 500])
    kept = lambda y: float(tf.reduce_mean(tf.cast(y > 0, tf.float32)))  # noqa: E731
    assert kept(tf.nn.dropout(x, 0.95, seed=1)) < 0.07  # the trap: 95% dropped
    with tf.Graph().as_default() as g:
        x = tf.ones([200, 500])
        old = tf1.nn.dropout(x, keep_prob=0.95, seed=1)
        new = tf.nn.dropout(x, rate=1 - 0.95, seed=1)
    old, new = run(g, [old, new], init=False)
    for y in (old, new):
        assert 0.94 < (y > 0).mean() < 0.96 and np.allclose(y[y > 0], 1 / 0.95)


def test_porting_xavier_is_glorot_uniform():
    """tf.contrib.layers.xavier_initializer() (uniform by default) is tf1.glorot_uniform_initializer():
    U(-a, a) with a = sqrt(6 / (fan_in + fan_out)); the library's init="glorot"."""
    with tf.Graph().as_default() as g:
        w = tf1.get_variable("w", [300, 100], initializer=tf1.glorot_uniform_initializer(seed=1))
    w = run(g, w)
    a = np.sqrt(6 / 400)
    assert np.abs(w).max() <= a and np.var(w) == pytest.approx(a * a / 3, rel=0.03)


def test_porting_variance_scaling_is_the_librarys_he_not_its_look_alike():
    """Silent: contrib's variance_scaling_initializer() was factor 2.0, fan-in, a truncated normal of
    stddev sqrt(1.3 * 2 / fan_in) (contrib's documentation; contrib is not in TF 1.15's golden files):
    weights of variance about 2 / fan_in, none beyond 2 stddevs. The library's init="he" is that;
    tf1.variance_scaling_initializer() looks alike and has scale 1.0: variance 1 / fan_in."""
    fan_in = 400
    ae = __import__("tf1_tied_ae").build(__import__("tf1_tied_ae").AEConfig(dims=(fan_in, 300, 100), init="he"))
    with tf1.Session(graph=ae.graph) as sess:
        sess.run(ae.init_op)
        w = sess.run(ae.variables["encoder/layer_0/kernel"])
    std = np.sqrt(2.6 / fan_in)
    assert np.abs(w).max() <= 2 * std and np.var(w) * fan_in == pytest.approx(2.0, rel=0.03)
    with tf.Graph().as_default() as g:
        look_alike = tf1.get_variable("w", [fan_in, 300], initializer=tf1.variance_scaling_initializer(seed=1))
    assert np.var(run(g, look_alike)) * fan_in == pytest.approx(1.0, rel=0.03)


def test_porting_l2_regularizer_is_half_the_sum_of_squares():
    """Silent: contrib's l2_regularizer(scale)(w) was scale * sum(w^2) / 2 (tf.nn.l2_loss); Keras's
    l2(scale) is scale * sum(w^2), twice as much. tf_upgrade_v2 writes l2(0.5 * scale); the library's
    weight_decay is scale * l2_loss, over the kernels it trains."""
    w = tf.constant([[1.0, -2.0], [3.0, 0.5]])
    l2_loss = float(tf.nn.l2_loss(w))
    assert l2_loss == pytest.approx(float(tf.reduce_sum(w * w)) / 2)
    assert float(tf.keras.regularizers.l2(0.1)(w)) == pytest.approx(2 * 0.1 * l2_loss)
    assert float(tf.keras.regularizers.l2(0.5 * 0.1)(w)) == pytest.approx(0.1 * l2_loss)
    import tf1_tied_ae as tae

    ae = tae.build(tae.AEConfig(dims=(2, 2), mode="tied", weight_decay=0.1))
    with tf1.Session(graph=ae.graph) as sess:
        sess.run(ae.init_op)
        x = np.zeros((1, 2), np.float32)
        kernel, loss, objective = sess.run([ae.variables["encoder/layer_0/kernel"], ae.train.training.loss,
                                            ae.train.training.objective], {ae.x: x})
    assert objective - loss == pytest.approx(0.1 * np.sum(kernel ** 2) / 2, rel=1e-5)
    assert ae.train.training.objective.name == "train/training_loss_with_weight_decay:0"
    assert ae.train.loss.name == "train/clean_loss_without_weight_decay:0"


def dense(x, units, scope, activation=tf.nn.relu):
    """contrib.layers.fully_connected(x, units, scope=scope) written out: contrib's names
    (scope/weights, scope/biases), Xavier weights, zero biases, and ReLU, its default activation_fn."""
    with tf1.variable_scope(scope):
        w = tf1.get_variable("weights", [x.shape[-1], units], initializer=tf1.glorot_uniform_initializer())
        b = tf1.get_variable("biases", [units], initializer=tf1.zeros_initializer())
    y = tf.matmul(x, w) + b
    return y if activation is None else activation(y)


def test_porting_fully_connected_and_arg_scope_written_out():
    """Silent if copied as a plain layer: contrib's fully_connected defaulted to ReLU (activation_fn=
    tf.nn.relu), where tf.layers.dense and Keras's Dense are linear. Written out (tf_upgrade_v2
    refuses contrib and arg_scope), it keeps contrib's variable names, so old checkpoints restore."""
    with tf.Graph().as_default() as g:
        tf1.set_random_seed(0)  # a seed for every graph here: train.py's op determinism (on in this process
        # once a test has run it) refuses random ops without one
        x = tf.constant([[1.0, -1.0, 2.0]])
        y = dense(x, 4, "fully_connected")
        names = sorted(v.op.name for v in tf1.global_variables())
        w, b = tf1.global_variables()
    out, w, b = run(g, [y, w, b])
    assert names == ["fully_connected/biases", "fully_connected/weights"]
    np.testing.assert_allclose(out, np.maximum(0, [[1.0, -1.0, 2.0]] @ w + b), rtol=1e-6)


def test_porting_lazy_adam_moves_only_the_rows_a_gradient_names():
    """contrib.opt.LazyAdamOptimizer (tf_upgrade_v2 refuses it; tensorflow-addons' LazyAdam is
    archived) is tf1_sparse.LazyAdamOptimizer: rows a sparse gradient names take Adam's step, the
    others and their moments stay; a first step equals exact Adam's on those rows."""
    import tf1_sparse

    w0 = np.arange(8, dtype=np.float32).reshape(4, 2)
    out = {}
    for name, opt in (("lazy", tf1_sparse.LazyAdamOptimizer), ("exact", tf1.train.AdamOptimizer)):
        with tf.Graph().as_default() as g:
            grad = tf.IndexedSlices(tf.constant([[1.0, -1.0], [0.5, 2.0]]), tf.constant([1, 3]), tf.constant([4, 2]))
            w = tf1.get_variable("w", initializer=w0)
            step = opt(0.1).apply_gradients([(grad, w)])
        with tf1.Session(graph=g) as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(step)
            out[name] = sess.run(w)
    assert np.array_equal(out["lazy"][[0, 2]], w0[[0, 2]])
    np.testing.assert_allclose(out["lazy"][[1, 3]], out["exact"][[1, 3]], rtol=1e-6)


def test_porting_tf_layers_dense_and_its_written_out_replacement():
    """Loud on Keras 3 (TF >= 2.16): tf1.layers.dense raises; under Keras 2 (TF 2.12) it runs. Its
    replacement, get_variable under the layer's scope, has its names (dense/kernel, dense/bias) and,
    given the same values, its numbers: a checkpoint from either restores into the other."""
    x0 = np.array([[1.0, 2.0, -1.0]], np.float32)
    with tf.Graph().as_default() as g:
        x = tf.constant(x0)
        with tf1.variable_scope("dense"):
            w = tf1.get_variable("kernel", [3, 2], initializer=tf1.glorot_uniform_initializer(seed=3))
            b = tf1.get_variable("bias", [2], initializer=tf1.zeros_initializer())
        ours = tf.matmul(x, w) + b
    ours, w0 = run(g, [ours, w])
    with tf.Graph().as_default() as g:
        x = tf.constant(x0)
        if KERAS3:
            with pytest.raises(AttributeError, match="Keras 3"):
                tf1.layers.dense(x, 2)
            return
        y = tf1.layers.dense(x, 2, kernel_initializer=tf1.constant_initializer(w0))
        assert sorted(v.op.name for v in tf1.global_variables()) == ["dense/bias", "dense/kernel"]
    np.testing.assert_allclose(run(g, y), ours, rtol=1e-6)


def test_porting_app_flags_casts_and_dimensions():
    """Loud: tf.app, tf.to_float and Dimension.value are gone from TF 2 (tf.compat.v1 keeps app.flags,
    a wrapper of absl.flags, and to_float); x.shape[1] is an int, tf1.dimension_value reads both."""
    assert not hasattr(tf, "app") and not hasattr(tf, "to_float")
    tf1.app.flags.DEFINE_integer("porting_test_epochs", 10, "an old code base's flag")
    flags = tf1.app.flags.FLAGS
    flags(["prog", "--porting_test_epochs=3"])
    assert flags.porting_test_epochs == 3
    with tf.Graph().as_default() as g:
        x = tf1.placeholder(tf.int32, [None, 784])
        assert isinstance(x.shape[1], int) and not hasattr(x.shape[1], "value")
        assert tf1.dimension_value(x.shape[1]) == 784
        old, new = tf1.to_float(x), tf.cast(x, tf.float32)
    assert old.dtype == new.dtype == tf.float32
    a, b = run(g, [old, new], {x: np.arange(784).reshape(1, 784)}, init=False)
    assert np.array_equal(a, b)


def read_data_sets(folder, validation_size=5000):
    """The guide's replacement for the tutorials' input_data.read_data_sets(folder) (its images):
    float32 in [0, 1] (uint8 times 1 / 255, as its DataSet did), the first 5,000 training images held
    out for validation. Returns (train, validation, test)."""
    import gzip
    import os

    def images(name):
        with gzip.open(os.path.join(folder, name)) as f:
            data = f.read()
        n, rows, cols = np.frombuffer(data, ">i4", 3, 4)
        return np.multiply(np.frombuffer(data, np.uint8, n * rows * cols, 16).reshape(n, rows * cols).astype(np.float32),
                           1.0 / 255.0)

    train = images("train-images-idx3-ubyte.gz")
    return train[validation_size:], train[:validation_size], images("t10k-images-idx3-ubyte.gz")


def test_porting_the_tutorials_mnist_reader(mnist_dir):
    """Loud: tensorflow.examples.tutorials is gone. The guide's ten lines give what read_data_sets
    gave: 55,000 / 5,000 / 10,000 images of 784 float32 values in [0, 1], the validation images the
    first 5,000 of the training file, each pixel the byte over 255."""
    import tae_data

    with pytest.raises(ImportError):
        __import__("tensorflow.examples.tutorials.mnist")
    train, validation, test = read_data_sets(mnist_dir)
    assert (train.shape, validation.shape, test.shape) == ((55000, 784), (5000, 784), (10000, 784))
    assert train.dtype == np.float32 and train.min() == 0 and train.max() == 1
    raw = tae_data.read_idx(mnist_dir / "train-images-idx3-ubyte.gz").reshape(60000, 784)
    np.testing.assert_allclose(validation, raw[:5000] / 255.0, atol=1e-7)  # the first 5,000, held out
    np.testing.assert_allclose(train[-1], raw[-1] / 255.0, atol=1e-7)


def test_porting_seeds_belong_to_the_graph():
    """Silent: tf.random.set_seed seeds TF 2's eager context, not a tf.Graph built afterwards: its
    initial values differ run to run. tf1.set_random_seed inside the graph's block makes them
    repeat, as tf.set_random_seed did in TF 1.x."""
    def initial(seed_inside):
        with tf.Graph().as_default() as g:
            if seed_inside:
                tf1.set_random_seed(7)
            v = tf1.get_variable("v", [5], initializer=tf1.random_normal_initializer())
        return run(g, v)

    tf.random.set_seed(7)
    try:
        assert not np.array_equal(initial(False), initial(False))
    except RuntimeError as e:  # with op determinism on (train.py turns it on), an unseeded random op is refused
        assert "seed" in str(e)
    assert np.array_equal(initial(True), initial(True))


def test_porting_reference_variables_checkpoints_restore_into_resource_ones(tmp_path):
    """TF 1.x made reference variables (VariableV2); tf1.get_variable in a TF 2 graph makes resource
    variables (VarHandleOp: reads ordered by control dependencies). A checkpoint of either restores
    into the other: the format is the same."""
    with tf.Graph().as_default() as g:
        old = tf1.get_variable("w", initializer=np.arange(6, dtype=np.float32).reshape(2, 3), use_resource=False)
        saver = tf1.train.Saver()
    assert old.op.type == "VariableV2"
    with tf1.Session(graph=g) as sess:
        sess.run(tf1.global_variables_initializer())
        path = saver.save(sess, str(tmp_path / "old"))
    with tf.Graph().as_default() as g:
        new = tf1.get_variable("w", [2, 3], initializer=tf1.zeros_initializer())
        saver = tf1.train.Saver()
    assert new.op.type == "VarHandleOp"
    with tf1.Session(graph=g) as sess:
        saver.restore(sess, path)
        assert sess.run(new).tolist() == [[0, 1, 2], [3, 4, 5]]


def test_porting_queue_runners_and_tf_data_give_the_same_batches():
    """tf1.train's queue-runner input (slice_input_producer, batch, start_queue_runners) still runs in
    a TF 2 graph, with its threads; tf.data's from_tensor_slices(...).batch() is the replacement and
    gives the same batches (unshuffled), with no threads to start or stop."""
    data = np.arange(20, dtype=np.float32).reshape(10, 2)
    with tf.Graph().as_default() as g:
        tf1.set_random_seed(0)
        [row] = tf1.train.slice_input_producer([tf.constant(data)], shuffle=False)
        queued = tf1.train.batch([row], batch_size=5)
        drawn = tf1.data.make_one_shot_iterator(tf.data.Dataset.from_tensor_slices(data).batch(5)).get_next()
    with tf1.Session(graph=g) as sess:
        coord = tf1.train.Coordinator()
        threads = tf1.train.start_queue_runners(sess, coord)
        a, b = sess.run(queued), sess.run(drawn)
        coord.request_stop()
        coord.join(threads)
    assert np.array_equal(a, data[:5]) and np.array_equal(b, data[:5])


# --- the library as a drop-in ----------------------------------------------------------------------------------

import tf1_tied_ae as tae  # noqa: E402


def tf1_2017_graph(values, dims, l2, lr):
    """docs/port/tied_ae_2017.py's graph through tf.compat.v1, with contrib's meanings: l2_regularizer as
    l2 * l2_loss, the variables given these initial values, keep_prob 1 (no noise)."""
    with tf.Graph().as_default() as g:
        tf1.set_random_seed(0)  # dropout's op, with keep_prob 1
        x = tf1.placeholder(tf.float32, [None, dims[0]])
        W1, b1 = tf1.get_variable("W1", initializer=values[0]), tf1.get_variable("b1", initializer=values[1])
        W2, b2 = tf1.get_variable("W2", initializer=values[2]), tf1.get_variable("b2", initializer=values[3])
        b3, b4 = tf1.get_variable("b3", initializer=values[4]), tf1.get_variable("b4", initializer=values[5])
        noisy = tf1.nn.dropout(x, keep_prob=1.0) * 1.0
        h1 = tf.nn.elu(tf.matmul(noisy, W1) + b1)
        code = tf.matmul(h1, W2) + b2
        h3 = tf.nn.elu(tf.matmul(code, tf.transpose(W2)) + b3)
        logits = tf.matmul(h3, tf.transpose(W1)) + b4
        xent = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits))
        loss = xent + l2 * (tf.nn.l2_loss(W1) + tf.nn.l2_loss(W2))
        train = tf1.train.AdamOptimizer(lr).minimize(loss)
    return g, x, xent, loss, train


def port_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("tied_ae_ported", ROOT / "docs" / "port" / "tied_ae_ported.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_porting_the_worked_port_computes_what_the_2017_script_did():
    """The port's model and the 2017 graph (contrib at its 1.x meaning), from the same initial values
    on the same batches, noise off: the same cross-entropy and loss with the L2 term, step by step
    over 25 Adam steps (to float32 rounding: two graphs)."""
    port = port_module()
    flags = type("Flags", (), dict(keep_prob=1.0, l2=1e-3, learning_rate=1e-2, seed=0))
    cfg = port.config(flags, 64)
    ae = tae.build(cfg)
    names = ["encoder/layer_0/kernel", "encoder/layer_0/bias", "encoder/layer_1/kernel", "encoder/layer_1/bias",
             "decoder/layer_0/bias", "decoder/layer_1/bias"]
    batches = np.random.RandomState(1).rand(25, 32, 64).astype(np.float32)
    with tf1.Session(graph=ae.graph) as sess:
        sess.run(ae.init_op)
        values = sess.run([ae.variables[n] for n in names])
        ours = [sess.run([ae.train.training.loss, ae.train.training.objective, ae.train.train_op], {ae.x: b})[:2]
                for b in batches]
    g, x, xent, loss, train = tf1_2017_graph(values, cfg.dims, flags.l2, flags.learning_rate)
    with tf1.Session(graph=g) as sess:
        sess.run(tf1.global_variables_initializer())
        theirs = [sess.run([xent, loss, train], {x: b})[:2] for b in batches]
    np.testing.assert_allclose(ours, theirs, rtol=2e-5)
    assert ours[-1][0] < ours[0][0]


def test_porting_the_worked_port_runs_on_the_digits(tmp_path, capsys):
    port = port_module()
    loss = port.main(["--digits", "--epochs", "3", "--save_path", str(tmp_path / "model.ckpt")])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1", "epoch 2", "epoch 3"]
    assert float(lines[-1].split()[-1]) == pytest.approx(loss, abs=1e-4) and loss < float(lines[0].split()[-1])
    names = {n for n, _ in tf.train.list_variables(str(tmp_path / "model.ckpt"))}
    assert {"encoder/layer_0/kernel", "decoder/layer_1/bias", "train/encoder/layer_0/kernel/Adam"} <= names


def test_porting_build_into_the_callers_graph_on_its_own_tensor():
    """build(cfg, x=) puts the model into the graph of the caller's tensor (here a tf.data batch),
    at its top scope, and leaves the graph open: the caller adds ops, finalises, runs."""
    data = np.random.RandomState(0).rand(64, 16).astype(np.float32)
    with tf.Graph().as_default() as g:
        tf1.set_random_seed(3)  # the caller's seed: build sets none in a graph it was handed
        batch = tf1.data.make_one_shot_iterator(tf.data.Dataset.from_tensor_slices(data).repeat().batch(8)).get_next()
        ae = tae.build(tae.AEConfig(dims=(16, 8, 4), learning_rate=1e-2), x=batch)
        assert ae.graph is g and not g.finalized and ae.x is batch
        mine = tf.reduce_mean(ae.train.code, name="my_summary")  # the caller's own op, after build
    g.finalize()
    with tf1.Session(graph=g) as sess:
        sess.run(ae.init_op)
        losses = [sess.run([ae.train.loss, ae.train.train_op])[0] for _ in range(40)]
        sess.run(mine)
    assert losses[-1] < losses[0]
    with pytest.raises(ValueError, match=r"x must be \[batch, 16\]"):
        with tf.Graph().as_default():
            tae.build(tae.AEConfig(dims=(16, 8)), x=tf1.placeholder(tf.float32, [None, 15]))


def test_porting_encode_and_decode_beside_the_callers_own_head():
    """The model's pieces alone in the caller's graph (its variables, encode, decode: the tying),
    trained by the caller's own loss and optimizer: one SGD step moves the variables exactly as
    build()'s own head with optimizer="sgd" does, from the same initial values."""
    cfg = tae.AEConfig(dims=(12, 6, 3), mode="tied", optimizer="sgd", learning_rate=0.1, seed=5)
    x0 = np.random.RandomState(2).rand(10, 12).astype(np.float32)
    ae = tae.build(cfg)
    with tf1.Session(graph=ae.graph) as sess:
        sess.run(ae.init_op)
        start = sess.run(ae.variables)
        sess.run(ae.train.train_op, {ae.x: x0})
        theirs = sess.run(ae.variables)
    with tf.Graph().as_default() as g:
        tf1.set_random_seed(0)  # the initial values are replaced by build's (load)
        x = tf1.placeholder(tf.float32, [None, 12])
        (enc_w, enc_b), (_, dec_b) = tae.encoder_variables(cfg), tae.decoder_variables(cfg)
        _, recon = tae.decode(cfg, tae.encode(cfg, x, enc_w, enc_b), dec_b, encoder_kernels=enc_w)
        my_loss = tf.reduce_mean(tf.square(recon - x))  # the caller's head: its own loss, its own optimizer
        step = tf1.train.GradientDescentOptimizer(0.1).minimize(my_loss, var_list=enc_w + enc_b + dec_b)
        names = {v.op.name: v for v in tf1.global_variables()}
        load = tf.group(*[names[n].assign(value) for n, value in start.items()])
    with tf1.Session(graph=g) as sess:
        sess.run(load)
        sess.run(step, {x: x0})
        ours = sess.run({n: names[n] for n in start})
    for name in start:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-5, atol=1e-7)


def other_code_base_checkpoint(path, dims):
    """A checkpoint written by a TF1-style graph under its own names (tied_ae_2017.py's): W1, b1, W2, b2, b3, b4."""
    shapes = {"W1": dims[:2], "b1": dims[1:2], "W2": dims[1:3], "b2": dims[2:3], "b3": dims[1:2], "b4": dims[:1]}
    rng = np.random.RandomState(4)
    with tf.Graph().as_default() as g:
        variables = {n: tf1.get_variable(n, initializer=rng.randn(*s).astype(np.float32)) for n, s in shapes.items()}
        saver = tf1.train.Saver()
    with tf1.Session(graph=g) as sess:
        sess.run(tf1.global_variables_initializer())
        saver.save(sess, str(path))
        return sess.run(variables)


MAP_2017 = {"W1": "encoder/layer_0/kernel", "b1": "encoder/layer_0/bias", "W2": "encoder/layer_1/kernel",
            "b2": "encoder/layer_1/bias", "b3": "decoder/layer_0/bias", "b4": "decoder/layer_1/bias"}


def test_porting_another_code_bases_checkpoint_restores_under_a_map(tmp_path):
    """build(init_from=, init_map=) (TF1's init_from_checkpoint) starts the model from a checkpoint
    under other names; a Saver built from a dict restores the same; a missing name or another shape
    is refused naming the variable, before anything is built."""
    dims = (20, 8, 4)
    stored = other_code_base_checkpoint(tmp_path / "old.ckpt", dims)
    cfg = tae.AEConfig(dims=dims, mode="tied", activation="elu")
    ae = tae.build(cfg, init_from=str(tmp_path / "old.ckpt"), init_map=MAP_2017)
    with tf1.Session(graph=ae.graph) as sess:
        sess.run(ae.init_op)
        got = sess.run(ae.variables)
    assert all(np.array_equal(got[new], stored[old]) for old, new in MAP_2017.items())
    other = tae.build(cfg, finalize=False)  # the same through a Saver made from a dict {checkpoint name: variable}
    with other.graph.as_default():
        saver = tf1.train.Saver({old: other.variables[new] for old, new in MAP_2017.items()})
    with tf1.Session(graph=other.graph) as sess:
        saver.restore(sess, str(tmp_path / "old.ckpt"))
        assert np.array_equal(sess.run(other.variables["encoder/layer_1/kernel"]), stored["W2"])
    with pytest.raises(ValueError, match="holds no 'W9'"):
        tae.build(cfg, init_from=str(tmp_path / "old.ckpt"), init_map={**MAP_2017, "W9": "encoder/layer_0/kernel"})
    with pytest.raises(ValueError, match=r"'W1' is \[20, 8\], the model's encoder/layer_0/kernel \[20, 6\]"):
        tae.build(tae.AEConfig(dims=(20, 6, 4), mode="tied"), init_from=str(tmp_path / "old.ckpt"),
                  init_map=MAP_2017)


def test_porting_train_py_starts_from_another_checkpoint(tmp_path, capsys):
    """--init-from CKPT --init-map FILE: the run's ckpt-0 holds the checkpoint's values; a map that
    does not fit is one line naming the variable, and nothing is written."""
    import json

    from conftest import call

    stored = other_code_base_checkpoint(tmp_path / "old.ckpt", (64, 32, 16))
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps(MAP_2017))
    common = ["--dataset", "digits", "--dims", "64,32,16", "--mode", "tied", "--init-from", tmp_path / "old.ckpt",
              "--init-map", mapping]
    code, _, err = call(capsys, *common, "--epochs", "0", "--out", tmp_path / "run")
    assert code == 0, err
    kernel = tf.train.load_variable(str(tmp_path / "run" / "ckpt-0"), "encoder/layer_0/kernel")
    assert np.array_equal(kernel, stored["W1"])
    code, _, err = call(capsys, *common[:3], "64,32,8", *common[4:], "--out", tmp_path / "refused")
    assert code == 2 and err.count("\n") == 1 and "--init-from: the checkpoint's 'W2' is [32, 16]" in err, err
    assert not (tmp_path / "refused").exists()


def test_porting_activations_and_the_code_layers_default():
    """softplus among the activations (NumPy's log(1 + e^x)); the code layer is linear unless
    code_activation says otherwise: a code base whose code was ELU sets it, or None follows `activation`."""
    assert tae.AEConfig(activation="elu").code_activation == "linear"
    assert tae.AEConfig(activation="elu", code_activation=None).code_activation == "elu"
    assert "does not\n    follow `activation`" in tae.AEConfig.__doc__
    assert tae.AEConfig(output_activation="tanh").output_activation == "tanh"  # a code base's tanh output
    cfg = tae.AEConfig(dims=(5, 3), activation="softplus", code_activation="softplus", output_activation="linear")
    x0 = np.random.RandomState(0).randn(4, 5).astype(np.float32)
    ae = tae.build(cfg)
    with tf1.Session(graph=ae.graph) as sess:
        sess.run(ae.init_op)
        code, w, b = sess.run([ae.train.code, ae.variables["encoder/layer_0/kernel"],
                               ae.variables["encoder/layer_0/bias"]], {ae.x: x0})
    np.testing.assert_allclose(code, np.log1p(np.exp(x0 @ w + b)), rtol=1e-5)
