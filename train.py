"""Train a tied-weight autoencoder (tf1_tied_ae) from the command line.

    python train.py                                   # tied, on MNIST if found, else 8x8 digits
    python train.py --dataset mnist --mode tied-untied --epochs 20
    python train.py --compare                         # the question's code vs every mode
    python train.py --out checkpoints/run --resume    # continue a run
    python train.py --dataset mnist --dims 784,1000,500,250,30 --code-activation linear \
        --output-activation sigmoid --mode tied-untied --pretrain rbm   # Hinton & Salakhutdinov 2006

Exit codes: 0 done, 1 unexpected error, 2 bad input (one line on stderr), 3 non-finite loss,
130 interrupted by Ctrl-C (143 by SIGTERM) after saving a checkpoint.
"""
import argparse
import dataclasses
import os
import sys
import time

import datasets
import runs
from runs import Stopped, UsageError
from trainer import rbm_config, train_run, write_config

EXIT_BAD_INPUT = 2
MODEL_FLAGS = {  # flag -> (AEConfig field, type, help); the defaults come from AEConfig itself
    "--dims": ("dims", None, "layer sizes from input to code, comma-separated (default: the question's rule "
                             "from the image size: 784,196,81,49 for 28x28 images, 64,16,4,4 for 8x8)"),
    "--mode": ("mode", str, "untied | tied | sync | tied-untied (default: %(default)s)"),
    "--init": ("init", str, "glorot | snippet (the question's N(0,1)) (default: %(default)s)"),
    "--activation": ("activation", str, "hidden units: sigmoid | relu | elu | selu | tanh | linear (default: %(default)s)"),
    "--code-activation": ("code_activation", str, "code layer (default: same as --activation; linear for Hinton's code)"),
    "--output-activation": ("output_activation", str, "linear | sigmoid (default: linear for mse, sigmoid for xent)"),
    "--loss": ("loss", str, "mse | xent (default: %(default)s)"),
    "--trainable": ("trainable", str, "what minimize(var_list=...) trains: all | encoder | decoder (default: %(default)s)"),
    "--optimizer": ("optimizer", str, "adam | sgd (default: %(default)s)"),
    "--lr": ("learning_rate", float, "learning rate (default: %(default)s)"),
    "--lr-schedule": ("lr_schedule", str, "constant | cosine (decay to 0) (default: %(default)s)"),
    "--lr-decay-steps": ("lr_decay_steps", int, "cosine: steps to decay over (default: all the run's steps)"),
    "--seed": ("seed", int, "graph-level seed; also orders the batches (default: %(default)s)"),
    "--sync-every": ("sync_every", str, "sync mode: re-assign decoder kernels every step | epoch (default: %(default)s)"),
}
RUN_FLAGS = {  # flag -> (type, default, help)
    "--dataset": (str, "auto", "auto | mnist | fashion_mnist | digits | path/to/data.npy|.npz "
                               "(default: %(default)s: a local MNIST copy, else scikit-learn's digits)"),
    "--data-dir": (str, None, "folder of MNIST-format IDX files, or a Keras .npz (default: look in ./data/mnist, "
                              "./MNIST_data, ~/.keras/datasets)"),
    "--epochs": (int, None, "training epochs in all (default: 10 for MNIST-sized data, 200 for smaller sets)"),
    "--untie-epochs": (int, None, "tied-untied: how many of the last --epochs train untied (default: half)"),
    "--batch-size": (int, 100, "examples per step (default: %(default)s)"),
    "--pretrain": (str, "none", "none | rbm: Hinton & Salakhutdinov's greedy RBM pretraining, then unrolling "
                                "(default: %(default)s)"),
    "--pretrain-epochs": (int, 10, "epochs per RBM (default: %(default)s)"),
    "--rbm-lr": (float, 0.1, "RBM learning rate (default: %(default)s)"),
    "--rbm-lr-linear": (float, 0.001, "the linear top RBM's learning rate (default: %(default)s)"),
    "--rbm-weight-cost": (float, 2e-4, "RBM weight decay (default: %(default)s)"),
    "--rbm-momentum": (None, (0.5, 0.9), "RBM momentum for the first 5 epochs, then after (default: 0.5,0.9)"),
    "--rbm-batch-size": (int, 100, "RBM mini-batch size (default: %(default)s)"),
}
COMPARE = {  # variant -> AEConfig overrides (same data, seed, batches and epochs for all)
    "snippet": dict(mode="untied", init="snippet", activation="sigmoid", code_activation="sigmoid",
                    output_activation="linear", loss="mse"),
    "untied": dict(mode="untied"), "sync": dict(mode="sync"), "tied": dict(mode="tied"),
    "tied-untied": dict(mode="tied-untied"),
}


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise UsageError(f"{message} (see python train.py --help)")


def parse_dims(text):
    try:
        dims = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not comma-separated integers like 784,196,81,49") from None
    if len(dims) < 2 or min(dims) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least 2 positive sizes, like 784,196,81,49")
    return dims


