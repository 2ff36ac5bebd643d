"""The fit loop: batch sizes, validation, history, verbosity, continuing, callbacks, Ctrl-C, NaN."""

import os
import signal

import numpy as np
import pytest

import nn_xp as nx
from nn_xp.training.callbacks import Callback, EarlyStopping, TerminateOnNaN

from .conftest import relative_difference


def sine(n=500):
    x = np.linspace(-2 * np.pi, 2 * np.pi, n)
    return ((x - x.mean()) / x.std())[:, None], 0.5 * (np.sin(x) + 1)


def blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    centers = np.array([[0, 3], [3, 0], [-3, -3]])
    return centers[y] + rng.normal(size=(n, 2)), y


def _params(model):
    return [nx.to_numpy(p) for p in model.parameters()]


def test_full_batch_epoch_is_one_gradient_descent_step(device, dtype):
    X, y = sine(40)
    model = nx.MLP([1, 5, 1], activation="tanh", output_activation="sigmoid", dtype=dtype, device=device, seed=0)
    reference = model.copy()
    _, grads = reference.loss_and_grads(X, y, loss="mse")
    expected = [nx.to_numpy(p) - 0.3 * nx.to_numpy(g) for p, g in zip(reference.parameters(), grads)]
    model.fit(X, y, loss="mse", optimizer="sgd", learning_rate=0.3, epochs=1, batch_size=None,
              shuffle=False, verbose=0)
    for got, want in zip(_params(model), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-7)


