"""The model's forward and backward passes (nn/network.py) with every activation and head, checked
against central differences, hand-worked numbers and the other backends of the matrix."""

import math

import numpy as np
import pytest

import nn_xp as nx
from nn_xp import backends
from nn_xp.nn import activations, heads

from .conftest import PARITY_RTOL, relative_difference

HIDDEN = [a for a in activations.ACTIVATIONS if a != "softmax"]


def _data(n=9, n_in=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_in))


def _targets(loss, n, n_out, seed=1):
    rng = np.random.default_rng(seed)
    if loss == "cross_entropy":
        return rng.integers(0, n_out, size=n)
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, size=(n, n_out)).astype(float)
    if loss == "poisson":  # counts, zeros among them
        return rng.poisson(1.5, size=(n, n_out)).astype(float)
    return rng.normal(size=(n, n_out))


OUTPUT_FOR = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid", "poisson": "exp"}


# ---- gradient checks ----------------------------------------------------------------------------
@pytest.mark.parametrize("activation", HIDDEN)
def test_gradcheck_every_hidden_activation(activation, device):
    model = nx.MLP([3, 5, 2], activation=activation, dtype="float64", device=device, seed=3)
    assert nx.gradcheck(model, _data(), _targets("mse", 9, 2), loss="mse") < 1e-6


@pytest.mark.parametrize("output", ["linear", "sigmoid", "tanh", "softmax", "softplus", "relu"])
def test_gradcheck_every_output_activation_with_mse(output, device):
    model = nx.MLP([3, 4, 3], activation="tanh", output_activation=output, dtype="float64",
                   device=device, seed=4)
    assert nx.gradcheck(model, _data(), _targets("mse", 9, 3), loss="mse") < 1e-6


@pytest.mark.parametrize("loss", heads.LOSSES)
def test_gradcheck_every_loss(loss, device):
    model = nx.MLP([3, 6, 4], activation="tanh", output_activation=OUTPUT_FOR.get(loss, "linear"),
                   dtype="float64", device=device, seed=5)
    assert nx.gradcheck(model, _data(), _targets(loss, 9, 4), loss=loss) < 1e-6


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_gradcheck_depths(depth, device):
    sizes = [3] + [5] * (depth - 1) + [2]
    model = nx.MLP(sizes, activation="sigmoid", output_activation="softmax", dtype="float64",
                   device=device, seed=depth)
    assert nx.gradcheck(model, _data(), _targets("cross_entropy", 9, 2)) < 1e-6


def test_gradcheck_mixed_per_layer_activations(device):
    model = nx.MLP([3, 6, 5, 4, 2], activation=["tanh", {"name": "leaky_relu", "negative_slope": 0.2}, "gelu"],
                   output_activation="sigmoid", init="xavier", dtype="float64", device=device, seed=8)
    assert nx.gradcheck(model, _data(), _targets("binary_cross_entropy", 9, 2)) < 1e-6


def test_gradcheck_detects_a_wrong_backward(monkeypatch):
    """The check itself can fail: a tanh whose derivative is off by a factor shows up."""
    model = nx.MLP([3, 5, 2], activation="tanh", dtype="float64", device="cpu", seed=3)
    broken = activations.Activation("tanh", activations._tanh,
                                    lambda xp, dA, Z, A: 1.1 * dA * (1 - A * A))
    model.layers[0].activation = broken
    assert nx.gradcheck(model, _data(), _targets("mse", 9, 2)) > 1e-3


# ---- a step worked out by hand ----------------------------------------------------------------
def test_forward_and_backward_worked_by_hand(device, dtype):
    """[2, 2, 1], ReLU hidden, linear output, MSE, one sample X = [1, 2], y = 1.

    Z1 = X W1^T + b1 = [1 - 2 + 0, 0.5 + 4 - 1] = [-1, 3.5];  A1 = relu(Z1) = [0, 3.5]
    Z2 = A1 W2^T + b2 = 0 - 7 + 0.5 = -6.5;                   L = (-6.5 - 1)^2 = 56.25
    dZ2 = 2 (Z2 - y) = -15;  dW2 = dZ2 A1 = [0, -52.5];  db2 = -15
    dA1 = dZ2 W2 = [-15, 30];  dZ1 = dA1 * (Z1 > 0) = [0, 30]
    dW1 = dZ1^T X = [[0, 0], [30, 60]];  db1 = [0, 30]
    """
    model = nx.MLP([2, 2, 1], activation="relu", dtype=dtype, device=device)
    values = [[[1.0, -1.0], [0.5, 2.0]], [0.0, -1.0], [[1.0, -2.0]], [0.5]]
    params = model.parameters()
    for i, v in enumerate(values):
        params[i] = nx.to_device(np.asarray(v, dtype=dtype), device)
    np.testing.assert_allclose(nx.to_numpy(model.forward([[1.0, 2.0]])), [[-6.5]])
    loss, grads = model.loss_and_grads([[1.0, 2.0]], [1.0])
    assert loss == pytest.approx(56.25)
    expected = [[[0, 0], [30, 60]], [0, 30], [[0, -52.5]], [-15]]
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(nx.to_numpy(g), e, rtol=1e-6)


