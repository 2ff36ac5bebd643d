"""The NumPy/CuPy fast paths (fast.py) give the standard-only code's numbers."""

import numpy as np
import pytest

import nn_xp as nx
from nn_xp import fast

from .conftest import GPU_COUNT, PARITY_RTOL, relative_difference

MUTABLE = ["cpu"] + (["cuda:0"] if GPU_COUNT else [])
ARCHITECTURES = [
    dict(layer_sizes=[6, 16, 12, 4], activation="relu", output_activation="softmax", loss="cross_entropy"),
    dict(layer_sizes=[6, 16, 12, 4], activation=["tanh", "relu"], output_activation="softmax", loss="cross_entropy"),
    dict(layer_sizes=[6, 8, 1], activation="relu", output_activation="sigmoid", loss="binary_cross_entropy"),
    dict(layer_sizes=[6, 8, 8, 2], activation=["gelu", "leaky_relu"], output_activation="linear", loss="mse"),
    dict(layer_sizes=[6, 3], activation="relu", output_activation="sigmoid", loss="mse"),
]


def _batch(arch, n=20, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, arch["layer_sizes"][0]))
    k = arch["layer_sizes"][-1]
    if arch["loss"] == "cross_entropy":
        y = rng.integers(0, k, size=n)
    elif arch["loss"] == "binary_cross_entropy":
        y = rng.integers(0, 2, size=(n, k)).astype(float)
    else:
        y = rng.normal(size=(n, k))
    return X, y


@pytest.mark.parametrize("device", MUTABLE)
@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: f"{a['output_activation']}-{a['loss']}")
def test_inplace_loss_and_grads_match_the_standard_path(device, dtype, arch):
    arch = dict(arch)
    loss = arch.pop("loss")
    model = nx.MLP(**arch, dtype=dtype, device=device, seed=1)
    X, y = _batch(dict(arch, loss=loss))
    Xd, Y = model._check_X(X), model._check_y(y, X.shape[0], loss)
    L_std, g_std, out_std = model._loss_and_grads(Xd, Y, loss)
    L_fast, g_fast, out_fast = model._loss_and_grads_fast(Xd, Y, loss)
    tol = PARITY_RTOL[dtype]
    assert abs(float(L_fast) - float(L_std)) <= tol * abs(float(L_std))
    for a, b in zip(g_fast, g_std):
        assert relative_difference(a, b) <= tol
        assert a.dtype == b.dtype
    assert isinstance(g_fast, fast.FlatList) and g_fast.is_packed()
    if loss == "cross_entropy":  # the fast path returns shifted logits: same predicted classes
        np.testing.assert_array_equal(nx.to_numpy(out_fast).argmax(axis=1), nx.to_numpy(out_std).argmax(axis=1))
    else:
        assert relative_difference(out_fast, out_std) <= tol


@pytest.mark.parametrize("optimizer", [
    lambda p: nx.optim.Adam(p, 0.01), lambda p: nx.optim.Adam(p, 0.01, weight_decay=0.1, amsgrad=True),
    lambda p: nx.optim.AdamW(p, 0.01), lambda p: nx.optim.SGD(p, 0.05, momentum=0.9, nesterov=True),
    lambda p: nx.optim.RMSprop(p, 0.01, momentum=0.5, centered=True),
], ids=["adam", "adam-l2-amsgrad", "adamw", "nesterov", "rmsprop"])
def test_flat_optimizer_step_is_bitwise_the_per_parameter_step(optimizer):
    rng = np.random.default_rng(0)
    shapes = [(300, 200), (300,), (10, 300), (10,)]
    packed = fast.pack([rng.normal(size=s).astype(np.float32) for s in shapes], nx.namespace("cpu"))
    plain = [np.array(p, copy=True) for p in packed]
    opt_packed, opt_plain = optimizer(packed), optimizer(plain)
    for step in range(5):
        grads = [rng.normal(size=s).astype(np.float32) for s in shapes]
        flat_grads = fast.pack(grads, nx.namespace("cpu"))
        opt_packed.step(flat_grads)
        opt_plain.step(grads)
        assert opt_packed._packed(flat_grads)
    for a, b in zip(packed, plain):
        np.testing.assert_array_equal(a, b)
    for key in opt_plain.state:
        for a, b in zip(opt_packed.state[key], opt_plain.state[key]):
            np.testing.assert_array_equal(a, b)


