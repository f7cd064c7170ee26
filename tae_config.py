"""The settings of a run as data: the model (AEConfig) and the run around it (RunConfig).

Both are frozen dataclasses, validated on construction: a bad field raises ConfigError, which names
the field and the allowed values. Each field's metadata holds its command-line flag, parser and help,
so train.py's flags are generated from here (`flags()`), one place per flag; and the condition under
which the field does anything (`applies`), so a flag that would do nothing is refused by name
(`inert()`). This module imports no TensorFlow: flags and config errors answer at once.
"""
import dataclasses
import math
import os
import pathlib
from typing import Optional, Tuple

MODES = ("untied", "tied", "sync", "tied-untied")
INITS = ("glorot", "snippet")
ACTIVATIONS = ("sigmoid", "relu", "elu", "selu", "tanh", "linear")
LOSSES = ("mse", "xent", "masked_mse")
TRAINABLE = ("all", "encoder", "decoder")
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cosine")
SYNC_EVERY = ("step", "epoch")
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
}


class ConfigError(ValueError):
    """A field with a value it cannot take: `field` names it, `detail` says what is allowed."""

    def __init__(self, field, detail):
        super().__init__(f"{field} {detail}")
        self.field, self.detail = field, detail


def parse_ints(text):
    return tuple(int(p) for p in text.split(","))


def parse_switch(text):
    if text.lower() not in ("on", "off"):
        raise ValueError(text)
    return text.lower() == "on"


def parse_floats(text):
    return tuple(float(p) for p in text.split(","))


def option(help, flag=None, parse=str, default_text=None, applies=None):
    """Field metadata. applies: (test(model, run) -> bool, what makes the field count), for fields
    that do something only in some configurations."""
    return {"help": help, "flag": flag, "parse": parse, "default_text": default_text, "applies": applies}


def is_path(dataset):
    """Whether --dataset names a file of the user's rather than a known data set."""
    return dataset.lower().endswith((".npy", ".npz") + RATINGS_SUFFIXES) or os.sep in dataset


def is_ratings(dataset):
    """Whether --dataset is ratings (MovieLens 100K, or a user's ratings file) rather than arrays."""
    return dataset == "movielens" or dataset.lower().endswith(RATINGS_SUFFIXES)


def _choice(field, value, allowed):
    if value not in allowed:
        raise ConfigError(field, f"must be one of {', '.join(map(str, allowed))}; got {value!r}")


def _int(field, value, low, none_ok=False):
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(field, f"must be an integer >= {low}; got {value!r}")


def _number(field, value, positive):
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        raise ConfigError(field, f"must be a {'positive' if positive else 'non-negative'} finite number; got {value!r}")


def _fraction(field, value):
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value < 1
    if not ok:
        raise ConfigError(field, f"must be a number in [0, 1); got {value!r}")


# A ratings run's defaults, where a flag is not given (measured on MovieLens 100K's u1 validation
# ratings; README): I-AutoRec's 500 sigmoid units, untied, weight decay, 10% masking noise, Adam at
# 3e-3 with a cosine decay over 80 epochs.
RATINGS_HIDDEN, RATINGS_WEIGHT_DECAY, RATINGS_MASK_NOISE, RATINGS_LR, RATINGS_EPOCHS = 500, 3e-3, 0.1, 3e-3, 80
COSINE = (lambda m, r: m.lr_schedule == "cosine", "--lr-schedule cosine")
NOT_PRETRAINED = (lambda m, r: r.pretrain == "none", "no --pretrain (the RBMs set every variable)")
HIDDEN = (lambda m, r: len(m.dims) > 2, "--dims with hidden layers between input and code")
VALIDATED = (lambda m, r: r.validation != 0, "a validation split (--validation above 0)")
RATINGS = (lambda m, r: is_ratings(r.dataset), "ratings: --dataset movielens or a ratings file")


