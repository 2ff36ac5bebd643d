"""The user's files read into a `Dataset`: CSV/TSV with a header row and parquet (through pandas
and pyarrow, the extra `nn_xp[data]`), .npy (features only, memory-mapped) and .npz (members X and
optionally y). Missing values and text feature columns are imputed and one-hot encoded on request
(the encoding engine of columns.py), and `encode` repeats that on new data."""

from __future__ import annotations

import csv
import math
import os
import sys
import zipfile

import numpy as np

from ..files import check_readable
from ..validation import all_finite
from .columns import IMPUTE, encode_frame, first_row, is_text, to_numbers
from .dataset import Dataset
from .labels import MAX_INFERRED_CLASSES, plain
from .preprocessing import Preprocessor

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
FILE_SUFFIXES = TABLE_SUFFIXES + (".npy", ".npz")
# Files larger than this are announced on stderr while they load (load_file(progress=True)).
LARGE_FILE_BYTES = 50 * 2**20
SNIFF_BYTES = 64 * 1024

def load_file(
    path,
    target: str | None = None,
    task: str | None = None,
    *,
    delimiter: str | None = None,
    impute: str | None = None,
    one_hot: bool = False,
    progress: bool = False,
    targets=None,
) -> Dataset:
    """Read a dataset from a CSV, TSV, parquet, .npy or .npz file.

    - CSV/TSV (.csv, .tsv) and parquet (.parquet): a table read by pandas with the pyarrow engine
      (the `data` extra). The first CSV row names the columns; the delimiter is `delimiter`, or
      a tab for .tsv, or sniffed from the file's first 64 KB. `target` names the column holding y;
      every other column is a feature. The target may hold numbers or class names (kept in
      `class_names` in their own type, the name of the column in `target`).
    - .npy: features (a 1-D array is one feature, (n_samples, 1)); `targets` may name a second
      .npy holding y, one row per sample.
    - .npz: member "X" and optionally the target member (`target`, default "y": numbers or class
      names); no pickled objects.
    A float X from a .npy, or from an uncompressed .npz (np.savez), is memory-mapped read-only in
    its own dtype, never copied whole (a compressed member is read once, in its own dtype); integer
    features become float64. The NaN/inf check reads it in blocks.

    task: "classification" or "regression"; None infers it: text labels, integer dtypes, or at most
    MAX_INFERRED_CLASSES distinct integral values mean classification.
    impute: a table's missing feature values: None refuses them, "mean"/"median" fill each numeric
        column with its mean/median, "drop" drops the rows holding any (the target's included).
    one_hot: turn each text feature column into one 0/1 column per category ("color=red"), the
        categories in sorted order; without it a text feature column is refused.
    progress: say on stderr that a file over LARGE_FILE_BYTES is being read.

    With impute or one_hot, `Dataset.encoding` holds the statistics and categories; `encode`
    applies them to new data.

    Raises:
        FileNotFoundError: no such file. ImportError: a table without pandas/pyarrow. ValueError
        (starting with the path): an unreadable file, a text or missing cell (naming its column,
        its row and the option that accepts it), a missing target column (listing the columns).
    """
    path = os.fspath(path)
    if task not in (None, "classification", "regression"):
        raise ValueError(f"task must be None, 'classification' or 'regression', got {task!r}")
    if impute not in IMPUTE:
        raise ValueError(f"impute must be one of {list(IMPUTE)}, got {impute!r}")
    check_readable(path, "data file")  # a FIFO or a device would block or never end
    suffix = os.path.splitext(path)[1].lower()
    if suffix in TABLE_SUFFIXES:
        _pandas()
        _announce(path, progress)
        if suffix != ".parquet" and impute is None and not one_hot:
            fast = _read_numeric_csv(path, target, _delimiter(path, delimiter))
            if fast is not None:
                X, features, dtypes, y, text_labels = fast
                data = Dataset(X, None, None, None, features, f"read from {path}", os.path.basename(path))
                data.feature_dtypes = dtypes
                if y is not None:
                    data.target = target
                    _set_target(data, y, task, text_labels, path)
                return data
        frame = read_table(path, delimiter=delimiter)
        return _from_frame(frame, path, target, task, impute, one_hot)
    if impute is not None or one_hot:
        raise ValueError(f"{path}: impute= and one_hot= apply to tables (.csv, .tsv, .parquet), not {suffix!r}")
    if targets is not None and suffix != ".npy":
        raise ValueError(f"{path}: targets= names a .npy of targets for a .npy of features, not for a {suffix!r}")
    if suffix == ".npy":
        if target is not None:
            raise ValueError(f"{path}: a .npy file holds features only; target={target!r} needs a table or .npz")
        X, y = _read_npy(path), None
        if targets is not None:
            y = _read_targets(os.fspath(targets), X.shape[0], path)
    elif suffix == ".npz":
        X, y = _read_npz(path, target or "y")
    else:
        raise ValueError(f"{path}: unknown file type {suffix!r}; expected one of {list(FILE_SUFFIXES)}")
    features = [f"x{i}" for i in range(X.shape[1])]
    data = Dataset(X, None, None, None, features, f"read from {path}", os.path.basename(path))
    data.feature_dtypes = dict.fromkeys(features, str(X.dtype))
    if y is not None:
        data.target = None if suffix == ".npy" else (target or "y")
        _set_target(data, y, task, y.dtype.kind in "US", path)
    return data


