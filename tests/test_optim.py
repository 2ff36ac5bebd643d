"""Optimizers and gradient clipping: PyTorch's update rules step for step, on every backend.

The reference below is a plain NumPy transcription of the algorithms as torch.optim's documentation
writes them (bias-corrected m_hat and v_hat for Adam, etc.), kept independent of nn_xp.optim.
"""

import json

import numpy as np
import pytest

from nn_xp import backends, optim
from nn_xp.optim.base import state_arrays

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
    return [c * backends.to_numpy(p) + n for c, p, n in zip(CURVATURE, params, NOISE[t % STEPS])]


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
    assert opt.state.momentum_buffer[0][0] == pytest.approx(3.8, abs=1e-15)


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
    params = [backends.to_device(p.astype(dtype), device) for p in INITIAL]
    opt = KINDS[kind][0](params, **hyperparameters)
    arrays = list(params)
    for t in range(steps):
        opt.step([backends.to_device(n.astype(dtype), device) for n in NOISE[t]])
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
        assert backends.device_of(p) == device
        assert str(p.dtype).endswith(dtype)
    assert isinstance(opt.state, type(opt).State) and state_arrays(opt.state)  # every case keeps state
    for arrays_of_state in state_arrays(opt.state).values():
        for s, p in zip(arrays_of_state, params):
            assert backends.device_of(s) == device and s.dtype == p.dtype and s.shape == p.shape
    expected, _, _ = _run_on("cpu", dtype, kind, hyperparameters)
    for p, e in zip(params, expected):
        assert relative_difference(p, e) < PARITY_RTOL[dtype]


def test_to_moves_state_with_the_parameters():
    params = [p.copy() for p in INITIAL]
    opt = optim.Adam(params, learning_rate=0.01)
    opt.step([n.copy() for n in NOISE[0]])
    params[:] = [backends.to_device(p, backends.STRICT) for p in params]  # what model.to() does
    assert opt.to(backends.STRICT) is opt
    assert all(backends.device_of(m) == backends.STRICT for m in opt.state.m)
    opt.step([backends.to_device(n, backends.STRICT) for n in NOISE[1]])
    reference = [p.copy() for p in INITIAL]
    other = optim.Adam(reference, learning_rate=0.01)
    other.step([n.copy() for n in NOISE[0]])
    other.step([n.copy() for n in NOISE[1]])
    for p, r in zip(params, reference):
        np.testing.assert_array_equal(backends.to_numpy(p), r)


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
    strict = [backends.to_device(p.copy(), backends.STRICT) for p in params]  # to_device may share memory
    on_strict = cls(strict)
    on_strict.load_state_dict(saved)
    assert all(backends.device_of(a) == backends.STRICT for arrays in state_arrays(on_strict.state).values()
               for a in arrays)
    for t in range(10, 20):
        opt.step(gradient(t, params))
        fresh.step(gradient(t, copies))
        on_strict.step([backends.to_device(g, backends.STRICT) for g in gradient(t, strict)])
    for a, b, c in zip(params, copies, strict):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, backends.to_numpy(c))


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
    assert untouched.learning_rate == 0.02 and untouched.step_count == 0 and untouched.state is None


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
    assert optim.OPTIMIZERS == ("sgd", "momentum", "rmsprop", "adam", "adamw", "lbfgs")
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
    with pytest.raises(ValueError, match=r"\['sgd', 'momentum', 'rmsprop', 'adam', 'adamw', 'lbfgs'\].*'adagrad'"):
        optim.get_optimizer("adagrad", params)
    with pytest.raises(TypeError, match="optimizer must be one of"):
        optim.get_optimizer(3, params)
    lbfgs = optim.get_optimizer("lbfgs", params)
    assert type(lbfgs) is optim.LBFGS and lbfgs.learning_rate == 1.0 and lbfgs.max_eval == 25
    names = [cls.name for cls in (optim.SGD, optim.RMSprop, optim.Adam, optim.AdamW, optim.LBFGS)]
    assert names == ["sgd", "rmsprop", "adam", "adamw", "lbfgs"]


