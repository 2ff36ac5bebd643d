"""scikit-learn's callback protocol on the nn_xp.sklearn estimators, with scikit-learn's own callbacks."""

import importlib.util
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn.callback")

from sklearn.callback import ProgressBar, ScoringMonitor
from sklearn.datasets import load_iris, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import nn_xp
from nn_xp.sklearn import MLPClassifier, MLPRegressor


@pytest.fixture(autouse=True)
def no_convergence_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


class Recorder:
    """A FitCallback that writes down every hook call: (hook, task name, task id, has a model)."""

    def __init__(self, stop_after=None):
        self.calls = []
        self.stop_after = stop_after

    def setup(self, estimator, context):
        self.calls.append(("setup", context.task_name, context.task_id, False))

    def teardown(self, estimator, context):
        self.calls.append(("teardown", context.task_name, context.task_id, False))

    def on_fit_task_begin(self, estimator, context, *, X=None, y=None, metadata=None, fitted_estimator=None):
        self.calls.append(("begin", context.task_name, context.task_id, fitted_estimator is not None))

    def on_fit_task_end(self, estimator, context, *, X=None, y=None, metadata=None, fitted_estimator=None):
        self.calls.append(("end", context.task_name, context.task_id, fitted_estimator is not None))
        ended = sum(1 for c in self.calls if c[0] == "end" and c[1] == "epoch")
        return self.stop_after is not None and context.task_name == "epoch" and ended >= self.stop_after


def _epoch_rows(log, name):
    return [row for row in log.data if row["task_name"] == name]


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_scoring_monitor_logs_one_score_per_epoch(solver):
    X, y = _iris()
    monitor = ScoringMonitor(scoring="accuracy")
    model = MLPClassifier((16,), solver=solver, max_iter=7, learning_rate_init=0.01, random_state=0)
    model.set_callbacks(monitor).fit(X, y)
    log = monitor.get_logs()
    rows = _epoch_rows(log, "epoch")
    assert model.n_iter_ == 7
    assert [row["task_id"] for row in rows] == list(range(7))
    assert all(row["estimator_name"] == "MLPClassifier" for row in rows)
    # each epoch is scored on the model as that epoch left it: the last one is the fitted model
    assert rows[-1]["accuracy"] == pytest.approx(model.score(X, y))
    (root,) = _epoch_rows(log, "fit")
    assert root["accuracy"] == pytest.approx(model.score(X, y))


def test_scoring_monitor_scores_change_with_the_epochs():
    X, y = make_regression(200, 5, noise=1.0, random_state=0)
    y = y / y.std()
    monitor = ScoringMonitor(scoring="r2")
    model = MLPRegressor(hidden_layer_sizes=(16,), max_iter=20, learning_rate_init=0.01, random_state=0)
    model.set_callbacks(monitor).fit(X, y)
    scores = [row["r2"] for row in _epoch_rows(monitor.get_logs(), "epoch")]
    assert len(scores) == model.n_iter_ == 20
    assert scores[-1] > scores[0] + 0.1
    assert scores[-1] == pytest.approx(model.score(X, y))


@pytest.mark.parametrize("estimator", [MLPClassifier, MLPRegressor])
def test_lbfgs_has_one_subtask_per_iteration(estimator):
    X, y = _iris()
    if estimator is MLPRegressor:
        y = y.astype(float)
    name = "r2" if estimator is MLPRegressor else "accuracy"
    monitor, recorder = ScoringMonitor(scoring=name), Recorder()
    model = estimator(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=6, random_state=0)
    model.set_callbacks(monitor, recorder).fit(X, y)
    rows = _epoch_rows(monitor.get_logs(), "lbfgs-iter")
    assert len(rows) == model.n_iter_ == 6
    assert rows[-1][name] == pytest.approx(model.score(X, y))
    # as scikit-learn's LogisticRegression: every begin has its end; the last subtask (begun after
    # the last iteration) ends empty, without a model to score
    begins = [c for c in recorder.calls if c[0] == "begin" and c[1] == "lbfgs-iter"]
    ends = [c for c in recorder.calls if c[0] == "end" and c[1] == "lbfgs-iter"]
    assert len(begins) == len(ends) == model.n_iter_ + 1
    assert [c[3] for c in ends] == [True] * model.n_iter_ + [False]
    assert recorder.calls[0][:2] == ("setup", "fit") and recorder.calls[-1][:2] == ("teardown", "fit")


def test_a_callback_can_stop_the_fit():
    X, y = _iris()
    recorder = Recorder(stop_after=3)
    model = MLPClassifier((8,), max_iter=50, random_state=0).set_callbacks(recorder).fit(X, y)
    assert model.n_iter_ == 3 and len(model.loss_curve_) == 3


def test_partial_fit_tells_no_callbacks():
    X, y = _iris()
    recorder = Recorder()
    model = MLPClassifier((8,), random_state=0).set_callbacks(recorder)
    model.partial_fit(X, y, classes=np.unique(y))
    assert recorder.calls == []


def test_callbacks_in_a_pipeline_and_a_grid_search():
    X, y = _iris()
    monitor = ScoringMonitor(scoring="accuracy")
    pipe = make_pipeline(StandardScaler(), MLPClassifier((8,), max_iter=4, random_state=0).set_callbacks(monitor))
    pipe.fit(X, y)
    rows = _epoch_rows(monitor.get_logs(), "epoch")
    # the MLP's fit task is the pipeline's second step: its epochs sit under it
    assert [row["task_id_path"] for row in rows] == [(0, 1, i) for i in range(4)]
    assert monitor.get_logs().estimator_name == "Pipeline"

    monitor = ScoringMonitor(scoring="accuracy")
    search = GridSearchCV(MLPClassifier((8,), max_iter=3, random_state=0).set_callbacks(monitor),
                          {"alpha": [1e-4, 1e-2]}, cv=2)
    search.fit(X, y)
    rows = _epoch_rows(monitor.get_logs(), "epoch")
    assert len(rows) == 3 * (2 * 2 + 1)  # 3 epochs in each of 4 candidate fits and the refit
    assert {row["estimator_name"] for row in rows} == {"MLPClassifier"}
    assert monitor.get_logs().estimator_name == "GridSearchCV"


def test_progress_bar_draws_alone_and_propagated():
    pytest.importorskip("rich")
    X, y = _iris()
    MLPClassifier((8,), max_iter=3, random_state=0).set_callbacks(ProgressBar()).fit(X, y)
    MLPRegressor(solver="lbfgs", hidden_layer_sizes=(8,), max_iter=3).set_callbacks(ProgressBar()).fit(X, y * 1.0)
    make_pipeline(StandardScaler(), MLPClassifier((8,), max_iter=3)).set_callbacks(ProgressBar()).fit(X, y)
    search = GridSearchCV(MLPClassifier((8,), max_iter=3), {"alpha": [1e-4, 1e-2]}, cv=2)
    search.set_callbacks(ProgressBar(max_propagation_depth=None)).fit(X, y)
    assert search.best_estimator_.n_iter_ == 3


def test_set_callbacks_without_sklearn_callback_names_the_version(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.callback", None)  # import sklearn.callback fails
    path = nn_xp.__path__[0] + "/sklearn/_callbacks.py"
    spec = importlib.util.spec_from_file_location("nn_xp.sklearn._callbacks_without", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert not module.HAS_CALLBACKS
    with pytest.raises(RuntimeError, match=r"scikit-learn >= 1\.9"):
        module.CallbackSupportMixin().set_callbacks(ScoringMonitor(scoring="accuracy"))
    assert module.with_callbacks(len) is len
