"""Ratings for collaborative filtering, read strictly and kept sparse (no TensorFlow): MovieLens
100K's files and a user's own ratings file, checked line by line, and the validation part carved
from the training ratings. What the autoencoder is fed and scored with, and the baselines any
recommender must beat, are tae_ratings_matrix's.

A rating set is three parallel arrays, (user, item, rating), never a users x items matrix: memory
grows with the number of ratings. Ids are the file's own integers; tae_ratings_matrix.index numbers
the users and items that have training ratings 0..n-1, and a test rating whose user or item has
none is "cold" (no model can use it; it gets the stated fallback and is counted apart).
"""
import dataclasses
import pathlib
import re
import warnings
from typing import Dict, Optional, Tuple

import numpy as np

from tae_files import DataError

# Where MovieLens 100K is looked for when --data-dir is not given (it is never downloaded: its
# licence asks each user to fetch it from GroupLens).
LOCAL = (pathlib.Path("data/ml-100k"), pathlib.Path("ml-100k"))


@dataclasses.dataclass
class Ratings:
    """Parallel arrays: user and item ids (int64, the file's) and ratings (float32)."""

    users: np.ndarray
    items: np.ndarray
    values: np.ndarray

    def __len__(self):
        return len(self.values)

    def take(self, where):
        return Ratings(self.users[where], self.items[where], self.values[where])


@dataclasses.dataclass
class RatingsData:
    name: str
    train: Optional[Ratings]  # None once arrange() has made the matrix of it
    test: Ratings
    scale: Tuple[float, float]  # the lowest and highest rating the data allows
    source: str
    scale_from: str = "stated"  # how the scale was set: "MovieLens", "stated" (--rating-scale), "implied" (by the
    # lowest and highest training rating)
    titles: Dict[int, str] = dataclasses.field(default_factory=dict)  # item id -> title, when known
    validation: Optional[Ratings] = None


SEPARATORS = ("::", "\t", ";")  # a file's separator is the first of these its first rating line holds, else ',',
# else runs of spaces: one separator for the whole file, so a decimal comma is never taken for a column
READ_BLOCK = 1 << 20  # lines per np.loadtxt call of the fast reader
ENCODING = "utf-8-sig"  # UTF-8, a byte-order mark at the start understood (a spreadsheet's "CSV UTF-8")
_INTEGER = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def read_ratings(path, scale=None):
    """A ratings file: one rating a line, `user item rating` and anything after (MovieLens'
    timestamp), separated by tabs, commas, semicolons, '::' or spaces, one separator for the whole
    file; a first line that is not numeric is a header. Ids are integers, read exactly (to 2^63);
    a rating is a finite number that float32 holds. Returns Ratings; DataError, naming the line, for
    anything unusable: an id that is not an integer, a decimal comma, a rating outside `scale`, a
    rating of 0 (the model reads 0 as unrated), or a (user, item) pair rated twice (naming both
    lines: the program does not guess which one to keep).
    A clean file with a one-character separator or spaces is read by NumPy's parser (10 million
    ratings in seconds, never held as Python objects); anything else goes through the line-by-line
    reader, which names the line at fault. The two read the same values (tests/test_ratings.py)."""
    path = pathlib.Path(path)
    found = _read_fast(path, scale)
    ratings = found if found is not None else _read_lines(path, scale)[0]
    twice = repeated_pair(ratings)
    if twice is not None:
        first, second = line_numbers(path, scale)[list(twice)]
        raise DataError(f"{path} lines {first} and {second} both rate item {ratings.items[twice[0]]} by user "
                        f"{ratings.users[twice[0]]}; keep one of the two lines")
    return ratings


def separator(line):
    """The separator of a file whose first rating line is `line`: '::', a tab or ';' if it holds
    one; else ',' if it holds one, unless spaces split it into more fields than commas do ("1 2 3,5",
    a decimal comma); else None (runs of spaces)."""
    found = next((s for s in SEPARATORS if s in line), None)
    if found is None and "," in line and len(line.split(",")) >= min(3, len(line.split())):
        found = ","
    return found


def fields_of(line, sep):
    return [f.strip() for f in (line.split(sep) if sep else line.split())]


