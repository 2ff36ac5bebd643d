"""Metrics reported by evaluate() and fit(): accuracy for classification; mse, mae and r2 for regression.

All inputs are device arrays; results are 0-d device arrays (no host synchronisation here).
"""

from __future__ import annotations

from . import backend


def accuracy(xp, out, Y, output_activation: str):
    """Fraction of samples whose predicted class matches; multi-label sigmoid counts every output."""
    if output_activation == "softmax":
        return xp.mean(xp.astype(xp.argmax(out, axis=1) == xp.argmax(Y, axis=1), out.dtype))
    return xp.mean(xp.astype((out > 0.5) == (Y > 0.5), out.dtype))


def regression_metrics(xp, out, Y) -> dict:
    D = out - Y
    mean = xp.mean(Y, axis=0, keepdims=True)
    total = xp.sum((Y - mean) * (Y - mean))
    residual = xp.sum(D * D)
    # r2 over all outputs together, as sklearn's r2_score(multioutput="variance_weighted").
    r2 = 1 - residual / xp.where(total > 0, total, xp.ones_like(total))
    return {"mse": xp.mean(D * D), "mae": xp.mean(xp.abs(D)), "r2": r2}


def compute_metrics(model, out, Y, loss: str) -> dict:
    """The task's metrics for model outputs `out` against float targets `Y`."""
    xp = backend.get_namespace(out)
    if loss in ("cross_entropy", "binary_cross_entropy"):
        return {"accuracy": accuracy(xp, out, Y, model.output_activation)}
    return regression_metrics(xp, out, Y)
