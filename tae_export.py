"""Using a trained run: its model rebuilt for inference from config.json and restored from the
checkpoint its figures describe (the best epoch's, else the newest), codes and reconstructions for
new data (train.py --encode, --reconstruct), and a TF1 SavedModel (export/, written at the end of
every run and by train.py --export).

The SavedModel is built with tf.compat.v1.saved_model from tf1_tied_ae.build_inference's graph:
the model's variables and the clean forward pass, nothing of training. Signatures, each taking
`x` [None, dims[0]] float32: `encode` -> `code`, `reconstruct` -> `reconstruction`; the default
serving signature is `reconstruct`. Tag: `serve`.
"""
import os
import re
import shutil
import tempfile
from typing import NamedTuple, Optional

import numpy as np
import tensorflow as tf

import tae_files
import tf1_tied_ae as tae
from tae_files import RunFolder, Stopped, UsageError

tf1 = tf.compat.v1
EXPORT = "export"
OUTPUTS = {"encode": "codes", "reconstruct": "reconstructions"}


class Trained(NamedTuple):
    """A run's model, restored into a Session of its inference graph."""

    config: tae.AEConfig
    model: tae.Inference
    sess: tf1.Session
    checkpoint: str  # the path restored from
    decoder: str  # "tied" (the encoder's transposes) or "untied" (its own kernels): what that epoch trained
    data_range: Optional[list]  # [min, max] of the run's training data, when config.json has it


def tf_reason(error):
    """The line of a TensorFlow error that says what went wrong, to its first sentence's end. A graph
    execution error says it after the "Node: '...'" line that ends the stack where the op was made."""
    lines = [line.strip() for line in str(getattr(error, "message", error)).splitlines() if line.strip()]
    nodes = [k for k, line in enumerate(lines) if line.startswith("Node:")]
    found = next((line for line in lines[nodes[-1] + 1 if nodes else 0:]
                  if not line.startswith(("[[", "Graph execution error", "Detected at node"))), type(error).__name__)
    sentence = re.match(r"(.+?[.!?])(\s|$)", found)
    return sentence.group(1) if sentence and len(found) > 160 else found


def restore_checkpoint(sess, saver, path):
    """saver.restore, with a damaged checkpoint or one of another model as a UsageError."""
    try:
        saver.restore(sess, path)
    except (tf.errors.OpError, ValueError) as e:
        raise UsageError(f"cannot restore checkpoint {path} ({type(e).__name__}: {tf_reason(e)}); it is damaged or from "
                         "another model: delete its files to fall back to an older one, or start a new run") from None


def decoder_of(cfg, record):
    """Which decoder the epoch `record` trained: recorded in each epoch record ("decoder"); for runs
    written before it was, inferred from the mode and the stage. Before any epoch: the mode's first."""
    if record is not None and "decoder" in record:
        return record["decoder"]
    stage = record["stage"] if record is not None else None
    return "untied" if cfg.mode in ("untied", "sync") or (cfg.mode == "tied-untied" and stage == "untied") else "tied"


def restore(out):
    """The run in folder `out`, restored (a UsageError names what is missing or damaged)."""
    folder = RunFolder(out)
    saved = folder.config()
    if saved is None or "model" not in saved or saved.get("compare"):
        what = "a --compare folder: give one of its variant folders" if saved and saved.get("compare") else \
            "no run (no config.json)"
        raise UsageError(f"--out {out} holds {what}")
    cfg = tae.AEConfig(**saved["model"])
    path, record = folder.chosen()
    decoder = decoder_of(cfg, record)
    model = tae.build_inference(cfg, untied=decoder == "untied")
    sess = tf1.Session(graph=model.graph)
    with model.graph.as_default():  # the Saver's graph path (outside a graph, TF2 would take the eager one)
        restore_checkpoint(sess, model.saver, path)
    return Trained(config=cfg, model=model, sess=sess, checkpoint=path, decoder=decoder, data_range=saved.get("data_range"))


def run_model(trained, data, what, chunk=4096):
    """`what` (encode | reconstruct) of `data` [N, dims[0]], in chunks."""
    tensor = trained.model.code if what == "encode" else trained.model.reconstruction
    parts = [trained.sess.run(tensor, {trained.model.x: data[i : i + chunk]}) for i in range(0, len(data), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, tensor.shape[1]), np.float32)