def _layout(path):
    """(separator, header lines: 0 or 1) from the file's first two non-blank lines; None if it has
    no line to read."""
    with open(path, encoding=ENCODING, errors="replace") as f:
        lines = []
        for line in f:
            if line.strip():
                lines.append(line.strip())
                if len(lines) == 2:
                    break
    if not lines:
        return None
    # a first line of names ("user,item,rating"); one that starts with a number is a rating, checked as any other
    header = int(not _NUMBER.fullmatch(fields_of(lines[0], separator(lines[0]))[0]))
    return separator(lines[min(header, len(lines) - 1)]), header


def line_numbers(path, scale=None):
    """The file's line number of each rating (the line reader's count: the error path only)."""
    return _read_lines(pathlib.Path(path), scale)[1]


def repeated_pair(ratings, other=None):
    """The first (user, item) pair rated twice, as the two ratings' positions (i, j), i < j; or, with
    `other`, the first pair rated in both (position in ratings, position in other). None if none."""
    if not _any_pair_twice([ratings] + ([other] if other is not None else [])):  # the common case, 8 bytes a rating
        return None
    users, items = ratings.users, ratings.items
    if other is not None:
        users, items = np.concatenate([users, other.users]), np.concatenate([items, other.items])
    order = np.lexsort((np.arange(len(users)), items, users))  # ties kept in file order
    same = (users[order][1:] == users[order][:-1]) & (items[order][1:] == items[order][:-1])
    if other is not None:
        same &= order[1:] >= len(ratings)  # one of each (each set alone has no pair twice)
        same &= order[:-1] < len(ratings)
    hits = np.flatnonzero(same)
    if not len(hits):
        return None
    i, j = sorted(order[[hits[0], hits[0] + 1]])
    return (int(i), int(j)) if other is None else (int(i), int(j) - len(ratings))


