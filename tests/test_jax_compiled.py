"""The compiled training step on JAX devices (training/compiled.py): a compiled fit equals the
uncompiled one and NumPy's, its history, callbacks, schedules and early stopping behave as
elsewhere, and the compiled functions are traced once per model and settings."""

import os
import signal

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import nn_xp as nx  # noqa: E402
from nn_xp import backends  # noqa: E402
from nn_xp.nn.philox import dropout_mask  # noqa: E402
from nn_xp.optim.schedules import ExponentialDecay, StepDecay  # noqa: E402
from nn_xp.training import NonFiniteLossWarning, compiled  # noqa: E402
from nn_xp.training.callbacks import Callback, EarlyStopping  # noqa: E402

RTOL = 1e-12  # float64: the same arithmetic, up to the order of a few roundings


@pytest.fixture(autouse=True, scope="module")
def x64():
    """float64 models on JAX need x64 (nn_xp turns it on); put the setting back afterwards."""
    enabled = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", enabled)


def data(n=203, n_features=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    labels = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)
    target = np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.normal(size=n)
    weights = rng.uniform(0.2, 2.0, size=n)
    return X, labels, target, weights


def host(arrays):
    return [np.asarray(backends.to_numpy(a)) for a in arrays]


def assert_close(a, b, rtol=RTOL):
    """Relative to the largest value of the lists (a statistic of 1e-17 may differ by 1e-17)."""
    a, b = host(a), host(b)
    scale = max(float(np.max(np.abs(x))) for x in a)
    for x, y in zip(a, b, strict=True):
        assert float(np.max(np.abs(x - y))) <= rtol * scale


def assert_same_history(h1, h2, rtol=RTOL):
    assert h1.epoch == h2.epoch and h1.stop_reason == h2.stop_reason
    for key, values in h1.history.items():
        if key == "epoch_time":
            continue
        np.testing.assert_allclose(h2.history[key], values, rtol=rtol, atol=1e-15, err_msg=key)


def classifier(device, dropout=0.25):
    return nx.MLP([5, 12, 3], output_activation="softmax", dtype="float64", device=device, seed=3, dropout=dropout)


def regressor(device):
    return nx.MLP([5, 10, 8, 1], activation="tanh", dtype="float64", device=device, seed=4, norm="batch")


def test_compiled_adam_with_l2_and_dropout_equals_uncompiled_jax_and_numpy():
    X, labels, _, _ = data()
    fits = {}
    for name, device, compile in [("numpy", "cpu", None), ("jax", "jax:cpu", False), ("jit", "jax:cpu", None)]:
        model = classifier(device)
        history = model.fit(X, labels, optimizer="adam", learning_rate=0.01, epochs=2, batch_size=32, l2=0.05,
                            validation_split=0.2, verbose=0, compile=compile)
        fits[name] = model, history
    numpy_model, numpy_history = fits["numpy"]
    for name in ("jax", "jit"):
        model, history = fits[name]
        assert_close(numpy_model.parameters(), model.parameters())
        assert_close(numpy_model.optimizer.state.v, model.optimizer.state.v)
        assert model.optimizer.step_count == numpy_model.optimizer.step_count == 2 * 6  # 162 rows: 5 full + 1
        assert_same_history(numpy_history, history)
    assert "_compiled" in fits["jit"][0].__dict__ and "_compiled" not in fits["jax"][0].__dict__


def test_compiled_sgd_momentum_with_batch_norm_and_sample_weights_equals_numpy():
    X, _, target, weights = data()
    fits = []
    for device in ("cpu", "jax:cpu"):
        model = regressor(device)
        history = model.fit(X, target, optimizer="momentum", learning_rate=0.05, epochs=3, batch_size=40,
                            sample_weight=weights, clip_norm=1.0, verbose=0)
        fits.append((model, history))
    (numpy_model, numpy_history), (jax_model, jax_history) = fits
    assert jax_model.optimizer.name == "sgd" and jax_model.optimizer.momentum > 0
    assert "_compiled" in jax_model.__dict__  # compiled by default on a JAX device
    assert_close(numpy_model.parameters(), jax_model.parameters())
    assert_close(numpy_model.buffers(), jax_model.buffers())  # BatchNorm's running statistics
    assert_same_history(numpy_history, jax_history)
    assert set(jax_history.history) >= {"loss", "mse", "mae", "r2"}


