"""The optimizers' pure protocol: `init(params) -> state`, `update(grads, state, params, step=t)`
-> (params, state), a function of arrays that mutates nothing and takes a step and a learning rate
as 0-d arrays too (so jax.jit can trace it), and agrees with the stateful `step(grads)`."""

import numpy as np
import pytest

from nn_xp import backends, optim
from nn_xp.optim.base import state_arrays

from .conftest import GPU_COUNT, GPU_WHY, relative_difference

SHAPES = [(3, 4), (4,), (2, 3)]
STEPS = 6
_rng = np.random.default_rng(77)
INITIAL = [_rng.standard_normal(shape) for shape in SHAPES]
CURVATURE = [_rng.uniform(0.5, 3.0, shape) for shape in SHAPES]
NOISE = [[_rng.standard_normal(shape) for shape in SHAPES] for _ in range(STEPS)]
# The arrays' own devices: NumPy and CuPy run their in-place rules on copies, the rest the standard ops.
DEVICES = ["cpu", backends.STRICT,
           pytest.param("cuda:0", marks=pytest.mark.skipif(GPU_COUNT == 0, reason=f"CuPy: {GPU_WHY.split(';')[0]}"))]
# A learning rate that changes every step, as a schedule's does.
RATES = [0.05 * (1 - 0.1 * t) for t in range(STEPS)]

CASES = {
    "sgd": (optim.SGD, dict(learning_rate=0.05)),
    "sgd-momentum": (optim.SGD, dict(learning_rate=0.05, momentum=0.9, dampening=0.3)),
    "sgd-nesterov": (optim.SGD, dict(learning_rate=0.05, momentum=0.9, nesterov=True)),
    "sgd-weight-decay": (optim.SGD, dict(learning_rate=0.05, momentum=0.8, weight_decay=0.1)),
    "rmsprop-centered": (optim.RMSprop, dict(learning_rate=0.01, centered=True)),
    "rmsprop-momentum": (optim.RMSprop, dict(learning_rate=0.01, momentum=0.9)),
    "rmsprop-all": (optim.RMSprop, dict(learning_rate=0.01, centered=True, momentum=0.5, weight_decay=0.1)),
    "adam": (optim.Adam, dict(learning_rate=0.01)),
    "adam-amsgrad-l2": (optim.Adam, dict(learning_rate=0.02, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.05,
                                         amsgrad=True)),
    "adamw": (optim.AdamW, dict(learning_rate=0.01, weight_decay=0.1)),
    "adamw-amsgrad": (optim.AdamW, dict(learning_rate=0.02, weight_decay=0.2, amsgrad=True, beta2=0.99)),
}


def gradient(t, params):
    """dL/dp for L = sum(c * p^2) / 2 plus step t's noise, on the host in float64."""
    return [c * backends.to_numpy(p).astype(np.float64) + n for c, p, n in zip(CURVATURE, params, NOISE[t])]


def stepped(name, dtype, steps=STEPS):
    """Parameters and state after `steps` calls of the stateful `step` on NumPy, the rate following RATES."""
    cls, hyperparameters = CASES[name]
    params = [p.astype(dtype) for p in INITIAL]
    opt = cls(params, **hyperparameters)
    for t in range(steps):
        opt.learning_rate = RATES[t]
        opt.step([g.astype(dtype) for g in gradient(t, params)])
    return params, opt.state


def updated(name, dtype, device, step_array=None, rate_array=None, steps=STEPS):
    """The same run through the pure `update`; step_array / rate_array (value -> 0-d array) make
    the step number / learning rate arrays instead of Python numbers."""
    cls, hyperparameters = CASES[name]
    params = [backends.to_device(p.astype(dtype), device) for p in INITIAL]
    opt = cls([p.copy() for p in INITIAL], **hyperparameters)
    state = opt.init(params)
    for t in range(steps):
        grads = [backends.to_device(g.astype(dtype), device) for g in gradient(t, params)]
        step = t + 1 if step_array is None else step_array(t + 1)
        rate = RATES[t] if rate_array is None else rate_array(RATES[t])
        params, state = opt.update(grads, state, params, step=step, learning_rate=rate)
    return params, state


