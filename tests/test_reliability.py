"""Bad input, kills, Ctrl-C, divergence, determinism and resume: the run is never lost."""
import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import train
from conftest import ROOT

DIGITS = ["--dataset", "digits"]


def call(capsys, *args):
    code = train.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


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
    assert train.main([*DIGITS, "--epochs", "2", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def other_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "other"
    assert train.main([*DIGITS, "--epochs", "1", "--dims", "64,32,8", "--out", str(out)]) == 0
    return out


def write_idx(folder, magic=0x0803, truncate=0):
    folder.mkdir()
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        body = np.random.RandomState(0).randint(0, 255, (20, 28, 28)).astype(np.uint8).tobytes()
        raw = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (20, 28, 28)) + body
        (folder / (name + ".gz")).write_bytes(gzip.compress(raw[: len(raw) - truncate]))


def npy(tmp_path, name, arr):
    np.save(tmp_path / name, arr)
    return tmp_path / name


def corrupt(tmp_path, case, finished_run, other_run):
    """Set up `case`: (arguments, the folder that must stay untouched, words the message must hold)."""
    run = tmp_path / "run"
    good = np.random.RandomState(0).rand(50, 64).astype(np.float32)
    if case in ("resume_dims", "resume_mode", "resume_loss", "existing_out", "ckpt_truncated", "ckpt_deleted",
                "ckpt_other_arch"):
        shutil.copytree(finished_run, run)
    data = tmp_path / "data.npy"
    table = {
        "dims_text": (["--dims", "64,abc", *DIGITS], None, ["--dims", "integers"]),
        "dims_zero": (["--dims", "64,0,4", *DIGITS], None, ["--dims", "positive"]),
        "dims_mismatch": (["--dims", "100,10", *DIGITS], None, ["--dims", "64"]),
        "mode": (["--mode", "transpose", *DIGITS], None, ["--mode", "tied-untied"]),
        "dataset": (["--dataset", "cifar"], None, ["--dataset", "mnist"]),
        "activation": (["--activation", "gelu", *DIGITS], None, ["--activation", "sigmoid"]),
        "epochs_negative": (["--epochs", "-1", *DIGITS], None, ["--epochs"]),
        "batch_zero": (["--batch-size", "0", *DIGITS], None, ["--batch-size"]),
        "batch_too_big": (["--batch-size", "5000", *DIGITS], None, ["--batch-size", "1437"]),
        "lr_zero": (["--lr", "0", *DIGITS], None, ["--lr", "positive"]),
        "lr_negative": (["--lr", "-0.1", *DIGITS], None, ["--lr"]),
        "lr_nan": (["--lr", "nan", *DIGITS], None, ["--lr", "nan"]),
        "untie_epochs": (["--mode", "tied-untied", "--epochs", "2", "--untie-epochs", "3", *DIGITS], None,
                         ["--untie-epochs"]),
        "data_dir_missing": (["--dataset", "mnist", "--data-dir", tmp_path / "nowhere"], None, ["--data-dir"]),
        "file_missing": (["--dataset", tmp_path / "nothing.npy"], None, ["does not exist"]),
        "idx_magic": (["--dataset", "mnist", "--data-dir", tmp_path / "idx"], None, ["magic"]),
        "idx_truncated": (["--dataset", "mnist", "--data-dir", tmp_path / "idx"], None, ["truncated"]),
        "npz_corrupt": (["--dataset", tmp_path / "bad.npz"], None, ["npz"]),
        "data_nan": (["--dataset", data, "--dims", "64,8", "--batch-size", "10"], None, ["NaN"]),
        "data_inf": (["--dataset", data, "--dims", "64,8", "--batch-size", "10"], None, ["infinite"]),
        "data_range": (["--dataset", data, "--dims", "64,8", "--batch-size", "10", "--loss", "xent"], None, ["[0, 1]"]),
        "data_empty": (["--dataset", data, "--dims", "64,8", "--batch-size", "10"], None, ["empty"]),
        "resume_nothing": (["--resume", "--out", tmp_path / "empty"], tmp_path / "empty", ["no config.json"]),
        "resume_dims": (["--resume", "--out", run, "--dims", "64,8"], run, ["--dims 64,8"]),
        "resume_mode": (["--resume", "--out", run, "--mode", "untied"], run, ["--mode untied"]),
        "resume_loss": (["--resume", "--out", run, "--loss", "xent"], run, ["--loss xent"]),
        "existing_out": ([*DIGITS, "--out", run], run, ["existing run", "--resume"]),
        "out_under_file": ([*DIGITS, "--out", tmp_path / "afile" / "run"], None, ["writable"]),
        "out_read_only": ([*DIGITS, "--out", "/proc/tf1-tied-ae-run"], None, ["writable"]),
        "ckpt_truncated": (["--resume", "--out", run, "--epochs", "3"], run, ["damaged"]),
        "ckpt_deleted": (["--resume", "--out", run, "--epochs", "3"], run, ["damaged"]),
        "ckpt_other_arch": (["--resume", "--out", run, "--epochs", "3"], run, ["another model"]),
    }
    if case == "idx_magic":
        write_idx(tmp_path / "idx", magic=0x0801)
    elif case == "idx_truncated":
        write_idx(tmp_path / "idx", truncate=100)
    elif case == "npz_corrupt":
        (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    elif case in ("data_nan", "data_inf", "data_range", "data_empty"):
        bad = {"data_nan": np.nan, "data_inf": np.inf, "data_range": 3.0}
        if case == "data_empty":
            good = good[:0]
        else:
            good[7, 3] = bad[case]
        np.save(data, good)
    elif case == "resume_nothing":
        (tmp_path / "empty").mkdir()
    elif case == "out_under_file":
        (tmp_path / "afile").write_text("a file, not a folder")
    elif case.startswith("ckpt_"):
        latest = open(run / "checkpoint").read().split('"')[1]
        data_file = run / (latest + ".data-00000-of-00001")
        if case == "ckpt_truncated":
            data_file.write_bytes(data_file.read_bytes()[:100])
        elif case == "ckpt_deleted":
            data_file.unlink()
        else:
            for f in other_run.glob("ckpt-*"):  # another run's checkpoint files under this run's names
                suffix = f.name.split(".", 1)[1]
                shutil.copy(f, run / f"{latest}.{suffix}")
    return table[case]


CASES = ["dims_text", "dims_zero", "dims_mismatch", "mode", "dataset", "activation", "epochs_negative",
         "batch_zero", "batch_too_big", "lr_zero", "lr_negative", "lr_nan", "untie_epochs", "data_dir_missing",
         "file_missing", "idx_magic", "idx_truncated", "npz_corrupt", "data_nan", "data_inf", "data_range",
         "data_empty", "resume_nothing", "resume_dims", "resume_mode", "resume_loss", "existing_out",
         "out_under_file", "out_read_only", "ckpt_truncated", "ckpt_deleted", "ckpt_other_arch"]


@pytest.mark.parametrize("case", CASES)
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
    if keep:
        assert snapshot(keep) == before
    assert not (tmp_path / "checkpoints").exists()


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


SLOW = [*DIGITS, "--dims", "64,1500,800,8", "--mode", "tied-untied", "--batch-size", "20", "--epochs", "6"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run that killed and interrupted runs must end up equal to."""
    out = tmp_path_factory.mktemp("ref") / "run"
    assert train.main([*SLOW, "--out", str(out)]) == 0
    return metrics_of(out)


def newest_step(folder):
    path = os.path.join(folder, "checkpoint")
    if not os.path.exists(path):
        return -1
    return int(open(path).read().split('"')[1].rsplit("-", 1)[1])


def assert_files_whole(folder):
    for name in ("config.json", "metrics.json"):
        if os.path.exists(os.path.join(folder, name)):
            json.loads(open(os.path.join(folder, name)).read())
    step = newest_step(folder)
    if step >= 0:
        assert os.path.getsize(os.path.join(folder, f"ckpt-{step}.index")) > 0


def test_sigkill_at_several_points_then_resume(tmp_path, reference):
    out = tmp_path / "run"
    steps = 1437 // 20
    seen_save = False
    # 1: mid-epoch 1, before any epoch ended; 2: mid-epoch later on; 3: while a checkpoint is written
    for point in ("first-epoch", "mid-epoch", "saving"):
        p = cli(*SLOW, "--out", out, *(["--resume"] if (out / "config.json").exists() else []), cwd=tmp_path)
        start = newest_step(out)
        deadline = time.time() + 120
        while time.time() < deadline:
            step = newest_step(out)
            if point == "first-epoch" and (out / "config.json").exists() and time.time() > 0:
                time.sleep(0.5)
                break
            if point == "mid-epoch" and step > start and step % steps == 0:
                time.sleep(0.3)
                break
            if point == "saving" and any(".tempstate" in f or f.startswith(".metrics") for f in os.listdir(out)):
                seen_save = True
                break
            time.sleep(0.0005)
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert p.returncode == -signal.SIGKILL
        assert_files_whole(out)
        done = newest_step(out) // steps
        assert [m["epoch"] for m in metrics_of(out)["epochs"]][:done] == list(range(1, done + 1))
    p = cli("--out", out, "--resume", cwd=tmp_path)
    stdout, err = p.communicate(timeout=240)
    assert p.returncode == 0, err
    got = metrics_of(out)
    assert got["status"] == "done" and len(got["epochs"]) == 6
    np.testing.assert_allclose(np.array([l[2:] for l in losses(got)]), np.array([l[2:] for l in losses(reference)]),
                               rtol=1e-6)
    assert seen_save, "no kill landed during a save: the test did not exercise that point"


def test_ctrl_c_saves_and_resume_matches(tmp_path, reference):
    out = tmp_path / "run"
    p = cli(*SLOW, "--out", out, cwd=tmp_path)
    while newest_step(out) < 1437 // 20 + 5:  # into epoch 2
        time.sleep(0.01)
        assert p.poll() is None
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    stdout, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted at epoch" in err and f"--out {out} --resume" in err and "Traceback" not in err
    assert newest_step(out) % (1437 // 20) != 0  # a mid-epoch checkpoint was saved
    assert metrics_of(out)["status"] == "interrupted"
    p = cli("--out", out, "--resume", cwd=tmp_path)
    p.communicate(timeout=240)
    assert p.returncode == 0
    np.testing.assert_allclose(np.array([l[2:] for l in losses(metrics_of(out))]),
                               np.array([l[2:] for l in losses(reference)]), rtol=1e-6)


def test_non_finite_loss_stops_with_exit_3(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = call(capsys, *DIGITS, "--lr", "1e4", "--activation", "relu", "--epochs", "2", "--out", out)
    assert code == 3
    assert "non-finite loss" in err and "epoch 1, step" in err and "ckpt-0" in err
    assert newest_step(out) == 0 and metrics_of(out)["status"] == "diverged"


def test_same_seed_same_numbers(tmp_path, capsys):
    for name in ("a", "b"):
        assert call(capsys, *DIGITS, "--mode", "sync", "--epochs", "3", "--out", tmp_path / name)[0] == 0
    assert losses(metrics_of(tmp_path / "a")) == losses(metrics_of(tmp_path / "b"))
    assert call(capsys, *DIGITS, "--mode", "sync", "--epochs", "3", "--seed", "1", "--out", tmp_path / "c")[0] == 0
    assert losses(metrics_of(tmp_path / "a")) != losses(metrics_of(tmp_path / "c"))


def test_four_epochs_equal_two_plus_two(tmp_path, capsys):
    args = [*DIGITS, "--mode", "untied", "--batch-size", "64"]
    assert call(capsys, *args, "--epochs", "4", "--out", tmp_path / "straight")[0] == 0
    assert call(capsys, *args, "--epochs", "2", "--out", tmp_path / "split")[0] == 0
    assert call(capsys, *args, "--epochs", "4", "--out", tmp_path / "split", "--resume")[0] == 0
    a, b = losses(metrics_of(tmp_path / "straight")), losses(metrics_of(tmp_path / "split"))
    assert len(a) == len(b) == 4
    np.testing.assert_allclose([x[2:] for x in a], [x[2:] for x in b], rtol=1e-6)
