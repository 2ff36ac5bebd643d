"""The ops objects (ops.py, numpy_ops.py, cupy_ops.py, torch_ops.py): each backend's override gives the standard
version's numbers, the standard version never writes in place, and the flat-buffer paths of the
model and the optimizers give the per-array numbers."""

import importlib.util

import numpy as np
import pytest

import nn_xp as nx
from nn_xp.backends import FlatList, Ops, ops_for
from nn_xp.nn.activations import ACTIVATIONS, get_activation

from .conftest import GPU_COUNT, PARITY_RTOL, relative_difference

TORCH = importlib.util.find_spec("torch") is not None
MUTABLE = ["cpu"] + (["torch:cpu"] if TORCH else []) + (["cuda:0"] if GPU_COUNT else [])
HOST = ("cpu", "torch:cpu")  # NumPy's arithmetic, operation for operation (or its compiled loops)
HIDDEN = [a for a in ACTIVATIONS if a != "softmax"]
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


def _arrays(device, dtype, *shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [nx.to_device(rng.normal(size=s).astype(dtype), device) for s in shapes]


def _copies(arrays):
    return [nx.to_device(nx.to_numpy(a), nx.backends.device_of(a)) for a in arrays]


def _same(a, b) -> bool:
    """Equal element for element, NaN where NaN (+0 and -0 count as equal: `where(A > 0, dA, 0)` and
    `dA * (A > 0)` differ only there)."""
    a, b = nx.to_numpy(a), nx.to_numpy(b)
    return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


# ---- the choice -------------------------------------------------------------------------------
def test_ops_for_picks_one_object_per_backend():
    numpy_ops = ops_for(nx.namespace("cpu"))
    assert type(numpy_ops).__name__ == "NumpyOps" and numpy_ops.mutable
    assert ops_for(nx.namespace("cpu")) is numpy_ops
    strict = ops_for(nx.namespace("array_api_strict"))
    assert type(strict) is Ops and not strict.mutable
    if TORCH:
        torch_ops = ops_for(nx.namespace("torch:cpu"))
        assert type(torch_ops).__name__ == "TorchOps" and torch_ops.mutable


def test_the_standard_ops_never_write_in_place():
    """Every primitive on read-only arrays: an in-place write anywhere would raise."""
    xp = nx.namespace("cpu")
    ops = Ops(xp)

    def frozen(*shapes, seed=0):
        arrays = _arrays("cpu", "float64", *shapes, seed=seed)
        for a in arrays:
            a.flags.writeable = False
        return arrays

    X, W, dA = frozen((5, 4), (3, 4), (5, 3))
    b, = frozen((3,), seed=1)
    Z = ops.matmul(X, W.T, out=None)
    Z.flags.writeable = False
    for name in HIDDEN:
        A, kept = ops.bias_activate(get_activation(name), Z, b)
        ops.backward_bias(get_activation(name), dA, kept, A)
    Y = np.eye(3)[[0, 1, 2, 0, 1]]
    ops.softmax_cross_entropy(Z, Y, 0.2)
    ops.take_batch([X, None, dA], np.array([4, 0, 0]), [np.empty((3, 4)), None, None])
    ops.dropout(X, np.asarray(X > 0), 2.0)
    p, g, m, v, v_max = frozen((7,), (7,), (7,), (7,), (7,), seed=2)
    for array in (m, v, v_max):  # second moments are non-negative
        array.flags.writeable = True
        array[...] = np.abs(array)
        array.flags.writeable = False
    ops.sgd(p, g, 0.1, {})
    ops.sgd_momentum(p, g, m, learning_rate=0.1, momentum=0.9, dampening=0.1, first=False, nesterov=False, work={})
    ops.adam(p, g, m, v, beta1=0.9, beta2=0.99, eps_c=1e-8, step_c=1e-3, work={})
    ops.amsgrad(p, g, m, v, v_max, beta1=0.9, beta2=0.99, eps_c=1e-8, step_c=1e-3, work={})
    ops.rmsprop(p, g, v, m * 0, m, learning_rate=0.01, rho=0.9, eps=1e-8, momentum=0.5, work={})
    ops.add_scaled(g, p, 0.1)
    ops.scale(p, 0.5)


# ---- each override against the standard version ---------------------------------------------------
@pytest.mark.parametrize("device", MUTABLE)
@pytest.mark.parametrize("name", HIDDEN + ["linear"])
def test_layer_primitives_match_the_standard_ops(device, dtype, name):
    xp = nx.namespace(device)
    fast, standard = ops_for(xp), Ops(xp)
    activation = get_activation(name)
    X, W, b, dA = _arrays(device, dtype, (9, 5), (7, 5), (7,), (9, 7))
    Z_std = standard.matmul(X, W.T)
    A_std, kept_std = standard.bias_activate(activation, Z_std, b)
    dZ_std, db_std = standard.backward_bias(activation, dA, kept_std, A_std)
    store = {}
    Z = fast.matmul(X, W.T, out=fast.buffer(store, "Z", (9, 7), W))
    assert _same(Z, Z_std)
    A, kept = fast.bias_activate(activation, Z, b)
    db = fast.buffer(store, "db", (7,), b)
    dZ, db = fast.backward_bias(activation, _copies([dA])[0], kept, A, db=db)
    tol = PARITY_RTOL[dtype]
    assert relative_difference(A, A_std) <= tol
    assert relative_difference(dZ, dZ_std) <= tol
    assert relative_difference(db, db_std) <= tol
    if name in ("relu", "linear"):  # the same operations in the same order
        assert _same(A, A_std) and _same(dZ, dZ_std)


@pytest.mark.parametrize("device", MUTABLE)
def test_softmax_cross_entropy_and_dropout_match_the_standard_ops(device, dtype):
    xp = nx.namespace(device)
    fast, standard = ops_for(xp), Ops(xp)
    Z, = _arrays(device, dtype, (11, 4))
    Y = nx.to_device(np.eye(4, dtype=dtype)[np.arange(11) % 4], device)
    L_std, dZ_std, out_std = standard.softmax_cross_entropy(Z, Y, 1 / 11)
    L, dZ, out = fast.softmax_cross_entropy(_copies([Z])[0], Y, 1 / 11)
    tol = PARITY_RTOL[dtype]
    assert abs(float(L) - float(L_std)) <= tol * abs(float(L_std))
    assert relative_difference(dZ, dZ_std) <= tol
    np.testing.assert_array_equal(nx.to_numpy(out).argmax(axis=1), nx.to_numpy(out_std).argmax(axis=1))
    keep = Z > 0
    assert _same(fast.dropout(Z, keep, 1.25), standard.dropout(Z, keep, 1.25))


UPDATES = {
    "sgd": lambda ops, p, g, s, first: ops.sgd(p, g, 0.05, {}),
    "momentum-first": lambda ops, p, g, s, first: ops.sgd_momentum(  # the buffer is the zero state then
        p, g, s[0] * 0, learning_rate=0.05, momentum=0.9, dampening=0.0, first=True, nesterov=False, work={}),
    "momentum": lambda ops, p, g, s, first: ops.sgd_momentum(
        p, g, s[0], learning_rate=0.05, momentum=0.9, dampening=0.3, first=False, nesterov=False, work={}),
    "nesterov": lambda ops, p, g, s, first: ops.sgd_momentum(
        p, g, s[0], learning_rate=0.05, momentum=0.9, dampening=0.0, first=False, nesterov=True, work={}),
    "adam": lambda ops, p, g, s, first: ops.adam(
        p, g, s[0], s[1], beta1=0.9, beta2=0.999, eps_c=1e-8 * 0.3, step_c=1e-3 * 3.1, work={}),
    "amsgrad": lambda ops, p, g, s, first: ops.amsgrad(
        p, g, s[0], s[1], s[2], beta1=0.8, beta2=0.99, eps_c=1e-7, step_c=1e-2, work={}),
    "rmsprop": lambda ops, p, g, s, first: ops.rmsprop(
        p, g, s[1], None, None, learning_rate=0.01, rho=0.9, eps=1e-8, momentum=0.0, work={}),
    "rmsprop-centered-momentum": lambda ops, p, g, s, first: ops.rmsprop(
        p, g, s[1], s[0] * 0.01, s[2], learning_rate=0.01, rho=0.9, eps=1e-8, momentum=0.5, work={}),
    "add_scaled": lambda ops, p, g, s, first: ops.add_scaled(g, p, 0.1),
    "scale": lambda ops, p, g, s, first: ops.scale(p, 0.999),
}


@pytest.mark.parametrize("device", MUTABLE)
@pytest.mark.parametrize("name", UPDATES)
def test_optimizer_updates_match_the_standard_ops_same(device, dtype, name):
    """The same arithmetic in the same order: bitwise equal on NumPy and torch:cpu (compiled loops or
    not); within rounding on CuPy, whose kernels may contract to fused multiply-adds."""
    xp = nx.namespace(device)
    p, g, m, v, v_max = _arrays(device, dtype, *[(301,)] * 5, seed=4)
    v, v_max = xp.abs(v), xp.abs(v_max) + xp.abs(v)
    g[::7] = 0  # exact zeros in the gradient and so in the moments
    inputs = [p, g, [m, v, v_max]]
    expected = UPDATES[name](Ops(xp), *inputs, True)
    copies = _copies([p, g, m, v, v_max])
    got = UPDATES[name](ops_for(xp), copies[0], copies[1], copies[2:], True)
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = got if isinstance(got, tuple) else (got,)
    for a, b in zip(got, expected):
        if b is None:
            continue
        if device in HOST:
            assert _same(a, b)
        else:
            assert relative_difference(a, b) <= (1e-6 if dtype == "float32" else 1e-13)


@pytest.mark.parametrize("optimizer", [
    lambda p: nx.optim.Adam(p, 0.01), lambda p: nx.optim.Adam(p, 0.01, weight_decay=0.1, amsgrad=True),
    lambda p: nx.optim.AdamW(p, 0.01), lambda p: nx.optim.SGD(p, 0.05, momentum=0.9, nesterov=True),
    lambda p: nx.optim.SGD(p, 0.05, weight_decay=0.01),
    lambda p: nx.optim.RMSprop(p, 0.01, momentum=0.5, centered=True),
], ids=["adam", "adam-l2-amsgrad", "adamw", "nesterov", "sgd-decay", "rmsprop"])
def test_flat_optimizer_step_is_bitwise_the_per_parameter_step(optimizer):
    ops = ops_for(nx.namespace("cpu"))
    rng = np.random.default_rng(0)
    shapes = [(300, 200), (300,), (10, 300), (10,)]
    packed = ops.pack([rng.normal(size=s).astype(np.float32) for s in shapes])
    plain = [np.array(p, copy=True) for p in packed]
    opt_packed, opt_plain = optimizer(packed), optimizer(plain)
    for _ in range(5):
        grads = [rng.normal(size=s).astype(np.float32) for s in shapes]
        opt_packed.step(ops.pack(grads))
        opt_plain.step(grads)
    assert packed.is_packed()
    for a, b in zip(packed, plain):
        np.testing.assert_array_equal(a, b)
    assert opt_packed.state._fields == opt_plain.state._fields
    for packed_arrays, plain_arrays in zip(opt_packed.state, opt_plain.state):
        if plain_arrays is None:
            assert packed_arrays is None
            continue
        assert isinstance(packed_arrays, FlatList) and packed_arrays.is_packed()
        for a, b in zip(packed_arrays, plain_arrays):
            np.testing.assert_array_equal(a, b)


# ---- the model's one loop: in place on NumPy/CuPy, the standard ops elsewhere ------------------------
@pytest.mark.parametrize("device", MUTABLE)
@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: f"{a['output_activation']}-{a['loss']}")
def test_a_training_step_matches_the_standard_backend(device, dtype, arch):
    """The same step on a mutable backend (in place, flat buffers, workspace) and on
    array-api-strict (the standard ops, new arrays)."""
    arch = dict(arch)
    loss = arch.pop("loss")
    X, y = _batch(dict(arch, loss=loss))
    results = []
    for where in (device, "array_api_strict"):
        model = nx.MLP(**arch, dtype=dtype, device=where, seed=1)
        head = model.head(loss)
        Xd, Y = model.check_input(X), model.check_target(y, X.shape[0], head.loss)
        results.append((model, *model.train_step(Xd, Y, head)))
    (_fast_model, L_fast, g_fast, out_fast), (_, L_std, g_std, out_std) = results
    tol = PARITY_RTOL[dtype]
    assert abs(float(L_fast) - float(L_std)) <= tol * abs(float(L_std))
    for a, b in zip(g_fast, g_std):
        assert relative_difference(a, b) <= tol
    assert isinstance(g_fast, FlatList) and g_fast.is_packed()
    if loss == "cross_entropy":  # the mutable backends return shifted logits: same predicted classes
        np.testing.assert_array_equal(nx.to_numpy(out_fast).argmax(axis=1), nx.to_numpy(out_std).argmax(axis=1))
    else:
        assert relative_difference(out_fast, out_std) <= tol


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
def test_batches_of_other_sizes_reuse_the_workspace_and_match_fresh_arrays(device, dtype):
    arch = dict(ARCHITECTURES[1])
    loss = arch.pop("loss")
    model = nx.MLP(**arch, dtype=dtype, device=device, seed=1)
    head = model.head(loss)
    tol = PARITY_RTOL[dtype]
    for n in (20, 7, 20, 3):  # full batches and smaller last ones, in the same arrays
        X, y = _batch(dict(arch, loss=loss), n=n, seed=n)
        Xd, Y = model.check_input(X), model.check_target(y, n, loss)
        L_new, g_new, _ = model.train_step(Xd, Y, head, reuse=False)
        g_new = [nx.to_numpy(g) for g in g_new]
        L_kept, g_kept, out = model.train_step(Xd, Y, head)
        assert out.shape == (n, arch["layer_sizes"][-1])
        assert abs(float(L_kept) - float(L_new)) <= tol * abs(float(L_new))
        for a, b in zip(g_kept, g_new):
            assert relative_difference(a, b) <= tol


