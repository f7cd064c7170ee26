"""Bad input, kills, Ctrl-C, a second process, a failed write, moved folders, divergence,
determinism and resume: a run is never lost or mixed up."""
import gzip
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import tae_cli
from conftest import ROOT, call, decode_png

DIGITS = ["--dataset", "digits"]



def snapshot(folder):
    """Every file's bytes and mtime under `folder` (empty when it does not exist)."""
    if not os.path.exists(folder):
        return {}
    found = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(dirpath, f)
            found[p] = (hashlib.sha1(open(p, "rb").read()).hexdigest(), os.stat(p).st_mtime_ns)
    return found


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A small finished run on digits (dims 64,16,4,4, 2 epochs) to copy into tests."""
    out = tmp_path_factory.mktemp("runs") / "done"
    assert tae_cli.main([*DIGITS, "--epochs", "2", "--batch-size", "100", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def other_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "other"
    assert tae_cli.main([*DIGITS, "--epochs", "1", "--batch-size", "100", "--dims", "64,32,8", "--out", str(out)]) == 0
    return out


def write_idx(folder, magic=0x0803, truncate=0):
    folder.mkdir()
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        body = np.random.RandomState(0).randint(0, 255, (20, 28, 28)).astype(np.uint8).tobytes()
        raw = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (20, 28, 28)) + body
        (folder / (name + ".gz")).write_bytes(gzip.compress(raw[: len(raw) - truncate]))


def write_labels(folder, counts=(20, 20), magic=0x0801):
    for name, n in zip(("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"), counts):
        raw = magic.to_bytes(4, "big") + n.to_bytes(4, "big") + bytes(k % 10 for k in range(n))
        (folder / (name + ".gz")).write_bytes(gzip.compress(raw))


@pytest.mark.parametrize("case", ["idx_count", "npz_count", "npz_fractions"])
def test_labels_that_do_not_fit_are_set_aside_with_a_notice(tmp_path, capsys, case):
    """Labels are optional (codes.png, the 5-NN figure): a misfit is set aside, said in one line."""
    if case == "idx_count":
        write_idx(tmp_path / "idx")
        write_labels(tmp_path / "idx", counts=(19, 20))
        data = ["--dataset", "mnist", "--data-dir", tmp_path / "idx"]
        notice = f"{tmp_path / 'idx' / 'train-labels-idx1-ubyte.gz'} has 19 labels for 20 images"
    else:
        x = np.random.RandomState(0).randint(0, 255, (20, 8, 8)).astype(np.uint8)
        y = np.arange(20) % 3 + (0.5 if case == "npz_fractions" else 0)
        np.savez(tmp_path / "d.npz", x_train=x, x_test=x[:5], y_train=y[: 19 if case == "npz_count" else 20],
                 y_test=np.arange(5))
        data = ["--dataset", tmp_path / "d.npz"]
        notice = f"{tmp_path / 'd.npz'}:y_train has " + (
            "19 labels for 20 images" if case == "npz_count" else "labels of dtype float64 that are not whole numbers")
    code, out, err = call(capsys, *data, "--epochs", "1", "--batch-size", "4", "--validation", "0", "--out", tmp_path / "run")
    assert code == 0, err
    assert [line for line in out.splitlines() if line.startswith("labels set aside")] == [
        f"labels set aside: {notice}; codes.png and the codes' 5-NN accuracy need one class number per example"]
    assert "knn5_accuracy" not in json.loads((tmp_path / "run" / "metrics.json").read_text())["final"]


def test_a_damaged_labels_file_is_named_as_one(tmp_path, capsys):
    write_idx(tmp_path / "idx")
    write_labels(tmp_path / "idx", magic=0x0803)
    code, _, err = call(capsys, "--dataset", "mnist", "--data-dir", tmp_path / "idx", "--out", tmp_path / "run")
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
    assert "train-labels-idx1-ubyte.gz has magic number 0x00000803, not 0x00000801; it is not an IDX labels file" in err, err


RUN_COPY = {"resume_dims", "resume_mode", "resume_loss", "resume_shorter", "existing_out", "ckpt_truncated",
            "ckpt_deleted", "ckpt_other_arch", "resume_inert", "preset_resume", "resume_no_rolling",
            "resume_older_than_best", "use_first_epoch"}


def corrupt(tmp_path, case, finished_run, other_run):
    """Set up `case`: (arguments, the folder that must stay untouched, words the message must hold)."""
    run = tmp_path / "run"
    good = np.random.RandomState(0).rand(50, 64).astype(np.float32)
    if case in RUN_COPY:
        shutil.copytree(finished_run, run)
    data = tmp_path / "data.npy"
    table = {
        "dims_text": (["--dims", "64,abc", *DIGITS], None, ["--dims", "'64,abc' is not a valid value"]),
        "dims_zero": (["--dims", "64,0,4", *DIGITS], None, ["--dims must be at least 2 positive integers"]),
        "dims_mismatch": (["--dims", "100,10", *DIGITS], None, ["--dims", "make the first of --dims 64"]),
        "mode": (["--mode", "transpose", *DIGITS], None, ["--mode must be one of untied, tied, sync, tied-untied"]),
        "dataset": (["--dataset", "cifar"], None, ["--dataset", "mnist"]),
        "activation": (["--activation", "gelu", *DIGITS], None, ["--activation must be one of sigmoid"]),
        "epochs_negative": (["--epochs", "-1", *DIGITS], None, ["--epochs must be an integer >= 0"]),
        "batch_zero": (["--batch-size", "0", *DIGITS], None, ["--batch-size must be an integer >= 1"]),
        "batch_too_big": (["--batch-size", "5000", *DIGITS], None, ["--batch-size", "1294 training examples", "143 are held out for validation"]),
        "lr_zero": (["--lr", "0", *DIGITS], None, ["--lr must be a positive finite number"]),
        "lr_negative": (["--lr", "-0.1", *DIGITS], None, ["--lr must be a positive"]),
        "lr_nan": (["--lr", "nan", *DIGITS], None, ["--lr", "nan"]),
        "tied_epochs": (["--mode", "tied-untied", "--epochs", "2", "--tied-epochs", "3", *DIGITS], None,
                        ["--tied-epochs must be between 0 and --epochs (2)"]),
        "inert_sync": (["--mode", "tied", "--sync-every", "epoch", *DIGITS], None,
                       ["--sync-every does nothing here", "--mode sync"]),
        "inert_decay": (["--lr-decay-steps", "5", *DIGITS], None, ["--lr-decay-steps does nothing here",
                                                                    "--lr-schedule cosine"]),
        "inert_before_wrong": (["--sparse", "on", *DIGITS], None, ["--sparse does nothing here", "ratings"]),
        "fields_as_flags": (["--loss", "xent", "--output-activation", "linear", *DIGITS], None,
                            ["--output-activation must be sigmoid with --loss xent"]),
        "warmup_longer": (["--warmup-steps", "41", "--epochs", "1", *DIGITS], None,
                          ["--warmup-steps 41 is longer than the run's 40 training steps (1 epoch of 40)"]),
        "empty_out": (["--out", "", *DIGITS], None, ["--out takes a path, and was given an empty one"]),
        "empty_data_dir": (["--data-dir", "", "--dataset", "mnist"], None, ["--data-dir takes a path"]),
        "npy_not_npy": (["--dataset", tmp_path / "text.npy"], None, ["text.npy is not a .npy file"]),
        "resume_no_rolling": (["--resume", "--out", run, "--epochs", "3"], run,
                              ["holds no rolling checkpoint", "trained to step 24", "(best-24) is kept"]),
        "resume_older_than_best": (["--resume", "--out", run, "--epochs", "3"], run,
                                   ["ckpt-12, is older than its best epoch's, best-24", "move best-24.*"]),
        "use_first_epoch": (["--out", run, "--export"], run, ["has no finished epoch", "ckpt-0 holds the initial"]),
        "inert_tied_epochs": (["--tied-epochs", "1", *DIGITS], None, ["--tied-epochs does nothing", "tied-untied"]),
        "inert_rbm": (["--rbm-lr", "0.05", *DIGITS], None, ["--rbm-lr does nothing", "--pretrain rbm"]),
        "inert_data_dir": (["--data-dir", tmp_path, *DIGITS], None, ["--data-dir does nothing", "--dataset auto"]),
        "inert_compare_mode": (["--compare", "--mode", "untied", *DIGITS], None, ["--mode does nothing with --compare"]),
        "data_dir_missing": (["--dataset", "mnist", "--data-dir", tmp_path / "nowhere"], None, ["--data-dir"]),
        "file_missing": (["--dataset", tmp_path / "nothing.npy"], None, ["does not exist"]),
        "idx_magic": (["--dataset", "mnist", "--data-dir", tmp_path / "idx"], None, ["magic"]),
        "idx_truncated": (["--dataset", "mnist", "--data-dir", tmp_path / "idx"], None, ["truncated"]),
        "npz_corrupt": (["--dataset", tmp_path / "bad.npz"], None, ["npz"]),
        "npy_objects": (["--dataset", tmp_path / "objects.npy"], None, ["holds an array of Python objects", "numeric"]),
        "data_nan": (["--dataset", data, "--dims", "64,8", "--batch-size", "10"], None, ["NaN"]),
        "data_inf": (["--dataset", data, "--dims", "64,8", "--batch-size", "10"], None, ["infinite"]),
        "data_range": (["--dataset", data, "--dims", "64,8", "--batch-size", "10", "--loss", "xent"], None, ["[0, 1]"]),
        "data_empty": (["--dataset", data, "--dims", "64,8", "--batch-size", "10"], None, ["empty"]),
        "resume_nothing": (["--resume", "--out", tmp_path / "empty"], tmp_path / "empty", ["no config.json"]),
        "resume_dims": (["--resume", "--out", run, "--dims", "64,8"], run, ["--dims 64,8 (run has 64,16,4,4)"]),
        "resume_mode": (["--resume", "--out", run, "--mode", "untied"], run, ["--mode untied (run has tied)"]),
        "resume_loss": (["--resume", "--out", run, "--loss", "xent"], run, ["--loss xent (run has mse)"]),
        "resume_shorter": (["--resume", "--out", run, "--epochs", "1"], run, ["--epochs 1 (run has 2;", "extended"]),
        "resume_inert": (["--resume", "--out", run, "--epochs", "3", "--sync-every", "step"], run,
                         ["--sync-every does nothing here"]),
        "preset_compare": (["--compare", "--preset", "question", *DIGITS], None, ["--preset does nothing with --compare"]),
        "preset_resume": (["--resume", "--out", run, "--preset", "question"], run, ["--preset does nothing with --resume"]),
        "existing_out": ([*DIGITS, "--out", run], run, ["existing run", "--resume"]),
        "out_under_file": ([*DIGITS, "--out", tmp_path / "afile" / "run"], None, ["writable"]),
        "out_read_only": ([*DIGITS, "--out", "/proc/tf1-tied-ae-run"], None, ["writable"]),
        "ckpt_truncated": (["--resume", "--out", run, "--epochs", "3"], run, ["damaged", "Error: Read less bytes"]),
        "ckpt_deleted": (["--resume", "--out", run, "--epochs", "3"], run, ["damaged"]),
        "ckpt_other_arch": (["--resume", "--out", run, "--epochs", "3"], run, ["another model"]),
    }
    if case == "idx_magic":
        write_idx(tmp_path / "idx", magic=0x0801)
    elif case == "idx_truncated":
        write_idx(tmp_path / "idx", truncate=100)
    elif case == "npz_corrupt":
        (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    elif case == "npy_objects":
        np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    elif case in ("data_nan", "data_inf", "data_range", "data_empty"):
        bad = {"data_nan": np.nan, "data_inf": np.inf, "data_range": 3.0}
        if case == "data_empty":
            good = good[:0]
        else:
            good[7, 3] = bad[case]
        np.save(data, good)
    elif case == "npy_not_npy":
        (tmp_path / "text.npy").write_text("1,2,3\n")
    elif case == "resume_no_rolling":
        for f in run.glob("ckpt-*"):
            f.unlink()
    elif case == "resume_older_than_best":
        (run / "ckpt-24.index").unlink()  # its data file stays: an incomplete checkpoint
    elif case == "use_first_epoch":  # the folder as a kill in the first epoch leaves it
        for f in [*run.glob("ckpt-[12]*"), *run.glob("best-*")]:
            f.unlink()
        metrics = json.loads((run / "metrics.json").read_text())
        (run / "metrics.json").write_text(json.dumps({**metrics, "epochs": [], "final": {}, "status": "interrupted"}))
    elif case == "resume_nothing":
        (tmp_path / "empty").mkdir()
    elif case == "out_under_file":
        (tmp_path / "afile").write_text("a file, not a folder")
    elif case.startswith("ckpt_"):
        newest = run / "ckpt-24.data-00000-of-00001"
        if case == "ckpt_truncated":
            newest.write_bytes(newest.read_bytes()[:100])
        elif case == "ckpt_deleted":
            newest.unlink()
        else:
            for f in other_run.glob("ckpt-12.*"):  # another run's checkpoint files under this run's names
                shutil.copy(f, run / f.name.replace("ckpt-12", "ckpt-24"))
    return table[case]


@pytest.mark.parametrize("case", ["dims_text", "dims_zero", "dims_mismatch", "mode", "dataset", "activation",
                                  "epochs_negative", "batch_zero", "batch_too_big", "lr_zero", "lr_negative", "lr_nan",
                                  "tied_epochs", "inert_sync", "inert_decay", "inert_tied_epochs", "inert_rbm",
                                  "inert_before_wrong", "fields_as_flags", "warmup_longer", "empty_out", "empty_data_dir",
                                  "npy_not_npy", "resume_no_rolling", "resume_older_than_best", "use_first_epoch",
                                  "inert_data_dir", "inert_compare_mode", "data_dir_missing", "file_missing",
                                  "idx_magic", "idx_truncated", "npz_corrupt", "npy_objects", "data_nan", "data_inf", "data_range",
                                  "data_empty", "resume_nothing", "resume_dims", "resume_mode", "resume_loss",
                                  "resume_shorter", "resume_inert", "preset_compare", "preset_resume", "existing_out", "out_under_file", "out_read_only",
                                  "ckpt_truncated", "ckpt_deleted", "ckpt_other_arch"])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(case, tmp_path, capsys, finished_run, other_run,
                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default run folder would land in ./checkpoints here
    args, keep, words = corrupt(tmp_path, case, finished_run, other_run)
    before = snapshot(keep) if keep else None
    code, out, err = call(capsys, *args)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train.py: error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])
    for never in ("allow_pickle", " or None", "Graph execution error"):  # advice and words not meant for users
        assert never not in lines[0], lines[0]
    if keep:
        assert snapshot(keep) == before
    assert not (tmp_path / "checkpoints").exists()


def test_a_resume_names_an_older_checkpoint_and_clears_partial_writes(tmp_path, capsys, finished_run):
    """The newest checkpoint incomplete (its .index gone) and its best checkpoint moved away, as the
    refusal asks: the resume goes on from the older one and says so; what interrupted writes leave (a
    checkpoint's .tempstate part, a temporary metrics file, an export's temporary folder) is removed."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "ckpt-24.index").unlink()
    for f in run.glob("best-24.*"):
        f.unlink()
    partial = [run / "ckpt-24.data-00000-of-00001.tempstate8123", run / ".metrics.json.x1.tmp", run / ".export.x2"]
    partial[0].write_bytes(b"\0" * 100)
    partial[1].write_text("{")
    partial[2].mkdir()
    code, out, err = call(capsys, "--out", run, "--resume", "--epochs", "3")
    assert code == 0, err
    assert ("ckpt-12 is the newest complete checkpoint: the epochs recorded after it, to step 24, had none and are "
            "trained again") in out
    assert not any(p.exists() for p in partial)
    assert [r["global_step"] for r in metrics_of(run)["epochs"]] == [12, 24, 36]


