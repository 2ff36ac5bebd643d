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
- an activation f (not softmax) + a robust regression loss on D = A - Y, A = f(Z):
      absolute_error (torch.nn.L1Loss):    L = mean( |D| ),                  dL/dA = sign(D) / A.size
      huber, delta > 0 (torch.nn.HuberLoss(delta=)):
          L = mean( 0.5 D^2 where |D| <= delta, else delta (|D| - delta / 2) ),
          dL/dA = clip(D, -delta, delta) / A.size
      quantile, 0 < q < 1 (the pinball loss, scikit-learn's PinballLoss), with R = Y - A:
          L = mean( max(q R, (q - 1) R) ),                 dL/dA = (1 - q where A > Y, else -q) / A.size
- softmax + cross-entropy with label_smoothing eps in [0, 1) (torch.nn.CrossEntropyLoss(label_smoothing=)):
  the target rows Y become (1 - eps) Y + eps / n_classes, which still sum to 1, then as above.
`Y` is always a float array shaped like the output (class labels arrive one-hot encoded).
With sample weights w (a column (n_samples, 1)) each mean over samples becomes the weighted mean
sum_i w_i l_i / sum_i w_i, so integer weights equal repeated rows; the metrics are weighted alike.
A loss is named as an activation is: a name ("huber") or a spec dict with its settings
({"name": "huber", "delta": 2.0}); `check_loss` turns either into the canonical spec that the model
saves (a name where the loss has no settings in use, else a dict with every setting), and
`get_head(loss, output_activation)` is the one place that maps a loss to its head.
"""

from __future__ import annotations

import numpy as np

from ..validation import Real
from .activations import Activation, get_activation, sigmoid

LOSSES = ("mse", "binary_cross_entropy", "cross_entropy", "poisson", "absolute_error", "huber", "quantile")
# The output activation each loss needs; the regression losses work after any but softmax.
REQUIRED_OUTPUT = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid", "poisson": "exp"}
# Each loss's settings: the check of a value and its default.
LOSS_SETTINGS = {
    "huber": {"delta": (Real(0, None, closed="neither"), 1.0)},
    "quantile": {"quantile": (Real(0, 1, closed="neither"), 0.5)},
    "cross_entropy": {"label_smoothing": (Real(0, 1, closed="left"), 0.0)},
}


class Head:
    """An output activation with its loss.

    `loss_and_grad` returns (L, dL/dZ, out), where `out` is what `batch_metric` reads: the logits
    for the classification heads, the activated output for mse. Losses are 0-d device arrays.
    """

    loss = "loss"
    classifier = False
    writes_out = False  # whether loss_and_grad can write dL/dZ into an array it is given
    metric = "mae"  # what fit's running metric is

    def __init__(self, activation: Activation, **settings):
        self.activation = activation
        self.settings = settings

    def __repr__(self) -> str:
        settings = "".join(f", {k}={v!r}" for k, v in self.settings.items())
        return f"{type(self).__name__}(output_activation={self.activation.name!r}{settings})"

    def spec(self):
        """The loss as `check_loss` writes it: its name, or a dict with its settings (JSON-ready)."""
        return {"name": self.loss, **self.settings} if self.settings else self.loss

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

    def value(self, ops, Z, Y, weights=None):
        raise NotImplementedError

    def loss_and_grad(self, ops, Z, Y, out=None, weights=None):
        raise NotImplementedError

    def batch_metric(self, xp, out, Y, weights=None):
        """The (weighted) sum over the batch's samples of the running metric (correct labels,
        absolute error)."""
        raise NotImplementedError

    def metrics(self, xp, A, Y, weights=None) -> dict:
        """The task's metrics for the activated output A (evaluate and validation)."""
        raise NotImplementedError


def _total(xp, weights):
    """The weights' sum, or 1 where they sum to 0 (a batch of zero weights adds nothing, not NaN)."""
    total = xp.sum(weights)
    return xp.where(total > 0, total, xp.ones_like(total))


