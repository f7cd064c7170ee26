"""The ratings task: collaborative filtering, the asker's own use (MovieLens 100K's folds, or a user's
ratings file). The ratings are read strictly and kept sparse (tae_ratings); the validation ratings
are carved from the training ones; the training ratings become a CSR matrix of items (I-AutoRec)
or users (DeepRecommender) that the graph holds; the defaults are RATINGS_DEFAULTS; a run is scored
by the RMSE and MAE of held-out ratings predicted from the training ratings alone, against the
global mean and the user and item biases, and writes predictions.csv.
"""
import dataclasses

import numpy as np

import tae_config
import tae_figures
import tae_files
import tae_ratings
import tae_ratings_matrix
from tae_config import RATINGS_EPOCHS, RATINGS_HIDDEN, AEConfig, ConfigError
from tae_files import UsageError


class RatingsTask:
    """What train.py does with ratings (the Task protocol: tae_tasks)."""

    name = "ratings"
    presets = ("question",)  # hinton's net is for 28x28 images

    model_values = staticmethod(tae_config.ratings_model_values)

    @staticmethod
    def handles(dataset):
        return tae_config.is_ratings(dataset)

    @staticmethod
    def load(model, model_values, run):
        """(model, run, ds) of a ratings run: the ratings read, the validation ratings carved out, the
        training ratings arranged in the run's orientation (tae_ratings_matrix.RatingsSet)."""
        data = tae_ratings.load(run)
        if model is None:
            run = ratings_validation(run, len(data.train))
        tae_ratings.split_validation(data, run.validation)
        ds = tae_ratings_matrix.arrange(data, run.orientation)
        if model is None:
            model, run = resolve_ratings(model_values, run, ds.width, ds.rows)
        elif model.dims[0] != ds.width:
            raise UsageError(f"the ratings in {data.source} give {ds.width} columns, not the run's {model.dims[0]}; "
                             "they changed since the run started: start a new run")
        return model, run, ds

    @staticmethod
    def record(ds):
        """config.json's part for this kind: the rating scale, and where it came from."""
        return {"rating_scale": list(ds.data.scale), "rating_scale_from": ds.data.scale_from}

    @staticmethod
    def graph_input(ds):
        """(what tf1_input.load puts in the graph, number of examples, build's keywords): the training
        CSR matrix and its number of stored values."""
        return ds.train, ds.rows, {"nnz": len(ds.matrix.values)}

    @staticmethod
    def release(ds):
        pass  # predictions read the training rows from the NumPy matrix: it stays

    @staticmethod
    def baselines(model, ds):
        """The global mean and the bias model (tae_ratings_matrix.baselines; the bias model is ds.fallback)."""
        return tae_ratings_matrix.baselines(ds.data, ds.fallback)

    @staticmethod
    def scoring(model, ds, baselines):
        return RatingScoring(model, ds, baselines)

    @staticmethod
    def compare_table(ds, baselines):
        """--compare's figure, its label, the baselines' rows and the table's columns."""
        levels = {k: {"test_rmse": v["rmse"], "test_mae": v["mae"], "trainable_params": v["parameters"]}
                  for k, v in baselines.items()}
        return ("test_rmse", "test RMSE", levels, (("test rmse", "test_rmse", ".4f"), ("test mae", "test_mae", ".4f")))

    @staticmethod
    def refuse_use(out, saved, whats, recommend):
        if whats:
            raise UsageError(f"--{whats[0]} takes images or arrays; {out} is a ratings run: use --recommend USER")


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
    rows the number of examples. RATINGS_DEFAULTS where a field is not given, and the path
    (tae_config.ratings_model_values)."""
    model = AEConfig(**{"dims": (width, RATINGS_HIDDEN), **tae_config.ratings_model_values(model_values)})
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
    tied = tae_config.default_tied_epochs(epochs, model.mode, run.tied_epochs)
    run = dataclasses.replace(run, epochs=epochs, tied_epochs=tied)
    if run.batch_size > rows:
        raise ConfigError("batch_size", f"must be between 1 and the {rows} {run.orientation}s with training ratings "
                                        f"(the examples with --orientation {run.orientation}); got {run.batch_size}")
    return model, run


class RatingScoring:
    """How a ratings run is scored (tae_ratings_matrix.RatingsSet): each epoch, the RMSE and MAE of the
    predictions for the validation and test ratings, made from the training ratings alone
    (tae_ratings_matrix.predict_parts; cold ratings get the bias model's prediction); at the end
    predictions.csv, and the global-mean and bias baselines on the same test ratings."""

    selection = "validation_rmse"
    shown = ("validation_rmse", "test_rmse")

    def __init__(self, cfg, ds, baselines):
        self.cfg, self.ds, self.baselines = cfg, ds, baselines

    def predictions(self, head, run, parts):
        """The model's predictions of each of `parts` (tae_ratings_matrix.predict_parts): with a sparse head,
        the outputs at the asked pairs alone, from the rows' ratings; else whole reconstructed rows."""
        ds = self.ds
        if head.sparse is not None:
            def score(rows, at_rows, at_columns):
                return run(head.sparse.predictions, {head.sparse.input: ds.matrix.sparse(rows),
                                                     head.sparse.pairs: np.stack([at_rows, at_columns], axis=1)})
        else:
            score = tae_ratings_matrix.dense_scorer(lambda rows: run(head.reconstruction, rows), ds.matrix)
        return tae_ratings_matrix.predict_parts(score, ds.matrix, ds.idx, parts, ds.orientation, ds.data.scale, ds.fallback)

    def epoch(self, head, run):
        data, record = self.ds.data, {}
        parts = {p: d for p, d in (("validation", data.validation), ("test", data.test)) if d is not None and len(d)}
        for (part, ratings), (predicted, _) in zip(parts.items(), self.predictions(head, run, list(parts.values()))):
            record.update({f"{part}_{k}": v for k, v in tae_ratings_matrix.errors(predicted, ratings).items()})
        return record

    def final(self, head, run, training_rows, folder):
        """(figures for metrics.json's final, the final line's text); predictions.csv in the run folder."""
        data = self.ds.data
        [(predicted, usable)] = self.predictions(head, run, [data.test])
        write_predictions(folder.path(tae_files.PREDICTIONS), data.test, predicted, usable)
        found = tae_ratings_matrix.errors(predicted, data.test)
        cold = int((~usable).sum())
        figures = {"test_rmse": found["rmse"], "test_mae": found["mae"], "test_ratings": len(data.test),
                   "cold_test_ratings": cold}
        origin = {"MovieLens": "MovieLens'", "stated": "stated by --rating-scale",
                  "implied": "the training ratings' lowest and highest: --rating-scale states it"}[data.scale_from]
        return figures, (f"test RMSE {found['rmse']:.4f}, MAE {found['mae']:.4f} over {len(data.test)} ratings "
                         f"({cold} cold: the bias model's prediction), rating scale {data.scale[0]:g} to "
                         f"{data.scale[1]:g} ({origin}){self.against_baselines()}; "
                         f"predictions.csv written")

    def baseline_levels(self):
        """{label: test RMSE} of the run's baselines (tae_ratings_matrix.baselines)."""
        return {label: row["rmse"] for label, row in (self.baselines or {}).items()}

    def against_baselines(self):
        return "".join(f"; {label} {value:.4f}" for label, value in self.baseline_levels().items())

    def curves(self, history, folder, marks):
        """curves.png: the training loss's root (the RMSE of the training batches) and the validation
        and test RMSE per epoch, against the baselines' test RMSE (dashed)."""
        cfg = self.cfg
        series = {f"train: root of the {cfg.loss}": [(m["epoch"], float(np.sqrt(m["train_loss"]))) for m in history]}
        for part in ("validation", "test"):
            if history and f"{part}_rmse" in history[0]:
                series[f"{part} RMSE"] = [(m["epoch"], m[f"{part}_rmse"]) for m in history]
        references = {f"{label} (test RMSE)": value for label, value in self.baseline_levels().items()}
        tae_files.write_bytes(folder.path(tae_files.CURVES), tae_figures.curves_png(series, "RMSE",
                                f"{cfg.mode} {'-'.join(map(str, cfg.dims))} on {self.ds.name}, {self.ds.orientation}-based",
                                references=references, marks=marks))


def write_predictions(path, ratings, predictions, usable, block=100_000):
    """predictions.csv, written whole or not at all: user, item, rating, prediction, cold (1: the
    user or the item has no training rating; the prediction is the bias model's). Formatted `block`
    lines at a time: a Netflix-sized test set's lines are never all in memory as strings."""
    def write(f):
        f.write(b"user,item,rating,prediction,cold\n")
        for start in range(0, len(predictions), block):
            part = slice(start, start + block)
            f.write("".join(f"{u},{i},{r:g},{p:.4f},{0 if ok else 1}\n" for u, i, r, p, ok in zip(
                ratings.users[part].tolist(), ratings.items[part].tolist(), ratings.values[part].tolist(),
                predictions[part].tolist(), usable[part].tolist())).encode())

    tae_files.atomic_write(path, write)