def parse_pair(text):
    try:
        first, second = (float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not two comma-separated numbers like 0.5,0.9") from None
    return first, second


def make_parser():
    from tf1_tied_ae import AEConfig

    p = Parser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
               epilog=__doc__.split("\n", 2)[2])
    defaults = AEConfig()
    for flag, (field, typ, help_) in MODEL_FLAGS.items():
        p.add_argument(flag, type=typ or parse_dims, default=None, help=help_ % {"default": getattr(defaults, field)}
                       if "%(default)s" in help_ else help_)
    for flag, (typ, default, help_) in RUN_FLAGS.items():
        p.add_argument(flag, type=typ or parse_pair, default=None, help=help_ % {"default": default} if "%(default)s" in help_ else help_)
    p.add_argument("--out", help="run folder (default: a new folder under checkpoints/)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument("--compare", action="store_true", help="train the question's code and every mode side by side")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's own log messages")
    return p


def question_dims(image_shape, width):
    """The question's rule: [W*H, (W//2)*(H//2), (W//3)*(H//3), (W//4)*(H//4)]."""
    if image_shape is None:
        raise UsageError(f"the data's {width} values per example are not a square image; give --dims")
    h, w = image_shape
    return tuple((w // k) * (h // k) for k in (1, 2, 3, 4))


def _plain(value):
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value


def given(args, flag):
    return getattr(args, flag.lstrip("-").replace("-", "_"))


def default_epochs(ds):
    return 10 if len(ds.train) >= 20000 else 200


def resolve(args, ds, saved=None):
    """Flags -> (AEConfig, run settings); unset flags take the saved run's values, then defaults.
    With a saved run, a flag that differs from it is refused, naming every difference."""
    from tf1_tied_ae import AEConfig

    model = dict(saved["model"]) if saved else {}
    run = dict(saved["run"]) if saved else {}
    diffs = []
    for flag, (field, _, _) in MODEL_FLAGS.items():
        value = given(args, flag)
        if value is None:
            continue
        if saved and _plain(model.get(field)) != _plain(value):
            diffs.append(f"{flag} {_plain(value)} (run has {_plain(model.get(field))})")
        model[field] = value
    if "dims" not in model:
        model["dims"] = question_dims(ds.image_shape, ds.train.shape[1])
    for flag, (_, default, _) in RUN_FLAGS.items():
        key, value = flag.lstrip("-").replace("-", "_"), given(args, flag)
        if value is not None and saved and _plain(run.get(key)) != _plain(value) and key != "epochs":
            diffs.append(f"{flag} {value} (run has {run.get(key)})")
        run.setdefault(key, value if value is not None else default)
        if value is not None:
            run[key] = value
    if diffs:
        raise UsageError(f"--resume with flags that differ from the run in {args.out}: {'; '.join(diffs)}; "
                         "drop them or start a new run with another --out")
    if model.get("lr_schedule") == "cosine" and model.get("lr_decay_steps") is None:
        epochs = run["epochs"] if run["epochs"] is not None else default_epochs(ds)
        model["lr_decay_steps"] = max(1, epochs * (len(ds.train) // max(1, run["batch_size"])))
    try:
        model["dims"] = tuple(model["dims"])
        cfg = AEConfig(**model)
    except ValueError as e:
        field = str(e).split()[0]
        flag = next((f for f, (name, _, _) in MODEL_FLAGS.items() if name == field), None)
        raise UsageError(f"{flag}: {e}" if flag else str(e)) from None
    if run["epochs"] is None:
        run["epochs"] = default_epochs(ds)
    if run["epochs"] < 0:
        raise UsageError(f"--epochs must be 0 or more; got {run['epochs']}")
    if run["batch_size"] <= 0 or run["batch_size"] > len(ds.train):
        raise UsageError(f"--batch-size must be between 1 and the {len(ds.train)} training examples; "
                         f"got {run['batch_size']}")
    if cfg.mode == "tied-untied" and saved and args.untie_epochs is None:
        # a resumed run keeps its untie point; a longer --epochs lengthens the untied stage
        run["untie_epochs"] = run["epochs"] - (saved["run"]["epochs"] - saved["run"]["untie_epochs"])
    if cfg.mode == "tied-untied":
        if run["untie_epochs"] is None:
            run["untie_epochs"] = run["epochs"] // 2
        if not 0 <= run["untie_epochs"] <= run["epochs"]:
            raise UsageError(f"--untie-epochs must be between 0 and --epochs {run['epochs']}; got {run['untie_epochs']}")
    else:
        run["untie_epochs"] = 0
    if run["pretrain"] not in ("none", "rbm"):
        raise UsageError(f"--pretrain must be none or rbm; got {run['pretrain']!r}")
    if run["pretrain"] == "rbm":
        if cfg.activation != "sigmoid" or cfg.output_activation != "sigmoid" or cfg.code_activation not in (
                "sigmoid", "linear"):
            raise UsageError("--pretrain rbm unrolls logistic RBMs: use --activation sigmoid --output-activation "
                             "sigmoid and --code-activation linear or sigmoid")
        if run["pretrain_epochs"] <= 0 or not 0 < run["rbm_batch_size"] <= len(ds.train):
            raise UsageError("--pretrain-epochs must be positive and --rbm-batch-size between 1 and the "
                             f"{len(ds.train)} training examples")
        rbm_config(cfg, run)
    return cfg, run


def hide_native_stderr():
    """Send file descriptor 2 to /dev/null; sys.stderr keeps the real stderr for our messages.

    TF_CPP_MIN_LOG_LEVEL does not reach the lines TensorFlow's C++ runtime logs before it reads
    its settings (and at the first Session), so the script's entry point does this unless --verbose.
    """
    sys.stderr.flush()
    real = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = os.fdopen(real, "w", buffering=1)


def import_tensorflow(verbose):
    """TensorFlow, its Python and C++ logging quiet unless --verbose (set before the import)."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.get_logger().setLevel("INFO" if verbose else "ERROR")
    tf.config.experimental.enable_op_determinism()  # same flags and seed, same numbers
    return tf


def run_folder(args, dataset_name, mode):
    if args.out:
        return args.out
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join("checkpoints", f"{dataset_name}-{'compare' if args.compare else mode}-{stamp}")
    out, k = base, 1
    while os.path.exists(out):
        out, k = f"{base}-{k}", k + 1
    return out


def open_run(args, out):
    """The saved config of --out for --resume; refuse to reuse a run folder otherwise."""
    config_path = os.path.join(out, "config.json")
    if args.resume:
        saved = runs.read_json(config_path)
        if saved is None:
            raise UsageError(f"--resume: {out} holds no run (no config.json); start one without --resume")
        return saved
    if os.path.exists(config_path):
        raise UsageError(f"--out {out} is an existing run; add --resume to continue it or choose another --out")
    if os.path.isdir(out) and os.listdir(out):
        raise UsageError(f"--out {out} is a folder with other files in it; choose a new or empty folder")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} is a file, not a folder; choose a folder")
    return None


def compare_runs(tf, cfg, run, ds, out, resume, log=print):
    """The question's code and every mode on the same data, seed, batches and epochs."""
    if not resume:
        write_config(out, cfg, run, ds, compare=True)
    results, curves = {}, {}
    for name, overrides in COMPARE.items():
        variant = dataclasses.replace(cfg, **overrides)
        sub = dict(run, untie_epochs=run["epochs"] // 2 if variant.mode == "tied-untied" else 0)
        folder = os.path.join(out, name)
        log(f"--- {name}: {variant.mode}, init {variant.init}, {variant.activation}, {variant.loss}")
        again = resume and os.path.exists(os.path.join(folder, "config.json"))
        if not again:
            os.makedirs(folder, exist_ok=True)
        metrics = train_run(tf, variant, sub, ds, folder, again, log, keep_data=True)
        results[name] = metrics["final"]
        curves[name] = [(m["epoch"], m["test_sse_per_image"]) for m in metrics["epochs"]]
    runs.write_json(os.path.join(out, "compare.json"), results)
    runs.save_curves(os.path.join(out, "compare.png"), curves, "test sum of squared errors per image",
                     f"{'-'.join(map(str, cfg.dims))} on {ds.name}, {run['epochs']} epochs")
    log(f"{'variant':<12} {'trainable':>10} {'test mse':>10} {'sse/image':>10} {'seconds':>8}")
    for name, r in results.items():
        log(f"{name:<12} {r['trainable_params']:>10} {r['test_mse']:>10.5f} {r['test_sse_per_image']:>10.3f} "
            f"{r['train_seconds']:>8.1f}")
    return results


def main(argv=None):
    start = time.time()
    argv = sys.argv[1:] if argv is None else argv
    try:
        tf = import_tensorflow("--verbose" in argv)  # first: the parser reads AEConfig's defaults
        args = make_parser().parse_args(argv)
        saved = None
        if args.resume:
            if not args.out:
                raise UsageError("--resume needs --out: the run folder to continue")
            saved = open_run(args, args.out)
            if args.compare != bool(saved.get("compare")):
                raise UsageError(f"--resume{' --compare' if args.compare else ''} does not match the run in {args.out}; "
                                 f"{'add' if saved.get('compare') else 'drop'} --compare")
        dataset = args.dataset or (saved["run"]["dataset"] if saved else "auto")
        data_dir = args.data_dir or (saved["run"]["data_dir"] if saved else None)
        ds = datasets.load(dataset, data_dir)
        cfg, run = resolve(args, ds, saved)
        run["dataset"], run["data_dir"] = dataset, data_dir
        datasets.validate(ds, cfg.dims[0], cfg.output_activation == "sigmoid" or cfg.loss == "xent")
        out = run_folder(args, ds.name, cfg.mode)
        if not args.resume:
            open_run(args, out)
        runs.check_writable(out)
        if args.compare:
            compare_runs(tf, cfg, run, ds, out, resume=args.resume)
        else:
            train_run(tf, cfg, run, ds, out, resume=args.resume)
        print(f"done in {time.time() - start:.0f}s: {out}")
        return 0
    except (UsageError, datasets.DataError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Stopped as e:
        print(f"train.py: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("train.py: interrupted before training started; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    if "--verbose" not in sys.argv[1:]:
        hide_native_stderr()
    sys.exit(main())