def cli(*args, **kw):
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.parametrize("args", [["--lr", "nan"], ["--dims", "64,x"], ["--dataset", "/nonexistent/x.npy"]])
def test_bad_input_in_a_real_process(args, tmp_path):
    p = cli(*args, cwd=tmp_path)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def metrics_of(folder):
    path = os.path.join(folder, "metrics.json")
    return json.loads(open(path).read()) if os.path.exists(path) else {"epochs": []}


def losses(metrics):
    return [(m["epoch"], m["stage"], m["train_loss"], m["test_loss"]) for m in metrics["epochs"]]


SLOW = [*DIGITS, "--dims", "64,1500,800,8", "--mode", "tied-untied", "--batch-size", "20", "--epochs", "3"]
STEPS = (1437 - 143) // 20  # digits less the validation split


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run that killed and interrupted runs must end up equal to."""
    out = tmp_path_factory.mktemp("ref") / "run"
    assert tae_cli.main([*SLOW, "--out", str(out)]) == 0
    return metrics_of(out)


def newest_step(folder):
    steps = [int(f[len("ckpt-"):-len(".index")]) for f in os.listdir(folder) if f.endswith(".index")] \
        if os.path.isdir(folder) else []
    return max(steps, default=-1)


def assert_files_whole(folder):
    for name in ("config.json", "metrics.json"):
        if os.path.exists(os.path.join(folder, name)):
            json.loads(open(os.path.join(folder, name)).read())
    step = newest_step(folder)
    if step >= 0:
        assert os.path.getsize(os.path.join(folder, f"ckpt-{step}.index")) > 0


def wait_for(p, condition, what, timeout=120, pause=0.005, ready=None):
    """Poll `condition` every `pause` seconds while p runs; until `ready()` holds (if given), every
    50 ms: a tight poll only where a short window is to be caught, not while TensorFlow imports."""
    deadline = time.time() + timeout
    while not condition():
        assert p.poll() is None, (what, p.communicate())
        assert time.time() < deadline, what
        time.sleep(pause if ready is None or ready() else 0.05)


@pytest.mark.slow
def test_kills_ctrl_c_and_a_second_process_then_resume(tmp_path, reference, capsys):
    """One run through every way of stopping it: SIGKILL while the first epoch's end is being
    saved; resumed, a second process on the same folder is refused, then Ctrl-C mid-epoch; resumed
    to the end (in this process). It ends with the uninterrupted run's numbers."""
    out = tmp_path / "run"
    p = cli(*SLOW, "--out", out, cwd=tmp_path)
    wait_for(p, lambda: newest_step(out) == 0 and any(".tempstate" in f or f.startswith(".metrics")
                                                      for f in os.listdir(out)), "epoch 1's save",
             pause=0.0005, ready=lambda: (out / "ckpt-0.index").exists())  # the save is a short window
    p.send_signal(signal.SIGKILL)
    assert p.wait() == -signal.SIGKILL
    assert_files_whole(out)
    assert [m["epoch"] for m in metrics_of(out)["epochs"]] in ([], [1])  # the record may precede the checkpoint

    written = (out / "config.json").stat().st_mtime_ns
    p = cli("--out", out, "--resume", cwd=tmp_path)  # it rewrites config.json once its start has succeeded
    wait_for(p, lambda: (out / "config.json").stat().st_mtime_ns > written and newest_step(out) >= STEPS, "epoch 1")
    second = subprocess.run([sys.executable, str(ROOT / "train.py"), "--out", str(out), "--resume"],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 2 and f"--out {out} is in use by process {p.pid}" in second.stderr, second.stderr
    # epoch 2's checkpoints: the rolling one, then the best (epoch 2 has the lowest validation error so far)
    wait_for(p, lambda: (out / f"best-{2 * STEPS}.index").exists(), "epoch 2's checkpoints")
    time.sleep(0.05)  # past the epoch's end, into epoch 3's first calls of 16 steps (about 0.1 s each)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted in the untied stage at epoch 3, step" in err and f"--out {out} --resume" in err
    assert "Traceback" not in err and newest_step(out) % STEPS != 0  # a mid-epoch checkpoint
    assert metrics_of(out)["status"] == "interrupted"

    code, _, err = call(capsys, "--out", out, "--resume")  # the last resume in this process: it saves an import
    assert code == 0, err
    got = metrics_of(out)
    assert got["status"] == "done" and len(got["epochs"]) == 3
    assert [l[:2] for l in losses(got)] == [l[:2] for l in losses(reference)]
    np.testing.assert_allclose(np.array([l[2:] for l in losses(got)]), np.array([l[2:] for l in losses(reference)]),
                               rtol=1e-6)
    assert len(list(out.glob("ckpt-*.index"))) == 3  # pruned to the last 3 across the processes


@pytest.mark.slow
def test_a_failed_write_stops_cleanly_and_resumes(tmp_path, capsys):
    """A real write failure: the file-size limit (RLIMIT_FSIZE) makes the kernel refuse a checkpoint
    mid-run, as a full disk would. One line naming the file, exit 4, the last good checkpoint kept."""
    out = tmp_path / "run"
    args = [*DIGITS, "--dims", "64,4", "--batch-size", "100"]
    assert call(capsys, *args, "--epochs", "2", "--out", out)[0] == 0

    p = subprocess.run([sys.executable, str(ROOT / "train.py"), "--out", str(out), "--resume", "--epochs", "4"],
                       preexec_fn=small_files(2000), capture_output=True, text=True, timeout=120)
    assert p.returncode == 4, p.stderr
    assert p.stderr.strip() == (f"train.py: could not write {out}/ckpt-36 (File too large); stopped, the last good "
                                f"checkpoint is kept (ckpt-24); make room or fix the folder; resume with: "
                                f"python train.py --out {out} --resume")
    assert newest_step(out) == 24 and metrics_of(out)["status"] == "write failed"
    assert call(capsys, "--out", out, "--resume", "--epochs", "4")[0] == 0
    assert [m["epoch"] for m in metrics_of(out)["epochs"]] == [1, 2, 3, 4]


def small_files(limit):
    """A child's preexec_fn: files above `limit` bytes are refused with EFBIG, as on a full disk."""
    def set_limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    return set_limit


@pytest.mark.slow
def test_a_failed_tensorboard_write_stops_cleanly_and_resumes(tmp_path, capsys):
    """The TensorBoard writer writes from a thread of its own; its failure (here the events file,
    which holds the graph, outgrows a 100 kB file-size limit) is one line naming that file, exit 4,
    no traceback from either thread, and the run resumes to the end."""
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, str(ROOT / "train.py"), *DIGITS, "--dims", "64,4", "--batch-size", "100",
                        "--epochs", "2", "--out", str(out)], preexec_fn=small_files(100_000), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 4, p.stderr
    [events] = out.glob("events.out.tfevents.*")
    assert p.stderr.strip() == (f"train.py: could not write {events} (File too large); stopped, the last good "
                                f"checkpoint is kept (ckpt-12); make room or fix the folder; resume with: "
                                f"python train.py --out {out} --resume")
    assert newest_step(out) == 12 and metrics_of(out)["status"] == "write failed"
    assert call(capsys, "--out", out, "--resume")[0] == 0
    assert [m["epoch"] for m in metrics_of(out)["epochs"]] == [1, 2] and metrics_of(out)["status"] == "done"


