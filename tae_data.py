"""Data sets for train.py (no TensorFlow but for a download): MNIST-format IDX folders, Keras .npz files, scikit-learn's digits, and a
user's own arrays. Every loader returns float32 arrays in [0, 1] (uint8 divided by 255) and
raises DataError, one line naming the problem and the fix, for anything it cannot use.
"""
import dataclasses
import gzip
import os
import pathlib
import struct
from typing import Optional, Tuple

import numpy as np

from tae_files import DataError, WidthError  # noqa: F401  (raised here; tae_data.DataError for callers)

KERAS_CACHE = pathlib.Path("~/.keras/datasets").expanduser()
# Where a local copy is looked for, in order, after --data-dir.
LOCAL = {
    "mnist": [pathlib.Path("data/mnist"), pathlib.Path("MNIST_data"), KERAS_CACHE / "mnist.npz"],
    "fashion_mnist": [pathlib.Path("data/fashion-mnist"), pathlib.Path("data/fashion_mnist"),
                      KERAS_CACHE / "fashion-mnist"],
}
IDX_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
LABEL_FILES = {"train": "train-labels-idx1-ubyte", "test": "t10k-labels-idx1-ubyte"}


@dataclasses.dataclass
class Dataset:
    name: str
    train: Optional[np.ndarray]  # [N, D] float32 in [0, 1] unless the user's data says otherwise;
    # None once a run has copied it into its graph (tae_runner), so that it is held once
    test: np.ndarray  # [M, D] float32
    image_shape: Optional[Tuple[int, int]]  # (H, W) when the rows are images
    source: str  # where it came from, for the log and config.json
    validation: Optional[np.ndarray] = None  # [V, D] float32, held out of train by `split_validation`
    # class labels where the data has them (MNIST's and Fashion-MNIST's label files, the digits'
    # targets): int64 [N] and [M], for codes.png and the codes' nearest-neighbour accuracy
    train_labels: Optional[np.ndarray] = None
    test_labels: Optional[np.ndarray] = None
    pca: Optional[Tuple[np.ndarray, np.ndarray]] = None  # (mean [D], directions [D, k]) of the training set,
    # fitted once by the images task's baselines and used again by the codes' 5-NN report
    notices: Tuple[str, ...] = ()  # one line each, for the log: what was set aside and why (labels)


def split_validation(ds, n):
    """Hold the first n training examples out as ds.validation (TF1's input_data takes MNIST's first
    5,000). The validation rows are copied, so that dropping ds.train later frees the rest."""
    if n:
        ds.validation, ds.train = ds.train[:n].copy(), ds.train[n:]
        if ds.train_labels is not None:
            ds.train_labels = ds.train_labels[n:]
    return ds


def fit_labels(labels, count, where, examples="images"):
    """(labels as int64, None), or (None, a one-line notice) when they do not fit the data: another
    count, or values that are not whole numbers. Labels are optional (codes.png, the codes' 5-NN
    accuracy), so a misfit is set aside, never silently."""
    if labels is None:
        return None, None
    labels = np.asarray(labels).ravel()
    why = None
    if len(labels) != count:
        why = f"{len(labels)} labels for {count} {examples}"
    elif not (np.issubdtype(labels.dtype, np.integer) or (np.issubdtype(labels.dtype, np.floating)
                                                         and np.all(labels == np.round(labels)))):
        why = f"labels of dtype {labels.dtype} that are not whole numbers"
    if why:
        return None, f"labels set aside: {where} has {why}; codes.png and the codes' 5-NN accuracy need one class " \
                     f"number per example"
    return labels.astype(np.int64), None


IDX_KINDS = {3: "images", 1: "labels"}


def read_idx(path, ndim=None):
    """An IDX file (gzipped or not) as a uint8 array; checks the magic number (0x0803 for image
    files: unsigned bytes, 3 dimensions; 0x0801 for labels), and that the size fits the header.
    Messages name the file as what it was read for (ndim: an images or a labels file)."""
    path = pathlib.Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    what = f"IDX {IDX_KINDS[ndim]} file" if ndim in IDX_KINDS else "IDX file"
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {what} {path} ({e}); re-download it") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an {what} of unsigned bytes (wrong magic number); "
                        "use the original MNIST-format files")
    if ndim is not None and raw[3] != ndim:
        raise DataError(f"{path} has magic number 0x{int.from_bytes(raw[:4], 'big'):08x}, not 0x{0x800 + ndim:08x}; "
                        f"it is not an {what}: use the MNIST-format {IDX_KINDS.get(ndim, 'IDX')} files")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{what} {path} is truncated (header incomplete); re-download it")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != int(np.prod(shape)):
        raise DataError(f"{what} {path} is truncated or padded: {len(raw) - header} bytes of data for shape {shape}; "
                        "re-download it")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _find_idx(folder, stem, required=True):
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (folder / name).exists():
            return folder / name
    if required:
        raise DataError(f"{folder} has no {stem}[.gz]; it needs the four MNIST-format IDX files")
    return None


