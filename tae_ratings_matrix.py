"""Ratings arranged for the autoencoder (no TensorFlow): the index of the users and items that
have training ratings, the bias model (global mean, user and item biases) that predicts the cold
ratings and is the baseline to beat, the error measures, the training ratings as a CSR matrix in
one orientation (rows are the examples), and the scoring of any rating set from the model's
outputs at its pairs. Reading and checking the files is tae_ratings'.
"""
import dataclasses
from typing import NamedTuple, Tuple

import numpy as np

from tae_ratings import RatingsData


class Index(NamedTuple):
    """Dense numbers for the users and items that have training ratings."""

    user_ids: np.ndarray  # dense index -> file id, sorted
    item_ids: np.ndarray

    def lookup(self, ratings):
        """(user index, item index, known) for each rating; unknown ids get index 0 and known False."""
        u = np.searchsorted(self.user_ids, ratings.users).clip(0, len(self.user_ids) - 1)
        i = np.searchsorted(self.item_ids, ratings.items).clip(0, len(self.item_ids) - 1)
        known_u, known_i = self.user_ids[u] == ratings.users, self.item_ids[i] == ratings.items
        return u, i, known_u, known_i


def index(train):
    return Index(np.unique(train.users), np.unique(train.items))


def biases(train, reg_user=15.0, reg_item=10.0, sweeps=10, idx=None):
    """Global mean and regularised user and item biases by alternating least squares (Koren 2010,
    section 2.1; scikit-surprise's BaselineOnly defaults): (mean, idx, b_u, b_i), b_u[k] the bias of
    user idx.user_ids[k], b_i likewise. idx: `index(train)`, if made already."""
    idx = index(train) if idx is None else idx
    u, i = (np.searchsorted(ids, of).astype(np.int32) for ids, of in ((idx.user_ids, train.users),
                                                                      (idx.item_ids, train.items)))
    mu = float(train.values.mean(dtype=np.float64))
    b_u, b_i = np.zeros(len(idx.user_ids)), np.zeros(len(idx.item_ids))
    n_u, n_i = np.bincount(u, minlength=len(b_u)), np.bincount(i, minlength=len(b_i))
    r = train.values.astype(np.float64) - mu
    for _ in range(sweeps):  # users first, as scikit-surprise's baseline_als; one float64 temporary a rating
        t = b_i[i]
        b_u = np.bincount(u, np.subtract(r, t, out=t), len(b_u)) / (reg_user + n_u)
        t = b_u[u]
        b_i = np.bincount(i, np.subtract(r, t, out=t), len(b_i)) / (reg_item + n_i)
    return mu, idx, b_u, b_i


def bias_predictions(model, ratings, scale):
    """Predictions of the bias model for `ratings` (an unknown user or item contributes 0), clipped."""
    mu, idx, b_u, b_i = model
    u, i, known_u, known_i = idx.lookup(ratings)
    return np.clip(mu + np.where(known_u, b_u[u], 0.0) + np.where(known_i, b_i[i], 0.0), *scale)


def errors(predictions, ratings):
    """{"rmse", "mae"} of predictions against the ratings' values."""
    diff = np.asarray(predictions, np.float64) - ratings.values
    return {"rmse": float(np.sqrt(np.mean(diff ** 2))), "mae": float(np.mean(np.abs(diff)))}


def baselines(data, model=None):
    """The global mean and the bias model (`biases(data.train)` unless given) on data's test
    ratings: {name: {rmse, mae, parameters}}."""
    model = model or biases(data.train)
    mean = model[0]  # the training ratings' mean, as biases() takes it
    _, idx, b_u, b_i = model
    return {"global mean": dict(errors(np.full(len(data.test), mean), data.test), parameters=1),
            "user and item biases": dict(errors(bias_predictions(model, data.test, data.scale), data.test),
                                         parameters=1 + len(b_u) + len(b_i))}


# orientation item: rows are items (I-AutoRec); user: rows are users (DeepRecommender)


class Matrix(NamedTuple):
    """The training ratings as a sparse CSR matrix, one row per item (or user): what the model is fed."""

    indptr: np.ndarray  # [rows + 1] int64
    columns: np.ndarray  # [nnz] int32 (as the graph's copy: tf1_input)
    values: np.ndarray  # [nnz] float32
    shape: Tuple[int, int]

    def dense(self, rows):
        """Rows `rows` as a dense [len(rows), columns] float32 array, 0 where unrated."""
        out = np.zeros((len(rows), self.shape[1]), np.float32)
        for k, r in enumerate(rows):
            lo, hi = self.indptr[r], self.indptr[r + 1]
            out[k, self.columns[lo:hi]] = self.values[lo:hi]
        return out

    def sparse_positions(self, rows):
        """The positions in columns/values of rows' stored values, row by row."""
        rows = np.asarray(rows)
        starts, counts = self.indptr[rows], self.indptr[rows + 1] - self.indptr[rows]
        return np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())

    def sparse(self, rows):
        """Rows `rows` as (indices [k, 2] int64: (position in rows, column), values [k], shape):
        what a tf.SparseTensor placeholder takes; row-major, columns sorted."""
        rows = np.asarray(rows)
        at = self.sparse_positions(rows)
        indices = np.stack([np.repeat(np.arange(len(rows)), self.indptr[rows + 1] - self.indptr[rows]),
                            self.columns[at]], axis=1)
        return indices.astype(np.int64), self.values[at], (len(rows), self.shape[1])


def dense_scorer(reconstruct, train_matrix):
    """predict_parts' score from a whole-row reconstruction ([n, columns] -> [n, columns])."""
    return lambda rows, at_rows, at_columns: reconstruct(train_matrix.dense(rows))[at_rows, at_columns]


