"""The settings of a train.py run: the model (tf1_config.AEConfig, the library's) and the run around
it (RunConfig: the data, the schedule, the RBM pretraining), the presets and defaults, and how the
command line's values become configs (a new run's, a resumed run's). The flags themselves are
tae_flags'.

RunConfig is a frozen dataclass validated on construction, like AEConfig: a bad field raises
ConfigError naming it. This module imports no TensorFlow: config errors answer at once.
"""
import dataclasses
import os
import pathlib
import types
from typing import Optional, Tuple

from tf1_config import (ACTIVATIONS, AEConfig, ConfigError, RBMConfig, Schedule, choice,  # noqa: F401
                        default_tied_epochs, integer, listed, number, unit_pair, variable_shapes)

# Steps per Session call of a stage's multi-step loop (tf1_input.multi_step): amortises the call's
# overhead; Ctrl-C, the progress bar and the non-finite check act between calls.
STEPS_PER_CALL = 16
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
COMPARE = {  # --compare's variants: AEConfig fields (the same data, seed, batches and epochs for all)
    "snippet": PRESETS["question"][0],  # the question's code as written
    "untied": dict(mode="untied"), "sync": dict(mode="sync"), "tied": dict(mode="tied"),
    "tied-untied": dict(mode="tied-untied"),
}
# A ratings run's defaults, where a flag is not given (measured on MovieLens 100K's u1 validation
# ratings; benchmarks/README.md): I-AutoRec's 500 sigmoid units, untied, weight decay, 10% masking
# noise, lazy Adam at 3e-3 (on the sparse path; Adam on the dense one) with a cosine decay over 80 epochs.
RATINGS_HIDDEN, RATINGS_EPOCHS = 500, 80
RATINGS_DEFAULTS = dict(mode="untied", loss="masked_mse", code_activation="sigmoid", lr_schedule="cosine",
                        weight_decay=3e-3, mask_noise=0.1, learning_rate=3e-3, optimizer="lazyadam")


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
    init_from: Optional[str] = None  # a checkpoint the model's variables start from (tf1_checkpoints)
    init_map: Optional[str] = None  # a JSON file {name in that checkpoint: name in the model}

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
        if self.init_map is not None and self.init_from is None:
            raise ConfigError("init_map", "names the variables of a checkpoint: give it with init_from")

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


# --- the command line's values into configs ---------------------------------------------------------

def shown(value):
    """A default as a user would type it: 0.001, 784,196, on/off."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


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
