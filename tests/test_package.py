"""What a new user meets first: the Python of the README and docs/porting.md runs as written, the package installs and
imports from any folder, and data mistakes are answered with their real cause."""
import os
import re
import shutil
import subprocess
import sys

import pytest

import tae_cli
import tae_data
from conftest import ROOT


def readme_python_blocks():
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_the_readme_has_python_to_run():
    """Its blocks run as written, with only the library's files beside them: tests/test_porting.py."""
    assert len(readme_python_blocks()) >= 1


def test_pip_install_gives_the_module_and_the_command_anywhere(tmp_path):
    """pip install . (here into a --target folder, without dependencies: they are installed
    already) makes `import tf1_tied_ae` work from another folder and installs tf1-tied-ae."""
    pytest.importorskip("setuptools", reason="building offline needs setuptools installed (pip install . fetches it)")
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the project
    source.mkdir()
    for f in ["pyproject.toml", "README.md"] + [p.name for p in ROOT.glob("t*_*.py")]:
        shutil.copy(ROOT / f, source / f)
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--no-index", "--target", str(target), str(source)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(target))
    modules = [p.stem for p in ROOT.glob("t*_*.py")]
    find = "import importlib.util, sys; print(*(importlib.util.find_spec(m).origin for m in sys.argv[1:]))"
    r = subprocess.run([sys.executable, "-c", find, *modules], cwd=elsewhere, env=env, capture_output=True,
                       text=True, timeout=120)  # where `import` finds each module (importing TF costs 7 s)
    assert r.returncode == 0 and all(p.startswith(str(target)) for p in r.stdout.split()), r.stderr
    command = target / "bin" / "tf1-tied-ae"
    r = subprocess.run([sys.executable, str(command), "--epochs", "-1"], cwd=elsewhere, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("tf1-tied-ae: error: --epochs"), r.stderr
    r = subprocess.run([sys.executable, str(command), "--help"], cwd=elsewhere, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "usage: tf1-tied-ae" in r.stdout and "tf1-tied-ae --compare" in r.stdout


def readme_commands():
    """The first word of each command the README shows outside its Python: its indented lines and
    the backticked spans that read like a command line (`tensorboard --logdir ...`)."""
    text = re.sub(r"```.*?```", "", (ROOT / "README.md").read_text(), flags=re.S)
    spans = re.findall(r"^    (\S.*)$", text, re.M) + [s for s in re.findall(r"`([^`\n]+)`", text)
                                                      if re.match(r"[a-z][\w.-]* (--|-r |\.|install|\S+\.py)", s)]
    return {s.split()[0] for s in spans if not re.match(r"\S+ \(", s)}  # not output lines: "final (epoch ..."


def test_every_command_the_readme_names_comes_with_its_install():
    """After the README's `pip install -r requirements.txt`, every command it tells a user to run
    exists: Python's own, the shell's, or the console script of a distribution requirements.txt
    names (TensorBoard: TensorFlow 2.21 no longer brings it), installed beside this Python."""
    import importlib.metadata
    import sysconfig

    commands = readme_commands()
    assert {"python", "pip", "tensorboard"} <= commands
    named = {re.split(r"[<>=!~;\s\[]", line.strip())[0].lower().replace("_", "-")
             for line in (ROOT / "requirements.txt").read_text().splitlines() if line.strip() and not line.startswith("#")}
    scripts = {}
    for name in named:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:  # the oldest stack installs .ci/oldest.txt: no tf-keras
            continue
        for entry in dist.entry_points:
            if entry.group == "console_scripts":
                scripts[entry.name] = name
    for command in commands - {"python", "pip", "bash"}:
        assert command in scripts, f"the README runs `{command}`, which no distribution in requirements.txt installs"
        assert shutil.which(command, path=sysconfig.get_path("scripts")), f"{command} is not installed beside Python"


def test_a_failed_download_names_its_cause(tmp_path, monkeypatch, capsys):
    """Offline, --dataset mnist cannot download; the line says why (a real refused connection:
    the proxy points at a closed port), not just the exception's class."""
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(tae_data, "LOCAL", {})
    monkeypatch.chdir(tmp_path)
    code = tae_cli.main(["--dataset", "mnist", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "could not download mnist: " in err, err
    assert "refused" in err.lower() and "--data-dir" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("given", ["folder", "folder/"])
def test_a_folder_given_to_dataset_points_to_data_dir(given, tmp_path, monkeypatch, capsys):
    (tmp_path / "folder").mkdir()
    monkeypatch.chdir(tmp_path)
    code = tae_cli.main(["--dataset", given])
    err = capsys.readouterr().err
    assert code == 2 and "is a folder" in err and "--dataset mnist (or fashion_mnist) --data-dir " in err, err


def test_the_porting_notes_name_apis_that_exist():
    """Every tf.compat.v1 name the porting notes promise, on the TensorFlow installed."""
    import tensorflow as tf

    text = (ROOT / "docs" / "porting.md").read_text()
    notes = text[text.index("## Notes for porting"):]
    names = set(re.findall(r"`tf1\.([A-Za-z_.]+)", notes))
    assert {"placeholder", "Session", "train.Saver", "random_normal", "glorot_uniform_initializer"} <= names
    for name in names:
        obj = tf.compat.v1
        for part in name.split("."):
            obj = getattr(obj, part, None)
            assert obj is not None, f"tf.compat.v1.{name}"