def assert_same(got, expected, rtol=None):
    """Parameters and state alike: bitwise, or to `rtol` relative."""
    got_params, got_state = got
    expected_params, expected_state = expected
    assert type(got_state) is type(expected_state)
    pairs = list(zip(got_params, expected_params))
    got_arrays, expected_arrays = state_arrays(got_state), state_arrays(expected_state)
    assert got_arrays.keys() == expected_arrays.keys()
    for key in expected_arrays:
        pairs += list(zip(got_arrays[key], expected_arrays[key]))
    for a, b in pairs:
        if rtol is None:
            np.testing.assert_array_equal(backends.to_numpy(a), backends.to_numpy(b))
        else:
            assert relative_difference(a, b) <= rtol


# ---- init ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CASES)
def test_init_is_zeros_of_the_fields_in_use(name):
    cls, hyperparameters = CASES[name]
    params = [backends.to_device(p, backends.STRICT) for p in INITIAL]
    state = cls(list(params), **hyperparameters).init(params)
    assert isinstance(state, cls.State)
    used = {"sgd": set(), "sgd-momentum": {"momentum_buffer"}, "sgd-nesterov": {"momentum_buffer"},
            "sgd-weight-decay": {"momentum_buffer"}, "rmsprop-centered": {"v", "g_avg"},
            "rmsprop-momentum": {"v", "momentum_buffer"}, "rmsprop-all": {"v", "g_avg", "momentum_buffer"},
            "adam": {"m", "v"}, "adam-amsgrad-l2": {"m", "v", "v_max"}, "adamw": {"m", "v"},
            "adamw-amsgrad": {"m", "v", "v_max"}}[name]
    assert {key for key, value in state._asdict().items() if value is not None} == used
    for arrays in state_arrays(state).values():
        assert len(arrays) == len(params)
        for a, p in zip(arrays, params):
            assert a.shape == p.shape and a.dtype == p.dtype and backends.device_of(a) == backends.STRICT
            assert not np.any(backends.to_numpy(a))


# ---- update agrees with step --------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", CASES)
def test_update_on_the_standard_ops_is_step_on_numpy(name, dtype):
    # The standard ops on array-api-strict against NumPy's in-place (and compiled) updates: the
    # same arithmetic in the same order, so bitwise, as test_optim's state_dict round trip asserts.
    assert_same(updated(name, dtype, backends.STRICT), stepped(name, dtype))


@pytest.mark.parametrize("name", CASES)
def test_update_on_numpy_is_step_on_numpy(name):
    assert_same(updated(name, "float32", "cpu"), stepped(name, "float32"))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", CASES)
def test_step_and_learning_rate_as_0d_arrays(name, device):
    xp = backends.namespace(device)

    def float64(value):
        return backends.to_device(np.asarray(value, dtype=np.float64), device)

    numbers = updated(name, "float64", device)
    assert_same(updated(name, "float64", device, step_array=float64, rate_array=float64), numbers, rtol=1e-15)
    # An integer step array, a float64 rate and float32 parameters: the parameters stay float32.
    params, state = updated(name, "float32", device, step_array=lambda t: xp.asarray(t), rate_array=float64)
    assert all(p.dtype == xp.float32 for p in params)
    assert all(a.dtype == xp.float32 for arrays in state_arrays(state).values() for a in arrays)
    assert_same((params, state), stepped(name, "float32"), rtol=1e-5)


# ---- purity --------------------------------------------------------------------------------------
def _snapshot(arrays):
    return [backends.to_numpy(a).copy() for a in arrays]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", CASES)
