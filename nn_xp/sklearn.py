"""scikit-learn estimators backed by `nn_xp.MLP`: `MLPClassifier` and `MLPRegressor`.

Drop-in replacements for `sklearn.neural_network.MLPClassifier` / `MLPRegressor` (solvers "adam",
"sgd" and "lbfgs"; MLPRegressor's losses "squared_error" and "poisson", and nn_xp's
"absolute_error", "huber" and "quantile") that train with nn_xp's
forward and backward passes, on the CPU or a CUDA GPU (`device=`). They pass scikit-learn's
estimator checks and work in Pipeline, GridSearchCV and cross_val_score. Inputs and outputs are
NumPy arrays; the data goes to the device once per fit.

They optimise scikit-learn's objective, step for step, and not nn_xp's own loss convention:

- data loss: log-loss for softmax outputs (multiclass); for sigmoid outputs (binary, multi-label)
  the binary log-loss summed over outputs, averaged over samples; for regression half the squared
  error. nn_xp's losses average over every element (PyTorch's convention), so the gradients are
  rescaled before each step: x n_outputs for binary cross-entropy, x n_outputs / 2 for mse.
  (scikit-learn's MLPRegressor reports 0.5 * mean((y - y_hat)**2) in `loss_curve_` but steps along
  the gradient of 0.5 * sum over outputs, mean over samples; both are reproduced.) Poisson: the half
  Poisson deviance summed over outputs, averaged over samples (nn_xp's "poisson" x n_outputs);
  "absolute_error", "huber" and "quantile" (not in scikit-learn's MLP) the same way.
- L2 penalty, as in scikit-learn's `_backprop`: each batch of n_b samples adds
  alpha / (2 n_b) * sum_l ||W_l||^2 to the loss and alpha / n_b * W_l to the gradient of every
  weight matrix (not to the biases). nn_xp's `weight_decay` cannot express this (it would decay
  the biases too and does not know n_b), so the estimators' optimizers add it themselves.
- solver "adam": scikit-learn's Adam puts epsilon after the bias correction of the step size
  ("eps-hat"); nn_xp's Adam (torch's formula) is given eps / sqrt(1 - beta_2^t) at step t,
  which is the same update. solver "sgd": torch's momentum buffer times the learning rate is
  scikit-learn's velocity, so the updates are the same; when "invscaling" or "adaptive" change the
  learning rate between epochs, the buffer is rescaled so that the velocity is kept, as there.
- solver "lbfgs": scipy's L-BFGS-B, as scikit-learn's own (memory of 10 pairs, gtol=`tol`,
  `max_iter` iterations and `max_fun` evaluations of the objective across the whole fit), on the
  flat float64 parameter vector; the objective and its gradient are nn_xp's backward pass on the
  model's device. It stops where scikit-learn's stops, and a run stopped by max_iter or max_fun
  raises scikit-learn's ConvergenceWarning (through scikit-learn's own check). With
  several regression outputs, the objective it minimises (and `loss_`) is the one whose gradient
  scikit-learn uses (0.5 * sum over outputs), where scikit-learn's own L-BFGS is given
  0.5 * mean over outputs as the value. As there, there is no `loss_curve_`, and
  MLPClassifier has no `partial_fit` (MLPRegressor keeps it: a whole L-BFGS fit).
- randomness: one `numpy.random.RandomState` from `random_state`, drawn in scikit-learn's order
  (initial weights and biases: Glorot uniform, bound sqrt(6 / (fan_in + fan_out)), 2 instead of
  6 for logistic; then the early-stopping split; then one shuffle per epoch). With the same
  `random_state` the network starts from scikit-learn's weights and sees its batches in the same
  order, so in float64 both fit the same model up to rounding (tests/test_sklearn.py checks this).

Parameters are scikit-learn's (learning_rate, power_t, max_fun and MLPRegressor's loss included),
plus `device` and `dtype`; `activation` also takes nn_xp's names
("leaky_relu", "gelu", ...). Nothing is checked in __init__; fit checks everything before any work.
Predictions come back as NumPy arrays in X's float dtype (float64 unless X is float32), as there.

Differences from scikit-learn, on purpose:
- `warm_start=True` and `partial_fit` keep the optimizer state (Adam's moments and step count,
  SGD's momentum and adaptive learning rate); scikit-learn's warm start builds a new optimizer.
  Each `fit` call restarts the no-improvement count (scikit-learn's carries over and can stop a
  warm-started fit after one epoch).
- `device="auto"` picks a GPU when one answers. `dtype=None` (the default) follows scikit-learn's
  rule: float32 X is computed in float32, anything else in float64; `dtype="float32"` forces
  float32 (faster, for example on a GPU).
- `fit(X, y, sample_weight=...)` as scikit-learn's (the weighted mean loss, the L2 term over the
  batch's total weight); `MLPClassifier(class_weight=...)` ("balanced" or {label: weight}, as
  scikit-learn's `compute_sample_weight`) multiplies it. `loss_curve_` is then the epoch's
  weighted mean loss (scikit-learn averages its batches' weighted losses by their row counts).
- `loss="poisson"` refuses negative targets (scikit-learn trains on them to a NaN loss).
- a diverging fit (non-finite loss or weights) stops at that epoch with the last good weights, a NaN
  in `loss_curve_` (and `validation_scores_`) and a ConvergenceWarning saying so, then raises
  scikit-learn's ValueError about non-finite weights (with early stopping: the best weights back,
  no error, as there); scikit-learn steps on with NaN weights to max_iter first.
- `validation_loss_curve_`: the validation data loss per epoch (without the L2 term) when
  `early_stopping=True`, else None.
- `model_` is the underlying `nn_xp.MLP` (and `model_.optimizer` its optimizer).
- `fit(X, y, sample_weight=None, *, X_val=None, y_val=None, sample_weight_val=None)` and
  `scoring=None`, as HistGradientBoosting's: early stopping and `validation_scores_` on the user's
  own validation set, scored by any scikit-learn scorer (None: the estimator's `score`); without
  early stopping the scores are only recorded (per L-BFGS iteration for "lbfgs").
- `set_callbacks(*callbacks)`: scikit-learn's callback protocol (`sklearn.callback`, scikit-learn
  >= 1.9): one fit task, one subtask per epoch or L-BFGS iteration (_sklearn_callbacks.py);
  `partial_fit` tells the callbacks nothing.

Training checks the data once per `fit`, then runs nn_xp's epoch of batches (`training.Epoch`)
once per epoch with the estimator's optimizer object, kept between calls; the stopping rule
(tol / n_iter_no_change on the training loss, or
on the validation score with early stopping) is applied here, between epochs, as in scikit-learn.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

try:
    import sklearn
except ImportError as error:
    raise ImportError("nn_xp.sklearn needs scikit-learn: pip install 'nn_xp[sklearn]'") from error
try:
    from sklearn.utils.validation import validate_data
except ImportError as error:  # validate_data and __sklearn_tags__ arrived in scikit-learn 1.6
    raise ImportError(
        f"nn_xp.sklearn needs scikit-learn >= 1.6, found {sklearn.__version__}: "
        "pip install -U 'nn_xp[sklearn]'"
    ) from error

from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, check_scoring, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils import shuffle as shuffle_rows
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_array, check_is_fitted, column_or_1d

from ._sklearn_callbacks import CallbackSupportMixin, FitTasks, with_callbacks
from .activations import ACTIVATIONS
from .backends import (
    FlatList,
    device_context,
    get_namespace,
    is_host,
    is_host_array,
    is_sparse,
    resolve_device,
    resolve_dtype,
    to_device,
    to_numpy,
)
from .layers import Dense
from .model import MLP
from .optim import SGD, Adam
from .training import Epoch, Interrupt, l2_penalty

__all__ = ["MLPClassifier", "MLPRegressor"]

# scikit-learn's activation names -> nn_xp's; nn_xp's own names are accepted as they are.
SKLEARN_ACTIVATIONS = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
HIDDEN_ACTIVATIONS = tuple(SKLEARN_ACTIVATIONS) + tuple(a for a in ACTIVATIONS if a != "softmax")
SOLVERS = ("lbfgs", "sgd", "adam")
LOSSES = ("squared_error", "poisson", "absolute_error", "huber", "quantile")  # MLPRegressor's
LEARNING_RATES = ("constant", "invscaling", "adaptive")
_PREDICT_CHUNK = 65536  # rows per forward pass at prediction time: bounds device memory
_FLOATS = (np.float64, np.float32)  # what X is validated to, as scikit-learn's MLP
_SPARSE = ("csr", "csc")  # scipy.sparse X, as scikit-learn's MLP takes it: the first layer multiplies it


def _host(data):
    """CuPy (and other Array API) arrays to NumPy: inputs are validated on the host, as any other."""
    return data if is_host(data) else to_numpy(data)


# ---- the optimizers: scikit-learn's objective on top of nn_xp's update rules -----------------
class _SklearnObjective:
    """Mixin for an nn_xp optimizer: turn nn_xp's gradients into those of scikit-learn's objective.

    Before each step every gradient is multiplied by `gradient_scale`. scikit-learn's L2 term is
    nn_xp's own (`training.l2_penalty`, given alpha / gradient_scale, so that after the scaling
    each weight's gradient gains alpha / n_b * W, n_b the batch size, as in scikit-learn).
    """

    def configure(self, gradient_scale: float) -> None:
        self.gradient_scale = float(gradient_scale)

    def step(self, grads) -> None:
        scale = self.gradient_scale
        if scale != 1.0:
            if isinstance(grads, FlatList) and grads.is_packed():
                grads.flat *= scale  # one pass; the views stay the flat buffer's
            else:
                grads = [g * scale for g in grads]
        super().step(grads)


class _SklearnAdam(_SklearnObjective, Adam):
    """Adam with scikit-learn's epsilon: eps_hat added to sqrt(v_t) before the bias correction."""

    def step(self, grads) -> None:
        t = self.step_count + 1
        # torch: (sqrt(v)/sqrt(1-b2^t) + eps); scikit-learn: (sqrt(v) + eps_hat)/sqrt(1-b2^t).
        self.eps = self.sklearn_epsilon / math.sqrt(1 - self.beta2**t)
        super().step(grads)


