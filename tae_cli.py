"""train.py's command line: flags (tae_flags, generated from the two configs), run folders,
--resume, --compare, a trained run's uses, a cluster's tasks; the work itself is tae_commands'.

Everything up to the data's own checks imports no TensorFlow (tae_checks, tae_cluster_args), so
--help and bad flags answer at once. The run's kind of data is chosen once here (tae_tasks) and
handed along. Exit codes: 0 done, 1 unexpected error, 2 bad input (one line on stderr), 3
non-finite loss, 4 a file could not be written, 5 a cluster task lost a parameter server
(docs/cluster.md), 130 interrupted by Ctrl-C (143 by SIGTERM) after saving a checkpoint.
"""
import argparse
import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time
from typing import NamedTuple, Optional

import tae_checks
import tae_cluster_args
import tae_config
import tae_flags
import tae_files
from tae_checks import config_error
from tae_config import AEConfig, ConfigError, RunConfig
from tae_files import EXIT_WRITE_FAILED, DataError, RunFolder, Stopped, UsageError, WriteFailed
from tae_tasks import task_of

EXIT_BAD_INPUT = 2

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


TAKES = {int: "an integer", float: "a number", tae_flags.parse_ints: "integers separated by commas, like 784,196,49",
         tae_flags.parse_floats: "numbers separated by commas, like 1,5", tae_flags.parse_switch: "on or off"}


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
    for flag in tae_flags.flags():
        group = model if flag.owner is AEConfig else run
        group.add_argument(flag.name, type=_parse(flag), default=None, help=flag.help,
                           metavar="on|off" if flag.parse is tae_flags.parse_switch else None)
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
    tae_cluster_args.add_flags(p)
    return p


def import_tensorflow(verbose):
    """TensorFlow, its Python and C++ logging quiet unless --verbose (set before the import)."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf  # here, not at the top: --help and bad flags answer without it

    tf.get_logger().setLevel("INFO" if verbose else "ERROR")
    tf.config.experimental.enable_op_determinism()  # same flags and seed, same numbers


def run_command(args, hold, program=Program(), progress=None):
    """Everything main does inside its error handling; returns the exit code. hold: an ExitStack
    that keeps the run folder's lock until main returns; progress: what main needs to word a stop."""
    progress = progress if progress is not None else Progress()
    tae_checks.refuse_empty(args)
    given = tae_flags.given_flags(args)
    cluster = tae_cluster_args.from_args(args)
    if cluster is None and any(f.field == "sync_replicas" and v for f, v in given.items()):
        raise UsageError("--sync-replicas on is a cluster run's setting (docs/cluster.md); on one machine every step "
                         "is synchronous: drop it")
    if cluster is not None:
        tae_cluster_args.refuse_flags(cluster, args, given)
        tae_cluster_args.check_port(cluster)  # before TensorFlow's import: a taken port answers at once
        if not cluster.chief:
            progress.task = cluster.name
            return cluster_task(cluster, given, args.verbose)
    if args.encode or args.reconstruct or args.export or args.recommend is not None:
        return use_run(args, given, hold)
    if args.to:
        raise UsageError("--to does nothing without --encode or --reconstruct; drop it")
    if args.resume and not args.out:
        raise UsageError("--resume needs --out: the run folder to continue")
    if args.resume and args.preset:
        raise UsageError("--preset does nothing with --resume (the run keeps the settings in its config.json); "
                         "drop it")
    if args.resume:
        saved, model, run = resumed(args, given, hold, program)
        if saved is None:
            return 0
        task, model_values = task_of(run.dataset), None
    else:
        saved, model = None, None
        task, model_values, run = new_configs(args, given)
    model, run, ds = load(task, model, model_values, run, args, given)
    return launch(task, model, run, ds, args, cluster, saved, hold, progress)


def cluster_task(cluster, given, verbose):
    """A ps task's or a follower's life (tae_cluster), after its own checks."""
    if cluster.job == "worker":
        tae_cluster_args.wait_for_ps(cluster)
    import_tensorflow(verbose)
    import tae_cluster  # TensorFlow's: only once the flags and the peers are checked

    try:
        return tae_cluster.serve_ps(cluster) if cluster.job == "ps" else tae_cluster.follow(cluster, given)
    except ConfigError as e:
        raise config_error(e) from None