def _pandas():
    try:
        import pandas
        import pyarrow  # noqa: F401  (the engine; imported here so that its absence is said now)
    except ImportError:
        raise ImportError(
            "reading CSV, TSV and parquet files needs pandas and pyarrow: pip install 'nn_xp[data]'"
        ) from None
    return pandas


def read_table(path, delimiter: str | None = None, progress: bool = False):
    """A CSV/TSV/parquet file as a pandas DataFrame (pyarrow engine), column names stripped."""
    pd = _pandas()
    path = check_readable(path, "data file")
    _announce(path, progress)
    parquet = path.lower().endswith(".parquet")
    delimiter = None if parquet else _delimiter(path, delimiter)
    try:
        if parquet:
            frame = pd.read_parquet(path, engine="pyarrow")
        else:
            frame = pd.read_csv(path, sep=delimiter, engine="pyarrow", encoding="utf-8-sig")
    except (ValueError, OSError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise _unreadable(path, error) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if not len(frame.columns) or not any(frame.columns):
        raise ValueError(f"{path}: no columns; expected a header row of column names")
    return frame


def _announce(path, progress: bool) -> None:
    size = os.path.getsize(path)
    if progress and size > LARGE_FILE_BYTES:
        print(f"reading {os.path.basename(path)} ({size / 2**20:.0f} MB)...", file=sys.stderr, flush=True)


def _unreadable(path, error) -> ValueError:
    if str(error).startswith(path):
        return error
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ValueError(f"{path}: not a readable table ({message})")


def _delimiter(path, delimiter) -> str:
    if delimiter is None:
        delimiter = "\t" if path.lower().endswith(".tsv") else _sniff_delimiter(path)
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError(f"delimiter must be one character, got {delimiter!r}")
    return delimiter


def _read_numeric_csv(path, target, delimiter):
    """The common case fast: a CSV/TSV of numbers with no missing cells, streamed block by block by
    pyarrow's CSV reader (the parser behind pandas' pyarrow engine) into one preallocated X, so the
    peak memory is about X itself, where a whole-file read holds the text, the table and X at once.

    Returns (X, feature names, {column: dtype}, y or None, whether y holds text), or None when the table
    needs the general path (a text or missing cell: that path names it and the options).
    """
    import pyarrow as pa
    import pyarrow.compute
    import pyarrow.csv

    with open(path, "rb") as handle:  # an upper bound of the rows: quoted line breaks only add to it
        lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 24), b"")) + 1
    parse = pyarrow.csv.ParseOptions(delimiter=delimiter)
    try:
        schema = pyarrow.csv.open_csv(path, parse_options=parse).schema  # types of the first block
        names = [str(c).strip() for c in schema.names]
        if (target is not None and target not in names) or len(set(names)) != len(names):
            return None
        types = {raw: pa.string() if name == target else pa.float64() for raw, name in zip(schema.names, names)}
        reader = pyarrow.csv.open_csv(
            # pyarrow's default 1 MB blocks: larger ones were slower here and held more memory ahead.
            path, parse_options=parse, convert_options=pyarrow.csv.ConvertOptions(column_types=types),
        )
        features = [i for i, name in enumerate(names) if name != target]
        X = np.empty((lines, len(features)), dtype=np.float64)
        at, labels = 0, []
        for batch in reader:
            rows = batch.num_rows
            if at + rows > len(X):  # line breaks other than \n ("\r" alone): the general path
                return None
            for j, i in enumerate(features):
                X[at : at + rows, j] = batch.column(i).to_numpy(zero_copy_only=False)
            if target is not None:
                labels.append(batch.column(names.index(target)))
            at += rows
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # text cells, ragged rows: the general path
        return None
    X = X[:at]
    if at == 0 or not np.all(np.isfinite(X)):
        return None
    dtypes = {names[i]: _arrow_dtype_name(schema.types[i]) for i in features}
    if target is None:
        return X, [names[i] for i in features], dtypes, None, False
    text = pa.chunked_array(labels, type=pa.string())
    if pyarrow.compute.any(pyarrow.compute.equal(pyarrow.compute.utf8_trim_whitespace(text), "")).as_py():
        return None  # a missing label: the general path says where
    for kind in (pa.int64(), pa.float64()):
        try:
            return X, [names[i] for i in features], dtypes, pyarrow.compute.cast(text, kind).to_numpy(), False
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    import pandas as pd

    y, text_labels = _target_values(pd.Series(text.to_numpy(zero_copy_only=False), dtype=object), path, target)
    return X, [names[i] for i in features], dtypes, y, text_labels