@dataclasses.dataclass(frozen=True)
class AEConfig:
    """Everything that defines the autoencoder's graph (tf1_tied_ae.build)."""

    dims: Tuple[int, ...] = dataclasses.field(default=(784, 196, 81, 49), metadata=option(
        "layer sizes from input to code", parse=parse_ints,
        default_text="the question's rule from the image size: 784,196,81,49 for 28x28, 64,16,4,4 for 8x8; "
                     "ratings: the matrix's width,500"))
    mode: str = dataclasses.field(default="tied", metadata=option(
        "untied | tied | sync (the accepted answer) | tied-untied (Hinton's: tied, then untied)",
        default_text="tied; ratings: untied, 0.07 to 0.08 RMSE better on MovieLens 100K (README)"))
    init: str = dataclasses.field(default="glorot", metadata=option(
        "glorot (Glorot-uniform kernels, zero biases) | snippet (the question's N(0,1) everywhere)",
        applies=NOT_PRETRAINED))
    activation: str = dataclasses.field(default="elu", metadata=option(
        "hidden units: " + " | ".join(ACTIVATIONS), applies=HIDDEN))
    code_activation: Optional[str] = dataclasses.field(default="linear", metadata=option(  # None: as activation
        "code layer: " + " | ".join(ACTIVATIONS), default_text="linear; ratings: sigmoid, as I-AutoRec"))
    output_activation: Optional[str] = dataclasses.field(default=None, metadata=option(
        "linear | sigmoid", default_text="linear with mse, sigmoid with xent"))
    loss: str = dataclasses.field(default="mse", metadata=option(
        "mse (tf.losses.mean_squared_error) | xent (sigmoid cross-entropy on the logits) | masked_mse (ratings: "
        "squared error over the non-zero inputs only, divided by their count; 0 means unrated)",
        default_text="mse; ratings: masked_mse"))
    trainable: str = dataclasses.field(default="all", metadata=option(
        "what minimize(var_list=...) trains: all | encoder | decoder"))
    optimizer: str = dataclasses.field(default="adam", metadata=option("adam | sgd"))
    learning_rate: float = dataclasses.field(default=1e-3, metadata=option(
        "learning rate", flag="--lr", parse=float, default_text="0.001; ratings: 0.003"))
    lr_schedule: str = dataclasses.field(default="constant", metadata=option(
        "constant | cosine (decays to 0 by global step)", default_text="constant; ratings: cosine"))
    lr_decay_steps: Optional[int] = dataclasses.field(default=None, metadata=option(
        "cosine: training steps to decay over", parse=int, default_text="all the run's training steps",
        applies=COSINE))
    seed: Optional[int] = dataclasses.field(default=0, metadata=option(
        "graph-level seed; also orders the batches and keys the noise and dropout", parse=int))
    # Regularisers: training steps only; evaluation, codes and reconstructions see the clean model.
    mask_noise: float = dataclasses.field(default=0.0, metadata=option(
        "denoising: the fraction of input values set to 0 in each training batch (Vincent et al. 2008's "
        "masking noise); the loss compares the reconstruction with the clean input", parse=float,
        default_text=f"0; ratings: {RATINGS_MASK_NOISE:g}"))
    gaussian_noise: float = dataclasses.field(default=0.0, metadata=option(
        "denoising: the standard deviation of Gaussian noise added to each training input (after any "
        "masking); the target stays clean", parse=float))
    weight_decay: float = dataclasses.field(default=0.0, metadata=option(
        "L2 in the loss: weight_decay * sum(w^2) / 2 over the kernels being trained (a tied kernel once; "
        "biases never); with Adam this is not AdamW's decoupled decay", parse=float,
        default_text=f"0; ratings: {RATINGS_WEIGHT_DECAY:g}"))
    code_dropout: float = dataclasses.field(default=0.0, metadata=option(
        "dropout rate on the code in training (inverted: kept values scaled by 1/(1-rate))", parse=float))
    hidden_dropout: float = dataclasses.field(default=0.0, metadata=option(
        "dropout rate on every hidden layer, encoder and decoder, in training", parse=float, applies=HIDDEN))
    dense_refeed: bool = dataclasses.field(default=False, metadata=option(
        "DeepRecommender's dense re-feeding: after each step, a second update on the model's own dense "
        "output f(x) as input and target: on | off", parse=parse_switch, default_text="off",
        applies=(lambda m, r: m.loss == "masked_mse", "--loss masked_mse (ratings)")))

    def __post_init__(self):
        try:
            dims = tuple(self.dims)
        except TypeError:
            raise ConfigError("dims", f"must be a sequence of sizes; got {self.dims!r}") from None
        if len(dims) < 2 or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in dims):
            raise ConfigError("dims", f"must be at least 2 positive integers, like 784,196,81,49; got {self.dims!r}")
        object.__setattr__(self, "dims", dims)
        _choice("mode", self.mode, MODES)
        _choice("init", self.init, INITS)
        _choice("activation", self.activation, ACTIVATIONS)
        if self.code_activation is None:
            object.__setattr__(self, "code_activation", self.activation)
        _choice("code_activation", self.code_activation, ACTIVATIONS)
        _choice("loss", self.loss, LOSSES)
        if self.output_activation is None:
            object.__setattr__(self, "output_activation", "sigmoid" if self.loss == "xent" else "linear")
        _choice("output_activation", self.output_activation, ("linear", "sigmoid"))
        if self.loss == "xent" and self.output_activation != "sigmoid":
            raise ConfigError("output_activation", "must be sigmoid with loss xent (it is the loss's own link)")
        _choice("trainable", self.trainable, TRAINABLE)  # tied + decoder: the decoder biases alone
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _number("learning_rate", self.learning_rate, positive=True)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _int("lr_decay_steps", self.lr_decay_steps, 1, none_ok=True)
        if self.lr_decay_steps is not None and self.lr_schedule != "cosine":
            raise ConfigError("lr_decay_steps", "applies only with lr_schedule cosine")
        _int("seed", self.seed, -2 ** 31, none_ok=True)
        _fraction("mask_noise", self.mask_noise)
        _number("gaussian_noise", self.gaussian_noise, positive=False)
        _number("weight_decay", self.weight_decay, positive=False)
        _fraction("code_dropout", self.code_dropout)
        if not isinstance(self.dense_refeed, bool):
            raise ConfigError("dense_refeed", f"must be True or False; got {self.dense_refeed!r}")
        _fraction("hidden_dropout", self.hidden_dropout)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything around the graph: the data, the stage schedule, the RBM pretraining.
    None means "resolved from the data when the run starts" (`resolve`); config.json stores the
    resolved values, so a resumed run keeps them."""

    dataset: str = dataclasses.field(default="auto", metadata=option(
        "auto (a local MNIST copy, else scikit-learn's digits) | mnist | fashion_mnist | digits | "
        "path/to/data.npy or .npz | movielens (MovieLens 100K ratings) | path/to/ratings.csv or .tsv "
        "(user, item, rating a line)"))
    data_dir: Optional[str] = dataclasses.field(default=None, metadata=option(
        "folder of MNIST-format IDX files, or a Keras .npz; with movielens, the ml-100k folder",
        default_text="look in ./data/mnist, ./MNIST_data, ~/.keras/datasets; ./data/ml-100k, ./ml-100k",
        applies=(lambda m, r: r.dataset in ("auto", "mnist", "fashion_mnist", "movielens"),
                 "--dataset auto, mnist, fashion_mnist or movielens")))
    split: str = dataclasses.field(default="u1", metadata=option(
        "MovieLens 100K's canonical split: u1 .. u5 (the five folds) | ua | ub",
        applies=(lambda m, r: r.dataset == "movielens", "--dataset movielens")))
    test_file: Optional[str] = dataclasses.field(default=None, metadata=option(
        "a ratings file's test ratings, in the same format", default_text="a seeded tenth of the ratings",
        applies=(lambda m, r: is_ratings(r.dataset) and r.dataset != "movielens", "--dataset path/to/ratings.csv")))
    rating_scale: Optional[Tuple[float, float]] = dataclasses.field(default=None, metadata=option(
        "a ratings file's lowest and highest possible rating, like 1,5: a rating outside it is refused, naming "
        "the line", parse=parse_floats,
        default_text="the lowest and highest training rating (the final line and config.json say so)",
        applies=(lambda m, r: is_ratings(r.dataset) and r.dataset != "movielens", "--dataset path/to/ratings.csv")))
    orientation: str = dataclasses.field(default="item", metadata=option(
        "ratings: item (each item's vector of user ratings is an example: I-AutoRec) | user (each user's "
        "vector of item ratings: DeepRecommender)", applies=RATINGS))
    epochs: Optional[int] = dataclasses.field(default=None, metadata=option(
        "training epochs in all (0 saves and evaluates the initial model)", parse=int,
        default_text=f"10 for MNIST-sized data, 200 for smaller sets; ratings: {RATINGS_EPOCHS}"))
    batch_size: int = dataclasses.field(default=32, metadata=option("examples per step", parse=int))
    validation: Optional[int] = dataclasses.field(default=None, metadata=option(
        "training examples held out to pick the best epoch: the first N, as TF1's input_data does; for "
        "ratings, N seeded training ratings (0: none; the test set is never used to choose)", parse=int,
        default_text="5000 for MNIST and Fashion-MNIST (55,000 train), a tenth of the training set otherwise"))
    patience: Optional[int] = dataclasses.field(default=None, metadata=option(
        "stop early after N epochs without a lower validation error", parse=int, default_text="never",
        applies=VALIDATED))
    tied_epochs: Optional[int] = dataclasses.field(default=None, metadata=option(
        "tied-untied: the first N epochs train tied, the rest untied", parse=int, default_text="half of --epochs, rounded up",
        applies=(lambda m, r: m.mode == "tied-untied", "--mode tied-untied")))
    sync_every: str = dataclasses.field(default="step", metadata=option(
        "sync: re-assign the decoder's copies every step | epoch",
        applies=(lambda m, r: m.mode == "sync", "--mode sync")))
    pretrain: str = dataclasses.field(default="none", metadata=option(
        "none | rbm (Hinton & Salakhutdinov's greedy RBM pretraining, then unrolling)"))
    pretrain_epochs: int = dataclasses.field(default=10, metadata=option(
        "epochs per RBM", parse=int, applies=(lambda m, r: r.pretrain == "rbm", "--pretrain rbm")))
    rbm_lr: float = dataclasses.field(default=0.1, metadata=option(
        "learning rate of the binary RBMs", parse=float, applies=(lambda m, r: r.pretrain == "rbm", "--pretrain rbm")))
    rbm_lr_linear: float = dataclasses.field(default=0.001, metadata=option(
        "learning rate of the linear top RBM", parse=float,
        applies=(lambda m, r: r.pretrain == "rbm" and m.code_activation == "linear",
                 "--pretrain rbm with --code-activation linear")))
    rbm_weight_cost: float = dataclasses.field(default=2e-4, metadata=option(
        "RBM weight decay", parse=float, applies=(lambda m, r: r.pretrain == "rbm", "--pretrain rbm")))
    rbm_momentum: Tuple[float, float] = dataclasses.field(default=(0.5, 0.9), metadata=option(
        "RBM momentum for the first 5 epochs, then after", parse=parse_floats, default_text="0.5,0.9",
        applies=(lambda m, r: r.pretrain == "rbm", "--pretrain rbm")))
    rbm_batch_size: int = dataclasses.field(default=100, metadata=option(
        "RBM mini-batch size", parse=int, applies=(lambda m, r: r.pretrain == "rbm", "--pretrain rbm")))

    def __post_init__(self):
        if isinstance(self.dataset, str) and self.dataset not in DATASETS and os.path.isdir(self.dataset):
            if (pathlib.Path(self.dataset) / "u1.base").exists():
                raise ConfigError("dataset", f"{self.dataset} is MovieLens 100K's folder; it goes to --data-dir: "
                                             f"--dataset movielens --data-dir {self.dataset}")
            raise ConfigError("dataset", f"{self.dataset} is a folder; a folder of IDX files goes to --data-dir: "
                                         f"--dataset mnist (or fashion_mnist) --data-dir {self.dataset}")
        if not isinstance(self.dataset, str) or not (self.dataset in DATASETS or is_path(self.dataset)):
            raise ConfigError("dataset", f"must be {', '.join(DATASETS)}, a path to a .npy or .npz file or a ratings file "
                                         f"({', '.join(RATINGS_SUFFIXES)}); "
                                         f"got {self.dataset!r}")
        _int("epochs", self.epochs, 0, none_ok=True)
        _int("batch_size", self.batch_size, 1)
        _int("validation", self.validation, 0, none_ok=True)
        _int("patience", self.patience, 1, none_ok=True)
        _int("tied_epochs", self.tied_epochs, 0, none_ok=True)
        if None not in (self.epochs, self.tied_epochs) and self.tied_epochs > self.epochs:
            raise ConfigError("tied_epochs", f"must be between 0 and epochs ({self.epochs}); got {self.tied_epochs}")
        _choice("sync_every", self.sync_every, SYNC_EVERY)
        _choice("split", self.split, MOVIELENS_SPLITS)
        _choice("orientation", self.orientation, ORIENTATIONS)
        if self.rating_scale is not None:
            scale = tuple(self.rating_scale) if isinstance(self.rating_scale, (list, tuple)) else ()
            if len(scale) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in scale) or \
                    scale[0] >= scale[1]:
                shown = ",".join(map(str, self.rating_scale)) if isinstance(self.rating_scale, (list, tuple)) \
                    else repr(self.rating_scale)
                raise ConfigError("rating_scale", f"must be two numbers, the lowest and the highest rating, like 1,5; "
                                                  f"got {shown}")
            object.__setattr__(self, "rating_scale", tuple(float(v) for v in scale))
        _choice("pretrain", self.pretrain, PRETRAIN)
        _int("pretrain_epochs", self.pretrain_epochs, 1)
        _number("rbm_lr", self.rbm_lr, positive=True)
        _number("rbm_lr_linear", self.rbm_lr_linear, positive=True)
        _number("rbm_weight_cost", self.rbm_weight_cost, positive=False)
        momentum = tuple(self.rbm_momentum) if isinstance(self.rbm_momentum, (list, tuple)) else ()
        if len(momentum) != 2 or not all(isinstance(m, (int, float)) and 0 <= m < 1 for m in momentum):
            raise ConfigError("rbm_momentum", f"must be two numbers in [0, 1), like 0.5,0.9; got {self.rbm_momentum!r}")
        object.__setattr__(self, "rbm_momentum", tuple(float(m) for m in momentum))
        _int("rbm_batch_size", self.rbm_batch_size, 1)


@dataclasses.dataclass(frozen=True)
class RBMConfig:
    """The RBM stack of `--pretrain rbm` (tf1_rbm), derived from the two configs by `rbm_config`.
    Defaults are Hinton & Salakhutdinov's (their Matlab code)."""

    dims: Tuple[int, ...] = (784, 1000, 500, 250, 30)  # visible size, then each RBM's hidden size
    linear_top: bool = True  # the top RBM has Gaussian (linear) hidden units: a linear code layer
    learning_rate: float = 0.1  # the binary RBMs
    learning_rate_linear: float = 0.001  # the top RBM when linear_top
    weight_cost: float = 2e-4
    momentum: Tuple[float, float] = (0.5, 0.9)  # before, and from, epoch `momentum_switch_epoch` on
    momentum_switch_epoch: int = 5
    epochs: int = 10  # per RBM
    batch_size: int = 100
    seed: Optional[int] = 0

    def __post_init__(self):
        dims = tuple(self.dims) if isinstance(self.dims, (list, tuple)) else ()
        if len(dims) < 2 or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in dims):
            raise ConfigError("dims", f"must be at least 2 positive integers; got {self.dims!r}")
        object.__setattr__(self, "dims", dims)
        _number("learning_rate", self.learning_rate, positive=True)
        _number("learning_rate_linear", self.learning_rate_linear, positive=True)
        _number("weight_cost", self.weight_cost, positive=False)
        if len(self.momentum) != 2:
            raise ConfigError("momentum", f"must be two numbers; got {self.momentum!r}")
        for m in self.momentum:
            _number("momentum", m, positive=False)
        _int("momentum_switch_epoch", self.momentum_switch_epoch, 0)
        _int("epochs", self.epochs, 1)
        _int("batch_size", self.batch_size, 1)


