"""fit(..., validation_metric=...): a named metric or a callable, logged per epoch as val_<name>."""

import numpy as np
import pytest

import nn_xp as nx
from nn_xp.training import metrics

sk_metrics = pytest.importorskip("sklearn.metrics")


def _blobs(n=240, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, 4)) + y[:, None] * 0.8
    return X, np.array(["ant", "bee", "cat"])[y]


@pytest.mark.parametrize("name, reference", [
    ("accuracy", sk_metrics.accuracy_score),
    ("balanced_accuracy", sk_metrics.balanced_accuracy_score),
    ("f1_macro", lambda t, p, **kw: sk_metrics.f1_score(t, p, average="macro", **kw)),
])
def test_named_classification_metrics_are_scikit_learns(name, reference):
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(0, 4, 50), rng.integers(0, 3, 50)
    w = rng.uniform(0.1, 2.0, 50)
    assert metrics.METRICS[name](y_true, y_pred) == pytest.approx(reference(y_true, y_pred))
    assert metrics.METRICS[name](y_true, y_pred, w) == pytest.approx(reference(y_true, y_pred, sample_weight=w))


@pytest.mark.parametrize("name, reference", [
    ("r2", sk_metrics.r2_score), ("mse", sk_metrics.mean_squared_error),
    ("rmse", sk_metrics.root_mean_squared_error), ("mae", sk_metrics.mean_absolute_error),
])
@pytest.mark.parametrize("outputs", [1, 2])
def test_named_regression_metrics_are_scikit_learns(name, reference, outputs):
    rng = np.random.default_rng(2)
    shape = (40,) if outputs == 1 else (40, outputs)
    y_true, y_pred, w = rng.normal(size=shape), rng.normal(size=shape), rng.uniform(0.1, 2.0, 40)
    assert metrics.METRICS[name](y_true, y_pred) == pytest.approx(reference(y_true, y_pred))
    assert metrics.METRICS[name](y_true, y_pred, w) == pytest.approx(reference(y_true, y_pred, sample_weight=w))


def test_a_named_metric_is_logged_on_the_labels_predict_gives():
    X, y = _blobs()
    model = nx.MLP([4, 8, 3], output_activation="softmax", seed=0)
    history = model.fit(X[:160], y[:160], epochs=4, verbose=0, validation_data=(X[160:], y[160:]),
                        validation_metric="f1_macro")
    scores = history.history["val_f1_macro"]
    assert len(scores) == 4
    expected = sk_metrics.f1_score(y[160:], model.predict(X[160:]), average="macro")
    assert scores[-1] == pytest.approx(expected)


def test_a_regression_metric_with_validation_split():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=200)
    model = nx.MLP([3, 8, 1], seed=0)
    history = model.fit(X, y, epochs=30, verbose=0, validation_split=0.25, validation_metric="mae",
                        optimizer="adam", learning_rate=0.01)
    maes = history.history["val_mae"]
    assert len(maes) == 30 and maes[-1] < maes[0]


def test_a_callable_is_named_after_itself_gets_the_weights_and_drives_early_stopping():
    X, y = _blobs()
    seen = []

    def weighted_hits(y_true, y_pred, sample_weight=None):
        seen.append(sample_weight)
        return float(np.sum(sample_weight * (y_true == y_pred)))

    w_val = np.linspace(0.5, 1.5, 80)
    stop = nx.callbacks.EarlyStopping(monitor="val_weighted_hits", mode="max", patience=2, restore_best_weights=True)
    model = nx.MLP([4, 8, 3], output_activation="softmax", seed=0)
    history = model.fit(X[:160], y[:160], epochs=40, verbose=0, validation_data=(X[160:], y[160:], w_val),
                        validation_metric=weighted_hits, callbacks=[stop])
    scores = history.history["val_weighted_hits"]
    np.testing.assert_allclose(seen[0], w_val)
    assert stop.mode == "max" and stop.best == max(scores)
    assert weighted_hits(y[160:], model.predict(X[160:]), w_val) == pytest.approx(max(scores))


def test_early_stopping_modes():
    assert nx.callbacks.EarlyStopping(monitor="val_f1_macro").mode == "max"
    assert nx.callbacks.EarlyStopping(monitor="val_mae").mode == "min"
    assert nx.callbacks.EarlyStopping(monitor="val_loss", mode="max").mode == "max"
    with pytest.raises(ValueError, match="mode must be"):
        nx.callbacks.EarlyStopping(mode="up")


def test_bad_validation_metric_is_refused_before_training():
    X, y = _blobs()
    model = nx.MLP([4, 8, 3], output_activation="softmax", seed=0)
    with pytest.raises(ValueError, match="validation_metric must be one of"):
        model.fit(X, y, epochs=1, verbose=0, validation_split=0.2, validation_metric="f2")
    with pytest.raises(TypeError, match="validation_metric must be a metric name"):
        model.fit(X, y, epochs=1, verbose=0, validation_split=0.2, validation_metric=3)
    with pytest.raises(ValueError, match="validation_metric needs validation data"):
        model.fit(X, y, epochs=1, verbose=0, validation_metric="accuracy")
    assert model.history is None or len(model.history) == 0
