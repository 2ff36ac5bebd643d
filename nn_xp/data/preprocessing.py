"""What a prediction depends on before the first layer: `Preprocessor`.

A model trained from a table owns its input pipeline, so `predict` on a raw table (or on the raw
numbers, columns in the training order) gives the answer the model was trained for, whichever
door trained it (library, CLI, estimator) and whichever asks (library, CLI, ONNX):

    raw table --select columns--> features --impute--> --one-hot--> --standardise--> X (first layer)
    labels    <--classes[i]--     class index i  <--argmax--  network

The fitted state is plain JSON (`to_dict`), stored in the model file as "preprocessing" in the
format earlier files used ({"mean", "std", "encoding": {"columns", "strategy", "impute",
"one_hot"}}), so older model files keep loading. The statistics are learned by `fit` from the rows
given (the training rows: callers split first), and `transform` only applies them.
"""

from __future__ import annotations

import numpy as np

from .columns import (
    IMPUTE,
    MAX_CATEGORIES,
    as_frame,
    check_unique,
    encode_frame,
    encoded_names,
    is_table,
    is_text,
    numeric_matrix,
    refuse_numbers_or_dates,
    statistic,
    take_rows,
)
from .labels import MAX_INFERRED_CLASSES, label_array, label_key, missing_labels, numeric_labels, plain

TASKS = ("classification", "regression")