# ---- L-BFGS: torch.optim.LBFGS step for step --------------------------------------------------
# Each problem: initial parameters (a list of host arrays) and value_and_grad(arrays) -> (loss, grads).
def _lbfgs_quadratic():
    rng = np.random.default_rng(7)
    M = rng.standard_normal((10, 10))
    A, b = M @ M.T / 10 + np.eye(10), rng.standard_normal(10)

    def value_and_grad(arrays):
        x = np.concatenate([np.reshape(a, -1) for a in arrays])
        g = A @ x - b
        return 0.5 * x @ A @ x - b @ x, [g[:6].reshape(2, 3), g[6:]]

    return [rng.standard_normal((2, 3)), rng.standard_normal(4)], value_and_grad


def _lbfgs_rosenbrock():
    def value_and_grad(arrays):
        x = np.concatenate([np.reshape(a, -1) for a in arrays])
        a, b = x[:-1], x[1:]
        f = np.sum(100 * (b - a * a) ** 2 + (1 - a) ** 2)
        g = np.zeros_like(x)
        g[:-1] += -400 * a * (b - a * a) - 2 * (1 - a)
        g[1:] += 200 * (b - a * a)
        return f, [g[:2], g[2:]]

    return [np.array([-1.2, 1.0]), np.array([-0.5, 0.8])], value_and_grad


def _lbfgs_mlp():
    import nn_xp as nx

    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 3))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int) + (X[:, 2] > 1)
    model = nx.MLP([3, 6, 3], activation="tanh", output_activation="softmax", dtype="float64", device="cpu",
                   seed=0)

    def value_and_grad(arrays):
        model.set_parameters([backends.to_numpy(a) for a in arrays])
        loss, grads = model.loss_and_grads(X, y)
        return loss, [backends.to_numpy(g) for g in grads]

    return [backends.to_numpy(p).copy() for p in model.parameters()], value_and_grad


LBFGS_PROBLEMS = {"quadratic": _lbfgs_quadratic, "rosenbrock": _lbfgs_rosenbrock, "mlp": _lbfgs_mlp}
# (problem, hyperparameters): small max_iter and history_size, so that the memory carries over
# between steps and the oldest pairs are dropped.
LBFGS_CASES = [
    ("quadratic", dict(learning_rate=0.5, max_iter=8, history_size=4)),
    ("quadratic", dict(max_iter=8, history_size=4, line_search_fn="strong_wolfe")),
    ("rosenbrock", dict(learning_rate=0.05, max_iter=15, history_size=5)),
    ("rosenbrock", dict(max_iter=15, history_size=5, line_search_fn="strong_wolfe")),
    ("mlp", dict(learning_rate=0.5, max_iter=10, history_size=6)),
    ("mlp", dict(max_iter=10, history_size=6, line_search_fn="strong_wolfe")),
]
LBFGS_IDS = [f"{problem}-{kw.get('line_search_fn') or 'fixed_step'}" for problem, kw in LBFGS_CASES]
LBFGS_STEPS = 4


def run_lbfgs(problem, hyperparameters):
    """Parameters and returned loss after each of LBFGS_STEPS steps of nn_xp's LBFGS."""
    initial, value_and_grad = LBFGS_PROBLEMS[problem]()
    params = [p.copy() for p in initial]
    opt = optim.LBFGS(params, **hyperparameters)
    trajectory = []
    for _ in range(LBFGS_STEPS):
        loss = opt.step(lambda: value_and_grad(params))
        trajectory.append(([p.copy() for p in params], loss))
    return trajectory, opt


def run_torch_lbfgs(torch, problem, hyperparameters):
    initial, value_and_grad = LBFGS_PROBLEMS[problem]()
    params = [torch.nn.Parameter(torch.tensor(p, dtype=torch.float64)) for p in initial]
    kw = dict(hyperparameters)
    opt = torch.optim.LBFGS(params, lr=kw.pop("learning_rate", 1.0), **kw)

    def closure():
        loss, grads = value_and_grad([p.detach().numpy() for p in params])
        for p, g in zip(params, grads):
            p.grad = torch.tensor(np.asarray(g, dtype=np.float64))
        return torch.tensor(loss, dtype=torch.float64)

    trajectory = []
    for _ in range(LBFGS_STEPS):
        loss = float(opt.step(closure))
        trajectory.append(([p.detach().numpy().copy() for p in params], loss))
    return trajectory