def test_stochastic_gradient_descent_is_batch_size_one():
    X, y = sine(10)
    model = nx.MLP([1, 4, 1], output_activation="sigmoid", dtype="float64", device="cpu", seed=1)
    manual = model.copy()
    for i in range(10):
        _, grads = manual.loss_and_grads(X[i : i + 1], y[i : i + 1], loss="mse")
        for p, g in zip(manual.parameters(), grads):
            p -= 0.1 * g
    model.fit(X, y, loss="mse", optimizer="sgd", learning_rate=0.1, epochs=1, batch_size=1, shuffle=False,
              verbose=0)
    for got, want in zip(_params(model), _params(manual)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_history_records_loss_metrics_learning_rate_and_time():
    X, y = blobs()
    model = nx.MLP([2, 8, 3], output_activation="softmax", device="cpu", seed=0)
    history = model.fit(X, y, epochs=4, batch_size=16, validation_split=0.25, verbose=0)
    assert history.epoch == [0, 1, 2, 3]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_time"):
        assert len(history.history[key]) == 4, key
    assert history.history["learning_rate"] == [0.001] * 4
    assert all(t > 0 for t in history.history["epoch_time"])
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_epoch_loss_is_the_mean_of_batch_losses():
    """With SGD at learning rate ~0 the parameters stay put, so the epoch loss equals the full loss."""
    X, y = blobs(50)
    model = nx.MLP([2, 8, 3], output_activation="softmax", dtype="float64", device="cpu", seed=0)
    full, _ = model.loss_and_grads(X, y)
    history = model.fit(X, y, optimizer="sgd", learning_rate=1e-300, epochs=1, batch_size=7, verbose=0)
    assert history.history["loss"][0] == pytest.approx(full, rel=1e-12)
    assert history.history["accuracy"][0] == pytest.approx(model.evaluate(X, y)["accuracy"])


def test_regression_metrics_are_logged():
    X, y = sine(64)
    model = nx.MLP([1, 8, 1], output_activation="sigmoid", dtype="float64", device="cpu", seed=0)
    history = model.fit(X, y, loss="mse", optimizer="sgd", learning_rate=1e-300, epochs=1, batch_size=10,
                        validation_data=(X, y), verbose=0)
    h = {k: v[0] for k, v in history.history.items()}
    assert h["mse"] == pytest.approx(h["loss"])
    assert h["val_mse"] == pytest.approx(h["mse"], rel=1e-12)
    assert h["val_mae"] == pytest.approx(h["mae"], rel=1e-12)
    assert h["val_r2"] == pytest.approx(h["r2"], rel=1e-9)
    out = nx.to_numpy(model.forward(X))[:, 0]
    assert h["r2"] == pytest.approx(1 - np.sum((out - y) ** 2) / np.sum((y - y.mean()) ** 2), rel=1e-9)


def test_verbose_prints_the_notebook_line_every_verbose_epoch(capsys):
    X, y = sine(50)
    model = nx.MLP([1, 4, 1], output_activation="sigmoid", device="cpu", seed=0)
    model.fit(X, y, epochs=5, batch_size=10, verbose=1, verbose_epoch=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(" Loss : ")[0] for line in lines] == ["Epoch 0", "Epoch 2", "Epoch 4"]
    float(lines[0].split(" Loss : ")[1])
    model.fit(X, y, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop", "adam", "adamw"])
def test_fit_twice_continues_exactly_like_one_long_fit(optimizer):
    X, y = blobs()
    straight = nx.MLP([2, 6, 3], output_activation="softmax", device="cpu", seed=3)
    straight.fit(X, y, optimizer=optimizer, epochs=6, batch_size=16, verbose=0)
    halves = nx.MLP([2, 6, 3], output_activation="softmax", device="cpu", seed=3)
    halves.fit(X, y, optimizer=optimizer, epochs=3, batch_size=16, verbose=0)
    steps = halves.optimizer.step_count
    halves.fit(X, y, optimizer=optimizer, epochs=3, batch_size=16, verbose=0)
    assert halves.optimizer.step_count == 2 * steps
    assert halves.history.epoch == list(range(6))
    for a, b in zip(_params(straight), _params(halves)):
        np.testing.assert_array_equal(a, b)


def test_same_seed_same_training_on_every_backend(device):
    X, y = blobs(60)
    results = []
    for dev in ("cpu", device):
        model = nx.MLP([2, 6, 3], output_activation="softmax", dtype="float64", device=dev, seed=5)
        model.fit(X, y, epochs=3, batch_size=8, verbose=0)
        results.append(_params(model))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_data_already_on_the_device_trains_like_host_data(device):
    """X and y given as arrays of the model's backend (CuPy arrays on a GPU) are used where they are."""
    X, y = blobs(60)
    results = []
    for as_given in (lambda a: a, lambda a: nx.to_device(a, device)):
        model = nx.MLP([2, 6, 3], output_activation="softmax", dtype="float64", device=device, seed=5)
        history = model.fit(as_given(X), as_given(y), epochs=2, batch_size=8, verbose=0)
        predicted = nx.to_numpy(model.predict(as_given(X)))
        results.append((_params(model), history.history["loss"], predicted))
    (host_params, host_loss, host_pred), (dev_params, dev_loss, dev_pred) = results
    for a, b in zip(host_params, dev_params):
        np.testing.assert_array_equal(a, b)
    assert host_loss == dev_loss
    np.testing.assert_array_equal(host_pred, dev_pred)


def _host_reads_during_fit(monkeypatch, n_samples, epochs):
    """How many times fit turns a device array into a host value (float, int, bool, NumPy, DLPack)
    on array-api-strict, whose code path is the one CuPy runs but for the fused kernels."""
    import array_api_strict

    Array = type(array_api_strict.asarray(1.0))
    count = {"reads": 0}
    for name in ("__float__", "__int__", "__bool__", "__index__", "__complex__", "__array__", "__dlpack__"):
        original = getattr(Array, name)

        def counted(self, *args, _original=original, **kwargs):
            count["reads"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Array, name, counted)
    X, y = blobs(n_samples)
    model = nx.MLP([2, 6, 3], output_activation="softmax", device="array_api_strict", seed=0)
    X, y = nx.to_device(X, "array_api_strict"), nx.to_device(y, "array_api_strict")
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)  # the first fit makes the optimizer state
    count["reads"] = 0
    model.fit(X, y, epochs=epochs, batch_size=8, verbose=0)
    return count["reads"]


def test_no_host_synchronisation_inside_an_epoch(monkeypatch):
    """Host reads per fit depend on the number of epochs, never on the number of batches."""
    few_batches = _host_reads_during_fit(monkeypatch, 40, epochs=3)  # 5 batches an epoch
    many_batches = _host_reads_during_fit(monkeypatch, 160, epochs=3)  # 20 batches an epoch
    more_epochs = _host_reads_during_fit(monkeypatch, 40, epochs=6)
    assert few_batches == many_batches
    assert 0 < few_batches < more_epochs <= 2 * few_batches + 2


class StepCounter(Callback):
    def __init__(self):
        self.events = []

    def on_train_begin(self, logs):
        self.events.append("begin")

    def on_epoch_end(self, epoch, logs):
        self.events.append(("epoch", epoch, sorted(logs)))

    def on_batch_end(self, epoch, batch):
        self.events.append(("batch", epoch, batch))

    def on_train_end(self, logs):
        self.events.append("end")


def test_custom_callback_sees_every_hook():
    X, y = blobs(20)
    counter = StepCounter()
    nx.MLP([2, 4, 3], output_activation="softmax", device="cpu", seed=0).fit(
        X, y, epochs=2, batch_size=10, callbacks=[counter], verbose=0)
    assert counter.events[0] == "begin" and counter.events[-1] == "end"
    assert [e for e in counter.events if e[0] == "batch"] == [
        ("batch", 0, 0), ("batch", 0, 1), ("batch", 1, 0), ("batch", 1, 1)]
    assert counter.events[3][:2] == ("epoch", 0) and "accuracy" in counter.events[3][2]


def test_early_stopping_stops_and_restores_the_best_weights():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(80, 5)), rng.integers(0, 3, size=80)  # labels are noise: it must overfit
    model = nx.MLP([5, 64, 3], output_activation="softmax", device="cpu", seed=0)
    stopper = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    history = model.fit(X, y, optimizer="adam", learning_rate=0.01, epochs=200, batch_size=8,
                        validation_split=0.3, callbacks=[stopper], verbose=0)
    assert history.stop_reason == "stopped by a callback"
    assert len(history) == stopper.stopped_epoch + 1 < 60
    best = stopper.best_epoch
    assert history.history["val_loss"][best] == min(history.history["val_loss"])
    for a, b in zip(_params(model), [nx.to_numpy(w) for w in stopper.best_weights]):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_needs_a_logged_monitor():
    X, y = blobs(20)
    model = nx.MLP([2, 4, 3], output_activation="softmax", device="cpu", seed=0)
    with pytest.raises(ValueError, match="val_loss"):
        model.fit(X, y, epochs=2, callbacks=[EarlyStopping()], verbose=0)