# ---- activations --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sigmoid", "softmax", "tanh", "softplus", "silu", "gelu", "elu"])
def test_activations_stay_finite_for_huge_inputs(name, device, dtype):
    xp = nx.namespace(device)
    Z = nx.to_device(np.array([[1000.0, -1000.0, 0.0], [-1e4, 1e4, 3.0]], dtype=dtype), device)
    act = activations.get_activation(name)
    A = act.forward(xp, Z)
    dZ = act.backward(xp, xp.ones_like(A), Z, A)
    assert np.isfinite(nx.to_numpy(A)).all() and np.isfinite(nx.to_numpy(dZ)).all()


def test_activation_values():
    xp = nx.namespace("cpu")
    z = np.array([[-2.0, -0.5, 0.0, 0.5, 2.0]])
    get = lambda n: activations.get_activation(n).forward(xp, z)  # noqa: E731
    np.testing.assert_allclose(get("relu"), np.maximum(z, 0))
    np.testing.assert_allclose(get("sigmoid"), 1 / (1 + np.exp(-z)))
    np.testing.assert_allclose(get("tanh"), np.tanh(z))
    np.testing.assert_allclose(get("leaky_relu"), np.where(z > 0, z, 0.01 * z))
    np.testing.assert_allclose(activations.leaky_relu(0.3).forward(xp, z), np.where(z > 0, z, 0.3 * z))
    np.testing.assert_allclose(get("elu"), np.where(z > 0, z, np.expm1(z)))
    np.testing.assert_allclose(get("softplus"), np.log1p(np.exp(z)))
    np.testing.assert_allclose(get("silu"), z / (1 + np.exp(-z)))
    gelu_erf = 0.5 * z * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
    np.testing.assert_allclose(get("gelu"), gelu_erf, atol=1e-3)  # the tanh form is within 1e-3
    np.testing.assert_allclose(get("softmax").sum(axis=1), 1.0)


# ---- initializers --------------------------------------------------------------------------------
@pytest.mark.parametrize("init,std", [("random", lambda i, o: 0.01), ("he", lambda i, o: math.sqrt(2 / i)),
                                      ("xavier", lambda i, o: math.sqrt(2 / (i + o))),
                                      ("lecun", lambda i, o: math.sqrt(1 / i)),
                                      ("he_uniform", lambda i, o: math.sqrt(6 / i) / math.sqrt(3)),
                                      ("xavier_uniform", lambda i, o: math.sqrt(6 / (i + o)) / math.sqrt(3)),
                                      ("lecun_uniform", lambda i, o: math.sqrt(3 / i) / math.sqrt(3))])
def test_initializer_scales(init, std):
    W, b, *_ = nx.MLP([400, 300, 1], init=init, dtype="float64", device="cpu", seed=0).parameters()
    assert np.std(W) == pytest.approx(std(400, 300), rel=0.02)
    assert abs(np.mean(W)) < 0.05 * std(400, 300)
    np.testing.assert_array_equal(b, 0)


# ---- cross-backend parity and dtypes --------------------------------------------------------------
@pytest.mark.parametrize("loss", heads.LOSSES)
def test_backends_agree_with_numpy(device, dtype, loss):
    kwargs = dict(layer_sizes=[5, 8, 6, 3], activation=["relu", "tanh"],
                  output_activation=OUTPUT_FOR.get(loss, "linear"), dtype=dtype, seed=11)
    X, y = _data(16, 5), _targets(loss, 16, 3)
    reference = nx.MLP(device="cpu", **kwargs)
    other = nx.MLP(device=device, **kwargs)
    for a, b in zip(reference.parameters(), other.parameters()):
        np.testing.assert_array_equal(nx.to_numpy(a), nx.to_numpy(b))
    tol = PARITY_RTOL[dtype]
    assert relative_difference(other.forward(X), reference.forward(X)) <= tol
    loss_ref, grads_ref = reference.loss_and_grads(X, y, loss=loss)
    loss_other, grads_other = other.loss_and_grads(X, y, loss=loss)
    assert abs(loss_other - loss_ref) <= tol * abs(loss_ref)
    for g, r in zip(grads_other, grads_ref):
        assert relative_difference(g, r) <= tol


def test_dtype_is_kept_end_to_end(device, dtype):
    model = nx.MLP([3, 4, 2], output_activation="softmax", dtype=dtype, device=device, seed=0)
    X = _data().astype(np.float64 if dtype == "float32" else np.float32)  # the other precision on purpose
    out = model.forward(X)
    _, grads = model.loss_and_grads(X, [0, 1, 1, 0, 1, 0, 0, 1, 1])
    for array in [out, *grads, *model.parameters()]:
        assert nx.to_numpy(array).dtype == np.dtype(dtype)
    assert backends.device_of(out) == device


def test_loss_is_inferred_from_the_output_activation():
    X = _data()
    for output, y, expected in [("softmax", [0, 1] * 4 + [0], "cross_entropy"),
                                ("sigmoid", [0, 1] * 4 + [0], "binary_cross_entropy"),
                                ("linear", _targets("mse", 9, 1), "mse")]:
        model = nx.MLP([3, 4, 2 if output == "softmax" else 1], output_activation=output,
                       dtype="float64", device="cpu", seed=0)
        assert model.loss_and_grads(X, y)[0] == pytest.approx(model.loss_and_grads(X, y, loss=expected)[0])


def test_layer_sizes_read_back_as_given():
    model = nx.MLP([784, 512, 256, 10], device="cpu", seed=0)
    assert model.layer_sizes == [784, 512, 256, 10]
    assert [tuple(p.shape) for p in model.parameters()] == [(512, 784), (512,), (256, 512), (256,), (10, 256), (10,)]
