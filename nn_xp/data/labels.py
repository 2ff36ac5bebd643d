"""Targets as host NumPy arrays: class labels in their own type (text stays text), their keys and
JSON-ready values, and the numbers a regression reads."""

from __future__ import annotations

import math

import numpy as np

from ..backends import is_host_array, to_numpy

# A numeric target with at most this many distinct integer values is read as class labels.
MAX_INFERRED_CLASSES = 20


def label_array(y, where) -> np.ndarray:
    """y as a NumPy array: numbers, booleans, or labels as objects (strings stay strings)."""
    if hasattr(y, "to_numpy") and not is_host_array(y):  # pandas Series / DataFrame
        y = y.to_numpy()
    elif type(y).__module__.startswith("pyarrow"):
        y = y.to_numpy(zero_copy_only=False)
    if not is_host_array(y):
        try:
            y = to_numpy(y)
        except (TypeError, ValueError):
            y = np.asarray(y, dtype=object)
    if y.dtype.kind in "US":
        y = y.astype(object)
    if y.dtype.kind == "O":
        if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in y.ravel().tolist()):
            raise ValueError(f"{where}: a label is missing (impute='drop', --impute drop, drops such rows)")
        values = y.ravel().tolist()
        if all(isinstance(v, (bool, np.bool_)) for v in values):
            return y.astype(bool)
        if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values):
            return y.astype(np.float64) if any(isinstance(v, (float, np.floating)) for v in values) else y.astype(
                np.int64)
    return y


def host_labels(y, where: str = "y", numeric: bool = False) -> np.ndarray:
    """Labels as a host NumPy array (text as objects); with `numeric`, numbers as floats."""
    labels = label_array(y, where)
    return numeric_labels(labels, where) if numeric and labels.dtype.kind in "OUSb" else labels


def numeric_labels(labels, where) -> np.ndarray:
    try:
        return labels.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where} holds text, which a regression model cannot take") from None


def missing_labels(y) -> np.ndarray:
    import pandas as pd

    return pd.isna(pd.Series(np.asarray(y, dtype=object) if not hasattr(y, "to_numpy") else y.to_numpy())).to_numpy()


def is_text_array(y) -> bool:
    return np.asarray(y).dtype.kind in "OUS"


def label_key(value):
    """A class label as a dictionary key: 1, 1.0 and True stay apart from "1"."""
    if isinstance(value, np.generic):
        value = value.item()
    return (type(value).__name__ if isinstance(value, str) else "n", value if isinstance(value, str) else float(value))


def plain(value):
    """A NumPy label as a JSON-ready Python value: text stays text, integral numbers int."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