def run_reference_lbfgs(problem, hyperparameters):
    """torch.optim.LBFGS.step transcribed in plain NumPy on one flat vector (the strong-Wolfe search
    is nn_xp.optim.line_search's, checked against torch's own in tests/test_line_search.py)."""
    from nn_xp.optim.line_search import strong_wolfe

    initial, value_and_grad = LBFGS_PROBLEMS[problem]()
    hp = dict(dict(learning_rate=1.0, max_iter=20, tolerance_grad=1e-7, tolerance_change=1e-9, history_size=100,
                   line_search_fn=None), **hyperparameters)
    lr, max_iter, history_size = hp["learning_rate"], hp["max_iter"], hp["history_size"]
    max_eval = hp.get("max_eval") or max_iter * 5 // 4
    shapes = [p.shape for p in initial]
    sizes = [p.size for p in initial]

    def unflat(x):
        return [part.reshape(shape) for part, shape in zip(np.split(x, np.cumsum(sizes)[:-1]), shapes)]

    def f_and_g(x):
        loss, grads = value_and_grad(unflat(x))
        return float(loss), np.concatenate([np.reshape(g, -1) for g in grads])

    x = np.concatenate([p.reshape(-1) for p in initial])
    state = dict(n_iter=0, d=None, t=None, old_dirs=[], old_stps=[], ro=[], H_diag=1, prev_flat_grad=None)
    trajectory = []
    for _ in range(LBFGS_STEPS):
        loss, g = f_and_g(x)
        orig_loss, evals = loss, 1
        if np.max(np.abs(g)) > hp["tolerance_grad"]:
            d, t = state["d"], state["t"]
            old_dirs, old_stps, ro, H_diag = state["old_dirs"], state["old_stps"], state["ro"], state["H_diag"]
            prev_g = state["prev_flat_grad"]
            n_iter = 0
            while n_iter < max_iter:
                n_iter += 1
                state["n_iter"] += 1
                if state["n_iter"] == 1:
                    d, old_dirs, old_stps, ro, H_diag = -g, [], [], [], 1
                else:
                    y, s = g - prev_g, d * t
                    ys = y @ s
                    if ys > 1e-10:
                        if len(old_dirs) == history_size:
                            old_dirs.pop(0), old_stps.pop(0), ro.pop(0)
                        old_dirs.append(y), old_stps.append(s), ro.append(1.0 / ys)
                        H_diag = ys / (y @ y)
                    al = [0.0] * len(old_dirs)
                    q = -g
                    for i in reversed(range(len(old_dirs))):
                        al[i] = (old_stps[i] @ q) * ro[i]
                        q = q - al[i] * old_dirs[i]
                    r = q * H_diag
                    for i in range(len(old_dirs)):
                        r = r + (al[i] - (old_dirs[i] @ r) * ro[i]) * old_stps[i]
                    d = r
                prev_g, prev_loss = g, loss
                t = min(1.0, 1.0 / np.sum(np.abs(g))) * lr if state["n_iter"] == 1 else lr
                gtd = g @ d
                if gtd > -hp["tolerance_change"]:
                    break
                done_evals = 0
                if hp["line_search_fn"] == "strong_wolfe":
                    x0 = x
                    loss, g, t, done_evals = strong_wolfe(
                        lambda step, x0=x0, d=d: f_and_g(x0 + step * d), lambda a, b: float(a @ b),
                        t, d, loss, g, gtd, np.max(np.abs(d)), max_ls=max_eval - evals)
                    x = x0 + t * d
                    optimal = np.max(np.abs(g)) <= hp["tolerance_grad"]
                else:
                    x = x + t * d
                    optimal = False
                    if n_iter != max_iter:
                        loss, g = f_and_g(x)
                        optimal, done_evals = np.max(np.abs(g)) <= hp["tolerance_grad"], 1
                evals += done_evals
                if n_iter == max_iter or evals >= max_eval or optimal:
                    break
                if np.max(np.abs(d * t)) <= hp["tolerance_change"] or abs(loss - prev_loss) < hp["tolerance_change"]:
                    break
            state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=H_diag, prev_flat_grad=prev_g)
        trajectory.append((unflat(x.copy()), orig_loss))
    return trajectory


def _trajectory_difference(ours, theirs) -> float:
    """The largest absolute difference of any parameter or returned loss over the steps."""
    worst = 0.0
    for (params_a, loss_a), (params_b, loss_b) in zip(ours, theirs):
        worst = max(worst, abs(loss_a - loss_b))
        for a, b in zip(params_a, params_b):
            worst = max(worst, float(np.max(np.abs(backends.to_numpy(a) - np.asarray(b)))))
    return worst