class _Steps(Callback):
    """Records the optimizer's step count and the first weight after every batch."""

    def __init__(self):
        self.seen = []

    def on_batch_end(self, epoch, batch):
        model = self.model
        self.seen.append((epoch, batch, model.optimizer.step_count, float(host(model.parameters()[:1])[0][0, 0])))


def test_early_stopping_a_schedule_and_a_batch_callback_behave_as_on_numpy():
    X, labels, _, _ = data()
    X_val, labels_val = X[:60], labels[:60]
    runs = []
    for device in ("cpu", "jax:cpu"):
        model = classifier(device)
        steps = _Steps()
        stop = EarlyStopping(monitor="val_loss", patience=1, min_delta=10.0)  # no epoch improves enough
        history = model.fit(X, labels, epochs=6, batch_size=50, learning_rate=0.02,
                            schedule=ExponentialDecay(gamma=0.5), validation_data=(X_val, labels_val),
                            callbacks=[stop, steps], verbose=0)
        runs.append((model, history, steps))
    (numpy_model, numpy_history, numpy_steps), (jax_model, jax_history, jax_steps) = runs
    assert "_compiled" in jax_model.__dict__
    assert jax_history.epoch == [0, 1, 2] and jax_history.stop_reason == "stopped by a callback"
    assert_same_history(numpy_history, jax_history)
    assert len(set(jax_history.history["learning_rate"])) == 3  # the schedule moved it
    assert [s[:3] for s in jax_steps.seen] == [s[:3] for s in numpy_steps.seen]
    assert [s[:3] for s in jax_steps.seen][:5] == [(0, 0, 1), (0, 1, 2), (0, 2, 3), (0, 3, 4), (0, 4, 5)]
    np.testing.assert_allclose([s[3] for s in jax_steps.seen], [s[3] for s in numpy_steps.seen], rtol=RTOL)
    assert_close(numpy_model.parameters(), jax_model.parameters())


def test_later_epochs_and_fits_reuse_the_compiled_step_and_compilation_off_agrees():
    X, labels, _, _ = data(n=90)
    model = classifier("jax:cpu", dropout=0.0)
    model.fit(X, labels, epochs=1, batch_size=32, verbose=0)  # 2 full batches under scan, one of 26
    traced = compiled.traces()
    assert traced >= 2  # the step scanned over the full batches, and the partial batch's
    model.fit(X, labels, epochs=3, batch_size=32, schedule=StepDecay(step_size=1, gamma=0.5), verbose=0)
    assert compiled.traces() == traced  # later epochs, another fit and new learning rates: no new trace
    plain = classifier("jax:cpu", dropout=0.0)
    plain.fit(X, labels, epochs=1, batch_size=32, verbose=0, compile=False)
    plain.fit(X, labels, epochs=3, batch_size=32, schedule=StepDecay(step_size=1, gamma=0.5), verbose=0, compile=False)
    assert compiled.traces() == traced
    assert_close(plain.parameters(), model.parameters())
    assert_same_history(plain.history, model.history)
    clone = model.copy()
    assert "_compiled" not in clone.__dict__ and "_compiled" in model.__dict__
    model.fit(X, labels, epochs=1, batch_size=32, l2=0.1, verbose=0)  # a setting the trace bakes in
    assert compiled.traces() > traced


def test_compile_is_checked_by_name():
    X, labels, _, _ = data(n=40)
    with pytest.raises(TypeError, match="compile must be None, True or False"):
        classifier("jax:cpu").fit(X, labels, epochs=1, verbose=0, compile="yes")
    with pytest.raises(ValueError, match="compile=True needs a device whose library compiles.*'cpu'"):
        classifier("cpu").fit(X, labels, epochs=1, verbose=0, compile=True)
    with pytest.raises(ValueError, match="compile=True does not cover optimizer='lbfgs'"):
        classifier("jax:cpu").fit(X, labels, optimizer="lbfgs", batch_size=None, epochs=1, verbose=0, compile=True)
    model = classifier("jax:cpu")
    model.fit(X, labels, epochs=1, verbose=0, compile=True)
    assert model.optimizer.step_count == 2


