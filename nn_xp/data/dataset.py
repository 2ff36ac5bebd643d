"""The `Dataset` record every loader returns (built-in sets, files), and the seed check they share."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Dataset:
    """Features, targets and what they mean.

    X: (n_samples, n_features) float64.
    y: (n_samples,) int64 class labels 0..n_classes-1 for classification; (n_samples,) or
       (n_samples, n_outputs) float64 for regression; None for a features-only file.
    task: "classification" or "regression" (None when y is None).
    n_classes: the number of classes, or None for regression.
    class_names: what label i stood for in the source (a CSV's strings, the original numbers), or None.
    target: the name of the target column (or .npz member), or None.
    feature_dtypes: {column: dtype} of the file's feature columns, before any encoding.
    encoding: with load_file(impute=..., one_hot=True), what `encode` needs to repeat the encoding
        on new data (JSON-ready): {"columns": [the file's feature columns in order], "strategy":
        the impute option, "impute": {column: value}, "one_hot": {column: [categories]}}; else None.
    """

    X: np.ndarray
    y: np.ndarray | None
    task: str | None
    n_classes: int | None
    feature_names: list = field(default_factory=list)
    description: str = ""
    name: str = ""
    class_names: list | None = None
    target: str | None = None
    feature_dtypes: dict = field(default_factory=dict)
    encoding: dict | None = None

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_outputs(self) -> int:
        """Output units a model needs: n_classes (softmax) or the number of target columns."""
        if self.task == "classification":
            return int(self.n_classes)
        return 1 if self.y is None or self.y.ndim == 1 else int(self.y.shape[1])


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)
