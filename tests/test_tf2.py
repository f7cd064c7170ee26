"""tf2_tied_ae, the TF2-native model, held to the graph (tf1_tied_ae) as TensorFlow's migration guide
asks ("validate numerical equivalence"): the same loss trace from the same initial values and
batches, checkpoints carried both ways, the same SavedModel signatures; and the shim route
(track_tf1_style_variables) where it runs.

Tolerance: float32, relative 2e-5 over 30 Adam steps. The two compute the same sums in different
graphs (TensorFlow's graph optimiser and Keras's Adam arrange them otherwise: m + (g - m)(1 - b1)
where TF1 writes b1 m + (1 - b1) g), so they agree to rounding, not bit for bit; measured here
3.8e-6 at most, with oneDNN on and off."""
import json

import numpy as np
import pytest
import tensorflow as tf

import tf1_tied_ae as tae
import tf2_tied_ae as tf2ae
from conftest import call

tf1 = tf.compat.v1
RTOL = 2e-5
BATCHES = np.random.RandomState(0).rand(30, 16, 64).astype(np.float32)


def graph_trace(cfg, untie_at=None):
    """The graph's losses over BATCHES (the untie before batch untie_at), its initial and final values."""
    ae = tae.build(cfg)
    with tf1.Session(graph=ae.graph) as sess:
        sess.run(ae.init_op)
        start, losses = sess.run(ae.variables), []
        for k, batch in enumerate(BATCHES):
            if k == untie_at:
                sess.run(ae.untie_op)
            head = ae.finetune if untie_at is not None and k >= untie_at else ae.train
            losses.append(sess.run([head.loss, head.train_op], {ae.x: batch})[0])
        return start, losses, sess.run(ae.variables)


@pytest.mark.parametrize("fields", [dict(mode="tied"), dict(mode="untied"), dict(mode="tied-untied"),
                                    dict(mode="tied", trainable="encoder", loss="xent", weight_decay=1e-3,
                                         activation="sigmoid", optimizer="sgd")])
def test_tf2_loss_trace_equals_the_graphs(fields):
    """30 steps from the graph's own initial values on the same batches (tied-untied: 15 tied, the
    untie, 15 untied with their own optimizer), loss by loss and, at the end, variable by variable;
    "train only the encoder" leaves the decoder's biases where they started, in both."""
    cfg = tae.AEConfig(dims=(64, 16, 4), seed=3, learning_rate=1e-2, **fields)
    untie_at = 15 if cfg.mode == "tied-untied" else None
    start, theirs, end = graph_trace(cfg, untie_at)
    model = tf2ae.TiedAutoEncoder(cfg, start)
    trainer, ours = tf2ae.Trainer(model), []
    for k, batch in enumerate(BATCHES):
        if k == untie_at:
            model.untie()
            trainer = tf2ae.Trainer(model, finetune=True)
        ours.append(float(trainer.step(tf.constant(batch))))
    np.testing.assert_allclose(ours, theirs, rtol=RTOL)
    assert ours[-1] < ours[0]
    for name, variable in model.variables_by_name().items():
        np.testing.assert_allclose(variable.numpy(), end[name], rtol=1e-3, atol=1e-5, err_msg=name)
    if cfg.trainable == "encoder":
        assert np.array_equal(model.variables_by_name()["decoder/layer_1/bias"].numpy(), start["decoder/layer_1/bias"])


