"""nn_xp.plot draws the notebooks' figures from real models, headless."""

import numpy as np
import pytest

import nn_xp as nx

pytest.importorskip("matplotlib", reason="plots need the 'plot' extra")
from nn_xp import plot


def _sine(n=80):
    x = np.linspace(-2 * np.pi, 2 * np.pi, n)
    return ((x - x.mean()) / x.std())[:, None], 0.5 * (np.sin(x) + 1)


def test_training_figure_for_regression_has_both_curves(tmp_path):
    X, y = _sine()
    model = nx.MLP([1, 8, 1], output_activation="sigmoid", device="cpu", seed=0)
    model.fit(X, y, loss="mse", epochs=5, validation_split=0.2, verbose=0)
    figure = plot.training_figure(model, X, y)
    loss_axes, result_axes = figure.axes[:2]
    assert [line.get_label() for line in loss_axes.get_lines()] == ["training loss", "validation loss"]
    np.testing.assert_allclose(loss_axes.get_lines()[0].get_ydata(), model.history.history["loss"])
    actual, predicted = result_axes.get_lines()[:2]
    np.testing.assert_allclose(actual.get_ydata(), y)
    np.testing.assert_allclose(predicted.get_ydata(), nx.to_numpy(model.predict(X))[:, 0], rtol=1e-6)
    path = tmp_path / "sine.png"
    plot.training_figure(model, X, y, path=str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_confusion_matrix_counts_the_predictions():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 3)), rng.integers(0, 3, size=60)
    model = nx.MLP([3, 6, 3], output_activation="softmax", device="cpu", seed=0)
    matrix = plot.confusion_matrix(y, nx.to_numpy(model.predict(X)), 3)
    assert matrix.sum() == 60 and np.array_equal(matrix.sum(axis=1), np.bincount(y, minlength=3))
    ax = plot.plot_confusion_matrix(model, X, y)
    accuracy = np.trace(matrix) / 60
    assert f"{accuracy:.1%}" in ax.get_title()


def test_results_at_different_epochs_trains_on_and_draws_each_stage():
    X, y = _sine(60)
    model = nx.MLP([1, 8, 1], output_activation="sigmoid", device="cpu", seed=0)
    figure = plot.plot_results_at_epochs(model, X, y, epochs_list=(2, 5, 9), loss="mse", learning_rate=0.01)
    titles = [ax.get_title() for ax in figure.axes if ax.get_visible()]
    assert titles == [f"Actual vs predicted for {e} epochs" for e in (2, 5, 9)]
    assert len(model.history) == 9
