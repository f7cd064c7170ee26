"""The settings the graph library is built from, as data: AEConfig (the autoencoder), RBMConfig (the
RBM stack of pretraining) and Schedule (how a run's stages are laid out); and the names and shapes
of a model's variables (`variable_shapes`, the checkpoint format) and which of them train.

Frozen dataclasses, validated on construction: a bad field raises ConfigError, a ValueError whose
`field` names the field and whose message says what it may be. No TensorFlow, no flags, no files:
with tf1_tied_ae.py, tf1_input.py and tf1_rbm.py, this is what a porter copies.
"""
import dataclasses
import math
from typing import Optional, Tuple

MODES = ("untied", "tied", "sync", "tied-untied")
INITS = ("glorot", "he", "snippet")
ACTIVATIONS = ("sigmoid", "relu", "elu", "selu", "tanh", "softplus", "linear")
LOSSES = ("mse", "xent", "masked_mse")
TRAINABLE = ("all", "encoder", "decoder")
OPTIMIZERS = ("adam", "lazyadam", "sgd")
LR_SCHEDULES = ("constant", "cosine")
SYNC_EVERY = ("step", "epoch")


class ConfigError(ValueError):
    """A field with a value it cannot take: `field` names it, `detail` says what is allowed."""

    def __init__(self, field, detail):
        super().__init__(f"{field} {detail}")
        self.field, self.detail = field, detail


def listed(value):
    """A list or tuple as a flag writes it ("784,0"); anything else as repr."""
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) if isinstance(value, (list, tuple)) \
        else repr(value)


def choice(field, value, allowed):
    if value not in allowed:
        raise ConfigError(field, f"must be one of {', '.join(map(str, allowed))}; got {value!r}")


def integer(field, value, low, none_ok=False):
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(field, f"must be an integer >= {low}; got {value!r}")


def number(field, value, positive):
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        raise ConfigError(field, f"must be a {'positive' if positive else 'non-negative'} finite number; got {value!r}")


def fraction(field, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(field, f"must be a number in [0, 1); got {value!r}")


def unit_pair(field, value):
    """Two numbers in [0, 1), as a tuple of floats (the RBMs' momentum before and after the switch)."""
    found = tuple(value) if isinstance(value, (list, tuple)) else ()
    if len(found) != 2 or not all(isinstance(m, (int, float)) and not isinstance(m, bool) and 0 <= m < 1 for m in found):
        raise ConfigError(field, f"must be two numbers in [0, 1), like 0.5,0.9; got {listed(value)}")
    return tuple(float(m) for m in found)


def sizes(field, value):
    """At least 2 positive integers, as a tuple."""
    found = tuple(value) if isinstance(value, (list, tuple)) else ()
    if len(found) < 2 or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in found):
        raise ConfigError(field, f"must be at least 2 positive integers, like 784,196,81,49; got {listed(value)}")
    return found