def _mean(xp, M, weights):
    """The mean of the per-sample rows of M (n, k): plain, or weighted by the column `weights`."""
    if weights is None:
        return xp.mean(M)
    return xp.sum(M * weights) / (_total(xp, weights) * M.shape[1])


def _sum_rows(xp, v, weights):
    """The sum over samples of a per-sample (n,) vector v, weighted where there are weights."""
    return xp.sum(v) if weights is None else xp.sum(v * weights[:, 0])


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

    def __init__(self, activation: Activation, label_smoothing: float = 0.0):
        super().__init__(activation, **({"label_smoothing": label_smoothing} if label_smoothing else {}))
        self.label_smoothing = label_smoothing

    def _smoothed(self, Y):
        # Rows that sum to 1 still sum to 1, so every backend's softmax_cross_entropy (the fused
        # kernels included) computes the smoothed loss exactly from them.
        eps = self.label_smoothing
        return Y if not eps else Y * (1 - eps) + eps / Y.shape[1]

    def value(self, ops, Z, Y, weights=None):
        xp = ops.xp
        Y = self._smoothed(Y)
        m = xp.max(Z, axis=1, keepdims=True)
        logsumexp = m + xp.log(xp.sum(xp.exp(Z - m), axis=1, keepdims=True))
        if weights is None:
            return -xp.sum(Y * (Z - logsumexp)) / Z.shape[0]
        return -xp.sum(Y * (Z - logsumexp) * weights) / _total(xp, weights)

    def loss_and_grad(self, ops, Z, Y, out=None, weights=None):
        scale = 1 / Z.shape[0] if weights is None else weights / _total(ops.xp, weights)
        return ops.softmax_cross_entropy(Z, self._smoothed(Y), scale, out=out)

    def batch_metric(self, xp, out, Y, weights=None):
        return _sum_rows(xp, xp.astype(xp.argmax(out, axis=1) == xp.argmax(Y, axis=1), out.dtype), weights)

    def metrics(self, xp, A, Y, weights=None) -> dict:
        correct = xp.astype(xp.argmax(A, axis=1) == xp.argmax(Y, axis=1), A.dtype)
        return {"accuracy": _mean(xp, correct[:, None], weights)}


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

    def value(self, ops, Z, Y, weights=None):
        xp = ops.xp
        relu_Z = xp.where(Z > 0, Z, xp.zeros_like(Z))
        return _mean(xp, relu_Z - Z * Y + xp.log1p(xp.exp(-xp.abs(Z))), weights)

    def loss_and_grad(self, ops, Z, Y, out=None, weights=None):
        xp = ops.xp
        if weights is None:
            dZ = (sigmoid(xp, Z) - Y) / (Z.shape[0] * Z.shape[1])
        else:
            dZ = (sigmoid(xp, Z) - Y) * (weights / (_total(xp, weights) * Z.shape[1]))
        return self.value(ops, Z, Y, weights), dZ, Z

    def batch_metric(self, xp, out, Y, weights=None):
        correct = xp.astype((out > 0) == (Y > 0.5), out.dtype)
        return _sum_rows(xp, xp.sum(correct, axis=1), weights) / out.shape[1]

    def metrics(self, xp, A, Y, weights=None) -> dict:
        # Multi-label outputs count every output.
        return {"accuracy": _mean(xp, xp.astype((A > 0.5) == (Y > 0.5), A.dtype), weights)}


