"""A table's columns as numbers: recognising a table (pandas DataFrame, pyarrow Table) and taking
its rows, reading text columns as numbers, and the encoding engine (imputation, one-hot) that the
`Preprocessor` and `load_file` share: one implementation for the library, the CLI and the
estimators."""

from __future__ import annotations

import re
import warnings

import numpy as np

from ..backends import get_namespace, is_host_array, to_numpy

IMPUTE = (None, "mean", "median", "drop")
# A text column with more categories than this is refused (one-hot would make that many features).
MAX_CATEGORIES = 100
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d{1,3}(\.\d{3})*,\d+\s*$|^\s*[-+]?\d+,\d+\s*$")
_DATE = re.compile(r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4})"
                   r"([ T]\d{1,2}:\d{2}(:\d{2})?.*)?\s*$")


def is_table(X) -> bool:
    """A pandas DataFrame or a pyarrow Table (without importing either)."""
    module = type(X).__module__
    return (module.startswith("pandas") and type(X).__name__ == "DataFrame") or (
        module.startswith("pyarrow") and type(X).__name__ == "Table")


def as_frame(X, where: str = "X"):
    """A DataFrame of a DataFrame or pyarrow Table, column names as strings; duplicates refused."""
    if type(X).__module__.startswith("pyarrow"):
        X = X.to_pandas()
    names = [str(c).strip() for c in X.columns]
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{where}: the column name {name!r} appears more than once; names must be unique")
        seen.add(name)
    if names != list(X.columns):
        X = X.set_axis(names, axis=1)
    return X


def take_rows(data, rows):
    """The given rows of a DataFrame, pyarrow Table, Series or array."""
    if type(data).__module__.startswith("pyarrow"):
        return data.take(rows)
    if hasattr(data, "iloc"):
        return data.iloc[rows]
    if is_host_array(data):
        return data[rows]
    if isinstance(data, (list, tuple)):
        return np.asarray(data, dtype=object if any(isinstance(v, str) for v in data) else None)[rows]
    xp = get_namespace(data)
    return xp.take(data, xp.asarray(rows), axis=0)


def encode_frame(frame, columns, encoding, where):
    """X float64 (n_samples, n_encoded_features) and its column names, one column (or one-hot
    block) at a time into one preallocated array, so a large table costs X and the frame only."""
    imputed = (encoding or {}).get("impute", {})
    categories = (encoding or {}).get("one_hot", {})
    strategy = (encoding or {}).get("strategy")
    names = encoded_names(columns, encoding)
    X = np.empty((len(frame), len(names)), dtype=np.float64)
    at = 0
    for name in columns:
        column = frame[name]
        if name in categories:
            known = categories[name]
            index = {c: i for i, c in enumerate(known)}
            present = column.notna().to_numpy()
            codes = np.full(len(frame), -2, dtype=np.int64)
            if present.any():
                text = column[present].astype(str)
                codes[present] = text.map(index).fillna(-1).to_numpy(dtype=np.int64)
            unseen = codes == -1
            if unseen.any():
                row = first_row(unseen)
                seen = sorted(set(column[unseen].astype(str).tolist()))
                warnings.warn(
                    f"{where}: column {name!r} has categories not seen in training {seen[:5]} (first at row {row}); "
                    "their one-hot columns are all zeros", UserWarning, stacklevel=3)
            if (codes == -2).any() and strategy in (None, "drop"):
                raise ValueError(
                    f"{where}: row {first_row(codes == -2)}, column {name!r}: a missing value; give --impute "
                    "mean|median (impute=) to leave missing categories all zeros, or drop (training only)")
            block = X[:, at : at + len(known)]
            block[...] = 0.0
            rows = np.flatnonzero(codes >= 0)
            block[rows, codes[rows]] = 1.0
            at += len(known)
            continue
        if is_text(column):
            numbers = to_numbers(column)
            bad = (numbers.isna() & column.notna()).to_numpy()
            if bad.any():
                row = first_row(bad)
                raise ValueError(
                    f"{where}: row {row}, column {name!r}: cannot read {column.iloc[row - 1]!r} as a number; the "
                    "column holds text: give --one-hot (one_hot=) to encode it as categories, or leave it out "
                    "(--drop, drop=)")
            column = numbers
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(values)
        if missing.any():
            if name in imputed:
                values = np.where(missing, imputed[name], values)
            elif strategy == "drop":
                raise ValueError(
                    f"{where}: row {first_row(missing)}, column {name!r}: a missing value; the model was trained "
                    "with impute='drop', and rows cannot be dropped from predictions: fill them in")
            else:
                raise ValueError(
                    f"{where}: row {first_row(missing)}, column {name!r}: a missing value "
                    f"({int(missing.sum())} in the column); give --impute mean|median|drop "
                    "(impute='mean', 'median' or 'drop') to fill or drop them")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{where}: row {first_row(~np.isfinite(values))}, column {name!r}: an infinite value")
        X[:, at] = values
        at += 1
    return X, names


def encoded_names(columns, encoding) -> list:
    categories = (encoding or {}).get("one_hot", {})
    names = []
    for name in columns:
        names.extend(f"{name}={c}" for c in categories[name]) if name in categories else names.append(name)
    return names


def check_unique(names, what: str, where: str | None = None) -> None:
    seen = set()
    for name in names:
        if name in seen:
            prefix = f"{where}: " if where else ""
            hint = " (a one-hot column clashes with a column of that name: rename one)" if what == "feature" else ""
            raise ValueError(f"{prefix}the {what} name {name!r} appears more than once{hint}")
        seen.add(name)


def refuse_numbers_or_dates(column, name, where, decimal) -> None:
    sample = column.dropna().astype(str).head(1000)
    if sample.empty:
        return
    if decimal == "." and sample.str.match(_DECIMAL_COMMA).mean() > 0.9:
        raise ValueError(f"{where}: column {name!r} looks like numbers with a decimal comma ({sample.iloc[0]!r}): "
                         "give --decimal , (decimal=',') to read them as numbers")
    if sample.str.match(_DATE).mean() > 0.9:
        raise ValueError(f"{where}: column {name!r} looks like dates ({sample.iloc[0]!r}), which are neither numbers "
                         f"nor categories: leave it out (--drop {name}, drop=[...]) or turn it into numbers first")


def is_text(column) -> bool:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return not (is_numeric_dtype(column.dtype) or is_bool_dtype(column.dtype))


def to_numbers(column):
    import pandas as pd

    return pd.to_numeric(column.astype(object).where(column.notna(), None), errors="coerce")


def first_row(mask) -> int:
    """The 1-based data row (after the header) of the first True in mask."""
    return int(np.flatnonzero(np.asarray(mask))[0]) + 1


def statistic(values, impute, where) -> float:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ValueError(f"{where} has no values to take a {impute} of")
    return float(np.mean(finite) if impute == "mean" else np.median(finite))


def numeric_matrix(X, where) -> np.ndarray:
    X = to_numpy(X) if not is_host_array(X) else X
    if X.ndim == 1:
        raise ValueError(f"{where} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{where} must be numeric, got dtype {X.dtype}; give a DataFrame to encode text columns")
    return X.astype(np.float64)

