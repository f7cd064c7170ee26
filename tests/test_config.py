"""tae_config and the flags generated from it: validation by field, defaults, the inert-flag rule,
resolution from the data, and the fact that none of it imports TensorFlow."""
import dataclasses
import subprocess
import sys

import pytest

import tae_checks
import tae_cli
import tae_config
import tae_flags
import tae_task_images
from conftest import ROOT
from tae_config import AEConfig, ConfigError, RunConfig


@pytest.mark.parametrize("cls, kwargs, field", [
    (AEConfig, dict(dims=(784,)), "dims"), (AEConfig, dict(dims=(10, 0)), "dims"),
    (AEConfig, dict(dims=(10, 2.5)), "dims"), (AEConfig, dict(dims=(10, -3)), "dims"),
    (AEConfig, dict(dims=5), "dims"), (AEConfig, dict(mode="transposed"), "mode"),
    (AEConfig, dict(activation="gelu"), "activation"), (AEConfig, dict(code_activation="x"), "code_activation"),
    (AEConfig, dict(loss="l1"), "loss"), (AEConfig, dict(init="xavier"), "init"),
    (AEConfig, dict(trainable="bias"), "trainable"), (AEConfig, dict(learning_rate=0), "learning_rate"),
    (AEConfig, dict(learning_rate=-1e-3), "learning_rate"), (AEConfig, dict(learning_rate=float("nan")), "learning_rate"),
    (AEConfig, dict(learning_rate=float("inf")), "learning_rate"),
    (AEConfig, dict(loss="xent", output_activation="linear"), "output_activation"),
    (AEConfig, dict(optimizer="rmsprop"), "optimizer"), (AEConfig, dict(lr_schedule="step"), "lr_schedule"),
    (AEConfig, dict(lr_decay_steps=10), "lr_decay_steps"),  # without cosine it would do nothing
    (AEConfig, dict(lr_schedule="cosine", lr_decay_steps=0), "lr_decay_steps"), (AEConfig, dict(seed=1.5), "seed"),
    (RunConfig, dict(epochs=-1), "epochs"), (RunConfig, dict(batch_size=0), "batch_size"),
    (RunConfig, dict(epochs=2, tied_epochs=3), "tied_epochs"), (RunConfig, dict(sync_every="batch"), "sync_every"),
    (RunConfig, dict(pretrain="dbn"), "pretrain"), (RunConfig, dict(pretrain_epochs=0), "pretrain_epochs"),
    (RunConfig, dict(rbm_lr=0.0), "rbm_lr"), (RunConfig, dict(rbm_weight_cost=-1.0), "rbm_weight_cost"),
    (RunConfig, dict(rbm_momentum=(0.5,)), "rbm_momentum"), (RunConfig, dict(rbm_momentum=(0.5, 1.5)), "rbm_momentum"),
    (RunConfig, dict(dataset=""), "dataset"), (RunConfig, dict(init_map="m.json"), "init_map"),
    (AEConfig, dict(mask_noise=1.0), "mask_noise"), (AEConfig, dict(mask_noise=-0.1), "mask_noise"),
    (AEConfig, dict(gaussian_noise=-1.0), "gaussian_noise"), (AEConfig, dict(weight_decay=float("nan")), "weight_decay"),
    (AEConfig, dict(code_dropout=1.0), "code_dropout"), (AEConfig, dict(hidden_dropout=True), "hidden_dropout"),
    (RunConfig, dict(validation=-1), "validation"), (RunConfig, dict(patience=0), "patience"),
])
def test_a_bad_field_is_named(cls, kwargs, field):
    with pytest.raises(ConfigError) as e:
        cls(**kwargs)
    assert e.value.field == field and str(e.value).startswith(field)