def resumed(args, given, hold, program):
    """(saved config.json, model, run) of the run in --out, locked, its flags checked; saved None
    when it has nothing left to train (said)."""
    if RunFolder(args.out).holds_run():
        hold.enter_context(tae_files.lock(args.out))
    saved, model, run = tae_checks.resumed_configs(args, given)
    if tae_checks.complete(args.out, saved, run, program.command):
        return None, model, run
    folder = RunFolder(args.out)
    for place in [folder.variant(v) for v in tae_config.COMPARE] if args.compare else [folder]:
        if place.holds_run():
            place.check_resumable()
    return saved, model, run


def new_configs(args, given):
    """(task, AEConfig fields, RunConfig) of a new run, before any data: first a flag that does
    nothing, then a value that is wrong (with the task's defaults)."""
    if args.preset and args.compare:
        raise UsageError("--preset does nothing with --compare (its snippet row is the question preset already); "
                         "drop it")
    if args.compare and args.init_from:
        raise UsageError("--init-from starts one model from a checkpoint, and --compare trains five: drop one of them")
    task = task_of(args.dataset or RunConfig.dataset)  # the preset's settings must not meet the wrong data
    if args.preset and args.preset not in task.presets:
        raise UsageError(f"--preset {args.preset} does not apply to {task.name} (theirs: {', '.join(task.presets)}; "
                         "docs/cli.md): drop it")
    model_values, run_values = tae_config.preset_values(given, args.preset)
    tae_checks.refuse_inert(*tae_config.lenient(task.model_values(model_values), run_values), given, args.compare)
    try:
        model_values, run = tae_config.early_configs(given, args.preset)
    except ConfigError as e:
        raise config_error(e) from None
    return task, model_values, run


def load(task, model, model_values, run, args, given):
    """The task's data, and the configs resolved from it (a new run) or checked against it."""
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
        tae_checks.refuse_inert(model, run, given, args.compare)  # again: the data may have set the dims
        tae_checks.refuse_long_warmup(model, run, task.graph_input(ds)[1])
    return model, run, ds


def launch(task, model, run, ds, args, cluster, saved, hold, progress):
    """The run folder made (a new run) and locked, TensorFlow imported, the run or the comparison
    trained (tae_commands). A cluster's chief starts its server first, once its ps tasks are up."""
    started = None
    if run.init_from and saved is None:  # before the folder is made: the checkpoint fits the model, or one line
        check_init_from(model, run, args.verbose)
    if cluster is not None:
        tae_cluster_args.refuse_run(run, model, cluster)
        tae_cluster_args.wait_for_ps(cluster)  # before the folder is made, and before TensorFlow's import
        import_tensorflow(args.verbose)
        import tae_cluster  # TensorFlow's: only once the flags and the peers are checked

        started = tae_cluster.start_server(cluster)
    out = args.out or tae_files.new_folder(ds.name, "compare" if args.compare else model.mode)
    if saved is None:
        RunFolder(out).prepare()
        hold.enter_context(tae_files.lock(out))
    progress.out, progress.compare = out, args.compare
    import_tensorflow(args.verbose)
    import tae_commands  # TensorFlow's: only once the flags and the data are checked

    start = time.time()
    if args.compare:
        tae_commands.compare(task, model, run, ds, out, progress=progress)
    else:
        tae_commands.train_one(task, model, run, ds, out, progress=progress, cluster=cluster, started=started)
    print(f"done in {time.time() - start:.0f}s: {out}")
    return 0


def check_init_from(model, run, verbose):
    """--init-from's checkpoint holds every variable its map names, in the model's shapes."""
    import_tensorflow(verbose)
    import tf1_checkpoints  # TensorFlow's: only once the flags and the data are checked

    try:
        tf1_checkpoints.assignment(run.init_from, tae_config.variable_shapes(model), tae_checks.read_init_map(run.init_map))
    except ValueError as e:
        raise UsageError(f"--init-from: {e}") from None


def use_run(args, given, hold):
    """--encode, --reconstruct, --recommend, --export on the trained run in --out."""
    whats = tae_checks.refuse_use_flags(args, given)
    saved = RunFolder(args.out).config()
    if saved is None:
        raise UsageError(f"--out {args.out} holds no run (no config.json); train one first")
    task = task_of(saved["run"]["dataset"])
    task.refuse_use(args.out, saved, whats, args.recommend is not None)
    if args.export:
        hold.enter_context(tae_files.lock(args.out))
    import_tensorflow(args.verbose)
    import tae_commands  # TensorFlow's: only once the flags are checked

    return tae_commands.use_run(task, args, saved, whats)


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
