"""Argument checks, in one place, read as declarations where they can be.

A constraint checks one value and returns it converted (a Python float, int or bool); a bad value
raises TypeError (wrong kind) or ValueError (out of range) whose message names the parameter and
says what was expected. Classes with many arguments state them as a table, as scikit-learn's
`_parameter_constraints` does:

    constraints = {"beta1": Real(0, 1, closed="left"), "amsgrad": Boolean()}
    checked = check_params(constraints, {"beta1": 0.9, "amsgrad": False})

Every check runs before any work starts.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import backends


class Real:
    """A finite real number in an interval; `closed` is "both", "left", "right" or "neither".

    Booleans are refused (True is not a learning rate). None as `high` means no upper bound.
    """

    def __init__(self, low=None, high=None, closed="both", none=False):
        self.low, self.high, self.closed, self.none = low, high, closed, none

    def expected(self) -> str:
        low_open = self.closed in ("right", "neither")
        high_open = self.closed in ("left", "neither")
        if self.high is None:
            return "" if self.low is None else f"{'>' if low_open else '>='} {self.low}"
        return f"in {'(' if low_open else '['}{self.low}, {self.high}{')' if high_open else ']'}"

    def _kind_ok(self, value) -> bool:
        return not isinstance(value, bool) and isinstance(value, numbers.Real)

    def _convert(self, value):
        return float(value)

    def __call__(self, value, parameter: str):
        if value is None and self.none:
            return None
        tail = " ".join(filter(None, [self.expected(), "or None" if self.none else ""]))
        if not self._kind_ok(value):
            raise TypeError(f"{parameter} must be {' '.join(filter(None, [self.kind, tail]))}, got {value!r}")
        expected = " ".join(filter(None, [self.noun, tail]))
        converted = self._convert(value)
        low_open = self.closed in ("right", "neither")
        high_open = self.closed in ("left", "neither")
        bad = (
            (isinstance(converted, float) and not math.isfinite(converted))
            or (self.low is not None and (converted <= self.low if low_open else converted < self.low))
            or (self.high is not None and (converted >= self.high if high_open else converted > self.high))
        )
        if bad:
            raise ValueError(f"{parameter} must be {expected}, got {value!r}")
        return converted

    noun = "a finite number"  # what a value out of range is told it must be
    kind = "a real number"  # what a value of the wrong type is told


class Integer(Real):
    """An integer (not a bool) in an interval."""

    noun = kind = "an integer"

    def _kind_ok(self, value) -> bool:
        return not isinstance(value, bool) and isinstance(value, numbers.Integral)

    def _convert(self, value):
        return int(value)


class Boolean:
    """True or False (NumPy's bool_ too)."""

    def __call__(self, value, parameter: str):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{parameter} must be True or False, got {value!r}")
        return bool(value)


class Options:
    """One of a fixed set of strings (or None, where `none` allows it)."""

    def __init__(self, *options, none=False):
        self.options, self.none = options, none

    def __call__(self, value, parameter: str):
        if value is None and self.none:
            return None
        if not isinstance(value, str) or value not in self.options:
            choices = list(self.options) + ([None] if self.none else [])
            raise ValueError(f"{parameter} must be one of {choices}, got {value!r}")
        return value


def check_params(constraints: dict, values: dict) -> dict:
    """Every value checked against its constraint, converted; raises on the first bad one."""
    unknown = set(values) - set(constraints)
    if unknown:
        raise TypeError(f"unknown arguments {sorted(unknown)}; expected some of {sorted(constraints)}")
    return {name: constraints[name](values[name], name) for name in values}


def positive_int(value, parameter: str, allow_none: bool = False):
    """An integer >= 1 (None too where allowed); the message says "a positive integer"."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{parameter} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{parameter} must be a positive integer, got {value!r}")
    return int(value)


def optional_positive(value, parameter: str):
    """None, or a finite number > 0."""
    return Real(0, None, closed="neither", none=True)(value, parameter)


def rate_per_layer(value, parameter: str, n_layers: int) -> list[float]:
    """One fraction in [0, 1) per layer, from a single number or a list of `n_layers` numbers."""
    check = Real(0, 1, closed="left")
    if isinstance(value, (list, tuple)):
        if len(value) != n_layers:
            raise ValueError(
                f"{parameter} gives one rate per hidden layer: expected {n_layers}, got {len(value)}"
            )
        return [check(v, f"{parameter}[{i}]") for i, v in enumerate(value)]
    return [check(value, parameter)] * n_layers


def layer_sizes(value) -> list[int]:
    """[n_features, hidden..., n_outputs]: at least two positive integers."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"layer_sizes must be a list of positive integers, got {value!r}")
    sizes = list(value)
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes must have at least 2 entries (inputs and outputs), got {sizes!r}")
    return [positive_int(size, f"layer_sizes[{index}]") for index, size in enumerate(sizes)]


# ---- arrays --------------------------------------------------------------------------------------
# Rows of X are checked for NaN/inf in blocks of about this many elements, so the check's boolean
# temporary stays near 1 MB instead of n_samples * n_features bytes (the data plus O(batch) bound).
_FINITE_BLOCK = 1 << 20

def all_finite(X) -> bool:
    """True when the 2-D array X holds no NaN or inf; one host read at the end."""
    host = backends.host_view(X)  # a NumPy array, or a torch tensor's host memory as one
    if host is not None and host.dtype.kind == "f" and host.flags.c_contiguous and host.flags.aligned:
        # One BLAS pass, a third of the time of isfinite over the blocks: a sum of squares is
        # finite only when every element is. A non-finite one may also be finite values whose
        # squares overflow, so then the exact check below decides. (Not on a misaligned array,
        # such as a memory-mapped .npz member: np.dot would first copy it whole, twice.)
        flat = host.reshape(-1)
        with np.errstate(all="ignore"):
            if np.isfinite(np.dot(flat, flat)):
                return True
    xp = backends.get_namespace(X)
    n = X.shape[0]
    rows = max(1, _FINITE_BLOCK // max(1, X.shape[1]))
    ok = None
    for start in range(0, n, rows):
        block = xp.all(xp.isfinite(X[start : min(start + rows, n), :]))
        ok = block if ok is None else xp.logical_and(ok, block)
    return bool(ok)

def sparse_on(X, n_features: int, dtype: str, device: str, parameter: str):
    """A scipy.sparse (or cupyx.scipy.sparse) X as a CSR matrix of `dtype` on `device`, checked;
    its nonzero values are all it converts, so X is never made dense."""
    if len(X.shape) != 2:
        raise ValueError(f"{parameter} must be 2-D (n_samples, n_features), got shape {tuple(X.shape)}")
    if X.shape[0] == 0:
        raise ValueError(f"{parameter} has no samples (shape {tuple(X.shape)})")
    if X.shape[1] != n_features:
        raise ValueError(
            f"{parameter} has {X.shape[1]} features but the model expects layer_sizes[0]={n_features}"
        )
    if np.dtype(str(X.dtype)).kind not in "iuf":
        raise TypeError(f"{parameter} must be numeric (integer or float), got dtype {X.dtype}")
    if not backends.takes_sparse(device):
        raise ValueError(f"{parameter} is sparse, which the {device!r} device does not take: sparse input needs "
                         "'cpu' (scipy.sparse) or 'cuda' (cupyx.scipy.sparse); or pass it dense (X.toarray())")
    narrowed = narrows(X.dtype, dtype)
    X = backends.sparse_csr(X, dtype, device)
    xp = backends.get_namespace(X)
    if not bool(xp.all(xp.isfinite(X.data))):
        raise ValueError(
            f"{parameter} contains NaN or infinite values" + (f" (or values too large for {dtype})" if narrowed else "")
        )
    return X


def narrows(source_dtype, dtype: str) -> bool:
    """True when converting floats of `source_dtype` to `dtype` can overflow (float64 -> float32)."""
    try:
        source = np.dtype(str(source_dtype).rsplit(".", 1)[-1])
    except TypeError:
        return False
    return source.kind == "f" and source.itemsize > np.dtype(dtype).itemsize

def array_on(x, device: str, parameter: str):
    """Host data becomes a numeric NumPy array; an array on the model's device stays as it is; an
    array of another library where PyTorch or JAX is one of the two (a NumPy model given a torch
    tensor, a jax:cpu model given NumPy or torch arrays) is moved onto the model's device."""
    if x is None:
        raise TypeError(f"{parameter} must be an array, got None")
    if backends.is_host(x):
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as error:
            raise TypeError(f"{parameter} must be a numeric array: {error}") from None
        if x.dtype.kind not in "iuf":
            raise TypeError(f"{parameter} must be numeric (integer or float), got dtype {x.dtype}")
        return x
    where = backends.device_of(x)
    libraries = {backends.library_of(where), backends.library_of(device)}
    if where != device and len(libraries) == 2 and libraries & {"torch", "jax"}:
        x = backends.to_device(x, device)
        where = device
    if where != device:
        raise ValueError(
            f"{parameter} is on device {where!r} but the model is on {device!r}; "
            f"move it with nx.to_device({parameter}, {device!r}) or model.to({where!r})"
        )
    xp = backends.get_namespace(x)
    if not (xp.isdtype(x.dtype, "real floating") or xp.isdtype(x.dtype, "integral")):
        raise TypeError(f"{parameter} must be numeric (integer or float), got dtype {x.dtype}")
    return x

