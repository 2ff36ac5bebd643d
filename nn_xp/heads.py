"""Output heads: an output activation and its loss, from the logits Z of the last layer.

Each head gives the loss value, the gradient from the logits, the predictions and the metrics.
Losses have PyTorch's definitions with mean reduction; the pairs that simplify are explicit
functions of the logits, so no NaN or inf appears for any finite logits:
- softmax + cross-entropy:  L = mean_i( logsumexp(Z_i) - <Y_i, Z_i> ),    dL/dZ = (softmax(Z) - Y) / n
- sigmoid + binary cross-entropy:
      L = mean( max(Z, 0) - Z * Y + log(1 + exp(-|Z|)) ),                 dL/dZ = (sigmoid(Z) - Y) / Z.size
- an activation f + mean squared error, on A = f(Z):
      L = mean( (A - Y)^2 ),                                              dL/dA = 2 (A - Y) / A.size
- exp + Poisson (log link, scikit-learn's half Poisson deviance per element), with A = exp(Z):
      L = mean( Y log(Y / A) - Y + A ) = mean( xlogy(Y, Y) - Y Z - Y + exp(Z) ),   dL/dZ = (A - Y) / A.size
`Y` is always a float array shaped like the output (class labels arrive one-hot encoded).
`get_head(loss, output_activation)` is the one place that maps a loss name to its head.
"""

from __future__ import annotations

import numpy as np

from .activations import Activation, get_activation, sigmoid

LOSSES = ("mse", "binary_cross_entropy", "cross_entropy", "poisson")
# The output activation each loss needs; mse works after any output activation.
REQUIRED_OUTPUT = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid", "poisson": "exp"}


class Head:
    """An output activation with its loss.

    `loss_and_grad` returns (L, dL/dZ, out), where `out` is what `batch_metric` reads: the logits
    for the classification heads, the activated output for mse. Losses are 0-d device arrays.
    """

    loss = "loss"
    classifier = False
    writes_out = False  # whether loss_and_grad can write dL/dZ into an array it is given
    metric = "mae"  # what fit's running metric is

    def __init__(self, activation: Activation):
        self.activation = activation

    def __repr__(self) -> str:
        return f"{type(self).__name__}(output_activation={self.activation.name!r})"

    def output(self, xp, Z):
        """The output after the output activation."""
        return self.activation.forward(xp, Z)

    def targets(self, y, n_out: int, parameter: str = "y"):
        """Host targets (n_samples,) or (n_samples, n_out) as the (n_samples, n_out) array the
        loss reads; raises ValueError naming `parameter` where they do not fit."""
        Y = y[:, None] if y.ndim == 1 else y
        if Y.shape[1] != n_out:
            raise ValueError(
                f"{parameter} must have shape ({y.shape[0]},) or ({y.shape[0]}, {n_out}) for a model "
                f"with {n_out} outputs, got {y.shape}"
            )
        return Y

    def value(self, ops, Z, Y):
        raise NotImplementedError

    def loss_and_grad(self, ops, Z, Y, out=None):
        raise NotImplementedError

    def batch_metric(self, xp, out, Y):
        """The sum over the batch's samples of the running metric (correct labels, absolute error)."""
        raise NotImplementedError

    def metrics(self, xp, A, Y) -> dict:
        """The task's metrics for the activated output A (evaluate and validation)."""
        raise NotImplementedError


class SoftmaxCrossEntropy(Head):
    loss = "cross_entropy"
    classifier = True
    metric = "accuracy"
    writes_out = True

    def targets(self, y, n_out: int, parameter: str = "y"):
        """Class labels (n_samples,) become one-hot rows; (n_samples, n_out) rows are taken as given."""
        if y.ndim == 2:
            return super().targets(y, n_out, parameter)
        if y.dtype.kind == "f" and not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"{parameter} must hold integer class labels for cross_entropy")
        if y.size and (y.min() < 0 or y.max() >= n_out):
            raise ValueError(
                f"{parameter} holds class labels outside [0, {n_out}) (the model has {n_out} outputs): "
                f"min {y.min():g}, max {y.max():g}"
            )
        return y.astype(np.int64)[:, None] == np.arange(n_out)  # booleans: the model casts them once

    def value(self, ops, Z, Y):
        xp = ops.xp
        m = xp.max(Z, axis=1, keepdims=True)
        logsumexp = m + xp.log(xp.sum(xp.exp(Z - m), axis=1, keepdims=True))
        return -xp.sum(Y * (Z - logsumexp)) / Z.shape[0]

    def loss_and_grad(self, ops, Z, Y, out=None):
        return ops.softmax_cross_entropy(Z, Y, 1 / Z.shape[0], out=out)

    def batch_metric(self, xp, out, Y):
        return xp.sum(xp.astype(xp.argmax(out, axis=1) == xp.argmax(Y, axis=1), out.dtype))

    def metrics(self, xp, A, Y) -> dict:
        return {"accuracy": xp.mean(xp.astype(xp.argmax(A, axis=1) == xp.argmax(Y, axis=1), A.dtype))}


