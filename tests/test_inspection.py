"""model.score, model.summary and the CSVLogger callback."""

import csv

import numpy as np
import pytest

import nn_xp as nx
from nn_xp.training.callbacks import CSVLogger

metrics = pytest.importorskip("sklearn.metrics")


def _blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    codes = rng.integers(0, 3, n)
    X = centers[codes] + rng.normal(scale=1.2, size=(n, 2))  # overlapping: the accuracy is below 1
    return X, np.array(["cat", "dog", "owl"], dtype=object)[codes]


def test_a_classifiers_score_is_sklearns_accuracy_weighted_or_not():
    X, y = _blobs()
    model = nx.MLP([2, 8, 3], output_activation="softmax", device="cpu", seed=0)
    model.fit(X, y, epochs=5, verbose=0)
    weights = np.random.default_rng(1).uniform(0, 3, len(y))
    predicted = model.predict(X)
    assert 0 < metrics.accuracy_score(y, predicted) < 1  # some right, some wrong: the weights matter
    assert model.score(X, y) == pytest.approx(metrics.accuracy_score(y, predicted), abs=1e-12)
    expected = metrics.accuracy_score(y, predicted, sample_weight=weights)
    assert model.score(X, y, sample_weight=weights) == pytest.approx(expected, abs=1e-12)
    assert model.score(X, y, sample_weight=weights) != pytest.approx(model.score(X, y), abs=1e-6)


@pytest.mark.parametrize("n_outputs", [1, 2])
def test_a_regressors_score_is_sklearns_r2_weighted_or_not(n_outputs):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    y = X @ rng.normal(size=(3, n_outputs)) + rng.normal(scale=0.5, size=(80, n_outputs))
    y = y[:, 0] if n_outputs == 1 else y
    model = nx.MLP([3, 8, n_outputs], dtype="float64", device="cpu", seed=0)
    model.fit(X, y, epochs=20, verbose=0)
    predicted = nx.to_numpy(model.predict(X))
    predicted = predicted[:, 0] if n_outputs == 1 else predicted
    weights = rng.uniform(0, 2, 80)
    assert model.score(X, y) == pytest.approx(metrics.r2_score(y, predicted), rel=1e-10)
    assert model.score(X, y, sample_weight=weights) == pytest.approx(
        metrics.r2_score(y, predicted, sample_weight=weights), rel=1e-10)


def test_r2_of_a_constant_target_follows_sklearn():
    from nn_xp.inspection import r2

    y = np.array([2.0, 2.0, 2.0])
    assert r2(y, y) == metrics.r2_score(y, y) == 1.0
    assert r2(y, y + [0.0, 1.0, 0.0]) == metrics.r2_score(y, y + [0.0, 1.0, 0.0]) == 0.0


def test_score_takes_a_raw_table_through_the_models_pipeline():
    pd = pytest.importorskip("pandas")
    X, y = _blobs()
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "kind": np.where(X[:, 0] > 1, "big", "small")})
    model = nx.MLP([4, 8, 3], output_activation="softmax", device="cpu", seed=0)
    model.fit(frame, y, one_hot=True, standardize=True, epochs=5, verbose=0)
    shuffled = frame[["kind", "b", "a"]]  # columns found by name
    assert model.score(shuffled, pd.Series(y)) == pytest.approx(metrics.accuracy_score(y, model.predict(frame)))


def test_summary_counts_the_parameters_and_names_the_pipeline_and_training(capsys):
    pd = pytest.importorskip("pandas")
    sizes = [4, 7, 5, 3]
    X, y = _blobs()
    frame = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "kind": np.where(X[:, 0] > 1, "big", "small")})
    frame.loc[3, "a"] = np.nan
    model = nx.MLP(sizes, output_activation="softmax", device="cpu", seed=0, dropout=0.25)
    model.fit(frame, y, one_hot=True, impute="median", standardize=True, epochs=4, verbose=0,
              optimizer="sgd", learning_rate=0.05, l2=0.01)
    capsys.readouterr()
    text = model.summary()
    assert capsys.readouterr().out == ""  # returns the text, prints nothing
    per_layer = [n_in * n_out + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:])]  # 35, 40, 18
    rows = [line for line in text.splitlines() if line.startswith("dense_")]
    assert [int(line.split()[-1]) for line in rows] == per_layer
    assert [line.split("(None, ")[1].split(")")[0] for line in rows] == ["7", "5", "3"]
    assert f"Total params: {sum(per_layer)}" in text and sum(per_layer) == 93
    assert text.count("Dropout, 0.25") == 2
    median = float(np.nanmedian(frame["a"]))
    assert f"a     number; missing: {median:.6g} (the training median)" in text
    assert "kind  one-hot, 2 categories (big, small)" in text
    assert "classes (3): cat, dog, owl" in text and "standardised: (x - mean)" in text
    assert "loss: cross_entropy" in text and "sgd(learning_rate=0.05" in text
    assert f"{model.optimizer.step_count} steps" in text and model.optimizer.step_count >= 4
    assert "l2: 0.01, dropout: 0.25, 0.25" in text and "epochs trained: 4" in text
    assert f"loss {model.history.history['loss'][-1]:.6g}, accuracy" in text


def test_csv_logger_writes_one_row_per_epoch_equal_to_the_history(tmp_path):
    X, y = _blobs()
    path = tmp_path / "runs" / "log.csv"
    model = nx.MLP([2, 8, 3], output_activation="softmax", device="cpu", seed=0)
    history = model.fit(X, y, epochs=6, verbose=0, validation_split=0.25, callbacks=[CSVLogger(path)])
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_time"]
    assert len(rows) == 1 + 6
    assert [int(row[0]) for row in rows[1:]] == list(range(6))
    for index, name in enumerate(rows[0][1:], start=1):
        assert [float(row[index]) for row in rows[1:]] == history.history[name]  # exactly, not to rounding


def test_csv_logger_replaces_or_appends(tmp_path):
    X, y = _blobs()
    path = tmp_path / "log.csv"
    model = nx.MLP([2, 8, 3], output_activation="softmax", device="cpu", seed=0)
    model.fit(X, y, epochs=3, verbose=0, callbacks=[CSVLogger(path)])
    model.fit(X, y, epochs=2, verbose=0, callbacks=[CSVLogger(path)])
    with open(path) as handle:
        assert [line.split(",")[0] for line in handle.read().splitlines()] == ["epoch", "3", "4"]
    model.fit(X, y, epochs=2, verbose=0, validation_split=0.2, callbacks=[CSVLogger(path, append=True)])
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["3", "4", "5", "6"]
    assert [row["val_loss"] == "" for row in rows] == [True, True, False, False]
    assert [float(row["loss"]) for row in rows] == model.history.history["loss"][3:]


def test_csv_logger_writes_files_so_only_rank_0_runs_it():
    assert CSVLogger("x.csv").writes_files is True
