"""Datasets: built-in generators, scikit-learn's bundled sets, user files, standardising, splitting."""

import builtins
import json
import sys

import numpy as np
import pytest

from nn_xp.data import datasets, readers
from nn_xp.data.datasets import DATASETS, fit_standardizer, load_dataset, load_file, standardize, train_test_split

# name -> (n_samples, n_features, n_classes or None) with default options
SHAPES = {
    "sine": (500, 1, None),
    "spirals": (300, 2, 3),
    "moons": (300, 2, 2),
    "xor": (300, 2, 2),
    "synthetic": (20000, 784, 10),
    "digits": (1797, 64, 10),
    "iris": (150, 4, 3),
    "breast_cancer": (569, 30, 2),
    "wine": (178, 13, 3),
}


def test_every_name_is_covered():
    assert set(DATASETS) == set(SHAPES)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shapes_and_classes(name):
    if name in datasets.SKLEARN:
        pytest.importorskip("sklearn")
    n, d, k = SHAPES[name]
    data = load_dataset(name)
    assert data.X.shape == (n, d) and data.X.dtype == np.float64
    assert data.y.shape == (n,) and len(data.feature_names) == d and data.description
    assert np.all(np.isfinite(data.X))
    if k is None:
        assert data.task == "regression" and data.n_classes is None and data.y.dtype == np.float64
    else:
        assert data.task == "classification" and data.n_classes == k and data.n_outputs == k
        assert data.y.dtype == np.int64 and set(np.unique(data.y)) == set(range(k))


def test_sine_is_the_notebooks_data():
    data = load_dataset("sine")
    x = np.linspace(-2 * np.pi, 2 * np.pi, 500)
    np.testing.assert_array_equal(data.X[:, 0], (x - x.mean()) / x.std())
    np.testing.assert_array_equal(data.y, 0.5 * (np.sin(x) + 1))
    assert abs(data.X.mean()) < 1e-12 and abs(data.X.std() - 1) < 1e-12


@pytest.mark.parametrize("name", ["spirals", "moons", "xor"])
def test_generators_are_seeded(name):
    a, b = load_dataset(name, seed=3), load_dataset(name, seed=3)
    c = load_dataset(name, seed=4)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)
    small = load_dataset(name, n_samples=41, seed=3)
    assert small.X.shape == (41, 2) and small.y.shape == (41,)
    assert np.bincount(small.y).max() - np.bincount(small.y).min() <= 1  # balanced classes


def test_synthetic_is_seeded_and_learnable_by_its_teacher():
    a, b, c = (load_dataset("synthetic", n_samples=500, seed=s) for s in (3, 3, 4))
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y) and not np.array_equal(a.X, c.X)
    assert a.X.shape == (500, 784) and set(np.unique(a.y)) <= set(range(10))
    small = load_dataset("synthetic", n_samples=300, n_features=5, n_classes=3, seed=0)
    assert small.X.shape == (300, 5) and small.n_classes == 3
    # Labels come from a linear teacher, so a least-squares fit on one-hot targets recovers most.
    W, *_ = np.linalg.lstsq(small.X, np.eye(3)[small.y], rcond=None)
    assert np.mean(np.argmax(small.X @ W, axis=1) == small.y) > 0.8


def test_generator_options():
    spirals = load_dataset("spirals", n_classes=5, n_samples=100, noise=0.0)
    assert spirals.n_classes == 5 and np.array_equal(np.bincount(spirals.y), [20] * 5)
    radius = np.hypot(spirals.X[:, 0], spirals.X[:, 1])
    assert radius.max() <= 1 + 1e-12
    clean = load_dataset("xor", noise=0.0)
    # Without noise every point sits on its blob's centre, and the label is the XOR of the signs.
    assert np.array_equal(clean.y, (np.sign(clean.X[:, 0]) != np.sign(clean.X[:, 1])).astype(np.int64))
    with pytest.raises(ValueError, match="noise"):
        load_dataset("moons", noise=-1)
    with pytest.raises(TypeError):
        load_dataset("moons", n_classes=3)
    with pytest.raises(ValueError, match="n_classes"):
        load_dataset("spirals", n_classes=1)


def test_sklearn_subset_is_seeded():
    pytest.importorskip("sklearn")
    a, b = load_dataset("iris", n_samples=30, seed=1), load_dataset("iris", n_samples=30, seed=1)
    assert a.X.shape == (30, 4) and np.array_equal(a.X, b.X)
    assert a.class_names == ["setosa", "versicolor", "virginica"]
    with pytest.raises(ValueError, match="only 150 samples"):
        load_dataset("iris", n_samples=151)


