"""train.py's command line: flags (generated from tae_config's two dataclasses), run folders,
--resume, --compare; then the graph (tf1_tied_ae.build) and the stage runner (tae_runner).

Everything up to the data's own checks imports no TensorFlow, so --help and bad flags answer at
once. Exit codes: 0 done, 1 unexpected error, 2 bad input (one line on stderr), 3 non-finite loss,
4 a file could not be written, 5 a cluster task lost a parameter server (docs/cluster.md), 130
interrupted by Ctrl-C (143 by SIGTERM) after saving a checkpoint.
"""
import argparse
import contextlib
import dataclasses
import os
import re
import signal
import sys
import threading
import time
import types
from typing import NamedTuple, Optional

import tae_cluster
import tae_config
import tae_files
from tae_config import AEConfig, ConfigError, RunConfig
from tae_files import EXIT_WRITE_FAILED, DataError, RunFolder, Stopped, UsageError, WriteFailed
from tae_task_images import ImagesTask
from tae_task_ratings import RatingsTask

EXIT_BAD_INPUT = 2
# The kinds of data train.py trains on, one Task each (tae_task_images.ImagesTask,
# tae_task_ratings.RatingsTask). A Task has a `name`, the `presets` that apply to it, and: handles(dataset), model_values(given flags) (AEConfig's
# fields, the task's defaults where no flag is given), load(model, model_values, run) -> (model, run, data),
# record(data) (its part of config.json), graph_input(data) -> (what the graph holds, examples, build's keywords), release(data), baselines(model, data),
# scoring(model, data, baselines) (the epoch's figures, the final line, the run folder's figures),
# compare_table(data, baselines), refuse_use(out, saved, whats, recommend). A third kind is a module
# with such a class and an entry here.
TASKS = (RatingsTask, ImagesTask)  # the first that handles a --dataset takes it (images: any other)


def task_of(dataset):
    """The Task of a --dataset value: the one place that asks which kind of data a run is."""
    return next(task for task in TASKS if task.handles(dataset))


COMPARE = {  # variant -> AEConfig fields (same data, seed, batches and epochs for all)
    "snippet": tae_config.PRESETS["question"][0],  # the question's code as written
    "untied": dict(mode="untied"), "sync": dict(mode="sync"), "tied": dict(mode="tied"),
    "tied-untied": dict(mode="tied-untied"),
}
USAGE = """examples:
  python train.py                                   tied, on MNIST if found, else 8x8 digits
  python train.py --dataset mnist --mode tied-untied --epochs 20
  python train.py --compare                         the question's code vs every mode
  python train.py --out checkpoints/run --resume    continue a run
  python train.py --preset question                 the question's code as written
  python train.py --out checkpoints/run --encode mine.npy   codes of your data (.npy beside it)
  python train.py --dataset mnist --dims 784,1000,500,250,30 --activation sigmoid \\
      --code-activation linear --output-activation sigmoid --mode tied-untied --pretrain rbm

exit codes: 0 done, 1 unexpected error, 2 bad input, 3 non-finite loss, 4 a file could not be
written, 5 a cluster task lost a parameter server, 130 interrupted by Ctrl-C (143 by SIGTERM)
after saving a checkpoint."""


class Program(NamedTuple):
    """How the program was called, for the commands its messages give."""

    name: str = "train.py"  # what its lines start with
    command: str = "python train.py"  # what runs it


@dataclasses.dataclass
class Progress:
    """What main knows of the command's work so far, to say what a stop kept and what continues it."""

    out: Optional[str] = None  # the run (or --compare) folder once it holds a run
    compare: bool = False
    exporting: Optional[str] = None  # the run folder whose export is being written, after its training
    task: Optional[str] = None  # a cluster's ps task or follower ("worker 1"), which writes nothing

    def resume(self, program):
        return f"{program.command} --out {self.out} --resume{' --compare' if self.compare else ''}"


class Parser(argparse.ArgumentParser):
    def __init__(self, program, **kw):
        super().__init__(prog=program.name, **kw)
        self.program = program

    def error(self, message):  # one line, not argparse's usage block
        raise UsageError(f"{message} (see {self.program.command} --help)")


