"""Run folders for train.py: files written whole or not at all, and the run's figures.

Every file here is written to a temporary name in the same folder, flushed to disk and renamed
over the target (os.replace is atomic on POSIX), so a kill leaves either the old file or the new
one, never half of one. TensorFlow's Saver does the same for its checkpoint state file.
"""
import json
import os
import pathlib
import tempfile

import numpy as np

_UMASK = os.umask(0o022)
os.umask(_UMASK)


class UsageError(Exception):
    """Bad input (flags, run folders): one line naming the problem and the fix; exit code 2."""


class Stopped(Exception):
    """Training stopped early on purpose (a signal, a non-finite loss): exit with `code`."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def atomic_write(path, write):
    """Call write(binary_file) on a temporary file, then rename it to `path`."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json(path, obj):
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()))


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read {path} ({e}); it is not a file this program wrote") from None


def check_writable(folder):
    """Create `folder` if needed and prove a file can be written there; UsageError otherwise."""
    folder = pathlib.Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UsageError(f"cannot write to --out {folder} ({e.strerror or e}); choose a writable folder") from None


def restore(tf, sess, saver, path):
    """saver.restore, with a damaged checkpoint or one of another model as a UsageError."""
    try:
        saver.restore(sess, path)
    except (tf.errors.OpError, ValueError) as e:
        first = str(getattr(e, "message", e)).strip().splitlines()[0][:200]
        raise UsageError(f"cannot restore checkpoint {path} ({type(e).__name__}: {first}); it is damaged or from "
                         "another model: delete its files to fall back to an older one, or start a new run") from None


def _save_figure(fig, path):
    import matplotlib.pyplot as plt

    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def save_reconstructions(path, images, reconstructions, image_shape, n=10):
    """A PNG: `n` test images in the top row, their reconstructions below."""
    plt = _pyplot()
    n = min(n, len(images))
    fig, axes = plt.subplots(2, n, figsize=(n, 2.2), squeeze=False)
    for k in range(n):
        for row, arr in enumerate((images, reconstructions)):
            ax = axes[row][k]
            ax.imshow(np.clip(arr[k].reshape(image_shape), 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_axis_off()
    axes[0][0].set_title("input", fontsize=8, loc="left")
    axes[1][0].set_title("reconstruction", fontsize=8, loc="left")
    fig.tight_layout()
    _save_figure(fig, path)


def save_curves(path, series, ylabel, title, x_key="epoch", references=None):
    """A PNG of one or more curves: series is {label: [(x, y), ...]}; references {label: y} are
    drawn as dashed horizontal lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, (label, y) in enumerate((references or {}).items()):
        ax.axhline(y, linestyle="--", linewidth=1, color=f"C{7 + k}", label=label)
    for label, points in series.items():
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="." if len(xs) < 40 else None, label=label)
    ax.set_xlabel(x_key)
    ax.set_ylabel(ylabel)
    if not any(series.values()):
        ax.text(0.5, 0.5, "no epochs trained", ha="center", transform=ax.transAxes)
        _save_figure(fig, path)
        return
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)