@pytest.mark.parametrize("problem, hyperparameters", LBFGS_CASES, ids=LBFGS_IDS)
def test_lbfgs_matches_torch(problem, hyperparameters):
    torch = pytest.importorskip("torch")
    ours, _ = run_lbfgs(problem, hyperparameters)
    theirs = run_torch_lbfgs(torch, problem, hyperparameters)
    start = LBFGS_PROBLEMS[problem]()[0]
    assert max(np.max(np.abs(a - b)) for a, b in zip(ours[-1][0], start)) > 0.1  # it went somewhere
    assert ours[-1][1] < ours[0][1]  # and downhill
    assert _trajectory_difference(ours, theirs) < 1e-10


@pytest.mark.parametrize("problem, hyperparameters", LBFGS_CASES, ids=LBFGS_IDS)
def test_lbfgs_matches_the_transcribed_algorithm(problem, hyperparameters):
    ours, _ = run_lbfgs(problem, hyperparameters)
    reference = run_reference_lbfgs(problem, hyperparameters)
    assert _trajectory_difference(ours, reference) < 1e-10


def test_lbfgs_minimises_a_quadratic_and_rosenbrock():
    for problem, steps in (("quadratic", 5), ("rosenbrock", 10)):
        initial, value_and_grad = LBFGS_PROBLEMS[problem]()
        params = [p.copy() for p in initial]
        opt = optim.LBFGS(params, line_search_fn="strong_wolfe", tolerance_grad=1e-10, tolerance_change=1e-14)
        for _ in range(steps):
            opt.step(lambda value_and_grad=value_and_grad, params=params: value_and_grad(params))
        x = np.concatenate([p.reshape(-1) for p in params])
        if problem == "rosenbrock":
            np.testing.assert_allclose(x, 1.0, atol=1e-6)
        else:
            _, g = value_and_grad(params)
            assert max(np.max(np.abs(part)) for part in g) < 1e-7
    assert opt.last_step.reason in ("tolerance_grad", "tolerance_change")


def test_lbfgs_on_the_models_flat_buffer_equals_plain_arrays():
    import nn_xp as nx

    initial, value_and_grad = _lbfgs_mlp()
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 3))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int) + (X[:, 2] > 1)
    model = nx.MLP([3, 6, 3], activation="tanh", output_activation="softmax", dtype="float64", device="cpu", seed=0)
    assert model.parameters().is_packed()
    opt = optim.LBFGS(model.parameters(), max_iter=6, line_search_fn="strong_wolfe")
    plain = [p.copy() for p in initial]
    reference = optim.LBFGS(plain, max_iter=6, line_search_fn="strong_wolfe")
    for _ in range(2):
        assert opt.step(lambda: model.loss_and_grads(X, y)) == reference.step(lambda: value_and_grad(plain))
    assert model.parameters().is_packed()  # updated in place: the model's buffer stays the one
    for p, q in zip(model.parameters(), plain):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_backends_agree(device, dtype, line_search_fn):
    import nn_xp as nx

    rng = np.random.default_rng(5)
    X = rng.standard_normal((30, 2))
    y = np.sin(X[:, 0]) + X[:, 1] ** 2

    def run(device, dtype):
        model = nx.MLP([2, 8, 1], activation="tanh", dtype=dtype, device=device, seed=1)
        opt = optim.LBFGS(model.parameters(), learning_rate=0.5 if line_search_fn is None else 1.0, max_iter=5,
                          history_size=3, line_search_fn=line_search_fn)
        losses = [opt.step(lambda: model.loss_and_grads(X, y)) for _ in range(2)]
        return model, opt, losses

    model, opt, losses = run(device, dtype)
    for p in model.parameters():
        assert backends.device_of(p) == device and str(p.dtype).endswith(dtype)
    for vectors in opt.state.values():
        assert all(backends.device_of(v) == device and str(v.dtype).endswith(dtype) for v in vectors)
    assert losses[1] < losses[0]
    expected, _, expected_losses = run("cpu", dtype)
    tolerance = 1e-4 if dtype == "float32" else PARITY_RTOL[dtype]
    for p, e in zip(model.parameters(), expected.parameters()):
        assert relative_difference(p, e) < tolerance
    np.testing.assert_allclose(losses, expected_losses, rtol=tolerance)


