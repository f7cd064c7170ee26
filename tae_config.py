"""The settings of a train.py run: the model (tf1_config.AEConfig, the library's) and the run around
it (RunConfig: the data, the schedule, the RBM pretraining), and the flags made from both.

RunConfig is a frozen dataclass validated on construction, like AEConfig: a bad field raises
ConfigError naming it. FLAGS is the one table of the command line: each field's flag, parser, help
and the condition under which it does anything (`applies`), so a flag that would do nothing is
refused by name (`inert()`). The defaults `--help` shows come from the fields' defaults and the
ratings task's RATINGS_DEFAULTS. This module imports no TensorFlow: flags and config errors answer
at once.
"""
import dataclasses
import os
import pathlib
import types
from typing import Optional, Tuple

from tf1_config import (ACTIVATIONS, AEConfig, ConfigError, RBMConfig, Schedule, choice,  # noqa: F401
                        default_tied_epochs, integer, listed, number, unit_pair)

PRETRAIN = ("none", "rbm")
DATASETS = ("auto", "mnist", "fashion_mnist", "digits", "movielens")
RATINGS_SUFFIXES = (".csv", ".tsv", ".data", ".dat", ".txt", ".base")  # a user's ratings file
ORIENTATIONS = ("item", "user")
MOVIELENS_SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
# Settings one flag away (--preset NAME): (AEConfig fields, RunConfig fields); given flags override.
PRESETS = {
    # the 2018 question's code as written: untied, N(0,1) init, sigmoid units (code too), linear
    # output, tf.losses.mean_squared_error, Adam at 1e-3; batches of 100 (the question names no size)
    "question": (dict(mode="untied", init="snippet", activation="sigmoid", code_activation="sigmoid",
                      output_activation="linear", loss="mse", learning_rate=1e-3, lr_schedule="constant"),
                 dict(batch_size=100)),
    # Hinton & Salakhutdinov's 784-1000-500-250-30 MNIST net without pretraining, this project's best
    # recipe for it (benchmarks/README.md): ELU units, a linear code, cross-entropy, Adam at 1e-3 with a
    # cosine decay over 81 epochs of 100 images, untied, each training image moved up to a pixel
    "hinton": (dict(dims=(784, 1000, 500, 250, 30), mode="untied", activation="elu", code_activation="linear",
                    loss="xent", learning_rate=1e-3, lr_schedule="cosine", shift=1),
               dict(batch_size=100, epochs=81)),
}
# A ratings run's defaults, where a flag is not given (measured on MovieLens 100K's u1 validation
# ratings; benchmarks/README.md): I-AutoRec's 500 sigmoid units, untied, weight decay, 10% masking
# noise, lazy Adam at 3e-3 (on the sparse path; Adam on the dense one) with a cosine decay over 80 epochs.
RATINGS_HIDDEN, RATINGS_EPOCHS = 500, 80
RATINGS_DEFAULTS = dict(mode="untied", loss="masked_mse", code_activation="sigmoid", lr_schedule="cosine",
                        weight_decay=3e-3, mask_noise=0.1, learning_rate=3e-3, optimizer="lazyadam")


def parse_ints(text):
    return tuple(int(p) for p in text.split(","))


def parse_switch(text):
    if text.lower() not in ("on", "off"):
        raise ValueError(text)
    return text.lower() == "on"


def parse_floats(text):
    return tuple(float(p) for p in text.split(","))


def is_path(dataset):
    """Whether --dataset names a file of the user's rather than a known data set."""
    return dataset.lower().endswith((".npy", ".npz") + RATINGS_SUFFIXES) or os.sep in dataset


