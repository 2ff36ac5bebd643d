"""A seeded train/test split of arrays, stratified by class where the labels are integers."""

from __future__ import annotations

import math

import numpy as np

from .dataset import check_seed


def train_test_split(X, y, test_size=0.2, seed: int = 0, stratify: bool = True):
    """(X_train, X_test, y_train, y_test), split at random with a seeded generator.

    Args:
        X: (n_samples, n_features). y: (n_samples,) or (n_samples, n_outputs).
        test_size: a fraction in (0, 1) of the samples (the count is rounded up, as scikit-learn
            does), or a number of samples.
        stratify: for integer (or bool) labels y (n_samples,), split each class in the same
            proportion, so both sides keep the class balance; float targets are never stratified.
    """
    X, y = np.asarray(X), np.asarray(y)
    n = X.shape[0] if X.ndim else 0
    if y.ndim == 0 or y.shape[0] != n:
        raise ValueError(f"X and y must have the same number of rows, got {X.shape} and {y.shape}")
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float, np.integer, np.floating)):
        raise TypeError(f"test_size must be a fraction in (0, 1) or a number of samples, got {test_size!r}")
    if isinstance(test_size, (float, np.floating)):
        if not 0 < test_size < 1:
            raise ValueError(f"test_size must be a fraction in (0, 1) or a number of samples, got {test_size!r}")
        n_test = math.ceil(test_size * n)
    else:
        n_test = int(test_size)
    if not 0 < n_test < n:
        raise ValueError(
            f"test_size={test_size!r} leaves {n_test} of {n} samples for testing; each side needs at least one"
        )
    rng = np.random.default_rng(check_seed(seed))
    if stratify and y.ndim == 1 and y.dtype.kind in "biu":
        test = _stratified_test_rows(y, n_test, rng)
    else:
        test = rng.permutation(n)[:n_test]
    is_test = np.zeros(n, dtype=bool)
    is_test[test] = True
    train = np.flatnonzero(~is_test)
    train, test = rng.permutation(train), rng.permutation(np.flatnonzero(is_test))
    return X[train], X[test], y[train], y[test]


def _stratified_test_rows(y, n_test, rng) -> np.ndarray:
    """n_test rows, each class contributing its share (largest remainders break the rounding)."""
    classes, labels = np.unique(y, return_inverse=True)
    counts = np.bincount(labels)
    exact = counts * n_test / y.shape[0]
    share = np.floor(exact).astype(np.int64)
    # Hand the leftover rows to the classes that lost most to the rounding (ties: the larger class).
    order = np.lexsort((-counts, -(exact - share)))
    for c in order[: n_test - int(share.sum())]:
        share[c] += 1
    rows = [rng.permutation(np.flatnonzero(labels == c))[: share[c]] for c in range(classes.size)]
    return np.concatenate(rows)
