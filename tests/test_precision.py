"""Mixed precision (precision.py): half-precision steps against float32, dynamic loss scaling, and
training that reaches float32's accuracy. On NumPy this is the emulation; CuPy runs it on a GPU."""

import numpy as np
import pytest

import nn_xp as nx
from nn_xp.training.precision import LossScaler

from .conftest import GPU_COUNT

DEVICES = ["cpu"] + (["cuda:0"] if GPU_COUNT else [])


def _batch(n=64, d=20, k=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, k, n)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("half, tolerance", [("float16", 1e-3), ("bfloat16", 1e-2)])
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_one_mixed_step_gives_float32s_gradients_to_half_precision(device, half, tolerance, activation):
    """Each gradient within `tolerance` of float32's (norm-wise): float16 keeps 11 significant bits
    (rounding 4.9e-4) and bfloat16 8 (3.9e-3). With ReLU, bfloat16's rounding also moves some
    pre-activations across 0, switching those units' gradients off or on: twice the tolerance
    (measured 1.6e-2 on the first layer's weights, the others under 8e-3)."""
    if half == "bfloat16" and activation == "relu":
        tolerance *= 2
    X, y = _batch()
    model = nx.MLP([20, 32, 16, 5], activation=activation, output_activation="softmax", device=device, seed=0)
    head = model.head()
    Xd, Y = model.check_input(X), model.check_target(y, 64, head)
    L, reference, _ = model.train_step(Xd, Y, head, reuse=False)
    reference = [nx.to_numpy(g).astype(np.float64) for g in reference]
    L_half, grads, _ = model.train_step(Xd, Y, head, update_buffers=True, half=half, scale=1024.0)
    assert abs(float(L_half) - float(L)) <= tolerance * abs(float(L))
    for g, r in zip(grads, reference):
        assert str(g.dtype) == "float32"
        assert np.linalg.norm(nx.to_numpy(g) - r) <= tolerance * np.linalg.norm(r)


def test_an_overflow_skips_the_step_halves_the_scale_and_the_scale_grows_back():
    X, y = _batch(40)
    model = nx.MLP([20, 8, 5], output_activation="softmax", seed=0)
    model.loss_scaler = LossScaler(init_scale=8.0, growth_interval=3)
    original = model.train_step
    calls = {"n": 0}
    taken = []

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        L, grads, out = original(*args, **kwargs)
        if calls["n"] == 2:  # an inf in one gradient, as an overflow gives
            grads.flat[3] = np.inf
        taken.append(model.optimizer.step_count)
        return L, grads, out

    model.train_step = poisoned
    model.fit(X, y, epochs=1, batch_size=10, shuffle=False, precision="mixed_float16", verbose=0)
    # 4 batches: the 2nd overflowed and was skipped, so 3 steps were taken.
    assert model.optimizer.step_count == 3 and taken == [0, 1, 1, 2]
    scaler = model.loss_scaler
    assert scaler.skipped == 1 and scaler.scale == 4.0 and scaler.good_steps == 2
    model.fit(X, y, epochs=1, batch_size=10, shuffle=False, precision="mixed_float16", verbose=0)
    # 4 more good steps: 3 and 6 good steps in a row after the overflow, each time doubled
    assert scaler.scale == 16.0 and scaler.good_steps == 0
    assert np.all(np.isfinite(model.parameters().flat))


def test_the_scaler_is_saved_and_resumed(tmp_path):
    X, y = _batch(40)
    model = nx.MLP([20, 8, 5], output_activation="softmax", seed=0)
    model.fit(X, y, epochs=2, batch_size=10, precision="mixed_float16", verbose=0)
    loaded = nx.load(model.save(tmp_path / "m.npz"), device="cpu")
    assert loaded.loss_scaler.state_dict() == model.loss_scaler.state_dict()
    scaler = loaded.loss_scaler  # float16 overflowed at 2**16 until the scale came down
    assert scaler.skipped > 0 and scaler.scale < 2.0**16 and loaded.optimizer.step_count == 8 - scaler.skipped


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_digits_in_mixed_precision_reach_float32s_accuracy(precision):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    accuracy = {}
    for name in ("float32", precision):
        model = nx.MLP([64, 64, 10], output_activation="softmax", device="cpu", seed=0)
        model.fit(X[:1400], y[:1400], epochs=12, batch_size=32, precision=name, verbose=0)
        accuracy[name] = model.evaluate(X[1400:], y[1400:])["accuracy"]
    assert accuracy[precision] >= accuracy["float32"] - 0.02, accuracy
    assert accuracy["float32"] > 0.85


@pytest.mark.parametrize("kwargs, words", [
    (dict(precision="half"), "precision must be one of ['float32', 'mixed_float16', 'mixed_bfloat16']"),
])
def test_bad_precision_is_refused(kwargs, words):
    X, y = _batch(10)
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        nx.MLP([20, 5], output_activation="softmax", seed=0).fit(X, y, verbose=0, **kwargs)
    with pytest.raises(ValueError, match="the model must be float32, not float64"):
        nx.MLP([20, 5], output_activation="softmax", dtype="float64").fit(X, y, precision="mixed_float16")
    with pytest.raises(ValueError, match="needs NumPy or CuPy arrays"):
        nx.MLP([20, 5], output_activation="softmax", device="array_api_strict").fit(
            X, y, precision="mixed_bfloat16")
    with pytest.raises(ValueError, match="backoff_factor must be"):
        LossScaler(backoff_factor=1.5)