def test_parameters_are_views_of_one_buffer_and_unlink_safely():
    model = nx.MLP([4, 5, 3], device="cpu", seed=0)
    params = model.parameters()
    assert params.is_packed() and params.flat.size == model.n_parameters()
    params[0] = params[0] * 2  # a user replaces an array: the list is no longer packed...
    assert not params.is_packed()
    X, y = _batch(dict(layer_sizes=[4, 5, 3], loss="mse"))
    model.fit(X, y, epochs=1, verbose=0)  # ...and training packs it again, keeping the values
    assert model.parameters().is_packed()


def test_set_parameters_copies_into_the_live_arrays():
    model = nx.MLP([4, 5, 3], output_activation="softmax", device="cpu", seed=0)
    model.fit(np.ones((6, 4)), [0, 1, 2, 0, 1, 2], epochs=1, verbose=0)
    before = [id(p) for p in model.parameters()]
    new = [np.full(p.shape, 0.5, dtype=np.float32) for p in model.parameters()]
    model.set_parameters(new)
    assert [id(p) for p in model.parameters()] == before
    for p in model.parameters():
        np.testing.assert_array_equal(p, 0.5)
    with pytest.raises(ValueError, match="arrays\\[1\\]"):
        model.set_parameters([new[0], new[0], new[2], new[3]])


@pytest.mark.parametrize("device", MUTABLE)
def test_batches_of_other_sizes_reuse_the_workspace_and_match_the_standard_path(device, dtype):
    arch = dict(ARCHITECTURES[1])
    loss = arch.pop("loss")
    model = nx.MLP(**arch, dtype=dtype, device=device, seed=1)
    tol = PARITY_RTOL[dtype]
    for n in (20, 7, 20, 3):  # full batches and smaller last ones, in the same arrays
        X, y = _batch(dict(arch, loss=loss), n=n, seed=n)
        Xd, Y = model._check_X(X), model._check_y(y, n, loss)
        L_std, g_std, _ = model._loss_and_grads(Xd, Y, loss)
        L_fast, g_fast, out = model._loss_and_grads_fast(Xd, Y, loss)
        assert out.shape == (n, arch["layer_sizes"][-1])
        assert abs(float(L_fast) - float(L_std)) <= tol * abs(float(L_std))
        for a, b in zip(g_fast, g_std):
            assert relative_difference(a, b) <= tol


def test_a_training_step_writes_into_the_arrays_of_the_step_before():
    import tracemalloc

    n, hidden = 512, (256, 128)
    model = nx.MLP([64, *hidden, 10], output_activation="softmax", device="cpu", seed=0)
    X, y = _batch(dict(layer_sizes=[64, *hidden, 10], loss="cross_entropy"), n=n)
    Xd, Y = model._check_X(X), model._check_y(y, n, "cross_entropy")
    _, _, first = model._loss_and_grads_fast(Xd, Y, "cross_entropy")
    first = first.copy()
    tracemalloc.start()
    try:
        _, _, out = model._loss_and_grads_fast(Xd, Y, "cross_entropy")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    activations = n * sum(hidden) * 4  # float32 bytes of the hidden layers' outputs alone
    assert peak < activations / 4
    np.testing.assert_array_equal(out, first)  # and the same step gives the same numbers


def test_workspace_rows_grow_shrink_and_take_rows_gathers():
    space = fast.Workspace()
    like = np.zeros((1, 1), np.float32)
    big = space.rows(np, "a", 10, 4, like)
    small = space.rows(np, "a", 3, 4, like)
    assert small.shape == (3, 4) and np.shares_memory(big, small) and small.flags.c_contiguous
    bigger = space.rows(np, "a", 11, 4, like)
    assert bigger.shape == (11, 4) and not np.shares_memory(big, bigger)
    assert space.rows(np, "a", 5, 4, np.zeros(1)).dtype == np.float64  # another dtype: a new array
    A = np.arange(40.0).reshape(10, 4)
    rows = np.array([9, 0, 3, 3])
    got = space.take_rows(np, "x", A, rows)
    np.testing.assert_array_equal(got, A[rows])
    again = space.take_rows(np, "x", A, rows[:2])
    np.testing.assert_array_equal(again, A[rows[:2]])
    assert np.shares_memory(got, again)