class _SklearnSGD(_SklearnObjective, SGD):
    """SGD with scikit-learn's momentum (see the module docstring)."""


def _has_momentum(optimizer) -> bool:
    return isinstance(optimizer, SGD) and optimizer.momentum > 0


def _set_learning_rate(optimizer, learning_rate: float) -> None:
    """Change the learning rate as scikit-learn's SGD sees it.

    scikit-learn keeps the velocity v = -learning_rate * b (b: torch's momentum buffer) across a
    change of learning rate; rescaling b by old / new keeps v, so "invscaling" and "adaptive"
    give scikit-learn's updates too.
    """
    old = optimizer.learning_rate
    optimizer.learning_rate = learning_rate
    buffers = optimizer.state.get("momentum_buffer") if isinstance(optimizer, SGD) else None
    if buffers and old != learning_rate and learning_rate > 0:
        ratio = old / learning_rate
        for b in buffers:
            b *= ratio


def _write_params(model, arrays) -> None:
    """Copy `arrays` (host or device) into the model's parameters, in place: the parameter list and
    its arrays stay the ones the optimizer (and nn_xp's flat-buffer fast path) holds."""
    for p, a in zip(model.parameters(), arrays):
        p[...] = to_device(np.asarray(a, dtype=model.dtype) if is_host_array(a) else a, model.device)


_SKLEARN_SETTINGS = ("gradient_scale", "sklearn_epsilon")  # what the estimators' optimizers add


def _model_state(model) -> dict:
    """The network and its optimizer as plain Python and NumPy values (what pickling stores):
    the model's own `state_dict()`, as a model file holds it, and the device it was on."""
    optimizer = model.optimizer
    return {
        "state_dict": model.state_dict(),
        "device": model.device,
        "sklearn": {k: getattr(optimizer, k) for k in _SKLEARN_SETTINGS if hasattr(optimizer, k)},
    }


def _model_from_state(state: dict):
    device = state["device"]
    try:
        device = resolve_device(device)
    except RuntimeError as error:
        warnings.warn(
            f"the pickled network was on {device!r}, which cannot be used here ({error}); loading it on the CPU",
            stacklevel=3,
        )
        device = "cpu"
    saved = dict(state["state_dict"])
    optimizer = saved.pop("optimizer")
    model = MLP.from_state_dict(dict(saved, optimizer=None), device=device)
    if optimizer is not None:
        cls = _SklearnAdam if optimizer["name"] == "adam" else _SklearnSGD
        restored = cls(model.parameters())
        # arrays copied: a memory-mapped pickle is read-only
        arrays = {k: [np.array(a) for a in v] for k, v in optimizer["state"].items()}
        restored.load_state_dict(dict(optimizer, state=arrays))
        restored.__dict__.update(state["sklearn"])
        model.optimizer = restored
    return model


# scikit-learn's words for a fit that ends with non-finite weights.
NON_FINITE_MESSAGE = (
    "Solver produced non-finite parameter weights. The input data may contain large values and need to be "
    "preprocessed."
)