class StopAtFirstLook:
    """A stop request that is already there when the runner first looks (a SIGINT during the epoch)."""

    signum = signal.SIGINT

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def test_stops_during_a_comparison_name_what_continues_it(tmp_path, capsys, monkeypatch):
    """The command line words every stop: inside a --compare variant the line names the comparison's
    folder and --resume --compare (what continues the comparison), not the variant's folder; a
    Ctrl-C between two variants, and one while a variant's export is written, say what was kept.
    Continued to its end, the comparison is what an uninterrupted one writes: its table (printed and
    compare.json, every variant and the baselines) and compare.png."""
    import tae_commands
    import tae_export
    import tae_runner

    out, args = tmp_path / "cmp", [*DIGITS, "--compare", "--epochs", "2", "--batch-size", "100"]
    monkeypatch.setattr(tae_runner, "StopRequest", StopAtFirstLook)
    code, _, err = call(capsys, *args, "--out", out)
    assert code == 130 and err.strip() == (f"train.py: interrupted after epoch 1 of the untied stage; saved ckpt-12; "
                                           f"resume with: python train.py --out {out} --resume --compare"), err
    monkeypatch.undo()
    trained = []
    real = tae_commands.train_one

    def ctrl_c_before_the_second(*a, **kw):
        if trained:
            raise KeyboardInterrupt
        trained.append(a[4])  # the variant's folder
        return real(*a, **kw)

    monkeypatch.setattr(tae_commands, "train_one", ctrl_c_before_the_second)
    code, _, err = call(capsys, "--out", out, "--resume", "--compare")
    assert code == 130 and err.strip() == (f"train.py: interrupted; {out} keeps every epoch it finished: resume with: "
                                           f"python train.py --out {out} --resume --compare"), err
    monkeypatch.undo()
    monkeypatch.setattr(tae_export, "export", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    code, _, err = call(capsys, "--out", out, "--resume", "--compare")
    assert code == 130 and err.strip() == (f"train.py: interrupted while writing the export of {out / 'untied'}, whose "
                                           f"training is complete and kept; write it with: python train.py --out "
                                           f"{out / 'untied'} --export"), err
    monkeypatch.undo()
    assert call(capsys, "--out", out / "untied", "--export")[0] == 0
    code, stdout, _ = call(capsys, "--out", out, "--resume", "--compare")
    assert code == 0
    # the comparison, continued to its end, is whole: every variant's row, the baselines, the plot
    result = json.loads((out / "compare.json").read_text())
    assert list(result) == ["snippet", "untied", "sync", "tied", "tied-untied", "baselines"]
    baselines = result.pop("baselines")
    assert list(baselines) == ["PCA-4", "mean image"] and baselines["PCA-4"]["trainable_params"] == 4 * 64 + 64
    assert "PCA-4" in stdout and "mean image" in stdout
    params = {k: v["trainable_params"] for k, v in result.items()}
    assert params["tied"] == params["sync"] < params["untied"] == params["tied-untied"] == params["snippet"]
    assert decode_png(out / "compare.png").ndim == 3
    for name in result:
        assert name in stdout and len(metrics_of(out / name)["epochs"]) == 2
    snippet = json.loads((out / "snippet" / "config.json").read_text())["model"]
    assert snippet["init"] == "snippet" and snippet["mode"] == "untied"


def test_a_copied_run_folder_reads_only_its_own_checkpoints(tmp_path, capsys, finished_run, monkeypatch):
    original = snapshot(finished_run)
    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    for f in copy.glob("ckpt-*.data-*"):
        f.write_bytes(f.read_bytes()[:50])  # the copy's checkpoints are damaged; the original's are not
    code, _, err = call(capsys, "--out", copy, "--resume", "--epochs", "3")
    assert code == 2 and f"cannot restore checkpoint {copy}/ckpt-24" in err
    moved = tmp_path / "moved"
    shutil.move(str(copy), moved)
    for f in finished_run.glob("ckpt-*"):
        shutil.copy(f, moved / f.name)
    monkeypatch.chdir(tmp_path)  # another working folder: config.json's data paths are absolute
    code, out, _ = call(capsys, "--out", "moved", "--resume", "--epochs", "3")
    assert code == 0 and "from ckpt-24" in out
    assert 'model_checkpoint_path: "ckpt-36"' in (moved / "checkpoint").read_text()
    assert snapshot(finished_run) == original


def test_data_paths_are_stored_absolute(tmp_path, capsys, monkeypatch):
    images = (np.random.RandomState(0).rand(60, 8, 8) * 255).astype(np.uint8)
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "mine.npy", images)
    monkeypatch.chdir(tmp_path)
    assert call(capsys, "--dataset", "data/mine.npy", "--epochs", "1", "--batch-size", "10", "--out", "r")[0] == 0
    saved = json.loads((tmp_path / "r" / "config.json").read_text())["run"]
    assert saved["dataset"] == str(tmp_path / "data" / "mine.npy")
    monkeypatch.chdir(tmp_path / "data")
    assert call(capsys, "--out", tmp_path / "r", "--resume", "--epochs", "2")[0] == 0