def test_update_does_not_mutate_its_inputs(name, device):
    cls, hyperparameters = CASES[name]
    params = [backends.to_device(p.copy(), device) for p in INITIAL]
    opt = cls([p.copy() for p in INITIAL], **hyperparameters)
    state = opt.init(params)
    grads = [backends.to_device(g, device) for g in gradient(0, params)]
    params, state = opt.update(grads, state, params, step=1)  # a state that is not all zeros
    grads = [backends.to_device(g, device) for g in gradient(1, params)]
    params_list, state_lists = list(params), {key: list(a) for key, a in state_arrays(state).items()}
    before = (_snapshot(params), _snapshot(grads), {key: _snapshot(a) for key, a in state_arrays(state).items()})
    new_params, _ = opt.update(grads, state, params, step=2)
    after = (_snapshot(params), _snapshot(grads), {key: _snapshot(a) for key, a in state_arrays(state).items()})
    for a, b in zip(before[0] + before[1], after[0] + after[1]):
        np.testing.assert_array_equal(a, b)
    for key in before[2]:
        for a, b in zip(before[2][key], after[2][key]):
            np.testing.assert_array_equal(a, b)
    # The containers too: the same arrays in the caller's lists.
    assert all(a is b for a, b in zip(params, params_list))
    assert all(a is b for key, arrays in state_arrays(state).items() for a, b in zip(arrays, state_lists[key]))
    # And the update did something.
    assert any(not np.array_equal(backends.to_numpy(a), b) for a, b in zip(new_params, before[0]))
    assert opt.step_count == 0 and opt.state is None  # the object's own state is not the pure one's


# ---- jax.jit -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CASES)
def test_update_compiles_with_jax_jit(name):
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        cls, hyperparameters = CASES[name]
        params = [jnp.asarray(p) for p in INITIAL]
        opt = cls([p.copy() for p in INITIAL], **hyperparameters)
        state = opt.init(params)
        compiled = jax.jit(lambda g, s, p, t, lr: opt.update(g, s, p, step=t, learning_rate=lr))
        for t in range(5):
            grads = [jnp.asarray(g) for g in gradient(t, [np.asarray(p) for p in params])]
            step, rate = jnp.asarray(float(t + 1)), jnp.asarray(RATES[t])
            params, state = compiled(grads, state, params, step, rate)
        assert all(p.dtype == jnp.float64 for p in params)
        expected = stepped(name, "float64", steps=5)
        got = ([np.asarray(p) for p in params], type(state)(*(
            None if arrays is None else [np.asarray(a) for a in arrays] for arrays in state)))
        assert_same(got, expected, rtol=1e-12)
    finally:
        jax.config.update("jax_enable_x64", previous)


# ---- bad input -----------------------------------------------------------------------------------
def test_update_refuses_bad_input_by_name():
    params = [p.copy() for p in INITIAL]
    opt = optim.Adam([p.copy() for p in INITIAL])
    state = opt.init(params)
    grads = gradient(0, params)
    with pytest.raises(ValueError, match="step must be an integer >= 1"):
        opt.update(grads, state, params, step=0)
    with pytest.raises(TypeError, match="step must be an integer >= 1 or a 0-d array"):
        opt.update(grads, state, params, step=np.ones(2))
    with pytest.raises(ValueError, match="learning_rate must be"):
        opt.update(grads, state, params, step=1, learning_rate=-0.1)
    with pytest.raises(TypeError, match=r"state must be this optimizer's State \(AdamState\)"):
        opt.update(grads, {"m": state.m, "v": state.v}, params, step=1)
    with pytest.raises(ValueError, match=r"state must hold \['m', 'v', 'v_max'\]"):
        optim.Adam([p.copy() for p in INITIAL], amsgrad=True).update(grads, state, params, step=1)
    with pytest.raises(ValueError, match="state.m holds 2 arrays for 3 parameters"):
        opt.update(grads, state._replace(m=state.m[:2]), params, step=1)
    with pytest.raises(ValueError, match="grads must hold one array per parameter"):
        opt.update(grads[:2], state, params, step=1)
    with pytest.raises(TypeError, match="params must be a non-empty list or tuple"):
        opt.init([])


def test_lbfgs_stays_outside_the_protocol():
    params = [p.copy() for p in INITIAL]
    lbfgs = optim.LBFGS([p.copy() for p in INITIAL])
    with pytest.raises(TypeError, match="closure"):
        lbfgs.init(params)
    with pytest.raises(TypeError, match="closure"):
        lbfgs.update(gradient(0, params), {}, params, step=1)
