"""The built-in datasets, in NumPy only: seeded generators (no downloads) "sine" (the seed notebooks'
shifted sine), "spirals", "moons", "xor", "synthetic", and scikit-learn's bundled "digits", "iris",
"breast_cancer", "wine" (the optional extra `nn_xp[sklearn]`). `nx.datasets.load_dataset` picks
one by name."""

from __future__ import annotations

import math

import numpy as np

from ..validation import positive_int
from .dataset import Dataset

BUILTIN = ("sine", "spirals", "moons", "xor", "synthetic")
SKLEARN = ("digits", "iris", "breast_cancer", "wine")


def _noise(value, parameter: str = "noise") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{parameter} must be a finite number >= 0, got {value!r}")
    return float(value)


def _split_counts(n: int, k: int) -> list[int]:
    """n points over k classes, as evenly as possible."""
    return [n // k + (1 if c < n % k else 0) for c in range(k)]


# ---- generators ----------------------------------------------------------------------------
def _sine(n_samples, rng, noise=0.0):
    """The seed notebooks' data: x = linspace(-2 pi, 2 pi, 500), X = (x - mean) / std, y = (sin x + 1) / 2."""
    n = 500 if n_samples is None else n_samples
    x = np.linspace(-2 * np.pi, 2 * np.pi, n)
    y = 0.5 * (np.sin(x) + 1)
    noise = _noise(noise)
    if noise:
        y = y + noise * rng.standard_normal(n)
    std = x.std()
    X = ((x - x.mean()) / (std if std > 0 else 1.0))[:, None]
    return Dataset(
        X, y, "regression", None, ["x"],
        "Shifted sine of the seed notebooks: x in [-2 pi, 2 pi] standardised, y = (sin x + 1) / 2.",
        "sine",
    )


def _spirals(n_samples, rng, n_classes=3, noise=0.2):
    """Interleaved spiral arms, one per class (cs231n's classic): radius 0..1, angle with noise."""
    n = 300 if n_samples is None else n_samples
    k = positive_int(n_classes, "n_classes")
    if k < 2:
        raise ValueError(f"n_classes must be at least 2, got {k}")
    if n < k:
        raise ValueError(f"n_samples={n} is too few for {k} classes")
    noise = _noise(noise)
    X, y = [], []
    for c, count in enumerate(_split_counts(n, k)):
        r = np.linspace(0.0, 1.0, count)
        t = np.linspace(c * 4.0, (c + 1) * 4.0, count) + noise * rng.standard_normal(count)
        X.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        y.append(np.full(count, c, dtype=np.int64))
    return Dataset(
        np.concatenate(X), np.concatenate(y), "classification", k, ["x0", "x1"],
        f"{k} interleaved spiral arms with angular noise {noise}.", "spirals",
    )


def _moons(n_samples, rng, noise=0.1):
    """Two interleaving half circles (scikit-learn's make_moons) plus Gaussian noise."""
    n = 300 if n_samples is None else n_samples
    if n < 2:
        raise ValueError(f"n_samples={n} is too few for 2 classes")
    noise = _noise(noise)
    n_outer, n_inner = _split_counts(n, 2)
    outer = np.linspace(0.0, np.pi, n_outer)
    inner = np.linspace(0.0, np.pi, n_inner)
    X = np.concatenate(
        [
            np.stack([np.cos(outer), np.sin(outer)], axis=1),
            np.stack([1 - np.cos(inner), 0.5 - np.sin(inner)], axis=1),
        ]
    )
    X = X + noise * rng.standard_normal(X.shape)
    y = np.concatenate([np.zeros(n_outer, dtype=np.int64), np.ones(n_inner, dtype=np.int64)])
    return Dataset(X, y, "classification", 2, ["x0", "x1"], f"Two interleaving half circles, noise {noise}.", "moons")


def _xor(n_samples, rng, noise=0.35):
    """Four Gaussian blobs at (+-1, +-1); class 1 where the coordinates' signs differ (XOR)."""
    n = 300 if n_samples is None else n_samples
    if n < 4:
        raise ValueError(f"n_samples={n} is too few for 4 blobs")
    noise = _noise(noise)
    centres = np.array([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
    labels = np.array([0, 0, 1, 1], dtype=np.int64)
    counts = _split_counts(n, 4)
    X = np.concatenate([c + noise * rng.standard_normal((m, 2)) for c, m in zip(centres, counts)])
    y = np.repeat(labels, counts)
    return Dataset(X, y, "classification", 2, ["x0", "x1"], f"XOR of four Gaussian blobs, std {noise}.", "xor")


def _synthetic(n_samples, rng, n_features=784, n_classes=10):
    """Gaussian inputs labelled by a random linear teacher: the benchmarks' workload (a) data
    (784 features, 10 classes, 20000 samples by default), learnable but not trivial."""
    n = 20000 if n_samples is None else n_samples
    n_features = positive_int(n_features, "n_features")
    n_classes = positive_int(n_classes, "n_classes")
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}")
    X = rng.standard_normal((n, n_features)).astype(np.float32).astype(np.float64)
    teacher = rng.standard_normal((n_features, n_classes))
    y = np.argmax(X @ teacher, axis=1).astype(np.int64)
    names = [f"x{i}" for i in range(n_features)]
    description = f"{n} Gaussian samples, {n_features} features, labels from a random linear teacher."
    return Dataset(X, y, "classification", n_classes, names, description, "synthetic")


# ---- scikit-learn's bundled sets -------------------------------------------------------------------
def sklearn_set(name: str) -> Dataset:
    try:
        import sklearn.datasets
    except ImportError:
        raise ImportError(f"the {name!r} dataset needs scikit-learn: pip install 'nn_xp[sklearn]'") from None
    bunch = getattr(sklearn.datasets, f"load_{name}")()
    y = np.asarray(bunch.target, dtype=np.int64)
    # DESCR opens with a reST label (".. _iris_dataset:"); the title is the first line of text.
    lines = (bunch.DESCR or "").splitlines()
    description = [line.strip() for line in lines if line.strip() and not line.startswith("..")]
    return Dataset(
        np.asarray(bunch.data, dtype=np.float64),
        y,
        "classification",
        int(y.max()) + 1,
        [str(f) for f in getattr(bunch, "feature_names", [])] or [f"x{i}" for i in range(bunch.data.shape[1])],
        description[0] if description else name,
        name,
        [str(t) for t in bunch.target_names],
    )


# The generators by name: each takes (n_samples or None for its default, a Generator, **options).
GENERATORS = {"sine": _sine, "spirals": _spirals, "moons": _moons, "xor": _xor, "synthetic": _synthetic}