def test_a_training_step_writes_into_the_arrays_of_the_step_before():
    import tracemalloc

    n, hidden = 512, (256, 128)
    model = nx.MLP([64, *hidden, 10], output_activation="softmax", device="cpu", seed=0)
    X, y = _batch(dict(layer_sizes=[64, *hidden, 10], loss="cross_entropy"), n=n)
    head = model.head()
    Xd, Y = model.check_input(X), model.check_target(y, n, "cross_entropy")
    _, _, first = model.train_step(Xd, Y, head)
    first = first.copy()
    tracemalloc.start()
    try:
        _, _, out = model.train_step(Xd, Y, head)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    activations = n * sum(hidden) * 4  # float32 bytes of the hidden layers' outputs alone
    assert peak < activations / 4
    np.testing.assert_array_equal(out, first)  # and the same step gives the same numbers


@pytest.mark.parametrize("device", ["cpu", "array_api_strict"] + (["torch:cpu"] if TORCH else []))
def test_take_batch_is_take_per_array(device):
    """NumpyOps' override (np.take into the given arrays) against the standard twin (xp.take per
    array, read-only inputs), and the twin against NumPy's indexing."""
    xp = nx.namespace(device)
    rng = np.random.default_rng(0)
    hosts = [rng.normal(size=(12, 5)), rng.normal(size=(12, 3)).astype(np.float32), None, rng.uniform(size=(12, 1))]
    for a in hosts:
        if a is not None:
            a.flags.writeable = False
    rows_host = np.array([11, 0, 4, 4, 7])
    arrays = [None if a is None else nx.to_device(a, device) for a in hosts]
    rows = nx.to_device(rows_host, device)
    expected = Ops(xp).take_batch(arrays, rows)
    assert expected[2] is None
    for got, host in zip(expected, hosts):
        if host is not None:
            np.testing.assert_array_equal(nx.to_numpy(got), host[rows_host])
    fast = ops_for(xp)
    if fast.mutable:
        store = {}
        outs = [fast.buffer(store, "X", (5, 5), arrays[0]), None, None, fast.buffer(store, "W", (5, 1), arrays[3])]
        got = fast.take_batch(arrays, rows, outs)
        assert got[0] is outs[0] and got[3] is outs[3] and got[2] is None
    else:
        got = fast.take_batch(arrays, rows)
    for a, b in zip(got, expected):
        assert (a is None and b is None) or _same(a, b)