@pytest.mark.parametrize("activation", tae.ACTIVATIONS)
def test_tf2_every_activation_computes_the_graphs(activation):
    """tf2_tied_ae keeps its own activation map (it does not import the graph): each name in it means
    the graph's function, as hidden, code and output activation, on one forward pass from equal values."""
    cfg = tae.AEConfig(dims=(64, 16, 4), activation=activation, code_activation=activation,
                       output_activation=activation)
    graph = tae.build_inference(cfg, untied=False)  # the forward pass alone: no heads to build
    with graph.graph.as_default():
        init = tf1.global_variables_initializer()
    with tf1.Session(graph=graph.graph) as sess:
        sess.run(init)
        values, theirs = sess.run([graph.variables, graph.reconstruction], {graph.x: BATCHES[0]})
    ours = tf2ae.TiedAutoEncoder(cfg, values)(tf.constant(BATCHES[0])).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_tf2_refuses_what_only_the_graph_has():
    for fields, words in ((dict(mask_noise=0.1), "mask_noise=0.1 is the graph's alone"),
                          (dict(mode="sync"), "mode='sync' is the graph's alone"),
                          (dict(lr_schedule="cosine", lr_decay_steps=10), "lr_schedule='cosine'")):
        with pytest.raises(ValueError, match=words):
            tf2ae.TiedAutoEncoder(tae.AEConfig(dims=(8, 4), **fields))
    with pytest.raises(ValueError, match="untie belongs to mode tied-untied"):
        tf2ae.TiedAutoEncoder(tae.AEConfig(dims=(8, 4), mode="tied")).untie()


