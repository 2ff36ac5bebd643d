"""The regression losses absolute_error, huber and quantile, and cross-entropy's label_smoothing:
their values and gradients against torch and the formulas, a network's gradients against central
differences, the refusals, the estimators' and the CLI's options, and the model file."""

import json
import warnings

import numpy as np
import pytest

import nn_xp as nx
from nn_xp import backends
from nn_xp.backends import Ops, ops_for
from nn_xp.nn.heads import check_loss, get_head
from nn_xp.sklearn import MLPClassifier, MLPRegressor

SPECS = [
    "absolute_error",
    {"name": "huber", "delta": 0.5},
    {"name": "huber", "delta": 2.5},
    {"name": "quantile", "quantile": 0.1},
    {"name": "quantile", "quantile": 0.75},
    {"name": "cross_entropy", "label_smoothing": 0.1},
    {"name": "cross_entropy", "label_smoothing": 0.6},
]
SHAPES = [(1, 1), (6, 1), (9, 4)]
# Gradients checked to this against central differences in float64 (gradcheck's own measure).
GRADCHECK_TOL = 1e-7


def _name(spec):
    return spec if isinstance(spec, str) else spec["name"]


def _output(spec):
    return "softmax" if _name(spec) == "cross_entropy" else "linear"


def _data(spec, shape, seed=0):
    """Logits Z, targets Y (one-hot rows for cross-entropy) and positive sample weights (n, 1)."""
    rng = np.random.default_rng(seed)
    n, k = shape
    if _name(spec) == "cross_entropy":
        k = max(k, 2)
        Z = rng.normal(size=(n, k)) * 3
        Y = np.eye(k)[rng.integers(0, k, size=n)]
    else:
        Z = rng.normal(size=(n, k)) * 2
        Y = Z + rng.normal(size=(n, k)) * 2  # residuals on both sides of huber's delta
    return Z, Y, rng.uniform(0.2, 3.0, size=(n, 1))


def _head_loss_and_grad(spec, Z, Y, weights, device, standard):
    """(L, dL/dZ) on the host from the head on `device`: the backend's ops or the standard ones."""
    xp = backends.namespace(device)
    ops = Ops(xp) if standard else ops_for(xp)
    Zd, Yd = backends.to_device(Z.copy(), device), backends.to_device(Y, device)
    Wd = None if weights is None else backends.to_device(weights, device)
    L, dZ, _ = get_head(spec, _output(spec)).loss_and_grad(ops, Zd, Yd, weights=Wd)
    value = get_head(spec, _output(spec)).value(ops, backends.to_device(Z.copy(), device), Yd, weights=Wd)
    # value and loss_and_grad sum in different orders (the fused path shifts Z in place)
    rel = 1e-12 if Z.dtype == np.float64 else 1e-5
    assert float(value) == pytest.approx(float(L), rel=rel, abs=1e-15)
    return float(L), backends.to_numpy(dZ)


def _torch_loss_and_grad(torch, spec, Z, Y, weights):
    """torch's loss with reduction="none", then the (weighted) mean over every element, as nn_xp's
    heads define it; the gradient by autograd."""
    name = _name(spec)
    tZ = torch.tensor(Z, requires_grad=True)
    tY = torch.tensor(Y)
    if name == "cross_entropy":
        fn = torch.nn.CrossEntropyLoss(reduction="none", label_smoothing=spec["label_smoothing"])
        per_row = fn(tZ, tY.argmax(dim=1))[:, None]
    elif name == "absolute_error":
        per_row = torch.nn.L1Loss(reduction="none")(tZ, tY)
    elif name == "huber":
        per_row = torch.nn.HuberLoss(reduction="none", delta=spec["delta"])(tZ, tY)
    else:
        raise ValueError(name)
    if weights is None:
        L = per_row.mean()
    else:
        w = torch.tensor(weights)
        L = (per_row * w).sum() / (w.sum() * per_row.shape[1])
    L.backward()
    return L.item(), tZ.grad.numpy()


def _pinball(Z, Y, q, weights=None):
    """The pinball loss and its slope in Z, written out: rho_q(r) = q r for r >= 0, (q - 1) r below."""
    R = Y - Z
    elements = np.where(R >= 0, q * R, (q - 1) * R)
    slope = np.where(R >= 0, -q, 1 - q)
    w = np.ones((Z.shape[0], 1)) if weights is None else weights
    total = w.sum() * Z.shape[1]
    return float(np.sum(elements * w) / total), slope * w / total


