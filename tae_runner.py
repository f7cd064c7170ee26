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

What "evaluation" means is the task's scoring (tae_tasks: SSE per image, or RMSE of held-out
ratings): the runner hands it a function that evaluates the model's tensors on rows, one that runs
a fetch over the training set held in the graph, and the run folder, and gets figures back. A
cluster's chief is driven the same way, through the replica it is handed (tae_replica).
"""
import os
import signal
import sys
import time

import numpy as np
import tensorflow as tf

import tae_files
import tf1_input
import tf1_tied_ae as tae
from tae_config import STEPS_PER_CALL
from tae_events import Events
from tae_export import restore_checkpoint
from tae_files import EXIT_CLUSTER_LOST, EXIT_DIVERGED, EXIT_WRITE_FAILED, RunFolder, Stopped, WriteFailed, lost

tf1 = tf.compat.v1
FIGURE = {"epochs": "train_loss", "pretrain": "recon_sse_per_example"}  # what a stage's steps return
TAGS = {"train_loss": "loss/train", "validation_loss": "loss/validation", "test_loss": "loss/test",
        "validation_sse_per_image": "validation/sse_per_image", "test_sse_per_image": "test/sse_per_image",
        "recon_sse_per_example": "pretrain/recon_sse_per_example", "validation_rmse": "validation/rmse",
        "test_rmse": "test/rmse", "learning_rate": "learning_rate"}  # TensorBoard, by global step


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


def train(ae, task, ds, out, config, log=print, stop=None, keep_data=False, baselines=None, patience=None,
          replica=None):
    """Run the stages of `ae` on `ds` (data of `task`, one of tae_tasks.TASKS) in run folder `out` (new, or
    resumed from its newest checkpoint) and return its metrics. config: written to config.json once
    the start has succeeded. The task's NumPy copy of the training set is released once it is in the
    graph, unless keep_data. stop: an object whose `signum` turns non-None to stop (default: SIGINT
    and SIGTERM). baselines: the task's baselines, recorded in metrics.json and compared with at the
    end. With a validation split, the epoch of the lowest validation error is kept as the best
    checkpoint and gives the final figures; patience: stop after that many epochs without a lower one.
    replica (tae_replica.Replica, handed in as the task is): the chief of a cluster run; ae is its
    graph, which holds its shard."""
    runner = Runner(ae, task.scoring(ae.config, ds, baselines), out, log, patience, replica)
    if baselines is not None:
        runner.metrics["baselines"] = baselines
    session = tf1.Session(replica.target, graph=ae.graph, config=replica.session_config()) if replica else \
        tf1.Session(graph=ae.graph)
    with (stop or StopRequest()) as runner.stop, session as runner.sess:
        try:
            try:
                if replica:
                    replica.refuse_leftovers(runner.sess)  # before anything is written
                resumed = runner.start(config)
                tf1_input.load(runner.sess, ae.input, replica.data if replica else task.graph_input(ds)[0])
                if replica:
                    replica.started(runner.sess, config)
                if not keep_data and not replica:
                    task.release(ds)  # images: the graph's copy is the one the run uses
                runner.writer = Events(str(runner.folder), None if resumed else ae.graph)
                for stage in ae.stages:
                    if runner.stopped_early is None:
                        runner.run_stage(stage)
                runner.finish()
                if replica:
                    replica.finish(runner.sess)
            finally:
                if runner.writer is not None:
                    runner.writer.close(quiet=sys.exc_info()[0] is not None)  # a failure in flight is the one to report
        except (tf.errors.UnavailableError, tf.errors.AbortedError) as e:
            if replica is None:
                raise
            runner.write_metrics("lost a task")
            raise Stopped(EXIT_CLUSTER_LOST, f"{lost(e)}; stopped, the last checkpoint is kept ({runner.newest()}); "
                          "start the lost task again, then this chief with its cluster flags and --out "
                          f"{runner.out} --resume (docs/cluster.md)") from None
        except WriteFailed as e:
            try:
                if runner.metrics.get("status") != "done":  # a failure after the end leaves the run done
                    runner.write_metrics("write failed")  # best effort: the disk may refuse this too
            except WriteFailed:
                pass
            raise Stopped(EXIT_WRITE_FAILED, f"{e}; stopped, the last good checkpoint is kept "
                          f"({runner.newest()}); make room or fix the folder", then="--resume") from None
    return runner.metrics


def build_and_train(model, schedule, task, ds, out, config, init=None, **kw):
    """tf1_tied_ae.build of `model` (AEConfig) with its `schedule`, holding the task's training data
    (init: build's init_from and init_map, if any), then `train` (the same keywords)."""
    _, examples, keywords = task.graph_input(ds)
    return train(tae.build(model, schedule, examples, **keywords, **(init or {})), task, ds, out, config, **kw)


class Runner:
    """The state of one run in progress; `train` drives it. Every method runs ops built with the graph."""

    def __init__(self, ae, scoring, out, log, patience=None, replica=None):
        self.ae, self.scoring, self.log, self.patience, self.replica = ae, scoring, log, patience, replica
        self.folder = out if isinstance(out, RunFolder) else RunFolder(out)
        self.out = str(self.folder)
        self.metrics = self.folder.metrics()
        self.sess = self.stop = self.writer = self.stopped_early = None
        self.bar = sys.stdout.isatty()

    def run_on(self, fetches, rows):
        """The model's tensors `fetches` on `rows` fed as x, or on a dict of feeds (what the scoring
        evaluates with)."""
        return self.sess.run(fetches, rows if isinstance(rows, dict) else {self.ae.x: rows})

    def start(self, config):
        """Restore the newest checkpoint in the folder, or initialise and save ckpt-0; then write
        config.json. Returns whether a checkpoint was restored."""
        self.folder.clean_partial_files()
        found, recorded = self.folder.checkpoints(), self.folder.recorded_steps(self.metrics)
        if not found and recorded:
            self.folder.check_resumable()  # refuses: the run's position is lost
        if found:
            restore_checkpoint(self.sess, self.ae.saver, found[-1][1])
            self.ae.saver.recover_last_checkpoints([path for _, path in found])  # prunes to 3 as it saves
            self.sess.run(self.ae.input.init_op)  # the data is not in a checkpoint
        else:
            if self.folder.holds_run():  # a resumed run stopped before its first checkpoint: nothing to lose
                self.log(f"{self.out} holds no checkpoint yet: starting from step 0")
            self.sess.run(self.ae.init_op)
        self.folder.write_config(config)
        step = self.step()
        for key in ("epochs", "pretrain"):  # records past the checkpoint belong to a run that was lost
            self.metrics[key] = [r for r in self.metrics.get(key, []) if r["global_step"] <= step]
        self.metrics.pop("final", None)
        self.keep_best_in_step(step)
        if found:
            stage, epoch, k = self.position(step)
            self.log(f"resuming {self.out} at {stage} epoch {epoch + 1}" + (f", step {k + 1}" if k else "")
                     + f" from {os.path.basename(found[-1][1])}")
            if max(recorded, default=0) > step:  # a stop between a record and its checkpoint, or a lost checkpoint
                self.log(f"{os.path.basename(found[-1][1])} is the newest complete checkpoint: the epochs recorded "
                         f"after it, to step {max(recorded)}, had none and are trained again")
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
        best, found = self.best_record(), self.folder.checkpoints(best=True)
        if found:
            self.ae.best_saver.recover_last_checkpoints([found[-1][1]])
        if best is not None and best["global_step"] == step and (not found or found[-1][0] != step):
            self.save(best=True)
            self.log(f"saved best-{step}: the best epoch's checkpoint (epoch {best['epoch']}) was missing")

    def position(self, step):
        """(stage name, epoch within it, step within the epoch) of a global step."""
        for s in self.ae.stages:
            if s.epochs and step < s.last_step:
                epoch, k = divmod(step - s.first_step, s.steps_per_epoch)
                return s.name, epoch, k
        return "the end", 0, 0

    def newest(self):
        return self.folder.newest()

    def save(self, best=False):
        """A rolling checkpoint (ckpt-<step>, state file `checkpoint`, the last 3 kept), or the best
        one (best-<step>, state file `best_checkpoint`, the model alone)."""
        saver, prefix = (self.ae.best_saver if best else self.ae.saver), self.folder.prefix(best)
        try:
            return saver.save(self.sess, prefix, global_step=self.ae.global_step, write_meta_graph=False,
                              latest_filename=tae_files.BEST_STATE if best else None)
        except tf.errors.OpError as e:
            self.folder.clean_partial_files()
            raise WriteFailed(f"{prefix}-{self.step()}", tae_files.failure(e)[1]) from None

    def write_metrics(self, status):
        self.metrics["status"] = status
        self.folder.write_metrics(self.metrics)

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
        """The epoch's steps from step `start` within it. On a cluster the chief tells the followers
        to take their shares of the remaining steps, takes its own, and waits for their reports;
        synchronous, every worker takes part in every step (the replica's sync_step)."""
        pipe = self.ae.input
        steps = stage.steps_per_epoch - start  # this process's
        synchronous = self.replica is not None and self.replica.synchronous
        if self.replica:
            steps = self.replica.begin_epoch(self.sess, self.ae.stages.index(stage), epoch, steps)
        order = tf1_input.epoch_order(self.ae.config.seed, stage.epoch_seed + epoch, pipe.num_examples)
        self.sess.run(pipe.start_epoch_op, {
            pipe.order_placeholder: order, pipe.start_placeholder: 0 if self.replica and not synchronous else start,
            pipe.batch_size_placeholder: self.replica.batch(stage) if self.replica else stage.batch_size})
        t0 = time.time() - self.sess.run(pipe.seconds)  # a resumed epoch carries its seconds on
        bar = tf.keras.utils.Progbar(start + steps, unit_name="step") if self.bar else None
        k = start
        while k < start + steps:
            if synchronous:
                figure = self.replica.sync_step(self.sess, stage, stage.first_step + epoch * stage.steps_per_epoch + k,
                                                self.log, self.stop)
                if figure is None:
                    self.interrupt(stage, epoch, k, time.time() - t0)
                figures, n = np.array([figure]), 1
            else:
                n = min(STEPS_PER_CALL, start + steps - k)
                figures = self.sess.run(stage.steps, {pipe.steps_placeholder: n})
            self.check_finite(stage, epoch, k, figures)
            k += n
            if bar:
                bar.update(k, [(FIGURE[stage.record], float(figures[-1]))])
            if k < start + steps and self.stop.signum is not None:
                self.interrupt(stage, epoch, k, time.time() - t0)
        if self.replica and not self.replica.end_epoch(
                self.sess, stage.first_step + (epoch + 1) * stage.steps_per_epoch, self.log, self.stop):
            self.interrupt(stage, epoch, k, time.time() - t0)
        # the steps figure_sum holds: an asynchronous chief's share from 0, else the epoch's from its start
        self.end_epoch(stage, epoch, time.time() - t0, k - start if self.replica and not synchronous else k)

    def check_finite(self, stage, epoch, k, figures):
        bad = np.flatnonzero(~np.isfinite(figures))
        if bad.size:
            self.write_metrics("diverged")
            flag = "--rbm-lr" if stage.record == "pretrain" else "--lr"
            raise Stopped(EXIT_DIVERGED, f"non-finite {FIGURE[stage.record]} ({figures[bad[0]]}) in the {stage.name} "
                          f"stage at epoch {stage.first_epoch + epoch + 1}, step {k + bad[0] + 1}; stopped, the last "
                          f"good checkpoint is kept ({self.newest()}); lower {flag}")

    def interrupt(self, stage, epoch, k, seconds):
        """Save where the step stands (the epoch's figures and seconds go with it) and stop. A
        cluster's chief saves at epoch ends only (the followers' steps are in flight): its resume
        repeats the epoch."""
        code = 128 + self.stop.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
        if self.replica:
            self.write_metrics("interrupted")
            raise Stopped(code, f"interrupted in the {stage.name} stage at epoch {stage.first_epoch + epoch + 1}; a "
                          f"cluster saves at epoch ends: {self.newest()} is kept and a resume repeats the epoch",
                          then="--resume")
        self.sess.run(self.ae.input.set_seconds_op, {self.ae.input.seconds_placeholder: seconds})
        self.write_metrics("interrupted")
        path = os.path.basename(self.save())
        raise Stopped(code, f"interrupted in the {stage.name} stage at epoch {stage.first_epoch + epoch + 1}, step {k}; "
                      f"saved {path}", then="--resume")

    def end_epoch(self, stage, epoch, seconds, steps):
        """The epoch's record (the training figure: the mean over this process's `steps` steps of
        the epoch: on a cluster, the chief's), checkpoints, the log line."""
        if stage.epoch_end is not None:
            self.sess.run(stage.epoch_end)
        pipe = self.ae.input
        figure_sum = self.sess.run(pipe.figure_sum)
        done = [r["train_seconds"] for key in ("epochs", "pretrain") for r in self.metrics[key]]
        record = {"epoch": stage.first_epoch + epoch + 1, "stage": stage.name, "global_step": self.step(),
                  FIGURE[stage.record]: figure_sum / steps}
        if stage.head is not None:  # which decoder trained, and the rate the schedule has reached
            record.update(decoder=stage.head.decoder, learning_rate=float(self.sess.run(stage.head.learning_rate)))
            record.update(self.scoring.epoch(stage.head, self.run_on))
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
                          f"{self.newest()}", then="--resume")

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
        logged = {**shown, **({"learning_rate": record["learning_rate"]} if "learning_rate" in record else {})}
        self.writer.add(tf1.Summary(value=[tf1.Summary.Value(tag=TAGS[k] if stage.record == "epochs" else
                                                             f"{TAGS[k]}/{stage.name}", simple_value=v)
                                           for k, v in logged.items()]), record["global_step"])
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
        restore_checkpoint(self.sess, self.ae.best_saver, self.folder.best_checkpoint(best))
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
        figures, text = self.scoring.final(head, self.run_on, self.training_rows, self.folder)
        final.update(figures)
        self.metrics["final"] = final
        self.scoring.curves(history, self.folder, self.best_mark())
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
        defaults to the next drawn batch; fetch None: those rows themselves): a list of results, one
        per batch, the last one short."""
        if self.replica:
            return self.replica.training_rows(self.run_on, fetch, batch)
        return tf1_input.over_rows(self.sess, self.ae.input, self.ae.x if fetch is None else fetch, batch)

    def best_mark(self):
        best = self.best_record()
        return {f"best epoch by validation ({best['epoch']})": best["epoch"]} if best else None