@dataclasses.dataclass(frozen=True)
class AEConfig:
    """Everything that defines the autoencoder's graph (tf1_tied_ae.build).

    Note for a port: the code layer is linear unless code_activation says otherwise; it does not
    follow `activation` (None makes it). A code base whose code layer was, say, ELU must set both."""

    dims: Tuple[int, ...] = (784, 196, 81, 49)  # input size, hidden sizes, code size (the question's, 28x28)
    mode: str = "tied"  # untied | tied | sync (the accepted answer) | tied-untied (Hinton's: tied, then untied)
    # glorot: Glorot-uniform kernels (tf.contrib.layers.xavier_initializer), zero biases | he: variance scaling,
    # fan-in, factor 2, truncated normal (tf.contrib.layers.variance_scaling_initializer()), zero biases |
    # snippet: the question's N(0, 1) everywhere. build(kernel_initializer=) takes a caller's own.
    init: str = "glorot"
    activation: str = "elu"  # hidden units
    code_activation: Optional[str] = "linear"  # the code layer: linear, NOT as `activation` (None: as `activation`)
    output_activation: Optional[str] = None  # as activation's choices; None: linear with mse, sigmoid with xent
    loss: str = "mse"  # mse (tf.losses.mean_squared_error) | xent (on the logits) | masked_mse (non-zero inputs only)
    trainable: str = "all"  # what minimize(var_list=...) trains: all | encoder | decoder
    optimizer: str = "adam"  # adam | lazyadam (sparse_input: updates only the rows a batch touches) | sgd
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"  # constant | cosine (decays to 0 by global step)
    lr_decay_steps: Optional[int] = None  # cosine: steps to decay over; None: all the run's steps
    warmup_steps: int = 0  # the rate rises linearly from 0 over the first N steps (times the schedule)
    seed: Optional[int] = 0  # graph-level seed; also keys the noise and dropout
    # Regularisers: training steps only; evaluation, codes and reconstructions see the clean model.
    mask_noise: float = 0.0  # the fraction of input values set to 0 in each training batch (denoising)
    gaussian_noise: float = 0.0  # standard deviation of Gaussian noise added to training inputs (after masking)
    weight_decay: float = 0.0  # L2 in the loss: weight_decay * sum(w^2) / 2 over the trained kernels
    code_dropout: float = 0.0  # inverted dropout on the code
    shift: int = 0  # images (build's image_shape): each training image moved by a random offset in [-shift, shift]^2
    hidden_dropout: float = 0.0  # inverted dropout on every hidden layer, encoder and decoder
    dense_refeed: bool = False  # DeepRecommender's dense re-feeding (masked_mse): a second update on f(x)
    # masked_mse on a sparse (CSR) training set: training steps read each batch's ratings as a
    # SparseTensor and compute the first layer from them and the last only at the rated pairs
    # (tf1_sparse); the same model, loss and gradients as the dense batch, at the cost of the ratings
    sparse_input: bool = False

    def __post_init__(self):
        object.__setattr__(self, "dims", sizes("dims", self.dims))
        choice("mode", self.mode, MODES)
        choice("init", self.init, INITS)
        choice("activation", self.activation, ACTIVATIONS)
        if self.code_activation is None:
            object.__setattr__(self, "code_activation", self.activation)
        choice("code_activation", self.code_activation, ACTIVATIONS)
        choice("loss", self.loss, LOSSES)
        if self.output_activation is None:
            object.__setattr__(self, "output_activation", "sigmoid" if self.loss == "xent" else "linear")
        choice("output_activation", self.output_activation, ACTIVATIONS)
        if self.loss == "xent" and self.output_activation != "sigmoid":
            raise ConfigError("output_activation", "must be sigmoid with loss xent (it is the loss's own link)")
        choice("trainable", self.trainable, TRAINABLE)  # tied + decoder: the decoder biases alone
        choice("optimizer", self.optimizer, OPTIMIZERS)
        number("learning_rate", self.learning_rate, positive=True)
        choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        integer("lr_decay_steps", self.lr_decay_steps, 1, none_ok=True)
        if self.lr_decay_steps is not None and self.lr_schedule != "cosine":
            raise ConfigError("lr_decay_steps", "applies only with lr_schedule cosine")
        integer("warmup_steps", self.warmup_steps, 0)
        integer("seed", self.seed, -2 ** 31, none_ok=True)
        fraction("mask_noise", self.mask_noise)
        number("gaussian_noise", self.gaussian_noise, positive=False)
        number("weight_decay", self.weight_decay, positive=False)
        fraction("code_dropout", self.code_dropout)
        integer("shift", self.shift, 0)
        fraction("hidden_dropout", self.hidden_dropout)
        for field in ("dense_refeed", "sparse_input"):
            if not isinstance(getattr(self, field), bool):
                raise ConfigError(field, f"must be True or False; got {getattr(self, field)!r}")
        if self.sparse_input:
            if self.loss != "masked_mse":
                raise ConfigError("sparse_input", f"needs loss masked_mse (only the rated values count); got {self.loss}")
            for field, why in (("gaussian_noise", "Gaussian noise makes every input value non-zero"),
                               ("dense_refeed", "dense re-feeding trains on the dense output f(x)")):
                if getattr(self, field):
                    raise ConfigError("sparse_input", f"cannot go with {field}: {why}; turn one off")
        if self.optimizer == "lazyadam" and not self.sparse_input:
            raise ConfigError("optimizer", "lazyadam updates only the rows a sparse batch touches: it needs the sparse "
                                           "path (ratings, masked_mse); on dense input it is adam: use adam")


def check_build(cfg, schedule, num_examples, image_shape, nnz, x):
    """tf1_tied_ae.build's arguments that do not fit together: TypeError or ValueError saying which."""
    if not isinstance(cfg, AEConfig):
        raise TypeError("build takes an AEConfig")
    if (schedule is None) != (num_examples is None) or not isinstance(schedule, (Schedule, type(None))):
        raise ValueError("give both a tf1_config.Schedule and num_examples, or neither")
    if x is not None and schedule is not None:
        raise ValueError("give x or a schedule: a schedule trains on the training set it holds in the graph")
    if x is not None and x.shape.rank != 2 or x is not None and x.shape[-1] not in (None, cfg.dims[0]):
        raise ValueError(f"x must be [batch, {cfg.dims[0]}] (dims[0]); got {x.shape}")
    if cfg.shift and (image_shape is None or image_shape[0] * image_shape[1] != cfg.dims[0]):
        raise ValueError(f"shift moves images: give image_shape (H, W) with H * W = dims[0] = {cfg.dims[0]}")
    if cfg.sparse_input and schedule is not None and nnz is None:
        raise ValueError("sparse_input trains on a sparse training set: give nnz (the CSR matrix's stored values)")