def test_configs_are_frozen_and_resolve_their_own_defaults():
    cfg = AEConfig(dims=[4, 2], loss="xent")
    assert cfg.dims == (4, 2) and cfg.output_activation == "sigmoid" and cfg.code_activation == "linear"
    assert AEConfig(activation="tanh", code_activation=None).code_activation == "tanh"  # None: as the hidden units
    assert AEConfig().output_activation == "linear"  # the question's linear output with mse
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.mode = "untied"
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().epochs = 3
    assert AEConfig(mode="tied", trainable="decoder").trainable == "decoder"  # the decoder biases alone
    assert RunConfig(rbm_momentum=[0.1, 0.2]).rbm_momentum == (0.1, 0.2)


A, R, RD = AEConfig(), RunConfig(), tae_config.RATINGS_DEFAULTS  # the values the help texts come from
FLAG_TABLE = {  # flag -> (owner field, the default its help states: the constants, formatted by hand)
    "--dims": ("dims", "the question's rule from the image size: 784,196,81,49 for 28x28, 64,16,4,4 for 8x8; "
                       f"ratings: the matrix's width,{tae_config.RATINGS_HIDDEN}"),
    "--mode": ("mode", f"{A.mode}; ratings: {RD['mode']}"),
    "--init": ("init", A.init), "--activation": ("activation", A.activation),
    "--code-activation": ("code_activation", f"{A.code_activation}; ratings: {RD['code_activation']}"),
    "--output-activation": ("output_activation", "linear with mse, sigmoid with xent"),
    "--loss": ("loss", f"{A.loss}; ratings: {RD['loss']}"), "--trainable": ("trainable", A.trainable),
    "--optimizer": ("optimizer", f"{A.optimizer}; ratings: {RD['optimizer']}"),
    "--lr": ("learning_rate", f"{A.learning_rate:g}; ratings: {RD['learning_rate']:g}"),
    "--lr-schedule": ("lr_schedule", f"{A.lr_schedule}; ratings: {RD['lr_schedule']}"),
    "--lr-decay-steps": ("lr_decay_steps", "all the run's training steps"),
    "--seed": ("seed", str(A.seed)), "--mask-noise": ("mask_noise", f"{A.mask_noise:g}; ratings: {RD['mask_noise']:g}"),
    "--gaussian-noise": ("gaussian_noise", f"{A.gaussian_noise:g}"),
    "--weight-decay": ("weight_decay", f"{A.weight_decay:g}; ratings: {RD['weight_decay']:g}"),
    "--code-dropout": ("code_dropout", f"{A.code_dropout:g}"),
    "--hidden-dropout": ("hidden_dropout", f"{A.hidden_dropout:g}"), "--dense-refeed": ("dense_refeed", "off"),
    "--shift": ("shift", "0"), "--warmup-steps": ("warmup_steps", "0"),
    "--sparse": ("sparse_input", "on for ratings with --optimizer lazyadam (their default), off otherwise"),
    "--dataset": ("dataset", R.dataset),
    "--data-dir": ("data_dir", "look in ./data/mnist, ./MNIST_data, ~/.keras/datasets; ./data/ml-100k, ./ml-100k"),
    "--split": ("split", R.split), "--test-file": ("test_file", "a seeded tenth of the ratings"),
    "--rating-scale": ("rating_scale", "the lowest and highest training rating (the final line and config.json say so)"),
    "--orientation": ("orientation", R.orientation),
    "--epochs": ("epochs", f"10 for MNIST-sized data, 200 for smaller sets; ratings: {tae_config.RATINGS_EPOCHS}"),
    "--batch-size": ("batch_size", str(R.batch_size)),
    "--validation": ("validation", "5000 for MNIST and Fashion-MNIST (55,000 train), a tenth of the training set otherwise"),
    "--patience": ("patience", "never"),
    "--tied-epochs": ("tied_epochs", "half of --epochs, rounded up"), "--sync-every": ("sync_every", R.sync_every),
    "--sync-replicas": ("sync_replicas", "off"),
    "--pretrain": ("pretrain", R.pretrain), "--pretrain-epochs": ("pretrain_epochs", str(R.pretrain_epochs)),
    "--rbm-lr": ("rbm_lr", f"{R.rbm_lr:g}"), "--rbm-lr-linear": ("rbm_lr_linear", f"{R.rbm_lr_linear:g}"),
    "--rbm-weight-cost": ("rbm_weight_cost", f"{R.rbm_weight_cost:g}"),
    "--rbm-momentum": ("rbm_momentum", ",".join(f"{m:g}" for m in R.rbm_momentum)),
    "--rbm-batch-size": ("rbm_batch_size", str(R.rbm_batch_size)),
    "--init-from": ("init_from", "none: --init"), "--init-map": ("init_map", "every model variable under its own name"),
}