class MeanSquaredError(Head):
    loss = "mse"

    def value(self, ops, Z, Y, weights=None):
        D = self.activation.forward(ops.xp, Z) - Y
        return _mean(ops.xp, D * D, weights)

    def loss_and_grad(self, ops, Z, Y, out=None, weights=None):
        xp = ops.xp
        A = self.activation.forward(xp, Z)
        D = A - Y
        if weights is None:
            dA = D * (2 / (D.shape[0] * D.shape[1]))
        else:
            dA = D * (weights * (2 / (_total(xp, weights) * D.shape[1])))
        return _mean(xp, D * D, weights), self.activation.backward(xp, dA, Z, A), A

    def batch_metric(self, xp, out, Y, weights=None):
        return _sum_rows(xp, xp.sum(xp.abs(out - Y), axis=1), weights) / out.shape[1]

    def metrics(self, xp, A, Y, weights=None) -> dict:
        D = A - Y
        w = xp.ones((Y.shape[0], 1), dtype=Y.dtype) if weights is None else weights
        mean = xp.sum(Y * w, axis=0, keepdims=True) / xp.sum(w)
        total = xp.sum((Y - mean) * (Y - mean) * w)
        # r2 over all outputs together, as scikit-learn's r2_score(multioutput="variance_weighted").
        r2 = 1 - xp.sum(D * D * w) / xp.where(total > 0, total, xp.ones_like(total))
        return {"mse": _mean(xp, D * D, weights), "mae": _mean(xp, xp.abs(D), weights), "r2": r2}


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

    def value(self, ops, Z, Y, weights=None):
        return _mean(ops.xp, self._elements(ops.xp, Z, Y), weights)

    def loss_and_grad(self, ops, Z, Y, out=None, weights=None):
        xp = ops.xp
        A = xp.exp(Z)
        if weights is None:
            dZ = (A - Y) / (Z.shape[0] * Z.shape[1])
        else:
            dZ = (A - Y) * (weights / (_total(xp, weights) * Z.shape[1]))
        return self.value(ops, Z, Y, weights), dZ, A


class _ElementwiseRegression(MeanSquaredError):
    """A loss on D = A - Y element by element after the output activation, averaged as mse is.

    A subclass gives `_elements(xp, D)` (the per-element loss) and `_slope(xp, D)` (its derivative
    in A); the metrics are the regression ones (mse, mae, r2 of A).
    """

    def _elements(self, xp, D):
        raise NotImplementedError

    def _slope(self, xp, D):
        raise NotImplementedError

    def value(self, ops, Z, Y, weights=None):
        return _mean(ops.xp, self._elements(ops.xp, self.activation.forward(ops.xp, Z) - Y), weights)

    def loss_and_grad(self, ops, Z, Y, out=None, weights=None):
        xp = ops.xp
        A = self.activation.forward(xp, Z)
        D = A - Y
        if weights is None:
            dA = self._slope(xp, D) / (D.shape[0] * D.shape[1])
        else:
            dA = self._slope(xp, D) * (weights / (_total(xp, weights) * D.shape[1]))
        return _mean(xp, self._elements(xp, D), weights), self.activation.backward(xp, dA, Z, A), A


class AbsoluteError(_ElementwiseRegression):
    """torch.nn.L1Loss: mean |A - Y|; the slope at D = 0 is 0, as torch's sign."""

    loss = "absolute_error"

    def _elements(self, xp, D):
        return xp.abs(D)

    def _slope(self, xp, D):
        return xp.sign(D)


class Huber(_ElementwiseRegression):
    """torch.nn.HuberLoss(delta=): squared within delta of the target, linear beyond it."""

    loss = "huber"

    def __init__(self, activation: Activation, delta: float = 1.0):
        super().__init__(activation, delta=delta)
        self.delta = delta

    def _elements(self, xp, D):
        magnitude = xp.abs(D)
        return xp.where(magnitude <= self.delta, 0.5 * D * D, self.delta * (magnitude - 0.5 * self.delta))

    def _slope(self, xp, D):
        return xp.where(xp.abs(D) <= self.delta, D, self.delta * xp.sign(D))


class Quantile(_ElementwiseRegression):
    """The pinball loss of quantile q: max(q R, (q - 1) R) with R = Y - A, minimised where a
    fraction q of the targets lie below the prediction. Its slope where A = Y is -q, as
    scikit-learn's PinballLoss gradient."""

    loss = "quantile"

    def __init__(self, activation: Activation, quantile: float = 0.5):
        super().__init__(activation, quantile=quantile)
        self.quantile = quantile

    def _elements(self, xp, D):
        q = self.quantile
        return xp.maximum(-q * D, (1 - q) * D)

    def _slope(self, xp, D):
        q = self.quantile
        return xp.where(D > 0, xp.full_like(D, 1 - q), xp.full_like(D, -q))