def _warn_lbfgs_not_converged(result, n_iter: int, max_iter: int) -> None:
    """scikit-learn's ConvergenceWarning for an L-BFGS run stopped by max_iter or max_fun, worded as
    sklearn.utils.optimize._check_optimize_result words scipy's result."""
    message = ("STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT" if result.reason == "max_iter"
               else "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT")
    text = f"lbfgs failed to converge after {n_iter} iteration(s) (status=1):\n{message}\n"
    if n_iter == max_iter:
        text += f"\nIncrease the number of iterations to improve the convergence (max_iter={max_iter})."
    text += ("\nYou might also want to scale the data as shown in:\n"
             "    https://scikit-learn.org/stable/modules/preprocessing.html")
    warnings.warn(text, ConvergenceWarning, stacklevel=4)


# ---- parameter checks (at fit, never in __init__) ---------------------------------------------
def _check_real(value, name, low, high=None, low_open=False, high_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    too_low = value <= low if low_open else value < low
    too_high = high is not None and (value >= high if high_open else value > high)
    if math.isnan(value) or too_low or too_high or (high is None and math.isinf(value)):
        left, right = "(" if low_open else "[", ")" if high_open or high is None else "]"
        interval = f"{left}{low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return value


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_int(value, name, low):
    if not _is_int(value):
        raise TypeError(f"{name} must be an integer >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _check_choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _check_hidden_layer_sizes(value) -> list:
    sizes = [value] if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints, got {value!r}")
    sizes = list(sizes)
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size <= 0:
            raise ValueError(f"hidden_layer_sizes must hold positive integers, got {value!r}")
    return [int(s) for s in sizes]


# ---- the shared estimator ---------------------------------------------------------------------
class _BaseMLP(CallbackSupportMixin, BaseEstimator):
    """What MLPClassifier and MLPRegressor share: parameters, the training loop and the layout."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        device="auto",
        dtype=None,
        scoring=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.device = device
        self.dtype = dtype
        self.scoring = scoring

    # -- checks --
    def _check_params(self) -> dict:
        """Every constructor parameter checked, with the derived settings; raises before any work."""
        batch_size = self.batch_size
        if not (batch_size == "auto" or (_is_int(batch_size) and batch_size >= 1)):
            raise ValueError(f"batch_size must be 'auto' or an integer >= 1, got {self.batch_size!r}")
        n_iter_no_change = self.n_iter_no_change
        if not (isinstance(n_iter_no_change, float) and n_iter_no_change == np.inf):
            n_iter_no_change = _check_int(n_iter_no_change, "n_iter_no_change", 1)
        if not (isinstance(self.verbose, (numbers.Integral, np.bool_)) and self.verbose >= 0):
            raise ValueError(f"verbose must be a bool or an integer >= 0, got {self.verbose!r}")
        activation = _check_choice(self.activation, "activation", HIDDEN_ACTIVATIONS)
        return dict(
            hidden=_check_hidden_layer_sizes(self.hidden_layer_sizes),
            activation=SKLEARN_ACTIVATIONS.get(activation, activation),
            solver=_check_choice(self.solver, "solver", SOLVERS),
            alpha=_check_real(self.alpha, "alpha", 0.0),
            learning_rate=_check_choice(self.learning_rate, "learning_rate", LEARNING_RATES),
            learning_rate_init=_check_real(self.learning_rate_init, "learning_rate_init", 0.0, low_open=True),
            power_t=_check_real(self.power_t, "power_t", 0.0),
            max_iter=_check_int(self.max_iter, "max_iter", 1),
            shuffle=_check_bool(self.shuffle, "shuffle"),
            tol=_check_real(self.tol, "tol", 0.0),
            warm_start=_check_bool(self.warm_start, "warm_start"),
            momentum=_check_real(self.momentum, "momentum", 0.0, 1.0),
            nesterovs_momentum=_check_bool(self.nesterovs_momentum, "nesterovs_momentum"),
            early_stopping=_check_bool(self.early_stopping, "early_stopping"),
            validation_fraction=_check_real(self.validation_fraction, "validation_fraction", 0.0, 1.0, high_open=True),
            beta_1=_check_real(self.beta_1, "beta_1", 0.0, 1.0, high_open=True),
            beta_2=_check_real(self.beta_2, "beta_2", 0.0, 1.0, high_open=True),
            epsilon=_check_real(self.epsilon, "epsilon", 0.0, low_open=True),
            n_iter_no_change=n_iter_no_change,
            max_fun=_check_int(self.max_fun, "max_fun", 1),
            dtype=None if self.dtype is None else np.dtype(resolve_dtype(self.dtype)),
        )

    # -- fitting --
    @with_callbacks
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None, sample_weight_val=None):
        """Train on (X, y) for up to `max_iter` epochs (scikit-learn's stopping rule).

        Args:
            X: (n_samples, n_features). y: (n_samples,) or (n_samples, n_outputs).
            sample_weight: (n_samples,) or None: each batch's loss is the weighted mean, and its L2
                term is divided by the batch's total weight, as in scikit-learn.
            X_val, y_val: a validation set of your own, as HistGradientBoosting's fit takes it. With
                `early_stopping=True` it replaces the `validation_fraction` split (all of X trains);
                without, its score is only recorded in `validation_scores_` (and its loss in
                `validation_loss_curve_`) after every epoch (every L-BFGS iteration for "lbfgs").
                Scored by `scoring` (None: the estimator's `score`).
            sample_weight_val: (n_val_samples,) or None: weights of the validation rows.
        Returns:
            self.

        Callbacks set with `set_callbacks` (scikit-learn's `sklearn.callback`) see one fit task with
        one subtask per epoch, or per L-BFGS iteration.
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight,
                         validation=(X_val, y_val, sample_weight_val))

    def _fit(self, X, y, incremental, sample_weight=None, validation=(None, None, None)):
        settings = self._check_params()
        if incremental and settings["early_stopping"]:
            raise ValueError("partial_fit does not support early_stopping=True")
        X_val, y_val, sample_weight_val = validation
        if (X_val is None) != (y_val is None):
            given, missing = ("X_val", "y_val") if y_val is None else ("y_val", "X_val")
            raise ValueError(f"{given} was given without {missing}: a validation set needs both X_val and y_val")
        if sample_weight_val is not None and X_val is None:
            raise ValueError("sample_weight_val was given without X_val and y_val")
        scorer = self._check_scoring()
        first_pass = getattr(self, "model_", None) is None or not (settings["warm_start"] or incremental)
        dtype = settings["dtype"]
        if dtype is None:  # scikit-learn's rule: float32 input in float32, anything else in float64
            fitted = None if first_pass else self.model_.dtype
            X_dtype = getattr(_host(X), "dtype", None)
            dtype = np.dtype(fitted or (np.float32 if X_dtype == np.float32 else np.float64))
        X, Y = self._validate_input(X, y, dtype, incremental, reset=first_pass)
        settings["dtype"] = dtype
        if sample_weight is not None:
            sample_weight = _check_sample_weight(_host(sample_weight), X, dtype=np.float64)
        given_weight = sample_weight
        sample_weight = self._class_sample_weight(Y, sample_weight)
        val = None
        if X_val is not None:
            val = self._check_validation_set(X, Y, X_val, y_val, sample_weight_val, dtype)
        layer_sizes = [X.shape[1], *settings["hidden"], Y.shape[1]]
        random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(layer_sizes, settings, random_state)
        elif list(self.model_.layer_sizes) != layer_sizes:
            raise ValueError(
                f"the fitted network has layer sizes {list(self.model_.layer_sizes)} but this call needs "
                f"{layer_sizes}: with warm_start or partial_fit, hidden_layer_sizes and the number of "
                "outputs must stay the same"
            )
        lbfgs = settings["solver"] == "lbfgs"
        tasks = None
        if not incremental:  # partial_fit is one step of the caller's loop, not a fit task
            # L-BFGS: a subtask even with max_iter=0, and the empty one left when scipy returns.
            tasks = FitTasks(self, X, self._labels(Y), given_weight,
                             max_subtasks=settings["max_iter"] + 1 if lbfgs else settings["max_iter"],
                             subtask_name="lbfgs-iter" if lbfgs else "epoch")
        if val is not None:
            val["scorer"] = scorer
        if lbfgs:
            self._train_lbfgs(X, Y, settings, sample_weight, tasks, val)
        else:
            if not hasattr(self, "loss_curve_"):  # a warm start after solver="lbfgs"
                self._initialize_stochastic(settings)
            optimizer = self._prepare_optimizer(settings, incremental)
            self._train(X, Y, settings, optimizer, random_state, incremental, sample_weight, tasks, val, scorer)
        self._describe_model()
        if tasks is not None:
            tasks.close()
        return self

    def _check_scoring(self):
        """The scorer named by `scoring` (None: the estimator's own score, computed directly)."""
        scoring = self.scoring
        if scoring is None:
            return None
        if not (isinstance(scoring, str) or callable(scoring)):
            raise ValueError(f"scoring must be None, a scikit-learn scorer name or a callable scorer, got {scoring!r}")
        try:
            return check_scoring(self, scoring=scoring)
        except (ValueError, TypeError) as error:
            raise ValueError(f"scoring={scoring!r} is not a scorer: {error}") from None

    def _check_validation_set(self, X, Y, X_val, y_val, sample_weight_val, dtype) -> dict:
        """X_val, y_val and sample_weight_val checked against the training data, before any training."""
        X_val = _host(X_val)
        width = check_array(X_val, accept_sparse=_SPARSE, dtype=None, ensure_all_finite=False,
                            input_name="X_val").shape[1]
        if width != X.shape[1]:
            raise ValueError(f"X_val has {width} features, but X has {X.shape[1]}: they must have the same columns")
        X_val = validate_data(self, X_val, reset=False, dtype=_FLOATS, accept_sparse=_SPARSE).astype(dtype, copy=False)
        Y_val = self._validation_targets(_host(y_val), Y, dtype)
        if Y_val.shape[0] != X_val.shape[0]:
            raise ValueError(f"X_val has {X_val.shape[0]} rows but y_val has {Y_val.shape[0]}")
        W_val = None
        if sample_weight_val is not None:
            W_val = _check_sample_weight(_host(sample_weight_val), X_val, dtype=np.float64)
        W_val = self._class_sample_weight(Y_val, W_val)
        return {"X": X_val, "Y": Y_val, "W": W_val}

    def _describe_model(self):
        """What the data meant, on the nn_xp model too, so that `model_.predict` (and a saved
        `model_`) give the labels themselves and find a DataFrame's columns by name."""
        names = getattr(self, "feature_names_in_", None)
        self.model_.feature_names = None if names is None else [str(n) for n in names]

    def _class_sample_weight(self, Y, sample_weight):
        """sample_weight, times the class weights where the estimator has them (MLPClassifier)."""
        return sample_weight

    def _loss_spec(self):
        """The nn_xp loss (heads.py) the network trains with; None: the output activation's own."""
        return None

    def _initialize(self, layer_sizes, settings, random_state):
        """A new network with scikit-learn's initial weights, drawn from `random_state` in its order."""
        model = MLP(
            layer_sizes,
            activation=settings["activation"],
            output_activation=self._output_activation(),
            dtype=settings["dtype"],
            device=self.device,
            seed=0,  # unused: weights and every shuffle come from random_state below
        )
        factor = 2.0 if settings["activation"] == "sigmoid" else 6.0
        params = []
        for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]):
            bound = math.sqrt(factor / (fan_in + fan_out))
            coef = random_state.uniform(-bound, bound, (fan_in, fan_out))
            intercept = random_state.uniform(-bound, bound, fan_out)
            params += [np.ascontiguousarray(coef.T), intercept]
        _write_params(model, params)
        self.model_ = model
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = layer_sizes[-1]
        self.n_layers_ = len(layer_sizes)
        self.out_activation_ = {"softmax": "softmax", "sigmoid": "logistic", "exp": "exp"}.get(
            model.output_activation, "identity")
        self._learning_rate_init = None
        self._best_params = self._copy_params()
        if settings["solver"] != "lbfgs":  # as scikit-learn: L-BFGS keeps no loss curve nor stopping state
            self._initialize_stochastic(settings)

    def _initialize_stochastic(self, settings):
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if settings["early_stopping"]:
            self.validation_scores_ = []
            self.validation_loss_curve_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.validation_loss_curve_ = None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf

    def _prepare_optimizer(self, settings, incremental):
        """The model's optimizer, kept across warm starts and partial_fit, with this call's settings."""
        model = self.model_
        opt = model.optimizer
        solver = settings["solver"]
        momentum = settings["momentum"]
        if (
            not isinstance(opt, _SklearnObjective)  # none yet, or one fit made on model_ directly
            or opt.name != solver
            or (solver == "sgd" and _has_momentum(opt) != (momentum > 0))  # the state would not fit
        ):
            if solver == "adam":
                opt = _SklearnAdam(model.parameters(), settings["learning_rate_init"])
            else:
                opt = _SklearnSGD(model.parameters(), settings["learning_rate_init"])
            model.optimizer = opt  # fit keeps an optimizer object it is handed again
            self._learning_rate_init = None
        if solver == "adam":
            opt.beta1, opt.beta2 = settings["beta_1"], settings["beta_2"]
            opt.sklearn_epsilon = settings["epsilon"]
        else:
            opt.momentum = momentum
            opt.nesterov = settings["nesterovs_momentum"] and momentum > 0  # torch's rule
        opt.configure(self._gradient_scale())
        # The learning rate: constant, or scikit-learn's schedules for sgd. "adaptive" keeps its
        # reduced rate across warm starts and partial_fit unless learning_rate_init changed.
        schedule = settings["learning_rate"] if solver == "sgd" else "constant"
        initial = settings["learning_rate_init"]
        if schedule == "invscaling":
            _set_learning_rate(opt, initial / (self.t_ + 1) ** settings["power_t"])
        elif schedule == "constant" or self._learning_rate_init != initial:
            _set_learning_rate(opt, initial)
        self._learning_rate_init = initial
        return opt

    def _train(self, X, Y, settings, opt, random_state, incremental, sample_weight=None, tasks=None, val=None,
               scorer=None):
        model = self.model_
        early_stopping = settings["early_stopping"]
        if early_stopping and self.best_validation_score_ is None:  # switched on for a warm start
            self.best_validation_score_, self.best_loss_ = -np.inf, None
        elif not early_stopping and self.best_loss_ is None:  # switched off
            self.best_loss_ = np.inf
        if (early_stopping or val is not None) and self.validation_scores_ is None:
            self.validation_scores_, self.validation_loss_curve_ = [], []
        if early_stopping and val is None:
            # scikit-learn stratifies on its boolean indicator: the same split and the same words
            # ("Classes with too few members are: ['True']") when a class has one member.
            stratify = Y.astype(bool) if self._stratify() else None
            W_val = None
            if sample_weight is None:
                X, X_val, Y, Y_val = train_test_split(
                    X, Y, random_state=random_state, test_size=settings["validation_fraction"], stratify=stratify
                )
            else:
                X, X_val, Y, Y_val, sample_weight, W_val = train_test_split(
                    X, Y, sample_weight, random_state=random_state, test_size=settings["validation_fraction"],
                    stratify=stratify,
                )
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' or the size of your dataset."
                )
            val = {"X": X_val, "Y": Y_val, "W": W_val}
        if val is not None:
            val.update(device=model.check_input(val["X"]), scorer=scorer, early_stopping=early_stopping)
        n_samples = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                    stacklevel=4,
                )
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        # Everything is checked once here; each epoch then runs nn_xp's own epoch of batches.
        head = model.head(self._loss_spec())
        X_device = model.check_input(X)
        Y_device = model.check_target(Y, n_samples, head)
        runner = Epoch(model, X_device, Y_device, head, batch_size, l2=settings["alpha"] / self._gradient_scale(),
                       weights=model.check_weights(sample_weight, n_samples))
        model.loss = head.spec()
        loss_scale = self._loss_scale()
        sample_idx = np.arange(n_samples)
        if not incremental:
            self._no_improvement_count = 0
        self.n_iter_ = 0
        max_iter = 1 if incremental else settings["max_iter"]
        self._diverged = False
        with device_context(model.device), Interrupt() as interrupt:
            self._epochs(runner, val, settings, opt, random_state, incremental, sample_idx, loss_scale, max_iter,
                         interrupt, tasks)
        if early_stopping:
            _write_params(model, self._best_params)
        elif self._diverged:
            raise ValueError(NON_FINITE_MESSAGE)

    def _train_lbfgs(self, X, Y, settings, sample_weight=None, tasks=None, val=None):
        """scikit-learn's solver="lbfgs": one run of scipy's L-BFGS-B on the whole data, up to max_iter
        iterations and max_fun evaluations of scikit-learn's objective, stopping where
        max |gradient| <= tol. Callbacks see one subtask per iteration (scipy's `callback`); with a
        validation set of the user's own, its score is recorded after every iteration."""
        model = self.model_
        head = model.head(self._loss_spec())
        X_device = model.check_input(X)
        Y_device = model.check_target(Y, X.shape[0], head)
        scale = self._gradient_scale()
        weights = model.decayed()  # alpha's parameters, as the layers declare them (the weights)
        l2 = settings["alpha"] / scale
        W = model.check_weights(sample_weight, X.shape[0])
        n = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
        ops = None
        model.loss = head.spec()
        reported = {}  # objective value -> the loss as scikit-learn reports it, for each evaluation

        def objective():
            """scikit-learn's objective (consistent with its gradient) and its gradient; the loss as
            scikit-learn reports it goes to `reported`."""
            nonlocal ops
            L, grads, _ = model.train_step(X_device, Y_device, head, step=0, reuse=False, weights=W)
            if ops is None:
                from .backends import ops_for

                ops = ops_for(get_namespace(X_device))
            penalty = float(l2_penalty(ops, model.parameters(), grads, weights, l2, n)) if l2 else 0.0
            grads = [g * scale for g in grads]
            value = (float(L) + penalty) * scale
            reported[value] = float(L) * self._loss_scale() + penalty * scale
            return value, grads

        # scikit-learn's own solver: scipy's L-BFGS-B on the flat float64 parameter vector, with its
        # memory (10 pairs), its gtol (tol), maxiter and maxfun (every evaluation of the fit counts)
        # and its stopping rules, so that a fit stops where scikit-learn's stops. The objective and
        # its gradient are nn_xp's backward pass on the model's device.
        from scipy.optimize import minimize
        from sklearn.utils.optimize import _check_optimize_result

        params = model.parameters()
        shapes = [tuple(p.shape) for p in params]
        sizes = [int(np.prod(shape)) for shape in shapes]
        xp = get_namespace(params[0])

        def assign(x):
            arrays, at = [], 0
            for shape, size in zip(shapes, sizes):
                arrays.append(np.asarray(x[at : at + size]).reshape(shape))
                at += size
            model.set_parameters(arrays)

        def value_and_gradient(x):
            assign(x)
            value, grads = objective()
            return value, np.concatenate([to_numpy(xp.reshape(g, (-1,))).astype(np.float64) for g in grads])

        if val is not None:  # scikit-learn's L-BFGS has no early stopping: the scores are only recorded
            val.update(device=model.check_input(val["X"]), early_stopping=False)
            self.validation_scores_, self.validation_loss_curve_ = [], []
            self.best_validation_score_ = None

        def iteration_done(xk):
            """scipy's callback after each iteration: the model at xk, scored, told to the callbacks.
            A callback's request to stop is not passed on: scipy's minimize honours it only from
            1.11 on, with its own status, as scikit-learn's LogisticRegression leaves it too."""
            assign(xk)
            if val is not None:
                self._update_validation(val, settings["tol"])
            if tasks is not None:
                tasks.end()
                tasks.begin()

        start = np.concatenate([to_numpy(xp.reshape(p, (-1,))).astype(np.float64) for p in params])
        track = tasks is not None or val is not None
        if tasks is not None:
            tasks.begin()
        with device_context(model.device), np.errstate(over="ignore", invalid="ignore"):
            result = minimize(value_and_gradient, start, method="L-BFGS-B", jac=True,
                              options={"maxfun": settings["max_fun"], "maxiter": settings["max_iter"],
                                       "gtol": settings["tol"]},
                              callback=iteration_done if track else None)
        if tasks is not None:
            tasks.end_empty()  # the iteration begun after the last one, which scipy did not run
        assign(result.x)
        self.n_iter_ = _check_optimize_result("lbfgs", result, settings["max_iter"])
        self.loss_ = reported.get(float(result.fun), math.nan)
        if not all(bool(np.all(np.isfinite(to_numpy(p)))) for p in model.parameters()):
            raise ValueError(NON_FINITE_MESSAGE)

    def _epochs(self, runner, val, settings, opt, random_state, incremental, sample_idx, loss_scale, max_iter,
                interrupt, tasks=None):
        model, early_stopping, n_samples = self.model_, settings["early_stopping"], runner.n
        for _ in range(max_iter):
            if tasks is not None:
                tasks.begin()
            order = None
            if settings["shuffle"]:
                sample_idx = shuffle_rows(sample_idx, random_state=random_state)
                order = to_device(sample_idx, model.device)
            with warnings.catch_warnings():  # nn_xp's own warning; scikit-learn's words follow
                warnings.filterwarnings("ignore", message=".*training stopped and the model was restored",
                                        category=RuntimeWarning)
                _, stop_reason = runner.guarded_run(self.n_iter_, order, interrupt, stacklevel=6)
            if stop_reason == "non-finite loss":  # the last good parameters are back
                self._record_divergence(settings, n_samples, max_iter, val is not None)
                if tasks is not None:
                    tasks.end_empty()
                break
            # scikit-learn's loss: its data loss, and the L2 term given alpha / gradient_scale rescaled.
            running = runner.running
            loss = running.data_loss * loss_scale + running.penalty * self._gradient_scale()
            self.n_iter_ += 1
            self.t_ += n_samples
            self.loss_ = loss
            self.loss_curve_.append(loss)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
            if interrupt.requested:
                warnings.warn("Training interrupted by user.", stacklevel=4)
                if tasks is not None:
                    tasks.end()
                break
            if val is not None:
                self._update_validation(val, settings["tol"])
            if not early_stopping:
                if loss > self.best_loss_ - settings["tol"]:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                self.best_loss_ = min(self.best_loss_, loss)
            if settings["solver"] == "sgd" and settings["learning_rate"] == "invscaling":
                _set_learning_rate(opt, settings["learning_rate_init"] / (self.t_ + 1) ** settings["power_t"])
            if tasks is not None and tasks.end():  # a callback asked to stop
                break
            if self._no_improvement_count > settings["n_iter_no_change"]:
                what = "Validation score" if early_stopping else "Training loss"
                message = (
                    f"{what} did not improve more than tol={settings['tol']:f} for "
                    f"{settings['n_iter_no_change']} consecutive epochs."
                )
                adaptive = settings["solver"] == "sgd" and settings["learning_rate"] == "adaptive"
                if not adaptive or opt.learning_rate <= 1e-6:
                    if self.verbose:
                        print(message + (" Learning rate too small." if adaptive else "") + " Stopping.")
                    break
                _set_learning_rate(opt, opt.learning_rate / 5.0)
                self._no_improvement_count = 0
                if self.verbose:
                    print(f"{message} Setting learning rate to {opt.learning_rate:f}")
            if incremental:
                break
            if self.n_iter_ == max_iter:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({max_iter}) reached and the "
                    "optimization hasn't converged yet.",
                    ConvergenceWarning,
                    stacklevel=4,
                )

    def _record_divergence(self, settings, n_samples, max_iter, validating=False):
        """An epoch whose loss or weights became non-finite, as scikit-learn records one: a NaN
        loss (and validation score), then a ConvergenceWarning. scikit-learn goes on stepping with
        NaN weights to max_iter (appending NaN); nn_xp stops at once, with the last good weights."""
        self._diverged = True
        self.n_iter_ += 1
        self.t_ += n_samples
        self.loss_ = np.nan
        self.loss_curve_.append(np.nan)
        if validating:
            self.validation_scores_.append(np.nan)
            self.validation_loss_curve_.append(np.nan)
        warnings.warn(
            f"Stochastic Optimizer: the loss became non-finite in iteration {self.n_iter_} (of max_iter="
            f"{max_iter}) and the optimization stopped without converging.",
            ConvergenceWarning,
            stacklevel=5,
        )

    def _update_validation(self, val, tol):
        """Score and loss on the validation set; with early stopping, keep a copy of the best
        parameters (scikit-learn's rule). `val`: X, Y, W (host), device (X there), scorer, early_stopping."""
        output = to_numpy(self.model_.forward(val["device"]))
        Y_val, W_val = val["Y"], val["W"]
        if np.all(np.isfinite(output)):
            if val["scorer"] is None:
                score = self._score_output(output, Y_val, W_val)
            else:
                metadata = {} if W_val is None else {"sample_weight": W_val}
                score = float(val["scorer"](self, val["X"], self._labels(Y_val), **metadata))
            self.validation_loss_curve_.append(self._data_loss(output, Y_val))
        else:
            score = np.nan
            self.validation_loss_curve_.append(np.nan)
        self.validation_scores_.append(score)
        if self.verbose:
            print(f"Validation score: {score:f}")
        if not val["early_stopping"]:
            return
        if score < self.best_validation_score_ + tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            self._best_params = self._copy_params()

    def _copy_params(self):
        params = self.model_.parameters()
        xp = get_namespace(*params)
        return [xp.asarray(p, copy=True) for p in params]

    # -- prediction --
    def _forward(self, X):
        """Output activations (n_samples, n_outputs) as a NumPy array, for validated X."""
        model = self.model_
        parts = []
        for start in range(0, X.shape[0], _PREDICT_CHUNK):
            chunk = X[start : start + _PREDICT_CHUNK].astype(model.dtype, copy=False)
            parts.append(to_numpy(model.forward(chunk if is_sparse(chunk) else to_device(chunk, model.device))))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _output(self, X):
        """The network's output for new X, in X's float dtype (float64 unless X is float32), as scikit-learn."""
        check_is_fitted(self)
        X = validate_data(self, _host(X), reset=False, dtype=_FLOATS, accept_sparse=_SPARSE)
        return self._forward(X).astype(X.dtype, copy=False)

    # -- pickling: the network as plain arrays, not nn_xp's internal objects --
    def __getstate__(self):
        state = dict(super().__getstate__())
        if state.get("model_") is not None:
            state["model_"] = _model_state(state["model_"])
            if state.get("_best_params") is not None:
                state["_best_params"] = [to_numpy(p) for p in state["_best_params"]]
        return state

    def __setstate__(self, state):
        state = dict(state)
        if isinstance(state.get("model_"), dict):
            state["model_"] = _model_from_state(state["model_"])
            if state.get("_best_params") is not None:
                model = state["model_"]
                state["_best_params"] = [to_device(p, model.device) for p in state["_best_params"]]
        super().__setstate__(state)

    # -- sklearn's layout --
    @property
    def coefs_(self) -> list:
        """Weight matrices in scikit-learn's layout: coefs_[i] is (n_in, n_out) = W_i.T (host copies)."""
        return [np.ascontiguousarray(to_numpy(W).T) for W in self._fitted_params("W")]

    @coefs_.setter
    def coefs_(self, coefs) -> None:
        self._set_params_from_host(coefs, "W", transpose=True)

    @property
    def intercepts_(self) -> list:
        """Bias vectors, intercepts_[i] of shape (n_out,) (host copies)."""
        return [to_numpy(b) for b in self._fitted_params("b")]

    @intercepts_.setter
    def intercepts_(self, intercepts) -> None:
        self._set_params_from_host(intercepts, "b", transpose=False)

    def _fitted_params(self, name: str) -> list:
        """The parameter `name` ("W" or "b") of each Dense layer, by name, in layer order."""
        model = self.__dict__.get("model_")
        if model is None:
            raise AttributeError(f"this {type(self).__name__} is not fitted yet")
        return [layer.get_param(name) for layer in model.layers if isinstance(layer, Dense)]

    def _set_params_from_host(self, arrays, name, transpose):
        targets = self._fitted_params(name)
        arrays = list(arrays)
        if len(arrays) != len(targets):
            raise ValueError(f"expected {len(targets)} arrays, got {len(arrays)}")
        for index, (array, target) in enumerate(zip(arrays, targets)):
            array = np.asarray(array)
            array = array.T if transpose else array
            if array.shape != tuple(target.shape):
                expected = tuple(target.shape)[::-1] if transpose else tuple(target.shape)
                raise ValueError(f"array {index} must have shape {expected}, got {np.asarray(arrays[index]).shape}")
            target[...] = to_device(np.ascontiguousarray(array, dtype=self.model_.dtype), self.model_.device)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's MLPClassifier, trained by nn_xp.

    Softmax output with cross-entropy for multiclass targets; one sigmoid output with binary
    cross-entropy for two classes; one sigmoid per label for multi-label indicator targets.
    Parameters and attributes as in `sklearn.neural_network.MLPClassifier` (see the module docstring
    for the differences), plus `device` ("auto", "cpu", "cuda", "cuda:N") and `dtype`, and
    `label_smoothing` in [0, 1) (torch.nn.CrossEntropyLoss's): the multiclass cross-entropy is taken
    against (1 - label_smoothing) * one-hot + label_smoothing / n_classes, in `loss_` and
    `loss_curve_` too; binary and multi-label targets (sigmoid outputs) refuse it.
    """

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        device="auto",
        dtype=None,
        class_weight=None,
        scoring=None,
        label_smoothing=0.0,
    ):
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init, power_t=power_t,
            max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1,
            beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun, device=device,
            dtype=dtype, scoring=scoring,
        )
        self.class_weight = class_weight
        self.label_smoothing = label_smoothing

    def _check_params(self) -> dict:
        _check_real(self.label_smoothing, "label_smoothing", 0.0, 1.0, high_open=True)
        return super()._check_params()

    def _loss_spec(self):
        if not self.label_smoothing:
            return None
        if self._output_activation() != "softmax":
            raise ValueError(
                f"label_smoothing={self.label_smoothing!r} needs a multiclass target (a softmax output with "
                "cross-entropy); this y is binary or multi-label (sigmoid outputs): set label_smoothing=0.0"
            )
        return {"name": "cross_entropy", "label_smoothing": float(self.label_smoothing)}

    def _class_sample_weight(self, Y, sample_weight):
        """sample_weight times class_weight's weight of each sample's class (scikit-learn's
        compute_sample_weight: a dict {label: weight} or "balanced")."""
        if self.class_weight is None:
            return sample_weight
        labels = self._label_binarizer.inverse_transform(Y)
        weights = compute_sample_weight(self.class_weight, labels)
        return weights if sample_weight is None else sample_weight * weights

    def _output_activation(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "sigmoid"

    def _gradient_scale(self) -> float:
        # binary cross-entropy: nn_xp averages over outputs too, scikit-learn sums over them.
        return 1.0 if self.out_activation_ == "softmax" else float(self.n_outputs_)

    def _loss_scale(self) -> float:
        return self._gradient_scale()

    def _stratify(self) -> bool:
        return self.n_outputs_ == 1  # as scikit-learn: binary targets only

    def _validate_input(self, X, y, dtype, incremental, reset):
        X, y = _host(X), _host(y)
        X, y = validate_data(self, X, y, multi_output=True, dtype=_FLOATS, reset=reset, accept_sparse=_SPARSE)
        X = X.astype(dtype, copy=False)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if not hasattr(self, "classes_") or not (self.warm_start or incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the previous "
                        f"call to fit. Previously got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        Y = self._label_binarizer.transform(y).astype(dtype)
        return X, Y

    def _labels(self, Y):
        """The labels behind binarized targets, as a scorer compares them with predict's."""
        return self._label_binarizer.inverse_transform(Y.ravel() if self.n_outputs_ == 1 else Y)

    def _validation_targets(self, y_val, Y, dtype):
        y_val = check_array(y_val, ensure_2d=False, dtype=None, input_name="y_val")
        if y_val.ndim == 2 and y_val.shape[1] == 1:
            y_val = column_or_1d(y_val, warn=True)
        if (y_val.ndim == 2) != (self._label_binarizer.y_type_ == "multilabel-indicator"):
            raise ValueError(f"y_val is {type_of_target(y_val)} but y is {self._label_binarizer.y_type_}")
        unseen = np.setdiff1d(unique_labels(y_val), self.classes_)
        if len(unseen):
            raise ValueError(f"y_val has classes {list(unseen)} that y does not have ({list(self.classes_)})")
        return self._label_binarizer.transform(y_val).astype(dtype)

    def _describe_model(self):
        super()._describe_model()
        if getattr(self._label_binarizer, "y_type_", None) != "multilabel-indicator":
            self.model_.classes = [c.item() if hasattr(c, "item") else c for c in self.classes_]

    def _check_solver(self):
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is not stochastic."
            )
        return True

    @available_if(lambda estimator: estimator._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state.

        Args:
            X: (n_samples, n_features). y: (n_samples,) labels, or a multi-label indicator matrix.
            sample_weight: (n_samples,) or None.
            classes: every class that can appear, required on the first call (np.unique(y_all)).
        Returns:
            self.
        """
        first_call = getattr(self, "classes_", None) is None
        if first_call and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if not first_call and classes is not None and not np.array_equal(self.classes_, unique_labels(classes)):
            raise ValueError(
                f"`classes={classes!r}` is not the same as on last call to partial_fit, was: {self.classes_!r}"
            )
        if first_call:
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
            self.classes_ = self._label_binarizer.classes_
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def predict(self, X):
        """Class labels (n_samples,), or a 0/1 indicator matrix (n_samples, n_classes) for multi-label."""
        output = self._output(X)
        if self.n_outputs_ == 1:
            output = output.ravel()
        return self._label_binarizer.inverse_transform(output)

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in the order of `classes_`."""
        output = self._output(X)
        if self.n_outputs_ == 1:
            output = output.ravel()
            return np.vstack([1 - output, output]).T
        return output

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        return np.log(self.predict_proba(X))

    def _score_output(self, output, Y, sample_weight=None) -> float:
        if self.n_outputs_ == 1:
            output = output.ravel()
            Y = Y.ravel()
        binarizer = self._label_binarizer
        return accuracy_score(binarizer.inverse_transform(Y), binarizer.inverse_transform(output),
                              sample_weight=sample_weight)

    def _data_loss(self, output, Y) -> float:
        """scikit-learn's log-loss (probabilities clipped to [eps, 1 - eps]), against the smoothed
        labels where label_smoothing is set."""
        eps = np.finfo(output.dtype).eps
        P = np.clip(output.astype(np.float64), eps, 1 - eps)
        Y = Y.astype(np.float64)
        if self.out_activation_ == "softmax":
            if self.label_smoothing:
                Y = Y * (1 - self.label_smoothing) + self.label_smoothing / Y.shape[1]
            return float(-np.sum(Y * np.log(P)) / P.shape[0])
        return float(-np.sum(Y * np.log(P) + (1 - Y) * np.log(1 - P)) / P.shape[0])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's MLPRegressor, trained by nn_xp.

    loss="squared_error": linear output, scikit-learn's squared error (see the module docstring for
    the factor of 1/2). loss="poisson": exp output (log link), scikit-learn's half Poisson deviance
    summed over outputs and averaged over samples (nn_xp's "poisson" averaged over all elements, times
    n_outputs). loss="absolute_error" (|y - y_hat|), "huber" (torch.nn.HuberLoss with
    delta=`huber_delta` > 0) and "quantile" (the pinball loss of `quantile` in (0, 1), scikit-learn's
    PinballLoss: the predictions estimate that conditional quantile): linear output, the loss summed
    over outputs and averaged over samples, as for "poisson". Parameters and attributes as in
    `sklearn.neural_network.MLPRegressor`, plus `quantile`, `huber_delta`, `device` ("auto", "cpu",
    "cuda", "cuda:N") and `dtype`.
    """

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        device="auto",
        dtype=None,
        scoring=None,
        quantile=0.5,
        huber_delta=1.0,
    ):
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose, warm_start=warm_start,
            momentum=momentum, nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
            n_iter_no_change=n_iter_no_change, max_fun=max_fun, device=device, dtype=dtype, scoring=scoring,
        )
        self.loss = loss
        self.quantile = quantile
        self.huber_delta = huber_delta

    def _check_params(self) -> dict:
        _check_choice(self.loss, "loss", LOSSES)
        _check_real(self.quantile, "quantile", 0.0, 1.0, low_open=True, high_open=True)
        _check_real(self.huber_delta, "huber_delta", 0.0, low_open=True)
        return super()._check_params()

    def _loss_spec(self):
        if self.loss == "huber":
            return {"name": "huber", "delta": float(self.huber_delta)}
        if self.loss == "quantile":
            return {"name": "quantile", "quantile": float(self.quantile)}
        return {"squared_error": "mse"}.get(self.loss, self.loss)

    def _output_activation(self) -> str:
        return "exp" if self.loss == "poisson" else "linear"

    def _gradient_scale(self) -> float:
        if self.loss != "squared_error":  # nn_xp averages over outputs too, scikit-learn sums over them
            return float(self.n_outputs_)
        # nn_xp's mse: gradient 2 (A - Y) / (n k); scikit-learn steps along (A - Y) / n.
        return self.n_outputs_ / 2.0

    def _loss_scale(self) -> float:
        return 0.5 if self.loss == "squared_error" else float(self.n_outputs_)

    def _stratify(self) -> bool:
        return False

    def _validate_input(self, X, y, dtype, incremental, reset):
        X, y = _host(X), _host(y)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=_FLOATS, reset=reset,
                             accept_sparse=_SPARSE)
        X = X.astype(dtype, copy=False)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        return X, np.ascontiguousarray(Y, dtype=dtype)

    def _labels(self, Y):
        return Y.ravel() if Y.shape[1] == 1 else Y

    def _validation_targets(self, y_val, Y, dtype):
        y_val = check_array(y_val, ensure_2d=False, dtype=_FLOATS, input_name="y_val")
        if y_val.ndim == 2 and y_val.shape[1] == 1:
            y_val = column_or_1d(y_val, warn=True)
        Y_val = y_val.reshape(-1, 1) if y_val.ndim == 1 else y_val
        if Y_val.shape[1] != Y.shape[1]:
            raise ValueError(f"y_val has {Y_val.shape[1]} outputs, but y has {Y.shape[1]}")
        return np.ascontiguousarray(Y_val, dtype=dtype)

    def _check_solver(self):
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is not stochastic."
            )
        return True

    # scikit-learn's MLPRegressor tests the bound method itself, not its result, so partial_fit
    # stays available with solver="lbfgs" (and runs a whole L-BFGS fit from the current weights).
    @available_if(lambda estimator: estimator._check_solver)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state."""
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def predict(self, X):
        """Predictions (n_samples,), or (n_samples, n_outputs) for several targets."""
        output = self._output(X)
        return output.ravel() if output.shape[1] == 1 else output

    def _score_output(self, output, Y, sample_weight=None) -> float:
        if Y.shape[1] == 1:
            output, Y = output.ravel(), Y.ravel()
        return r2_score(Y, output, sample_weight=sample_weight)

    def _data_loss(self, output, Y) -> float:
        """scikit-learn's squared error, 0.5 * mean((y - y_hat)^2), its half Poisson deviance, or the
        absolute error, Huber or pinball loss summed over outputs, averaged over samples."""
        output = output.astype(np.float64)
        if self.loss == "poisson":
            Y = Y.astype(np.float64)
            logs = np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1.0) / output), 0.0)
            return float(np.sum(np.mean(logs - Y + output, axis=0)))
        D = output - Y
        if self.loss == "absolute_error":
            return float(np.sum(np.mean(np.abs(D), axis=0)))
        if self.loss == "huber":
            delta = float(self.huber_delta)
            elements = np.where(np.abs(D) <= delta, 0.5 * D * D, delta * (np.abs(D) - 0.5 * delta))
            return float(np.sum(np.mean(elements, axis=0)))
        if self.loss == "quantile":
            q = float(self.quantile)
            return float(np.sum(np.mean(np.maximum(-q * D, (1 - q) * D), axis=0)))
        return float(0.5 * np.mean(D * D))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