def _arrow_dtype_name(kind) -> str:
    try:
        return str(np.dtype(kind.to_pandas_dtype()))
    except (NotImplementedError, TypeError):
        return str(kind)


def _sniff_delimiter(path) -> str:
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        sample = handle.read(SNIFF_BYTES)
    if "\n" in sample[:-1]:
        sample = sample[: sample.rindex("\n")]  # whole lines only
    try:
        return csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
    except csv.Error:  # one column, or too little to tell
        return ","


def _from_frame(frame, path, target, task, impute, one_hot) -> Dataset:
    """A table read by `load_file`, encoded by the one engine the models use (columns.py)."""
    if target is not None and target not in frame.columns:
        raise ValueError(f"{path}: no target column {target!r}; the columns are {list(frame.columns)}")
    if len(frame) == 0:
        raise ValueError(f"{path}: no data rows after the header")
    if impute == "drop":
        pipeline = Preprocessor(impute="drop")
        features = pipeline.select(frame, path, target=target)
        keep = frame[features + ([target] if target is not None else [])].notna().all(axis=1).to_numpy()
        if not keep.any():
            raise ValueError(f"{path}: every row has a missing value; impute='drop' leaves nothing")
        if not keep.all():
            frame = frame[keep]
    pipeline = Preprocessor(impute=impute, one_hot=True if one_hot else None)
    pipeline.target = target
    X, _ = pipeline.fit_transform(frame.drop(columns=[target]) if target is not None else frame, where=path)
    columns = pipeline.feature_names
    data = Dataset(X, None, None, None, pipeline.feature_names_out, f"read from {path}", os.path.basename(path))
    data.feature_dtypes = {c: str(frame[c].dtype) for c in columns}
    data.encoding = None if impute is None and not one_hot else pipeline.encoding
    if target is not None:
        data.target = target
        y, text_labels = _target_values(frame[target], path, target)
        _set_target(data, y, task, text_labels, path)
    return data


def _target_values(column, path, target):
    """(y, text_labels): numbers as a NumPy array, or class names as strings."""
    missing = column.isna().to_numpy()
    if missing.any():
        raise ValueError(f"{path}: row {first_row(missing)}, column {target!r}: the target is missing "
                         "(impute='drop', --impute drop, drops such rows)")
    if not is_text(column):
        return column.to_numpy(), False
    numbers = to_numbers(column)
    parsed = numbers.notna().to_numpy()
    if parsed.any() and not parsed.all():
        row = first_row(~parsed)
        raise ValueError(
            f"{path}: row {row}, column {target!r}: cannot read {column.iloc[row - 1]!r} as a number "
            "(the column mixes numbers and text)"
        )
    labels = np.array([str(v).strip() for v in column.tolist()])
    if np.any(labels == ""):
        raise ValueError(f"{path}: row {first_row(labels == '')}, column {target!r}: empty cell")
    return labels, True


