"""train.py's training loop: one model in one run folder, from a new start or the newest
checkpoint, with RBM pretraining first when asked (pretrain.py). It owns the Session and the Saver;
the graph comes from tf1_tied_ae.build. Everything it writes goes through runs.atomic_write or
TensorFlow's Saver, so a kill leaves each file whole or absent."""
import dataclasses
import os
import signal
import sys
import time

import numpy as np

import runs
from runs import Stopped, UsageError

EXIT_DIVERGED = 3
# Steps per Session call (Head.train_steps): amortises the call's overhead; Ctrl-C, the progress
# bar and the non-finite check act between calls (the losses of every step are still returned).
STEPS_PER_CALL = 16


class StopRequest:
    """SIGINT/SIGTERM handler: remembers the signal; the loop stops at the next step boundary."""

    def __init__(self):
        self.signum = None

    def __call__(self, signum, frame):
        self.signum = signum

    def __enter__(self):
        self.previous = {s: signal.signal(s, self) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def evaluate(sess, head, x, data, chunk=2000):
    """(mean loss, mean sum of squared errors per example) over `data`, fed through ae.x."""
    loss = sse = 0.0
    for i in range(0, len(data), chunk):
        part = data[i : i + chunk]
        l, s = sess.run([head.loss, head.sse], {x: part})
        loss += float(l) * len(part)
        sse += float(np.sum(s, dtype=np.float64))
    return loss / len(data), sse / len(data)


def epoch_order(seed, epoch, n):
    """The epoch's shuffled order: a function of (seed, epoch) alone, so a resumed run repeats it."""
    return np.random.RandomState([seed or 0, epoch]).permutation(n).astype(np.int32)


def summary(tf, **values):
    return tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(tag=k, simple_value=v) for k, v in values.items()])


def write_config(out, cfg, run, ds, compare=False):
    runs.write_json(os.path.join(out, "config.json"), {"model": dataclasses.asdict(cfg), "run": run,
                                                       "compare": compare, "data_source": ds.source})


def rbm_config(cfg, run):
    import tf1_rbm

    momentum = run["rbm_momentum"]
    try:
        return tf1_rbm.RBMConfig(dims=cfg.dims, linear_top=cfg.code_activation == "linear",
                                 learning_rate=run["rbm_lr"], learning_rate_linear=run["rbm_lr_linear"],
                                 weight_cost=run["rbm_weight_cost"], initial_momentum=momentum[0],
                                 final_momentum=momentum[1], seed=cfg.seed)
    except ValueError as e:
        raise UsageError(f"--rbm-*: {e}") from None


def start(tf, sess, ae, cfg, run, ds, out, resume, metrics, stop, log):
    """Restore the newest checkpoint of `out`; or initialise (from RBMs when --pretrain rbm), save
    ckpt-0. Returns the checkpoint restored, or None."""
    import tf1_rbm
    import tf1_tied_ae as tae
    from pretrain import pretrain_run

    latest = tf.train.latest_checkpoint(out) if resume else None
    if latest:
        runs.restore(tf, sess, ae.saver, latest)
        return latest
    if not resume:
        write_config(out, cfg, run, ds)
        metrics["status"] = "running"
        runs.write_json(os.path.join(out, "metrics.json"), metrics)
    sess.run(ae.init_op)
    if run["pretrain"] == "rbm":
        layers = pretrain_run(tf, rbm_config(cfg, run), run["pretrain_epochs"], run["rbm_batch_size"], ds, out,
                              metrics, stop, log)
        tae.load_values(sess, ae, tf1_rbm.unrolled_values(layers, decoder_kernels=cfg.mode == "untied"))
        if ae.sync_op is not None:
            sess.run(ae.sync_op)
        log(f"unrolled {len(layers)} RBMs into the {cfg.mode} autoencoder")
    ae.saver.save(sess, os.path.join(out, "ckpt"), global_step=ae.global_step, write_meta_graph=False)
    return None


