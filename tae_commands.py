"""What train.py does once its flags and data are checked (tae_cli): a run (the graph built, handed
to the stage runner, its SavedModel written), --compare (the question's code and every mode on the
same data), and the uses of a trained run (--encode, --reconstruct, --recommend, --export). Each is
handed the run's task (tae_tasks), chosen once by the command line.
"""
import dataclasses
import os

import tae_checks
import tae_config
import tae_export
import tae_figures
import tae_files
import tae_replica
import tae_runner
from tae_config import AEConfig, RunConfig
from tae_files import RunFolder


def config_record(task, model, run, ds, compare=False):
    """config.json: the configs, where the data came from, and the task's part (the data's range,
    what --encode accepts; or the rating scale)."""
    return {"model": dataclasses.asdict(model), "run": dataclasses.asdict(run), "compare": compare,
            "data_source": ds.source, **task.record(ds)}


def train_one(task, model, run, ds, out, log=print, keep_data=False, stop=None, baselines=None, progress=None,
              cluster=None, started=None):
    """Build the model's graph with its run and hand it to the stage runner, with the baselines of
    the data (the task's, computed here unless given); then write the run's export. progress: an
    object whose `exporting` names the run while its export is written (main words a stop by it).
    cluster (tae_cluster_args.ClusterArgs) and started (its (spec, server)): train as that cluster's
    chief, the graph a replica's (tae_replica), which the runner drives as it is handed it."""
    if baselines is None:
        baselines = task.baselines(model, ds)
    schedule, config = run.schedule(model), config_record(task, model, run, ds)
    kw = dict(log=log, stop=stop, keep_data=keep_data, baselines=baselines, patience=run.patience)
    init = dict(init_from=run.init_from, init_map=tae_checks.read_init_map(run.init_map)) if run.init_from else {}
    if cluster is not None:
        replica = tae_replica.build_replica(model, schedule, task, ds, cluster, started, full_rows=True,
                                            synchronous=run.sync_replicas, init=init)
        metrics = tae_runner.train(replica.ae, task, ds, out, config, replica=replica, **kw)
    else:
        metrics = tae_runner.build_and_train(model, schedule, task, ds, out, config, init=init, **kw)
    if progress is not None:
        progress.exporting = str(out)
    trained = tae_export.restore(out)  # the SavedModel, from the checkpoint the final figures describe
    with trained.sess:
        tae_export.export(trained, out)
    if progress is not None:
        progress.exporting = None
    return metrics


def compare(task, model, run, ds, out, log=print, progress=None):
    """The question's code and every mode on the same data, seed, batches and epochs."""
    folder = RunFolder(out)
    folder.write_config(config_record(task, model, run, ds, compare=True))
    results, curves = {}, {}
    baselines = task.baselines(model, ds)
    figure, label, levels, columns = task.compare_table(ds, baselines)
    for name, fields in tae_config.COMPARE.items():
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
            metrics = train_one(task, variant, sub, ds, str(place), log, keep_data=True, baselines=baselines,
                                progress=progress)
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


def use_run(task, args, saved, whats):
    """--encode, --reconstruct (whats), --recommend, --export on the trained run in --out, whose
    config.json is `saved` (its flags checked: tae_checks.refuse_use_flags)."""
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
        for what, target in tae_export.write_outputs(trained, rows, source, whats, args.to).items():
            print(f"wrote {target} ({tae_export.OUTPUTS[what]} of {getattr(args, what)}, by "
                  f"{os.path.basename(trained.checkpoint)})")
    if args.export:
        print(f"wrote {tae_export.export(trained, args.out)} (from {os.path.basename(trained.checkpoint)})")
    return 0
