"""Properties over random networks, activations, dtypes, batch sizes and data (hypothesis).

- the backward pass matches central differences (nx.gradcheck < 1e-6 in float64);
- the forward pass never yields NaN for finite inputs up to 1e4 in magnitude;
- save then load round-trips exactly (parameters, predictions, preprocessing, history, optimizer);
- predictions do not depend on the batch size used to predict.

Example counts come from a hypothesis profile: modest and derandomized in the normal suite
(the file runs in about 20 s, and the same examples every run), many more and random under
`make fuzz` (HYPOTHESIS_PROFILE=fuzz, no deadline).
"""

import math
import os
import tempfile

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nn_xp as nx
from nn_xp import backends
from nn_xp.nn.activations import ACTIVATIONS
from nn_xp.nn.initializers import INIT_NAMES

from .conftest import PARITY_RTOL, relative_difference

# ---- profiles ----------------------------------------------------------------------------------
settings.register_profile(
    "nn_xp",
    max_examples=20,
    deadline=None,  # no timing assertions: a loaded CI machine must not fail a property
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE_NAME = "fuzz" if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else "nn_xp"
PROFILE = settings.get_profile(PROFILE_NAME)


def examples(n: int) -> settings:
    """`n` examples in the normal suite; 20 times as many under the fuzz profile."""
    return settings(PROFILE, max_examples=n * (20 if PROFILE_NAME == "fuzz" else 1))


# ---- strategies --------------------------------------------------------------------------------
HIDDEN = [name for name in ACTIVATIONS if name != "softmax"]
SMOOTH = {"linear", "sigmoid", "tanh", "gelu", "silu", "softplus"}


@st.composite
def activation_specs(draw):
    """A hidden activation: a name, or a parametric one with its setting."""
    name = draw(st.sampled_from(HIDDEN))
    if name == "leaky_relu" and draw(st.booleans()):
        return {"name": name, "negative_slope": draw(st.floats(0.0, 1.0))}
    if name == "elu" and draw(st.booleans()):
        return {"name": name, "alpha": draw(st.floats(0.1, 3.0))}
    return name


@st.composite
def architectures(draw, inits=INIT_NAMES):
    """Keyword arguments of nn_xp.MLP: 1 to 4 weight layers of widths 1 to 12, mixed activations."""
    n_layers = draw(st.integers(1, 4))
    sizes = draw(st.lists(st.integers(1, 12), min_size=n_layers + 1, max_size=n_layers + 1))
    return dict(
        layer_sizes=sizes,
        activation=draw(st.lists(activation_specs(), min_size=n_layers - 1, max_size=n_layers - 1)),
        output_activation=draw(st.sampled_from(ACTIVATIONS)),
        init=draw(st.sampled_from(inits)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def losses_for(output_activation: str) -> list:
    return {"softmax": ["cross_entropy", "mse"], "sigmoid": ["binary_cross_entropy", "mse"]}.get(
        output_activation, ["mse"]
    )


def targets(draw, loss: str, n: int, n_out: int):
    if loss == "cross_entropy":
        return np.asarray(draw(st.lists(st.integers(0, n_out - 1), min_size=n, max_size=n)))
    if loss == "binary_cross_entropy":
        return draw(hnp.arrays(np.float64, (n, n_out), elements=st.sampled_from([0.0, 1.0])))
    return draw(hnp.arrays(np.float64, (n, n_out), elements=st.floats(-2, 2)))


def data(draw, n_features: int, n_max: int = 8, bound: float = 3.0):
    n = draw(st.integers(1, n_max))
    return draw(hnp.arrays(np.float64, (n, n_features), elements=st.floats(-bound, bound)))


# ---- gradients ---------------------------------------------------------------------------------
KINK_MARGIN = 1e-2


def _move_kinks_off_the_data(model, X):
    """Shift the biases of non-smooth layers so that no pre-activation lies within KINK_MARGIN of 0.

    Central differences with step 1e-5 are wrong for a ReLU or leaky ReLU unit whose input lies
    within ~1e-5 * |its input| of the kink, where the derivative is not defined; near ELU's 0 (whose
    second derivative jumps) their error is O(step) instead of O(step**2). Moving the kinks away
    from the data, rather than loosening the tolerance, keeps the 1e-6 bound honest.
    """
    params = model.parameters()
    A = X
    dense = [layer for layer in model.layers if isinstance(layer, nx.layers.Dense)]
    for l, activation in enumerate([layer.activation for layer in dense[:-1]] + [model._output]):
        W, b = params[2 * l], params[2 * l + 1]
        Z = A @ W.T + b
        spec = activation.spec()
        kinked = spec["name"] in ("relu", "leaky_relu", "elu")
        if kinked:
            for j in range(Z.shape[1]):
                for shift in [0.0] + [s * k * 0.05 for k in range(1, 2 * Z.shape[0] + 2) for s in (1, -1)]:
                    if np.min(np.abs(Z[:, j] + shift)) >= KINK_MARGIN:
                        b[j] += shift
                        break
            Z = A @ W.T + b
        A = activation.forward(backends.get_namespace(Z), Z)


@examples(200)
@given(st.data())
def test_backward_matches_central_differences(data_):
    draw = data_.draw
    # "random" init (randn * 0.01) makes gradients so small in deep nets that the difference
    # quotient's rounding error (~1e-10) dominates a relative comparison; it is checked in
    # tests/test_math.py on shallow nets.
    arch = draw(architectures(inits=[name for name in INIT_NAMES if name != "random"]))
    model = nx.MLP(**arch, dtype="float64", device="cpu")
    loss = draw(st.sampled_from(losses_for(arch["output_activation"])))
    X = data(draw, arch["layer_sizes"][0])
    y = targets(draw, loss, X.shape[0], arch["layer_sizes"][-1])
    _move_kinks_off_the_data(model, X)
    # A difference quotient carries a rounding error near 2e-16 * loss / epsilon per element, so
    # the relative error means something only for gradients well above that: a parameter whose
    # true gradient is 0 (a perfect fit, a stationary point such as equal softmax outputs, a dead
    # layer) or tiny (a deep saturated stack) compares rounding noise with ~0. Such draws are
    # skipped; for the rest the bound below keeps the rounding part of the error under ~2e-7.
    # epsilon=1e-5 (not the default 1e-6) trades 10x less rounding error for 100x more truncation
    # error, which for these small smooth nets is the better balance.
    value, grads = model.loss_and_grads(X, y, loss=loss)
    assume(all(float(np.linalg.norm(g)) > 1e-4 * max(value, 1.0) * math.sqrt(g.size) for g in grads))
    error = nx.gradcheck(model, X, y, loss=loss, epsilon=1e-5)
    assert error < 1e-6, (arch, loss, error)


# ---- no NaN from finite inputs -----------------------------------------------------------------
@examples(400)
@given(st.data())
def test_forward_and_backward_never_yield_nan_for_inputs_up_to_1e4(data_):
    draw = data_.draw
    arch = draw(architectures())
    dtype = draw(st.sampled_from(["float32", "float64"]))
    model = nx.MLP(**arch, dtype=dtype, device="cpu")
    X = data(draw, arch["layer_sizes"][0], n_max=16, bound=1e4)
    extremes = draw(st.sampled_from([None, 1e4, -1e4]))
    if extremes is not None:  # whole rows at the bound, where saturation and overflow would start
        X[0, :] = extremes
    out = nx.to_numpy(model.forward(X))
    assert out.shape == (X.shape[0], arch["layer_sizes"][-1]) and out.dtype == np.dtype(dtype)
    assert np.all(np.isfinite(out)), arch
    loss = draw(st.sampled_from(losses_for(arch["output_activation"])))
    y = targets(draw, loss, X.shape[0], arch["layer_sizes"][-1])
    value, grads = model.loss_and_grads(X, y, loss=loss)
    assert not math.isnan(value)
    for g in grads:
        assert not np.any(np.isnan(nx.to_numpy(g))), arch
    model.loss = loss
    if model.is_classifier:
        assert not np.any(np.isnan(nx.to_numpy(model.predict_proba(X))))


# ---- save and load -------------------------------------------------------------------------------
def _same_floats(a, b) -> bool:
    """Equal, with NaN equal to NaN (history may hold a diverged epoch's loss)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_floats(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_floats(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b)


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@examples(150)
@given(st.data())
def test_save_then_load_round_trips_exactly(data_):
    draw = data_.draw
    arch = draw(architectures())
    arch["seed"] = draw(st.one_of(st.none(), st.integers(0, 2**80)))  # big seeds are stored as text
    dtype = draw(st.sampled_from(["float32", "float64"]))
    model = nx.MLP(**arch, dtype=dtype, device="cpu")
    X = data(draw, arch["layer_sizes"][0], n_max=12)
    epochs = draw(st.integers(0, 2))
    if epochs:
        loss = draw(st.sampled_from(losses_for(arch["output_activation"])))
        y = targets(draw, loss, X.shape[0], arch["layer_sizes"][-1])
        optimizer = draw(st.sampled_from(["sgd", "momentum", "rmsprop", "adam", "adamw"]))
        batch_size = draw(st.one_of(st.none(), st.integers(1, 12)))
        model.fit(X, y, loss=loss, optimizer=optimizer, epochs=epochs, batch_size=batch_size, verbose=0)
        extra = draw(st.lists(st.floats(width=64), min_size=epochs, max_size=epochs))  # NaN and inf too
        model.history.history["extra"] = extra
    n_features = arch["layer_sizes"][0]
    if draw(st.booleans()):
        model.preprocessing = {
            "mean": draw(st.lists(finite, min_size=n_features, max_size=n_features)),
            "std": draw(st.lists(st.floats(1e-3, 1e3), min_size=n_features, max_size=n_features)),
        }
    device = draw(st.sampled_from(["cpu", "array_api_strict"]))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.npz")
        model.save(path)
        loaded = nx.load(path, device=device)

    assert loaded.layer_sizes == model.layer_sizes and loaded.dtype == dtype and loaded.device == device
    assert loaded.activation == model.activation and loaded.output_activation == model.output_activation
    assert loaded.seed == model.seed and loaded.loss == model.loss and loaded.init == model.init
    for a, b in zip(loaded.parameters(), model.parameters()):
        a, b = nx.to_numpy(a), nx.to_numpy(b)
        assert a.dtype == b.dtype and np.array_equal(a, b)
    # The same arithmetic on the host: the predictions agree bit for bit.
    np.testing.assert_array_equal(nx.to_numpy(loaded.forward(X)), nx.to_numpy(model.forward(X)))
    assert loaded.preprocessing == model.preprocessing
    assert loaded.rng.bit_generator.state == model.rng.bit_generator.state
    if model.history is None:
        assert loaded.history is None and loaded.optimizer is None
        return
    assert _same_floats(loaded.history.history, model.history.history)
    assert loaded.history.epoch == model.history.epoch and loaded.history.stop_reason == model.history.stop_reason
    mine, theirs = loaded.optimizer.state_dict(), model.optimizer.state_dict()
    assert loaded.optimizer.label == model.optimizer.label
    assert mine["hyperparameters"] == theirs["hyperparameters"] and mine["step_count"] == theirs["step_count"]
    assert mine["state"].keys() == theirs["state"].keys()
    for key in theirs["state"]:
        for a, b in zip(mine["state"][key], theirs["state"][key]):
            assert a.dtype == b.dtype and np.array_equal(a, b)


# ---- batch size does not change predictions ---------------------------------------------------
@examples(300)
@given(st.data())
def test_predictions_do_not_depend_on_the_batch_size(data_):
    draw = data_.draw
    arch = draw(architectures())
    dtype = draw(st.sampled_from(["float32", "float64"]))
    device = draw(st.sampled_from(["cpu", "array_api_strict"]))
    model = nx.MLP(**arch, dtype=dtype, device=device)
    X = data(draw, arch["layer_sizes"][0], n_max=40)
    batch_size = draw(st.integers(1, X.shape[0] + 3))
    tolerance = PARITY_RTOL[dtype]
    loss = draw(st.sampled_from(losses_for(arch["output_activation"])))
    model.loss = loss
    if not model.is_classifier:
        whole, batched = model.predict(X), model.predict(X, batch_size=batch_size)
        assert batched.shape == whole.shape
        assert relative_difference(batched, whole) <= tolerance
        return
    whole = nx.to_numpy(model.predict_proba(X))
    batched = nx.to_numpy(model.predict_proba(X, batch_size=batch_size))
    assert batched.shape == whole.shape and relative_difference(batched, whole) <= tolerance
    labels, batched_labels = nx.to_numpy(model.predict(X)), nx.to_numpy(model.predict(X, batch_size=batch_size))
    assert labels.shape == batched_labels.shape
    # Labels may differ only where two classes are tied to within the tolerance.
    if arch["output_activation"] == "softmax":
        top2 = np.sort(whole, axis=1)[:, -2:] if whole.shape[1] > 1 else np.zeros((len(whole), 2))
        clear = top2[:, 1] - top2[:, 0] > 10 * tolerance
        assert np.array_equal(labels[clear], batched_labels[clear])
    else:
        clear = np.abs(nx.to_numpy(model.forward(X)) - 0.5) > 10 * tolerance
        clear = clear[:, 0] if labels.ndim == 1 else clear
        assert np.array_equal(labels[clear], batched_labels[clear])