class InterruptAt(Callback):
    """Delivers a real SIGINT (Ctrl-C) during a chosen step."""

    def __init__(self, epoch, batch):
        self.at = (epoch, batch)

    def on_batch_end(self, epoch, batch):
        if (epoch, batch) == self.at:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ctrl_c_stops_after_the_current_step_and_returns_the_history(seed):
    X, y = blobs(100)
    rng = np.random.default_rng(seed)
    epoch, batch = int(rng.integers(0, 3)), int(rng.integers(0, 10))
    model = nx.MLP([2, 6, 3], output_activation="softmax", device="cpu", seed=0)
    history = model.fit(X, y, epochs=5, batch_size=10, callbacks=[InterruptAt(epoch, batch)], verbose=0)
    assert history.stop_reason == "interrupted"
    assert history.epoch == list(range(epoch + 1))
    assert model.optimizer.step_count == epoch * 10 + batch + 1
    # The model is the one the optimizer stepped: continuing works and is consistent.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    model.fit(X, y, epochs=1, batch_size=10, verbose=0)
    assert model.optimizer.step_count == epoch * 10 + batch + 11


def test_nan_loss_stops_and_restores_the_last_good_epoch(monkeypatch):
    X, y = blobs(40)
    model = nx.MLP([2, 6, 3], output_activation="softmax", device="cpu", seed=0)
    model.fit(X, y, epochs=2, batch_size=10, verbose=0)
    good = _params(model)
    steps = model.optimizer.step_count
    calls = {"n": 0}

    def poison(original):
        def poisoned(Xb, Yb, head, **kwargs):
            L, grads, out = original(Xb, Yb, head, **kwargs)
            calls["n"] += 1
            if calls["n"] == 3:  # a NaN in one gradient, mid-epoch
                grads[0] *= np.nan
            return L, grads, out

        return poisoned

    monkeypatch.setattr(model, "train_step", poison(model.train_step))
    with pytest.warns(RuntimeWarning, match="restored to the end of epoch 1"):
        history = model.fit(X, y, epochs=3, batch_size=10, verbose=0)
    assert history.stop_reason == "non-finite loss"
    assert history.epoch == [0, 1]
    assert model.optimizer.step_count == steps
    for a, b in zip(good, _params(model)):
        np.testing.assert_array_equal(a, b)