def rbm_config(model, run):
    """The RBM stack that `run` asks for on `model`, or None without pretraining."""
    if run.pretrain != "rbm":
        return None
    return RBMConfig(dims=model.dims, linear_top=model.code_activation == "linear", learning_rate=run.rbm_lr,
                     learning_rate_linear=run.rbm_lr_linear, weight_cost=run.rbm_weight_cost,
                     momentum=run.rbm_momentum, epochs=run.pretrain_epochs, batch_size=run.rbm_batch_size,
                     seed=model.seed)


# --- flags ------------------------------------------------------------------------------------------

class Flag:
    """One command-line flag, generated from a dataclass field."""

    def __init__(self, owner, field):
        meta = field.metadata
        self.owner, self.field = owner, field.name
        self.name = meta["flag"] or "--" + field.name.replace("_", "-")
        self.parse, self.applies = meta["parse"], meta["applies"]
        self.default = field.default
        shown = meta["default_text"] or (",".join(map(str, field.default)) if isinstance(field.default, tuple)
                                         else field.default)
        self.help = f"{meta['help']} (default: {shown})"


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


def check(model, run, num_examples):
    """Cross-checks the dataclasses cannot make alone; ConfigError names the field. num_examples:
    the training set before the validation split."""
    if run.validation is not None and run.validation >= num_examples:
        raise ConfigError("validation", f"must leave training examples: between 0 and {num_examples - 1} of the "
                                        f"{num_examples}; got {run.validation}")
    held = f" ({run.validation} are held out for validation: --validation)" if run.validation else ""
    num_examples -= run.validation or 0
    if run.batch_size > num_examples:
        raise ConfigError("batch_size", f"must be between 1 and the {num_examples} training examples{held}; "
                                        f"got {run.batch_size}")
    if run.pretrain == "rbm":
        if run.rbm_batch_size > num_examples:
            raise ConfigError("rbm_batch_size", f"must be between 1 and the {num_examples} training examples{held}")
        if (len(model.dims) > 2 and model.activation != "sigmoid") or model.output_activation != "sigmoid" or model.code_activation not in (
                "sigmoid", "linear"):
            raise ConfigError("pretrain", "rbm unrolls logistic RBMs: use --activation sigmoid --output-activation "
                                          "sigmoid and --code-activation linear or sigmoid")


