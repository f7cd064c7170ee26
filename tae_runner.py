"""train.py's stage runner: one loop for every stage of a model (tf1_tied_ae.build with a run).

It owns the Session, the Saver, metrics.json, the TensorBoard events, the progress bar, SIGINT and
SIGTERM, the non-finite exit and resume. The training position is the checkpoint's global step and
nothing else: the stage, epoch and step within it follow from the stages' lengths; the epoch in
progress (its step figures and seconds) is restored with the checkpoint (tf1_input's `progress/*`);
metrics records past the checkpoint's step are dropped on resume.

Each epoch: the epoch's order (a function of the seed and the epoch, so a resumed run sees the same
batches), STEPS_PER_CALL steps per Session call, the stage's epoch-end op, evaluation on the
validation and test sets, the record written to metrics.json, then the checkpoint (metrics first: a
kill between the two leaves a record that the resume drops, never a checkpoint without its record),
then, if its validation error is the lowest so far, the best checkpoint (a second Saver; a kill
before it is mended on resume, since the records say which epoch is best). The run ends by
restoring the best epoch and evaluating it on the test set; without a validation split, the last.

What "evaluation" means is the run's scoring object: ImageScoring (loss and SSE per image on the
validation and test arrays; recon.png, codes.png, the 5-NN figures) or RatingScoring (RMSE and MAE
of the validation and test ratings, predicted from the training ratings alone; predictions.csv).
The loop, the checkpoints and the choice of the best epoch are the same for both.
"""
import os
import signal
import re
import sys
import threading
import time

import numpy as np
import tensorflow as tf

import tae_data
import tae_figures
import tae_ratings
import tae_files
import tf1_input
import tf1_tied_ae as tae
from tae_files import Stopped, UsageError, WriteFailed

tf1 = tf.compat.v1
EXIT_DIVERGED, EXIT_WRITE_FAILED = 3, 4
# Steps per Session call: amortises the call's overhead; Ctrl-C, the progress bar and the
# non-finite check act between calls (every step's figure is still returned).
STEPS_PER_CALL = 16
FIGURE = {"epochs": "train_loss", "pretrain": "recon_sse_per_example"}  # what a stage's steps return
TAGS = {"train_loss": "loss/train", "validation_loss": "loss/validation", "test_loss": "loss/test",
        "validation_sse_per_image": "validation/sse_per_image", "test_sse_per_image": "test/sse_per_image",
        "recon_sse_per_example": "pretrain/recon_sse_per_example", "validation_rmse": "validation/rmse",
        "test_rmse": "test/rmse"}  # TensorBoard, by global step
BEST = "best"  # the best epoch's checkpoint: best-<global step>, state file best_checkpoint


def project_codes(train_codes, test_codes):
    """The test codes on the first two principal components of the training codes (float64)."""
    mean = train_codes.mean(axis=0, dtype=np.float64)
    return (test_codes - mean) @ tae_data.top_directions((train_codes - mean).T @ (train_codes - mean), 2)


class StopRequest:
    """SIGINT/SIGTERM handler: remembers the signal; the runner stops at the next call boundary."""

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


def epoch_order(seed, epoch_seed, n):
    """An epoch's shuffled order: a function of (seed, epoch_seed) alone, so a resumed run repeats it."""
    return np.random.RandomState([seed or 0, epoch_seed]).permutation(n).astype(np.int32)


def evaluate(sess, head, x, data, chunk=2000):
    """(mean loss, mean sum of squared errors per example) of `head` over `data`, fed through x."""
    loss = sse = 0.0
    for i in range(0, len(data), chunk):
        part = data[i : i + chunk]
        l, s = sess.run([head.loss, head.sse], {x: part})
        loss += float(l) * len(part)
        sse += float(np.sum(s, dtype=np.float64))
    return loss / len(data), sse / len(data)


