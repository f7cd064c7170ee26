"""tae_ratings: ratings files read strictly, splits that never leak, and the bias baseline against
an exact least-squares solution and scikit-surprise's published figures on MovieLens 100K."""
import numpy as np
import pytest

import tae_config
import tae_ratings
import tae_ratings_matrix
from conftest import SHARED_DATA
from tae_data import DataError

ML100K = SHARED_DATA / "ml-100k"


def write(tmp_path, text, name="r.tsv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_tabs_commas_double_colons_and_a_header(tmp_path):
    for text in ("1\t10\t4\t881250949\n2\t10\t3.5\t1\n", "user,item,rating\n1,10,4\n2,10,3.5\n", "1::10::4::0\n2::10::3.5::0\n"):
        r = tae_ratings.read_ratings(write(tmp_path, text))
        assert r.users.tolist() == [1, 2] and r.items.tolist() == [10, 10] and r.values.tolist() == [4.0, 3.5]


@pytest.mark.parametrize("text, words", [
    ("1\t10\n", ["line 1 has 2 columns", "user, item and rating"]),
    ("1\t10\t4\n2\tten\t3\n", ["line 2", "integer ids", "'ten'"]),
    ("1\t10\t4\n2\t3.5\t3\n", ["line 2", "integer ids"]),
    ("1\t10\tgood\n", ["line 1", "'good' is not a number"]),
    ("1\t10\t6\n", ["line 1", "outside the rating scale 1 to 5"]),
    ("1\t10\t4\n2\t10\t0\n", ["line 2", "a rating of 0 cannot be told from 'unrated'"]),
    ("\n\n", ["has no ratings"]),
])
def test_bad_ratings_name_the_line(tmp_path, text, words):
    with pytest.raises(DataError) as e:
        tae_ratings.read_ratings(write(tmp_path, text), scale=(1, 5) if "\t0\n" not in text else (0, 5))
    for w in words:
        assert w in str(e.value), (w, str(e.value))


@pytest.mark.parametrize("sep", ["\t", "::"])  # NumPy's reader, then the line reader
def test_a_pair_rated_twice_is_refused_naming_both_lines(tmp_path, sep):
    """Made dense, two ratings of one (user, item) would be added (4 and 4 trained as 8)."""
    text = "".join(sep.join(map(str, row)) + "\n" for row in [(1, 10, 4), (2, 10, 3), (3, 11, 5), (2, 10, 3)])
    with pytest.raises(DataError, match="lines 2 and 4 both rate item 10 by user 2"):
        tae_ratings.read_ratings(write(tmp_path, text))


def test_the_scale_is_stated_or_implied_and_said_which(tmp_path):
    rng = np.random.RandomState(0)
    lines = "".join(f"{u}\t{i}\t{rng.randint(1, 5)}\n" for u in range(30) for i in range(10)) + "99\t0\t7\n"
    implied = tae_ratings.load_user_ratings(write(tmp_path, lines))
    assert implied.scale == (1.0, 7.0) and implied.scale_from == "implied"
    with pytest.raises(DataError, match="line 301: the rating 7 is outside the rating scale 1 to 5"):
        tae_ratings.load_user_ratings(write(tmp_path, lines), scale=(1, 5))
    stated = tae_ratings.load_user_ratings(write(tmp_path, lines), scale=(0, 10))
    assert stated.scale == (0.0, 10.0) and stated.scale_from == "stated"


def test_a_seeded_tenth_is_held_out_and_a_test_file_must_overlap(tmp_path):
    rng = np.random.RandomState(0)
    lines = "".join(f"{u}\t{i}\t{rng.randint(1, 6)}\n" for u in range(30) for i in range(10))
    data = tae_ratings.load_user_ratings(write(tmp_path, lines))
    again = tae_ratings.load_user_ratings(write(tmp_path, lines))
    assert len(data.test) == 30 and len(data.train) == 270 and data.scale == (1.0, 5.0)
    pairs = lambda r: set(zip(r.users.tolist(), r.items.tolist()))  # noqa: E731
    assert not pairs(data.train) & pairs(data.test) and pairs(data.test) == pairs(again.test)
    tae_ratings.split_validation(data, 0.1)
    assert len(data.validation) == 27 and not pairs(data.validation) & (pairs(data.train) | pairs(data.test))
    with pytest.raises(DataError, match="share no user and no item"):
        tae_ratings.load_user_ratings(write(tmp_path, lines), write(tmp_path, "500\t500\t3\n", "t.tsv"))


def test_unknown_users_and_items_are_flagged():
    train = tae_ratings.Ratings(np.array([3, 3, 7]), np.array([1, 5, 5]), np.array([4, 2, 5], np.float32))
    idx = tae_ratings_matrix.index(train)
    u, i, known_u, known_i = idx.lookup(tae_ratings.Ratings(np.array([7, 9, 3]), np.array([5, 5, 2]), np.zeros(3)))
    assert idx.user_ids[u[0]] == 7 and known_u.tolist() == [True, False, True] and known_i.tolist() == [True, True, False]


def test_biases_converge_to_the_regularised_least_squares_solution():
    """Alternating sweeps against the exact minimiser of sum (r - mu - b_u - b_i)^2 + 15 |b_u|^2 + 10 |b_i|^2."""
    rng = np.random.RandomState(1)
    users, items = rng.randint(0, 40, 600), rng.randint(0, 25, 600)
    train = tae_ratings.Ratings(users, items, rng.randint(1, 6, 600).astype(np.float32))
    mu, idx, b_u, b_i = tae_ratings_matrix.biases(train, sweeps=300)
    u, i, _, _ = idx.lookup(train)
    design = np.zeros((600, len(b_u) + len(b_i)))
    design[np.arange(600), u] = 1
    design[np.arange(600), len(b_u) + i] = 1
    penalty = np.diag([15.0] * len(b_u) + [10.0] * len(b_i))
    exact = np.linalg.solve(design.T @ design + penalty, design.T @ (train.values - mu))
    np.testing.assert_allclose(np.concatenate([b_u, b_i]), exact, atol=1e-6)


def test_movielens_folds_and_the_bias_baseline_match_scikit_surprise():
    if not (ML100K / "u1.base").exists():
        pytest.skip(f"MovieLens 100K not found at {ML100K} (only developers' machines and CI have ../shared)")
    rmse = []
    for k in range(1, 6):
        data = tae_ratings.load_movielens(ML100K, f"u{k}")
        assert (len(data.train), len(data.test)) == (80000, 20000) and data.titles[1] == "Toy Story (1995)"
        rmse.append(tae_ratings_matrix.baselines(data)["user and item biases"]["rmse"])
    # scikit-surprise 1.1.5's BaselineOnly (ALS, reg_u 15, reg_i 10, 10 epochs) on the same folds:
    # u1 0.9599, mean 0.9457
    assert rmse[0] == pytest.approx(0.9599, abs=2e-4) and np.mean(rmse) == pytest.approx(0.9457, abs=2e-4)
    with pytest.raises(DataError, match="has no u6.base and u6.test"):
        tae_ratings.load_movielens(ML100K, "u6")


@pytest.mark.parametrize("orientation", tae_config.ORIENTATIONS)
def test_predictions_read_only_training_ratings(orientation):
    """The model is fed the training matrix alone: changing every test rating's value moves no
    prediction; each prediction is the reconstruction of its row at its column; cold ratings get
    the bias model's prediction and are flagged; everything is clipped to the scale."""
    rng = np.random.RandomState(3)
    train = tae_ratings.Ratings(rng.randint(0, 20, 300), rng.randint(100, 130, 300), rng.randint(1, 6, 300).astype(np.float32))
    pairs = set()
    keep = [k for k, p in enumerate(zip(train.users, train.items)) if p not in pairs and not pairs.add(p)]
    train = train.take(np.array(keep))
    test = tae_ratings.Ratings(np.array([3, 4, 99, 5]), np.array([101, 102, 101, 999]), np.array([5, 1, 3, 2], np.float32))
    idx = tae_ratings_matrix.index(train)
    m = tae_ratings_matrix.matrix(train, idx, orientation)
    dense = m.dense(np.arange(m.shape[0]))
    assert np.count_nonzero(dense) == len(train)
    weights = rng.rand(m.shape[1], m.shape[1])
    score = tae_ratings_matrix.dense_scorer(lambda rows: rows @ weights, m)  # any function of the fed rows

    def sparse_score(rows, at_rows, at_columns):  # the same function, from the sparse rows (the sparse path's feed)
        indices, values, shape = m.sparse(rows)
        fed = np.zeros(shape, np.float32)
        fed[indices[:, 0], indices[:, 1]] = values
        return (fed @ weights)[at_rows, at_columns]

    fallback = tae_ratings_matrix.biases(train)
    [(got, usable)] = tae_ratings_matrix.predict_parts(score, m, idx, [test], orientation, (1, 5), fallback, chunk=3)
    changed = tae_ratings.Ratings(test.users, test.items, 6 - test.values)
    [(again, _)] = tae_ratings_matrix.predict_parts(score, m, idx, [changed], orientation, (1, 5), fallback, chunk=3)
    [(sparse, _)] = tae_ratings_matrix.predict_parts(sparse_score, m, idx, [changed], orientation, (1, 5), fallback, chunk=3)
    assert np.array_equal(got, again) and np.array_equal(got, sparse) and usable.tolist() == [True, True, False, False]
    rows, cols, _ = tae_ratings_matrix.positions(idx, test, orientation)
    full = np.clip(dense @ weights, 1, 5)
    np.testing.assert_allclose(got[:2], full[rows[:2], cols[:2]], rtol=1e-6)
    np.testing.assert_allclose(got[2:], tae_ratings_matrix.bias_predictions(fallback, test, (1, 5))[2:])


@pytest.mark.parametrize("text", ["1\t10\t4\t881250949\n2\t10\t3.5\t1\n", "user,item,rating\n1,10,4\n2,10,3.5\n",
                                  "1;10;4\n2;10;3.5\n", "1 10 4\n2 10 3.5\n", "1::10::4::0\n2::10::3.5::0\n"])
def test_numpys_reader_and_the_line_reader_agree(tmp_path, text):
    """The fast path (np.loadtxt) gives what the strict line reader gives, or hands over to it."""
    path = write(tmp_path, text)
    fast, lines = tae_ratings._read_fast(path, (1, 5)), tae_ratings._read_lines(path, (1, 5))[0]
    assert fast is None if "::" in text else all(
        np.array_equal(getattr(fast, k), getattr(lines, k)) and getattr(fast, k).dtype == getattr(lines, k).dtype
        for k in ("users", "items", "values"))


@pytest.mark.parametrize("count", [3, 4, 5, 9])
def test_the_fast_reader_reads_across_its_blocks(tmp_path, monkeypatch, count):
    """Blocks of 4 lines: files that end inside, at and past a block's end, a bad value in the last block."""
    monkeypatch.setattr(tae_ratings, "READ_BLOCK", 4)
    path = write(tmp_path, "user,item,rating\n" + "".join(f"{u},{u % 3},{1 + u % 5}\n" for u in range(count)))
    fast, lines = tae_ratings._read_fast(path, (1, 5)), tae_ratings._read_lines(path, (1, 5))[0]
    assert all(np.array_equal(getattr(fast, k), getattr(lines, k)) for k in ("users", "items", "values"))
    bad = write(tmp_path, "".join(f"{u},{u % 3},{1 + u % 5}\n" for u in range(count)) + "99,1,7\n", "bad.csv")
    assert tae_ratings._read_fast(bad, (1, 5)) is None  # handed to the line reader, which names the line


def test_repeated_pairs_are_found_by_the_short_check_as_by_the_sort():
    users, items = np.array([5, 2, 5, 9, 2]), np.array([1, 1, 3, 1, 7])
    assert tae_ratings.repeated_pair(tae_ratings.Ratings(users, items, np.ones(5, np.float32))) is None
    again = tae_ratings.Ratings(np.append(users, 9), np.append(items, 1), np.ones(6, np.float32))
    assert tae_ratings.repeated_pair(again) == (3, 5)
    train = tae_ratings.Ratings(users, items, np.ones(5, np.float32))
    test = tae_ratings.Ratings(np.array([4, 2]), np.array([1, 3]), np.ones(2, np.float32))
    assert tae_ratings.repeated_pair(train, test) is None
    test.items[1] = 7  # user 2's item 7: the training set's position 4
    assert tae_ratings.repeated_pair(train, test) == (4, 1)
    assert tae_ratings._shares_any(np.array([8, 9]), users) and not tae_ratings._shares_any(np.array([3, 10]), users)


@pytest.mark.parametrize("orientation", ["user", "item"])
def test_the_matrix_alone_holds_the_training_ratings_after_arrange(orientation):
    rng = np.random.RandomState(3)
    pairs = rng.choice(40 * 30, 500, replace=False)
    train = tae_ratings.Ratings(10 + pairs // 30, 100 + pairs % 30, rng.randint(1, 6, 500).astype(np.float32))
    test = tae_ratings.Ratings(np.array([10]), np.array([100]), np.array([3], np.float32))
    data = tae_ratings.RatingsData("t", train, test, (1, 5), "t")
    before = tae_ratings_matrix.baselines(tae_ratings.RatingsData("t", train, test, (1, 5), "t"))
    ds = tae_ratings_matrix.arrange(data, orientation)
    assert data.train is None  # released: held once, as the matrix
    assert tae_ratings_matrix.baselines(data, ds.fallback) == before  # the global mean and biases as from the arrays
    for user in range(len(ds.idx.user_ids)):
        expected = np.sort(train.items[train.users == ds.idx.user_ids[user]])
        assert np.array_equal(np.sort(ds.idx.item_ids[ds.trained_items(user)]), expected)
    assert ds.fallback[0] == float(train.values.mean(dtype=np.float64))


@pytest.mark.parametrize("sep", [",", "\t", ";", "::", " "])
def test_a_byte_order_mark_is_not_a_header_and_ids_are_exact_to_2_63(tmp_path, sep):
    """A spreadsheet's UTF-8 CSV starts with a byte-order mark: the first rating is kept, not taken
    for a header. Ids are integers read as such: 2^53 + 1 and 2^53 + 2 (one float64) stay two users."""
    big = 2 ** 53
    rows = [(big + 1, 10, 4), (big + 2, 10, 3), (2 ** 63 - 1, 11, 5), (-(2 ** 63), 11, 1)]
    path = tmp_path / "r.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(sep.join(map(str, r)) + "\n" for r in rows).encode())
    r = tae_ratings.read_ratings(path)
    assert r.users.tolist() == [u for u, _, _ in rows] and r.values.tolist() == [4, 3, 5, 1]
    if sep != "::":  # NumPy's reader reads it too, to the same values
        fast = tae_ratings._read_fast(path, None)
        assert fast.users.tolist() == r.users.tolist() and fast.items.tolist() == r.items.tolist()


@pytest.mark.parametrize("sep", [",", "\t", ";", "::"])
@pytest.mark.parametrize("case, line, words", [
    ("float id", "12.0{s}10{s}4", "integer ids, written as whole numbers; got '12.0'"),
    ("exponent id", "1e1{s}10{s}4", "integer ids, written as whole numbers; got '1e1'"),
    ("id past 64 bits", "9223372036854775808{s}10{s}4", "beyond 64 bits"),
    ("overflow", "1{s}10{s}1e40", "the rating 1e40 is beyond what float32 holds"),
    ("infinite", "1{s}10{s}inf", "the rating 'inf' is not a number"),
    ("nan", "1{s}10{s}nan", "the rating 'nan' is not a number"),
    ("decimal comma", "1{s}10{s}3,5", "the rating '3,5' has a decimal comma; write it with a point (3.5)"),
])
@pytest.mark.parametrize("first", [False, True], ids=["second line", "first line"])
def test_ratings_are_read_exactly_or_refused_naming_the_line(tmp_path, sep, case, line, words, first):
    """The same refusal whatever the separator (NumPy's reader for one-character ones hands over
    to the line reader); a comma file's "3,5" is two columns, a rating and a timestamp, not a fraction.
    On the first line too: a line that starts with a number is a rating, never taken for a header."""
    if case == "decimal comma" and sep == ",":
        pytest.skip("in a comma-separated file 3,5 is a rating of 3 and a fourth column, as MovieLens' timestamp")
    path = tmp_path / "r.txt"
    good, bad = f"2{sep}11{sep}4\n", line.format(s=sep) + "\n"
    path.write_text(bad + good if first else good + bad)
    with pytest.raises(DataError) as e:
        tae_ratings.read_ratings(path)
    assert f"line {1 if first else 2}: " in str(e.value) and words in str(e.value), str(e.value)


def test_a_header_after_blank_lines_is_still_a_header(tmp_path):
    r = tae_ratings.read_ratings(write(tmp_path, "\n\nuser,item,rating\n1,10,4\n2,10,3.5\n", "r.csv"))
    assert r.users.tolist() == [1, 2] and r.values.tolist() == [4.0, 3.5]


def test_a_space_separated_file_with_a_decimal_comma_is_refused(tmp_path):
    path = tmp_path / "r.txt"
    path.write_text("1 10 4\n2 10 3,5\n")
    with pytest.raises(DataError, match="line 2: the rating '3,5' has a decimal comma"):
        tae_ratings.read_ratings(path)