def is_ratings(dataset):
    """Whether --dataset is ratings (MovieLens 100K, or a user's ratings file) rather than arrays."""
    return dataset == "movielens" or dataset.lower().endswith(RATINGS_SUFFIXES)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything around the graph: the data, the stage schedule, the RBM pretraining (FLAGS says
    what each field means). None means "resolved from the data when the run starts"; config.json
    stores the resolved values, so a resumed run keeps them."""

    dataset: str = "auto"
    data_dir: Optional[str] = None
    split: str = "u1"
    test_file: Optional[str] = None
    rating_scale: Optional[Tuple[float, float]] = None
    orientation: str = "item"
    epochs: Optional[int] = None
    batch_size: int = 32
    validation: Optional[int] = None
    patience: Optional[int] = None
    tied_epochs: Optional[int] = None
    sync_every: str = "step"
    sync_replicas: bool = False
    pretrain: str = "none"
    pretrain_epochs: int = 10
    rbm_lr: float = 0.1
    rbm_lr_linear: float = 0.001
    rbm_weight_cost: float = 2e-4
    rbm_momentum: Tuple[float, float] = (0.5, 0.9)
    rbm_batch_size: int = 100

    def __post_init__(self):
        if isinstance(self.dataset, str) and self.dataset not in DATASETS and os.path.isdir(self.dataset):
            if (pathlib.Path(self.dataset) / "u1.base").exists():
                raise ConfigError("dataset", f"{self.dataset} is MovieLens 100K's folder; it goes to --data-dir: "
                                             f"--dataset movielens --data-dir {self.dataset}")
            raise ConfigError("dataset", f"{self.dataset} is a folder; a folder of IDX files goes to --data-dir: "
                                         f"--dataset mnist (or fashion_mnist) --data-dir {self.dataset}")
        if not isinstance(self.dataset, str) or not (self.dataset in DATASETS or is_path(self.dataset)):
            raise ConfigError("dataset", f"must be {', '.join(DATASETS)}, a path to a .npy or .npz file or a ratings file "
                                         f"({', '.join(RATINGS_SUFFIXES)}); got {self.dataset!r}")
        integer("epochs", self.epochs, 0, none_ok=True)
        integer("batch_size", self.batch_size, 1)
        integer("validation", self.validation, 0, none_ok=True)
        integer("patience", self.patience, 1, none_ok=True)
        integer("tied_epochs", self.tied_epochs, 0, none_ok=True)
        if None not in (self.epochs, self.tied_epochs) and self.tied_epochs > self.epochs:
            raise ConfigError("tied_epochs", f"must be between 0 and epochs ({self.epochs}); got {self.tied_epochs}")
        choice("sync_every", self.sync_every, ("step", "epoch"))
        if not isinstance(self.sync_replicas, bool):
            raise ConfigError("sync_replicas", f"must be on or off (true or false); got {self.sync_replicas!r}")
        choice("split", self.split, MOVIELENS_SPLITS)
        choice("orientation", self.orientation, ORIENTATIONS)
        if self.rating_scale is not None:
            scale = tuple(self.rating_scale) if isinstance(self.rating_scale, (list, tuple)) else ()
            if len(scale) != 2 or not all(isinstance(v, (int, float)) and v == v and abs(v) != float("inf")
                                          for v in scale) or scale[0] >= scale[1]:
                raise ConfigError("rating_scale", f"must be two numbers, the lowest and the highest rating, like 1,5; "
                                                  f"got {listed(self.rating_scale)}")
            object.__setattr__(self, "rating_scale", tuple(float(v) for v in scale))
        choice("pretrain", self.pretrain, PRETRAIN)
        integer("pretrain_epochs", self.pretrain_epochs, 1)
        number("rbm_lr", self.rbm_lr, positive=True)
        number("rbm_lr_linear", self.rbm_lr_linear, positive=True)
        number("rbm_weight_cost", self.rbm_weight_cost, positive=False)
        object.__setattr__(self, "rbm_momentum", unit_pair("rbm_momentum", self.rbm_momentum))
        integer("rbm_batch_size", self.rbm_batch_size, 1)

    def schedule(self, model):
        """The library's Schedule of this (resolved) run on `model`: epochs, batches, the RBMs."""
        return Schedule(epochs=self.epochs, batch_size=self.batch_size, tied_epochs=self.tied_epochs,
                        sync_every=self.sync_every, rbm=rbm_config(model, self))