def tf_reason(error):
    """The line of a TensorFlow error that says what went wrong, to its first sentence's end. A graph
    execution error says it after the "Node: '...'" line that ends the stack where the op was made."""
    lines = [line.strip() for line in str(getattr(error, "message", error)).splitlines() if line.strip()]
    nodes = [k for k, line in enumerate(lines) if line.startswith("Node:")]
    found = next((line for line in lines[nodes[-1] + 1 if nodes else 0:]
                  if not line.startswith(("[[", "Graph execution error", "Detected at node"))), type(error).__name__)
    sentence = re.match(r"(.+?[.!?])(\s|$)", found)
    return sentence.group(1) if sentence and len(found) > 160 else found


def restore(sess, saver, path):
    """saver.restore, with a damaged checkpoint or one of another model as a UsageError."""
    try:
        saver.restore(sess, path)
    except (tf.errors.OpError, ValueError) as e:
        raise UsageError(f"cannot restore checkpoint {path} ({type(e).__name__}: {tf_reason(e)}); it is damaged or from "
                         "another model: delete its files to fall back to an older one, or start a new run") from None


def train(ae, ds, out, config, log=print, stop=None, keep_data=False, baselines=None, patience=None):
    """Run the stages of `ae` in run folder `out` (new, or resumed from its newest checkpoint) and
    return its metrics. config: written to config.json once the start has succeeded. ds.train
    is dropped once it is in the graph, unless keep_data. stop: an object whose `signum` turns
    non-None to stop (default: SIGINT and SIGTERM). baselines: tae_data.baselines of the run's
    data, recorded in metrics.json and compared with at the end. With ds.validation, the epoch of
    the lowest validation error is kept as the best checkpoint and gives the final figures;
    patience: stop after that many epochs without a lower one."""
    runner = Runner(ae, ds, out, log, patience)
    if baselines is not None:
        runner.metrics["baselines"] = baselines
    with (stop or StopRequest()) as runner.stop, tf1.Session(graph=ae.graph) as runner.sess:
        try:
            try:
                resumed = runner.start(config)
                tf1_input.load(runner.sess, ae.input, ds.train)
                if not (keep_data or getattr(ds, "keeps_training_data", False)):
                    ds.train = None  # the graph's copy is the one the run uses (ratings keep their matrix)
                runner.writer = Events(out, None if resumed else ae.graph)
                for stage in ae.stages:
                    if runner.stopped_early is None:
                        runner.run_stage(stage)
                runner.finish()
            finally:
                if runner.writer is not None:
                    runner.writer.close(quiet=sys.exc_info()[0] is not None)  # a failure in flight is the one to report
        except WriteFailed as e:
            try:
                if runner.metrics.get("status") != "done":  # a failure after the end leaves the run done
                    runner.write_metrics("write failed")  # best effort: the disk may refuse this too
            except WriteFailed:
                pass
            raise Stopped(EXIT_WRITE_FAILED, f"{e}; stopped, the last good checkpoint is kept "
                          f"({runner.newest()}); make room or fix the folder, then resume with: "
                          f"{tae_files.PROGRAM['command']} --out {out} --resume") from None
    return runner.metrics