def test_terminate_on_nan_watches_the_validation_loss():
    X, y = blobs(40)
    model = nx.MLP([2, 6, 3], output_activation="softmax", device="cpu", seed=0)

    class PoisonValidation(Callback):
        def on_epoch_end(self, epoch, logs):
            logs["val_loss"] = float("nan")

    history = model.fit(X, y, epochs=5, validation_split=0.2, verbose=0,
                        callbacks=[PoisonValidation(), TerminateOnNaN()])
    assert len(history) == 1


def test_clip_norm_bounds_the_step():
    X, y = blobs(30)
    start = nx.MLP([2, 6, 3], output_activation="softmax", dtype="float64", device="cpu", seed=0)
    free, clipped = start.copy(), start.copy()
    free.fit(X, y, optimizer="sgd", learning_rate=0.1, epochs=1, batch_size=None, verbose=0)
    clipped.fit(X, y, optimizer="sgd", learning_rate=0.1, epochs=1, batch_size=None, verbose=0, clip_norm=1e-3)

    def step(model):
        return np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(_params(model), _params(start))))

    assert step(clipped) == pytest.approx(0.1 * 1e-3, rel=1e-4)
    assert step(free) > 10 * step(clipped)


def test_schedule_sets_the_learning_rate_per_epoch():
    X, y = blobs(30)
    model = nx.MLP([2, 4, 3], output_activation="softmax", device="cpu", seed=0)
    history = model.fit(X, y, optimizer="sgd", learning_rate=0.1, epochs=4, verbose=0,
                        schedule=nx.schedules.ExponentialDecay(gamma=0.5))
    np.testing.assert_allclose(history.history["learning_rate"], [0.1, 0.05, 0.025, 0.0125])


BAD_FIT = [
    (dict(optimizer="adagrad"), ValueError, "optimizer"),
    (dict(schedule="linear-warmup"), ValueError, "schedule"),
    (dict(callbacks=["bogus"]), ValueError, "callbacks[0]"),
    (dict(callbacks=[print]), TypeError, "callbacks[0]"),
    (dict(learning_rate=0), ValueError, "learning_rate"),
    (dict(learning_rate=-1e-3), ValueError, "learning_rate"),
    (dict(learning_rate=float("nan")), ValueError, "learning_rate"),
    (dict(learning_rate=float("inf")), ValueError, "learning_rate"),
    (dict(epochs=0), ValueError, "epochs"),
    (dict(epochs=2.5), TypeError, "epochs"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=-4), ValueError, "batch_size"),
    (dict(batch_size="32"), TypeError, "batch_size"),
    (dict(validation_split=1.0), ValueError, "validation_split"),
    (dict(validation_split=-0.1), ValueError, "validation_split"),
    (dict(validation_data=(np.zeros((5, 3)), [0] * 5)), ValueError, "validation_data[0]"),
    (dict(validation_data=(np.zeros((5, 2)), [0] * 4)), ValueError, "validation_data[1]"),
    (dict(validation_data=np.zeros((5, 2))), TypeError, "validation_data"),
    (dict(verbose=-1), ValueError, "verbose"),
    (dict(clip_norm=0), ValueError, "clip_norm"),
    (dict(loss="hinge"), ValueError, "loss"),
    (dict(optimizer="lbfgs"), ValueError, "batch_size must be None with optimizer='lbfgs'"),
    (dict(optimizer="lbfgs", batch_size=None, clip_norm=1.0), ValueError, "clip_norm and clip_value must be None"),
    (dict(optimizer="lbfgs", batch_size=None, callbacks=[type("PerBatch", (Callback,), {"on_batch_end": print})()]),
     ValueError, "callbacks[0] (PerBatch) overrides on_batch_end"),
]