def export(trained, out):
    """Write the SavedModel to out/export, whole: built in a temporary folder beside it, then put in
    place (a previous export, of fewer epochs, is replaced)."""
    m = trained.model
    target, tmp = RunFolder(out).export_path(), None
    try:
        tmp = tempfile.mkdtemp(prefix=f".{EXPORT}.", dir=out)
        with m.graph.as_default():  # the builder's graph path
            builder = tf1.saved_model.Builder(os.path.join(tmp, EXPORT))
            sig = lambda outputs: tf1.saved_model.predict_signature_def({"x": m.x}, outputs)  # noqa: E731
            reconstruct = sig({"reconstruction": m.reconstruction})
            signatures = {"encode": sig({"code": m.code}), "reconstruct": reconstruct,
                          tf1.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY: reconstruct}
            builder.add_meta_graph_and_variables(trained.sess, [tf1.saved_model.SERVING],
                                                 signature_def_map=signatures, saver=m.saver)
            builder.save()
        if os.path.exists(target):
            os.rename(target, os.path.join(tmp, "old"))
        os.rename(os.path.join(tmp, EXPORT), target)
    except (OSError, tf.errors.OpError) as e:
        reason = getattr(e, "strerror", None) or type(e).__name__
        raise Stopped(tae_files.EXIT_WRITE_FAILED, f"could not write {target} ({reason}); the run's checkpoints are kept; "
                      "make room or fix the folder", then="--export", folder=out) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_outputs(trained, data, path, whats, to=None):
    """Codes and/or reconstructions of `data`, the rows read from `path` (ImagesTask.read_rows), as
    .npy files: `to`, or beside the input (<name>.codes.npy, <name>.reconstructions.npy). An existing
    file is never overwritten."""
    stem = os.path.splitext(os.path.abspath(path))[0]
    targets = {what: to or f"{stem}.{OUTPUTS[what]}.npy" for what in whats}
    for what, target in targets.items():
        if os.path.exists(target):
            raise UsageError(f"{target} exists; move it away or name another file with --to")
        if not os.path.isdir(os.path.dirname(os.path.abspath(target))):
            raise UsageError(f"--to {target}: its folder does not exist")
    for what, target in targets.items():
        result = run_model(trained, data, what)
        try:
            tae_files.atomic_write(target, lambda f, result=result: np.save(f, result))
        except tae_files.WriteFailed as e:
            raise Stopped(tae_files.EXIT_WRITE_FAILED, f"{e}; make room or fix the folder and run it again") from None
    return targets


def recommend(trained, ds, user, count=10, chunk=512):
    """The `count` items with the highest predicted ratings among those `user` has not rated (in any
    of the run's ratings: training, validation or test), from the model's reconstruction of the
    training ratings. ds: the run's tae_ratings_matrix.RatingsSet, rebuilt as the run built it. Returns
    [(item id, predicted rating)], best first (equal predictions: the lower id first)."""
    idx, m = ds.idx, ds.matrix
    row = np.searchsorted(idx.user_ids, user)
    if row >= len(idx.user_ids) or idx.user_ids[row] != user:
        raise UsageError(f"user {user} has no training ratings in this run (its users are ids of the ratings file, "
                         f"{idx.user_ids[0]} to {idx.user_ids[-1]}); give one of them")
    if ds.orientation == "user":  # the user's row, all items
        predicted = run_model(trained, m.dense([row]), "reconstruct")[0]
    else:  # every item's row, the user's column
        predicted = np.concatenate([run_model(trained, m.dense(np.arange(start, min(start + chunk, m.shape[0]))),
                                              "reconstruct")[:, row] for start in range(0, m.shape[0], chunk)])
    predicted = np.clip(predicted.astype(np.float64), *ds.data.scale)
    parts = [ds.data.test] + ([ds.data.validation] if ds.data.validation is not None else [])
    rated = np.unique(np.concatenate([idx.item_ids[ds.trained_items(row)]] + [p.items[p.users == user] for p in parts]))
    candidates = np.flatnonzero(~np.isin(idx.item_ids, rated))
    best = candidates[np.lexsort((idx.item_ids[candidates], -predicted[candidates]))][:count]
    return [(int(idx.item_ids[i]), float(predicted[i])) for i in best]
