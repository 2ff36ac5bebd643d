"""`nx.datasets`: datasets by name or file path (`load_dataset`), and the loaders and array helpers
users reach through it. Each has its own module:

- builtin.py: the seeded generators ("sine", "spirals", "moons", "xor", "synthetic") and
  scikit-learn's bundled "digits", "iris", "breast_cancer", "wine";
- readers.py: the user's files (`load_file`, `read_table`, `encode`): CSV/TSV, parquet, .npy, .npz;
- scaling.py (`fit_standardizer`, `standardize`), splitting.py (`train_test_split`).

Every loader returns a `Dataset` (dataset.py): X float64 (n_samples, n_features) and y as class
labels (n_samples,) int64 for classification, or floats (n_samples,) / (n_samples, n_outputs) for
regression.
"""

from __future__ import annotations

import os

import numpy as np

from ..validation import positive_int
from . import builtin
from .builtin import BUILTIN, SKLEARN
from .dataset import Dataset, check_seed
from .readers import FILE_SUFFIXES, TABLE_SUFFIXES, encode, load_file, read_table
from .scaling import fit_standardizer, standardize
from .splitting import train_test_split

__all__ = [
    "BUILTIN",
    "DATASETS",
    "FILE_SUFFIXES",
    "SKLEARN",
    "TABLE_SUFFIXES",
    "Dataset",
    "encode",
    "fit_standardizer",
    "load_dataset",
    "load_file",
    "read_table",
    "standardize",
    "train_test_split",
]

DATASETS = BUILTIN + SKLEARN


def load_dataset(name: str, *, n_samples: int | None = None, seed: int = 0, **options) -> Dataset:
    """A dataset by name (one of DATASETS) or a file path ending in one of FILE_SUFFIXES.

    Args:
        name: a built-in or scikit-learn name, or a path (options then go to `load_file`).
        n_samples: the number of points for a generator (defaults: sine 500, the others 300);
            for a fixed set or a file, a seeded random subset of that size (None: all of it).
        seed: seeds the generator's noise and the subset; the same seed gives the same data.
        options: generator settings: spirals n_classes=3, noise=0.2; moons noise=0.1;
            xor noise=0.35; synthetic n_features=784, n_classes=10; files: those of `load_file`.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name must be one of {list(DATASETS)} or a file path, got {name!r}")
    if n_samples is not None:
        n_samples = positive_int(n_samples, "n_samples")
    seed = check_seed(seed)
    text = os.fspath(name)
    key = text.strip().lower()
    if key in BUILTIN:
        return builtin.GENERATORS[key](n_samples, np.random.default_rng(seed), **options)
    if key in SKLEARN:
        if options:
            raise TypeError(f"the {key!r} dataset takes no options, got {sorted(options)}")
        return _subset(builtin.sklearn_set(key), n_samples, seed)
    if os.path.splitext(key)[1] in FILE_SUFFIXES:
        return _subset(load_file(text, **options), n_samples, seed)
    raise ValueError(
        f"dataset must be one of {list(DATASETS)} or a path to a {', '.join(FILE_SUFFIXES)} file, got {name!r}"
    )


def _subset(data: Dataset, n_samples, seed) -> Dataset:
    """A seeded random subset of n_samples rows (all rows, in order, when n_samples is None)."""
    if n_samples is None:
        return data
    if n_samples > data.n_samples:
        raise ValueError(f"n_samples={n_samples} but the {data.name or 'dataset'} has only {data.n_samples} samples")
    rows = np.sort(np.random.default_rng(seed).permutation(data.n_samples)[:n_samples])
    data.X = data.X[rows]
    data.y = None if data.y is None else data.y[rows]
    return data