@pytest.mark.parametrize("kwargs,exception,words", BAD_FIT)
def test_fit_rejects_before_training(kwargs, exception, words):
    X, y = blobs(20)
    model = nx.MLP([2, 4, 3], output_activation="softmax", device="cpu", seed=0)
    before = _params(model)
    with pytest.raises(exception) as info:
        model.fit(X, y, epochs=kwargs.pop("epochs", 2), verbose=kwargs.pop("verbose", 0), **kwargs)
    assert words in str(info.value)
    for a, b in zip(before, _params(model)):
        np.testing.assert_array_equal(a, b)
    assert model.history is None


def test_fit_rejects_targets_that_do_not_fit_the_loss():
    X, _ = blobs(20)
    softmax = nx.MLP([2, 4, 3], output_activation="softmax", device="cpu", seed=0)
    with pytest.raises(ValueError, match="integer class labels"):
        softmax.fit(X, np.linspace(0, 1, 20), epochs=1, verbose=0)
    sigmoid = nx.MLP([2, 4, 1], output_activation="sigmoid", device="cpu", seed=0)
    with pytest.raises(ValueError, match="two classes"):
        sigmoid.fit(X, np.arange(20) % 3, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="momentum"):
        softmax.fit(X, np.arange(20) % 3, optimizer=nx.optim.SGD(softmax.parameters(), 0.1, momentum=-1), verbose=0)


# ---- sample and class weights ----------------------------------------------------------------------
WEIGHT_CASES = {
    "cross_entropy": ([4, 6, 3], "softmax", lambda rng, n: rng.integers(0, 3, n)),
    "binary_cross_entropy": ([4, 6, 2], "sigmoid", lambda rng, n: rng.integers(0, 2, (n, 2)).astype(float)),
    "mse": ([4, 6, 2], "linear", lambda rng, n: rng.normal(size=(n, 2))),
}


@pytest.mark.parametrize("loss", sorted(WEIGHT_CASES))
def test_integer_sample_weights_equal_repeated_rows(loss, device):
    """Full batch, float64: weights (2, 0, 1, 3, ...) train exactly as those rows repeated."""
    sizes, output, targets = WEIGHT_CASES[loss]
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(12, 4)), targets(rng, 12)
    w = rng.integers(0, 4, 12)
    w[0] = 2
    repeated = np.repeat(np.arange(12), w)

    def train(X, y, **kwargs):
        model = nx.MLP(sizes, activation="tanh", output_activation=output, dtype="float64", device=device, seed=1)
        history = model.fit(X, y, optimizer="adam", learning_rate=0.05, epochs=4, batch_size=None, shuffle=False,
                            l2=0.1, verbose=0, **kwargs)
        return model, history

    weighted, history_w = train(X, y, sample_weight=w)
    plain, history_r = train(X[repeated], y[repeated])
    for a, b in zip(weighted.parameters(), plain.parameters()):
        assert relative_difference(a, b) <= 1e-12
    np.testing.assert_allclose(history_w.history["loss"], history_r.history["loss"], rtol=1e-12)
    metric = "accuracy" if loss != "mse" else "r2"
    np.testing.assert_allclose(history_w.history[metric], history_r.history[metric], rtol=1e-12)
    by_weight, by_rows = weighted.evaluate(X, y, sample_weight=w), weighted.evaluate(X[repeated], y[repeated])
    for key in by_rows:
        assert by_weight[key] == pytest.approx(by_rows[key], rel=1e-12, abs=1e-15)


