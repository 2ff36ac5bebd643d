"""Losses with PyTorch's definitions (mean reduction), and their gradients.

The two pairs that simplify are explicit functions of the logits Z, so that no NaN or inf appears
for any finite logits:
- softmax + cross-entropy:  L = mean_i( logsumexp(Z_i) - Z_i[y_i] ),      dL/dZ = (softmax(Z) - Y) / n
- sigmoid + binary cross-entropy:
      L = mean( max(Z, 0) - Z * Y + log(1 + exp(-|Z|)) ),                   dL/dZ = (sigmoid(Z) - Y) / Z.size
MSE acts on the output A after the output activation:
      L = mean( (A - Y)^2 ),                                                dL/dA = 2 (A - Y) / A.size
`Y` is always a float array shaped like the output (class labels arrive here one-hot encoded).
"""

from __future__ import annotations

from .activations import _sigmoid

LOSSES = ("mse", "binary_cross_entropy", "cross_entropy")
# The output activation each loss needs; mse works after any output activation.
REQUIRED_OUTPUT = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}


def check_loss(loss, output_activation: str, parameter: str = "loss") -> str:
    """Validate a loss name against the model's output activation; None infers it."""
    if loss is None:
        return default_loss(output_activation)
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"{parameter} must be one of {list(LOSSES)} or None, got {loss!r}")
    needed = REQUIRED_OUTPUT.get(loss)
    if needed is not None and output_activation != needed:
        raise ValueError(
            f"{parameter}={loss!r} needs output_activation={needed!r} (it is computed from the "
            f"logits for stability), but the model's output activation is {output_activation!r}"
        )
    return loss


def default_loss(output_activation: str) -> str:
    """softmax -> cross_entropy, sigmoid -> binary_cross_entropy, anything else -> mse."""
    return {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy"}.get(output_activation, "mse")


def _logsumexp(xp, Z):
    m = xp.max(Z, axis=1, keepdims=True)
    return m + xp.log(xp.sum(xp.exp(Z - m), axis=1, keepdims=True))


def softmax_cross_entropy(xp, Z, Y):
    """Cross-entropy of softmax(Z) against one-hot (or probability) rows Y. Returns (L, dZ)."""
    n = Z.shape[0]
    m = xp.max(Z, axis=1, keepdims=True)
    E = xp.exp(Z - m)
    S = xp.sum(E, axis=1, keepdims=True)
    log_probs = (Z - m) - xp.log(S)
    L = -xp.sum(Y * log_probs) / n
    dZ = (E / S - Y) / n
    return L, dZ


def softmax_cross_entropy_value(xp, Z, Y):
    """The cross-entropy alone (no gradient)."""
    return -xp.sum(Y * (Z - _logsumexp(xp, Z))) / Z.shape[0]


def sigmoid_binary_cross_entropy(xp, Z, Y):
    """Binary cross-entropy of sigmoid(Z) against 0/1 targets Y. Returns (L, dZ)."""
    L = sigmoid_binary_cross_entropy_value(xp, Z, Y)
    dZ = (_sigmoid(xp, Z) - Y) / (Z.shape[0] * Z.shape[1])
    return L, dZ


def sigmoid_binary_cross_entropy_value(xp, Z, Y):
    relu_Z = xp.where(Z > 0, Z, xp.zeros_like(Z))
    return xp.mean(relu_Z - Z * Y + xp.log1p(xp.exp(-xp.abs(Z))))


def mse(xp, A, Y):
    """Mean squared error over all elements. Returns (L, dA)."""
    D = A - Y
    return xp.mean(D * D), D * (2 / (D.shape[0] * D.shape[1]))


def mse_value(xp, A, Y):
    D = A - Y
    return xp.mean(D * D)
