"""Optimizers and gradient clipping: PyTorch's update rules step for step, on every backend.

The reference below is a plain NumPy transcription of the algorithms as torch.optim's documentation
writes them (bias-corrected m_hat and v_hat for Adam, etc.), kept independent of nn_xp.optim.
"""

import json

import numpy as np
import pytest

from nn_xp import backend, optim

from .conftest import PARITY_RTOL, relative_difference

SHAPES = [(3, 4), (4,)]
STEPS = 50


# ---- the reference: torch.optim's documented algorithms, transcribed ---------------------------
def reference_sgd(lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    buffers = {}

    def update(i, t, theta, g):
        if weight_decay != 0:
            g = g + weight_decay * theta
        if momentum != 0:
            if t > 1:
                buffers[i] = momentum * buffers[i] + (1 - dampening) * g
            else:
                buffers[i] = g.copy()
            g = g + momentum * buffers[i] if nesterov else buffers[i]
        return theta - lr * g

    return update


def reference_rmsprop(lr, rho=0.99, eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0):
    v, g_ave, b = {}, {}, {}

    def update(i, t, theta, g):
        if weight_decay != 0:
            g = g + weight_decay * theta
        v[i] = rho * v.get(i, 0.0) + (1 - rho) * g**2
        v_tilde = v[i]
        if centered:
            g_ave[i] = g_ave.get(i, 0.0) * rho + (1 - rho) * g
            v_tilde = v_tilde - g_ave[i] ** 2
        if momentum > 0:
            b[i] = momentum * b.get(i, 0.0) + g / (np.sqrt(v_tilde) + eps)
            return theta - lr * b[i]
        return theta - lr * g / (np.sqrt(v_tilde) + eps)

    return update


def reference_adam(lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False):
    m, v, v_max = {}, {}, {}

    def update(i, t, theta, g):
        if decoupled:
            theta = theta - lr * weight_decay * theta
        elif weight_decay != 0:
            g = g + weight_decay * theta
        m[i] = beta1 * m.get(i, 0.0) + (1 - beta1) * g
        v[i] = beta2 * v.get(i, 0.0) + (1 - beta2) * g**2
        m_hat = m[i] / (1 - beta1**t)
        if amsgrad:
            v_max[i] = np.maximum(v_max.get(i, 0.0), v[i])
            v_hat = v_max[i] / (1 - beta2**t)
        else:
            v_hat = v[i] / (1 - beta2**t)
        return theta - lr * m_hat / (np.sqrt(v_hat) + eps)

    return update


def reference_adamw(lr, weight_decay=0.01, **kw):
    return reference_adam(lr, weight_decay=weight_decay, decoupled=True, **kw)


# name -> (nn_xp class, reference factory, torch factory taking (params, **our hyperparameters))
def _torch_sgd(torch, params, learning_rate, **kw):
    return torch.optim.SGD(params, lr=learning_rate, **kw)


def _torch_rmsprop(torch, params, learning_rate, rho=0.99, **kw):
    return torch.optim.RMSprop(params, lr=learning_rate, alpha=rho, **kw)


def _torch_adam(torch, params, learning_rate, beta1=0.9, beta2=0.999, **kw):
    return torch.optim.Adam(params, lr=learning_rate, betas=(beta1, beta2), **kw)


def _torch_adamw(torch, params, learning_rate, beta1=0.9, beta2=0.999, **kw):
    return torch.optim.AdamW(params, lr=learning_rate, betas=(beta1, beta2), **kw)


KINDS = {
    "sgd": (optim.SGD, reference_sgd, _torch_sgd),
    "rmsprop": (optim.RMSprop, reference_rmsprop, _torch_rmsprop),
    "adam": (optim.Adam, reference_adam, _torch_adam),
    "adamw": (optim.AdamW, reference_adamw, _torch_adamw),
}
CASES = [
    ("sgd", dict(learning_rate=0.05)),
    ("sgd", dict(learning_rate=0.05, momentum=0.9)),
    ("sgd", dict(learning_rate=0.05, momentum=0.9, dampening=0.3)),
    ("sgd", dict(learning_rate=0.05, momentum=0.9, nesterov=True)),
    ("sgd", dict(learning_rate=0.05, momentum=0.8, dampening=0.5, weight_decay=0.1)),
    ("sgd", dict(learning_rate=0.02, momentum=0.5, nesterov=True, weight_decay=0.01)),
    ("rmsprop", dict(learning_rate=0.01)),
    ("rmsprop", dict(learning_rate=0.01, rho=0.9, eps=1e-6)),
    ("rmsprop", dict(learning_rate=0.01, centered=True)),
    ("rmsprop", dict(learning_rate=0.01, momentum=0.9)),
    ("rmsprop", dict(learning_rate=0.005, centered=True, momentum=0.5, weight_decay=0.1)),
    ("adam", dict(learning_rate=0.01)),
    ("adam", dict(learning_rate=0.01, amsgrad=True)),
    ("adam", dict(learning_rate=0.01, weight_decay=0.1)),
    ("adam", dict(learning_rate=0.02, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.05, amsgrad=True)),
    ("adamw", dict(learning_rate=0.01)),
    ("adamw", dict(learning_rate=0.01, weight_decay=0.1)),
    ("adamw", dict(learning_rate=0.02, weight_decay=0.2, amsgrad=True, beta2=0.99)),
]
CASE_IDS = [f"{kind}-" + "-".join(f"{k}={v}" for k, v in kw.items()) for kind, kw in CASES]


# ---- the test problem: a quadratic plus a fixed noise sequence of varying size -----------------
_rng = np.random.default_rng(1234)
INITIAL = [_rng.standard_normal(shape) for shape in SHAPES]
CURVATURE = [_rng.uniform(0.5, 3.0, shape) for shape in SHAPES]
NOISE = [[_rng.standard_normal(shape) * (1.0 + 0.9 * np.sin(t)) for shape in SHAPES] for t in range(STEPS)]


def gradient(t, params):
    """dL/dp for L = sum(c * p^2) / 2, plus step t's noise: host NumPy float64."""
    return [c * backend.to_numpy(p) + n for c, p, n in zip(CURVATURE, params, NOISE[t % STEPS])]


def run_nn_xp(kind, hyperparameters, steps=STEPS):
    params = [p.copy() for p in INITIAL]
    opt = KINDS[kind][0](params, **hyperparameters)
    for t in range(steps):
        opt.step(gradient(t, params))
    return params


def run_reference(kind, hyperparameters, steps=STEPS):
    kw = dict(hyperparameters)
    update = KINDS[kind][1](kw.pop("learning_rate"), **kw)
    params = [p.copy() for p in INITIAL]
    for t in range(steps):
        grads = gradient(t, params)
        params = [update(i, t + 1, p, g) for i, (p, g) in enumerate(zip(params, grads))]
    return params


def run_torch(torch, kind, hyperparameters, steps=STEPS):
    params = [torch.nn.Parameter(torch.tensor(p, dtype=torch.float64)) for p in INITIAL]
    opt = KINDS[kind][2](torch, params, **hyperparameters)
    for t in range(steps):
        for p, g in zip(params, gradient(t, [p.detach().numpy() for p in params])):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in params]


