"""The estimators' parameter vocabulary and checks (at fit, never in __init__)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..activations import ACTIVATIONS

# scikit-learn's activation names -> nn_xp's; nn_xp's own names are accepted as they are.
SKLEARN_ACTIVATIONS = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
HIDDEN_ACTIVATIONS = tuple(SKLEARN_ACTIVATIONS) + tuple(a for a in ACTIVATIONS if a != "softmax")
SOLVERS = ("lbfgs", "sgd", "adam")
LOSSES = ("squared_error", "poisson", "absolute_error", "huber", "quantile")  # MLPRegressor's
LEARNING_RATES = ("constant", "invscaling", "adaptive")


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