def test_lbfgs_stops_for_the_documented_reasons():
    initial, value_and_grad = LBFGS_PROBLEMS["rosenbrock"]()
    params = [p.copy() for p in initial]
    calls = []

    def closure():
        calls.append(1)
        return value_and_grad(params)

    opt = optim.LBFGS(params, max_iter=3, max_eval=10, learning_rate=0.01)
    opt.step(closure)
    # Without a line search: one evaluation at the start, one after each iteration but the last.
    assert opt.last_step == optim.LBFGSStep(3, 3, "max_iter") and len(calls) == 3
    opt = optim.LBFGS(params, max_iter=50, max_eval=7, line_search_fn="strong_wolfe")
    calls.clear()
    opt.step(closure)
    assert opt.last_step.reason == "max_eval" and opt.last_step.evaluations == len(calls) >= 7
    assert opt.scalars["func_evals"] == len(calls)
    # At a stationary point the first evaluation is all it takes.
    at_minimum = [np.ones(2), np.ones(2)]
    opt = optim.LBFGS(at_minimum)
    assert opt.step(lambda: value_and_grad(at_minimum)) == 0.0
    assert opt.last_step == optim.LBFGSStep(0, 1, "tolerance_grad", 0.0) and opt.state == {}


def _on_strict(result):
    loss, grads = result
    return loss, [backends.to_device(g, backends.STRICT) for g in grads]


def test_lbfgs_state_dict_round_trip_is_bitwise():
    initial, value_and_grad = LBFGS_PROBLEMS["mlp"]()
    params = [p.copy() for p in initial]
    hyperparameters = dict(max_iter=4, history_size=3, line_search_fn="strong_wolfe")
    opt = optim.LBFGS(params, **hyperparameters)
    for _ in range(2):
        opt.step(lambda: value_and_grad(params))
    saved = opt.state_dict()
    json.dumps({k: v for k, v in saved.items() if k != "state"})
    assert set(saved["state"]) == {"d", "prev_flat_grad", "old_dirs_0", "old_stps_0", "old_dirs_1", "old_stps_1",
                                   "old_dirs_2", "old_stps_2"}
    for arrays in saved["state"].values():  # split like the parameters, as model files store state
        assert [a.shape for a in arrays] == [p.shape for p in params]
    copies = [p.copy() for p in params]
    fresh = optim.LBFGS(copies)
    fresh.load_state_dict(saved)
    assert fresh.hyperparameters == opt.hyperparameters and fresh.step_count == 2
    strict = [backends.to_device(p.copy(), backends.STRICT) for p in params]
    on_strict = optim.LBFGS(strict)
    on_strict.load_state_dict(saved)
    for _ in range(2):
        opt.step(lambda: value_and_grad(params))
        fresh.step(lambda: value_and_grad(copies))
        on_strict.step(lambda: _on_strict(value_and_grad(strict)))
    for a, b, c in zip(params, copies, strict):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, backends.to_numpy(c), rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="old_dirs_2"):
        optim.LBFGS([p.copy() for p in params]).load_state_dict(
            {**saved, "state": {k: v for k, v in saved["state"].items() if k != "old_dirs_2"}})
    with pytest.raises(ValueError, match="scalars"):
        optim.LBFGS([p.copy() for p in params]).load_state_dict({k: v for k, v in saved.items() if k != "scalars"})


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(line_search_fn="wolfe"), ValueError, r"line_search_fn must be one of \['strong_wolfe', None\]"),
        (dict(max_iter=0), ValueError, "max_iter must be an integer >= 1"),
        (dict(max_iter=2.5), TypeError, "max_iter must be an integer"),
        (dict(max_eval=0), ValueError, "max_eval must be an integer >= 1"),
        (dict(history_size=0), ValueError, "history_size must be an integer >= 1"),
        (dict(tolerance_grad=-1.0), ValueError, "tolerance_grad must be a finite number >= 0"),
        (dict(tolerance_change=float("nan")), ValueError, "tolerance_change"),
        (dict(learning_rate=0.0), ValueError, "learning_rate must be a finite number > 0"),
    ],
)
def test_lbfgs_bad_hyperparameters(kwargs, error, message):
    with pytest.raises(error, match=message):
        optim.LBFGS([np.zeros(3)], **kwargs)


def test_lbfgs_step_takes_a_closure():
    params = [np.zeros(3)]
    opt = optim.LBFGS(params)
    with pytest.raises(TypeError, match="LBFGS.step takes a closure"):
        opt.step([np.ones(3)])
    with pytest.raises(ValueError, match=r"grads\[0\] must have its parameter's shape \(3,\)"):
        opt.step(lambda: (1.0, [np.ones(4)]))