# ---- the update rules --------------------------------------------------------------------------
@pytest.mark.parametrize("kind, hyperparameters", CASES, ids=CASE_IDS)
def test_matches_documented_algorithm(kind, hyperparameters):
    ours, reference = run_nn_xp(kind, hyperparameters), run_reference(kind, hyperparameters)
    for a, b, start in zip(ours, reference, INITIAL):
        assert relative_difference(a, start) > 1e-3  # the trajectory went somewhere
        assert relative_difference(a, b) < 1e-12


@pytest.mark.parametrize("kind, hyperparameters", CASES, ids=CASE_IDS)
def test_matches_torch_optim(kind, hyperparameters):
    torch = pytest.importorskip("torch")
    ours, theirs = run_nn_xp(kind, hyperparameters), run_torch(torch, kind, hyperparameters)
    for a, b in zip(ours, theirs):
        assert relative_difference(a, b) < 1e-12


def test_adam_first_step_moves_by_learning_rate_times_sign():
    # m_hat = g and v_hat = g^2 after one step, so the move is lr * g / (|g| + eps).
    p = np.array([1.0, -2.0, 3.0, 0.5])
    g = np.array([0.3, -5.0, -0.01, 2.0])
    before = p.copy()
    optim.Adam([p], learning_rate=0.1).step([g])
    np.testing.assert_allclose(before - p, 0.1 * np.sign(g), rtol=1e-6)