class SigmoidBinaryCrossEntropy(Head):
    loss = "binary_cross_entropy"
    classifier = True
    metric = "accuracy"

    def targets(self, y, n_out: int, parameter: str = "y"):
        Y = super().targets(y, n_out, parameter)
        if Y.size and (Y.min() < 0 or Y.max() > 1):
            raise ValueError(
                f"{parameter} must hold 0/1 targets (two classes) for binary_cross_entropy; "
                f"got values in [{Y.min():g}, {Y.max():g}]"
            )
        return Y

    def value(self, ops, Z, Y):
        xp = ops.xp
        relu_Z = xp.where(Z > 0, Z, xp.zeros_like(Z))
        return xp.mean(relu_Z - Z * Y + xp.log1p(xp.exp(-xp.abs(Z))))

    def loss_and_grad(self, ops, Z, Y, out=None):
        dZ = (sigmoid(ops.xp, Z) - Y) / (Z.shape[0] * Z.shape[1])
        return self.value(ops, Z, Y), dZ, Z

    def batch_metric(self, xp, out, Y):
        return xp.sum(xp.astype((out > 0) == (Y > 0.5), out.dtype)) / out.shape[1]

    def metrics(self, xp, A, Y) -> dict:
        # Multi-label outputs count every output.
        return {"accuracy": xp.mean(xp.astype((A > 0.5) == (Y > 0.5), A.dtype))}


class MeanSquaredError(Head):
    loss = "mse"

    def value(self, ops, Z, Y):
        D = self.activation.forward(ops.xp, Z) - Y
        return ops.xp.mean(D * D)

    def loss_and_grad(self, ops, Z, Y, out=None):
        xp = ops.xp
        A = self.activation.forward(xp, Z)
        D = A - Y
        dA = D * (2 / (D.shape[0] * D.shape[1]))
        return xp.mean(D * D), self.activation.backward(xp, dA, Z, A), A

    def batch_metric(self, xp, out, Y):
        return xp.sum(xp.abs(out - Y)) / out.shape[1]

    def metrics(self, xp, A, Y) -> dict:
        D = A - Y
        mean = xp.mean(Y, axis=0, keepdims=True)
        total = xp.sum((Y - mean) * (Y - mean))
        # r2 over all outputs together, as scikit-learn's r2_score(multioutput="variance_weighted").
        r2 = 1 - xp.sum(D * D) / xp.where(total > 0, total, xp.ones_like(total))
        return {"mse": xp.mean(D * D), "mae": xp.mean(xp.abs(D)), "r2": r2}


class ExpPoisson(MeanSquaredError):
    """exp output with scikit-learn's Poisson loss (half the Poisson deviance), from the logits.

    Per element, with A = exp(Z): Y log(Y / A) - Y + A (0 log 0 = 0), which is zero where A = Y;
    nn_xp averages it over every element, as its other losses (scikit-learn sums over outputs and
    averages over samples: the same for one output). The gradient dL/dZ = (A - Y) / A.size is
    torch.nn.PoissonNLLLoss(log_input=True)'s: that loss leaves out the constant Y log Y - Y.
    Metrics are the regression ones (mse, mae, r2 of A).
    """

    loss = "poisson"

    def targets(self, y, n_out: int, parameter: str = "y"):
        Y = super().targets(y, n_out, parameter)
        if Y.size and Y.min() < 0:
            raise ValueError(f"{parameter} must hold counts or rates >= 0 for the poisson loss, got min {Y.min():g}")
        return Y

    def _elements(self, xp, Z, Y):
        safe = xp.where(Y > 0, Y, xp.ones_like(Y))
        return Y * xp.log(safe) - Y * Z - Y + xp.exp(Z)

    def value(self, ops, Z, Y):
        return ops.xp.mean(self._elements(ops.xp, Z, Y))

    def loss_and_grad(self, ops, Z, Y, out=None):
        xp = ops.xp
        A = xp.exp(Z)
        return self.value(ops, Z, Y), (A - Y) / (Z.shape[0] * Z.shape[1]), A


_HEADS = {"cross_entropy": SoftmaxCrossEntropy, "binary_cross_entropy": SigmoidBinaryCrossEntropy,
          "mse": MeanSquaredError, "poisson": ExpPoisson}


def default_loss(output_activation: str) -> str:
    """softmax -> cross_entropy, sigmoid -> binary_cross_entropy, exp -> poisson, anything else -> mse."""
    return {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy", "exp": "poisson"}.get(
        output_activation, "mse")


def check_loss(loss, output_activation: str, parameter: str = "loss") -> str:
    """A loss name checked against the output activation; None infers it."""
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


def get_head(loss, output_activation) -> Head:
    """The head for a loss name (None: the output activation's default) and an output activation."""
    activation = get_activation(output_activation, "output_activation")
    return _HEADS[check_loss(loss, activation.name)](activation)
