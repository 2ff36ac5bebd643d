"""Named validation metrics: `fit(..., validation_metric=...)` logs one as "val_<name>" per epoch.

Each is a plain NumPy function `metric(y_true, y_pred, sample_weight=None) -> float` of the labels
(classification: the classes, as `predict` gives them) or the values (regression), the same
signature as scikit-learn's metric functions, which `validation_metric` also takes as callables.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GREATER_IS_BETTER", "METRICS", "get_metric"]


def _weights(y_true, sample_weight):
    return np.ones(len(y_true)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)


def _rows(values, w):
    """Row values (a column per output for 2-D targets, averaged) weighted-averaged over the rows."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 2:
        values = values.mean(axis=1)
    return float(np.sum(w * values) / np.sum(w))


def accuracy(y_true, y_pred, sample_weight=None) -> float:
    """The fraction of rows predicted right (every label right, for multi-label rows)."""
    correct = np.asarray(y_true) == np.asarray(y_pred)
    correct = correct.all(axis=1) if correct.ndim == 2 else correct
    return _rows(correct, _weights(y_true, sample_weight))


def balanced_accuracy(y_true, y_pred, sample_weight=None) -> float:
    """The mean over the classes present in y_true of the recall (scikit-learn's balanced_accuracy_score)."""
    y_true, y_pred, w = np.asarray(y_true), np.asarray(y_pred), _weights(y_true, sample_weight)
    recalls = [np.sum(w[(y_true == c) & (y_pred == c)]) / np.sum(w[y_true == c]) for c in np.unique(y_true)]
    return float(np.mean(recalls))


def f1_macro(y_true, y_pred, sample_weight=None) -> float:
    """The unweighted mean of each class's F1 over the classes in y_true or y_pred (scikit-learn's
    f1_score(average="macro"); a class never predicted nor present scores 0)."""
    y_true, y_pred, w = np.asarray(y_true), np.asarray(y_pred), _weights(y_true, sample_weight)
    scores = []
    for c in np.unique(np.concatenate([y_true, y_pred])):
        tp = np.sum(w[(y_true == c) & (y_pred == c)])
        denominator = np.sum(w[y_true == c]) + np.sum(w[y_pred == c])
        scores.append(2 * tp / denominator if denominator > 0 else 0.0)
    return float(np.mean(scores))


def r2(y_true, y_pred, sample_weight=None) -> float:
    """1 - SS_res / SS_tot, averaged over outputs (scikit-learn's r2_score)."""
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    w = _weights(y_true, sample_weight)
    Y, P = y_true.reshape(len(y_true), -1), y_pred.reshape(len(y_pred), -1)
    mean = np.sum(w[:, None] * Y, axis=0) / np.sum(w)
    residual = np.sum(w[:, None] * (Y - P) ** 2, axis=0)
    total = np.sum(w[:, None] * (Y - mean) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(total > 0, 1 - residual / total, np.where(residual > 0, 0.0, 1.0))
    return float(np.mean(scores))


def mse(y_true, y_pred, sample_weight=None) -> float:
    """The mean squared error."""
    return _rows((np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64)) ** 2,
                 _weights(y_true, sample_weight))


def rmse(y_true, y_pred, sample_weight=None) -> float:
    """The square root of the mean squared error, averaged over outputs (scikit-learn's)."""
    errors = (np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64)) ** 2
    w = _weights(y_true, sample_weight)
    per_output = np.sum(w[:, None] * errors.reshape(len(w), -1), axis=0) / np.sum(w)
    return float(np.mean(np.sqrt(per_output)))


def mae(y_true, y_pred, sample_weight=None) -> float:
    """The mean absolute error."""
    return _rows(np.abs(np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64)),
                 _weights(y_true, sample_weight))


METRICS = {f.__name__: f for f in (accuracy, balanced_accuracy, f1_macro, r2, mse, rmse, mae)}
GREATER_IS_BETTER = ("accuracy", "balanced_accuracy", "f1_macro", "r2")


def get_metric(metric, parameter: str = "validation_metric"):
    """(name, function) for a name in METRICS or a callable(y_true, y_pred) -> float (named after
    its __name__; "metric" for a lambda)."""
    if isinstance(metric, str):
        if metric not in METRICS:
            raise ValueError(f"{parameter} must be one of {sorted(METRICS)} or a callable, got {metric!r}")
        return metric, METRICS[metric]
    if callable(metric):
        name = getattr(metric, "__name__", "") or type(metric).__name__
        return ("metric" if name == "<lambda>" else name), metric
    raise TypeError(f"{parameter} must be a metric name ({sorted(METRICS)}) or a callable(y_true, y_pred), "
                    f"got {metric!r}")