def test_sgd_momentum_two_steps_by_hand():
    # Step 1: b = g1 = 2 (a copy: no dampening), p = 1 - 0.1 * 2 = 0.8.
    # Step 2: b = 0.9 * 2 + (1 - 0.5) * 4 = 3.8, p = 0.8 - 0.1 * 3.8 = 0.42.
    p = np.array([1.0])
    opt = optim.SGD([p], learning_rate=0.1, momentum=0.9, dampening=0.5)
    opt.step([np.array([2.0])])
    assert p[0] == pytest.approx(0.8, abs=1e-15)
    opt.step([np.array([4.0])])
    assert p[0] == pytest.approx(0.42, abs=1e-15)
    assert opt.state["momentum_buffer"][0][0] == pytest.approx(3.8, abs=1e-15)


def test_nesterov_first_step_by_hand():
    # b = g = 2; the step uses g + momentum * b = 2 + 0.9 * 2 = 3.8: p = 1 - 0.1 * 3.8.
    p = np.array([1.0])
    optim.SGD([p], learning_rate=0.1, momentum=0.9, nesterov=True).step([np.array([2.0])])
    assert p[0] == pytest.approx(0.62, abs=1e-15)


def test_adamw_decays_before_the_adam_step():
    # A zero gradient leaves m = v = 0 and Adam's step zero: only the decay p *= 1 - lr * wd acts.
    p = np.array([2.0, -4.0])
    optim.AdamW([p], learning_rate=0.1, weight_decay=0.5).step([np.zeros(2)])
    np.testing.assert_allclose(p, [2.0 * 0.95, -4.0 * 0.95], rtol=1e-15)


# ---- every backend ----------------------------------------------------------------------------
MATRIX_CASES = [
    ("sgd", dict(learning_rate=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("sgd", dict(learning_rate=0.05, momentum=0.9, dampening=0.2)),
    ("rmsprop", dict(learning_rate=0.01, centered=True, momentum=0.5, weight_decay=0.01)),
    ("adam", dict(learning_rate=0.01, amsgrad=True, weight_decay=0.01)),
    ("adamw", dict(learning_rate=0.01, weight_decay=0.1)),
]


def _run_on(device, dtype, kind, hyperparameters, steps=20):
    params = [backend.to_device(p.astype(dtype), device) for p in INITIAL]
    opt = KINDS[kind][0](params, **hyperparameters)
    arrays = list(params)
    for t in range(steps):
        opt.step([backend.to_device(n.astype(dtype), device) for n in NOISE[t]])
    return params, arrays, opt


@pytest.mark.parametrize("kind, hyperparameters", MATRIX_CASES, ids=[c[0] for c in MATRIX_CASES])
def test_backends_update_and_agree(device, dtype, kind, hyperparameters):
    params, arrays, opt = _run_on(device, dtype, kind, hyperparameters)
    if device == "array_api_strict":  # the standard ops make new arrays, which replace the list's
        assert not any(p is a for p, a in zip(params, arrays))
    else:  # NumPy and CuPy update in place
        assert all(p is a for p, a in zip(params, arrays))
    assert opt.step_count == 20
    for p in params:
        assert backend.device_of(p) == device
        assert str(p.dtype).endswith(dtype)
    assert opt.state  # every case keeps state
    for arrays_of_state in opt.state.values():
        for s, p in zip(arrays_of_state, params):
            assert backend.device_of(s) == device and s.dtype == p.dtype and s.shape == p.shape
    expected, _, _ = _run_on("cpu", dtype, kind, hyperparameters)
    for p, e in zip(params, expected):
        assert relative_difference(p, e) < PARITY_RTOL[dtype]


def test_to_moves_state_with_the_parameters():
    params = [p.copy() for p in INITIAL]
    opt = optim.Adam(params, learning_rate=0.01)
    opt.step([n.copy() for n in NOISE[0]])
    params[:] = [backend.to_device(p, backend.STRICT) for p in params]  # what model.to() does
    assert opt.to(backend.STRICT) is opt
    assert all(backend.device_of(m) == backend.STRICT for m in opt.state["m"])
    opt.step([backend.to_device(n, backend.STRICT) for n in NOISE[1]])
    reference = [p.copy() for p in INITIAL]
    other = optim.Adam(reference, learning_rate=0.01)
    other.step([n.copy() for n in NOISE[0]])
    other.step([n.copy() for n in NOISE[1]])
    for p, r in zip(params, reference):
        np.testing.assert_array_equal(backend.to_numpy(p), r)


# ---- convergence (optax's checks: a parabola and the Rosenbrock function) ----------------------
QUADRATIC_OPTIMUM = np.array([1.0, -2.0, 0.5])
QUADRATIC_CURVATURE = np.array([1.0, 3.0, 10.0])


def _quadratic_gradient(x):
    return QUADRATIC_CURVATURE * (x - QUADRATIC_OPTIMUM)


def _rosenbrock_gradient(x):
    a, b = x
    return np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])