class Events:
    """The run's TensorBoard events file (tf1.summary.FileWriter), every failure as WriteFailed.

    The FileWriter writes from a thread of its own, and a failed write there (a full disk) kills
    the thread, which logs it and prints a traceback; the writer re-raises it at the next flush or
    close. So the runner flushes after every epoch (the failure surfaces at an epoch's end, after its
    checkpoint), and the thread's own report is held back: WriteFailed says it in one line."""

    THREAD = "EventLoggerThread"  # the FileWriter's thread (tensorflow/python/summary/writer)

    def __init__(self, folder, graph):
        self.folder, self.writer = folder, None
        self.hook, threading.excepthook = threading.excepthook, self._thread_error
        tf.get_logger().addFilter(self._log_filter)
        self.writer = self._guard(tf1.summary.FileWriter, folder, graph)

    def _thread_error(self, args):
        if args.thread is None or args.thread.name != self.THREAD:
            self.hook(args)

    @staticmethod
    def _log_filter(record):
        return not record.getMessage().startswith("EventFileWriter writer thread error")

    def _guard(self, call, *args):
        try:
            return call(*args)
        except Exception as e:  # the writer raises whatever its C++ status maps to (IndexError for EFBIG)
            path, reason = tae_files.failure(e, os.path.join(self.folder, "events.out.tfevents.*"))
            raise WriteFailed(path, reason) from None

    def add(self, summary, step):
        self._guard(self.writer.add_summary, summary, step)

    def flush(self):
        self._guard(self.writer.flush)

    def close(self, quiet=False):
        """Flush and close; quiet: swallow a failure (another one is being reported)."""
        try:
            if self.writer is not None:
                self._guard(self.writer.close)
        except WriteFailed:
            if not quiet:
                raise
        finally:
            threading.excepthook = self.hook
            tf.get_logger().removeFilter(self._log_filter)