def test_class_weight_balanced_and_a_dict_are_per_sample_weights():
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(30, 4)), np.array([0] * 20 + [1] * 7 + [2] * 3)

    def train(**kwargs):
        model = nx.MLP([4, 5, 3], output_activation="softmax", dtype="float64", device="cpu", seed=2)
        model.fit(X, y, epochs=2, batch_size=8, verbose=0, **kwargs)
        return model.parameters()

    balanced = 30 / (3 * np.bincount(y))  # scikit-learn's "balanced"
    for a, b in zip(train(class_weight="balanced"), train(sample_weight=balanced[y])):
        np.testing.assert_array_equal(a, b)
    both = np.linspace(0.5, 2.0, 30)
    for a, b in zip(train(class_weight={2: 4.0}, sample_weight=both),
                    train(sample_weight=both * np.where(y == 2, 4.0, 1.0))):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="class_weight names class 3; the classes are 0..2"):
        train(class_weight={3: 1.0})
    regressor = nx.MLP([4, 1], seed=0)
    with pytest.raises(ValueError, match="class_weight needs a classifier"):
        regressor.fit(X, rng.normal(size=30), class_weight="balanced", verbose=0)


def test_zero_weight_batches_add_nothing():
    """A batch whose samples all weigh 0 gives a zero gradient, not NaN."""
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(20, 4)), rng.integers(0, 3, 20)
    w = np.r_[np.zeros(10), np.ones(10)]
    model = nx.MLP([4, 5, 3], output_activation="softmax", dtype="float64", device="cpu", seed=2)
    before = [p.copy() for p in model.parameters()]
    history = model.fit(X, y, optimizer="sgd", epochs=1, batch_size=10, shuffle=False, sample_weight=w, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    reference = nx.MLP([4, 5, 3], output_activation="softmax", dtype="float64", device="cpu", seed=2)
    reference.fit(X[10:], y[10:], optimizer="sgd", epochs=1, batch_size=10, shuffle=False, verbose=0)
    assert not np.array_equal(before[0], model.parameters()[0])
    for a, b in zip(model.parameters(), reference.parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_fit_shows_its_real_parameters_in_help():
    import inspect

    parameters = inspect.signature(nx.MLP.fit).parameters
    for name in ("self", "X", "y", "epochs", "batch_size", "sample_weight", "class_weight", "l2", "distributed"):
        assert name in parameters
    assert "sample_weight" in nx.MLP.fit.__doc__


def test_on_a_terminal_fit_shows_a_bar_that_moves_per_batch_not_epoch_lines(capsys, monkeypatch):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 3)), rng.integers(0, 2, 200)
    model = nx.MLP([3, 4, 2], output_activation="softmax", seed=0)
    model.fit(X, y, epochs=3, batch_size=20, validation_split=0.2, verbose=1)
    out, err = capsys.readouterr()
    assert "Epoch" not in out  # the notebooks' lines only when verbose_epoch asks for them
    assert "24/24" in err and "batch" in err and "val_loss=" in err  # 3 epochs x 8 batches
    model.fit(X, y, epochs=2, batch_size=20, verbose=1, verbose_epoch=1)
    assert capsys.readouterr().out.count("Epoch ") == 2


