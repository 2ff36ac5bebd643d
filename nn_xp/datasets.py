"""Datasets by name, user files, standardisation and a train/test split, in NumPy only.

Built-in generators (seeded, no downloads): "sine" (the seed notebooks' shifted sine), "spirals",
"moons", "xor". scikit-learn's bundled sets "digits", "iris", "breast_cancer", "wine" need
scikit-learn (the optional extra `nn_xp[sklearn]`), nothing else. User files: `load_file` reads a
CSV with a header row, a .npy (features only) or a .npz with members X and optionally y.

Every loader returns a `Dataset`: X float64 (n_samples, n_features) and y as class labels
(n_samples,) int64 for classification, or floats (n_samples,) / (n_samples, n_outputs) for
regression.
"""

from __future__ import annotations

import csv
import math
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

BUILTIN = ("sine", "spirals", "moons", "xor", "synthetic")
SKLEARN = ("digits", "iris", "breast_cancer", "wine")
DATASETS = BUILTIN + SKLEARN
FILE_SUFFIXES = (".csv", ".npy", ".npz")
# A numeric target with at most this many distinct integer values is read as class labels.
MAX_INFERRED_CLASSES = 20


@dataclass
class Dataset:
    """Features, targets and what they mean.

    X: (n_samples, n_features) float64.
    y: (n_samples,) int64 class labels 0..n_classes-1 for classification; (n_samples,) or
       (n_samples, n_outputs) float64 for regression; None for a features-only file.
    task: "classification" or "regression" (None when y is None).
    n_classes: the number of classes, or None for regression.
    class_names: what label i stood for in the source (a CSV's strings, the original numbers), or None.
    """

    X: np.ndarray
    y: np.ndarray | None
    task: str | None
    n_classes: int | None
    feature_names: list = field(default_factory=list)
    description: str = ""
    name: str = ""
    class_names: list | None = None

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


