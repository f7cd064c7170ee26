"""The images task: rows of numbers in [0, 1] (MNIST, Fashion-MNIST, scikit-learn's digits, a user's
.npy or .npz), the question's own kind of data. It loads them (tae_data), holds out the validation
examples, resolves the run's defaults from the data (the question's layer-size rule from the image
shape; 10 or 200 epochs by size), and scores a run by the sum of squared errors per image against
the mean image and PCA, with recon.png, codes.png and the codes' 5-NN accuracy where there are labels.
"""
import dataclasses
import os

import numpy as np

import tae_config
import tae_data
import tae_figures
import tae_files
from tae_config import AEConfig, ConfigError
from tae_files import UsageError


class ImagesTask:
    """What train.py does with image data (the Task protocol: tae_tasks)."""

    name = "images"
    presets = ("question", "hinton")  # the --preset names that apply (tae_config.PRESETS)

    @staticmethod
    def model_values(given):
        """AEConfig's fields from the given flags: AEConfig's own defaults elsewhere."""
        return dict(given)

    @staticmethod
    def handles(dataset):
        return not tae_config.is_ratings(dataset)

    @staticmethod
    def load(model, model_values, run):
        """(model, run, ds) of an image run: a new run's configs resolved from the data (model None and
        its given fields in model_values), the validation split made, the data checked against them."""
        ds = tae_data.load(run.dataset, run.data_dir)
        if model is None:
            model, run = resolve(model_values, run, ds.image_shape, ds.test.shape[1], len(ds.train), ds.name)
        tae_data.split_validation(ds, run.validation)
        tae_data.validate(ds, model.dims[0], model.output_activation == "sigmoid" or model.loss == "xent")
        return model, run, ds

    @staticmethod
    def record(ds):
        """config.json's part for this kind: the training data's range (what --encode accepts)."""
        return {"data_range": [float(ds.train.min()), float(ds.train.max())]} if ds.train is not None else {}

    @staticmethod
    def graph_input(ds):
        """(what tf1_input.load puts in the graph, number of examples, build's keywords): the training
        array, and the images' shape (for --shift)."""
        return ds.train, len(ds.train), {"image_shape": ds.image_shape}

    @staticmethod
    def release(ds):
        ds.train = None  # the graph's copy is the one the run uses: the array is held once

    @staticmethod
    def baselines(model, ds):
        """The mean training image and PCA with as many components as the code (tae_data.baselines);
        the PCA fit stays with the data (ds.pca) for the codes' 5-NN report."""
        ds.pca = tae_data.fit_pca(ds.train, model.dims[-1])
        return tae_data.baselines(ds.train, ds.test, model.dims[-1], fit=ds.pca)

    @staticmethod
    def scoring(model, ds, baselines):
        return ImageScoring(model, ds, baselines)

    @staticmethod
    def compare_table(ds, baselines):
        """--compare's figure, its label, the baselines' rows and the table's columns."""
        return ("test_sse_per_image", "test sum of squared errors per image", tae_data.baseline_rows(baselines, ds),
                (("test mse", "test_mse", ".5f"), ("sse/image", "test_sse_per_image", ".3f")))

    @staticmethod
    def read_rows(path, width, data_range):
        """A .npy or .npz of rows for a trained model (--encode, --reconstruct), as the run read its data
        (uint8 divided by 255), checked: the model's width, finite values, within the run's data range."""
        path = os.path.abspath(path)
        if not os.path.isfile(path) or not path.endswith((".npy", ".npz")):
            raise UsageError(f"{path} is not a .npy or .npz file; give an array of examples, N x {width}")
        try:
            data = tae_data.load_user_array(path, split=False).train
        except tae_files.DataError as e:
            raise UsageError(str(e)) from None
        if data.shape[1] != width:
            raise UsageError(f"{path} has {data.shape[1]} values per example; the run's model takes {width}")
        if not np.isfinite(data).all():
            raise UsageError(f"{path} holds NaN or infinite values; clean the data first")
        if data_range is not None:
            low, high = data_range
            if data.min() < low or data.max() > high:
                raise UsageError(f"{path} has values in [{data.min():g}, {data.max():g}], outside the run's training "
                                 f"data range [{low:g}, {high:g}]; scale it as the training data was")
        return data

    @staticmethod
    def refuse_use(out, saved, whats, recommend):
        if recommend:
            raise UsageError(f"--recommend takes a ratings run; {out} was trained on images ({saved.get('data_source')})")


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
    if model.shift and image_shape is None:
        raise ConfigError("shift", f"moves images, and these examples of {width} values have no height and width "
                                   "(not a square, not N x H x W): give images, or drop --shift")
    if model.shift and model.shift >= min(image_shape):
        raise ConfigError("shift", f"must be below the images' height and width ({image_shape[0]} x {image_shape[1]}); "
                                   f"got {model.shift}")
    epochs = run.epochs if run.epochs is not None else (10 if num_examples >= 20000 else 200)
    tied = tae_config.default_tied_epochs(epochs, model.mode, run.tied_epochs)
    validation = run.validation if run.validation is not None else default_validation(dataset_name, num_examples)
    run = dataclasses.replace(run, epochs=epochs, tied_epochs=tied, validation=validation)
    check(model, run, num_examples)
    return model, run