_HEADS = {"cross_entropy": SoftmaxCrossEntropy, "binary_cross_entropy": SigmoidBinaryCrossEntropy,
          "mse": MeanSquaredError, "poisson": ExpPoisson, "absolute_error": AbsoluteError, "huber": Huber,
          "quantile": Quantile}
_REGRESSION = ("absolute_error", "huber", "quantile")  # any output activation but softmax


def default_loss(output_activation: str) -> str:
    """softmax -> cross_entropy, sigmoid -> binary_cross_entropy, exp -> poisson, anything else -> mse."""
    return {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy", "exp": "poisson"}.get(
        output_activation, "mse")


def loss_name(loss) -> str | None:
    """The name of a loss given as a name or a spec dict (None stays None)."""
    return loss.get("name") if isinstance(loss, dict) else loss


def check_loss(loss, output_activation: str, parameter: str = "loss"):
    """A loss (a name or a spec dict; None infers it) checked against the output activation.

    Returns the canonical spec: the name, or {"name": ..., setting: value, ...} with every setting
    of a loss that has them in use (huber's delta, quantile's quantile, cross_entropy's
    label_smoothing where it is not 0). Raises ValueError naming the parameter and the fix.
    """
    if loss is None:
        return default_loss(output_activation)
    settings = {}
    name = loss
    if isinstance(loss, dict):
        settings = {k: v for k, v in loss.items() if k != "name"}
        name = loss.get("name")
    if not isinstance(name, str) or name not in LOSSES:
        raise ValueError(
            f"{parameter} must be one of {list(LOSSES)}, a dict such as {{'name': 'huber', 'delta': 1.0}}, "
            f"or None; got {loss!r}"
        )
    known = LOSS_SETTINGS.get(name, {})
    unknown = sorted(set(settings) - set(known))
    if unknown:
        hint = "" if "label_smoothing" not in unknown else (
            "; label_smoothing belongs to cross_entropy, with a softmax output")
        raise ValueError(
            f"{parameter}: {name!r} takes {'the settings ' + str(list(known)) if known else 'no settings'}, "
            f"got {unknown}{hint}"
        )
    checked = {key: check(settings.get(key, default), key) for key, (check, default) in known.items()}
    if name == "cross_entropy" and output_activation != "softmax" and checked["label_smoothing"]:
        raise ValueError(
            f"label_smoothing={checked['label_smoothing']!r} needs cross_entropy with a softmax output, but "
            f"the model's output activation is {output_activation!r}: use output_activation='softmax' "
            "(one output per class), or drop label_smoothing"
        )
    needed = REQUIRED_OUTPUT.get(name)
    if needed is not None and output_activation != needed:
        raise ValueError(
            f"{parameter}={name!r} needs output_activation={needed!r} (it is computed from the "
            f"logits for stability), but the model's output activation is {output_activation!r}"
        )
    if name in _REGRESSION and output_activation == "softmax":
        raise ValueError(
            f"{parameter}={name!r} is a regression loss, compared with each output's target, but the "
            "model's output activation is 'softmax' (class probabilities): use output_activation='linear' "
            "for regression, or loss='cross_entropy' for classes"
        )
    if name == "cross_entropy" and not checked["label_smoothing"]:
        checked = {}
    return {"name": name, **checked} if checked else name


def get_head(loss, output_activation) -> Head:
    """The head for a loss (a name or a spec dict; None: the output activation's default) and an
    output activation."""
    activation = get_activation(output_activation, "output_activation")
    spec = check_loss(loss, activation.name)
    if isinstance(spec, dict):
        return _HEADS[spec["name"]](activation, **{k: v for k, v in spec.items() if k != "name"})
    return _HEADS[spec](activation)