def question_dims(image_shape):
    """The question's rule: [W*H, (W//2)*(H//2), (W//3)*(H//3), (W//4)*(H//4)]."""
    h, w = image_shape
    return tuple((w // k) * (h // k) for k in (1, 2, 3, 4))


def default_validation(dataset_name, num_examples):
    """MNIST and Fashion-MNIST: 5,000 (TF1's input_data: 55,000 / 5,000); other data: 10%."""
    return 5000 if dataset_name in ("mnist", "fashion_mnist") and num_examples > 10000 else num_examples // 10


def resolve(model_values, run, image_shape, width, num_examples, dataset_name=None):
    """The configs of a new run: AEConfig from `model_values` (fields given), the None fields of
    `run` filled from the data (num_examples: the whole training set, before the validation split).
    ConfigError names the field that cannot be used."""
    values = dict(model_values)
    if "dims" not in values:
        if image_shape is None:
            raise ConfigError("dims", f"has no default for data of {width} values per example that are not a "
                                      "square image; give --dims")
        values["dims"] = question_dims(image_shape)
    model = AEConfig(**values)
    epochs = run.epochs if run.epochs is not None else (10 if num_examples >= 20000 else 200)
    tied = run.tied_epochs
    if tied is None and model.mode == "tied-untied":
        tied = epochs - epochs // 2
    validation = run.validation if run.validation is not None else default_validation(dataset_name, num_examples)
    run = dataclasses.replace(run, epochs=epochs, tied_epochs=tied, validation=validation)
    check(model, run, num_examples)
    return model, run




def ratings_validation(run, num_ratings):
    """A ratings run's validation count: the given one, else a tenth of the training ratings."""
    validation = run.validation if run.validation is not None else num_ratings // 10
    if validation >= num_ratings:
        raise ConfigError("validation", f"must leave training ratings: between 0 and {num_ratings - 1} of the "
                                        f"{num_ratings}; got {validation}")
    return dataclasses.replace(run, validation=validation)


def resolve_ratings(model_values, run, width, rows):
    """The configs of a new ratings run, once the validation ratings are carved out: width is the
    number of columns of the training matrix (users in the item orientation, items in the user one),
    rows the number of examples. The RATINGS_* defaults where a field is not given."""
    values = dict(model_values)
    for field, value in (("mode", "untied"), ("loss", "masked_mse"), ("dims", (width, RATINGS_HIDDEN)), ("code_activation", "sigmoid"),
                         ("lr_schedule", "cosine"), ("weight_decay", RATINGS_WEIGHT_DECAY),
                         ("mask_noise", RATINGS_MASK_NOISE), ("learning_rate", RATINGS_LR)):
        values.setdefault(field, value)
    model = AEConfig(**values)
    columns = "users" if run.orientation == "item" else "items"
    if model.dims[0] != width:
        raise ConfigError("dims", f"must start with {width}, the {columns} with training ratings (--orientation "
                                  f"{run.orientation}: each example is one {run.orientation}'s ratings by all "
                                  f"{columns}); got {','.join(map(str, model.dims))}")
    if model.loss == "xent":
        raise ConfigError("loss", "xent needs targets in [0, 1]; ratings take masked_mse (or mse, which also "
                                  "learns the unrated zeros)")
    if run.pretrain != "none":
        raise ConfigError("pretrain", "rbm pretrains on images in [0, 1]; ratings train without it (--pretrain none)")
    epochs = run.epochs if run.epochs is not None else RATINGS_EPOCHS
    tied = run.tied_epochs
    if tied is None and model.mode == "tied-untied":
        tied = epochs - epochs // 2
    run = dataclasses.replace(run, epochs=epochs, tied_epochs=tied)
    if run.batch_size > rows:
        raise ConfigError("batch_size", f"must be between 1 and the {rows} {run.orientation}s with training ratings "
                                        f"(the examples with --orientation {run.orientation}); got {run.batch_size}")
    return model, run


def non_default(config):
    """The fields of a config that differ from their defaults (what a library user "set")."""
    return {f.name for f in dataclasses.fields(config) if getattr(config, f.name) != f.default}