# name: (class, hyperparameters, quadratic learning rate, Rosenbrock learning rate, Rosenbrock steps)
CONVERGENCE = {
    "sgd": (optim.SGD, {}, 0.05, 1e-3, 20000),
    "momentum": (optim.SGD, dict(momentum=0.9), 0.02, 1e-3, 4000),
    "nesterov": (optim.SGD, dict(momentum=0.9, nesterov=True), 0.02, 1e-3, 4000),
    "rmsprop": (optim.RMSprop, {}, 0.01, 1e-3, 10000),
    "adam": (optim.Adam, {}, 0.05, 1e-2, 6000),
    "adamw": (optim.AdamW, dict(weight_decay=0.0), 0.05, 1e-2, 6000),
}


@pytest.mark.parametrize("name", list(CONVERGENCE))
def test_minimises_a_quadratic(name):
    cls, hyperparameters, learning_rate, _, _ = CONVERGENCE[name]
    x = np.zeros(3)
    opt = cls([x], learning_rate=learning_rate, **hyperparameters)
    for _ in range(3000):
        opt.step([_quadratic_gradient(x)])
    assert np.max(np.abs(x - QUADRATIC_OPTIMUM)) < 1e-4


@pytest.mark.parametrize("name", list(CONVERGENCE))
def test_minimises_rosenbrock(name):
    cls, hyperparameters, _, learning_rate, steps = CONVERGENCE[name]
    x = np.array([-1.5, 2.0])
    opt = cls([x], learning_rate=learning_rate, **hyperparameters)
    for _ in range(steps):
        opt.step([_rosenbrock_gradient(x)])
    assert np.max(np.abs(x - 1.0)) < 1e-2


# ---- state_dict --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, hyperparameters", CASES, ids=CASE_IDS)
def test_state_dict_round_trip_is_bitwise(kind, hyperparameters):
    cls = KINDS[kind][0]
    params = [p.copy() for p in INITIAL]
    opt = cls(params, **hyperparameters)
    for t in range(10):
        opt.step(gradient(t, params))
    saved = opt.state_dict()
    json.dumps({k: v for k, v in saved.items() if k != "state"})  # JSON-friendly but for arrays
    assert saved["step_count"] == 10 and saved["name"] == cls.name
    assert all(isinstance(a, np.ndarray) for arrays in saved["state"].values() for a in arrays)

    copies = [p.copy() for p in params]
    fresh = cls(copies)  # default hyperparameters: load_state_dict restores them
    fresh.load_state_dict(saved)
    assert fresh.hyperparameters == opt.hyperparameters and fresh.step_count == 10
    strict = [backend.to_device(p.copy(), backend.STRICT) for p in params]  # to_device may share memory
    on_strict = cls(strict)
    on_strict.load_state_dict(saved)
    assert all(backend.device_of(a) == backend.STRICT for arrays in on_strict.state.values() for a in arrays)
    for t in range(10, 20):
        opt.step(gradient(t, params))
        fresh.step(gradient(t, copies))
        on_strict.step([backend.to_device(g, backend.STRICT) for g in gradient(t, strict)])
    for a, b, c in zip(params, copies, strict):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, backend.to_numpy(c))


