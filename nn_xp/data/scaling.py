"""Standardisation of a NumPy feature matrix: per-feature statistics and (X - mean) / std."""

from __future__ import annotations

import numpy as np

from ..backends import to_numpy


def fit_standardizer(X) -> dict:
    """Per-feature statistics {"mean": [...], "std": [...]} of X (n_samples, n_features).

    std is the population standard deviation; a constant feature gets std 1 so that
    `standardize` leaves it centred instead of dividing by zero. Plain lists: JSON-ready, stored in
    `model.preprocessing` and the model file.
    """
    X = _as_matrix(X, "X")
    std = X.std(axis=0)
    std[std == 0] = 1.0
    return {"mean": [float(v) for v in X.mean(axis=0)], "std": [float(v) for v in std]}


def standardize(X, stats: dict) -> np.ndarray:
    """(X - mean) / std with statistics from `fit_standardizer`; float64 (n_samples, n_features)."""
    X = _as_matrix(X, "X")
    if not isinstance(stats, dict) or "mean" not in stats or "std" not in stats:
        raise ValueError("stats must be a dict with 'mean' and 'std', as made by fit_standardizer")
    mean, std = np.asarray(stats["mean"], dtype=np.float64), np.asarray(stats["std"], dtype=np.float64)
    if mean.shape != (X.shape[1],) or std.shape != (X.shape[1],):
        raise ValueError(
            f"X has {X.shape[1]} features but the standardizer was fitted on {mean.size} "
            f"(mean shape {mean.shape}, std shape {std.shape})"
        )
    if np.any(std <= 0) or not np.all(np.isfinite(std)):
        raise ValueError("stats['std'] must hold finite numbers > 0")
    return (X - mean) / std


def _as_matrix(X, parameter: str) -> np.ndarray:
    X = to_numpy(X)
    if X.ndim != 2:
        raise ValueError(f"{parameter} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{parameter} must be numeric, got dtype {X.dtype}")
    return X.astype(np.float64)
