"""What several commands share: reading built-in datasets, table and array files, and printing metrics."""

from __future__ import annotations

import os
import sys
import warnings

from ..data import tabular
from ..data.preprocessing import Preprocessor


def _is_file(name: str) -> bool:
    return os.sep in name or name.lower().endswith((".csv", ".tsv", ".parquet", ".npz", ".npy")) or os.path.exists(name)


def _load_data(name: str, target=None, n_samples=None, seed=0, **table_options):
    from ..data.datasets import load_dataset, load_file

    if _is_file(name):
        return load_file(name, target=target, progress=True, **table_options)
    given = [f"--{k.replace('_', '-')}" for k, v in table_options.items() if v not in (None, False)]
    if given:
        raise ValueError(f"{given[0]} applies to a table file; {name!r} is a built-in dataset")
    if target is not None:
        raise ValueError(f"--target names a column of a CSV file; {name!r} is a built-in dataset")
    kwargs = {"seed": seed}
    if n_samples is not None:
        kwargs["n_samples"] = n_samples
    return load_dataset(name, **kwargs)


def _check_table_options(args) -> None:
    """Options that choose and encode a table's columns, refused by name for any other dataset."""
    if tabular.is_table_file(args.dataset):
        return
    given = {"--columns": args.columns, "--drop": args.drop, "--impute": args.impute, "--one-hot": args.one_hot,
             "--sample-weight": args.sample_weight, "--target": args.target,
             "--decimal": None if args.decimal == "." else args.decimal}
    for option, value in given.items():
        if value is not None:
            kind = "a built-in dataset" if not tabular.is_file(args.dataset) else "not a table"
            verb = "names a column of" if option in ("--target", "--sample-weight") else "applies to"
            raise ValueError(f"{option} {verb} a table file (.csv, .tsv, .parquet); {args.dataset!r} is {kind}")


def _format_metrics(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" if k != "loss" else f"loss {v:.6g}" for k, v in metrics.items())


def _read_table(path, delimiter=None):
    """A table file (.csv, .tsv, .parquet) as a pandas DataFrame, read as training reads it."""
    from ..data.columns import as_frame
    from ..data.readers import read_table

    return as_frame(read_table(path, delimiter=delimiter, progress=True), path)


def _model_input(path, frame, model, skip):
    """What the model predicts from: the table itself where the model knows its columns (found by
    name, others left out with a note); else the other columns in order, as numbers."""
    columns = list(frame.columns)
    names = model.feature_names
    if names is None:
        names = [c for c in columns if c not in skip]
        return frame[names].to_numpy()
    extra = [c for c in columns if c not in names and c not in skip]
    if extra:
        print(f"note: {path}: ignoring columns {extra} (not features of the model)", file=sys.stderr)
    return frame


def _predicting(function, path):
    """Run `function`, its warnings (unseen categories) said as one line each, naming the file."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function()
    for warning in caught:
        print(f"warning: {str(warning.message).replace('X: ', path + ': ', 1)}", file=sys.stderr)
    return result


def _array_input(path, target, model):
    """(X, labels or None) from a .npy or .npz file or a built-in dataset's name."""
    source = tabular.read(path, target=target)
    return source.X, source.y


def _stored_drop(pipeline):
    """A pipeline that drops rows as the stored one did (impute drop), for --held-out to find them."""
    if pipeline.impute != "drop":
        return None
    again = Preprocessor(impute="drop", columns=pipeline.feature_names)
    return again