class Preprocessor:
    """The input pipeline a model owns: column selection, imputation, one-hot encoding,
    standardisation, and the target's classes.

    Args:
        columns: the feature columns to use (None: every column but the target and `drop`).
        drop: columns that are not features (an ID, a date, a weight column).
        impute: None refuses missing values; "mean"/"median" fill a numeric column with the
            training rows' mean/median (a category column's missing values become all zeros);
            "drop" drops training rows holding any (predictions never drop rows).
        one_hot: None refuses text columns; True encodes every text column (one 0/1 column per
            category, "color=red"); a list encodes the columns named. A column that looks like
            numbers with a decimal comma or like dates is refused with the option to use.
        standardize: (x - mean) / std per encoded feature, statistics from the training rows.
        task: "classification", "regression" or None (inferred from the target: text, booleans,
            or at most MAX_INFERRED_CLASSES distinct integers mean classification).
        decimal: "." or ",": the decimal mark of numbers held as text ("3,14").
        max_categories: a category column with more categories is refused, with its count.

    Fitted attributes: feature_names (the input columns in order, None for arrays), encoding,
    stats ({"mean", "std"} or None), task, classes (labels in their own type, or None), notes
    (the choices made for the user, one line each).
    """

    def __init__(self, *, columns=None, drop=(), impute=None, one_hot=None, standardize=False, task=None,
                 decimal=".", max_categories=MAX_CATEGORIES):
        if columns is not None and (isinstance(columns, str) or not all(isinstance(c, str) for c in columns)):
            raise TypeError(f"columns must be a list of column names or None, got {columns!r}")
        if isinstance(drop, str) or not all(isinstance(c, str) for c in drop):
            raise TypeError(f"drop must be a list of column names, got {drop!r}")
        if impute not in IMPUTE:
            raise ValueError(f"impute must be one of {list(IMPUTE)}, got {impute!r}")
        if not (one_hot is None or isinstance(one_hot, bool) or (
                isinstance(one_hot, (list, tuple)) and all(isinstance(c, str) for c in one_hot))):
            raise TypeError(f"one_hot must be None, True or a list of column names, got {one_hot!r}")
        if not isinstance(standardize, (bool, np.bool_)):
            raise TypeError(f"standardize must be True or False, got {standardize!r}")
        if task not in (None, *TASKS):
            raise ValueError(f"task must be None, 'classification' or 'regression', got {task!r}")
        if decimal not in (".", ","):
            raise ValueError(f"decimal must be '.' or ',', got {decimal!r}")
        if isinstance(max_categories, bool) or not isinstance(max_categories, int) or max_categories < 1:
            raise ValueError(f"max_categories must be a positive integer, got {max_categories!r}")
        self.columns = None if columns is None else list(columns)
        self.drop = list(drop)
        self.impute, self.one_hot, self.standardize = impute, one_hot or None, bool(standardize)
        self.task, self.decimal, self.max_categories = task, decimal, max_categories
        self.feature_names = self.encoding = self.stats = self.classes = self.target = None
        self.kept = None  # after fit_transform with impute="drop": the rows kept (bool mask), else None
        self.notes: list[str] = []

    @property
    def fitted(self) -> bool:
        """Whether `transform` changes anything: the model has columns, an imputation or statistics."""
        return self.feature_names is not None or self.encoding is not None or self.stats is not None

    def __repr__(self) -> str:
        if not self.fitted:
            return "Preprocessor()" if self.classes is None else f"Preprocessor(classes={self.classes!r})"
        parts = [f"columns={self.feature_names!r}" if self.feature_names is not None else "arrays"]
        if self.encoding is not None and self.encoding.get("strategy"):
            parts.append(f"impute={self.encoding['strategy']!r}")
        if self.encoding is not None and self.encoding.get("one_hot"):
            parts.append(f"one_hot={sorted(self.encoding['one_hot'])!r}")
        if self.stats is not None:
            parts.append("standardize=True")
        if self.classes is not None:
            parts.append(f"classes={self.classes!r}")
        return f"Preprocessor({', '.join(parts)})"

    # ---- learning -----------------------------------------------------------------------------
    def fit(self, X, y=None, *, target: str | None = None, where: str = "X"):
        """Learn the statistics, categories and classes from these (training) rows; returns self."""
        self.fit_transform(X, y, target=target, where=where)
        return self

    def fit_transform(self, X, y=None, *, target: str | None = None, where: str = "X"):
        """(X encoded float64 (n_samples, n_features_out), y encoded or None), learning from them.

        y encoded: class indices int64 (classification) or float64 (regression). With
        impute="drop" the rows holding a missing value are left out of both.
        """
        self.notes, self.kept = [], None
        if target is not None:
            self.target = target
        if is_table(X):
            frame = as_frame(X, where)
            columns = self.select(frame, where)
            if self.impute == "drop":
                keep = frame[columns].notna().all(axis=1).to_numpy()
                if y is not None:
                    keep &= ~missing_labels(y)
                if not keep.any():
                    raise ValueError(f"{where}: every row has a missing value; impute='drop' leaves nothing")
                if not keep.all():
                    self.notes.append(f"{where}: dropped {int((~keep).sum())} of {keep.size} rows with a "
                                      "missing value (impute drop)")
                    frame = frame[keep]
                    y = None if y is None else take_rows(y, np.flatnonzero(keep))
                    self.kept = keep
            frame = self._numbers_with_commas(frame, columns)
            self.encoding = self._fit_encoding(frame, columns, where)
            self.feature_names = list(columns)
            X, _ = encode_frame(frame, columns, self.encoding, where)
        else:
            if self.columns is not None or self.drop or self.one_hot:
                raise TypeError("columns=, drop= and one_hot= choose and encode table columns: give X as a pandas "
                                "DataFrame or a pyarrow Table")
            if self.impute is None and not self.standardize:  # nothing to learn: X as it is (a memmap stays one)
                if getattr(X, "ndim", 2) != 2:
                    raise ValueError(f"{where} must be 2-D (n_samples, n_features), got shape {X.shape}")
                return X, None if y is None else self.fit_target(y, where="y" if where == "X" else f"{where}: target")
            X = numeric_matrix(X, where)
            if self.impute == "drop":
                keep = ~np.isnan(X).any(axis=1)
                if y is not None:
                    keep &= ~missing_labels(y)
                if not keep.all():
                    X, y, self.kept = X[keep], None if y is None else take_rows(y, np.flatnonzero(keep)), keep
            if self.impute in ("mean", "median"):
                self.encoding = {"columns": None, "strategy": self.impute, "impute": {}, "one_hot": {}}
                for j in range(X.shape[1]):
                    self.encoding["impute"][str(j)] = statistic(X[:, j], self.impute, f"{where}[:, {j}]")
                X = self._impute_array(X, where)
        if self.standardize:
            std = X.std(axis=0)
            std[std == 0] = 1.0
            self.stats = {"mean": [float(v) for v in X.mean(axis=0)], "std": [float(v) for v in std]}
            X = (X - np.asarray(self.stats["mean"])) / np.asarray(self.stats["std"])
        Y = None if y is None else self.fit_target(y, where="y" if where == "X" else f"{where}: target")
        return X, Y

    def fit_target(self, y, where: str = "y"):
        """Learn the task and the classes from y; returns y encoded (indices or floats)."""
        labels = label_array(y, where)
        if labels.ndim != 1:
            self.task = self.task or "regression"
            if self.task == "classification":
                raise ValueError(f"{where}: classification needs one label per sample, got shape {labels.shape}")
            self.classes = None
            return labels.astype(np.float64)
        text = labels.dtype.kind in "OUSb"
        if not text and not np.all(np.isfinite(labels)):
            raise ValueError(f"{where}: a label is missing or infinite (impute='drop', --impute drop, drops rows "
                             "with a missing label)")
        if self.task is None:
            self.task = self._infer_task(labels, text, where)
        if self.task == "regression":
            if text:
                raise ValueError(f"{where}: task 'regression' needs numbers, the target holds "
                                 f"{'booleans' if labels.dtype.kind == 'b' else 'text'}")
            self.classes = None
            return labels.astype(np.float64)
        if not text and not np.all(np.mod(labels, 1) == 0):
            raise ValueError(f"{where}: task 'classification' needs labels, the target holds fractions "
                             f"(such as {labels[np.mod(labels, 1) != 0][0]!r}); give task 'regression'")
        classes = np.unique(labels.astype(str) if labels.dtype.kind == "O" else labels)
        if classes.size < 2:
            raise ValueError(f"{where}: the target holds one class only ({plain(classes[0])!r}); a classifier "
                             "needs at least two")
        self.classes = [plain(c) for c in classes]
        return self.encode_target(labels, where)

    def _infer_task(self, labels, text, where) -> str:
        if text:
            return "classification"
        integral = bool(np.all(np.mod(labels, 1) == 0))
        distinct = np.unique(labels).size
        if integral and distinct <= MAX_INFERRED_CLASSES:
            return "classification"
        if integral:
            self.notes.append(f"{where}: {distinct} distinct whole numbers (over {MAX_INFERRED_CLASSES}): taken "
                              "as regression; give task 'classification' (--task classification) for classes")
        return "regression"

    # ---- applying -----------------------------------------------------------------------------
    def transform(self, X, where: str = "X") -> np.ndarray:
        """X as the first layer reads it: float64 (n_samples, n_features_out).

        A table's columns are found by name (any order; other columns are left out); raw numbers
        (an array) are taken as the training columns in order. Rows are never dropped.
        """
        encoding = self.encoding
        if is_table(X):
            frame = as_frame(X, where)
            if self.feature_names is None:  # trained on plain numbers: the columns in order
                X = numeric_matrix(frame.to_numpy(), where)
            else:
                absent = [c for c in self.feature_names if c not in frame.columns]
                if absent:
                    raise ValueError(f"{where}: no column {absent[0]!r}; the model was trained on the columns "
                                     f"{self.feature_names}")
                frame = self._numbers_with_commas(frame, self.feature_names)
                X, _ = encode_frame(frame, self.feature_names, encoding, where)
        elif self.feature_names is not None:
            from ..backends import is_host_array, to_numpy

            X = np.asarray(X) if not hasattr(X, "__array_namespace__") or is_host_array(X) else X
            X = to_numpy(X)
            if X.ndim != 2 or X.shape[1] != len(self.feature_names):
                raise ValueError(f"{where} has shape {tuple(X.shape)}; the model was trained on the "
                                 f"{len(self.feature_names)} columns {self.feature_names} (give them in that order, "
                                 "or a DataFrame)")
            import pandas as pd

            frame = pd.DataFrame(X, columns=self.feature_names)
            frame = self._numbers_with_commas(frame, self.feature_names)
            X, _ = encode_frame(frame, self.feature_names, encoding, where)
        else:
            X = numeric_matrix(X, where)
            if encoding is not None:
                X = self._impute_array(X, where)
        if self.stats is not None:
            mean, std = np.asarray(self.stats["mean"]), np.asarray(self.stats["std"])
            if X.shape[1] != mean.size:
                raise ValueError(f"{where} has {X.shape[1]} features but the standardisation was fitted on {mean.size}")
            X = (X - mean) / std
        return X

    def encode_target(self, y, where: str = "y") -> np.ndarray:
        """Labels as class indices int64 (classification) or y as float64 (regression)."""
        labels = label_array(y, where)
        if self.classes is None or labels.ndim != 1:
            return labels.astype(np.float64) if labels.dtype.kind != "O" else numeric_labels(labels, where)
        if (labels.dtype.kind in "iuf" and all(isinstance(c, str) for c in self.classes) and labels.size
                and np.all(np.mod(labels, 1) == 0) and labels.min() >= 0 and labels.max() < len(self.classes)):
            return labels.astype(np.int64)  # indices into text classes: no label can be mistaken for one
        index = {label_key(c): i for i, c in enumerate(self.classes)}
        codes = np.fromiter((index.get(label_key(v), -1) for v in labels.tolist()), dtype=np.int64, count=labels.size)
        if (codes < 0).any():
            unknown = sorted({repr(v) for v, c in zip(labels.tolist(), codes) if c < 0})
            raise ValueError(f"{where}: labels {', '.join(unknown[:5])} are not among the model's classes "
                             f"{self.classes}")
        return codes

    def decode(self, indices):
        """Class indices (n_samples,) as the labels themselves: a NumPy array of the classes' type."""
        if self.classes is None:
            return indices
        classes = np.asarray(self.classes, dtype=object if any(isinstance(c, str) for c in self.classes) else None)
        if classes.dtype == object:
            classes = np.asarray(self.classes, dtype=str)
        return classes[np.asarray(indices, dtype=np.int64)]

    @property
    def feature_names_out(self) -> list | None:
        """The encoded features' names (one-hot columns as "color=red"), or None for arrays."""
        if self.feature_names is None:
            return None
        return encoded_names(self.feature_names, self.encoding)

    # ---- the model file -----------------------------------------------------------------------
    def to_dict(self) -> dict | None:
        """The fitted state as JSON-ready values (the model file's "preprocessing"), or None."""
        state = {}
        if self.stats is not None:
            state.update(self.stats)
        if self.encoding is not None:
            state["encoding"] = dict(self.encoding, decimal=self.decimal)
        return state or None

    @classmethod
    def from_dict(cls, state, feature_names=None, classes=None, task=None, target=None) -> Preprocessor:
        """The Preprocessor a `to_dict()` (and the model file's schema) describes."""
        if state is not None and not isinstance(state, dict):
            raise ValueError(f"preprocessing must be an object or null, got {type(state).__name__}")
        state = state or {}
        encoding = state.get("encoding")
        pre = cls(decimal=(encoding or {}).get("decimal", "."))
        if "mean" in state or "std" in state:
            try:
                mean = np.asarray(state.get("mean"), dtype=np.float64)
                std = np.asarray(state.get("std"), dtype=np.float64)
            except (TypeError, ValueError):
                mean = std = np.zeros(0)
            if (mean.size == 0 or mean.ndim != 1 or mean.shape != std.shape or not np.all(np.isfinite(mean))
                    or np.any(~(std > 0))):
                raise ValueError("preprocessing mean and std must be lists of one finite number per feature, std > 0")
            pre.stats, pre.standardize = {"mean": mean.tolist(), "std": std.tolist()}, True
        if encoding is not None:
            if not isinstance(encoding, dict) or "columns" not in encoding:
                raise ValueError("preprocessing encoding must be an object with 'columns'")
            pre.encoding = {k: encoding.get(k) or ({} if k in ("impute", "one_hot") else None)
                            for k in ("columns", "strategy", "impute", "one_hot")}
            pre.impute = pre.encoding["strategy"]
            feature_names = encoding["columns"] if encoding["columns"] is not None else feature_names
        pre.feature_names = None if feature_names is None else [str(n) for n in feature_names]
        if pre.encoding is not None and pre.encoding["columns"] is not None and pre.feature_names is not None:
            check_unique(pre.feature_names_out, "feature")
        pre.classes, pre.task, pre.target = classes, task, target
        if classes is not None:
            check_unique([label_key(c) for c in classes], "class")
        return pre

    # ---- helpers ------------------------------------------------------------------------------
    def select(self, frame, where: str = "X", target: str | None = None) -> list:
        """The feature columns of `frame` that `columns=` and `drop=` choose (the target left out)."""
        target = target if target is not None else self.target
        names = list(frame.columns)
        skip = {target, *self.drop} - {None}
        for option, given in (("drop", self.drop), ("columns", self.columns or [])):
            absent = [c for c in given if c not in names]
            if absent:
                raise ValueError(f"{where}: {option} names the column {absent[0]!r}, which is not there; the "
                                 f"columns are {names}")
        if self.columns is not None:
            if target in self.columns:
                raise ValueError(f"{where}: columns includes the target {target!r}")
            columns = [c for c in self.columns if c not in skip]
        else:
            columns = [c for c in names if c not in skip]
        if not columns:
            raise ValueError(f"{where}: no feature columns" + (f" besides the target {target!r}" if target else ""))
        if len(frame) == 0:
            raise ValueError(f"{where}: no data rows")
        return columns

    def _numbers_with_commas(self, frame, columns):
        """With decimal=",", text columns of numbers written with a decimal comma, as numbers."""
        if self.decimal != ",":
            return frame
        import pandas as pd

        changed = {}
        for name in columns:
            column = frame[name]
            if not is_text(column):
                continue
            text = column.astype("string").str.strip()
            converted = pd.to_numeric(text.str.replace(".", "", regex=False).str.replace(",", ".", regex=False),
                                      errors="coerce")
            if (converted.notna() | column.isna()).all():
                changed[name] = converted.astype(np.float64)
        return frame.assign(**changed) if changed else frame

    def _fit_encoding(self, frame, columns, where) -> dict:
        encoding = {"columns": list(columns), "strategy": self.impute, "impute": {}, "one_hot": {}}
        text = [c for c in columns if is_text(frame[c])]
        wanted = text if self.one_hot is True else list(self.one_hot or [])
        absent = [c for c in wanted if c not in columns]
        if absent:
            raise ValueError(f"{where}: one_hot names the column {absent[0]!r}, which is not a feature column "
                             f"(the features: {columns})")
        for name in text:
            refuse_numbers_or_dates(frame[name], name, where, self.decimal)
        counts = []
        for name in columns:
            column = frame[name]
            if name in wanted:
                values = column.dropna().astype(str)
                categories = sorted(set(values.tolist()))
                if len(categories) > self.max_categories:
                    raise ValueError(
                        f"{where}: column {name!r} has {len(categories)} categories, over the limit of "
                        f"{self.max_categories}; drop it (--drop {name}) or raise the limit (--max-categories)")
                encoding["one_hot"][name] = categories
                counts.append(f"{name} ({len(categories)})")
            elif self.impute in ("mean", "median") and not is_text(column):
                values = column.to_numpy(dtype=np.float64, na_value=np.nan)
                encoding["impute"][name] = statistic(values, self.impute, f"{where}: column {name!r}")
        if self.one_hot is True and counts:
            self.notes.append(f"one-hot encoding {len(counts)} text column{'s' if len(counts) > 1 else ''} "
                              f"(categories): {', '.join(counts)}")
        check_unique(encoded_names(columns, encoding), "feature", where)
        return encoding

    def _impute_array(self, X, where):
        values = self.encoding["impute"]
        if len(values) != X.shape[1]:
            raise ValueError(f"{where} has {X.shape[1]} features but the imputation was fitted on {len(values)}")
        missing = np.isnan(X)
        if missing.any():
            fill = np.asarray([values[str(j)] for j in range(X.shape[1])])
            X = np.where(missing, fill, X)
        return X
