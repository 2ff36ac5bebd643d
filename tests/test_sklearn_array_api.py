"""nn_xp.sklearn under scikit-learn's array API dispatch: the estimators follow X's namespace and device.

scikit-learn's own checks (check_array_api_input, check_array_api_input_and_values,
check_array_api_mixed_inputs, check_array_api_same_namespace) run in one child process with
SCIPY_ARRAY_API=1 (tests/sklearn_array_api_checks.py), over scikit-learn's own lists of
namespaces, devices and dtypes; a namespace or device that is not here (CuPy, torch's GPUs, MPS)
is skipped by scikit-learn's check itself. The tests below check the rest in this process:
scikit-learn reads SCIPY_ARRAY_API only when dispatch is used, and the estimators never hand SciPy
an array other than NumPy (they work on host copies), so setting it here changes nothing in SciPy.
"""

import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
array_api_strict = pytest.importorskip("array_api_strict")

import sklearn  # noqa: E402
from numpy.testing import assert_allclose  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from nn_xp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402
from nn_xp.sklearn._array_api import training_device  # noqa: E402

from . import sklearn_array_api_checks as upstream  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SETTINGS = dict(hidden_layer_sizes=(5,), max_iter=5, learning_rate_init=0.01, random_state=0)
CASES = [f"{name}-{case}" for name in ("MLPClassifier", "MLPRegressor") for case in upstream.cases()]