def encode(source, encoding: dict, *, target: str | None = None, task: str | None = None,
           delimiter: str | None = None, progress: bool = False) -> Dataset:
    """Apply a training file's `Dataset.encoding` to new data (a table path or a DataFrame).

    The encoded columns are `encoding["columns"]`, found by name (any order; other columns are
    ignored); missing values take the stored mean/median; text columns are one-hot encoded with the
    stored categories. A category not seen in training becomes an all-zero row of its column's
    block, with a UserWarning. Rows are never dropped: with strategy "drop", a missing value is an
    error. `target`, when given and present, is read as `load_file` reads it.

    Returns:
        Dataset: X (n_samples, n_encoded_features) float64 in the training file's column order.
    """
    if not isinstance(encoding, dict) or "columns" not in encoding:
        raise ValueError("encoding must be a dict with 'columns', as made by load_file (Dataset.encoding)")
    pd = _pandas()
    if isinstance(source, pd.DataFrame):
        frame, path = source, "the data"
    else:
        path = check_readable(source, "data file")
        if os.path.splitext(path)[1].lower() not in TABLE_SUFFIXES:
            raise ValueError(
                f"{path}: the model encodes table columns by name; give a table ({', '.join(TABLE_SUFFIXES)})"
            )
        frame = read_table(path, delimiter=delimiter, progress=progress)
    columns = list(encoding["columns"])
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise ValueError(f"{path}: no column {absent[0]!r} (the model was trained on {columns}); "
                         f"the columns are {list(frame.columns)}")
    if len(frame) == 0:
        raise ValueError(f"{path}: no data rows after the header")
    X, names = encode_frame(frame, columns, encoding, path)
    data = Dataset(X, None, None, None, names, f"read from {path}", os.path.basename(str(path)))
    data.feature_dtypes = {c: str(frame[c].dtype) for c in columns}
    data.encoding = encoding
    if target is not None and target in frame.columns:
        data.target = target
        y, text_labels = _target_values(frame[target], path, target)
        _set_target(data, y, task, text_labels, path)
    return data


def _read_npy(path) -> np.ndarray:
    try:
        # Memory-mapped: the rows are read from the file as they are used, never copied whole.
        X = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: not a readable .npy file ({error})") from None
    if not isinstance(X, np.ndarray):
        X.close()
        raise ValueError(f"{path}: an .npz archive, not a .npy array; name it .npz")
    return _as_features(X, path, "the array")


def _read_targets(path: str, n_samples: int, features_path) -> np.ndarray:
    """The targets .npy beside a features .npy, checked to hold one row per sample."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such targets file")
    try:
        y = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: not a readable .npy file of targets ({error})") from None
    if not isinstance(y, np.ndarray):
        y.close()
        raise ValueError(f"{path}: an .npz archive, not a .npy array of targets")
    if y.ndim not in (1, 2) or y.shape[0] != n_samples:
        raise ValueError(f"{path}: the targets must have one row per sample of {features_path} ({n_samples} rows), "
                         f"got shape {y.shape}")
    if y.dtype.kind not in "biufUS" or (y.dtype.kind in "US" and y.ndim != 1):
        raise ValueError(f"{path}: the targets must be numbers or class names (one per sample), got dtype "
                         f"{y.dtype} and shape {y.shape}")
    return np.asarray(y)  # small beside X, and turned into labels or floats anyway


def _npz_member(handle, archive, name: str):
    """A member of an open .npz: memory-mapped when stored uncompressed (what np.savez writes), else
    read once in its own dtype (a compressed member cannot be mapped)."""
    info = archive.zip.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return archive[name]
    # The member's bytes start after its local header: 30 fixed bytes, then its name and extra field.
    handle.seek(info.header_offset)
    local = handle.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise ValueError(f"member {name!r} has a damaged zip header")
    start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
    handle.seek(start)
    version = np.lib.format.read_magic(handle)
    if version not in ((1, 0), (2, 0)):
        return archive[name]
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read_header(handle)
    if dtype.hasobject:
        raise ValueError(f"member {name!r} holds Python objects, which would need pickle to load")
    if math.prod(shape) * dtype.itemsize > info.file_size - (handle.tell() - start):
        raise ValueError(f"member {name!r} declares shape {shape} but holds fewer bytes")
    if math.prod(shape) == 0:
        return np.empty(shape, dtype)
    return np.memmap(handle.name, dtype=dtype, mode="r", offset=handle.tell(), shape=shape,
                     order="F" if fortran_order else "C")


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
                X = _npz_member(handle, archive, "X")
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
    if X.dtype.kind != "f":
        return X.astype(np.float64)  # integers are always finite
    # In blocks of rows, never a float64 copy of the whole (possibly memory-mapped) array.
    if not all_finite(X):
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
    data.class_names = [str(c) if text_labels else plain(c) for c in classes]