@pytest.mark.parametrize("standard", [False, True], ids=["backend-ops", "standard-ops"])
@pytest.mark.parametrize("weighted", [False, True], ids=["mean", "weighted"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("spec", [s for s in SPECS if _name(s) != "quantile"], ids=json.dumps)
def test_losses_and_gradients_match_torch(device, spec, shape, weighted, standard):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for these losses")
    Z, Y, weights = _data(spec, shape)
    weights = weights if weighted else None
    L, dZ = _head_loss_and_grad(spec, Z, Y, weights, device, standard)
    expected_L, expected_dZ = _torch_loss_and_grad(torch, spec, Z, Y, weights)
    assert abs(L - expected_L) <= 1e-12 * max(1.0, abs(expected_L))
    np.testing.assert_allclose(dZ, expected_dZ, rtol=1e-10, atol=1e-14)


def test_torch_comparison_figures():
    """The largest differences from torch over every case above, recorded for the reader (-s)."""
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for these losses")
    for spec in [s for s in SPECS if _name(s) != "quantile"]:
        worst_L = worst_dZ = 0.0
        for shape in SHAPES:
            for seed in range(3):
                Z, Y, weights = _data(spec, shape, seed)
                for w in (None, weights):
                    L, dZ = _head_loss_and_grad(spec, Z, Y, w, "cpu", standard=False)
                    expected_L, expected_dZ = _torch_loss_and_grad(torch, spec, Z, Y, w)
                    worst_L = max(worst_L, abs(L - expected_L))
                    worst_dZ = max(worst_dZ, float(np.max(np.abs(dZ - expected_dZ))))
        print(f"torch {json.dumps(spec)}: max |L diff| {worst_L:.1e}, max |dL/dZ diff| {worst_dZ:.1e}")
        assert worst_L < 1e-12 and worst_dZ < 1e-13


@pytest.mark.parametrize("weighted", [False, True], ids=["mean", "weighted"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("q", [0.1, 0.5, 0.75])
def test_quantile_loss_is_the_pinball_formula(device, q, shape, weighted):
    Z, Y, weights = _data("quantile", shape)
    weights = weights if weighted else None
    L, dZ = _head_loss_and_grad({"name": "quantile", "quantile": q}, Z, Y, weights, device, standard=False)
    expected_L, expected_dZ = _pinball(Z, Y, q, weights)
    assert L == pytest.approx(expected_L, rel=1e-12)
    np.testing.assert_allclose(dZ, expected_dZ, rtol=1e-12)


def test_pinball_loss_by_hand():
    # Y = [1, 2, 3], predictions [2, 2, 0], q = 0.3: residuals -1, 0, 3 cost 0.7, 0 and 0.9.
    head = get_head({"name": "quantile", "quantile": 0.3}, "linear")
    ops = Ops(backends.namespace("cpu"))
    L, dZ, _ = head.loss_and_grad(ops, np.array([[2.0], [2.0], [0.0]]), np.array([[1.0], [2.0], [3.0]]))
    assert float(L) == pytest.approx(1.6 / 3, rel=1e-15)
    # Over-predicting costs 1 - q per unit, under-predicting (and a tie, as scikit-learn) -q.
    np.testing.assert_allclose(dZ[:, 0], np.array([0.7, -0.3, -0.3]) / 3, rtol=1e-15)
    # q = 0.5 is half the absolute error.
    half = get_head({"name": "quantile", "quantile": 0.5}, "linear")
    Z, Y = np.array([[0.5, -1.0]]), np.array([[2.0, 1.0]])
    absolute = get_head("absolute_error", "linear")
    assert float(half.value(ops, Z, Y)) == pytest.approx(0.5 * float(absolute.value(ops, Z, Y)), rel=1e-15)


def test_label_smoothing_takes_the_fused_path_and_changes_the_loss():
    """The smoothed targets go through each backend's softmax_cross_entropy (NumPy's in-place one
    here): it agrees with the standard ops, and with smoothing 0 it is the plain cross-entropy."""
    spec = {"name": "cross_entropy", "label_smoothing": 0.2}
    Z, Y, weights = _data(spec, (8, 5))
    for w in (None, weights):
        fused = _head_loss_and_grad(spec, Z, Y, w, "cpu", standard=False)
        plain = _head_loss_and_grad(spec, Z, Y, w, "cpu", standard=True)
        assert fused[0] == pytest.approx(plain[0], rel=1e-13)
        np.testing.assert_allclose(fused[1], plain[1], rtol=1e-12, atol=1e-16)
        unsmoothed = _head_loss_and_grad("cross_entropy", Z, Y, w, "cpu", standard=False)
        assert abs(fused[0] - unsmoothed[0]) > 1e-3
    assert check_loss({"name": "cross_entropy", "label_smoothing": 0.0}, "softmax") == "cross_entropy"


def test_float32_agrees_with_float64(device):
    """Per dtype: float32 within float32 rounding of the float64 values (no BLAS in a loss)."""
    for spec in SPECS:
        Z, Y, weights = _data(spec, (9, 4))
        L64, dZ64 = _head_loss_and_grad(spec, Z, Y, weights, device, standard=False)
        L32, dZ32 = _head_loss_and_grad(spec, Z.astype(np.float32), Y.astype(np.float32),
                                        weights.astype(np.float32), device, standard=False)
        assert L32 == pytest.approx(L64, rel=1e-5)
        np.testing.assert_allclose(dZ32, dZ64, rtol=1e-4, atol=1e-6 * np.max(np.abs(dZ64)))


@pytest.mark.parametrize("spec", SPECS, ids=json.dumps)
def test_network_gradients_match_central_differences(spec):
    rng = np.random.default_rng(3)
    classes = _name(spec) == "cross_entropy"
    model = nx.MLP([4, 6, 5, 3], activation="tanh", output_activation=_output(spec), dtype="float64", seed=1)
    X = rng.normal(size=(10, 4))
    y = rng.integers(0, 3, size=10) if classes else rng.normal(size=(10, 3)) * 2.5
    if _name(spec) == "huber":  # both pieces of the loss in play
        D = np.abs(backends.to_numpy(model.forward(X)) - y)
        assert np.any(D < spec["delta"]) and np.any(D > spec["delta"])
    error = nx.gradcheck(model, X, y, loss=spec)
    assert error < GRADCHECK_TOL
    loss, _ = model.loss_and_grads(X, y, loss=spec)
    assert loss == pytest.approx(model.evaluate(X, y, loss=spec)["loss"], rel=1e-12)


def test_a_wrong_gradient_is_caught():
    """The check above can fail: a head whose slope is off by a factor is seen."""
    from nn_xp.nn.heads import Huber

    class Wrong(Huber):
        def _slope(self, xp, D):
            return 1.01 * super()._slope(xp, D)

    model = nx.MLP([3, 4, 2], output_activation="linear", dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    head = Wrong(model._output, delta=1.0)
    X, Y = model.check_input(rng.normal(size=(5, 3))), model.check_target(rng.normal(size=(5, 2)), 5, head)
    _, grads, _ = model.train_step(X, Y, head, step=0, reuse=False)
    params = model.parameters()
    original = backends.to_numpy(params[-1]).copy()
    numeric = np.empty_like(original.ravel())
    for j in range(original.size):
        values = []
        for step in (1e-6, -1e-6):
            trial = original.ravel().copy()
            trial[j] += step
            params[-1][...] = trial.reshape(original.shape)
            values.append(float(model.loss_value(X, Y, head)))
        numeric[j] = (values[0] - values[1]) / 2e-6
    params[-1][...] = original
    assert np.max(np.abs(backends.to_numpy(grads[-1]).ravel() - numeric)) > 1e-4


# ---- refusals ----------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, output, match", [
    ({"name": "quantile", "quantile": 0.0}, "linear", "quantile"),
    ({"name": "quantile", "quantile": 1.0}, "linear", "quantile"),
    ({"name": "quantile", "quantile": float("nan")}, "linear", "quantile"),
    ({"name": "huber", "delta": 0.0}, "linear", "delta"),
    ({"name": "huber", "delta": -1.0}, "linear", "delta"),
    ({"name": "cross_entropy", "label_smoothing": 1.0}, "softmax", "label_smoothing"),
    ({"name": "cross_entropy", "label_smoothing": -0.1}, "softmax", "label_smoothing"),
    ({"name": "huber", "alpha": 0.9}, "linear", "alpha"),
    ({"name": "binary_cross_entropy", "label_smoothing": 0.1}, "sigmoid", "label_smoothing"),
    ({"name": "cross_entropy", "label_smoothing": 0.1}, "sigmoid", "label_smoothing.*softmax"),
    ({"name": "cross_entropy", "label_smoothing": 0.1}, "linear", "label_smoothing.*softmax"),
    ("quantile", "softmax", "regression loss.*output_activation='linear'"),
    ({"name": "huber", "delta": 1.0}, "softmax", "regression loss"),
    ("absolute_error", "softmax", "regression loss"),
    ({"name": "pinball"}, "linear", "must be one of"),
])
def test_bad_losses_are_refused_naming_the_parameter(spec, output, match):
    with pytest.raises((ValueError, TypeError), match=match):
        check_loss(spec, output)
    model = nx.MLP([2, 3, 2], output_activation=output, seed=0)
    X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1]) if output == "softmax" else np.zeros((4, 2))
    with pytest.raises((ValueError, TypeError), match=match):
        model.fit(X, y, loss=spec, epochs=1, verbose=0)
    with pytest.raises((ValueError, TypeError), match=match):
        model.loss_and_grads(X, y, loss=spec)
    assert model.loss is None  # nothing trained


# ---- the model file ----------------------------------------------------------------------------
@pytest.mark.parametrize("spec", SPECS, ids=json.dumps)
def test_save_and_load_keep_the_loss(tmp_path, spec):
    rng = np.random.default_rng(0)
    classes = _name(spec) == "cross_entropy"
    model = nx.MLP([3, 5, 3], output_activation=_output(spec), dtype="float64", seed=0)
    X = rng.normal(size=(20, 3))
    y = rng.integers(0, 3, size=20) if classes else rng.normal(size=(20, 3))
    model.fit(X, y, loss=spec, epochs=2, batch_size=8, verbose=0)
    assert model.loss == spec
    json.dumps(model.state_dict()["loss"])  # JSON-ready
    model.save(tmp_path / "m.npz")
    loaded = nx.load(tmp_path / "m.npz")
    assert loaded.loss == spec
    assert loaded.evaluate(X, y)["loss"] == pytest.approx(model.evaluate(X, y, loss=spec)["loss"], rel=1e-12)
    loaded.fit(X, y, epochs=1, batch_size=8, verbose=0)  # goes on with the saved loss
    assert loaded.loss == spec


def test_a_named_loss_gets_its_default_settings():
    model = nx.MLP([2, 3, 1], output_activation="linear", seed=0)
    model.fit(np.zeros((4, 2)), np.zeros(4), loss="huber", epochs=1, verbose=0)
    assert model.loss == {"name": "huber", "delta": 1.0}
    assert check_loss("quantile", "linear") == {"name": "quantile", "quantile": 0.5}
    assert check_loss("absolute_error", "exp") == "absolute_error"


@pytest.mark.parametrize("spec", SPECS[::2], ids=json.dumps)
def test_onnx_export_is_unaffected(tmp_path, spec):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(0)
    classes = _name(spec) == "cross_entropy"
    model = nx.MLP([3, 5, 3], output_activation=_output(spec), dtype="float32", seed=0)
    X = rng.normal(size=(12, 3)).astype(np.float32)
    model.fit(X, rng.integers(0, 3, size=12) if classes else rng.normal(size=(12, 3)), loss=spec, epochs=2,
              verbose=0)
    model.to_onnx(tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    name = session.get_inputs()[0].name
    outputs = {o.name: v for o, v in zip(session.get_outputs(), session.run(None, {name: X}))}
    got = outputs["probabilities" if classes else "predictions"]
    np.testing.assert_allclose(got, backends.to_numpy(model.forward(X)), rtol=1e-5, atol=1e-6)


# ---- the estimators ----------------------------------------------------------------------------
def _regression_data(n_outputs=1):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    Y = X @ rng.normal(size=(3, n_outputs)) + rng.standard_t(3, size=(80, n_outputs))
    return X, (Y[:, 0] if n_outputs == 1 else Y)


def _estimator_loss(loss, P, Y, q=0.5, delta=1.0):
    """The loss summed over outputs, averaged over samples, written out."""
    P, Y = P.reshape(len(P), -1), Y.reshape(len(Y), -1)
    D = P - Y
    elements = {
        "absolute_error": np.abs(D),
        "huber": np.where(np.abs(D) <= delta, 0.5 * D * D, delta * (np.abs(D) - 0.5 * delta)),
        "quantile": np.maximum(q * -D, (q - 1) * -D),
    }[loss]
    return float(np.sum(elements) / len(P))


@pytest.mark.parametrize("n_outputs", [1, 2])
@pytest.mark.parametrize("loss", ["absolute_error", "huber", "quantile"])
def test_regressor_losses_report_their_loss(loss, n_outputs):
    X, y = _regression_data(n_outputs)
    settings = dict(quantile=0.8, huber_delta=0.7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lbfgs = MLPRegressor(loss=loss, hidden_layer_sizes=(6,), solver="lbfgs", alpha=0.0, max_iter=40,
                             random_state=0, **settings).fit(X, y)
        adam = MLPRegressor(loss=loss, hidden_layer_sizes=(6,), alpha=0.0, max_iter=30, random_state=0,
                            **settings).fit(X, y)
    expected = _estimator_loss(loss, lbfgs.predict(X), y, q=0.8, delta=0.7)
    assert lbfgs.loss_ == pytest.approx(expected, rel=1e-9)
    assert lbfgs.model_.loss == {"absolute_error": "absolute_error", "huber": {"name": "huber", "delta": 0.7},
                                 "quantile": {"name": "quantile", "quantile": 0.8}}[loss]
    assert len(adam.loss_curve_) == adam.n_iter_ and np.all(np.isfinite(adam.loss_curve_))
    assert adam.loss_curve_[-1] < adam.loss_curve_[0]
    # the epoch's running loss, taken as the weights move, is near the loss at the end
    assert adam.loss_ == pytest.approx(_estimator_loss(loss, adam.predict(X), y, q=0.8, delta=0.7), rel=0.05)


def test_regressor_sample_weights_are_repeated_rows():
    X, y = _regression_data()
    weights = np.tile([1, 2], 40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weighted = MLPRegressor(loss="quantile", quantile=0.3, hidden_layer_sizes=(5,), solver="lbfgs",
                                max_iter=15, random_state=0).fit(X, y, sample_weight=weights)
        repeated = MLPRegressor(loss="quantile", quantile=0.3, hidden_layer_sizes=(5,), solver="lbfgs",
                                max_iter=15, random_state=0).fit(np.repeat(X, weights, axis=0),
                                                                 np.repeat(y, weights))
    np.testing.assert_allclose(weighted.predict(X), repeated.predict(X), rtol=1e-6, atol=1e-8)


def test_classifier_label_smoothing_reports_the_smoothed_loss():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 4))
    y = np.digitize(X[:, 0] + 0.5 * X[:, 1], [-0.5, 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = MLPClassifier(hidden_layer_sizes=(6,), solver="lbfgs", alpha=0.0, max_iter=60, random_state=0)
        smooth = MLPClassifier(hidden_layer_sizes=(6,), solver="lbfgs", alpha=0.0, max_iter=60, random_state=0,
                               label_smoothing=0.2)
        plain.fit(X, y)
        smooth.fit(X, y)
    P = smooth.predict_proba(X)
    target = np.eye(3)[y] * 0.8 + 0.2 / 3
    assert smooth.loss_ == pytest.approx(-np.mean(np.sum(target * np.log(P), axis=1)), rel=1e-9)
    assert smooth.model_.loss == {"name": "cross_entropy", "label_smoothing": 0.2}
    assert plain.model_.loss == "cross_entropy"
    # smoothing keeps the probabilities away from 0 and 1
    assert np.mean(P.max(axis=1)) < np.mean(plain.predict_proba(X).max(axis=1)) - 0.05


@pytest.mark.parametrize("make, match", [
    (lambda: MLPRegressor(loss="quantile", quantile=0.0), "quantile"),
    (lambda: MLPRegressor(loss="quantile", quantile=1.0), "quantile"),
    (lambda: MLPRegressor(quantile="0.5"), "quantile"),
    (lambda: MLPRegressor(loss="huber", huber_delta=0.0), "huber_delta"),
    (lambda: MLPRegressor(loss="huber", huber_delta=-2), "huber_delta"),
    (lambda: MLPRegressor(loss="pinball"), "loss"),
    (lambda: MLPClassifier(label_smoothing=1.0), "label_smoothing"),
    (lambda: MLPClassifier(label_smoothing=-0.01), "label_smoothing"),
])
def test_estimator_parameters_are_refused_at_fit(make, match):
    estimator = make()  # never in __init__
    X, y = _regression_data()
    y = (y > 0).astype(int) + (y > 1) if isinstance(estimator, MLPClassifier) else y
    with pytest.raises((ValueError, TypeError), match=match):
        estimator.fit(X, y)
    assert not hasattr(estimator, "model_")


def test_label_smoothing_on_two_classes_is_refused_with_the_fix():
    X, y = _regression_data()
    with pytest.raises(ValueError, match="label_smoothing=0.1 needs a multiclass target.*label_smoothing=0.0"):
        MLPClassifier(label_smoothing=0.1, max_iter=2).fit(X, y > 0)


def test_quantile_regression_covers_its_quantile_on_diabetes():
    """On scikit-learn's diabetes table (standardised), a fraction of about q of the training
    targets lies below the q-th quantile's predictions."""
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    y = (y - y.mean()) / y.std()
    figures = {}
    for q in (0.1, 0.5, 0.9):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            regressor = MLPRegressor(loss="quantile", quantile=q, hidden_layer_sizes=(16,), learning_rate_init=0.01,
                                     max_iter=300, random_state=0).fit(X, y)
        figures[q] = float(np.mean(y <= regressor.predict(X)))
    print("diabetes coverage (fraction of targets below the prediction): "
          + ", ".join(f"q={q}: {c:.3f}" for q, c in figures.items()))
    for q, coverage in figures.items():
        assert abs(coverage - q) < 0.1
    assert figures[0.1] < figures[0.5] < figures[0.9]


# ---- the command line ----------------------------------------------------------------------------
def _cli(*args):
    from nn_xp.cli import main

    return main(list(args))


def test_cli_regression_losses_are_saved(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    np.savez(tmp_path / "data.npz", X=X, y=X @ [1.0, -1.0, 0.5] + rng.normal(size=60))
    for options, expected in [
        (["--loss", "quantile", "--quantile", "0.9"], {"name": "quantile", "quantile": 0.9}),
        (["--loss", "huber", "--huber-delta", "2"], {"name": "huber", "delta": 2.0}),
        (["--loss", "absolute_error"], "absolute_error"),
    ]:
        path = tmp_path / "m.npz"
        assert _cli("train", "--dataset", str(tmp_path / "data.npz"), "--epochs", "3", "--quiet",
                    "--save", str(path), *options) == 0
        assert nx.load(path).loss == expected
    assert _cli("train", "--dataset", str(tmp_path / "data.npz"), "--epochs", "1", "--quiet",
                "--loss", "quantile", "--huber-delta", "2") != 0
    assert "--huber-delta is a setting of --loss huber" in capsys.readouterr().err
    assert _cli("train", "--dataset", str(tmp_path / "data.npz"), "--epochs", "1", "--quiet",
                "--loss", "quantile", "--quantile", "1.5") != 0
    assert "quantile" in capsys.readouterr().err


def test_cli_label_smoothing(tmp_path, capsys):
    path = tmp_path / "iris.npz"
    assert _cli("train", "--dataset", "iris", "--epochs", "3", "--quiet", "--label-smoothing", "0.1",
                "--save", str(path)) == 0
    assert nx.load(path).loss == {"name": "cross_entropy", "label_smoothing": 0.1}
    assert _cli("train", "--epochs", "1", "--quiet", "--label-smoothing", "0.1") != 0  # the sine: regression
    assert "--label-smoothing is a setting of --loss cross_entropy, not of --loss mse" in capsys.readouterr().err
    assert _cli("train", "--epochs", "1", "--quiet", "--label-smoothing", "0.1", "--loss", "cross_entropy") != 0
    assert "label_smoothing=0.1 needs cross_entropy with a softmax output" in capsys.readouterr().err