def test_missing_sklearn_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError("No module named 'sklearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(ImportError) as info:
        load_dataset("digits")
    assert str(info.value) == "the 'digits' dataset needs scikit-learn: pip install 'nn_xp[sklearn]'"


def test_unknown_name_lists_the_datasets():
    with pytest.raises(ValueError) as info:
        load_dataset("mnist")
    assert "mnist" in str(info.value)
    for name in DATASETS:
        assert name in str(info.value)


# ---- files -----------------------------------------------------------------------------------
def test_csv_with_numeric_target(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,label,b\n1.5,0,2\n-1,1,3e2\n0,1,4\n\n")
    data = load_file(path, target="label")
    np.testing.assert_array_equal(data.X, [[1.5, 2], [-1, 300], [0, 4]])
    assert data.y.tolist() == [0, 1, 1] and data.y.dtype == np.int64
    assert data.task == "classification" and data.n_classes == 2 and data.feature_names == ["a", "b"]
    regression = load_file(path, target="label", task="regression")
    assert regression.y.dtype == np.float64 and regression.n_classes is None
    features = load_file(path)
    assert features.X.shape == (3, 3) and features.y is None and features.task is None


def test_csv_with_class_names_and_real_targets(tmp_path):
    names = tmp_path / "names.csv"
    names.write_text("x,y,species\n1,2,cat\n3,4,dog\n5,6,cat\n")
    data = load_dataset(str(names), target="species")
    assert data.y.tolist() == [0, 1, 0] and data.class_names == ["cat", "dog"]
    reals = tmp_path / "reals.csv"
    reals.write_text("x,price\n1,2.5\n2,3.25\n")
    data = load_file(reals, target="price")
    assert data.task == "regression" and data.y.tolist() == [2.5, 3.25]
    shifted = tmp_path / "shifted.csv"
    shifted.write_text("x,grade\n1,3\n2,1\n3,2\n")
    data = load_file(shifted, target="grade")
    assert data.y.tolist() == [2, 0, 1] and data.class_names == [1, 2, 3]


def test_csv_bad_cell_names_file_row_column_and_option(tmp_path):
    # Rows count the data rows after the header (pandas gives no line numbers).
    path = tmp_path / "bad.csv"
    path.write_text("a,b,y\n1,2,0\n3,oops,1\n")
    with pytest.raises(ValueError) as info:
        load_file(path, target="y")
    message = str(info.value)
    assert message.startswith(str(path)) and "row 2" in message and "'b'" in message and "oops" in message
    assert "--one-hot" in message
    empty = tmp_path / "empty_cell.csv"
    empty.write_text("a,y\n,0\n")
    with pytest.raises(ValueError, match="row 1, column 'a': a missing value .*--impute mean|median|drop"):
        load_file(empty, target="y")
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("a,y\n1,0\n2,1.O\n")
    with pytest.raises(ValueError, match="row 2, column 'y'.*mixes numbers and text"):
        load_file(mixed, target="y")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,y\n1,0,7\n")
    with pytest.raises(ValueError, match="ragged.csv: not a readable table .*3"):
        load_file(ragged, target="y")
    infinite = tmp_path / "infinite.csv"
    infinite.write_text("a,y\n1,0\ninf,1\n")
    with pytest.raises(ValueError, match="row 2, column 'a': an infinite value"):
        load_file(infinite, target="y")


def test_csv_missing_target_lists_columns(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError) as info:
        load_file(path, target="label")
    assert "'label'" in str(info.value) and "['a', 'b']" in str(info.value)
    with pytest.raises(FileNotFoundError):
        load_file(tmp_path / "nope.csv")


def test_npz_and_npy(tmp_path):
    X = np.arange(12.0).reshape(6, 2)
    np.savez(tmp_path / "labelled.npz", X=X, y=np.array([0, 1, 2, 0, 1, 2]))
    data = load_file(tmp_path / "labelled.npz")
    assert np.array_equal(data.X, X) and data.n_classes == 3 and data.task == "classification"
    np.savez(tmp_path / "targets.npz", X=X, y=np.linspace(0, 1, 12).reshape(6, 2))
    data = load_file(tmp_path / "targets.npz")
    assert data.task == "regression" and data.y.shape == (6, 2) and data.n_outputs == 2
    np.savez(tmp_path / "named.npz", X=X, species=np.array(["b", "a", "b", "c", "a", "a"]))
    data = load_file(tmp_path / "named.npz", target="species")
    assert data.y.tolist() == [1, 0, 1, 2, 0, 0] and data.class_names == ["a", "b", "c"]
    np.savez(tmp_path / "features.npz", X=X)
    assert load_file(tmp_path / "features.npz").y is None
    np.save(tmp_path / "features.npy", X.astype(np.float32))
    data = load_file(tmp_path / "features.npy")
    # kept in the file's dtype and memory-mapped, not copied into float64
    assert data.X.dtype == np.float32 and isinstance(data.X, np.memmap) and np.array_equal(data.X, X)
    assert data.y is None
    np.save(tmp_path / "column.npy", np.arange(5.0))
    assert load_file(tmp_path / "column.npy").X.shape == (5, 1)


def test_npz_refusals(tmp_path):
    np.savez(tmp_path / "pickled.npz", X=np.array([{}, {}], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        load_file(tmp_path / "pickled.npz")
    np.savez(tmp_path / "nox.npz", features=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="no member 'X'"):
        load_file(tmp_path / "nox.npz")
    np.savez(tmp_path / "short.npz", X=np.zeros((3, 2)), y=np.zeros(2))
    with pytest.raises(ValueError, match="3 rows"):
        load_file(tmp_path / "short.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="junk.npz"):
        load_file(tmp_path / "junk.npz")
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="NaN"):
        load_file(tmp_path / "nan.npy")


# ---- tables through pandas: delimiters, parquet, missing values, text columns -----------------------
def test_numeric_csv_fast_path_agrees_with_the_pandas_path(tmp_path):
    # load_file streams an all-numeric CSV through pyarrow (low peak memory); impute= takes pandas'.
    rng = np.random.default_rng(0)
    rows = [f"{a:.4f},{b},{c}" for a, b, c in zip(rng.normal(size=50), rng.integers(0, 9, 50), rng.integers(0, 3, 50))]
    for labels in ("0,1,2", "x,y,z"):
        mapping = dict(zip("012", labels.split(",")))
        text = "a,b,label\n" + "\n".join(r[:-1] + mapping[r[-1]] for r in rows) + "\n"
        (tmp_path / "data.csv").write_text(text)
        fast = load_file(tmp_path / "data.csv", target="label")
        pandas_path = load_file(tmp_path / "data.csv", target="label", impute="mean")
        np.testing.assert_array_equal(fast.X, pandas_path.X)
        assert fast.y.tolist() == pandas_path.y.tolist() and fast.class_names == pandas_path.class_names
        assert fast.feature_dtypes == pandas_path.feature_dtypes == {"a": "float64", "b": "int64"}
        assert fast.encoding is None and fast.target == "label"


def test_numeric_csv_with_a_bom_or_old_mac_line_breaks(tmp_path):
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf a ,y\n1,0\n2,1\n")
    (tmp_path / "cr.csv").write_bytes(b"a,y\r1,0\r2,1\r")  # fewer \n than rows: the pandas path
    for name in ("bom.csv", "cr.csv"):
        data = load_file(tmp_path / name, target="y")
        assert data.feature_names == ["a"] and data.X.tolist() == [[1.0], [2.0]] and data.y.tolist() == [0, 1]


def test_tsv_sniffed_by_extension_by_content_and_given(tmp_path):
    rows = "a\tb\tlabel\n1\t2\tcat\n3\t4\tdog\n5\t6\tcat\n"
    (tmp_path / "data.tsv").write_text(rows)
    (tmp_path / "tabs.csv").write_text(rows)  # a .csv holding tabs: the sniffer finds them
    (tmp_path / "semi.txt.csv").write_text(rows.replace("\t", ";"))
    for name, delimiter in (("data.tsv", None), ("tabs.csv", None), ("tabs.csv", "\t"), ("semi.txt.csv", ";")):
        data = load_file(tmp_path / name, target="label", delimiter=delimiter)
        np.testing.assert_array_equal(data.X, [[1, 2], [3, 4], [5, 6]])
        assert data.feature_names == ["a", "b"] and data.target == "label"
        assert data.class_names == ["cat", "dog"] and data.y.tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match="tabs.csv"):  # a wrong delimiter: one text column, refused
        load_file(tmp_path / "tabs.csv", target="label", delimiter=",")


def test_parquet_keeps_names_dtypes_and_label_types(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"x": [0.5, 1.5, 2.5, 3.5], "n": np.array([1, 2, 3, 4], dtype=np.int32),
                          "grade": [10, 30, 10, 20], "species": ["b", "a", "b", "c"]})
    frame.to_parquet(tmp_path / "data.parquet")
    frame.drop(columns="species").to_parquet(tmp_path / "numbers.parquet")
    data = load_file(tmp_path / "numbers.parquet", target="grade")
    assert data.X.dtype == np.float64 and data.X.shape == (4, 2) and data.feature_names == ["x", "n"]
    assert data.feature_dtypes["x"] == "float64" and data.feature_dtypes["n"] == "int32"
    assert data.class_names == [10, 20, 30] and all(type(c) is int for c in data.class_names)
    with pytest.raises(ValueError, match="column 'species'.*--one-hot"):
        load_file(tmp_path / "data.parquet", target="grade", one_hot=False)
    named = load_file(tmp_path / "data.parquet", target="species", one_hot=False)
    assert named.class_names == ["a", "b", "c"] and named.y.tolist() == [1, 0, 1, 2]


@pytest.mark.parametrize("impute,expected", [("mean", 3.0), ("median", 2.0)])
def test_impute_fills_with_the_training_statistic_and_reuses_it(tmp_path, impute, expected):
    (tmp_path / "train.csv").write_text("a,b,y\n1,10,0\n,20,1\n2,30,0\n6,,1\n")
    with pytest.raises(ValueError, match="column 'a'.*--impute mean\\|median\\|drop"):
        load_file(tmp_path / "train.csv", target="y")
    data = load_file(tmp_path / "train.csv", target="y", impute=impute)
    assert data.X[1, 0] == expected and data.X[3, 1] == 20.0
    assert data.encoding["impute"]["a"] == expected and data.encoding["strategy"] == impute
    assert json.loads(json.dumps(data.encoding)) == data.encoding
    # New data: columns found by name in another order, missing values take the training statistic.
    (tmp_path / "new.csv").write_text("b,a\n5,\n,7\n")
    new = datasets.encode(tmp_path / "new.csv", data.encoding)
    np.testing.assert_array_equal(new.X, [[expected, 5.0], [7.0, 20.0]])
    assert new.feature_names == ["a", "b"]


def test_impute_drop_removes_rows_and_refuses_at_predict_time(tmp_path):
    (tmp_path / "train.csv").write_text("a,b,y\n1,10,0\n,20,1\n3,30,\n4,40,1\n")
    data = load_file(tmp_path / "train.csv", target="y", impute="drop")
    np.testing.assert_array_equal(data.X, [[1, 10], [4, 40]])
    assert data.y.tolist() == [0, 1] and data.encoding["strategy"] == "drop"
    (tmp_path / "new.csv").write_text("a,b\n1,\n")
    with pytest.raises(ValueError, match="row 1, column 'b'.*impute='drop'"):
        datasets.encode(tmp_path / "new.csv", data.encoding)


def test_one_hot_in_sorted_order_and_an_unseen_category_is_zeros(tmp_path):
    (tmp_path / "train.csv").write_text("color,size,y\nred,1,0\nblue,2,1\ngreen,3,0\nred,4,1\n")
    with pytest.raises(ValueError, match="row 1, column 'color'.*--one-hot"):
        load_file(tmp_path / "train.csv", target="y")
    data = load_file(tmp_path / "train.csv", target="y", one_hot=True)
    assert data.feature_names == ["color=blue", "color=green", "color=red", "size"]
    np.testing.assert_array_equal(data.X[:, :3], [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert data.encoding["one_hot"] == {"color": ["blue", "green", "red"]}
    assert data.encoding["columns"] == ["color", "size"] and data.feature_dtypes["size"] == "int64"
    (tmp_path / "new.csv").write_text("size,color,extra\n9,purple,x\n8,green,y\n")
    with pytest.warns(UserWarning, match="column 'color'.*'purple'.*all zeros"):
        new = datasets.encode(tmp_path / "new.csv", data.encoding)
    np.testing.assert_array_equal(new.X, [[0, 0, 0, 9], [0, 1, 0, 8]])
    (tmp_path / "short.csv").write_text("size\n1\n")
    with pytest.raises(ValueError, match="no column 'color'"):
        datasets.encode(tmp_path / "short.csv", data.encoding)


def test_tables_without_pandas_name_the_extra(tmp_path, monkeypatch):
    (tmp_path / "data.csv").write_text("a,y\n1,0\n")
    np.save(tmp_path / "data.npy", np.ones((2, 2)))
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pip install 'nn_xp\[data\]'"):
        load_file(tmp_path / "data.csv", target="y")
    assert load_file(tmp_path / "data.npy").X.shape == (2, 2)


def test_large_files_are_announced(tmp_path, monkeypatch, capsys):
    (tmp_path / "data.csv").write_text("a,y\n1,0\n")
    monkeypatch.setattr(readers, "LARGE_FILE_BYTES", 4)
    load_file(tmp_path / "data.csv", target="y")
    assert capsys.readouterr().err == ""
    load_file(tmp_path / "data.csv", target="y", progress=True)
    assert "reading data.csv (0 MB)..." in capsys.readouterr().err


# ---- standardisation and splitting ------------------------------------------------------------
def test_standardizer_round_trip():
    rng = np.random.default_rng(0)
    X = rng.normal(3.0, 5.0, size=(200, 3))
    X[:, 2] = 7.0  # a constant feature
    stats = fit_standardizer(X)
    assert isinstance(stats["mean"], list) and all(isinstance(v, float) for v in stats["std"])
    assert stats["std"][2] == 1.0
    Z = standardize(X, stats)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z[:, :2].std(axis=0), 1, rtol=1e-12)
    assert np.all(Z[:, 2] == 0)
    np.testing.assert_allclose(Z * np.array(stats["std"]) + np.array(stats["mean"]), X, rtol=1e-12)
    with pytest.raises(ValueError, match="2 features"):
        standardize(X[:, :2], stats)


def test_stratified_split_keeps_proportions():
    y = np.repeat([0, 1, 2], [70, 20, 10])
    X = np.arange(100.0)[:, None]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, seed=0)
    assert len(y_test) == 20 and len(y_train) == 80
    assert np.bincount(y_test).tolist() == [14, 4, 2] and np.bincount(y_train).tolist() == [56, 16, 8]
    # Every row lands on exactly one side, with its own label.
    assert sorted(np.concatenate([X_train, X_test])[:, 0].tolist()) == list(range(100))
    assert np.array_equal(y[X_test[:, 0].astype(int)], y_test)
    again = train_test_split(X, y, test_size=0.2, seed=0)
    assert np.array_equal(again[1], X_test)
    other = train_test_split(X, y, test_size=0.2, seed=1)
    assert not np.array_equal(other[1], X_test)


def test_split_without_stratification_and_with_counts():
    X = np.arange(50.0).reshape(25, 2)
    y = np.linspace(0, 1, 25)  # float targets: never stratified
    _X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=5)
    assert X_test.shape == (5, 2) and y_train.shape == (20,)
    np.testing.assert_allclose(X_test[:, 0] / 48, y_test)  # rows and targets stay paired
    with pytest.raises(ValueError, match="test_size"):
        train_test_split(X, y, test_size=1.5)
    with pytest.raises(ValueError, match="test_size"):
        train_test_split(X, y, test_size=25)


def test_cli_stores_the_encoding_and_predict_reuses_it(tmp_path, capsys):
    from nn_xp.cli import main

    rng = np.random.default_rng(0)
    colors = rng.choice(["red", "green", "blue"], size=60)
    size = rng.normal(size=60)
    lines = [f"{c},{'' if i % 7 == 0 else f'{s:.3f}'},{int(c == 'red')}" for i, (c, s) in enumerate(zip(colors, size))]
    (tmp_path / "train.tsv").write_text("color\tsize\tlabel\n" + "\n".join(lines).replace(",", "\t") + "\n")
    common = ["train", "--dataset", str(tmp_path / "train.tsv"), "--target", "label", "--epochs", "2",
              "--device", "cpu", "--quiet"]
    assert main(common) == 2
    assert "column 'color'" in capsys.readouterr().err
    model_path = str(tmp_path / "model.npz")
    assert main([*common, "--impute", "median", "--one-hot", "--standardize", "--save", model_path]) == 0
    capsys.readouterr()
    import nn_xp as nx

    model = nx.load(model_path, device="cpu")
    encoding = model.preprocessing["encoding"]
    assert encoding["one_hot"] == {"color": ["blue", "green", "red"]} and encoding["strategy"] == "median"
    assert model.layer_sizes[0] == 4 and len(model.preprocessing["mean"]) == 4
    (tmp_path / "new.csv").write_text("size;color\n0.5;red\n;purple\n")
    assert main(["predict", model_path, str(tmp_path / "new.csv"), "--delimiter", ";", "--device", "cpu"]) == 0
    printed = capsys.readouterr()  # the command line says it as one warning line naming the file
    assert len(printed.out.strip().splitlines()) == 2
    assert "warning: " in printed.err and "new.csv" in printed.err and "purple" in printed.err
    (tmp_path / "labelled.csv").write_text("label,size,color\n1,0.5,red\n0,-1,blue\n")
    assert main(["evaluate", model_path, str(tmp_path / "labelled.csv"), "--target", "label", "--json",
                 "--device", "cpu"]) == 0
    assert "accuracy" in json.loads(capsys.readouterr().out)