TAKES = {int: "an integer", float: "a number", tae_config.parse_ints: "integers separated by commas, like 784,196,49",
         tae_config.parse_floats: "numbers separated by commas, like 1,5", tae_config.parse_switch: "on or off"}


def _parse(flag):
    def parse(text):
        try:
            return flag.parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid value: it takes {TAKES[flag.parse]}") from None
    parse.__name__ = flag.name
    return parse


def make_parser(program=Program()):
    p = Parser(program, description="Train a tied-weight autoencoder (tf1_tied_ae) from the command line.",
               formatter_class=argparse.RawDescriptionHelpFormatter,
               epilog=USAGE.replace("python train.py", program.command))
    model = p.add_argument_group("the model (tae_config.AEConfig)")
    run = p.add_argument_group("the run (tae_config.RunConfig)")
    for flag in tae_config.flags():
        group = model if flag.owner is AEConfig else run
        group.add_argument(flag.name, type=_parse(flag), default=None, help=flag.help,
                           metavar="on|off" if flag.parse is tae_config.parse_switch else None)
    p.add_argument("--preset", choices=list(tae_config.PRESETS), help="start from these settings; flags given "
                   "override them (question: the 2018 question's code as written, untied; README and docs/porting.md. "
                   "hinton: Hinton & Salakhutdinov's 784-1000-500-250-30 MNIST net, the best recipe measured for "
                   "it, 81 epochs; docs/cli.md)")
    p.add_argument("--out", help="run folder (default: a new folder under checkpoints/)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument("--compare", action="store_true", help="train the question's code and every mode side by side")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's own log messages")
    use = p.add_argument_group("using a trained run (--out RUN; the best epoch's model, else the newest)")
    use.add_argument("--encode", metavar="FILE", help="write the codes of FILE (.npy/.npz, N x D) as .npy")
    use.add_argument("--reconstruct", metavar="FILE", help="write the reconstructions of FILE as .npy")
    use.add_argument("--to", metavar="PATH", help="where to write them (default: beside FILE, "
                     "as FILE's name + .codes.npy or .reconstructions.npy)")
    use.add_argument("--recommend", metavar="USER", type=int, help="a ratings run: print the 10 items USER "
                     "(an id of the ratings file) has not rated with the highest predicted ratings, with titles")
    use.add_argument("--export", action="store_true", help="(re)write RUN/export, the TF1 SavedModel "
                     "(every run writes it when it ends)")
    tae_cluster.add_flags(p)
    return p


def config_error(e):
    return UsageError(f"{tae_config.flag_of(e.field)} {flag_words(e.detail)}")


def flag_words(text):
    """A config message in the command line's words: the fields it names as their flags ("needs loss
    masked_mse" -> "needs --loss masked_mse", "gaussian_noise" -> "--gaussian-noise")."""
    for flag in tae_config.flags():
        if "_" in flag.field:
            text = re.sub(rf"(?<![-\w]){flag.field}\b", flag.name, text)
        else:  # a plain word is a field only before a value of it: "loss xent", "epochs (2)"
            text = re.sub(rf"(?<![-\w']){flag.field} (?=[a-z(])", flag.name + " ", text)
    return text


def refuse_inert(model, run, given, compare):
    """A given flag that does nothing in this configuration: UsageError naming it."""
    if compare and any(f.field == "mode" for f in given):
        raise UsageError("--mode does nothing with --compare (every variant sets its own mode); drop it")
    values = vars(model) if isinstance(model, types.SimpleNamespace) else dataclasses.asdict(model)
    variants = [types.SimpleNamespace(**{**values, **o}) for o in COMPARE.values()] if compare else [model]
    fields = {f.field for f in given}
    found = [tae_config.inert(v, run, fields) for v in variants]
    if found and all(found):
        flag, needs = found[0]
        raise UsageError(f"{flag} does nothing here: it applies only with {needs}; drop it or add that")


PATHS = ("out", "data_dir", "test_file", "dataset", "encode", "reconstruct", "to")  # the flags that name files


def refuse_empty(args):
    """A path flag given an empty value ("--out ''", an unset shell variable) is refused, where it would
    mean the default or the current folder."""
    for name in PATHS:
        value = getattr(args, name)
        if value is not None and not value.strip():
            raise UsageError(f"--{name.replace('_', '-')} takes a path, and was given an empty one; give the path "
                             "or drop the flag")


def refuse_long_warmup(model, run, examples):
    """A warm-up longer than the run's autoencoder steps would never reach the rate: refused, as a
    tied stage longer than the run is."""
    steps = run.epochs * (examples // run.batch_size)
    if model.warmup_steps > steps:
        raise UsageError(f"--warmup-steps {model.warmup_steps} is longer than the run's {steps} training steps "
                         f"({run.epochs} epoch{'s' * (run.epochs != 1)} of {examples // run.batch_size}); give at "
                         f"most {steps}")


def resumed_configs(args, given):
    """(saved config.json, model, run) of the run in --out, with the given flags merged in."""
    saved = RunFolder(args.out).config()
    if saved is None:
        raise UsageError(f"--resume: {args.out} holds no run (no config.json); start one without --resume")
    if args.compare != bool(saved.get("compare")):
        raise UsageError(f"--resume{' --compare' if args.compare else ''} does not match the run in {args.out}; "
                         f"{'add' if saved.get('compare') else 'drop'} --compare")
    try:
        model, run = tae_config.merge(saved, given, args.out)
    except ConfigError as e:
        raise config_error(e) from None
    refuse_inert(model, run, given, args.compare)
    return saved, model, run


def complete(out, saved, run, program=Program()):
    """True, after saying so, when a resumed run has nothing left to train."""
    folder = RunFolder(out)
    done = folder.compared() is not None if saved.get("compare") else folder.finished(run.epochs)
    if done and run.epochs == saved["run"]["epochs"]:
        model = saved["model"]
        stopped = None if saved.get("compare") else folder.metrics()["final"].get("stopped_early")
        if stopped:
            print(f"{out} is complete: it stopped early after epoch {stopped} of {run.epochs} "
                  f"(--patience {run.patience}); its best epoch by validation error is epoch "
                  f"{folder.metrics()['final']['best_epoch']}")
            return True
        if model["lr_schedule"] == "cosine" and model["lr_decay_steps"] is None:
            further = ("its cosine learning rate has decayed to 0, so it cannot be extended; for longer training "
                       "start a new run with a larger --epochs")
        else:
            further = f"to train it further: {program.command} --out {out} --resume --epochs N, with N above {run.epochs}"
        print(f"{out} is complete ({run.epochs} epochs); {further}")
        return True
    return False


def config_record(model, run, ds, compare=False):
    """config.json: the configs, where the data came from, and the task's part (the data's range,
    what --encode accepts; or the rating scale)."""
    return {"model": dataclasses.asdict(model), "run": dataclasses.asdict(run), "compare": compare,
            "data_source": ds.source, **task_of(run.dataset).record(ds)}


def train_one(model, run, ds, out, log=print, keep_data=False, stop=None, baselines=None, progress=None,
              cluster=None, started=None):
    """Build the model's graph with its run and hand it to the stage runner, with the baselines
    of the data (the task's, computed here unless given); then write the run's export. progress:
    where main learns that training is over and the export is being written. cluster
    (tae_cluster.ClusterArgs): train as that cluster's chief."""
    import tae_export
    import tae_runner

    task = task_of(run.dataset)
    if baselines is None:
        baselines = task.baselines(model, ds)
    metrics = tae_runner.build_and_train(model, run.schedule(model), task, ds, out, config_record(model, run, ds),
                                         log=log, stop=stop, keep_data=keep_data, baselines=baselines,
                                         patience=run.patience, cluster=cluster, started=started,
                                         synchronous=cluster is not None and run.sync_replicas)
    progress = progress or Progress()
    progress.exporting = str(out)
    trained = tae_export.restore(out)  # the SavedModel, from the checkpoint the final figures describe
    with trained.sess:
        tae_export.export(trained, out)
    progress.exporting = None
    return metrics


def compare(model, run, ds, out, log=print, progress=None):
    """The question's code and every mode on the same data, seed, batches and epochs."""
    import tae_figures

    folder, task = RunFolder(out), task_of(run.dataset)
    folder.write_config(config_record(model, run, ds, compare=True))
    results, curves = {}, {}
    baselines = task.baselines(model, ds)
    figure, label, levels, columns = task.compare_table(ds, baselines)
    for name, fields in COMPARE.items():
        variant = tae_config.compare_variant(model, fields)
        sub = dataclasses.replace(run, tied_epochs=tae_config.default_tied_epochs(run.epochs, variant.mode,
                                                                                   run.tied_epochs))
        place = folder.variant(name)
        metrics = place.metrics()
        if not place.finished(run.epochs):
            log(f"--- {name}: {variant.mode}, init {variant.init}, {variant.activation}, {variant.loss}"
                + (", the sparse path" if variant.sparse_input else ""))
            if place.config() is None:
                place.prepare()
            metrics = train_one(variant, sub, ds, str(place), log, keep_data=True, baselines=baselines, progress=progress)
        results[name] = metrics["final"]
        curves[name] = [(m["epoch"], m[figure]) for m in metrics["epochs"]]
    folder.write_compare({**results, "baselines": levels})
    tae_files.write_bytes(folder.path(tae_files.COMPARE_PNG), tae_figures.curves_png(curves, label,
                            f"{'-'.join(map(str, model.dims))} on {ds.name}, {run.epochs} epochs",
                            references={k: v[figure] for k, v in levels.items()}))
    width = max(12, *map(len, levels))
    log(f"{'variant':<{width}} {'trainable':>10} " + " ".join(f"{c:>10}" for c, _, _ in columns) + f" {'seconds':>8}")
    for name, r in {**results, **levels}.items():
        seconds = f"{r['train_seconds']:>8.1f}" if "train_seconds" in r else f"{'-':>8}"
        log(f"{name:<{width}} {r['trainable_params']:>10} " + " ".join(f"{r[k]:>10{f}}" for _, k, f in columns)
            + f" {seconds}")
    return results


def import_tensorflow(verbose):
    """TensorFlow, its Python and C++ logging quiet unless --verbose (set before the import)."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.get_logger().setLevel("INFO" if verbose else "ERROR")
    tf.config.experimental.enable_op_determinism()  # same flags and seed, same numbers


def use_run(args, given, hold):
    """--encode, --reconstruct, --recommend, --export on the trained run in --out."""
    others = [name for name, on in (("--resume", args.resume), ("--compare", args.compare),
                                    ("--preset", args.preset)) if on] + [f.name for f in given]
    if not args.out:
        raise UsageError("--encode, --reconstruct, --recommend and --export need --out: the trained run to use")
    if others:
        raise UsageError(f"{others[0]} does nothing with --encode, --reconstruct, --recommend or --export (the run's "
                         "own settings are used); drop it")
    whats = [w for w in ("encode", "reconstruct") if getattr(args, w)]
    if args.to and len(whats) != 1:
        raise UsageError("--to names one output file: give it with one of --encode and --reconstruct")
    if len({getattr(args, w) for w in whats}) > 1:
        raise UsageError("--encode and --reconstruct together take the same FILE; run them one at a time")
    saved = RunFolder(args.out).config()
    if saved is None:
        raise UsageError(f"--out {args.out} holds no run (no config.json); train one first")
    task = task_of(saved["run"]["dataset"])
    task.refuse_use(args.out, saved, whats, args.recommend is not None)
    if args.export:
        hold.enter_context(tae_files.lock(args.out))
    import_tensorflow(args.verbose)
    import tae_export

    trained = tae_export.restore(args.out)
    if args.recommend is not None:
        _, _, ds = task.load(AEConfig(**saved["model"]), None, RunConfig(**saved["run"]))
        titles, best = ds.data.titles, tae_export.recommend(trained, ds, args.recommend)  # a bad user: before any line
        print(f"the 10 highest predicted ratings among the items user {args.recommend} has not rated "
              f"({os.path.basename(trained.checkpoint)}):")
        for rank, (item, value) in enumerate(best, 1):
            print(f"{rank:>3}. {value:.2f}  {titles.get(item, f'item {item}')}")
    if whats:
        source = getattr(args, whats[0])
        rows = task.read_rows(source, trained.config.dims[0], trained.data_range)
    for what, target in (tae_export.write_outputs(trained, rows, source, whats, args.to).items() if whats else ()):
        print(f"wrote {target} ({tae_export.OUTPUTS[what]} of {getattr(args, what)}, by {os.path.basename(trained.checkpoint)})")
    if args.export:
        print(f"wrote {tae_export.export(trained, args.out)} (from {os.path.basename(trained.checkpoint)})")
    return 0


def run_command(args, hold, program=Program(), progress=None):
    """Everything main does inside its error handling; returns the exit code. hold: an ExitStack
    that keeps the run folder's lock until main returns; progress: what main needs to word a stop."""
    progress = progress if progress is not None else Progress()
    refuse_empty(args)
    given = tae_config.given_flags(args)
    cluster = tae_cluster.from_args(args)
    if cluster is None and any(f.field == "sync_replicas" and v for f, v in given.items()):
        raise UsageError("--sync-replicas on is a cluster run's setting (docs/cluster.md); on one machine every step "
                         "is synchronous: drop it")
    if cluster is not None:
        tae_cluster.refuse_flags(cluster, args, given)
        tae_cluster.check_port(cluster)  # before TensorFlow's import: a taken port answers at once
        if not cluster.chief:
            progress.task = cluster.name
            if cluster.job == "worker":
                tae_cluster.wait_for_ps(cluster)
            import_tensorflow(args.verbose)
            try:
                return tae_cluster.serve_ps(cluster) if cluster.job == "ps" else tae_cluster.follow(cluster, given)
            except ConfigError as e:
                raise config_error(e) from None
    if args.encode or args.reconstruct or args.export or args.recommend is not None:
        return use_run(args, given, hold)
    if args.to:
        raise UsageError("--to does nothing without --encode or --reconstruct; drop it")
    if args.resume and not args.out:
        raise UsageError("--resume needs --out: the run folder to continue")
    if args.resume and args.preset:
        raise UsageError("--preset does nothing with --resume (the run keeps the settings in its config.json); "
                         "drop it")
    saved = None
    if args.resume:
        if RunFolder(args.out).holds_run():
            hold.enter_context(tae_files.lock(args.out))
        saved, model, run = resumed_configs(args, given)
        if complete(args.out, saved, run, program):
            return 0
        folder = RunFolder(args.out)
        for place in [folder.variant(v) for v in COMPARE] if args.compare else [folder]:
            if place.holds_run():
                place.check_resumable()
        model_values = None
    else:
        if args.preset and args.compare:
            raise UsageError("--preset does nothing with --compare (its snippet row is the question preset "
                             "already); drop it")
        kind = task_of(args.dataset or RunConfig.dataset)  # the preset's settings must not meet the wrong data
        if args.preset and args.preset not in kind.presets:
            raise UsageError(f"--preset {args.preset} does not apply to {kind.name} (theirs: "
                             f"{', '.join(kind.presets)}; docs/cli.md): drop it")
        # before any data, with the task's defaults: first a flag that does nothing, then a value that is wrong
        model_values, run_values = tae_config.preset_values(given, args.preset)
        refuse_inert(*tae_config.lenient(kind.model_values(model_values), run_values), given, args.compare)
        try:
            model_values, run = tae_config.early_configs(given, args.preset)
        except ConfigError as e:
            raise config_error(e) from None
        model = None
    task = task_of(run.dataset)
    try:
        model, run, ds = task.load(model, model_values, run)
    except ConfigError as e:
        raise config_error(e) from None
    except tae_files.WidthError as e:
        if args.preset == "hinton" and "dims" not in [f.field for f in given]:
            raise DataError(f"--preset hinton is Hinton & Salakhutdinov's 784-1000-500-250-30 net for 28x28 images, "
                            f"but the data has {e.width} values per example: give it --dataset mnist or fashion_mnist "
                            "(or --data-dir DIR of their IDX files)") from None
        raise
    if model_values is not None:
        refuse_inert(model, run, given, args.compare)  # again: the data may have set the dims
        refuse_long_warmup(model, run, task.graph_input(ds)[1])
    started = None
    if cluster is not None:
        tae_cluster.refuse_run(run, model, cluster)
        tae_cluster.wait_for_ps(cluster)  # before the folder is made, and before TensorFlow's import
        import_tensorflow(args.verbose)
        started = tae_cluster.start_server(cluster)
    out = args.out or tae_files.new_folder(ds.name, "compare" if args.compare else model.mode)
    if saved is None:
        RunFolder(out).prepare()
        hold.enter_context(tae_files.lock(out))
    progress.out, progress.compare = out, args.compare
    import_tensorflow(args.verbose)
    start = time.time()
    if args.compare:
        compare(model, run, ds, out, progress=progress)
    else:
        train_one(model, run, ds, out, progress=progress, cluster=cluster, started=started)
    print(f"done in {time.time() - start:.0f}s: {out}")
    return 0


def main(argv=None, program=Program()):
    """The command line on argv; returns the exit code. Every message that names a command to run
    next is written here, from the facts a stop carries and what `progress` says of the work."""
    argv = sys.argv[1:] if argv is None else argv
    progress = Progress()
    # SIGTERM stops where Ctrl-C would (the runner's own handler takes both while it trains, and saves
    # first); signals reach the main thread only, so main in another thread (tests' cluster tasks) leaves it
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        with contextlib.ExitStack() as hold:
            return run_command(make_parser(program).parse_args(argv), hold, program, progress)
    except (UsageError, DataError) as e:
        message, code = f"error: {e}", EXIT_BAD_INPUT
    except Stopped as e:
        message, code = str(e), e.code
        if e.then == "--resume":
            message += f"; resume with: {progress.resume(program)}"
        elif e.then == "--export":
            message += f"; then write it with: {program.command} --out {e.folder} --export"
    except WriteFailed as e:  # outside a run's training (config.json, compare.json, figures of --compare)
        message, code = f"{e}; make room or fix the folder, then run the same command again", EXIT_WRITE_FAILED
    except (KeyboardInterrupt, Terminated) as e:
        code = 143 if isinstance(e, Terminated) else 130
        if progress.task:
            message = f"{progress.task}: stopped (a {progress.task.split()[0]} task writes nothing; the chief keeps the run)"
        elif progress.exporting:
            message = (f"interrupted while writing the export of {progress.exporting}, whose training is complete and "
                       f"kept; write it with: {program.command} --out {progress.exporting} --export")
        elif progress.out:
            message = (f"interrupted; {progress.out} keeps every epoch it finished: resume with: "
                       f"{progress.resume(program)}")
        else:
            message = "interrupted before training started; nothing was written"
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    print(f"{program.name}: {message}", file=sys.stderr)
    return code


class Terminated(BaseException):
    """SIGTERM, raised where the program stands, as Ctrl-C raises KeyboardInterrupt."""


def _terminated(signum, frame):
    raise Terminated()


def hide_native_stderr():
    """Send file descriptor 2 to /dev/null; sys.stderr keeps the real stderr for our messages.

    TF_CPP_MIN_LOG_LEVEL does not reach the lines TensorFlow's C++ runtime logs before it reads
    its settings (absl's, the CUDA stub's), so the script's entry point does this unless --verbose.
    """
    sys.stderr.flush()
    real = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = os.fdopen(real, "w", buffering=1)


def console(program=Program()):
    """The program's entry point (train.py's, and the installed tf1-tied-ae command's): TensorFlow's
    native start-up log hidden unless --verbose, then main's exit code."""
    if "--verbose" not in sys.argv[1:]:
        hide_native_stderr()
    sys.stdout.reconfigure(line_buffering=True)  # each log line as it happens, in a file or a pipe too
    sys.exit(main(program=program))


def installed():
    console(Program("tf1-tied-ae", "tf1-tied-ae"))