def test_buffers_grow_shrink_and_take_rows_gathers():
    ops = ops_for(nx.namespace("cpu"))
    store = {}
    like = np.zeros((1, 1), np.float32)
    big = ops.buffer(store, "a", (10, 4), like)
    small = ops.buffer(store, "a", (3, 4), like)
    assert small.shape == (3, 4) and np.shares_memory(big, small) and small.flags.c_contiguous
    bigger = ops.buffer(store, "a", (11, 4), like)
    assert bigger.shape == (11, 4) and not np.shares_memory(big, bigger)
    assert ops.buffer(store, "a", (5, 4), np.zeros(1)).dtype == np.float64  # another dtype: a new array
    assert Ops(nx.namespace("cpu")).buffer(store, "a", (5, 4), like) is None  # the standard ops keep none
    A = np.arange(40.0).reshape(10, 4)
    rows = np.array([9, 0, 3, 3])
    got = ops.take_rows(A, rows, out=ops.buffer(store, "x", (4, 4), A))
    np.testing.assert_array_equal(got, A[rows])
    again = ops.take_rows(A, rows[:2], out=ops.buffer(store, "x", (2, 4), A))
    np.testing.assert_array_equal(again, A[rows[:2]])
    assert np.shares_memory(got, again)


@pytest.mark.parametrize("device", MUTABLE)
def test_the_ops_read_the_primitive_an_activation_names_not_its_functions_or_name(device):
    """An activation is computed by the ops primitive it names (`fused`), and by its own functions
    where it names none, whatever it is called: the ops never inspect activation objects."""
    import dataclasses

    from nn_xp.nn.activations import Activation

    ops = ops_for(nx.namespace(device))
    doubled = Activation("relu", lambda xp, Z: 2 * Z, lambda xp, dA, Z, A: 2 * dA)
    for activation, expected, gradient in ((doubled, [[-2.0, 4.0]], [[2.0, 2.0]]),
                                           (dataclasses.replace(doubled, fused="relu"), [[0.0, 2.0]], [[0.0, 1.0]])):
        Z = nx.to_device(np.array([[-1.0, 2.0]]), device)
        A, Z_kept = ops.bias_activate(activation, Z, nx.to_device(np.zeros(2), device))
        np.testing.assert_array_equal(nx.to_numpy(A), expected)
        dA = nx.to_device(np.ones((1, 2)), device)
        dZ, db = ops.backward_bias(activation, dA, Z_kept, A, db=nx.to_device(np.empty(2), device))
        np.testing.assert_array_equal(nx.to_numpy(dZ), gradient)
        np.testing.assert_array_equal(nx.to_numpy(db), gradient[0])


