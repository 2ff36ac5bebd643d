"""A dataset as the command line trains on it: raw inputs (a table or an array), labels, sample
weights, and the rows of its train/validation/test split.

The encoding itself is the model's (preprocessing.py); this module only finds the pieces in a
file, so that training, `predict` and `evaluate --held-out` find the same rows and columns.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from .columns import as_frame
from .datasets import load_dataset
from .labels import host_labels
from .preprocessing import Preprocessor
from .readers import TABLE_SUFFIXES, load_file, read_table
from .splitting import train_test_split

_HASH_BLOCK_BYTES = 4 * 2**20


@dataclass
class Source:
    """X: a DataFrame (tables) or a float array; y: the labels as the file holds them (None for
    features only); weights: the --sample-weight column or None; task: "classification",
    "regression" or None; name: what to call it in messages."""

    X: object
    y: np.ndarray | None
    weights: np.ndarray | None
    task: str | None
    name: str
    notes: list

    @property
    def n_samples(self) -> int:
        return len(self.X)


def is_table_file(name: str) -> bool:
    return os.fspath(name).lower().endswith(TABLE_SUFFIXES)


def is_file(name: str) -> bool:
    return os.sep in name or name.lower().endswith(TABLE_SUFFIXES + (".npz", ".npy")) or os.path.exists(name)


def read(name: str, *, target=None, weight=None, pipeline: Preprocessor | None = None, task=None,
         delimiter=None, n_samples=None, seed=0, targets=None) -> Source:
    """The dataset `name` (a built-in name or a file), its target and weight columns taken apart.

    For a table the rows with a missing value are dropped first when `pipeline.impute` is "drop",
    so that the split and `evaluate --held-out` see the same rows.
    """
    notes = []
    if not is_file(name):
        kwargs = {"seed": seed} if n_samples is None else {"seed": seed, "n_samples": n_samples}
        data = load_dataset(name, **kwargs)
        return Source(data.X, _labels_of(data), None, data.task, name, notes)
    if not is_table_file(name):
        data = load_file(name, target=target, task=task, progress=True, targets=targets)
        return Source(data.X, _labels_of(data), None, data.task, name, notes)
    frame = as_frame(read_table(name, delimiter=delimiter, progress=True), name)
    columns = list(frame.columns)
    for option, column in (("--target", target), ("--sample-weight", weight)):
        if column is not None and column not in columns:
            raise ValueError(f"{name}: no column {column!r} for {option}; the columns are {columns}")
    if target is not None and target == weight:
        raise ValueError(f"--sample-weight {weight!r} is the target column")
    weights = None
    if weight is not None:
        weights = _weights(frame[weight], name, weight)
        frame = frame.drop(columns=[weight])
    if pipeline is not None and pipeline.impute == "drop" and not pipeline.fitted:
        features = pipeline.select(frame, name, target=target)
        keep = frame[features + ([target] if target is not None else [])].notna().all(axis=1).to_numpy()
        if not keep.any():
            raise ValueError(f"{name}: every row has a missing value; --impute drop leaves nothing")
        if not keep.all():
            notes.append(f"{name}: dropped {int((~keep).sum())} of {keep.size} rows with a missing value "
                         "(--impute drop)")
            frame, weights = frame[keep], None if weights is None else weights[keep]
    y = None
    if target is not None:
        y = host_labels(frame[target], f"{name}: column {target!r}")
        frame = frame.drop(columns=[target])
    return Source(frame, y, weights, task, name, notes)


def _labels_of(data):
    """A loaded dataset's targets as labels: class names where it has them, else as they are."""
    if data.y is None or data.task != "classification" or data.class_names is None:
        return data.y
    if list(data.class_names) == list(range(len(data.class_names))):
        return data.y  # the labels are the indices themselves
    text = any(isinstance(c, str) for c in data.class_names)
    return np.asarray(data.class_names, dtype=object if text else None)[data.y]


def _weights(column, name, weight) -> np.ndarray:
    try:
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: --sample-weight column {weight!r} must hold numbers") from None
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"{name}: --sample-weight column {weight!r} must hold finite numbers >= 0 (no missing "
                         "values)")
    return values


def fingerprint(source: Source, columns=None) -> str:
    """A hash of the rows as read (the feature `columns` of a table, then the labels): the same file
    gives the same split on --resume and `evaluate --held-out`, whatever other columns it has."""
    digest = hashlib.sha256()
    if hasattr(source.X, "columns"):
        import pandas as pd

        frame = source.X if columns is None else source.X[list(columns)]
        digest.update("\x1f".join(map(str, frame.columns)).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    else:  # in blocks of rows: a memory-mapped X is read, never copied whole
        X = source.X
        rows = max(1, _HASH_BLOCK_BYTES // max(1, X[:1].nbytes))
        for start in range(0, X.shape[0], rows):
            block = X[start : start + rows]
            digest.update(block.data if block.flags.c_contiguous else np.ascontiguousarray(block).tobytes())
    if source.y is not None:
        y = np.asarray(source.y)
        if y.dtype.kind in "biuf":  # numbers by value (as float64), so the reader's int or float dtype is no matter
            digest.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
        else:
            digest.update("\x1f".join(map(str, y.ravel().tolist())).encode())
    return digest.hexdigest()[:32]


def split_rows(split: dict, codes, stratify: bool):
    """(training rows, validation rows or None, test rows or None) of a stored split; `codes` are
    the encoded targets (class indices stratify)."""
    rows = np.arange(split["n_samples"])
    test = val = None
    if split["test_size"]:
        rows, test, _, _ = train_test_split(rows, codes, test_size=split["test_size"], seed=split["seed"],
                                            stratify=stratify)
    if split["validation_split"]:
        rows, val, _, _ = train_test_split(rows, codes[rows], test_size=split["validation_split"],
                                           seed=split["seed"] + 1, stratify=stratify)
    return rows, val, test


def take(X, rows):
    """The given rows of a DataFrame or an array; all of them in order is X itself (no copy)."""
    if len(rows) == len(X) and np.array_equal(rows, np.arange(len(X))):
        return X
    return X.iloc[rows] if hasattr(X, "iloc") else X[rows]