def test_state_dict_before_any_step_and_learning_rate_follow():
    params = [p.copy() for p in INITIAL]
    opt = optim.Adam(params, learning_rate=0.01)
    assert opt.state_dict()["state"] == {} and opt.state_dict()["step_count"] == 0
    opt.learning_rate = 0.005  # as a schedule would
    other = optim.Adam([p.copy() for p in INITIAL])
    other.load_state_dict(opt.state_dict())
    assert other.learning_rate == 0.005


def test_load_state_dict_refuses_mismatches():
    params = [p.copy() for p in INITIAL]
    adam = optim.Adam(params)
    adam.step([n.copy() for n in NOISE[0]])
    saved = adam.state_dict()
    with pytest.raises(ValueError, match="'adam'.*'sgd'"):
        optim.SGD([p.copy() for p in INITIAL], momentum=0.9).load_state_dict(saved)
    with pytest.raises(ValueError, match="shape"):
        optim.Adam([np.zeros((2, 2)), np.zeros(4)]).load_state_dict(saved)
    with pytest.raises(ValueError, match="arrays for 1 parameters"):
        optim.Adam([np.zeros((3, 4))]).load_state_dict(saved)
    with pytest.raises(ValueError, match="v_max"):  # amsgrad=True needs v_max, the dict has none
        optim.Adam([p.copy() for p in INITIAL]).load_state_dict(
            {**saved, "hyperparameters": {**saved["hyperparameters"], "amsgrad": True}}
        )
    with pytest.raises(ValueError, match="keys"):
        optim.Adam([p.copy() for p in INITIAL]).load_state_dict({"name": "adam"})
    target = [p.copy() for p in INITIAL]
    untouched = optim.Adam(target, learning_rate=0.02)
    with pytest.raises(ValueError):
        untouched.load_state_dict({**saved, "hyperparameters": {**saved["hyperparameters"], "beta1": 1.5}})
    assert untouched.learning_rate == 0.02 and untouched.step_count == 0 and untouched.state == {}


# ---- argument checks --------------------------------------------------------------------------
BAD_HYPERPARAMETERS = [
    (optim.SGD, dict(learning_rate=0.0), ValueError, "learning_rate must be a finite number > 0"),
    (optim.SGD, dict(learning_rate=-0.1), ValueError, "learning_rate"),
    (optim.Adam, dict(learning_rate=float("nan")), ValueError, "learning_rate"),
    (optim.Adam, dict(learning_rate=float("inf")), ValueError, "learning_rate"),
    (optim.Adam, dict(learning_rate="0.1"), TypeError, "learning_rate must be a real number"),
    (optim.SGD, dict(momentum=-0.5), ValueError, "momentum must be a finite number >= 0"),
    (optim.SGD, dict(momentum=0.9, dampening=1.5), ValueError, r"dampening must be .* in \[0.0, 1.0\]"),
    (optim.SGD, dict(nesterov=True), ValueError, "nesterov=True requires momentum > 0 and dampening == 0"),
    (optim.SGD, dict(momentum=0.9, dampening=0.1, nesterov=True), ValueError, "dampening == 0"),
    (optim.SGD, dict(momentum=0.9, nesterov=1), TypeError, "nesterov must be True or False"),
    (optim.SGD, dict(weight_decay=-1e-4), ValueError, "weight_decay must be a finite number >= 0"),
    (optim.RMSprop, dict(rho=1.0), ValueError, r"rho must be a finite number in \[0.0, 1.0\)"),
    (optim.RMSprop, dict(rho=-0.1), ValueError, "rho"),
    (optim.RMSprop, dict(eps=0.0), ValueError, "eps must be a finite number > 0"),
    (optim.RMSprop, dict(centered="yes"), TypeError, "centered must be True or False"),
    (optim.RMSprop, dict(momentum=float("nan")), ValueError, "momentum"),
    (optim.Adam, dict(beta1=1.0), ValueError, r"beta1 must be a finite number in \[0.0, 1.0\)"),
    (optim.Adam, dict(beta2=-0.5), ValueError, "beta2"),
    (optim.Adam, dict(eps=-1e-8), ValueError, "eps"),
    (optim.Adam, dict(amsgrad=None), TypeError, "amsgrad must be True or False"),
    (optim.AdamW, dict(weight_decay=-0.01), ValueError, "weight_decay"),
    (optim.AdamW, dict(beta1=True), TypeError, "beta1 must be a real number"),
]