def rbm_config(model, run):
    """The RBM stack that `run` asks for on `model`, or None without pretraining."""
    if run.pretrain != "rbm":
        return None
    return RBMConfig(dims=model.dims, linear_top=model.code_activation == "linear", learning_rate=run.rbm_lr,
                     learning_rate_linear=run.rbm_lr_linear, weight_cost=run.rbm_weight_cost,
                     momentum=run.rbm_momentum, epochs=run.pretrain_epochs, batch_size=run.rbm_batch_size,
                     seed=model.seed)


# --- flags ------------------------------------------------------------------------------------------

def option(help, flag=None, parse=str, default_text=None, applies=None):
    """A row of FLAGS. applies: (test(model, run) -> bool, what makes the field count), for fields that
    do something only in some configurations. default_text: for a default that is a rule, not a value."""
    return {"help": help, "flag": flag, "parse": parse, "default_text": default_text, "applies": applies}


COSINE = (lambda m, r: m.lr_schedule == "cosine", "--lr-schedule cosine")
NOT_PRETRAINED = (lambda m, r: r.pretrain == "none", "no --pretrain (the RBMs set every variable)")
HIDDEN = (lambda m, r: len(m.dims) > 2, "--dims with hidden layers between input and code")
VALIDATED = (lambda m, r: r.validation != 0, "a validation split (--validation above 0)")
RATINGS = (lambda m, r: is_ratings(r.dataset), "ratings: --dataset movielens or a ratings file")
RATINGS_FILE = (lambda m, r: is_ratings(r.dataset) and r.dataset != "movielens", "--dataset path/to/ratings.csv")
RBM = (lambda m, r: r.pretrain == "rbm", "--pretrain rbm")
FLAGS = {  # field: its flag; AEConfig's fields first, in field order, then RunConfig's
    "dims": option("layer sizes from input to code", parse=parse_ints,
                   default_text="the question's rule from the image size: 784,196,81,49 for 28x28, 64,16,4,4 for 8x8"),
    "mode": option("untied | tied | sync (the accepted answer) | tied-untied (Hinton's: tied, then untied); ratings "
                   "train untied by default, 0.07 to 0.08 RMSE better on MovieLens 100K (benchmarks/README.md)"),
    "init": option("glorot (Glorot-uniform kernels, zero biases) | snippet (the question's N(0,1) everywhere)",
                   applies=NOT_PRETRAINED),
    "activation": option("hidden units: " + " | ".join(ACTIVATIONS), applies=HIDDEN),
    "code_activation": option("code layer: " + " | ".join(ACTIVATIONS)),
    "output_activation": option("linear | sigmoid", default_text="linear with mse, sigmoid with xent"),
    "loss": option("mse (tf.losses.mean_squared_error) | xent (sigmoid cross-entropy on the logits) | masked_mse "
                   "(ratings: squared error over the non-zero inputs only, divided by their count; 0 means unrated)"),
    "trainable": option("what minimize(var_list=...) trains: all | encoder | decoder"),
    "optimizer": option("adam | lazyadam (with --sparse: only the rows a batch touches move, their moments "
                        "decay only then; the weight decay too; docs/library.md) | sgd"),
    "learning_rate": option("learning rate", flag="--lr", parse=float),
    "lr_schedule": option("constant | cosine (decays to 0 by global step)"),
    "lr_decay_steps": option("cosine: training steps to decay over", parse=int,
                             default_text="all the run's training steps", applies=COSINE),
    "warmup_steps": option("the learning rate rises linearly from 0 over the first N training steps (multiplying "
                           "the schedule)", parse=int),
    "seed": option("graph-level seed; also orders the batches and keys the noise and dropout", parse=int),
    "mask_noise": option("denoising: the fraction of input values set to 0 in each training batch (Vincent et al. "
                         "2008's masking noise); the loss compares the reconstruction with the clean input", parse=float),
    "gaussian_noise": option("denoising: the standard deviation of Gaussian noise added to each training input "
                             "(after any masking); the target stays clean", parse=float),
    "weight_decay": option("L2 in the loss: weight_decay * sum(w^2) / 2 over the kernels being trained (a tied kernel "
                           "once; biases never); with Adam this is not AdamW's decoupled decay", parse=float),
    "shift": option("images: move each training image by a random offset of up to N pixels on each axis (zero "
                    "fill), drawn in the graph each step; the moved image is input and target; validation and test "
                    "images never move", parse=int,
                    applies=(lambda m, r: not is_ratings(r.dataset), "images (a dataset with a height and width)")),
    "code_dropout": option("dropout rate on the code in training (inverted: kept values scaled by 1/(1-rate))",
                           parse=float),
    "hidden_dropout": option("dropout rate on every hidden layer, encoder and decoder, in training", parse=float,
                             applies=HIDDEN),
    "dense_refeed": option("DeepRecommender's dense re-feeding: on (after each step, a second update on the model's "
                           "own dense output f(x) as input and target) | off", parse=parse_switch,
                           applies=(lambda m, r: m.loss == "masked_mse", "--loss masked_mse (ratings)")),
    "sparse_input": option("ratings: on (train on each batch's ratings as a sparse tensor: the first layer from the "
                           "ratings, the last only at the rated pairs; the same loss and gradients at the cost of the "
                           "ratings) | off (the dense [batch, width] path)", flag="--sparse", parse=parse_switch,
                           default_text="on for ratings with --optimizer lazyadam (their default), off otherwise",
                           applies=RATINGS),
    "dataset": option("auto (a local MNIST copy, else scikit-learn's digits) | mnist | fashion_mnist | digits | "
                      "path/to/data.npy or .npz | movielens (MovieLens 100K ratings) | path/to/ratings.csv or .tsv "
                      "(user, item, rating a line)"),
    "data_dir": option("folder of MNIST-format IDX files, or a Keras .npz; with movielens, the ml-100k folder",
                       default_text="look in ./data/mnist, ./MNIST_data, ~/.keras/datasets; ./data/ml-100k, ./ml-100k",
                       applies=(lambda m, r: r.dataset in ("auto", "mnist", "fashion_mnist", "movielens"),
                                "--dataset auto, mnist, fashion_mnist or movielens")),
    "split": option("MovieLens 100K's canonical split: u1 .. u5 (the five folds) | ua | ub",
                    applies=(lambda m, r: r.dataset == "movielens", "--dataset movielens")),
    "test_file": option("a ratings file's test ratings, in the same format", default_text="a seeded tenth of the ratings",
                        applies=RATINGS_FILE),
    "rating_scale": option("a ratings file's lowest and highest possible rating, like 1,5: a rating outside it is "
                           "refused, naming the line", parse=parse_floats,
                           default_text="the lowest and highest training rating (the final line and config.json say so)",
                           applies=RATINGS_FILE),
    "orientation": option("ratings: item (each item's vector of user ratings is an example: I-AutoRec) | user (each "
                          "user's vector of item ratings: DeepRecommender)", applies=RATINGS),
    "epochs": option("training epochs in all (0 saves and evaluates the initial model)", parse=int,
                     default_text=f"10 for MNIST-sized data, 200 for smaller sets; ratings: {RATINGS_EPOCHS}"),
    "batch_size": option("examples per step", parse=int),
    "validation": option("training examples held out to pick the best epoch: the first N, as TF1's input_data does; "
                         "for ratings, N seeded training ratings (0: none; the test set is never used to choose)",
                         parse=int, default_text="5000 for MNIST and Fashion-MNIST (55,000 train), a tenth of the "
                                                 "training set otherwise"),
    "patience": option("stop early after N epochs without a lower validation error", parse=int, default_text="never",
                       applies=VALIDATED),
    "tied_epochs": option("tied-untied: the first N epochs train tied, the rest untied", parse=int,
                          default_text="half of --epochs, rounded up",
                          applies=(lambda m, r: m.mode == "tied-untied", "--mode tied-untied")),
    "sync_every": option("sync: re-assign the decoder's copies every step | epoch",
                         applies=(lambda m, r: m.mode == "sync", "--mode sync")),
    "sync_replicas": option("a cluster run (docs/cluster.md): on (synchronous updates, each step the mean gradient of "
                            "a part of the batch from every worker: tf.train.SyncReplicasOptimizer) | off (each worker's "
                            "steps apply as they come)", parse=parse_switch),
    "pretrain": option("none | rbm (Hinton & Salakhutdinov's greedy RBM pretraining, then unrolling)"),
    "pretrain_epochs": option("epochs per RBM", parse=int, applies=RBM),
    "rbm_lr": option("learning rate of the binary RBMs", parse=float, applies=RBM),
    "rbm_lr_linear": option("learning rate of the linear top RBM", parse=float,
                            applies=(lambda m, r: r.pretrain == "rbm" and m.code_activation == "linear",
                                     "--pretrain rbm with --code-activation linear")),
    "rbm_weight_cost": option("RBM weight decay", parse=float, applies=RBM),
    "rbm_momentum": option("RBM momentum for the first 5 epochs, then after", parse=parse_floats, applies=RBM),
    "rbm_batch_size": option("RBM mini-batch size", parse=int, applies=RBM),
}