def test_tf2_initial_values_follow_the_graphs_init():
    """Drawn natively: Glorot's bounds, contrib's variance scaling, zero biases; given: the graph's."""
    glorot = tf2ae.TiedAutoEncoder(tae.AEConfig(dims=(400, 300, 100)))
    w = glorot.variables_by_name()["encoder/layer_0/kernel"].numpy()
    assert np.abs(w).max() <= np.sqrt(6 / 700) and np.var(w) == pytest.approx(6 / 700 / 3, rel=0.03)
    he = tf2ae.TiedAutoEncoder(tae.AEConfig(dims=(400, 300, 100), init="he")).variables_by_name()
    assert np.var(he["encoder/layer_0/kernel"].numpy()) * 400 == pytest.approx(2.0, rel=0.03)
    assert not he["encoder/layer_0/bias"].numpy().any()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A train.py run on the digits, tied-untied (its best epoch untied), with its TF1 export."""
    out = tmp_path_factory.mktemp("tf2") / "run"
    import tae_cli

    assert tae_cli.main(["--dataset", "digits", "--mode", "tied-untied", "--epochs", "2", "--batch-size", "100",
                         "--out", str(out)]) == 0
    return out


def test_tf2_a_train_py_checkpoint_reconstructs_equal_images_and_goes_back(trained_run, tmp_path):
    """The run's best checkpoint (a TF1 Saver's) loads into the TF2 model under the graph's names
    and reconstructs what the TF1 inference graph does; the TF2 model's own checkpoint
    (tf.train.Checkpoint) goes back into the graph through build(init_from=, init_map=checkpoint_keys)."""
    import tae_export
    import tae_files

    saved = json.loads((trained_run / "config.json").read_text())
    cfg = tae.AEConfig(**saved["model"])
    path, record = tae_files.RunFolder(trained_run).chosen()
    images = np.random.RandomState(1).rand(20, 64).astype(np.float32)
    trained = tae_export.restore(str(trained_run))
    with trained.sess:
        theirs = trained.sess.run(trained.model.reconstruction, {trained.model.x: images})
    model = tf2ae.from_tf1_checkpoint(cfg, path, untied=trained.decoder == "untied")
    np.testing.assert_allclose(model(tf.constant(images)).numpy(), theirs, rtol=1e-5, atol=1e-6)
    back = tf.train.Checkpoint(model=model).write(str(tmp_path / "tf2" / "ckpt"))
    values = {name: v.numpy() for name, v in model.variables_by_name().items()}
    ae = tae.build(cfg, init_from=back, init_map=tf2ae.checkpoint_keys(model))
    with tf1.Session(graph=ae.graph) as sess:
        sess.run(ae.init_op)
        got = sess.run(ae.variables)
    assert set(got) == set(values) and all(np.array_equal(got[name], values[name]) for name in got)


def test_tf2_saved_model_serves_the_tf1_exports_signatures(trained_run, tmp_path):
    """The TF2 SavedModel has the TF1 export's signatures (encode, reconstruct, the default serving
    one), inputs and outputs by the same names, and answers the same (both loaded by TF 2)."""
    import tae_files

    saved = json.loads((trained_run / "config.json").read_text())
    path, record = tae_files.RunFolder(trained_run).chosen()
    model = tf2ae.from_tf1_checkpoint(tae.AEConfig(**saved["model"]), path, untied=record["decoder"] == "untied")
    ours = tf.saved_model.load(tf2ae.export(model, str(tmp_path / "tf2_export")))
    theirs = tf.saved_model.load(str(trained_run / "export"))
    assert set(ours.signatures) == set(theirs.signatures) == {"encode", "reconstruct", "serving_default"}
    x = tf.constant(np.random.RandomState(2).rand(5, 64).astype(np.float32))
    for name in ours.signatures:
        a, b = ours.signatures[name](x=x), theirs.signatures[name](x=x)
        assert set(a) == set(b)
        for key in a:
            np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), rtol=1e-5, atol=1e-6)


def tf1_style_variables():
    """track_tf1_style_variables and the Keras 2 that goes with it: tf.compat.v1's (TF <= 2.15), else tf_keras's."""
    if hasattr(tf1.keras.utils, "track_tf1_style_variables"):
        return tf1.keras.utils.track_tf1_style_variables, tf.keras
    keras = pytest.importorskip("tf_keras", reason="TF >= 2.16's Keras 3 has no track_tf1_style_variables: it needs "
                                                  "tf_keras (pip install tf-keras, in requirements.txt)")
    from tf_keras.api._v1.keras.utils import track_tf1_style_variables

    return track_tf1_style_variables, keras


def test_tf2_the_shim_route_runs_the_librarys_graph_code_eagerly():
    """TensorFlow's "modelling shims": the library's own graph-building calls (encoder_variables,
    decoder_variables, encode, decode, loss_terms) inside a Keras 2 layer's call decorated with
    track_tf1_style_variables run eagerly, their tf1.get_variable variables made once, under the
    graph's names; trained with a GradientTape, the same loss trace as the graph."""
    track, keras = tf1_style_variables()

    class Shim(keras.layers.Layer):
        def __init__(self, cfg):
            super().__init__()
            self.cfg = cfg

        @track
        def call(self, x):
            cfg = self.cfg
            (ew, eb), (_, db) = tae.encoder_variables(cfg), tae.decoder_variables(cfg)
            logits, recon = tae.decode(cfg, tae.encode(cfg, x, ew, eb), db, encoder_kernels=ew)
            return tae.loss_terms(cfg, x, logits, recon)[0]

    cfg = tae.AEConfig(dims=(64, 16, 4), mode="tied", seed=3, learning_rate=1e-2)
    start, theirs, _ = graph_trace(cfg)
    layer = Shim(cfg)
    tf.random.set_seed(0)  # its first call draws initial values (replaced below); op determinism wants a seed
    layer(tf.constant(BATCHES[0]))
    assert sorted(v.name.split(":")[0] for v in layer.variables) == sorted(start)
    for v in layer.variables:
        v.assign(start[v.name.split(":")[0]])
    optimizer = keras.optimizers.Adam(1e-2, epsilon=1e-8)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = layer(x)
        optimizer.apply_gradients(zip(tape.gradient(loss, layer.trainable_variables), layer.trainable_variables))
        return loss

    np.testing.assert_allclose([float(step(tf.constant(b))) for b in BATCHES], theirs, rtol=RTOL)


def test_tf2_docs_migrating_code_runs_as_written(tmp_path, monkeypatch):
    import re

    from conftest import ROOT

    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "migrating.md").read_text(), flags=re.S)
    assert blocks
    for k, block in enumerate(blocks):
        exec(compile(block, f"docs/migrating.md block {k + 1}", "exec"), {"__name__": "__doc__"})
    assert (tmp_path / "tf2_export" / "saved_model.pb").exists()