def _images(arr, where):
    """uint8 [N,H,W] or [N,D] (or floats) -> float32 [N,D], and the (H,W) if there is one."""
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3):
        raise DataError(f"{where}: expected an N x D or N x H x W array, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise DataError(f"{where} is empty (0 examples); give a file with data in it")
    hw = tuple(arr.shape[1:]) if arr.ndim == 3 else None
    if arr.dtype == np.uint8:
        flat = arr.reshape(len(arr), -1).astype(np.float32)
        flat /= 255.0  # in place: no second float copy
    elif np.issubdtype(arr.dtype, np.number) and not np.iscomplexobj(arr):
        flat = arr.reshape(len(arr), -1).astype(np.float32)
    else:
        raise DataError(f"{where}: array of dtype {arr.dtype} is not numeric; give uint8 or float data")
    if hw is None:
        side = int(round(flat.shape[1] ** 0.5))
        hw = (side, side) if side * side == flat.shape[1] else None
    return flat, hw


def load_idx_folder(folder, name):
    folder = pathlib.Path(folder)
    train, hw = _images(read_idx(_find_idx(folder, IDX_FILES["train"]), 3), str(folder))
    test, _ = _images(read_idx(_find_idx(folder, IDX_FILES["test"]), 3), str(folder))
    found = {part: _find_idx(folder, LABEL_FILES[part], required=False) for part in LABEL_FILES}
    return with_labels(Dataset(name, train, test, hw, str(folder)),
                       {part: (read_idx(path, 1), path) for part, path in found.items() if path is not None})


def with_labels(ds, labels):
    """ds with the labels that fit it: labels is {"train"/"test": (array, where it came from)}; a
    part whose labels do not fit, or that has none, leaves both out, with a notice for a misfit."""
    fitted, notices = {}, list(ds.notices)
    for part, arr in (("train", ds.train), ("test", ds.test)):
        if part in labels:
            fitted[part], notice = fit_labels(labels[part][0], len(arr), labels[part][1],
                                              "images" if ds.image_shape else "examples")
            notices += [notice] if notice else []
    if fitted.get("train") is None or fitted.get("test") is None:
        fitted = {}
    return dataclasses.replace(ds, train_labels=fitted.get("train"), test_labels=fitted.get("test"),
                               notices=tuple(notices))


MAGIC = {".npy": (b"\x93NUMPY",), ".npz": (b"PK\x03\x04", b"PK\x05\x06")}  # numpy.save's; a zip archive's


def unreadable(path, kind, error):
    """The line for a .npy/.npz NumPy cannot load. An object array would need unpickling, which can
    run code from the file: the program never does it, so NumPy's advice (allow_pickle) is not passed on.
    NumPy takes any file that is not a .npy or a zip for a pickle: the first bytes say which it is."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        head = b""
    if not head.startswith(MAGIC[kind]):
        saver = "numpy.save" if kind == ".npy" else "numpy.savez"
        return f"{path} is not a {kind} file (its first bytes are not {kind}'s); write the array with {saver}"
    if "allow_pickle" in str(error):
        return (f"{path} holds an array of Python objects (dtype object), which this program does not load; "
                f"save the data as a numeric array (uint8 or float)")
    return f"cannot read {path} as {kind} ({type(error).__name__}: {error}); check the file"


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError, EOFError...
        raise DataError(unreadable(path, ".npz", e)) from None


def load_keras_npz(path, name):
    arrays = _read_npz(path)
    if not {"x_train", "x_test"} <= set(arrays):
        raise DataError(f"{path} has no x_train/x_test arrays (has {sorted(arrays)}); give a Keras dataset .npz")
    train, hw = _images(arrays["x_train"], f"{path}:x_train")
    test, _ = _images(arrays["x_test"], f"{path}:x_test")
    return with_labels(Dataset(name, train, test, hw, str(path)),
                       {part: (arrays[f"y_{part}"], f"{path}:y_{part}") for part in ("train", "test")
                        if f"y_{part}" in arrays})


def load_digits():
    """scikit-learn's bundled 8x8 digits (1,797 images, 0..16), a fixed 80/20 split."""
    from sklearn.datasets import load_digits as sk_digits  # here: --help and other data answer without scikit-learn

    bunch = sk_digits()
    images, targets = bunch.images.astype(np.float32) / 16.0, bunch.target.astype(np.int64)
    order = np.random.RandomState(0).permutation(len(images))
    cut = int(0.8 * len(images))
    flat = images.reshape(len(images), -1)
    return Dataset("digits", flat[order[:cut]], flat[order[cut:]], (8, 8), "scikit-learn load_digits (bundled)",
                   train_labels=targets[order[:cut]], test_labels=targets[order[cut:]])


def load_user_array(path, split=True):
    """A user's .npy or .npz: N x D or N x H x W; the last 10% (at least 1) become the test set,
    unless an .npz carries x_train and x_test itself. split=False: every row in `train`."""
    path = pathlib.Path(path)
    if not path.exists():
        raise DataError(f"data file {path} does not exist; check the path given to --dataset")
    if path.suffix == ".npz":
        arrays = _read_npz(path)
        if split and {"x_train", "x_test"} <= set(arrays):
            return load_keras_npz(path, "user")
        if len(arrays) != 1:
            raise DataError(f"{path} holds {sorted(arrays)}; give one array, or x_train and x_test")
        arr = next(iter(arrays.values()))
    else:
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as e:
            raise DataError(unreadable(path, ".npy", e)) from None
    flat, hw = _images(arr, str(path))
    if not split:
        return Dataset("user", flat, flat[:0], hw, str(path))
    if len(flat) < 2:
        raise DataError(f"{path} has {len(flat)} example; give at least 2 (one is held out for testing)")
    cut = len(flat) - max(1, len(flat) // 10)
    return Dataset("user", flat[:cut], flat[cut:], hw, str(path))


def _has_idx(folder):
    return any((folder / (IDX_FILES["train"] + s)).exists() for s in (".gz", ""))


def _local_copy(name, data_dir):
    """The dataset from --data-dir (which must be usable) or the first usable LOCAL place, or None."""
    if data_dir:
        path = pathlib.Path(data_dir)
        if path.is_dir():
            return load_idx_folder(path, name)
        if path.is_file() and path.suffix == ".npz":
            return load_keras_npz(path, name)
        raise DataError(f"--data-dir {path} is neither a folder of MNIST-format IDX files nor a .npz file")
    for path in LOCAL.get(name, []):
        if path.is_dir() and _has_idx(path):
            return load_idx_folder(path, name)
        if path.is_file() and path.suffix == ".npz":
            return load_keras_npz(path, name)
    return None


def _reason(error):
    """The error on one line, with its causes while the message so far says little (Keras wraps
    the network's reason in its own message, which usually repeats it)."""
    text = ""
    while error is not None and len(text) < 40:
        line = " ".join(str(error).split()) or type(error).__name__
        text = f"{text}; {line}" if text else line
        error = error.__cause__ or error.__context__
    return text[:300]


def _download(name):
    import tensorflow as tf  # here: the loaders run before TensorFlow's import (tae_cli), a download needs it

    module = {"mnist": tf.keras.datasets.mnist, "fashion_mnist": tf.keras.datasets.fashion_mnist}[name]
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as e:
        raise DataError(f"could not download {name}: {_reason(e)}; without a connection, put the four IDX files "
                        f"in a folder and pass --data-dir") from None
    train, hw = _images(x_train, name)
    return Dataset(name, train, _images(x_test, name)[0], hw, f"downloaded by tf.keras.datasets.{name}",
                   train_labels=y_train.astype(np.int64), test_labels=y_test.astype(np.int64))


def load(dataset, data_dir=None, log=print):
    """dataset: auto | mnist | fashion_mnist | digits | path to .npy/.npz. Never downloads for auto.
    What a loader set aside (labels that do not fit) is logged, a line each."""
    ds = _load(dataset, data_dir, log)
    for notice in ds.notices:
        log(notice)
    return ds


def _load(dataset, data_dir, log):
    if dataset == "auto":
        ds = _local_copy("mnist", data_dir)
        if ds:
            log(f"data: MNIST from {ds.source} (use --dataset digits for the small built-in set)")
            return ds
        log("data: scikit-learn's 8x8 digits (no local MNIST found; --dataset mnist downloads it, "
            "or --data-dir points at the IDX files)")
        return load_digits()
    if dataset in ("mnist", "fashion_mnist"):
        return _local_copy(dataset, data_dir) or _download(dataset)
    if dataset == "digits":
        return load_digits()
    if dataset.lower().endswith((".npy", ".npz")) or os.sep in dataset:  # a user's file (RunConfig checked it)
        return load_user_array(dataset)
    raise DataError(f"unknown --dataset {dataset!r}; use auto, mnist, fashion_mnist, digits or a .npy/.npz path")


PCA_MAX_DIM = 4096  # above this, the D x D covariance and its eigendecomposition cost more than a run


def fit_pca(train, k, chunk=8192):
    """(mean [D] float64, the top k principal directions [D, k]) of `train`, or None above PCA_MAX_DIM
    values per example. The covariance is summed in float64 over chunks: memory stays at chunk x D."""
    dim = train.shape[1]
    if dim > PCA_MAX_DIM:
        return None
    mean = train.mean(axis=0, dtype=np.float64)
    cov = np.zeros((dim, dim))
    for start in range(0, len(train), chunk):
        part = train[start:start + chunk] - mean
        cov += part.T @ part
    return mean, top_directions(cov, k)


def baselines(train, test, k, chunk=8192, fit=None):
    """What any autoencoder with a k-value code should beat, on the run's own test split, in the
    model's units (MSE per value, SSE per example): the mean training example, and PCA with k
    components fitted on the training part (the best linear code of that size for squared error).
    fit: fit_pca(train, k), when the caller has it already."""
    dim = train.shape[1]
    fit = fit or fit_pca(train, k, chunk)  # None above PCA_MAX_DIM
    mean = fit[0] if fit else train.mean(axis=0, dtype=np.float64)
    result = {"mean": _errors(test, np.broadcast_to(mean, test.shape))}
    if fit is None:
        return dict(result, pca=None, pca_note=f"skipped: {dim} values per example (over {PCA_MAX_DIM})")
    top = fit[1]
    centred = test - mean
    return dict(result, pca=dict(_errors(test, centred @ top @ top.T + mean), components=int(top.shape[1])))


def top_directions(scatter, k):
    """The k principal directions [D, k] of a (centred) scatter or covariance matrix, largest first."""
    _, vectors = np.linalg.eigh(scatter)  # ascending eigenvalues
    return vectors[:, ::-1][:, :min(k, scatter.shape[0])]


def _errors(test, reconstruction):
    sse = float(np.mean(np.sum((test - reconstruction) ** 2, axis=1)))
    return {"test_mse": sse / test.shape[1], "test_sse_per_image": sse}


def baseline_rows(baselines, ds):
    """The baselines by label, PCA first: {"PCA-k" / "mean image": test_mse, test_sse_per_image,
    trainable_params (the numbers each stores: PCA's components and the mean; the mean)}."""
    dim = ds.test.shape[1]
    rows = {}
    if baselines.get("pca"):
        k = baselines["pca"]["components"]
        rows[f"PCA-{k}"] = dict(baselines["pca"], trainable_params=k * dim + dim)
    rows["mean image" if ds.image_shape else "mean example"] = dict(baselines["mean"], trainable_params=dim)
    return rows


def validate(ds, input_dim, needs_unit_range):
    """Refuse data the model cannot train on, before any training starts."""
    parts = (("training", ds.train), ("validation", ds.validation), ("test", ds.test))
    for part, arr in ((part, arr) for part, arr in parts if arr is not None):
        if arr.size == 0:
            raise DataError(f"the {part} set is empty; give more examples")
        if arr.shape[1] != input_dim:
            raise WidthError(f"the data has {arr.shape[1]} values per example but --dims starts with {input_dim}; "
                             f"make the first of --dims {arr.shape[1]}", arr.shape[1])
        if not np.isfinite(arr).all():
            raise DataError(f"the {part} set holds NaN or infinite values; clean the data first")
        if needs_unit_range and (arr.min() < 0 or arr.max() > 1):
            raise DataError(f"the {part} set has values in [{arr.min():g}, {arr.max():g}] but a sigmoid output or "
                            "xent loss needs [0, 1]; rescale the data or use --output-activation linear --loss mse")