@pytest.mark.parametrize(
    "cls, kwargs, error, message",
    BAD_HYPERPARAMETERS,
    ids=[f"{c.name}-{'-'.join(k)}" for c, k, _, _ in BAD_HYPERPARAMETERS],
)
def test_bad_hyperparameters(cls, kwargs, error, message):
    with pytest.raises(error, match=message):
        cls([np.zeros(3)], **kwargs)


def test_params_must_be_a_nonempty_list():
    with pytest.raises(TypeError, match="params must be the model's parameter list"):
        optim.SGD((np.zeros(3),))
    with pytest.raises(ValueError, match="params must hold at least one array"):
        optim.SGD([])


def test_learning_rate_setter_checks():
    opt = optim.SGD([np.zeros(3)])
    opt.learning_rate = 0.0  # a cosine schedule may end at zero
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="learning_rate"):
            opt.learning_rate = bad


@pytest.mark.parametrize(
    "grads, message",
    [
        ([np.ones((3, 4))], "one array per parameter: expected 2, got 1"),
        ([np.ones((3, 4)), np.ones(4), np.ones(4)], "expected 2, got 3"),
        ([np.ones((4, 3)), np.ones(4)], r"grads\[0\] must have its parameter's shape \(3, 4\), got \(4, 3\)"),
        ([np.ones((3, 4)), np.ones((4, 1))], r"grads\[1\]"),
        ([np.ones((3, 4)), np.ones(4, dtype=np.float32)], r"grads\[1\] has dtype float32"),
    ],
)
def test_bad_grads_leave_everything_unchanged(grads, message):
    params = [p.copy() for p in INITIAL]
    opt = optim.Adam(params)
    opt.step([n.copy() for n in NOISE[0]])
    before, state = [p.copy() for p in params], opt.state_dict()
    with pytest.raises(ValueError, match=message):
        opt.step(grads)
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p, b)
    assert opt.step_count == 1
    for key, arrays in opt.state_dict()["state"].items():
        for a, b in zip(arrays, state["state"][key]):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="grads must be a list"):
        opt.step(np.ones(4))


# ---- by name ----------------------------------------------------------------------------------
def test_get_optimizer():
    params = [np.zeros(3)]
    assert optim.OPTIMIZERS == ("sgd", "momentum", "rmsprop", "adam", "adamw")
    sgd = optim.get_optimizer("sgd", params)
    assert type(sgd) is optim.SGD and sgd.learning_rate == 0.01 and sgd.momentum == 0.0
    momentum = optim.get_optimizer("momentum", params, learning_rate=0.1)
    assert type(momentum) is optim.SGD and momentum.momentum == 0.9 and momentum.learning_rate == 0.1
    assert type(optim.get_optimizer("rmsprop", params)) is optim.RMSprop
    adam = optim.get_optimizer("adam", params)
    assert type(adam) is optim.Adam and adam.learning_rate == 0.001
    adamw = optim.get_optimizer("adamw", params, 0.003)
    assert type(adamw) is optim.AdamW and adamw.weight_decay == 0.01 and adamw.learning_rate == 0.003
    assert adamw.params is params  # the live list, not a copy
    assert optim.get_optimizer(adam, params) is adam
    with pytest.raises(ValueError, match="another parameter list"):
        optim.get_optimizer(adam, [np.zeros(3)])
    with pytest.raises(ValueError, match=r"\['sgd', 'momentum', 'rmsprop', 'adam', 'adamw'\].*'adagrad'"):
        optim.get_optimizer("adagrad", params)
    with pytest.raises(TypeError, match="optimizer must be one of"):
        optim.get_optimizer(3, params)
    names = [cls.name for cls in (optim.SGD, optim.RMSprop, optim.Adam, optim.AdamW)]
    assert names == ["sgd", "rmsprop", "adam", "adamw"]