def test_every_field_is_a_flag_whose_help_states_its_default(capsys):
    flags = {f.name: f for f in tae_flags.flags()}
    assert {n: f.field for n, f in flags.items()} == {n: field for n, (field, _) in FLAG_TABLE.items()}
    fields = {f.name for cls in (AEConfig, RunConfig) for f in dataclasses.fields(cls)}
    assert fields == {field for field, _ in FLAG_TABLE.values()}
    with pytest.raises(SystemExit):
        tae_cli.make_parser().parse_args(["--help"])
    text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, even inside words
    for name, (_, default) in FLAG_TABLE.items():
        metavar = "on|off" if flags[name].parse is tae_flags.parse_switch else name.lstrip('-').replace('-', '_').upper()
        assert f"{name}{metavar}" in text, name
        assert flags[name].help.endswith(f"(default: {default})"), name
        assert "".join(flags[name].help.split()) in text, name


def test_flags_parse_into_the_configs():
    args = tae_cli.make_parser().parse_args(["--dims", "64,8", "--lr", "0.01", "--rbm-momentum", "0.4,0.8",
                                             "--mode", "sync", "--sync-every", "epoch"])
    given = {f.field: v for f, v in tae_flags.given_flags(args).items()}
    assert given == {"dims": (64, 8), "learning_rate": 0.01, "rbm_momentum": (0.4, 0.8), "mode": "sync",
                     "sync_every": "epoch"}


@pytest.mark.parametrize("model, run, field, needs", [
    (dict(mode="tied"), dict(sync_every="epoch"), "sync_every", "--mode sync"),
    (dict(mode="untied"), dict(tied_epochs=1), "tied_epochs", "--mode tied-untied"),
    (dict(), dict(pretrain_epochs=3), "pretrain_epochs", "--pretrain rbm"),
    (dict(code_activation="sigmoid"), dict(pretrain="rbm", rbm_lr_linear=0.01), "rbm_lr_linear",
     "--code-activation linear"),
    (dict(init="snippet"), dict(pretrain="rbm"), "init", "no --pretrain"),
    (dict(), dict(dataset="digits", data_dir="/x"), "data_dir", "--dataset auto, mnist, fashion_mnist or movielens"),
    (dict(), dict(validation=0, patience=3), "patience", "a validation split"),
    (dict(dims=(64, 8)), dict(), "hidden_dropout", "hidden layers"),
])
def test_a_field_that_does_nothing_is_named(model, run, field, needs):
    m, r = AEConfig(**model), RunConfig(**run)
    flag, what = tae_flags.inert(m, r, {field})
    assert flag == tae_flags.flag_of(field) and needs in what
    assert tae_flags.inert(m, r, (tae_config.non_default(m) | tae_config.non_default(r)) - {field}) is None