def shown(value):
    """A default as a user would type it: 0.001, 784,196, on/off."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


class Flag:
    """One command-line flag: a config field and its row of FLAGS."""

    def __init__(self, owner, field):
        row = FLAGS[field.name]
        self.owner, self.field = owner, field.name
        self.name = row["flag"] or "--" + field.name.replace("_", "-")
        self.parse, self.applies = row["parse"], row["applies"]
        self.default = field.default
        text = row["default_text"] or shown(field.default)
        if field.name in RATINGS_DEFAULTS:  # the two tasks' defaults side by side, from the constants
            text += f"; ratings: {shown(RATINGS_DEFAULTS[field.name])}"
        elif field.name == "dims":
            text += f"; ratings: the matrix's width,{RATINGS_HIDDEN}"
        self.help = f"{row['help']} (default: {text})"


def flags():
    """Every config flag, AEConfig's first, in field order."""
    return [Flag(owner, f) for owner in (AEConfig, RunConfig) for f in dataclasses.fields(owner)]


def flag_of(field):
    return next((f.name for f in flags() if f.field == field), field)


def inert(model, run, fields):
    """The first of `fields` that does nothing with these configs, as (flag, what would make it
    count), or None. The question answered: would setting this field change the run?"""
    for f in flags():
        if f.field in fields and f.applies and not f.applies[0](model, run):
            return f.name, f.applies[1]
    return None