@pytest.mark.skipif(not TORCH, reason="needs torch")
def test_a_torch_fit_keeps_flat_buffers_and_never_writes_the_callers_tensors():
    """On torch:cpu the parameters, gradients and optimizer state stay views of flat tensors, and
    tensors sharing the caller's NumPy memory (torch.from_numpy) come out of fit as they went in."""
    import torch

    rng = np.random.default_rng(0)
    X_host, y_host = rng.normal(size=(40, 6)), rng.integers(0, 3, size=40)
    X_before = X_host.copy()
    model = nx.MLP([6, 8, 3], output_activation="softmax", dtype="float64", device="torch:cpu", seed=0)
    model.fit(torch.from_numpy(X_host), torch.from_numpy(y_host), epochs=2, batch_size=16, verbose=0)
    np.testing.assert_array_equal(X_host, X_before)
    params = model.parameters()
    assert params.is_packed() and isinstance(params.flat, torch.Tensor)
    state = [field for field in model.optimizer.state if field is not None]
    assert len(state) == 2  # Adam's moments
    for field in state:
        assert isinstance(field, FlatList) and field.is_packed() and isinstance(field.flat, torch.Tensor)
    reference = nx.MLP([6, 8, 3], output_activation="softmax", dtype="float64", device="cpu", seed=0)
    reference.fit(X_host, y_host, epochs=2, batch_size=16, verbose=0)
    for a, b in zip(params, reference.parameters()):
        assert relative_difference(a, b) <= PARITY_RTOL["float64"]


def test_every_ops_class_keeps_the_signatures_it_overrides():
    """A backend's override takes what the shared code passes: CuPy's kernel scratch once shadowed
    NumPy's `_scratch(work, like)`, so the in-place SGD, RMSprop and AMSGrad rules, which CuPy
    inherits, would have called it with the wrong arguments on a GPU."""
    import inspect

    from nn_xp.backends.cupy_ops import CupyOps
    from nn_xp.backends.jax_ops import JaxOps
    from nn_xp.backends.numpy_ops import NumpyOps
    from nn_xp.backends.torch_ops import TorchOps

    mismatched = []
    for cls in (NumpyOps, CupyOps, TorchOps, JaxOps):
        for name, member in vars(cls).items():
            if not inspect.isfunction(member) or name.startswith("__"):
                continue
            for base in cls.__mro__[1:]:
                inherited = vars(base).get(name)
                if inspect.isfunction(inherited):
                    if list(inspect.signature(member).parameters) != list(inspect.signature(inherited).parameters):
                        mismatched.append(f"{cls.__name__}.{name}{inspect.signature(member)} overrides "
                                          f"{base.__name__}.{name}{inspect.signature(inherited)}")
                    break
    assert not mismatched, "\n".join(mismatched)