# ---- L-BFGS: full batch, one step per epoch -----------------------------------------------------
def _lbfgs_by_hand(model, X, y, epochs, l2, **hyperparameters):
    """What fit(optimizer="lbfgs", batch_size=None) promises: one step(closure) per epoch, the
    closure being the full-batch loss and gradients with the L2 penalty l2 / (2n) sum ||W||^2."""
    opt = nx.optim.LBFGS(model.parameters(), **hyperparameters)
    n = X.shape[0]

    def closure():
        loss, grads = model.loss_and_grads(X, y)
        params = model.parameters()
        for i in (0, 2):  # the weights, not the biases
            loss += l2 / (2 * n) * float(np.sum(params[i] ** 2))
            grads[i] = grads[i] + l2 / n * params[i]
        return loss, grads

    return [opt.step(closure) for _ in range(epochs)]


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_fit_is_one_closure_step_per_epoch(line_search_fn):
    X, y = blobs(60)
    model = nx.MLP([2, 6, 3], activation="tanh", output_activation="softmax", dtype="float64", device="cpu", seed=2)
    manual = model.copy()
    optimizer = nx.optim.LBFGS(model.parameters(), max_iter=5, line_search_fn=line_search_fn)
    history = model.fit(X, y, optimizer=optimizer, batch_size=None, epochs=3, l2=0.1, verbose=0)
    losses = _lbfgs_by_hand(manual, X, y, 3, 0.1, max_iter=5, line_search_fn=line_search_fn)
    assert model.optimizer.step_count == 3
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-12)
    assert history.history["loss"][-1] < history.history["loss"][0]
    for a, b in zip(_params(model), _params(manual)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_lbfgs_fit_by_name_with_validation_continues_exactly():
    X, y = blobs(80)
    settings = dict(optimizer="lbfgs", batch_size=None, validation_data=(X[:20], y[:20]), verbose=0)
    straight = nx.MLP([2, 6, 3], output_activation="softmax", device="cpu", seed=3)
    straight.fit(X[20:], y[20:], epochs=4, **settings)
    halves = nx.MLP([2, 6, 3], output_activation="softmax", device="cpu", seed=3)
    halves.fit(X[20:], y[20:], epochs=2, **settings)
    halves.fit(X[20:], y[20:], epochs=2, **settings)
    split = nx.MLP([2, 6, 3], output_activation="softmax", device="cpu", seed=3)
    history = split.fit(X, y, optimizer="lbfgs", batch_size=None, epochs=2, validation_split=0.25, verbose=0)
    assert history.history["loss"][1] < history.history["loss"][0] and "val_accuracy" in history.history
    assert type(halves.optimizer) is nx.optim.LBFGS and halves.optimizer.step_count == 4
    assert "val_loss" in halves.history.history and halves.history.epoch == [0, 1, 2, 3]
    for a, b in zip(_params(straight), _params(halves)):
        np.testing.assert_array_equal(a, b)


def test_lbfgs_non_finite_epoch_restores_parameters_and_memory(monkeypatch):
    X, y = blobs(40)
    model = nx.MLP([2, 6, 3], output_activation="softmax", dtype="float64", device="cpu", seed=0)
    model.fit(X, y, optimizer="lbfgs", batch_size=None, epochs=2, verbose=0)
    good, scalars = _params(model), dict(model.optimizer.scalars, ro=list(model.optimizer.scalars["ro"]))
    memory = {k: [nx.to_numpy(v) for v in vs] for k, vs in model.optimizer.state.items()}
    calls = {"n": 0}
    original = model.train_step

    def poisoned(Xb, Yb, head, **kwargs):
        L, grads, out = original(Xb, Yb, head, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            grads[0] *= np.nan
        return L, grads, out

    monkeypatch.setattr(model, "train_step", poisoned)
    with pytest.warns(RuntimeWarning, match="restored to the end of epoch 1"):
        history = model.fit(X, y, optimizer="lbfgs", batch_size=None, epochs=3, verbose=0)
    assert history.stop_reason == "non-finite loss" and history.epoch == [0, 1]
    assert model.optimizer.scalars == scalars and model.optimizer.step_count == 2
    for key, vectors in memory.items():
        for a, b in zip(vectors, model.optimizer.state[key]):
            np.testing.assert_array_equal(a, nx.to_numpy(b))
    for a, b in zip(good, _params(model)):
        np.testing.assert_array_equal(a, b)