def trainable_names(cfg, finetune=False):
    """Names handed to minimize(var_list=...): every variable of the model that `trainable` allows,
    less the kernels that are copies (sync; tied-untied before the untie)."""
    names = []
    for name in variable_shapes(cfg):
        if cfg.trainable not in ("all", name.split("/")[0]):
            continue
        if name.startswith("decoder/") and name.endswith("/kernel") and cfg.mode != "untied" and not finetune:
            continue
        names.append(name)
    return names


def variable_shapes(cfg):
    """The model's variables, {name: shape}, in creation order."""
    dims, rev = cfg.dims, cfg.dims[::-1]
    shapes = {}
    for i in range(len(dims) - 1):
        shapes[f"encoder/layer_{i}/kernel"] = (dims[i], dims[i + 1])
        shapes[f"encoder/layer_{i}/bias"] = (dims[i + 1],)
    for j in range(len(rev) - 1):
        if cfg.mode != "tied":
            shapes[f"decoder/layer_{j}/kernel"] = (rev[j], rev[j + 1])
        shapes[f"decoder/layer_{j}/bias"] = (rev[j + 1],)
    return shapes


@dataclasses.dataclass(frozen=True)
class RBMConfig:
    """The RBM stack of greedy pretraining (tf1_rbm). Defaults are Hinton & Salakhutdinov's (their
    Matlab code)."""

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
        object.__setattr__(self, "dims", sizes("dims", self.dims))
        number("learning_rate", self.learning_rate, positive=True)
        number("learning_rate_linear", self.learning_rate_linear, positive=True)
        number("weight_cost", self.weight_cost, positive=False)
        object.__setattr__(self, "momentum", unit_pair("momentum", self.momentum))
        integer("momentum_switch_epoch", self.momentum_switch_epoch, 0)
        integer("epochs", self.epochs, 1)
        integer("batch_size", self.batch_size, 1)


def default_tied_epochs(epochs, mode, given=None):
    """How many of `epochs` a `mode` model trains tied before the untie: `given`, else half, rounded
    up, for tied-untied (Hinton & Salakhutdinov's tied start); None for the other modes."""
    if mode != "tied-untied":
        return None
    return epochs - epochs // 2 if given is None else given


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How a run's stages are laid out (tf1_tied_ae.build with a schedule): the RBMs first if any,
    then the autoencoder's epochs (tied-untied: the first `tied_epochs` tied, the rest untied)."""

    epochs: int  # the autoencoder's epochs in all
    batch_size: int = 32
    tied_epochs: Optional[int] = None  # tied-untied only; None: half of epochs, rounded up
    sync_every: str = "step"  # sync only: re-assign the decoder's copies every step | epoch
    rbm: Optional[RBMConfig] = None  # greedy RBM pretraining before the autoencoder

    def __post_init__(self):
        integer("epochs", self.epochs, 0)
        integer("batch_size", self.batch_size, 1)
        integer("tied_epochs", self.tied_epochs, 0, none_ok=True)
        if self.tied_epochs is None:
            object.__setattr__(self, "tied_epochs", default_tied_epochs(self.epochs, "tied-untied"))
        elif self.tied_epochs > self.epochs:
            raise ConfigError("tied_epochs", f"must be between 0 and epochs ({self.epochs}); got {self.tied_epochs}")
        choice("sync_every", self.sync_every, SYNC_EVERY)
        if self.rbm is not None and not isinstance(self.rbm, RBMConfig):
            raise ConfigError("rbm", f"must be an RBMConfig or None; got {self.rbm!r}")


class OneMachine:
    """Where tf1_tied_ae.build puts a graph's pieces, by default: everything in this process. A
    placement handed to `build` (tf1_cluster.Placement) has the same attributes."""

    model = None  # the device (function) of the model's variables and ops
    local = None  # the device of the training set held in the graph and progress/*
    getter = None  # a custom getter each model variable is made through
    loop = True  # whether the stages get a multi-step loop (tf1_input.multi_step)

    @staticmethod
    def parts(variable):
        """The tf.Variables an optimizer updates for a model variable."""
        return [variable]

    @staticmethod
    def read(variable):
        """A variable's value, read inside the caller's control dependencies."""
        return variable.read_value()

    def settle(self):
        """Called once every head (and its optimizer's slots) exists, before the Savers are made."""
