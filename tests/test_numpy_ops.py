"""The compiled loops (nn_xp/backends/_native.c) give bitwise the numbers of the NumPy operations they stand
in for, refuse buffers they cannot take, and are really used by training when built.

Where nn_xp was installed without a C compiler they are skipped, the reason shown; CI sets
NN_XP_REQUIRE_NATIVE=1, and there a missing build fails instead of skipping.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import nn_xp as nx
from nn_xp.backends import NumpyOps, Ops, numpy_ops
from nn_xp.nn.activations import get_activation
from nn_xp.optim.base import state_arrays

OPS = NumpyOps(nx.namespace("cpu"))
built = pytest.mark.skipif(not numpy_ops.native_available(),
                           reason="nn_xp._native was not built (no C compiler at install)")


@pytest.fixture
def compiled_off():
    """Runs the test's NumPy twin with the compiled loops turned off, then restores the setting."""
    previous = numpy_ops.set_native(True)
    yield lambda flag: numpy_ops.set_native(flag)
    numpy_ops.set_native(previous)


def bitwise_equal(a, b) -> bool:
    """Same dtype, shape and bits: -0.0 differs from 0.0, and NaN equals NaN."""
    a, b = np.asarray(a), np.asarray(b)
    return (a.dtype == b.dtype and a.shape == b.shape
            and np.array_equal(a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}")))


def test_the_compiled_loops_are_built_where_required():
    if os.environ.get("NN_XP_REQUIRE_NATIVE") != "1":
        pytest.skip("NN_XP_REQUIRE_NATIVE is not 1 (CI sets it)")
    assert numpy_ops.native_available(), "nn_xp._native did not build: is a C compiler installed?"


def test_set_enabled_takes_a_bool_and_returns_the_previous_setting(compiled_off):
    with pytest.raises(TypeError, match="flag must be True or False"):
        numpy_ops.set_native(1)
    assert numpy_ops.set_native(False) is True
    assert not numpy_ops.native_enabled()
    assert numpy_ops.set_native(True) is False
    assert numpy_ops.native_enabled() == numpy_ops.native_available()


def test_the_environment_can_turn_the_compiled_loops_off():
    code = "from nn_xp.backends import numpy_ops; print(numpy_ops.native_enabled())"
    env = dict(os.environ, NN_XP_NATIVE="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _optimizer_run(make, dtype, steps=6):
    """Parameters and state after `steps` packed updates from a fixed stream of gradients."""
    rng = np.random.default_rng(3)
    shapes = [(37, 19), (37,), (5, 37), (5,)]
    params = OPS.pack([rng.normal(size=s).astype(dtype) for s in shapes])
    opt = make(params)
    for _ in range(steps):
        grads = OPS.pack([rng.normal(size=s).astype(dtype) for s in shapes])
        grads.flat[::7] = 0  # zeros, so that v and the momentum buffer hold exact zeros too
        opt.step(grads)
    return params.flat.copy(), {key: arrays.flat.copy() for key, arrays in state_arrays(opt.state).items()}


OPTIMIZERS = {
    "adam": lambda p: nx.optim.Adam(p, 0.01),
    "adam-betas": lambda p: nx.optim.Adam(p, 0.003, beta1=0.5, beta2=0.9, eps=1e-6),
    "adamw": lambda p: nx.optim.AdamW(p, 0.01, weight_decay=0.1),
    "momentum": lambda p: nx.optim.SGD(p, 0.05, momentum=0.9),
    "nesterov": lambda p: nx.optim.SGD(p, 0.05, momentum=0.9, nesterov=True),
    "dampening": lambda p: nx.optim.SGD(p, 0.05, momentum=0.5, dampening=0.3),
}


@built
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_compiled_optimizer_updates_match_numpy_bitwise(name, dtype, compiled_off):
    compiled = _optimizer_run(OPTIMIZERS[name], dtype)
    compiled_off(False)
    numpy = _optimizer_run(OPTIMIZERS[name], dtype)
    assert bitwise_equal(compiled[0], numpy[0])
    assert compiled[1].keys() == numpy[1].keys()
    for key in numpy[1]:
        assert bitwise_equal(compiled[1][key], numpy[1][key]), key


@built
def test_compiled_adam_step_is_the_reference_formula():
    # One step from zero state, worked out from torch.optim.Adam's documented rule in float64.
    g = np.array([0.5, -2.0, 0.0, 1e-3])
    p = np.array([1.0, 1.0, -1.0, 0.25])
    params = OPS.pack([p.copy()])
    nx.optim.Adam(params, 0.1, beta1=0.9, beta2=0.99, eps=1e-8).step(OPS.pack([g]))
    m, v = 0.1 * g, 0.01 * g * g
    m_hat, v_hat = m / (1 - 0.9), v / (1 - 0.99)
    assert np.allclose(params.flat, p - 0.1 * m_hat / (np.sqrt(v_hat) + 1e-8), rtol=1e-14, atol=0)


def _layer_arrays(dtype, rows=33, cols=70, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(rows, cols)).astype(dtype)
    b = rng.normal(size=cols).astype(dtype)
    Z[0, :4] = [np.nan, -0.0, 0.0, np.inf]
    b[1] = -0.0  # -0.0 + -0.0 is -0.0, which ReLU must turn into +0.0 as NumPy's maximum does
    Z[1, 2:5] = -b[2:5]  # Z + b exactly +0.0
    return Z, b


@built
def test_bias_relu_matches_numpy_bitwise(dtype):
    Z, b = _layer_arrays(dtype)
    expected = Z.copy()
    expected += b
    np.maximum(expected, 0, out=expected)
    numpy_ops._native.bias_relu(Z, b)
    assert bitwise_equal(Z, expected)
    assert np.isnan(Z[0, 0]) and not np.signbit(Z[0, 1]) and not np.signbit(Z[1, 2:5]).any()


@built
def test_relu_backward_bias_grad_matches_numpy_bitwise(dtype):
    Z, b = _layer_arrays(dtype)
    A = np.maximum(Z + b, 0)
    dA = np.random.default_rng(1).normal(size=A.shape).astype(dtype)
    expected = dA.copy()
    expected *= A > 0
    expected_db = np.sum(expected, axis=0)
    db = np.full(b.shape, 123.0, dtype=dtype)  # overwritten, not added to
    numpy_ops._native.relu_backward_bias_grad(dA, A, db)
    assert bitwise_equal(dA, expected)
    assert bitwise_equal(db, expected_db)


@built
def test_fused_layer_helpers_match_the_standard_layer_math(dtype):
    relu = get_activation("relu")
    Z, b = _layer_arrays(dtype)
    Z[0, 0], Z[0, 3] = 0.5, 2.0  # finite, for the standard backward's where()
    A, kept = OPS.bias_activate(relu, Z.copy(), b)
    assert kept is None
    assert bitwise_equal(A, relu.forward(np, Z + b))
    dA = np.random.default_rng(2).normal(size=A.shape).astype(dtype)
    db = np.empty_like(b)
    dZ, db = OPS.backward_bias(relu, dA.copy(), None, A, db)
    standard = relu.backward(np, dA, Z + b, A)
    assert np.array_equal(dZ, standard)
    assert bitwise_equal(db, np.sum(dZ, axis=0))


@built
@pytest.mark.parametrize("call, message", [
    (lambda: numpy_ops._native.bias_relu(np.zeros((3, 4), np.int32), np.zeros(4, np.int32)),
     "Z must be a float32 or float64"),
    (lambda: numpy_ops._native.bias_relu(np.zeros((3, 4), np.float32), np.zeros(5, np.float32)),
     "one element per column"),
    (lambda: numpy_ops._native.bias_relu(np.zeros((3, 4), np.float32), np.zeros(4, np.float64)), "of one dtype"),
    (lambda: numpy_ops._native.bias_relu(np.zeros(4, np.float32), np.zeros(4, np.float32)), "Z must be 2-D"),
    (lambda: numpy_ops._native.bias_relu(np.zeros((4, 3), np.float32).T, np.zeros(4, np.float32)), "contiguous"),
    (lambda: numpy_ops._native.relu_backward_bias_grad(np.zeros((3, 4)), np.zeros((2, 4)), np.zeros(4)),
     "shape and dtype of dA"),
    (lambda: numpy_ops._native.adam(*(np.zeros(5, np.float32),) * 3, np.zeros(6, np.float32), 0.9, 0.999, 0.1, 0.001,
                                    1e-8, 1e-3), "must have the dtype and length of p"),
])
def test_compiled_loops_refuse_buffers_they_cannot_take(call, message):
    with pytest.raises((TypeError, ValueError, BufferError), match=message):
        call()


@built
def test_compiled_loops_refuse_read_only_outputs():
    Z = np.zeros((3, 4), np.float32)
    Z.flags.writeable = False
    with pytest.raises((TypeError, ValueError, BufferError)):
        numpy_ops._native.bias_relu(Z, np.zeros(4, np.float32))
    assert not numpy_ops._native_call(numpy_ops._native.bias_relu, Z, np.zeros(4, np.float32))


@built
def test_ops_fall_back_to_numpy_where_the_loops_refuse_the_arrays(dtype):
    """A transposed (not C-contiguous) Z: the loop refuses before writing, NumPy's operations run."""
    relu = get_activation("relu")
    rng = np.random.default_rng(5)
    Z = np.asfortranarray(rng.normal(size=(6, 5)).astype(dtype))
    b = rng.normal(size=5).astype(dtype)
    expected = np.maximum(Z + b, 0)
    assert not numpy_ops._native_call(numpy_ops._native.bias_relu, Z.copy(order="F"), b)
    A, kept = OPS.bias_activate(relu, Z, b)
    assert kept is None and bitwise_equal(np.ascontiguousarray(A), expected)
    p, g, m, v = (rng.normal(size=(7, 2)).astype(dtype).T for _ in range(4))  # not contiguous either
    v = np.abs(v)
    want = Ops(nx.namespace("cpu")).adam(p, g, m, v, beta1=0.9, beta2=0.99, eps_c=1e-8, step_c=1e-3, work={})
    got = OPS.adam(p.copy(order="K"), g, m.copy(order="K"), v.copy(order="K"), beta1=0.9, beta2=0.99, eps_c=1e-8,
                   step_c=1e-3, work={})
    for a, e in zip(got, want):
        assert bitwise_equal(np.ascontiguousarray(a), np.ascontiguousarray(e))


def _train(dtype, activation="relu", optimizer="adam"):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 12)).astype(dtype), rng.integers(0, 3, 300)
    model = nx.MLP([12, 16, 8, 3], activation=activation, output_activation="softmax", dtype=dtype, device="cpu",
                   seed=0)
    model.fit(X, y, optimizer=optimizer, epochs=3, batch_size=32, verbose=0)
    return [p.copy() for p in model.parameters()], model.history.history["loss"]


@built
@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_training_with_the_compiled_loops_matches_numpy_bitwise_and_uses_them(optimizer, dtype, compiled_off,
                                                                              monkeypatch):
    calls = {}
    for name in ("adam", "sgd_momentum", "bias_relu", "relu_backward_bias_grad"):
        original = getattr(numpy_ops._native, name)

        def counted(*args, _original=original, _name=name):
            calls[_name] = calls.get(_name, 0) + 1
            return _original(*args)

        monkeypatch.setattr(numpy_ops._native, name, counted, raising=True)
    compiled = _train(dtype, optimizer=optimizer)
    expected_optimizer = "adam" if optimizer == "adam" else "sgd_momentum"
    # 3 epochs x 10 batches; two ReLU layers each way per batch.
    assert calls == {expected_optimizer: 30, "bias_relu": 60, "relu_backward_bias_grad": 60}
    compiled_off(False)
    numpy = _train(dtype, optimizer=optimizer)
    assert compiled[1] == numpy[1]
    for a, b in zip(compiled[0], numpy[0]):
        assert bitwise_equal(a, b)
