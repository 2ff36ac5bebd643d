"""The L2 penalty on the weights that a training step adds to its loss and gradients: shared by
the epoch's batches (epoch.py), the compiled step (compiled.py) and the scikit-learn estimators."""

from __future__ import annotations


def l2_penalty(ops, params, grads, decayed, l2: float, n: int):
    """The L2 penalty of a batch of n samples on the weights (not the biases), added to their gradients:

        L += l2 / (2 n) * sum_l ||W_l||^2,      dW_l += l2 / n * W_l

    (the notebooks' lambda / (2m) and scikit-learn's alpha, m the batch size, or with sample
    weights the batch's total weight, as scikit-learn's MLP and repeated rows have it). Returns the penalty
    as a 0-d device array; the gradients are updated in place where the backend allows it.

    decayed: the positions in `params` of the parameters the penalty applies to (`model.decayed()`).
    """
    xp = ops.xp
    penalty = 0.0
    for i in decayed:
        W = params[i]
        flat = xp.reshape(W, (-1,))
        penalty = penalty + xp.vecdot(flat, flat)
        grads[i] = ops.add_scaled(grads[i], W, l2 / n)
    return penalty * (l2 / (2 * n))