def evaluate(run, head, data, chunk=2000):
    """(mean loss, mean sum of squared errors per example) of `head` over `data`, in chunks;
    run(fetches, rows) evaluates the model's tensors on rows."""
    loss = sse = 0.0
    for i in range(0, len(data), chunk):
        part = data[i : i + chunk]
        l, s = run([head.loss, head.sse], part)
        loss += float(l) * len(part)
        sse += float(np.sum(s, dtype=np.float64))
    return loss / len(data), sse / len(data)


def project_codes(train_codes, test_codes):
    """The test codes on the first two principal components of the training codes (float64)."""
    mean = train_codes.mean(axis=0, dtype=np.float64)
    return (test_codes - mean) @ tae_data.top_directions((train_codes - mean).T @ (train_codes - mean), 2)


class ImageScoring:
    """How an image run is scored: the loss and the sum of squared errors per image on the validation
    and test arrays each epoch; at the end recon.png, codes.png and the 5-NN figures (with labels),
    and the mean and PCA baselines (tae_data.baselines)."""

    selection = "validation_sse_per_image"
    shown = ("validation_loss", "validation_sse_per_image", "test_loss", "test_sse_per_image")

    def __init__(self, cfg, ds, baselines):
        self.cfg, self.ds, self.baselines = cfg, ds, baselines

    def epoch(self, head, run):
        """The epoch's figures: run(fetches, rows) evaluates the model's tensors on rows."""
        record = {}
        for part, data in (("validation", self.ds.validation), ("test", self.ds.test)):
            if data is not None:
                loss, sse = evaluate(run, head, data)
                record.update({f"{part}_loss": loss, f"{part}_mse": sse / self.cfg.dims[0],
                               f"{part}_sse_per_image": sse})
        return record

    def final(self, head, run, training_rows, folder):
        """(figures for metrics.json's final, the final line's text); recon.png and codes.png in the
        run folder. training_rows(fetch): the fetch over the training set held in the graph, by batch."""
        ds, cfg = self.ds, self.cfg
        test_loss, sse = evaluate(run, head, ds.test)
        if ds.image_shape:
            recon = run(head.reconstruction, ds.test[:10])
            tae_files.write_bytes(folder.path(tae_files.RECON),
                                  tae_figures.reconstructions_png(ds.test[:10], recon, ds.image_shape))
        figures = {"test_loss": test_loss, "test_mse": sse / cfg.dims[0], "test_sse_per_image": sse}
        codes = self.codes_report(head, run, training_rows, folder)
        if codes:
            figures["knn5_accuracy"] = codes
        knn = f"; 5-NN accuracy on the codes {codes['codes']:.4f}" if codes else ""
        if codes and codes["pca"] is not None:
            knn += f", on PCA-{codes['pca_components']} {codes['pca']:.4f}"
        return figures, (f"test mse {sse / cfg.dims[0]:.5f}{self.against_baselines()}; "
                         f"test sum of squared errors per image {sse:.3f}{knn}")

    def codes_report(self, head, run, training_rows, folder):
        """With class labels: codes.png (the test codes, or their first two principal components,
        beside PCA's first two components of the same images) and the test accuracy of a 5-nearest-
        neighbour classifier on the codes and on PCA with as many components, both fitted on the
        training set. Returns {"codes", "pca", "pca_components"}, or None without labels. Above
        tae_data.PCA_MAX_DIM values per example PCA is left out, as in the baselines ("pca": None)."""
        ds, cfg = self.ds, self.cfg
        if ds.train_labels is None or ds.test_labels is None or not len(ds.test):
            return None
        import sklearn  # here: --help answers without scikit-learn
        from sklearn.neighbors import KNeighborsClassifier

        def score(train, test):  # distances in chunks of 64 MB (scikit-learn's default allows 1 GB)
            with sklearn.config_context(working_memory=64):
                return float(KNeighborsClassifier(5).fit(train, ds.train_labels).score(test, ds.test_labels))

        test_codes = np.concatenate([run(head.code, ds.test[i : i + 4096]) for i in range(0, len(ds.test), 4096)])
        train_codes = np.concatenate(training_rows(head.code))
        result = {"codes": score(train_codes, test_codes), "pca": None, "pca_components": None}
        what = "the 2-value codes" if cfg.dims[-1] == 2 else f"the first 2 principal components of the {cfg.dims[-1]}-value codes"
        shown = test_codes if cfg.dims[-1] == 2 else project_codes(train_codes, test_codes)
        panels = {f"{cfg.mode} autoencoder: {what}\n(5-NN accuracy on all {cfg.dims[-1]}: {result['codes']:.3f})": shown}
        if ds.pca is not None:  # the baselines' fit (none above tae_data.PCA_MAX_DIM values per example)
            mean, top = ds.pca
            k = top.shape[1]
            train_pca = np.concatenate([(rows - mean) @ top for rows in training_rows(None)])
            test_pca = (ds.test - mean) @ top
            result.update(pca=score(train_pca, test_pca), pca_components=k)
            panels[f"PCA: the first 2 components of the images\n(5-NN accuracy on PCA-{k}: {result['pca']:.3f})"] = \
                test_pca[:, :2]
        tae_files.write_bytes(folder.path(tae_files.CODES), tae_figures.codes_png(panels, ds.test_labels))
        return result

    def baseline_levels(self):
        """{label: test MSE} of the run's baselines (tae_data.baselines), PCA first."""
        rows = tae_data.baseline_rows(self.baselines, self.ds) if self.baselines else {}
        return {label: row["test_mse"] for label, row in rows.items()}

    def against_baselines(self):
        return "".join(f"; {label} {value:.5f}" for label, value in self.baseline_levels().items())

    def curves(self, history, folder, marks):
        """curves.png: the loss per epoch, and the test MSE against the baselines' (dashed)."""
        cfg = self.cfg
        series = {f"train {cfg.loss}": [(m["epoch"], m["train_loss"]) for m in history]}
        for part in ("validation", "test"):
            if history and f"{part}_loss" in history[0]:
                series[f"{part} {cfg.loss}"] = [(m["epoch"], m[f"{part}_loss"]) for m in history]
                if cfg.loss != "mse":
                    series[f"{part} mse"] = [(m["epoch"], m[f"{part}_mse"]) for m in history]
        references = {f"{label} (test mse)": value for label, value in self.baseline_levels().items()}
        tae_files.write_bytes(folder.path(tae_files.CURVES), tae_figures.curves_png(series, "loss per value",
                                f"{cfg.mode} {'-'.join(map(str, cfg.dims))} on {self.ds.name}", references=references,
                                marks=marks))
