"""Shared test set-up: quiet TensorFlow, the project on sys.path, the real-data locations."""
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

SHARED_DATA = ROOT.parent / "shared" / "data"


def call(capsys, *args):
    """train.py's main in this process: (exit code, stdout, stderr)."""
    import tae_cli

    code = tae_cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def mnist_dir():
    path = SHARED_DATA / "mnist"
    if not (path / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found at {path} (only developers' machines and CI have ../shared)")
    return path


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test of many seconds (whole runs); started first, so that the "
                                       "two xdist workers finish together")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: the rest keep their order