def _any_pair_twice(parts):
    """Whether some (user, item) pair occurs twice in `parts` (Ratings) taken together: the pairs as
    one int64 code each, written in place and sorted in place (the lexsort of repeated_pair needs
    several times the memory). True when the ids are too far apart to code."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return False
    u0, i0 = min(int(p.users.min()) for p in parts), min(int(p.items.min()) for p in parts)
    span_u = max(int(p.users.max()) for p in parts) - u0 + 1
    span_i = max(int(p.items.max()) for p in parts) - i0 + 1
    if span_u * span_i >= 2 ** 63:
        return True
    codes, start = np.empty(sum(len(p) for p in parts), np.int64), 0
    for p in parts:
        part = codes[start:start + len(p)]
        np.subtract(p.users, u0, out=part)
        part *= span_i
        part += p.items
        part -= i0
        start += len(p)
    codes.sort()
    return bool((codes[1:] == codes[:-1]).any())


def _shares_any(values, reference):
    """Whether any of `values` is in `reference` (np.isin(values, reference).any(), without sorting
    the two together: a sorted copy of the distinct reference values only)."""
    ref = np.unique(reference)
    if not len(ref) or not len(values):
        return False
    return bool((ref[np.searchsorted(ref, values).clip(0, len(ref) - 1)] == values).any())


def _read_fast(path, scale):
    """Ratings by np.loadtxt, or None when the file needs the line-by-line reader ('::', or anything
    loadtxt or the checks refuse: that reader then names the line). Ids are parsed as int64, exactly."""
    try:
        layout = _layout(path)
    except OSError:
        return None
    if layout is None or layout[0] == "::":
        return None
    sep, header = layout
    with open(path, "rb") as f:  # at most one rating a line: the arrays are filled in place, never regrown
        lines = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 24), b"")) + 1
    users, items, values = np.empty(lines, np.int64), np.empty(lines, np.int64), np.empty(lines, np.float32)
    row = np.dtype([("user", np.int64), ("item", np.int64), ("rating", np.float64)])
    count = 0
    try:
        with open(path, encoding=ENCODING) as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the empty read at the end; an empty file: the line reader says so
            warnings.simplefilter("error", DeprecationWarning)  # NumPy < 2 reads "12.0" as an int id with this warning
            for _ in range(header):
                f.readline()
            while True:  # a block of lines at a time
                table = np.loadtxt(f, delimiter=sep, usecols=(0, 1, 2), ndmin=1, dtype=row, comments=None,
                                   max_rows=READ_BLOCK, encoding=ENCODING)
                v = table["rating"]
                if not np.isfinite(v).all() or (np.abs(v) > _FLOAT32_MAX).any() or (v == 0).any() \
                        or (scale is not None and not ((v >= scale[0]).all() and (v <= scale[1]).all())):
                    return None
                users[count:count + len(v)], items[count:count + len(v)] = table["user"], table["item"]
                values[count:count + len(v)] = v
                count += len(v)
                if len(v) < READ_BLOCK:
                    break
    except (ValueError, IndexError, OSError, OverflowError, DeprecationWarning):
        return None
    if not count:
        return None
    return Ratings(users[:count], items[:count], values[:count])


def _read_lines(path, scale):
    try:
        layout = _layout(path)
        text = path.read_text(encoding=ENCODING, errors="replace")
    except OSError as e:
        raise DataError(f"cannot read ratings file {path} ({e.strerror or e}); check the path") from None
    sep = layout[0] if layout else None
    users, items, values, lines = [], [], [], []
    skipped = False
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = fields_of(line.strip(), sep)
        if len(fields) < 3:
            raise DataError(f"{path} line {number} has {len(fields)} column{'s' * (len(fields) != 1)}; each line "
                            "needs user, item and rating" + (f", separated by {_NAMES.get(sep, sep)} as the first "
                                                             "line is" if sep else ""))
        if not (_INTEGER.fullmatch(fields[0]) and _INTEGER.fullmatch(fields[1])):
            if not users and not skipped and layout[1]:  # the header line: the first non-blank one
                skipped = True
                continue
            raise DataError(f"{path} line {number}: user and item must be integer ids, written as whole numbers; got "
                            f"{fields[0]!r}, {fields[1]!r}")
        user, item = int(fields[0]), int(fields[1])
        if not all(-2 ** 63 <= i < 2 ** 63 for i in (user, item)):
            raise DataError(f"{path} line {number}: an id beyond 64 bits ({fields[0]}, {fields[1]}); number the users "
                            "and items below 2^63")
        values.append(_rating(path, number, fields[2], scale))
        users.append(user)
        items.append(item)
        lines.append(number)
    if not values:
        raise DataError(f"{path} has no ratings; give a file of user, item, rating lines")
    return Ratings(np.array(users, np.int64), np.array(items, np.int64), np.array(values, np.float32)), np.array(lines)


_NAMES = {"\t": "tabs", ";": "semicolons", ",": "commas", "::": "'::'"}


def _rating(path, number, text, scale):
    """A rating field as a float, or DataError naming the line."""
    if re.fullmatch(r"[+-]?\d+,\d+", text):
        raise DataError(f"{path} line {number}: the rating {text!r} has a decimal comma; write it with a point "
                        f"({text.replace(',', '.')})")
    if not _NUMBER.fullmatch(text):
        raise DataError(f"{path} line {number}: the rating {text!r} is not a number")
    value = float(text)
    if abs(value) > _FLOAT32_MAX:
        raise DataError(f"{path} line {number}: the rating {text} is beyond what float32 holds (about 3.4e38); give "
                        "ratings on their own scale, like 1 to 5")
    if scale is not None and not scale[0] <= value <= scale[1]:
        raise DataError(f"{path} line {number}: the rating {text} is outside the rating scale {scale[0]:g} to "
                        f"{scale[1]:g}; correct the line, or give a --rating-scale that includes it")
    if value == 0:  # the model's input has 0 for "unrated": a rating of 0 would be dropped without a word
        raise DataError(f"{path} line {number}: a rating of 0 cannot be told from 'unrated' (masked_mse learns "
                        "the non-zero entries only); shift the scale so that no rating is 0, or drop the line")
    return value


def read_titles(path):
    """MovieLens' u.item: `id|title|...`, Latin-1. {item id: title}."""
    titles = {}
    for line in pathlib.Path(path).read_text(encoding="latin-1").splitlines():
        parts = line.split("|")
        if len(parts) > 1 and parts[0].isdigit():
            titles[int(parts[0])] = parts[1]
    return titles