# --- the command line's values into configs ---------------------------------------------------------

def given_flags(args):
    """{Flag: value} of the config flags on the command line, data paths made absolute (config.json
    keeps them so: a resume works from any folder)."""
    found = {}
    for flag in flags():
        value = getattr(args, flag.name.lstrip("-").replace("-", "_"))
        if value is not None:
            if flag.field in ("data_dir", "test_file") or (flag.field == "dataset" and is_path(value)):
                value = os.path.abspath(value)
            found[flag] = value
    return found


def _show(value):
    """A value as the user types it: on/off, 1,5, 0.001."""
    if isinstance(value, list):
        value = tuple(value)
    return ",".join(map(_show, value)) if isinstance(value, tuple) else shown(value)


def _run_has(flag, old, saved):
    """What the resumed run has for `flag`, in the words of its flag: a value, or how it was resolved."""
    if old is not None:
        return _show(old)
    if flag.field == "rating_scale" and saved.get("rating_scale"):
        low, high = saved["rating_scale"]
        return f"no --rating-scale: its scale, {low:g} to {high:g}, was implied by its training ratings"
    return f"no {flag.name}"


def merge(saved, given, out):
    """The configs of a run being resumed: its saved values; a given flag that differs is refused by
    name (ConfigError), except --epochs, which may extend the run."""
    values = {AEConfig: dict(saved["model"]), RunConfig: dict(saved["run"])}
    values[RunConfig].setdefault("validation", 0)  # runs from before the validation split had none
    for owner in values:  # fields added since the run started take their defaults
        for f in dataclasses.fields(owner):
            values[owner].setdefault(f.name, f.default)
    diffs = []
    for flag, value in given.items():
        old = values[flag.owner][flag.field]
        if flag.field == "epochs":
            if value < old:
                diffs.append(f"--epochs {value} (run has {old}; a resumed run can only be extended)")
        elif old is None or _show(value) != _show(old):
            diffs.append(f"{flag.name} {_show(value)} (run has {_run_has(flag, old, saved)})")
        values[flag.owner][flag.field] = value
    if diffs:
        raise ConfigError("--resume", f"with flags that differ from the run in {out}: {'; '.join(diffs)}; "
                                      "drop them or start a new run with another --out")
    model, run = AEConfig(**values[AEConfig]), RunConfig(**values[RunConfig])
    extended = run.epochs > saved["run"]["epochs"]
    if extended and model.lr_schedule == "cosine" and model.lr_decay_steps is None:
        raise ConfigError("epochs", f"{run.epochs}: this run's cosine schedule decays to 0 over its "
                                    f"{saved['run']['epochs']} epochs, so a longer run would change the learning rates "
                                    "already used; start a new run with another --out")
    return model, run