def test_the_ops_that_compile_and_a_traced_dropout_step():
    import jax.numpy as jnp

    assert isinstance(backends.ops_for(backends.namespace("jax:cpu")), backends.JaxOps)
    assert backends.ops_for(backends.namespace("cpu")).compile is None
    rows = np.array([0, 7, 2**33 + 5, 11])
    expected = dropout_mask(backends.namespace("cpu"), (1, 2), 2**32 + 9, 3, rows, 10, 0.4)
    xp = backends.namespace("jax:cpu")
    mask = jax.jit(lambda r, s: dropout_mask(xp, (1, 2), s, 3, r, 10, 0.4))(jnp.asarray(rows),
                                                                          jnp.asarray(2**32 + 9))
    np.testing.assert_array_equal(np.asarray(mask), expected)
    assert 0 < expected.sum() < expected.size


class _CtrlC(Callback):
    """A real SIGINT (Ctrl-C) at the start of an epoch, or after a batch."""

    def __init__(self, epoch, batch=None):
        self.at = (epoch, batch)

    def on_epoch_begin(self, epoch):
        if self.at == (epoch, None):
            os.kill(os.getpid(), signal.SIGINT)


class _CtrlCAfterBatch(_CtrlC):
    def on_batch_end(self, epoch, batch):
        if self.at == (epoch, batch):
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_stops_after_the_compiled_call_or_after_the_step():
    X, labels, _, _ = data(n=100)
    model = classifier("jax:cpu", dropout=0.0)  # no per-batch callback: each epoch is one compiled call
    history = model.fit(X, labels, epochs=4, batch_size=30, callbacks=[_CtrlC(1)], verbose=0)
    assert history.stop_reason == "interrupted" and history.epoch == [0, 1]
    assert model.optimizer.step_count == 4 + 4  # the call of the 3 full batches and the last one ran whole
    model = classifier("jax:cpu")  # with dropout the last, partial batch is a call of its own
    history = model.fit(X, labels, epochs=4, batch_size=30, callbacks=[_CtrlC(1)], verbose=0)
    assert history.stop_reason == "interrupted" and history.epoch == [0, 1]
    assert model.optimizer.step_count == 4 + 3  # the call of the 3 full batches ran whole, the last batch not
    model = classifier("jax:cpu", dropout=0.0)
    history = model.fit(X, labels, epochs=4, batch_size=30, callbacks=[_CtrlCAfterBatch(1, 2)], verbose=0)
    assert history.stop_reason == "interrupted" and history.epoch == [0, 1]
    assert model.optimizer.step_count == 4 + 3  # stopped after the step of the signal
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_diverging_compiled_epoch_is_undone_as_elsewhere():
    X, labels, _, _ = data(n=100)
    model = classifier("jax:cpu", dropout=0.0)
    model.fit(X, labels, epochs=1, batch_size=30, verbose=0)
    good = host(model.parameters())
    with pytest.warns(NonFiniteLossWarning, match="training stopped and the model was restored"):
        history = model.fit(X * 1e200, labels, epochs=2, batch_size=30, learning_rate=1e300, optimizer="sgd",
                            verbose=0)
    assert history.stop_reason == "non-finite loss"
    assert all(np.array_equal(a, b) for a, b in zip(host(model.parameters()), good))


@pytest.mark.parametrize("compile", [None, False])
def test_a_non_finite_buffer_with_a_finite_loss_is_caught_compiled_or_not(compile):
    """The compiled epoch checks its parameters and buffers in the call itself (read back with the
    sums): a NaN running statistic, which leaves the loss finite, stops the fit as elsewhere."""
    X, _, target, _ = data(n=100)
    model = regressor("jax:cpu")
    model.fit(X, target, epochs=1, batch_size=30, verbose=0, compile=compile)
    buffers = model._store.buffers
    buffers[0] = buffers[0] * np.nan
    with pytest.warns(NonFiniteLossWarning, match="the parameters or buffers became NaN or infinite"):
        history = model.fit(X, target, epochs=2, batch_size=30, verbose=0, compile=compile)
    assert history.stop_reason == "non-finite loss" and history.epoch == [0]
    assert model.optimizer.step_count == 4  # the epoch's 4 steps undone
