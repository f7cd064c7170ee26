"""Random shifts of the training images in the graph (AEConfig.shift) and the learning-rate warm-up
(AEConfig.warmup_steps): against NumPy, the key properties a resume relies on, and train.py's
refusals."""
import json

import numpy as np
import pytest
import tensorflow as tf

import tf1_tied_ae as tae
import tf1_training
from conftest import call, loop_variables
from tf1_config import ConfigError, Schedule

tf1 = tf.compat.v1
DIGITS = ["--dataset", "digits", "--batch-size", "64"]


def moved(image, down, right):
    """NumPy slicing: the image moved down and right (negative: up and left), zeros moved in."""
    h, w = image.shape
    out = np.zeros_like(image)
    out[max(down, 0):h + min(down, 0), max(right, 0):w + min(right, 0)] = \
        image[max(-down, 0):h - max(down, 0), max(-right, 0):w - max(right, 0)]
    return out


def test_shift_images_is_numpy_slicing():
    rng = np.random.RandomState(0)
    x = rng.rand(9, 6 * 7).astype(np.float32)
    offsets = np.array([[a, b] for a in (-2, 0, 2) for b in (-1, 0, 2)], np.int32)
    with tf.Graph().as_default(), tf1.Session() as sess:
        got = sess.run(tf1_training.shift_images(tf.constant(x), (6, 7), tf.constant(offsets), 2))
    want = np.stack([moved(x[k].reshape(6, 7), *offsets[k]).ravel() for k in range(9)])
    assert np.array_equal(got, want)


def shifted_batch(cfg, x, step):
    ae = tae.build(cfg, finalize=False, image_shape=(8, 8))
    with tf1.Session(graph=ae.graph) as sess:
        sess.run(ae.init_op)
        sess.run(ae.global_step.assign(step))
        return sess.run(ae.train.training.input, {ae.x: x})


def test_the_training_pass_moves_each_image_by_its_own_offset_keyed_by_step():
    """Every training image is some offset in [-2, 2]^2 of its input, the offsets vary between the
    images, the same step draws the same offsets and another step others; the clean head's
    reconstruction (evaluation) sees the unmoved input."""
    x = np.random.RandomState(1).rand(32, 64).astype(np.float32) + 0.1  # no zeros: every offset tells
    cfg = tae.AEConfig(dims=(64, 16, 4), shift=2, seed=3)
    a, again, other = shifted_batch(cfg, x, 7), shifted_batch(cfg, x, 7), shifted_batch(cfg, x, 8)
    found = set()
    for k in range(len(x)):
        hits = [(d, r) for d in range(-2, 3) for r in range(-2, 3) if np.array_equal(a[k], moved(x[k].reshape(8, 8), d, r).ravel())]
        assert len(hits) == 1
        found.add(hits[0])
    assert len(found) > 8 and np.array_equal(a, again) and not np.array_equal(a, other)


def test_the_library_needs_the_image_shape():
    with pytest.raises(ValueError, match="image_shape"):
        tae.build(tae.AEConfig(dims=(64, 16, 4), shift=1))
    with pytest.raises(ValueError, match="image_shape"):
        tae.build(tae.AEConfig(dims=(64, 16, 4), shift=1), image_shape=(4, 4))
    with pytest.raises(ConfigError, match="shift"):
        tae.AEConfig(shift=-1)


def test_shifted_training_in_pieces_equals_one_piece():
    """4 + 3 steps of the loop give the variables of 7 single steps, bit for bit: the offsets are
    keyed by the step, so a resumed run moves the images as an uninterrupted one."""
    data = np.random.RandomState(2).rand(16, 64).astype(np.float32)
    cfg = tae.AEConfig(dims=(64, 16, 4), shift=2, mask_noise=0.1)
    build = lambda: tae.build(cfg, Schedule(epochs=1, batch_size=2), 16, image_shape=(8, 8))  # noqa: E731
    found = [loop_variables(build, data, np.arange(16), 2, pieces) for pieces in ((4, 3), (1,) * 7)]
    for name in found[0]:
        assert np.array_equal(found[0][name], found[1][name]), name


def test_warmup_rises_linearly_then_follows_the_schedule():
    cfg = tae.AEConfig(dims=(64, 16, 4), learning_rate=0.01, lr_schedule="cosine", lr_decay_steps=100, warmup_steps=4)
    with tf.Graph().as_default():
        step = tf1.placeholder(tf.int64, [])
        rate = tf1_training.learning_rate(cfg, step)()
        with tf1.Session() as sess:
            got = [sess.run(rate, {step: s}) for s in range(7)]
    cosine = [0.01 * 0.5 * (1 + np.cos(np.pi * s / 100)) for s in range(7)]
    want = [cosine[s] * min(1, (s + 1) / 4) for s in range(7)]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_train_py_shifts_digits_and_refuses_what_has_no_shape(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = call(capsys, *DIGITS, "--shift", "1", "--warmup-steps", "40", "--epochs", "2", "--out", out)
    assert code == 0, err
    config = json.load(open(out / "config.json"))["model"]
    assert config["shift"] == 1 and config["warmup_steps"] == 40
    epoch, _ = json.load(open(out / "metrics.json"))["epochs"]
    assert epoch["learning_rate"] == pytest.approx(1e-3 * 21 / 40)  # the 21st step's: 1,294 digits / 64 = 20 steps done
    flat = tmp_path / "flat.npy"
    np.save(flat, np.random.RandomState(0).rand(50, 10).astype(np.float32))
    for args, words in ((["--dataset", flat, "--dims", "10,4", "--shift", "1"], "--shift moves images"),
                        (["--dataset", "digits", "--shift", "8"], "--shift must be below the images' height"),
                        (["--dataset", "movielens", "--shift", "1"], "--shift does nothing here")):
        code, _, err = call(capsys, *args, "--out", tmp_path / "refused")
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "refused").exists()
