"""scikit-learn's callback protocol (`sklearn.callback`) for the `nn_xp.sklearn` estimators.

A fit is one task with one subtask per epoch (solvers "adam" and "sgd") or per L-BFGS iteration
(solver "lbfgs"), told to the callbacks as scikit-learn's own estimators tell them: the root task
begins once the data is checked and ends after the last epoch; each subtask begins before its
epoch and ends after it with the model as it then is, so that `ScoringMonitor` scores every epoch
and `ProgressBar` moves with them. For L-BFGS the hooks follow scipy's `callback(xk)` as
scikit-learn's LogisticRegression does (`_LbfgsCallbackBridge`): one subtask begins before the
first iteration, each call ends one and begins the next, and the one left open when scipy returns
ends empty. Meta-estimators (Pipeline, GridSearchCV) attach this task tree to theirs through
`CallbackSupportMixin`.

With a scikit-learn that has no `sklearn.callback` the estimators still fit; only
`set_callbacks` refuses, naming the version needed.
"""

from __future__ import annotations

import sklearn

try:
    from sklearn.callback import CallbackSupportMixin, with_callbacks

    HAS_CALLBACKS = True
except ImportError:  # scikit-learn without the callback API
    HAS_CALLBACKS = False

    class CallbackSupportMixin:
        """Stands in for scikit-learn's mixin: every fit works, set_callbacks says what is missing."""

        def set_callbacks(self, *callbacks):
            raise RuntimeError(
                f"set_callbacks needs scikit-learn's callback API (sklearn.callback, scikit-learn >= 1.9); "
                f"scikit-learn {sklearn.__version__} is installed: pip install -U 'scikit-learn>=1.9'"
            )

    def with_callbacks(method):
        return method


__all__ = ["HAS_CALLBACKS", "CallbackSupportMixin", "FitTasks", "with_callbacks"]


class FitTasks:
    """The callback contexts of one fit: the root task and its subtasks, one at a time.

    Every hook gets the fit's data (X as checked, y as given, sample_weight as metadata) and, at
    the end of a subtask, the estimator as it stands (`reconstruction_attributes={}`: a copy of
    the estimator, made only when a callback asks for `fitted_estimator`).
    """

    def __init__(self, estimator, X, y, sample_weight, max_subtasks: int, subtask_name: str):
        self._estimator = estimator
        self._data = dict(estimator=estimator, X=X, y=y,
                          metadata=None if sample_weight is None else {"sample_weight": sample_weight})
        self._subtask_name = subtask_name
        self._current = None
        self._root = estimator._init_callback_context(max_subtasks=max_subtasks) if HAS_CALLBACKS else None
        if self._root is not None:
            self._root.call_on_fit_task_begin(**self._data)

    def begin(self) -> None:
        """Begin the next subtask (an epoch, an L-BFGS iteration)."""
        if self._root is not None:
            self._current = self._root.subcontext(task_name=self._subtask_name)
            self._current.call_on_fit_task_begin(**self._data, reconstruction_attributes={})

    def end(self) -> bool:
        """End the current subtask with the estimator as it now is; True when a callback asks to stop."""
        if self._current is None:
            return False
        current, self._current = self._current, None
        return bool(current.call_on_fit_task_end(**self._data, reconstruction_attributes={}))

    def end_empty(self) -> None:
        """End the current subtask as one that did not run (no data, no model to score)."""
        if self._current is not None:
            current, self._current = self._current, None
            current.call_on_fit_task_end(estimator=self._estimator)

    def close(self) -> None:
        """End the root task with the fitted estimator."""
        self.end_empty()
        if self._root is not None:
            self._root.call_on_fit_task_end(**self._data, reconstruction_attributes={})