def train_run(tf, cfg, run, ds, out, resume, log=print, keep_data=False):
    """Train one model in run folder `out` (new, or resumed from its newest checkpoint).
    Once the training set is in the graph, ds.train is dropped unless keep_data."""
    import tf1_tied_ae as tae

    tf1 = tf.compat.v1
    n, batch, total = len(ds.train), run["batch_size"], run["epochs"]
    steps = n // batch  # per epoch; the shuffled remainder waits for a later epoch
    tied_epochs = total - run["untie_epochs"]
    metrics_path, prefix = os.path.join(out, "metrics.json"), os.path.join(out, "ckpt")
    metrics = (runs.read_json(metrics_path) if resume else None) or {"epochs": []}
    ae = tae.build(cfg, resident=(n, batch))
    with StopRequest() as stop, tf1.Session(graph=ae.graph) as sess:
        latest = start(tf, sess, ae, cfg, run, ds, out, resume, metrics, stop, log)
        sess.run(ae.resident.init_op)  # not in a checkpoint: the data is not part of the model
        tae.load_resident(sess, ae.resident, ds.train)
        if not keep_data:
            ds.train = None  # the graph's copy is the one the run uses
        step = int(sess.run(ae.global_step))
        done, offset = divmod(step, steps)
        metrics["epochs"] = [m for m in metrics["epochs"] if m["epoch"] <= done]
        partial = metrics.pop("partial", None)
        carried = partial if partial and partial["global_step"] == step and offset else {"loss_sum": 0.0, "seconds": 0.0}
        if latest:
            write_config(out, cfg, run, ds)  # a longer --epochs becomes part of the run
            log(f"resuming {out} at epoch {done + 1}" + (f", step {offset + 1}" if offset else "") + f" from {latest}")
        writer = tf1.summary.FileWriter(out, None if latest else ae.graph)
        progress = sys.stdout.isatty()
        try:
            for epoch in range(done, total):
                untied = cfg.mode == "tied-untied" and epoch >= tied_epochs
                if untied and not sess.run(ae.untied):
                    sess.run(ae.untie_op)
                    log(f"epoch {epoch + 1}: untied the decoder (decoder kernels <- encoder kernels^T)")
                head = tae.stage_head(ae, untied)
                sess.run(ae.resident.start_epoch_op, {ae.resident.order_placeholder: epoch_order(cfg.seed, epoch, n),
                                                      ae.resident.start_placeholder: offset})
                bar = tf.keras.utils.Progbar(steps, unit_name="step") if progress else None
                loss_sum, t0 = carried["loss_sum"], time.time() - carried["seconds"]
                k = offset
                while k < steps:  # STEPS_PER_CALL steps per Session call, drawn and run in the graph
                    chunk = min(STEPS_PER_CALL, steps - k)
                    losses = sess.run(head.train_steps, {ae.resident.steps_placeholder: chunk})
                    bad = np.flatnonzero(~np.isfinite(losses))
                    if bad.size:
                        metrics["status"] = "diverged"
                        runs.write_json(metrics_path, metrics)
                        raise Stopped(EXIT_DIVERGED, f"non-finite loss ({losses[bad[0]]}) at epoch {epoch + 1}, "
                                      f"step {k + bad[0] + 1}; stopped, the last good checkpoint is kept "
                                      f"({tf.train.latest_checkpoint(out)}); lower --lr (now {cfg.learning_rate})")
                    loss_sum += float(np.sum(losses, dtype=np.float64))
                    k += chunk
                    if bar:
                        bar.update(k, [("loss", float(losses[-1]))])
                    if stop.signum is not None and k < steps:
                        metrics["partial"] = {"global_step": epoch * steps + k, "loss_sum": loss_sum,
                                              "seconds": time.time() - t0}
                        metrics["status"] = "interrupted"
                        runs.write_json(metrics_path, metrics)
                        path = ae.saver.save(sess, prefix, global_step=ae.global_step, write_meta_graph=False)
                        code = 130 if stop.signum == signal.SIGINT else 128 + stop.signum
                        raise Stopped(code, f"interrupted at epoch {epoch + 1}, step {k}; saved {path}; "
                                      f"resume with: python train.py --out {out} --resume")
                seconds = time.time() - t0
                offset, carried = 0, {"loss_sum": 0.0, "seconds": 0.0}
                if cfg.mode == "sync" and cfg.sync_every == "epoch":
                    sess.run(ae.sync_op)
                test_loss, sse = evaluate(sess, head, ae.x, ds.test)
                before = metrics["epochs"][-1]["train_seconds"] if metrics["epochs"] else 0.0
                record = {"epoch": epoch + 1, "stage": "untied" if untied else cfg.mode.split("-")[0],
                          "train_loss": loss_sum / steps, "test_loss": test_loss, "test_mse": sse / cfg.dims[0],
                          "test_sse_per_image": sse, "seconds": seconds, "samples_per_s": steps * batch / seconds,
                          "train_seconds": before + seconds}
                metrics["epochs"].append(record)
                metrics["status"] = "running"
                runs.write_json(metrics_path, metrics)  # before the checkpoint: see README, "Kills"
                ae.saver.save(sess, prefix, global_step=ae.global_step, write_meta_graph=False)
                writer.add_summary(summary(tf, **{"loss/train": record["train_loss"], "loss/test": test_loss,
                                                  "test/sse_per_image": sse}), epoch + 1)
                log(f"epoch {epoch + 1}/{total} [{record['stage']}] train loss {record['train_loss']:.5f}  "
                    f"test loss {test_loss:.5f}  test sse/image {sse:.3f}  {seconds:.1f}s  "
                    f"{record['samples_per_s']:.0f} samples/s")
            finish(tf, sess, ae, cfg, ds, out, metrics, metrics_path, total, tied_epochs, log)
        finally:
            writer.close()
    return metrics


def finish(tf, sess, ae, cfg, ds, out, metrics, metrics_path, total, tied_epochs, log):
    """The final evaluation, the figures, and metrics.json's `final` (written last)."""
    import tf1_tied_ae as tae

    head = tae.stage_head(ae, cfg.mode == "tied-untied" and total > tied_epochs)
    test_loss, sse = evaluate(sess, head, ae.x, ds.test)
    recon = sess.run(head.reconstruction, {ae.x: ds.test[:10]})
    if ds.image_shape:
        runs.save_reconstructions(os.path.join(out, "recon.png"), ds.test[:10], recon, ds.image_shape)
    history = metrics["epochs"]
    runs.save_curves(os.path.join(out, "curves.png"),
                     {"train": [(m["epoch"], m["train_loss"]) for m in history],
                      "test": [(m["epoch"], m["test_loss"]) for m in history]},
                     f"{cfg.loss} loss", f"{cfg.mode} {'-'.join(map(str, cfg.dims))} on {ds.name}")
    params = sum(int(np.prod(v.shape.as_list())) for v in head.var_list)
    metrics["final"] = {"test_loss": test_loss, "test_mse": sse / cfg.dims[0], "test_sse_per_image": sse,
                        "epochs": len(history), "trainable_params": params,
                        "train_seconds": history[-1]["train_seconds"] if history else 0.0}
    metrics["status"] = "done"
    runs.write_json(metrics_path, metrics)
    log(f"final: test mse {sse / cfg.dims[0]:.5f}, test sum of squared errors per image {sse:.3f}")
