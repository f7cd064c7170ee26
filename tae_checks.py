"""train.py's refusals before any data or TensorFlow: a flag that does nothing here, an empty path,
a value that is wrong with another, a resume whose flags differ from its run. Each is one line
(UsageError) that names what the user gave, in the command line's words."""
import dataclasses
import json
import re
import types

import tae_config
import tae_flags
from tae_config import ConfigError
from tae_files import RunFolder, UsageError


def config_error(e):
    return UsageError(f"{tae_flags.flag_of(e.field)} {flag_words(e.detail)}")


def flag_words(text):
    """A config message in the command line's words: the fields it names as their flags ("needs loss
    masked_mse" -> "needs --loss masked_mse", "gaussian_noise" -> "--gaussian-noise")."""
    for flag in tae_flags.flags():
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
    variants = [types.SimpleNamespace(**{**values, **o}) for o in tae_config.COMPARE.values()] if compare else [model]
    fields = {f.field for f in given}
    found = [tae_flags.inert(v, run, fields) for v in variants]
    if found and all(found):
        flag, needs = found[0]
        raise UsageError(f"{flag} does nothing here: it applies only with {needs}; drop it or add that")


PATHS = ("out", "data_dir", "test_file", "dataset", "encode", "reconstruct", "to", "init_from", "init_map")  # files


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


def complete(out, saved, run, command="python train.py"):
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
            further = f"to train it further: {command} --out {out} --resume --epochs N, with N above {run.epochs}"
        print(f"{out} is complete ({run.epochs} epochs); {further}")
        return True
    return False


def refuse_use_flags(args, given):
    """What --encode, --reconstruct, --recommend and --export cannot go with; returns the outputs asked
    for (encode, reconstruct)."""
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
    return whats


def read_init_map(path):
    """--init-map's JSON object {name in the checkpoint: name in the model}, or None without one."""
    if path is None:
        return None
    try:
        with open(path) as f:
            mapping = json.load(f)
    except (OSError, ValueError) as e:
        raise UsageError(f"--init-map {path} cannot be read as JSON ({getattr(e, 'strerror', None) or e}); give a file "
                         'like {"old/weights": "encoder/layer_0/kernel"}') from None
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise UsageError(f"--init-map {path} must hold one JSON object of names to names, like "
                         '{"old/weights": "encoder/layer_0/kernel"}')
    return mapping

