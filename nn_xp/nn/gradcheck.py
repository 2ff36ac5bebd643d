"""Gradient checking against central differences, the way the notebooks check backprop."""

from __future__ import annotations

import numpy as np

from .. import backends


def gradcheck(model, X, y, loss=None, epsilon: float = 1e-6, training_step=None) -> float:
    """Max relative error of the analytic gradient against central differences, in float64.

    For each parameter array p, with g the analytic and n the numerical gradient,
        n_j = (L(p_j + epsilon) - L(p_j - epsilon)) / (2 epsilon),
        error(p) = ||g - n|| / (||g|| + ||n||)      (0 where both are 0),
    and the result is the largest error(p). Values below 1e-7 mean the backward pass is right.
    The model itself is not changed: the check runs on a float64 copy. With `training_step`, the
    network runs as in that step of `fit` (dropout on), with its masks held fixed.
    """
    check = model.copy(dtype="float64")
    head = check.head(loss)
    X = check.check_input(X)
    Y = check.check_target(y, X.shape[0], head)
    _, grads = check.loss_and_grads(X, Y, loss=head.spec(), training_step=training_step)
    worst = 0.0
    params = check.parameters()
    for index, grad in enumerate(grads):
        analytic = backends.to_numpy(grad).ravel()
        original = backends.to_numpy(params[index])
        numeric = np.empty_like(analytic)
        flat = original.ravel()
        for j in range(flat.size):
            values = []
            for step in (epsilon, -epsilon):
                trial = flat.copy()
                trial[j] += step
                params[index] = backends.to_device(trial.reshape(original.shape), check.device)
                values.append(float(check.loss_value(X, Y, head, training_step)))
            numeric[j] = (values[0] - values[1]) / (2 * epsilon)
        params[index] = backends.to_device(original, check.device)
        denominator = np.linalg.norm(analytic) + np.linalg.norm(numeric)
        if denominator > 0:
            worst = max(worst, float(np.linalg.norm(analytic - numeric) / denominator))
    return worst
