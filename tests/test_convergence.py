"""Real data, real results: the numbers the README promises, reached on the CPU."""

import numpy as np
import pytest

import nn_xp as nx


def test_sine_regression_reaches_mse_below_1e_3():
    """The notebooks' example: [1, 10, 10, 1], sigmoid output, MSE, 500 points."""
    x = np.linspace(-2 * np.pi, 2 * np.pi, 500)
    X, y = ((x - x.mean()) / x.std())[:, None], 0.5 * (np.sin(x) + 1)
    model = nx.MLP([1, 10, 10, 1], activation="relu", output_activation="sigmoid", init="he",
                   device="cpu", seed=0)
    history = model.fit(X, y, loss="mse", optimizer="adam", learning_rate=0.01, epochs=300, batch_size=32,
                        verbose=0)
    assert history.history["loss"][-1] < 1e-3
    assert model.evaluate(X, y)["mse"] < 1e-3


def test_digits_reaches_97_percent_test_accuracy():
    datasets = pytest.importorskip("sklearn.datasets", reason="the digits data ships with scikit-learn")
    from sklearn.model_selection import train_test_split

    X, y = datasets.load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    std[std == 0] = 1
    X_train, X_test = (X_train - mean) / std, (X_test - mean) / std
    model = nx.MLP([64, 128, 10], output_activation="softmax", device="cpu", seed=0)
    model.fit(X_train, y_train, optimizer="adam", epochs=100, batch_size=32, verbose=0)
    accuracy = model.evaluate(X_test, y_test)["accuracy"]
    assert accuracy >= 0.97
    assert accuracy == pytest.approx(np.mean(nx.to_numpy(model.predict(X_test)) == y_test))