def test_non_finite_loss_stops_with_exit_3(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = call(capsys, *DIGITS, "--lr", "1e4", "--activation", "relu", "--epochs", "2", "--out", out)
    assert code == 3
    assert "non-finite train_loss" in err and "at epoch 1, step" in err and "(ckpt-0)" in err and "lower --lr" in err
    assert newest_step(out) == 0 and metrics_of(out)["status"] == "diverged"


@pytest.mark.slow
def test_same_seed_same_numbers_and_four_epochs_equal_two_plus_two(tmp_path, capsys):
    """Two runs with the same flags give the same numbers, bit for bit, even when one of them
    stopped after 2 epochs and was resumed for 2 more (batches, Adam state and step all resume);
    another seed gives other numbers."""
    args = [*DIGITS, "--mode", "sync", "--batch-size", "64", "--mask-noise", "0.2", "--code-dropout", "0.1"]
    assert call(capsys, *args, "--epochs", "4", "--out", tmp_path / "straight")[0] == 0
    assert call(capsys, *args, "--epochs", "2", "--out", tmp_path / "split")[0] == 0
    assert call(capsys, *args, "--epochs", "4", "--out", tmp_path / "split", "--resume")[0] == 0
    a, b = losses(metrics_of(tmp_path / "straight")), losses(metrics_of(tmp_path / "split"))
    assert len(a) == len(b) == 4 and a == b
    import tf1_tied_ae  # another seed: other initial numbers (the graph alone; no run needed)

    def initial(seed):
        ae = tf1_tied_ae.build(tf1_tied_ae.AEConfig(dims=(64, 16, 4, 4), seed=seed))
        with tf1_tied_ae.tf1.Session(graph=ae.graph) as sess:
            sess.run(ae.init_op)
            return sess.run(ae.variables["encoder/layer_0/kernel"])
    assert np.array_equal(initial(0), initial(0)) and not np.array_equal(initial(0), initial(1))


def test_cosine_runs_are_not_extended_past_their_schedule(tmp_path, capsys):
    out = tmp_path / "run"
    assert call(capsys, *DIGITS, "--lr-schedule", "cosine", "--epochs", "1", "--out", out)[0] == 0
    code, _, err = call(capsys, "--out", out, "--resume", "--epochs", "2")
    assert code == 2 and "cosine schedule decays to 0 over its 1 epochs" in err
    code, stdout, _ = call(capsys, "--out", out, "--resume")
    assert code == 0 and "is complete (1 epochs); its cosine learning rate has decayed to 0" in stdout
