"""Run folders: files written whole or not at all, one process at a time, checkpoints found inside;
RunFolder, the one place that knows a run folder's file names and answers what they say (its config
and metrics, the checkpoint its final figures describe, whether it is finished, where its export goes).

Every file here is written to a temporary name in the same folder, flushed to disk and renamed over
the target (os.replace is atomic on POSIX), so a kill leaves either the old file or the new one.
TensorFlow's Saver does the same for checkpoints; its state file holds relative paths, and a resume
reads only the checkpoints it finds in the run folder itself, so a folder can be moved or copied.
A running process holds a POSIX lock on `<folder>/.lock`; a second one is refused, naming the first.
A failed write (disk full, permissions) becomes WriteFailed, naming the file.
"""
import errno
import fcntl
import json
import os
import pathlib
import re
import shutil
import struct
import tempfile
import time

_UMASK = os.umask(0o022)
os.umask(_UMASK)
LOCK = ".lock"


class UsageError(Exception):
    """Bad input (flags, data, run folders): one line naming the problem and the fix; exit code 2."""


EXIT_DIVERGED, EXIT_WRITE_FAILED = 3, 4  # Stopped's codes (the CLI's others: 2 bad input, 130/143 a signal)
EXIT_CLUSTER_LOST = 5  # a cluster task lost a ps task it needs (tae_cluster)


class DataError(Exception):
    """Bad input data: the message names the problem and what to do (exit code 2, as UsageError)."""


class WidthError(DataError):
    """The data's values per example are not the first of the dims (`width`: the data's)."""

    def __init__(self, message, width):
        super().__init__(message)
        self.width = width


class Stopped(Exception):
    """Training stopped early on purpose (a signal, a non-finite loss, a failed write): exit `code`.
    The message says what happened and what was kept; `then` names what continues it, "--resume"
    (the run) or "--export" (the export of the run in `folder`), or None: the command line writes
    the command (it alone knows how the program was called, and whether it is comparing)."""

    def __init__(self, code, message, then=None, folder=None):
        super().__init__(message)
        self.code, self.then, self.folder = code, then, folder


class WriteFailed(Exception):
    """A file of the run could not be written: `path` and the system's reason."""

    def __init__(self, path, reason):
        super().__init__(f"could not write {path} ({reason})")
        self.path, self.reason = path, reason


def failure(error, path=None):
    """(path, reason) of a failed write, from an OSError, or from TensorFlow's message, where the
    system's reason ends the line that names the file ("PATH; File too large"); `path` where the
    message names none."""
    if isinstance(error, OSError):
        return error.filename or path, error.strerror or str(error)
    text = getattr(error, "message", None) or str(error)
    for line in text.splitlines():
        m = re.fullmatch(r"\s*(\S+); ([^;]+)", line)
        if m:
            return m.group(1), m.group(2).strip()
    return path, type(error).__name__


def lost(error):
    """One line for a cluster task's lost connection (TensorFlow's message is many)."""
    tasks = sorted(set(re.findall(r"/job:ps/replica:\d+/task:(\d+)", str(getattr(error, "message", error)))))
    which = f"ps task {', '.join(tasks)}" if tasks else "a task of the cluster"
    return f"lost {which} ({type(error).__name__})"


def atomic_write(path, write):
    """Call write(binary_file) on a temporary file, then rename it to `path`."""
    path = pathlib.Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise WriteFailed(path, e.strerror or e) from None
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise WriteFailed(path, e.strerror or e) from None
        raise


def write_bytes(path, data):
    atomic_write(path, lambda f: f.write(data))


def write_json(path, obj):
    atomic_write(path, lambda f: f.write((_readable(obj) + "\n").encode()))


def _readable(obj, depth=0):
    """JSON with each key of an object, and each element of a list of objects, on its own line; the
    innermost parts on one line each, by json's C encoder (indent=2 takes the pure-Python encoder:
    metrics.json, rewritten every epoch, cost 12 ms an epoch at 200 epochs that way)."""
    pad, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(obj, dict) and obj:
        return "{\n" + ",\n".join(f"{inner}{json.dumps(str(k))}: {_readable(v, depth + 1)}" for k, v in obj.items()) \
            + f"\n{pad}}}"
    if isinstance(obj, list) and obj and all(isinstance(v, dict) for v in obj):
        return "[\n" + ",\n".join(inner + json.dumps(v) for v in obj) + f"\n{pad}]"
    return json.dumps(obj)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read {path} ({e}); it is not a file this program wrote") from None


def lock(folder):
    """Hold the run folder for this process (released when it exits, however it exits).
    Returns the open lock file; UsageError naming the process that holds it already."""
    path = pathlib.Path(folder) / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
    except OSError as e:
        raise UsageError(f"cannot write to --out {folder} ({e.strerror or e}); choose a writable folder") from None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EAGAIN):
            raise
        holder = _lock_holder(fd)
        os.close(fd)
        raise UsageError(f"--out {folder} is in use by {f'process {holder}' if holder else 'another process'}, "
                         "which is training it now; wait for it to end (or stop it), then --resume") from None
    return os.fdopen(fd, "r+")


def _lock_holder(fd):
    """The pid holding a POSIX lock on fd (Linux's struct flock), or None where it cannot be asked."""
    try:
        query = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        return struct.unpack("hhqqi4x", fcntl.fcntl(fd, fcntl.F_GETLK, query))[4] or None
    except (OSError, struct.error):
        return None


