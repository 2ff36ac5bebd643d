"""The estimators' parameters: their vocabulary and their checks (at fit, never in __init__).

The checks are `validation.py`'s declarations, as every other nn_xp argument's; only the rules
those cannot state (batch_size "auto", n_iter_no_change inf, verbose, hidden_layer_sizes) are
written out here.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..backends import resolve_dtype
from ..nn.activations import ACTIVATIONS
from ..validation import Boolean, Integer, Options, Real, check_params

# scikit-learn's activation names -> nn_xp's; nn_xp's own names are accepted as they are.
SKLEARN_ACTIVATIONS = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
HIDDEN_ACTIVATIONS = tuple(SKLEARN_ACTIVATIONS) + tuple(a for a in ACTIVATIONS if a != "softmax")
SOLVERS = ("lbfgs", "sgd", "adam")
LOSSES = ("squared_error", "poisson", "absolute_error", "huber", "quantile")  # MLPRegressor's
LEARNING_RATES = ("constant", "invscaling", "adaptive")

# Both estimators' parameters, in the order fit checks them.
PARAMETERS = {
    "activation": Options(*HIDDEN_ACTIVATIONS),
    "solver": Options(*SOLVERS),
    "alpha": Real(0.0),
    "learning_rate": Options(*LEARNING_RATES),
    "learning_rate_init": Real(0.0, closed="neither"),
    "power_t": Real(0.0),
    "max_iter": Integer(1),
    "shuffle": Boolean(),
    "tol": Real(0.0),
    "warm_start": Boolean(),
    "momentum": Real(0.0, 1.0),
    "nesterovs_momentum": Boolean(),
    "early_stopping": Boolean(),
    "validation_fraction": Real(0.0, 1.0, closed="left"),
    "beta_1": Real(0.0, 1.0, closed="left"),
    "beta_2": Real(0.0, 1.0, closed="left"),
    "epsilon": Real(0.0, closed="neither"),
    "max_fun": Integer(1),
}
CLASSIFIER_PARAMETERS = {"label_smoothing": Real(0.0, 1.0, closed="left")}
REGRESSOR_PARAMETERS = {
    "loss": Options(*LOSSES),
    "quantile": Real(0.0, 1.0, closed="neither"),
    "huber_delta": Real(0.0, closed="neither"),
}


def check_estimator_params(estimator, constraints: dict) -> dict:
    """`estimator`'s attributes named in `constraints`, checked and converted."""
    return check_params(constraints, {name: getattr(estimator, name) for name in constraints})


def fit_settings(estimator) -> dict:
    """Every parameter the estimators share checked, with the settings fit derives from them."""
    batch_size = estimator.batch_size
    if not (batch_size == "auto" or (_is_int(batch_size) and batch_size >= 1)):
        raise ValueError(f"batch_size must be 'auto' or an integer >= 1, got {batch_size!r}")
    n_iter_no_change = estimator.n_iter_no_change
    if not (isinstance(n_iter_no_change, float) and n_iter_no_change == np.inf):
        n_iter_no_change = Integer(1)(n_iter_no_change, "n_iter_no_change")
    verbose = estimator.verbose
    if not (isinstance(verbose, (numbers.Integral, np.bool_)) and verbose >= 0):
        raise ValueError(f"verbose must be a bool or an integer >= 0, got {verbose!r}")
    settings = check_estimator_params(estimator, PARAMETERS)
    settings["hidden"] = _hidden_layer_sizes(estimator.hidden_layer_sizes)
    settings["activation"] = SKLEARN_ACTIVATIONS.get(settings["activation"], settings["activation"])
    settings["n_iter_no_change"] = n_iter_no_change
    settings["dtype"] = None if estimator.dtype is None else np.dtype(resolve_dtype(estimator.dtype))
    return settings


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _hidden_layer_sizes(value) -> list:
    sizes = [value] if _is_int(value) else value
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints, got {value!r}")
    sizes = list(sizes)
    for size in sizes:
        if not _is_int(size) or size <= 0:
            raise ValueError(f"hidden_layer_sizes must hold positive integers, got {value!r}")
    return [int(s) for s in sizes]