# ---- by name -----------------------------------------------------------------------------------
def load_dataset(name: str, *, n_samples: int | None = None, seed: int = 0, **options) -> Dataset:
    """A dataset by name (one of DATASETS) or a file path ending in .csv, .npy or .npz.

    Args:
        name: a built-in or scikit-learn name, or a path (options then go to `load_file`).
        n_samples: the number of points for a generator (defaults: sine 500, the others 300);
            for a fixed set or a file, a seeded random subset of that size (None: all of it).
        seed: seeds the generator's noise and the subset; the same seed gives the same data.
        options: generator settings: spirals n_classes=3, noise=0.2; moons noise=0.1;
            xor noise=0.35; synthetic n_features=784, n_classes=10; files: target=, task=.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name must be one of {list(DATASETS)} or a file path, got {name!r}")
    if n_samples is not None:
        n_samples = _positive_int(n_samples, "n_samples")
    seed = _seed(seed)
    text = os.fspath(name)
    key = text.strip().lower()
    if key in BUILTIN:
        makers = {"sine": _sine, "spirals": _spirals, "moons": _moons, "xor": _xor, "synthetic": _synthetic}
        return makers[key](n_samples, np.random.default_rng(seed), **options)
    if key in SKLEARN:
        if options:
            raise TypeError(f"the {key!r} dataset takes no options, got {sorted(options)}")
        return _subset(_sklearn(key), n_samples, seed)
    if os.path.splitext(key)[1] in FILE_SUFFIXES:
        return _subset(load_file(text, **options), n_samples, seed)
    raise ValueError(
        f"dataset must be one of {list(DATASETS)} or a path to a .csv, .npy or .npz file, got {name!r}"
    )


def _positive_int(value, parameter: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{parameter} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{parameter} must be a positive integer, got {value!r}")
    return int(value)


def _seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _noise(value, parameter: str = "noise") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{parameter} must be a finite number >= 0, got {value!r}")
    return float(value)


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
    k = _positive_int(n_classes, "n_classes")
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
    n_features = _positive_int(n_features, "n_features")
    n_classes = _positive_int(n_classes, "n_classes")
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}")
    X = rng.standard_normal((n, n_features)).astype(np.float32).astype(np.float64)
    teacher = rng.standard_normal((n_features, n_classes))
    y = np.argmax(X @ teacher, axis=1).astype(np.int64)
    names = [f"x{i}" for i in range(n_features)]
    description = f"{n} Gaussian samples, {n_features} features, labels from a random linear teacher."
    return Dataset(X, y, "classification", n_classes, names, description, "synthetic")


# ---- scikit-learn's bundled sets -------------------------------------------------------------------
def _sklearn(name: str) -> Dataset:
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


# ---- user files ------------------------------------------------------------------------------
def load_file(path, target: str | None = None, task: str | None = None) -> Dataset:
    """Read a dataset from a CSV, .npy or .npz file.

    - CSV: a header row of column names, then one sample per row. `target` names the column holding
      y; every other column is a feature and must be numeric. The target may hold numbers or class
      names (text: classes numbered in sorted order, the names kept in `class_names`).
    - .npy: features only (for predict); a 1-D array is one feature, (n_samples, 1).
    - .npz: member "X" and optionally the target member (`target`, default "y": numbers or class
      names); no pickled objects.

    task: "classification" or "regression"; None infers it: text labels, integer dtypes, or at most
    MAX_INFERRED_CLASSES distinct integral values mean classification.

    Raises:
        FileNotFoundError: no such file. ValueError (starting with the path): an unreadable file,
        a non-numeric cell (naming its line and column), a missing target column (listing the columns).
    """
    path = os.fspath(path)
    if task not in (None, "classification", "regression"):
        raise ValueError(f"task must be None, 'classification' or 'regression', got {task!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such data file")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".csv":
        X, y, features, text_labels = _read_csv(path, target)
    elif suffix == ".npy":
        if target is not None:
            raise ValueError(f"{path}: a .npy file holds features only; target={target!r} needs a .csv or .npz")
        X, y, features, text_labels = _read_npy(path), None, None, False
    elif suffix == ".npz":
        X, y = _read_npz(path, target or "y")
        features, text_labels = None, y is not None and y.dtype.kind in "US"
    else:
        raise ValueError(f"{path}: unknown file type {suffix!r}; expected one of {list(FILE_SUFFIXES)}")
    if features is None:
        features = [f"x{i}" for i in range(X.shape[1])]
    data = Dataset(X, None, None, None, features, f"read from {path}", os.path.basename(path))
    if y is not None:
        _set_target(data, y, task, text_labels, path)
    return data


def _read_csv(path, target):
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = csv.reader(handle)
        header = next(rows, None)
        if header is None or not any(h.strip() for h in header):
            raise ValueError(f"{path}: empty CSV file; expected a header row of column names")
        header = [h.strip() for h in header]
        if target is not None and target not in header:
            raise ValueError(f"{path}: no target column {target!r}; the columns are {header}")
        t = header.index(target) if target is not None else None
        features = [h for i, h in enumerate(header) if i != t]
        X, labels = [], []
        for row in rows:
            line = rows.line_num
            if not row or all(not cell.strip() for cell in row):
                continue  # blank lines, as at the end of many files
            if len(row) != len(header):
                raise ValueError(f"{path}: line {line} has {len(row)} cells but the header has {len(header)} columns")
            values = []
            for i, cell in enumerate(row):
                if i == t:
                    labels.append((cell.strip(), line))
                    continue
                values.append(_number(cell, path, line, header[i]))
            X.append(values)
    if not X:
        raise ValueError(f"{path}: no data rows after the header")
    X = np.array(X, dtype=np.float64).reshape(len(X), len(features))
    if t is None:
        return X, None, features, False
    numbers = [_try_number(cell) for cell, _ in labels]
    if all(v is not None for v in numbers):
        return X, np.array(numbers, dtype=np.float64), features, False
    if all(v is None for v in numbers):  # class names
        for cell, line in labels:
            if not cell:
                raise ValueError(f"{path}: line {line}, column {target!r}: empty cell")
        return X, np.array([cell for cell, _ in labels]), features, True
    bad = next((cell, line) for (cell, line), v in zip(labels, numbers) if v is None)
    raise ValueError(
        f"{path}: line {bad[1]}, column {target!r}: cannot read {bad[0]!r} as a number "
        "(the column mixes numbers and text)"
    )


def _try_number(cell: str):
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _number(cell: str, path, line: int, column: str) -> float:
    value = _try_number(cell.strip())
    if value is None:
        raise ValueError(f"{path}: line {line}, column {column!r}: cannot read {cell!r} as a finite number")
    return value


def _read_npy(path) -> np.ndarray:
    try:
        with open(path, "rb") as handle:
            X = np.load(handle, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: not a readable .npy file ({error})") from None
    if not isinstance(X, np.ndarray):
        X.close()
        raise ValueError(f"{path}: an .npz archive, not a .npy array; name it .npz")
    return _as_features(X, path, "the array")


def _read_npz(path, target: str):
    try:
        # Our own handle, so the file is closed even when np.load fails half way.
        with open(path, "rb") as handle:
            archive = np.load(handle, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError(f"{path}: a single .npy array, not an .npz archive; name it .npy")
            with archive:
                if "X" not in archive.files:
                    raise ValueError(f"{path}: no member 'X' (members: {archive.files})")
                X = archive["X"]
                y = archive[target] if target in archive.files else None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        if str(error).startswith(str(path)):
            raise
        raise ValueError(f"{path}: not a readable .npz file ({error})") from None
    X = _as_features(X, path, "member 'X'")
    if y is None and target != "y":
        raise ValueError(f"{path}: no target member {target!r}")
    if y is not None and (y.ndim not in (1, 2) or y.shape[0] != X.shape[0]):
        raise ValueError(f"{path}: member {target!r} must have {X.shape[0]} rows (one per sample), got shape {y.shape}")
    if y is not None and y.dtype.kind not in "biufUS":
        raise ValueError(f"{path}: member {target!r} must hold numbers or class names, got dtype {y.dtype}")
    if y is not None and y.dtype.kind in "US" and y.ndim != 1:
        raise ValueError(f"{path}: class names in {target!r} must be one per sample, got shape {y.shape}")
    return X, y


def _as_features(X, path, what) -> np.ndarray:
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{path}: {what} must be numeric, got dtype {X.dtype}")
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"{path}: {what} must be 2-D (n_samples, n_features) with samples, got shape {X.shape}")
    X = X.astype(np.float64)
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{path}: {what} contains NaN or infinite values")
    return X


def _set_target(data: Dataset, y: np.ndarray, task, text_labels: bool, path) -> None:
    """Store y as labels 0..k-1 (classification) or floats (regression) on `data`."""
    if text_labels:
        if task == "regression":
            raise ValueError(f"{path}: task='regression' needs a numeric target, the target holds text")
        task = "classification"
    elif y.dtype.kind == "b":
        y = y.astype(np.int64)
    if not text_labels and not np.all(np.isfinite(y)):
        raise ValueError(f"{path}: the target contains NaN or infinite values")
    if task is None:
        integral = y.dtype.kind in "iu" or bool(np.all(np.mod(y, 1) == 0))
        distinct = np.unique(y).size if y.ndim == 1 else math.inf
        task = "classification" if y.ndim == 1 and integral and distinct <= MAX_INFERRED_CLASSES else "regression"
    if task == "regression":
        data.y, data.task = y.astype(np.float64), "regression"
        return
    if y.ndim != 1:
        raise ValueError(f"{path}: classification needs one label per sample, got target shape {y.shape}")
    if not text_labels and not np.all(np.mod(y, 1) == 0):
        raise ValueError(f"{path}: task='classification' needs integer labels, the target holds fractions")
    classes, labels = np.unique(y, return_inverse=True)
    data.y, data.task, data.n_classes = labels.astype(np.int64).reshape(-1), "classification", int(classes.size)
    data.class_names = [str(c) if text_labels else _plain(c) for c in classes]


def _plain(value):
    """A NumPy number as an int when integral, else a float (JSON-ready class names)."""
    value = float(value)
    return int(value) if value.is_integer() else value


# ---- standardisation -----------------------------------------------------------------------
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
    from .backend import to_numpy

    X = to_numpy(X)
    if X.ndim != 2:
        raise ValueError(f"{parameter} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{parameter} must be numeric, got dtype {X.dtype}")
    return X.astype(np.float64)


# ---- train/test split ----------------------------------------------------------------------
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
    rng = np.random.default_rng(_seed(seed))
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
