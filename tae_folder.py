"""A run folder (train.py --out): the one place that knows its files' names, and answers what they
say: the run's config and metrics, its checkpoints, the one its final figures describe, whether it is
finished, where its export goes. Writes go through tae_files (whole or not at all)."""
import os
import pathlib
import tempfile

import tae_files

CONFIG, METRICS, COMPARE, EXPORT = "config.json", "metrics.json", "compare.json", "export"
CKPT, BEST = "ckpt", "best"  # checkpoint prefixes: the rolling ones (state file `checkpoint`), the best epoch's
BEST_STATE = "best_checkpoint"  # the best Saver's state file (the rolling Saver's is TensorFlow's `checkpoint`)
# the figures and tables a run writes
RECON, CODES, CURVES, PREDICTIONS, COMPARE_PNG = "recon.png", "codes.png", "curves.png", "predictions.csv", "compare.png"


class RunFolder:
    """The run folder at `root` (a --compare folder holds one per variant: `variant(name)`)."""

    def __init__(self, root):
        self.root = str(root)

    def __str__(self):
        return self.root

    def path(self, name):
        return os.path.join(self.root, name)

    def holds_run(self):
        return os.path.exists(self.path(CONFIG))

    def prepare(self):
        """Create the folder for a new run, or accept an empty one; UsageError if it holds anything
        else or cannot be written."""
        root = pathlib.Path(self.root)
        if self.holds_run():
            raise tae_files.UsageError(f"--out {root} is an existing run; add --resume to continue it or choose "
                                       "another --out")
        if root.exists() and not root.is_dir():
            raise tae_files.UsageError(f"--out {root} is a file, not a folder; choose a folder")
        if root.is_dir() and set(os.listdir(root)) - {tae_files.LOCK}:
            raise tae_files.UsageError(f"--out {root} is a folder with other files in it; choose a new or empty folder")
        try:
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=root):
                pass
        except OSError as e:
            raise tae_files.UsageError(f"cannot write to --out {root} ({e.strerror or e}); choose a writable "
                                       "folder") from None

    def variant(self, name):
        return RunFolder(self.path(name))

    def config(self):
        """config.json as written, or None (no run here)."""
        return tae_files.read_json(self.path(CONFIG))

    def metrics(self):
        return tae_files.read_json(self.path(METRICS)) or {}

    def compared(self):
        return tae_files.read_json(self.path(COMPARE))

    def write_config(self, record):
        tae_files.write_json(self.path(CONFIG), record)

    def write_metrics(self, metrics):
        tae_files.write_json(self.path(METRICS), metrics)

    def write_compare(self, results):
        tae_files.write_json(self.path(COMPARE), results)

    def checkpoints(self, best=False):
        """[(global step, path prefix)], oldest first: the rolling checkpoints, or the best epoch's."""
        return tae_files.checkpoints(self.root, BEST if best else CKPT)

    def prefix(self, best=False):
        return self.path(BEST if best else CKPT)

    def newest(self):
        """The newest rolling checkpoint's name, for messages ("none" before the first)."""
        found = self.checkpoints()
        return os.path.basename(found[-1][1]) if found else "none"

    def finished(self, epochs):
        """Whether the run here trained all its `epochs` (or stopped early on purpose) and ended."""
        metrics = self.metrics()
        if metrics.get("status") != "done":
            return False
        return len(metrics.get("epochs", [])) == epochs or bool(metrics["final"].get("stopped_early"))

    def best_checkpoint(self, record):
        """The best checkpoint saved at epoch `record`'s step; UsageError if it was deleted."""
        found = dict(self.checkpoints(best=True))
        if record["global_step"] not in found:
            raise tae_files.UsageError(f"{self.root} has no {BEST}-{record['global_step']} checkpoint for its best "
                                       f"epoch ({record['epoch']}); it was deleted: start a new run")
        return found[record["global_step"]]

    def chosen(self, metrics=None):
        """(checkpoint path, its epoch record or None): the checkpoint the run's final figures
        describe, the best epoch's (with a validation split), else the newest. UsageError if gone."""
        metrics = self.metrics() if metrics is None else metrics
        final, epochs = metrics.get("final") or {}, metrics.get("epochs") or []
        if "best_epoch" in final:
            record = next(r for r in epochs if r["epoch"] == final["best_epoch"])
            return self.best_checkpoint(record), record
        found = self.checkpoints()
        if not found:
            raise tae_files.UsageError(f"{self.root} has no checkpoint ({CKPT}-*.index); train it first")
        step = found[-1][0]
        return found[-1][1], next((r for r in reversed(epochs) if r["global_step"] <= step), None)

    def export_path(self):
        return self.path(EXPORT)