def test_resolve_fills_the_data_dependent_defaults():
    model, run = tae_task_images.resolve({}, RunConfig(), (8, 8), 64, 1437)
    assert model.dims == (64, 16, 4, 4) and run.epochs == 200 and run.tied_epochs is None
    assert run.validation == 143
    model, run = tae_task_images.resolve({"mode": "tied-untied"}, RunConfig(epochs=5), (28, 28), 784, 60000)
    assert model.dims == (784, 196, 81, 49) and run.tied_epochs == 3
    assert tae_task_images.resolve({}, RunConfig(), (28, 28), 784, 60000)[1].epochs == 10
    # the validation split: TF1's 5,000 of MNIST's 60,000; a tenth elsewhere; as given; checked
    assert tae_task_images.resolve({}, RunConfig(), (28, 28), 784, 60000, "mnist")[1].validation \
        == 5000 == tae_task_images.resolve({}, RunConfig(), (28, 28), 784, 60000, "fashion_mnist")[1].validation
    assert tae_task_images.resolve({}, RunConfig(validation=0), (28, 28), 784, 60000, "mnist")[1].validation == 0
    with pytest.raises(ConfigError) as e:
        tae_task_images.resolve({}, RunConfig(validation=100), (8, 8), 64, 100)
    assert e.value.field == "validation"
    with pytest.raises(ConfigError) as e:  # 90 left for training: a batch of 95 cannot be drawn
        tae_task_images.resolve({}, RunConfig(batch_size=95), (8, 8), 64, 100)
    assert e.value.field == "batch_size"
    with pytest.raises(ConfigError, match="give --dims") as e:
        tae_task_images.resolve({}, RunConfig(), None, 10, 100)
    assert e.value.field == "dims"
    with pytest.raises(ConfigError) as e:
        tae_task_images.resolve({}, RunConfig(batch_size=200), (8, 8), 64, 100)
    assert e.value.field == "batch_size"
    with pytest.raises(ConfigError) as e:
        tae_task_images.resolve({"activation": "relu"}, RunConfig(pretrain="rbm", validation=0), (8, 8), 64, 100)
    assert e.value.field == "pretrain"


def test_flags_and_config_errors_import_no_tensorflow():
    """--help and a bad flag are answered before TensorFlow is imported (so they are fast)."""
    code = ("import sys, tae_cli; code = tae_cli.main(['--mode', 'tied', '--sync-every', 'epoch']); "
            "assert code == 2, code; tae_cli.main(['--lr', 'nan']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'sklearn')))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
    assert "--sync-every does nothing here: it applies only with --mode sync" in r.stderr
    assert "--lr must be a positive finite number; got nan" in r.stderr


def test_the_help_examples_are_valid_commands():
    """Each example in --help's epilog (continuation lines joined) parses and resolves on
    MNIST-shaped data; a changed default cannot leave an example that fails."""
    import shlex

    text = tae_cli.USAGE.split("exit codes:")[0].replace("\\\n", " ")
    examples = [line.split("python train.py", 1)[1] for line in text.splitlines() if "python train.py" in line]
    assert len(examples) >= 5
    for example in examples:
        args = tae_cli.make_parser().parse_args(shlex.split(example.split("   ")[0]))
        if args.resume:
            continue  # needs a run folder: test_train covers it
        given = tae_flags.given_flags(args)
        model_values, run = tae_config.early_configs(given, args.preset)
        tae_checks.refuse_inert(AEConfig(**model_values), run, given, args.compare)
        tae_task_images.resolve(model_values, run, (28, 28), 784, 60000)


def test_a_resume_names_what_the_run_has_in_the_flags_words():
    """on/off as typed, not True/False; a scale the training ratings implied, not None."""
    model = dataclasses.asdict(AEConfig(loss="masked_mse", sparse_input=True, optimizer="lazyadam"))
    run = dataclasses.asdict(RunConfig(dataset="/data/r.csv", epochs=3))
    saved = {"model": model, "run": run, "rating_scale": [1.0, 5.0], "rating_scale_from": "implied"}
    flags = {f.field: f for f in tae_flags.flags()}
    with pytest.raises(ConfigError) as e:
        tae_config.merge(saved, {flags["sparse_input"]: False, flags["rating_scale"]: (1.0, 5.0)}, "RUN")
    assert "--sparse off (run has on)" in str(e.value)
    assert "--rating-scale 1,5 (run has no --rating-scale: its scale, 1 to 5, was implied by its training ratings)" \
        in str(e.value)


def test_every_on_off_flag_says_so_in_help():
    text = " ".join(tae_cli.make_parser().format_help().split())
    switches = [f.name for f in tae_flags.flags() if f.parse is tae_flags.parse_switch]
    assert len(switches) == 3
    for name in switches:
        assert f"{name} on|off" in text, name
