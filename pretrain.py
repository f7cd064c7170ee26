"""train.py's pretraining stage: Hinton & Salakhutdinov's greedy RBM stack (tf1_rbm), in the run
folder, with its own checkpoints (`rbm-ckpt-<step>`, state file `rbm_checkpoint`) and per-RBM,
per-epoch reconstruction errors in metrics.json under `pretrain`. It returns the RBM parameters,
which train.py unrolls into the autoencoder (tf1_rbm.unrolled_values)."""
import os
import signal
import time

import numpy as np

import runs
from runs import Stopped

STATE = "rbm_checkpoint"


def pretrain_run(tf, rcfg, epochs, batch, ds, out, metrics, stop, log):
    """Train every RBM for `epochs` epochs (resuming from the newest rbm checkpoint in `out`).

    metrics: the run's metrics dict (gets `pretrain` and `pretrain_seconds`; written atomically
    before each checkpoint). stop: trainer.StopRequest; a signal raises runs.Stopped after saving.
    Returns [(W, a, b) per RBM] as NumPy arrays.
    """
    import tf1_rbm
    import tf1_tied_ae as tae

    tf1 = tf.compat.v1
    n = len(ds.train)
    steps = n // batch
    stack = tf1_rbm.build_rbms(rcfg, resident=(n, batch))
    metrics_path, prefix = os.path.join(out, "metrics.json"), os.path.join(out, "rbm-ckpt")
    with tf1.Session(graph=stack.graph) as sess:
        latest = tf.train.latest_checkpoint(out, latest_filename=STATE)
        if latest:
            runs.restore(tf, sess, stack.saver, latest)
        else:
            sess.run(stack.init_op)
            stack.saver.save(sess, prefix, global_step=stack.step, latest_filename=STATE, write_meta_graph=False)
        sess.run(stack.resident.init_op)  # not in a checkpoint: the data is not part of the model
        tae.load_resident(sess, stack.resident, ds.train)
        done = int(sess.run(stack.step))
        history = [r for r in metrics.get("pretrain", []) if (r["layer"] * epochs + r["epoch"]) * steps <= done]
        metrics["pretrain"] = history
        partial = metrics.pop("pretrain_partial", None)
        for index in range(done // steps, epochs * len(stack.layers)):
            k, epoch = divmod(index, epochs)
            layer = stack.layers[k]
            offset = done - index * steps if index == done // steps else 0
            carried = partial if partial and partial["step"] == done and offset else {"sse": 0.0, "seconds": 0.0}
            momentum = rcfg.final_momentum if epoch >= rcfg.momentum_switch_epoch else rcfg.initial_momentum
            order = np.random.RandomState([rcfg.seed or 0, 1000 + index]).permutation(n).astype(np.int32)
            sess.run(stack.resident.start_epoch_op, {stack.resident.order_placeholder: order,
                                                    stack.resident.start_placeholder: offset})
            sse, t0 = carried["sse"], time.time() - carried["seconds"]
            for s in range(offset, steps):
                _, err = sess.run([layer.train_op, layer.recon_sse], {stack.momentum: momentum})
                sse += float(np.sum(err, dtype=np.float64))
                if stop.signum is not None and s + 1 < steps:
                    metrics["pretrain_partial"] = {"step": index * steps + s + 1, "sse": sse,
                                                   "seconds": time.time() - t0}
                    metrics["status"] = "interrupted"
                    runs.write_json(metrics_path, metrics)
                    path = stack.saver.save(sess, prefix, global_step=stack.step, latest_filename=STATE,
                                            write_meta_graph=False)
                    code = 130 if stop.signum == signal.SIGINT else 128 + stop.signum
                    raise Stopped(code, f"interrupted while pretraining RBM {k + 1}, epoch {epoch + 1}; saved {path}; "
                                        f"resume with: python train.py --out {out} --resume")
            if not np.isfinite(sse):
                raise Stopped(3, f"non-finite reconstruction error pretraining RBM {k + 1}, epoch {epoch + 1}; "
                                 "lower --rbm-lr")
            seconds = time.time() - t0
            record = {"layer": k, "epoch": epoch + 1, "recon_sse_per_example": sse / (steps * batch),
                      "seconds": seconds}
            metrics["pretrain"].append(record)
            metrics["pretrain_seconds"] = sum(r["seconds"] for r in metrics["pretrain"])
            metrics["status"] = "pretraining"
            runs.write_json(metrics_path, metrics)
            stack.saver.save(sess, prefix, global_step=stack.step, latest_filename=STATE, write_meta_graph=False)
            log(f"RBM {k + 1}/{len(stack.layers)} ({rcfg.dims[k]}-{rcfg.dims[k + 1]}"
                f"{', linear hidden' if layer.linear else ''}) epoch {epoch + 1}/{epochs}: "
                f"reconstruction error {record['recon_sse_per_example']:.3f} per example  {seconds:.1f}s")
            done = (index + 1) * steps
        return [tuple(sess.run([l.weights, l.visible_bias, l.hidden_bias])) for l in stack.layers]
