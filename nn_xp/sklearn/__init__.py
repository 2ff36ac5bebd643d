"""scikit-learn estimators backed by `nn_xp.MLP`: `MLPClassifier` and `MLPRegressor`.

Drop-in replacements for `sklearn.neural_network.MLPClassifier` / `MLPRegressor` (solvers "adam",
"sgd" and "lbfgs"; MLPRegressor's losses "squared_error" and "poisson", and nn_xp's
"absolute_error", "huber" and "quantile") that train with nn_xp's
forward and backward passes, on the CPU or a CUDA GPU (`device=`). They pass scikit-learn's
estimator checks and work in Pipeline, GridSearchCV and cross_val_score. Inputs and outputs are
NumPy arrays; the data goes to the device once per fit. With scikit-learn's
`set_config(array_api_dispatch=True)` they follow X instead (tag `array_api_support=True`): the
network trains on the nn_xp device of X's arrays and `coefs_`, `intercepts_` and the predictions
come back in X's namespace, on X's device (`_array_api.py`).

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
- `device` names where the network trains, and in which array library: "cpu" or "numpy",
  "cuda[:N]" or "cupy[:N]", "torch:cpu", "torch:cuda[:N]", "torch:mps", "jax:cpu", "jax:gpu[:N]";
  "auto" (the default) picks a GPU when one answers. `dtype=None` (the default) follows scikit-learn's
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
  >= 1.9): one fit task, one subtask per epoch or L-BFGS iteration (sklearn/_callbacks.py);
  `partial_fit` tells the callbacks nothing.

Training checks the data once per `fit`, then runs nn_xp's epoch of batches (`training.Epoch`)
once per epoch with the estimator's optimizer object, kept between calls; the stopping rule
(tol / n_iter_no_change on the training loss, or on the validation score with early stopping)
is applied between epochs, as in scikit-learn (`_fitting.py`).

Modules: `classifier.py` and `regressor.py` (the estimators), `_base.py` (what they share),
`_fitting.py` (the fit loops), `_params.py` (parameter checks), `_optimizers.py`,
`_pickling.py`, `_callbacks.py`, `_array_api.py` (scikit-learn's array API dispatch).
"""

from __future__ import annotations

try:
    import sklearn
except ImportError as error:
    raise ImportError("nn_xp.sklearn needs scikit-learn: pip install 'nn_xp[sklearn]'") from error
try:
    from sklearn.utils.validation import validate_data  # noqa: F401 (only whether it is there)
except ImportError as error:  # validate_data and __sklearn_tags__ arrived in scikit-learn 1.6
    raise ImportError(
        f"nn_xp.sklearn needs scikit-learn >= 1.6, found {sklearn.__version__}: "
        "pip install -U 'nn_xp[sklearn]'"
    ) from error

from .classifier import MLPClassifier
from .regressor import MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