def load_movielens(folder, split="u1"):
    """MovieLens 100K's canonical split `split` (u1..u5: the five-fold cross-validation; ua, ub: ten
    ratings per user in the test part), ratings 1 to 5, with u.item's titles when present."""
    folder = pathlib.Path(folder)
    base, test = folder / f"{split}.base", folder / f"{split}.test"
    if not folder.is_dir():
        raise DataError(f"--data-dir {folder} is not a folder; give the ml-100k folder (with u.data, u1.base ... ub.test)")
    if not base.exists() or not test.exists():
        raise DataError(f"{folder} has no {base.name} and {test.name}; give the ml-100k folder (with u.data, "
                        "u1.base ... ub.test)")
    titles = read_titles(folder / "u.item") if (folder / "u.item").exists() else {}
    data = RatingsData(f"movielens-{split}", read_ratings(base, (1, 5)), read_ratings(test, (1, 5)), (1.0, 5.0),
                       str(folder), "MovieLens", titles)
    return check_overlap(data, base, test)


def load_user_ratings(path, test_path=None, scale=None, seed=0):
    """A user's ratings file, with its own test file or a seeded 10% of its ratings held out. scale:
    (lowest, highest) as the user states it (a rating outside it is refused, naming the line); None:
    the lowest and highest training rating, and the test file's ratings must lie within them."""
    ratings = read_ratings(path, scale)
    scale_from = "stated" if scale is not None else "implied"
    if scale is None:
        scale = (float(ratings.values.min()), float(ratings.values.max()))
    if test_path is not None:
        data = RatingsData("ratings", ratings, read_ratings(test_path, scale), scale, str(path), scale_from)
    else:
        if len(ratings) < 10:
            raise DataError(f"{path} has {len(ratings)} ratings; give at least 10 (a tenth is held out for testing)")
        order = np.random.RandomState(seed).permutation(len(ratings))
        cut = len(ratings) - len(ratings) // 10
        data = RatingsData("ratings", ratings.take(np.sort(order[:cut])), ratings.take(np.sort(order[cut:])), scale,
                           str(path), scale_from)
    return check_overlap(data, path, test_path)


def check_overlap(data, train_path, test_path=None):
    """Refuse a test file that rates a (user, item) pair the training file rates too (the model
    would be scored on what it was trained on), naming both lines; and a test set that shares no
    user and no item with the training ratings (nothing in it could be predicted but by the fallback)."""
    both = repeated_pair(data.train, data.test) if test_path is not None else None
    if both is not None:
        k, j = both
        raise DataError(f"{test_path} line {line_numbers(test_path, data.scale)[j]}: user {data.test.users[j]}'s "
                        f"rating of item {data.test.items[j]} is a training rating too ({train_path} line "
                        f"{line_numbers(train_path)[k]}); a test rating must not be trained on: remove one of the two")
    if not (_shares_any(data.test.users, data.train.users) or _shares_any(data.test.items, data.train.items)):
        test = f"the test ratings in {test_path}" if test_path is not None else f"the test ratings of {data.source}"
        raise DataError(f"{test} share no user and no item with the training ratings in {train_path}; check that "
                        "the two files belong together")
    return data


def load(run):
    """The ratings a RunConfig names: MovieLens 100K's `run.split` (from --data-dir or a LOCAL
    place), or a user's ratings file with its --test-file or a seeded tenth held out."""
    if run.dataset != "movielens":
        if not pathlib.Path(run.dataset).is_file():
            raise DataError(f"ratings file {run.dataset} does not exist; check the path given to --dataset")
        return load_user_ratings(run.dataset, run.test_file, run.rating_scale)
    if run.data_dir:
        return load_movielens(run.data_dir, run.split)
    for folder in LOCAL:
        if (folder / "u1.base").exists():
            return load_movielens(folder, run.split)
    raise DataError("MovieLens 100K was not found in ./data/ml-100k or ./ml-100k; download ml-100k.zip from "
                    "https://grouplens.org/datasets/movielens/100k/, unzip it and give --data-dir ml-100k")


def split_validation(data, count, seed=0):
    """Carve `count` seeded training ratings out as data.validation (every choice is made on them;
    the test ratings choose nothing). A fraction below 1 is taken as a share of the ratings.
    data.train keeps the rest, its arrays cut in place one at a time, so that the ratings are never
    held twice."""
    if count:
        order = np.random.RandomState([seed, 7]).permutation(len(data.train))
        cut = int(round(len(order) * count)) if count < 1 else int(count)
        chosen = np.zeros(len(order), bool)
        chosen[order[:cut]] = True
        del order
        train, data.validation = data.train, data.train.take(chosen)
        data.train = None
        for field in ("users", "items", "values"):  # one array at a time: the ratings are never held twice
            setattr(train, field, getattr(train, field)[~chosen])
        data.train = train
    return data