def preset_values(given, preset=None):
    """(AEConfig fields, RunConfig fields) of the flags over the preset's settings, if any: plain
    dicts, not checked yet."""
    model, run = (dict(part) for part in PRESETS.get(preset, ({}, {})))
    model.update({f.field: v for f, v in given.items() if f.owner is AEConfig})
    run.update({f.field: v for f, v in given.items() if f.owner is RunConfig})
    return model, run


def lenient(model_values, run_values):
    """Stand-ins for the two configs (their defaults where a field is not given), not checked: what
    `inert` reads, so that a flag that does nothing is named before a value that is wrong with it."""
    defaults = lambda cls: {f.name: f.default for f in dataclasses.fields(cls)}  # noqa: E731
    return (types.SimpleNamespace(**{**defaults(AEConfig), **model_values}),
            types.SimpleNamespace(**{**defaults(RunConfig), **run_values}))


def early_configs(given, preset=None):
    """AEConfig fields and RunConfig of the flags alone (over the preset's settings, if any), before
    any data: a bad value fails here, at once (ConfigError)."""
    model, run = preset_values(given, preset)
    run = RunConfig(**run)
    AEConfig(**(ratings_model_values(model) if is_ratings(run.dataset) else model))  # dims: the default stands in
    return model, run


def ratings_model_values(given):
    """A ratings run's AEConfig fields: RATINGS_DEFAULTS where a flag is not given. Unless --sparse
    is given, the sparse path where lazy Adam trains (the default; it needs it) and the loss is the
    same on both paths (masked_mse, no Gaussian noise, no dense re-feeding); exact Adam or SGD move
    every row each step whichever the path, and take the dense one unless --sparse on says so (it
    saves the products, not the update: benchmarks/README.md, "Ratings at scale"). On the dense
    path the default optimizer is adam."""
    values = {**RATINGS_DEFAULTS, **given}
    if "sparse_input" not in given:
        same = values.get("loss") == "masked_mse" and not values.get("gaussian_noise") and not values.get("dense_refeed")
        values["sparse_input"] = same and values.get("optimizer") == "lazyadam"
    if not values["sparse_input"] and "optimizer" not in given and values["optimizer"] == "lazyadam":
        values["optimizer"] = "adam"
    return values


def compare_variant(model, fields):
    """A --compare variant: `model` with `fields` set, on the path its loss allows. The sparse path
    trains masked_mse alone, so a variant with another loss (the question's mse) takes the dense
    path, and lazy Adam, which needs the sparse one, becomes Adam there."""
    values = {**dataclasses.asdict(model), **fields}
    if values["sparse_input"] and values["loss"] != "masked_mse":
        values["sparse_input"] = False
        if values["optimizer"] == "lazyadam":
            values["optimizer"] = "adam"
    return AEConfig(**values)


def non_default(config):
    """The fields of a config that differ from their defaults (what a library user "set")."""
    return {f.name for f in dataclasses.fields(config) if getattr(config, f.name) != f.default}