@pytest.fixture(scope="module")
def upstream_results():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.pop("SCIPY_ARRAY_API", None)
    done = subprocess.run([sys.executable, "-m", "tests.sklearn_array_api_checks"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return {result["case"]: result for result in json.loads(done.stdout.strip().splitlines()[-1])}


@pytest.mark.parametrize("case", CASES)
def test_scikit_learn_array_api_check(upstream_results, case):
    result = upstream_results[case]
    if result["outcome"] == "skipped":
        pytest.skip(result["detail"])
    assert result["outcome"] == "passed", result["detail"]


# ---- the same in this process, in detail ------------------------------------------------------
@pytest.fixture
def dispatch(monkeypatch):
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    with sklearn.config_context(array_api_dispatch=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@pytest.fixture(autouse=True)
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _data(dtype="float64"):
    X, y = make_classification(n_samples=40, n_features=6, random_state=0)
    return X.astype(dtype), y


def _strict(array, device="CPU_DEVICE"):
    return array_api_strict.asarray(array, device=array_api_strict.Device(device))


def _namespace_name(array) -> str:
    return type(array).__module__.split(".")[0]


STRICT_DEVICES = ["CPU_DEVICE", "device1"]


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
@pytest.mark.parametrize("estimator", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize("device", STRICT_DEVICES)
def test_array_api_strict_x_trains_on_its_device_and_gets_its_arrays_back(dispatch, estimator, device, solver):
    X, y = _data()
    Xs, ys = _strict(X, device), _strict(y, device)
    fitted = estimator(**SETTINGS, solver=solver).fit(Xs, ys)
    assert fitted.model_.device == "array_api_strict"
    for array in fitted.coefs_ + fitted.intercepts_:
        assert _namespace_name(array) == "array_api_strict"
        assert array.device == Xs.device
    methods = ["predict"] + (["predict_proba", "predict_log_proba"] if estimator is MLPClassifier else [])
    for method in methods:
        output = getattr(fitted, method)(Xs)
        assert _namespace_name(output) == "array_api_strict" and output.device == Xs.device
    score = fitted.score(Xs, ys)
    assert type(score) is float


@pytest.mark.parametrize("estimator", [MLPClassifier, MLPRegressor])
def test_dispatch_fits_the_same_model_as_numpy(dispatch, estimator):
    """float64, one random_state: the array-api-strict fit's weights and predictions are NumPy's."""
    X, y = _data()
    with sklearn.config_context(array_api_dispatch=False):
        reference = estimator(**SETTINGS, device="cpu").fit(X, y)
        expected = reference.predict(X)
    fitted = estimator(**SETTINGS).fit(_strict(X), _strict(y))
    for ours, theirs in zip(fitted.coefs_ + fitted.intercepts_, reference.coefs_ + reference.intercepts_):
        assert_allclose(np.from_dlpack(ours), theirs, rtol=1e-10, atol=1e-12)
    assert_allclose(np.from_dlpack(fitted.predict(_strict(X))), expected, rtol=1e-10, atol=1e-12)


def test_numpy_x_under_dispatch_trains_on_the_cpu_and_gives_numpy(dispatch):
    X, y = _data("float32")
    fitted = MLPClassifier(**SETTINGS).fit(X, y)
    assert fitted.model_.device == "cpu"
    assert all(type(a) is np.ndarray for a in fitted.coefs_ + fitted.intercepts_)
    probabilities = fitted.predict_proba(X)
    assert type(probabilities) is np.ndarray and probabilities.dtype == np.float32


@pytest.mark.parametrize("estimator", [MLPClassifier, MLPRegressor])
def test_y_and_sample_weight_from_another_namespace_follow_x(dispatch, estimator):
    X, y = _data()
    weight = np.linspace(0.5, 2.0, X.shape[0])
    all_strict = estimator(**SETTINGS).fit(_strict(X), _strict(y), sample_weight=_strict(weight))
    mixed = estimator(**SETTINGS).fit(_strict(X), y, sample_weight=weight)
    assert _namespace_name(mixed.coefs_[0]) == "array_api_strict"
    for a, b in zip(all_strict.coefs_, mixed.coefs_):
        assert_allclose(np.from_dlpack(a), np.from_dlpack(b), rtol=1e-12)
    unweighted = estimator(**SETTINGS).fit(_strict(X), y)
    assert not np.allclose(np.from_dlpack(unweighted.coefs_[0]), np.from_dlpack(mixed.coefs_[0]))


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_predict_in_another_namespace_than_fit_is_refused(dispatch, method):
    X, y = _data()
    strict_fit = MLPClassifier(**SETTINGS).fit(_strict(X), _strict(y))
    with pytest.raises(ValueError, match=rf"must use the same namespace.*MLPClassifier.{method}\(\)|"
                                         rf"MLPClassifier.{method}\(\) must use the same namespace"):
        getattr(strict_fit, method)(X)
    with sklearn.config_context(array_api_dispatch=False):
        numpy_fit = MLPClassifier(**SETTINGS).fit(X, y)
    with pytest.raises(ValueError, match="must use the same namespace"):
        getattr(numpy_fit, method)(_strict(X))


def test_partial_fit_follows_x(dispatch):
    X, y = _data()
    Xs = _strict(X, "device1")
    fitted = MLPClassifier(**SETTINGS).partial_fit(Xs, _strict(y, "device1"), classes=np.unique(y))
    fitted.partial_fit(Xs, y)
    assert fitted.n_iter_ == 1 and fitted.model_.device == "array_api_strict"
    assert fitted.coefs_[0].device == Xs.device and fitted.predict(Xs).device == Xs.device
    with pytest.raises(ValueError, match=r"MLPClassifier.partial_fit\(\) must use the same namespace"):
        fitted.partial_fit(X, y)


def test_warm_start_in_another_namespace_is_refused(dispatch):
    X, y = _data()
    fitted = MLPRegressor(**SETTINGS, warm_start=True).fit(_strict(X), _strict(y))
    with pytest.raises(ValueError, match=r"MLPRegressor.fit\(\) must use the same namespace"):
        fitted.fit(X, y)


def test_a_device_other_than_xs_is_refused_before_training(dispatch):
    X, y = _data()
    estimator = MLPRegressor(**SETTINGS, device="cpu")
    with pytest.raises(ValueError, match="device='cpu' but X lives on nn_xp's device 'array_api_strict'"):
        estimator.fit(_strict(X), _strict(y))
    assert not hasattr(estimator, "model_")


def test_without_dispatch_everything_is_numpy_as_before():
    X, y = _data()
    fitted = MLPClassifier(**SETTINGS, device="array_api_strict").fit(_strict(X), _strict(y))
    assert fitted.model_.device == "array_api_strict"
    assert all(type(a) is np.ndarray for a in fitted.coefs_ + fitted.intercepts_)
    assert type(fitted.predict_proba(_strict(X))) is np.ndarray
    assert fitted.__sklearn_tags__().array_api_support is True


def test_a_pickled_estimator_keeps_its_namespace(dispatch):
    X, y = _data()
    fitted = MLPClassifier(**SETTINGS).fit(_strict(X, "device1"), _strict(y, "device1"))
    restored = pickle.loads(pickle.dumps(fitted))
    output = restored.predict_proba(_strict(X, "device1"))
    assert _namespace_name(output) == "array_api_strict" and str(output.device) == str(_strict(X, "device1").device)
    assert_allclose(np.from_dlpack(output), np.from_dlpack(fitted.predict_proba(_strict(X, "device1"))))


def test_the_training_device_is_x_s():
    assert training_device(np.zeros((2, 2))) == "cpu"
    assert training_device([[1.0, 2.0]]) == "cpu"
    for device in STRICT_DEVICES:
        assert training_device(_strict(np.zeros((2, 2)), device)) == "array_api_strict"
    torch = pytest.importorskip("torch")
    assert training_device(torch.zeros((2, 2))) == "torch:cpu"


@pytest.mark.parametrize("estimator", [MLPClassifier, MLPRegressor])
def test_torch_x_trains_on_torch_and_gets_torch_arrays_of_its_dtype_back(dispatch, estimator):
    torch = pytest.importorskip("torch")
    X, y = _data("float32")
    Xt = torch.asarray(X)
    fitted = estimator(**SETTINGS).fit(Xt, torch.asarray(y))
    assert fitted.model_.device == "torch:cpu"
    for array in fitted.coefs_ + fitted.intercepts_:
        assert isinstance(array, torch.Tensor) and array.dtype == torch.float32
    methods = ["predict_proba", "predict_log_proba"] if estimator is MLPClassifier else ["predict"]
    for method in methods:
        output = getattr(fitted, method)(Xt)
        assert isinstance(output, torch.Tensor) and output.dtype == torch.float32 and output.device == Xt.device
    if estimator is MLPClassifier:
        assert fitted.predict(Xt).dtype == torch.int64


@pytest.mark.parametrize("estimator", [MLPClassifier, MLPRegressor])
def test_a_device_without_float64_trains_and_scores_in_float32(dispatch, estimator):
    X, y = _data("float32")
    Xs, ys = _strict(X, "no_float64"), _strict(y.astype(np.int32), "no_float64")
    fitted = estimator(**SETTINGS).fit(Xs, ys)
    assert fitted.coefs_[0].dtype == array_api_strict.float32 and fitted.coefs_[0].device == Xs.device
    with sklearn.config_context(array_api_dispatch=False):
        expected = estimator(**SETTINGS, device="cpu").fit(X, y.astype(np.int32)).score(X, y.astype(np.int32))
    score = fitted.score(Xs, ys)
    assert type(score) is float and score == pytest.approx(expected, rel=1e-5)