def positions(idx, ratings, orientation):
    """(row, column, usable) of each rating in the matrix of `orientation`; usable is False for a
    rating whose user or item has no training rating (cold: the model has no input for it)."""
    u, i, known_u, known_i = idx.lookup(ratings)
    rows, cols = (i, u) if orientation == "item" else (u, i)
    return rows, cols, known_u & known_i


def matrix(ratings, idx, orientation):
    """The CSR matrix of training `ratings` in `orientation` (every rating must be known to idx)."""
    row_ids, col_ids = (idx.item_ids, idx.user_ids) if orientation == "item" else (idx.user_ids, idx.item_ids)
    row_of, col_of = (ratings.items, ratings.users) if orientation == "item" else (ratings.users, ratings.items)
    shape = (len(row_ids), len(col_ids))
    # one int64 code a rating, row * columns + column, built in place: sorting it orders the ratings
    # row by row and each row's columns ascending (what lexsort((cols, rows)) gives, in less memory)
    code = np.searchsorted(row_ids, row_of)
    if len(code) and (code.max() >= shape[0] or not np.array_equal(row_ids[code], row_of)):
        raise ValueError("matrix() takes the training ratings that the index was made from")
    column = np.searchsorted(col_ids, col_of)
    if len(column) and (column.max() >= shape[1] or not np.array_equal(col_ids[column], col_of)):
        raise ValueError("matrix() takes the training ratings that the index was made from")
    code *= shape[1]
    code += column
    del column
    order = np.argsort(code)
    code = code[order]
    values = ratings.values[order].astype(np.float32)
    del order
    indptr = np.concatenate([[0], np.cumsum(np.bincount(code // shape[1], minlength=shape[0]))]).astype(np.int64)
    return Matrix(indptr, (code % shape[1]).astype(np.int32), values, shape)


def predict_parts(score, train_matrix, idx, parts, orientation, scale, fallback, chunk=512):
    """Predictions for each of `parts` (rating sets: validation, test; their values are never read):
    the model's output for each usable rating, from its row of the *training* matrix, the rows taken
    a chunk at a time; cold ratings get `fallback` (the bias model's prediction). Clipped to the
    scale. score(rows, at_rows, at_columns) -> [q]: the model's outputs for the training matrix's
    `rows` at the pairs (at_rows[k] indexes rows) (`dense_scorer`, or a sparse one that computes
    only those outputs). Returns [(predictions, usable mask)] in the order of `parts`."""
    where = [positions(idx, ratings, orientation) for ratings in parts]
    out = [np.asarray(bias_predictions(fallback, ratings, scale), np.float64) for ratings in parts]
    by_row = []  # each part's usable ratings ordered by row, and those rows: a chunk's ratings are a slice
    for rows, _, usable in where:
        pick = np.flatnonzero(usable)
        pick = pick[np.argsort(rows[pick], kind="stable")]
        by_row.append((pick, rows[pick]))
    wanted = np.unique(np.concatenate([rows[usable] for rows, _, usable in where]))
    for start in range(0, len(wanted), chunk):
        part = wanted[start:start + chunk]  # sorted: every usable rating with a row in [first, last] is here
        takes = []
        for (rows, _, _), (pick, sorted_rows) in zip(where, by_row):
            lo, hi = np.searchsorted(sorted_rows, [part[0], part[-1] + 1])
            takes.append(pick[lo:hi])
        at_rows = np.concatenate([np.searchsorted(part, rows[take]) for (rows, _, _), take in zip(where, takes)])
        found = score(part, at_rows, np.concatenate([cols[take] for (_, cols, _), take in zip(where, takes)]))
        ends = np.cumsum([len(take) for take in takes])
        for predictions, take, values in zip(out, takes, np.split(found, ends[:-1])):
            predictions[take] = values
    return [(np.clip(p, *scale), usable) for p, (_, _, usable) in zip(out, where)]


@dataclasses.dataclass
class RatingsSet:
    """Ratings arranged for the autoencoder, what tae_runner trains on and scores: the training
    ratings as a CSR matrix in one orientation (rows are the examples), the index of the users and
    items that have training ratings, and the bias model that predicts the cold ratings."""

    name: str
    source: str
    data: RatingsData
    orientation: str
    idx: Index
    matrix: Matrix  # the training ratings: the model's only input, for training and for predictions
    fallback: tuple  # `biases(data.train)`

    @property
    def train(self):
        """(indptr, columns, values): what tf1_input.load puts in the graph."""
        return self.matrix.indptr, self.matrix.columns, self.matrix.values

    @property
    def width(self):
        return self.matrix.shape[1]

    def trained_items(self, user):
        """The item indices (idx.item_ids) that user index `user` rated in training, from the matrix."""
        m = self.matrix
        if self.orientation == "user":
            return m.columns[m.indptr[user]:m.indptr[user + 1]].astype(np.int64)
        return np.searchsorted(m.indptr, np.flatnonzero(m.columns == user), side="right") - 1  # the rows (items)

    @property
    def rows(self):
        return self.matrix.shape[0]


def arrange(data, orientation):
    """A RatingsSet of `data` (validation already carved out) in `orientation`; data.train is
    released (None): the matrix holds the training ratings."""
    idx = index(data.train)
    fallback = biases(data.train, idx=idx)
    m = matrix(data.train, idx, orientation)
    data.train = None  # from here the training ratings are held once, as the matrix (and in the graph)
    return RatingsSet(data.name, data.source, data, orientation, idx, m, fallback)