def checkpoints(folder, prefix="ckpt"):
    """The complete checkpoints in `folder` itself, oldest first: [(global step, path prefix)].
    A checkpoint is complete once its .index exists (the Saver writes it last, by rename)."""
    found = []
    for name in os.listdir(folder):
        m = re.fullmatch(re.escape(prefix) + r"-(\d+)\.index", name)
        if m:
            found.append((int(m.group(1)), os.path.join(str(folder), name[: -len(".index")])))
    return sorted(found)


# --- the run folder -------------------------------------------------------------------------------

CONFIG, METRICS, COMPARE, EXPORT = "config.json", "metrics.json", "compare.json", "export"
CKPT, BEST = "ckpt", "best"  # checkpoint prefixes: the rolling ones (state file `checkpoint`), the best epoch's
BEST_STATE = "best_checkpoint"  # the best Saver's state file (the rolling Saver's is TensorFlow's `checkpoint`)
# the figures and tables a run writes
RECON, CODES, CURVES, PREDICTIONS, COMPARE_PNG = "recon.png", "codes.png", "curves.png", "predictions.csv", "compare.png"


def new_folder(dataset_name, label):
    """A new run folder's path under checkpoints/: data set, label and the time, never an existing one."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join("checkpoints", f"{dataset_name}-{label}-{stamp}")
    out, k = base, 1
    while os.path.exists(out):
        out, k = f"{base}-{k}", k + 1
    return out


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
            raise UsageError(f"--out {root} is an existing run; add --resume to continue it or choose "
                                       "another --out")
        if root.exists() and not root.is_dir():
            raise UsageError(f"--out {root} is a file, not a folder; choose a folder")
        if root.is_dir() and set(os.listdir(root)) - {LOCK}:
            raise UsageError(f"--out {root} is a folder with other files in it; choose a new or empty folder")
        try:
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=root):
                pass
        except OSError as e:
            raise UsageError(f"cannot write to --out {root} ({e.strerror or e}); choose a writable "
                                       "folder") from None

    def variant(self, name):
        return RunFolder(self.path(name))

    def config(self):
        """config.json as written, or None (no run here)."""
        return read_json(self.path(CONFIG))

    def metrics(self):
        return read_json(self.path(METRICS)) or {}

    def compared(self):
        return read_json(self.path(COMPARE))

    def write_config(self, record):
        write_json(self.path(CONFIG), record)

    def write_metrics(self, metrics):
        write_json(self.path(METRICS), metrics)

    def write_compare(self, results):
        write_json(self.path(COMPARE), results)

    def checkpoints(self, best=False):
        """[(global step, path prefix)], oldest first: the rolling checkpoints, or the best epoch's."""
        return checkpoints(self.root, BEST if best else CKPT)

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

    def recorded_steps(self, metrics=None):
        """The global steps of the run's epoch records (pretraining's and the autoencoder's)."""
        metrics = self.metrics() if metrics is None else metrics
        return [r["global_step"] for key in ("pretrain", "epochs") for r in metrics.get(key, [])]

    def check_resumable(self):
        """Before a resume writes anything: UsageError when the run trained epochs but holds no rolling
        checkpoint to go on from (its position is lost: starting over would replace its metrics and best
        checkpoint), or when its newest complete one is older than its best epoch's (a resume would train
        those epochs again and replace that best checkpoint). With no record and no checkpoint, a
        resume starts from step 0, which loses nothing."""
        found, best, steps = self.checkpoints(), self.checkpoints(best=True), self.recorded_steps()
        kept = f"; its best epoch's model ({os.path.basename(best[-1][1])}) is kept" if best else ""
        if not found and (steps or best):
            raise UsageError(f"--resume: {self.root} holds no rolling checkpoint ({CKPT}-*.index) to go on from, "
                             f"though it trained to step {max(steps, default=best[-1][0] if best else 0)}{kept}; "
                             "use that model as it is (--export, --encode, --recommend) or start a new run with "
                             "another --out")
        if found and best and best[-1][0] > found[-1][0]:
            raise UsageError(f"--resume: the newest complete checkpoint in {self.root}, "
                             f"{os.path.basename(found[-1][1])}, is older than its best epoch's, "
                             f"{os.path.basename(best[-1][1])}, which a resume from it would train past and replace; "
                             f"move {os.path.basename(best[-1][1])}.* out of the folder to resume anyway, or use the "
                             "run as it is")

    def clean_partial_files(self):
        """Remove what an interrupted write leaves (the caller holds the folder's lock, so no write is
        in progress): TensorFlow's checkpoint parts (*.tempstate*), atomic_write's temporary files,
        an export's temporary folder."""
        for name in os.listdir(self.root):
            path = self.path(name)
            if ".tempstate" in name or (name.startswith(".") and name.endswith(".tmp")):
                os.unlink(path)
            elif name.startswith(f".{EXPORT}.") and os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)

    def best_checkpoint(self, record):
        """The best checkpoint saved at epoch `record`'s step; UsageError if it was deleted."""
        found = dict(self.checkpoints(best=True))
        if record["global_step"] not in found:
            raise UsageError(f"{self.root} has no {BEST}-{record['global_step']} checkpoint for its best "
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
            raise UsageError(f"{self.root} has no checkpoint ({CKPT}-*.index); train it first")
        if not epochs and metrics.get("status") != "done":  # stopped before its first epoch ended: ckpt-0
            raise UsageError(f"{self.root} has no finished epoch: its checkpoint {os.path.basename(found[-1][1])} holds "
                             "the initial, untrained model; train it first (--resume)")
        step = found[-1][0]
        return found[-1][1], next((r for r in reversed(epochs) if r["global_step"] <= step), None)

    def export_path(self):
        return self.path(EXPORT)
