"""train.py's flags: FLAGS, the one table of the command line, made from the two configs'
fields (tf1_config.AEConfig, tae_config.RunConfig): each field's flag, parser, help and the
condition under which it does anything (`applies`), so a flag that would do nothing is refused by
name (`inert`). The defaults `--help` shows come from the fields' defaults and the ratings task's
RATINGS_DEFAULTS. No TensorFlow: flags answer at once.
"""
import dataclasses
import os

from tae_config import (ACTIVATIONS, RATINGS_DEFAULTS, RATINGS_EPOCHS, RATINGS_HIDDEN, AEConfig, RunConfig,
                        is_path, is_ratings, shown)


def parse_ints(text):
    return tuple(int(p) for p in text.split(","))


def parse_switch(text):
    if text.lower() not in ("on", "off"):
        raise ValueError(text)
    return text.lower() == "on"


def parse_floats(text):
    return tuple(float(p) for p in text.split(","))


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
    "init": option("glorot (Glorot-uniform kernels, as tf.contrib.layers.xavier_initializer; zero biases) | he "
                   "(variance scaling: fan-in, factor 2, truncated normal, as tf.contrib.layers."
                   "variance_scaling_initializer(); zero biases) | snippet (the question's N(0,1) everywhere)",
                   applies=NOT_PRETRAINED),
    "activation": option("hidden units: " + " | ".join(ACTIVATIONS), applies=HIDDEN),
    "code_activation": option("code layer: " + " | ".join(ACTIVATIONS)),
    "output_activation": option("the reconstruction: " + " | ".join(ACTIVATIONS) + " (xent takes sigmoid)",
                                default_text="linear with mse, sigmoid with xent"),
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
    "init_from": option("start the model's variables from this checkpoint (a prefix like DIR/model.ckpt-1000, or its "
                        "folder), another code base's or a run's; the optimizer starts afresh (docs/porting.md)",
                        default_text="none: --init", applies=NOT_PRETRAINED),
    "init_map": option("a JSON file {\"name in the checkpoint\": \"name in the model\"} for --init-from; variables "
                       "it does not name keep --init's values", default_text="every model variable under its own name",
                       applies=(lambda m, r: r.init_from is not None, "--init-from")),
}


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


def given_flags(args):
    """{Flag: value} of the config flags on the command line, data paths made absolute (config.json
    keeps them so: a resume works from any folder)."""
    found = {}
    for flag in flags():
        value = getattr(args, flag.name.lstrip("-").replace("-", "_"))
        if value is not None:
            if flag.field in ("data_dir", "test_file", "init_from", "init_map") or (flag.field == "dataset" and
                                                                                   is_path(value)):
                value = os.path.abspath(value)
            found[flag] = value
    return found