class Runner:
    """The state of one run in progress; `train` drives it. Every method runs ops built with the graph."""

    def __init__(self, ae, ds, out, log, patience=None):
        self.ae, self.ds, self.out, self.log, self.patience = ae, ds, str(out), log, patience
        self.metrics_path = os.path.join(self.out, "metrics.json")
        self.metrics = tae_files.read_json(self.metrics_path) or {}
        self.sess = self.stop = self.writer = self.stopped_early = None
        self.bar = sys.stdout.isatty()
        self.scoring = (RatingScoring if isinstance(ds, tae_ratings.RatingsSet) else ImageScoring)(self)

    def start(self, config):
        """Restore the newest checkpoint in the folder, or initialise and save ckpt-0; then write
        config.json. Returns whether a checkpoint was restored."""
        found = tae_files.checkpoints(self.out)
        if found:
            restore(self.sess, self.ae.saver, found[-1][1])
            self.ae.saver.recover_last_checkpoints([path for _, path in found])  # prunes to 3 as it saves
            self.sess.run(self.ae.input.init_op)  # the data is not in a checkpoint
        else:
            self.sess.run(self.ae.init_op)
        tae_files.write_json(os.path.join(self.out, "config.json"), config)
        step = self.step()
        for key in ("epochs", "pretrain"):  # records past the checkpoint belong to a run that was lost
            self.metrics[key] = [r for r in self.metrics.get(key, []) if r["global_step"] <= step]
        self.metrics.pop("final", None)
        self.keep_best_in_step(step)
        if found:
            stage, epoch, k = self.position(step)
            self.log(f"resuming {self.out} at {stage} epoch {epoch + 1}" + (f", step {k + 1}" if k else "")
                     + f" from {os.path.basename(found[-1][1])}")
        else:
            self.write_metrics("running")
            self.save()
        return bool(found)

    def step(self):
        return int(self.sess.run(self.ae.global_step))

    def best_record(self):
        """The epoch record with the lowest validation error so far (the first of equals), or None."""
        key = self.scoring.selection
        scored = [r for r in self.metrics.get("epochs", []) if key in r]
        return min(scored, key=lambda r: r[key], default=None)

    def keep_best_in_step(self, step):
        """On a start: hand the best checkpoint to its Saver (so that the next best replaces it), and
        save it now if the best epoch is the restored one and a kill came between its two saves."""
        best, found = self.best_record(), tae_files.checkpoints(self.out, BEST)
        if found:
            self.ae.best_saver.recover_last_checkpoints([found[-1][1]])
        if best is not None and best["global_step"] == step and (not found or found[-1][0] != step):
            self.save(best=True)
            self.log(f"saved {BEST}-{step}: the best epoch's checkpoint (epoch {best['epoch']}) was missing")

    def position(self, step):
        """(stage name, epoch within it, step within the epoch) of a global step."""
        for s in self.ae.stages:
            if s.epochs and step < s.last_step:
                epoch, k = divmod(step - s.first_step, s.steps_per_epoch)
                return s.name, epoch, k
        return "the end", 0, 0

    def newest(self):
        found = tae_files.checkpoints(self.out)
        return os.path.basename(found[-1][1]) if found else "none"

    def save(self, best=False):
        """A rolling checkpoint (ckpt-<step>, state file `checkpoint`, the last 3 kept), or the best
        one (best-<step>, state file `best_checkpoint`, the model alone)."""
        saver, name = (self.ae.best_saver, BEST) if best else (self.ae.saver, "ckpt")
        prefix = os.path.join(self.out, name)
        try:
            return saver.save(self.sess, prefix, global_step=self.ae.global_step, write_meta_graph=False,
                              latest_filename=f"{BEST}_checkpoint" if best else None)
        except tf.errors.OpError as e:
            raise WriteFailed(f"{prefix}-{self.step()}", tae_files.failure(e)[1]) from None

    def write_metrics(self, status):
        self.metrics["status"] = status
        tae_files.write_json(self.metrics_path, self.metrics)

    def run_stage(self, stage):
        """The stage's epochs from where the global step stands (nothing if it is past them)."""
        step = self.step()
        if not stage.epochs or step >= stage.last_step:
            return
        if step == stage.first_step and stage.enter is not None:
            self.sess.run(stage.enter)  # idempotent: a resume at this very step runs it again
            self.log(f"{stage.name} stage: ran {stage.enter.name} first")
        first, k = divmod(step - stage.first_step, stage.steps_per_epoch)
        for epoch in range(first, stage.epochs):
            if self.stopped_early is not None:
                return
            self.run_epoch(stage, epoch, k)
            k = 0

    def run_epoch(self, stage, epoch, start):
        pipe = self.ae.input
        order = epoch_order(self.ae.config.seed, stage.epoch_seed + epoch, pipe.num_examples)
        self.sess.run(pipe.start_epoch_op, {pipe.order_placeholder: order, pipe.start_placeholder: start,
                                            pipe.batch_size_placeholder: stage.batch_size})
        t0 = time.time() - self.sess.run(pipe.seconds)  # a resumed epoch carries its seconds on
        bar = tf.keras.utils.Progbar(stage.steps_per_epoch, unit_name="step") if self.bar else None
        k = start
        while k < stage.steps_per_epoch:
            n = min(STEPS_PER_CALL, stage.steps_per_epoch - k)
            figures = self.sess.run(stage.steps, {pipe.steps_placeholder: n})
            self.check_finite(stage, epoch, k, figures)
            k += n
            if bar:
                bar.update(k, [(FIGURE[stage.record], float(figures[-1]))])
            if k < stage.steps_per_epoch and self.stop.signum is not None:
                self.interrupt(stage, epoch, k, time.time() - t0)
        self.end_epoch(stage, epoch, time.time() - t0)

    def check_finite(self, stage, epoch, k, figures):
        bad = np.flatnonzero(~np.isfinite(figures))
        if bad.size:
            self.write_metrics("diverged")
            flag = "--rbm-lr" if stage.record == "pretrain" else "--lr"
            raise Stopped(EXIT_DIVERGED, f"non-finite {FIGURE[stage.record]} ({figures[bad[0]]}) in the {stage.name} "
                          f"stage at epoch {stage.first_epoch + epoch + 1}, step {k + bad[0] + 1}; stopped, the last "
                          f"good checkpoint is kept ({self.newest()}); lower {flag}")

    def interrupt(self, stage, epoch, k, seconds):
        """Save where the step stands (the epoch's figures and seconds go with it) and stop."""
        self.sess.run(self.ae.input.set_seconds_op, {self.ae.input.seconds_placeholder: seconds})
        self.write_metrics("interrupted")
        path = os.path.basename(self.save())
        code = 128 + self.stop.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
        raise Stopped(code, f"interrupted in the {stage.name} stage at epoch {stage.first_epoch + epoch + 1}, step {k}; "
                      f"saved {path}; resume with: {tae_files.PROGRAM['command']} --out {self.out} --resume")

    def end_epoch(self, stage, epoch, seconds):
        if stage.epoch_end is not None:
            self.sess.run(stage.epoch_end)
        pipe = self.ae.input
        figure_sum = self.sess.run(pipe.figure_sum)
        done = [r["train_seconds"] for key in ("epochs", "pretrain") for r in self.metrics[key]]
        record = {"epoch": stage.first_epoch + epoch + 1, "stage": stage.name, "global_step": self.step(),
                  FIGURE[stage.record]: figure_sum / stage.steps_per_epoch}
        if stage.head is not None:
            record.update(self.scoring.epoch(stage.head))
        record.update(seconds=seconds, samples_per_s=stage.steps_per_epoch * stage.batch_size / seconds,
                      train_seconds=max(done, default=0.0) + seconds)
        self.metrics[stage.record].append(record)
        self.write_metrics("running")  # before the checkpoints: see the module docstring
        self.save()
        if self.scoring.selection in record and self.best_record() is record:
            self.save(best=True)  # after the rolling one: a kill between the two is mended on resume
        self.report(stage, record)
        self.check_patience(record)
        if self.stop.signum is not None and self.step() < self.ae.stages[-1].last_step:
            code = 128 + self.stop.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
            self.write_metrics("interrupted")
            raise Stopped(code, f"interrupted after epoch {record['epoch']} of the {stage.name} stage; saved "
                          f"{self.newest()}; resume with: {tae_files.PROGRAM['command']} --out {self.out} --resume")

    def check_patience(self, record):
        """Early stopping: `patience` autoencoder epochs since the best one."""
        best = self.best_record()
        if self.patience is None or best is None:
            return
        since = sum(1 for r in self.metrics["epochs"] if r["global_step"] > best["global_step"])
        if since >= self.patience and self.step() < self.ae.stages[-1].last_step:
            self.stopped_early = record["epoch"]
            self.log(f"stopping early: {since} epochs since the best validation error (epoch {best['epoch']}), "
                     f"--patience {self.patience}")

    def report(self, stage, record):
        """The epoch's log line and TensorBoard summaries."""
        keys = (FIGURE[stage.record],) + self.scoring.shown
        shown = {k: record[k] for k in keys if k in record}
        self.writer.add(tf1.Summary(value=[tf1.Summary.Value(tag=TAGS[k] if stage.record == "epochs" else
                                                             f"{TAGS[k]}/{stage.name}", simple_value=v)
                                           for k, v in shown.items()]), record["global_step"])
        self.writer.flush()  # a failed write surfaces here, at the epoch it belongs to
        of = stage.epochs if stage.record == "pretrain" else sum(s.epochs for s in self.ae.stages if s.record == "epochs")
        text = "  ".join(f"{k.replace('_', ' ')} {v:.5g}" for k, v in shown.items())
        self.log(f"epoch {record['epoch']}/{of} [{stage.name}] {text}  {record['seconds']:.1f}s  "
                 f"{record['samples_per_s']:.0f} samples/s")

    def restore_best(self):
        """With a validation split: restore the best epoch's checkpoint and return (its record, the head
        of its stage); else (None, the head after the last stage) on the session as it is."""
        best = self.best_record()
        if best is None:
            return None, tae.final_head(self.ae)
        found = dict(tae_files.checkpoints(self.out, BEST))
        if best["global_step"] not in found:
            raise UsageError(f"{self.out} has no {BEST}-{best['global_step']} checkpoint for its best epoch "
                             f"({best['epoch']}); it was deleted: start a new run")
        restore(self.sess, self.ae.best_saver, found[best["global_step"]])
        return best, next(s.head for s in self.ae.stages if s.name == best["stage"])

    def finish(self):
        """The final evaluation (of the best epoch by validation error, if there is a validation
        split), the figures, and metrics.json's `final` (written last)."""
        best, head = self.restore_best()
        history = self.metrics["epochs"]
        seconds = [r["train_seconds"] for key in ("epochs", "pretrain") for r in self.metrics[key]]
        final = {"epochs": len(history),
                 "trainable_params": sum(int(np.prod(v.shape.as_list())) for v in head.var_list),
                 "train_seconds": max(seconds, default=0.0)}
        figures, text = self.scoring.final(head)
        final.update(figures)
        self.metrics["final"] = final
        self.scoring.curves(history)
        chosen = ""
        if best is not None:
            key = self.scoring.selection
            final.update({"best_epoch": best["epoch"], "best_stage": best["stage"], key: best[key]})
            chosen = f" (epoch {best['epoch']} of {len(history)}, the lowest validation error)"
        if self.stopped_early is not None:
            final["stopped_early"] = self.stopped_early
        self.write_metrics("done")
        self.log(f"final{chosen}: {text}")

    def training_rows(self, fetch, batch=4096):
        """sess.run(fetch) over the training set held in the graph, in its stored order (ae.x
        defaults to the next drawn batch): a list of results, one per batch, the last one short."""
        pipe, n = self.ae.input, self.ae.input.num_examples
        b = min(batch, n)
        feeds = {pipe.order_placeholder: np.arange(n, dtype=np.int32), pipe.batch_size_placeholder: b}
        self.sess.run(pipe.start_epoch_op, feeds)
        out = [self.sess.run(fetch) for _ in range(n // b)]
        if n % b:  # the rest: an order that starts with the last n % b rows, drawn as one batch
            self.sess.run(pipe.start_epoch_op, {pipe.order_placeholder: np.roll(np.arange(n, dtype=np.int32), n % b),
                                                pipe.batch_size_placeholder: n % b})
            out.append(self.sess.run(fetch))
        return out

    def best_mark(self):
        best = self.best_record()
        return {f"best epoch by validation ({best['epoch']})": best["epoch"]} if best else None


class ImageScoring:
    """How an image run is scored: the loss and the sum of squared errors per image on the validation
    and test arrays each epoch; at the end recon.png, codes.png and the 5-NN figures (with labels),
    and the mean and PCA baselines (tae_data.baselines)."""

    selection = "validation_sse_per_image"
    shown = ("validation_loss", "validation_sse_per_image", "test_loss", "test_sse_per_image")

    def __init__(self, runner):
        self.runner = runner

    def epoch(self, head):
        r, record = self.runner, {}
        for part, data in (("validation", r.ds.validation), ("test", r.ds.test)):
            if data is not None:
                loss, sse = evaluate(r.sess, head, r.ae.x, data)
                record.update({f"{part}_loss": loss, f"{part}_mse": sse / r.ae.config.dims[0],
                               f"{part}_sse_per_image": sse})
        return record

    def final(self, head):
        """(figures for metrics.json's final, the final line's text)."""
        r, ds, cfg = self.runner, self.runner.ds, self.runner.ae.config
        test_loss, sse = evaluate(r.sess, head, r.ae.x, ds.test)
        if ds.image_shape:
            recon = r.sess.run(head.reconstruction, {r.ae.x: ds.test[:10]})
            tae_figures.save_reconstructions(os.path.join(r.out, "recon.png"), ds.test[:10], recon, ds.image_shape)
        figures = {"test_loss": test_loss, "test_mse": sse / cfg.dims[0], "test_sse_per_image": sse}
        codes = self.codes_report(head)
        if codes:
            figures["knn5_accuracy"] = codes
        knn = f"; 5-NN accuracy on the codes {codes['codes']:.4f}" if codes else ""
        if codes and codes["pca"] is not None:
            knn += f", on PCA-{codes['pca_components']} {codes['pca']:.4f}"
        return figures, (f"test mse {sse / cfg.dims[0]:.5f}{self.against_baselines()}; "
                         f"test sum of squared errors per image {sse:.3f}{knn}")

    def codes_report(self, head):
        """With class labels: codes.png (the test codes, or their first two principal components,
        beside PCA's first two components of the same images) and the test accuracy of a 5-nearest-
        neighbour classifier on the codes and on PCA with as many components, both fitted on the
        training set. Returns {"codes", "pca", "pca_components"}, or None without labels. Above
        tae_data.PCA_MAX_DIM values per example PCA is left out, as in the baselines ("pca": None)."""
        r, ds, cfg = self.runner, self.runner.ds, self.runner.ae.config
        if ds.train_labels is None or ds.test_labels is None or not len(ds.test):
            return None
        import sklearn
        from sklearn.neighbors import KNeighborsClassifier

        def score(train, test):  # distances in chunks of 64 MB (scikit-learn's default allows 1 GB)
            with sklearn.config_context(working_memory=64):
                return float(KNeighborsClassifier(5).fit(train, ds.train_labels).score(test, ds.test_labels))

        test_codes = np.concatenate([r.sess.run(head.code, {r.ae.x: ds.test[i : i + 4096]})
                                     for i in range(0, len(ds.test), 4096)])
        train_codes = np.concatenate(r.training_rows(head.code))
        result = {"codes": score(train_codes, test_codes), "pca": None, "pca_components": None}
        what = "the 2-value codes" if cfg.dims[-1] == 2 else f"the first 2 principal components of the {cfg.dims[-1]}-value codes"
        shown = test_codes if cfg.dims[-1] == 2 else project_codes(train_codes, test_codes)
        panels = {f"{cfg.mode} autoencoder: {what}\n(5-NN accuracy on all {cfg.dims[-1]}: {result['codes']:.3f})": shown}
        if cfg.dims[0] <= tae_data.PCA_MAX_DIM:
            k = min(cfg.dims[-1], cfg.dims[0])
            train_pca, test_pca = self.training_pca(k)
            result.update(pca=score(train_pca, test_pca), pca_components=k)
            panels[f"PCA: the first 2 components of the images\n(5-NN accuracy on PCA-{k}: {result['pca']:.3f})"] = \
                test_pca[:, :2]
        tae_figures.save_codes(os.path.join(r.out, "codes.png"), panels, ds.test_labels)
        return result

    def training_pca(self, k):
        """The training and the test set projected on the top k principal directions of the graph's
        copy of the training set, fitted a batch at a time (the training set is not held twice)."""
        r = self.runner
        dim, n = r.ae.config.dims[0], r.ae.input.num_examples
        total, scatter = np.zeros(dim), np.zeros((dim, dim))
        for rows in r.training_rows(r.ae.x):
            total += rows.sum(axis=0, dtype=np.float64)
            scatter += rows.T.astype(np.float64) @ rows
        mean = total / n
        top = tae_data.top_directions(scatter - n * np.outer(mean, mean), k)
        project = lambda rows: (rows - mean) @ top  # noqa: E731
        return np.concatenate([project(rows) for rows in r.training_rows(r.ae.x)]), project(r.ds.test)

    def baseline_levels(self):
        """{label: test MSE} of the run's baselines (tae_data.baselines), PCA first."""
        found = self.runner.metrics.get("baselines")
        rows = tae_data.baseline_rows(found, self.runner.ds) if found else {}
        return {label: row["test_mse"] for label, row in rows.items()}

    def against_baselines(self):
        return "".join(f"; {label} {value:.5f}" for label, value in self.baseline_levels().items())

    def curves(self, history):
        """curves.png: the loss per epoch, and the test MSE against the baselines' (dashed)."""
        r, cfg = self.runner, self.runner.ae.config
        series = {f"train {cfg.loss}": [(m["epoch"], m["train_loss"]) for m in history]}
        for part in ("validation", "test"):
            if history and f"{part}_loss" in history[0]:
                series[f"{part} {cfg.loss}"] = [(m["epoch"], m[f"{part}_loss"]) for m in history]
                if cfg.loss != "mse":
                    series[f"{part} mse"] = [(m["epoch"], m[f"{part}_mse"]) for m in history]
        references = {f"{label} (test mse)": value for label, value in self.baseline_levels().items()}
        tae_figures.save_curves(os.path.join(r.out, "curves.png"), series, "loss per value",
                                f"{cfg.mode} {'-'.join(map(str, cfg.dims))} on {r.ds.name}", references=references,
                                marks=r.best_mark())


class RatingScoring:
    """How a ratings run is scored (tae_ratings.RatingsSet): each epoch, the RMSE and MAE of the
    predictions for the validation and test ratings, made from the training ratings alone
    (tae_ratings.predict_parts; cold ratings get the bias model's prediction); at the end
    predictions.csv, and the global-mean and bias baselines on the same test ratings."""

    selection = "validation_rmse"
    shown = ("validation_rmse", "test_rmse")

    def __init__(self, runner):
        self.runner = runner

    def predictions(self, head, parts):
        r, ds = self.runner, self.runner.ds
        reconstruct = lambda rows: r.sess.run(head.reconstruction, {r.ae.x: rows})  # noqa: E731
        return tae_ratings.predict_parts(reconstruct, ds.matrix, ds.idx, parts, ds.orientation, ds.data.scale,
                                         ds.fallback)

    def epoch(self, head):
        data, record = self.runner.ds.data, {}
        parts = {p: d for p, d in (("validation", data.validation), ("test", data.test)) if d is not None and len(d)}
        for (part, ratings), (predicted, _) in zip(parts.items(), self.predictions(head, list(parts.values()))):
            record.update({f"{part}_{k}": v for k, v in tae_ratings.errors(predicted, ratings).items()})
        return record

    def final(self, head):
        r, data = self.runner, self.runner.ds.data
        [(predicted, usable)] = self.predictions(head, [data.test])
        tae_ratings.write_predictions(os.path.join(r.out, "predictions.csv"), data.test, predicted, usable)
        found = tae_ratings.errors(predicted, data.test)
        cold = int((~usable).sum())
        figures = {"test_rmse": found["rmse"], "test_mae": found["mae"], "test_ratings": len(data.test),
                   "cold_test_ratings": cold}
        origin = {"MovieLens": "MovieLens'", "stated": "stated by --rating-scale",
                  "implied": "the training ratings' lowest and highest: --rating-scale states it"}[data.scale_from]
        return figures, (f"test RMSE {found['rmse']:.4f}, MAE {found['mae']:.4f} over {len(data.test)} ratings "
                         f"({cold} cold: the bias model's prediction), rating scale {data.scale[0]:g} to "
                         f"{data.scale[1]:g} ({origin}){self.against_baselines()}; "
                         f"predictions.csv written")

    def baseline_levels(self):
        """{label: test RMSE} of the run's baselines (tae_ratings.baselines)."""
        return {label: row["rmse"] for label, row in (self.runner.metrics.get("baselines") or {}).items()}

    def against_baselines(self):
        return "".join(f"; {label} {value:.4f}" for label, value in self.baseline_levels().items())

    def curves(self, history):
        """curves.png: the training loss's root (the RMSE of the training batches) and the validation
        and test RMSE per epoch, against the baselines' test RMSE (dashed)."""
        r, cfg = self.runner, self.runner.ae.config
        series = {f"train: root of the {cfg.loss}": [(m["epoch"], float(np.sqrt(m["train_loss"]))) for m in history]}
        for part in ("validation", "test"):
            if history and f"{part}_rmse" in history[0]:
                series[f"{part} RMSE"] = [(m["epoch"], m[f"{part}_rmse"]) for m in history]
        references = {f"{label} (test RMSE)": value for label, value in self.baseline_levels().items()}
        tae_figures.save_curves(os.path.join(r.out, "curves.png"), series, "RMSE",
                                f"{cfg.mode} {'-'.join(map(str, cfg.dims))} on {r.ds.name}, {r.ds.orientation}-based",
                                references=references, marks=r.best_mark())
