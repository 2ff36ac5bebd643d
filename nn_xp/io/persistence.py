"""Saving and loading models: one .npz file, written atomically, read without pickle.

The file is a NumPy .npz archive (a zip of .npy members) holding
    param_0 ... param_{k-1}   the parameters [W1, b1, W2, b2, ...] in the model's dtype;
    buffer_0 ...              the layers' buffers (BatchNorm's running statistics), in layer order
                              (files written before buffers have none: the layers' initial ones);
    opt_<key>_<i>             the optimizer's state arrays (e.g. opt_m_0, opt_v_3);
    meta                      UTF-8 JSON text as a 1-D uint8 array: the architecture, dtype, seed,
                              preprocessing, optimizer hyperparameters and step count, the training
                              history and the host random generator's state.
Any zip/NumPy reader can open it; nothing in it needs pickle, and loading never executes code.

Big integers (the generator's 128-bit state) are stored as decimal strings and non-finite floats
as "nan"/"inf"/"-inf", so the JSON is strict and any JSON reader can parse it.

`save` writes through `files.atomic_write`: a temporary file in the target's folder, fsynced and
renamed over the target, so a crash or error mid-save leaves any previous file intact. The path is used exactly as
given: unlike `np.savez`, no ".npz" is appended.

`read` checks everything against what the file really holds before anything is built: each
member's .npy header (shape, dtype) is read and compared with the declared architecture first,
and no array is allocated from a size the file does not back with data.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import struct
import zipfile
import zlib

import numpy as np

from .. import backends as backend
from .. import files

# 1: an MLP (layer_sizes, activation, init); 2 adds dropout and Sequential models (layers, param_shapes).
FORMAT_VERSION = 2
_MAX_META_BYTES = 64 * 2**20
# Deflate cannot expand data more than about 1032:1, so a member claiming more is lying.
_MAX_DEFLATE_RATIO = 1100
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# What reading a damaged archive can raise: zipfile raises NotImplementedError for unknown
# compression methods or zip versions and RuntimeError for encrypted members; zlib and struct
# errors come from corrupt compressed data and headers.
_DAMAGE = (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, RuntimeError, zlib.error,
           struct.error)


# ---- save ----------------------------------------------------------------------------------
def save(model, path) -> str:
    """Write `model` to `path` (one .npz file, atomically) and return the path.

    Parent folders are created. The path is used as given (no ".npz" is appended).

    Raises:
        TypeError / ValueError: `path` is not a file path, or a custom layer is not registered.
        PermissionError / OSError: the folder is not writable, the disk is full, ...; the message
            names the path, and any previous file at `path` is left intact.
    """
    path = _check_path(path)
    state = model.state_dict()
    arrays = {f"param_{i}": p for i, p in enumerate(state["params"])}
    arrays.update({f"buffer_{i}": b for i, b in enumerate(state["buffers"])})
    optimizer = state["optimizer"]
    if optimizer is not None:
        counts = {}
        for key, values in optimizer["state"].items():
            if not isinstance(key, str) or not _KEY_RE.match(key):
                raise ValueError(f"optimizer state key {key!r} cannot be stored (letters, digits and '_' only)")
            counts[key] = len(values)
            for i, value in enumerate(values):
                arrays[f"opt_{key}_{i}"] = np.asarray(value)
        optimizer = dict(optimizer, state=counts)
    from .._version import __version__

    architecture = dict(state["architecture"])
    output = architecture["output_activation"]
    if isinstance(output, dict) and len(output) == 1:  # a plain name, as format 1 wrote it
        architecture["output_activation"] = output["name"]
    meta = {
        "format_version": FORMAT_VERSION,
        "nn_xp_version": __version__,
        **architecture,
        "param_shapes": [list(p.shape) for p in state["params"]],
        "buffer_shapes": [list(b.shape) for b in state["buffers"]],
        "dtype": state["dtype"],
        "seed": state["seed"],
        "dropout_key": state["dropout_key"],
        "preprocessing": state["preprocessing"],
        "loss": state["loss"],
        "l2": state["l2"],
        "schema": state["schema"],
        "loss_scaler": state["loss_scaler"],
        "optimizer": optimizer,
        "history": state["history"],
        "rng": _to_json(state["rng"]),
    }
    if "layers" in architecture:  # a Sequential: its widths, for reading tools
        meta["layer_sizes"] = [int(s) for s in model.layer_sizes]
    text = json.dumps(_to_json(meta), allow_nan=False, sort_keys=True)
    arrays["meta"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    _write_atomically(path, arrays)
    return path


def _check_path(path) -> str:
    if not isinstance(path, (str, bytes)) and not hasattr(path, "__fspath__"):
        raise TypeError(f"path must be a file path (str or os.PathLike), got {type(path).__name__}")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path:
        raise ValueError("path must be a file path, got an empty string")
    return path


def _write_atomically(path: str, arrays: dict) -> None:
    with files.atomic_write(path, what="model file") as handle:
        # Through the open file: np.savez would append ".npz" to a str path.
        np.savez(handle, **arrays)


def _to_json(value):
    """JSON-ready copy: NumPy values to Python, big ints to strings, non-finite floats to strings."""
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return _to_json(value.tolist())
    if isinstance(value, np.generic):
        return _to_json(value.item())
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        value = int(value)
        return value if abs(value) < 2**53 else str(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    raise TypeError(f"cannot store {type(value).__name__} {value!r} in the model file's metadata")


def _float_from_json(value):
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    return value


# ---- load ----------------------------------------------------------------------------------
class _Refused(ValueError):
    """Raised inside `load`; re-raised as a ValueError whose message starts with the path."""


def read(path) -> dict:
    """The state a model file holds, checked, as `Sequential.from_state_dict` takes it.

    `nn_xp.load` builds the model from it (models/mlp.py); this module reads and writes arrays and
    metadata only, and knows no model class.

    Raises:
        FileNotFoundError: no such file.
        ValueError (message starting with the path): not an nn_xp model file, written by a newer
            nn_xp, or inconsistent (shapes, dtypes, names, sizes); nothing is built from it.
    """
    path = files.check_readable(_check_path(path), "model file")  # a FIFO or a device would block or never end
    try:
        meta, params, opt_state = _read(path)
        return _state(meta, params, opt_state)
    except _Refused as error:
        raise ValueError(f"{path}: {error}") from None


def _read(path):
    """(meta dict, parameter arrays, optimizer state) after checking every member's header."""
    # Our own handle, so the file is closed even when np.load fails half way.
    with open(path, "rb") as handle:
        try:
            archive = np.load(handle, allow_pickle=False)
        except _DAMAGE as error:
            raise _Refused(f"not an nn_xp model file (not a readable .npz archive: {error})") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise _Refused("not an nn_xp model file (a single .npy array, not an .npz archive)")
        with archive:
            return _read_archive(archive, os.fstat(handle.fileno()).st_size)


def _read_archive(archive, file_size: int):
    """The checked members; any low-level read error means a damaged file."""
    try:
        return _checked_members(archive, file_size)
    except _Refused:
        raise
    except _DAMAGE as error:
        raise _Refused(f"damaged model file ({type(error).__name__}: {error})") from None


def _short(name: str, limit: int = 80) -> str:
    """A member name for an error message: repr'd, and cut short if absurdly long."""
    return repr(name) if len(name) <= limit else f"{name[:limit]!r}... ({len(name)} characters)"


def _checked_members(archive, file_size: int):
    """Member names and .npy headers checked against the metadata first; only then any array read."""
    infos = {}
    for info in archive.zip.infolist():
        if not info.filename.endswith(".npy"):
            raise _Refused(f"unexpected member {_short(info.filename)} (only .npy arrays belong in a model file)")
        key = info.filename[: -len(".npy")]
        if key in infos:
            raise _Refused(f"member {_short(info.filename)} appears twice")
        infos[key] = info
    # Members must not overlap or claim more bytes than the file has (an overlapping-member zip
    # bomb makes a small file declare many large arrays); stored members hold exactly their bytes.
    stored = sum(info.compress_size for info in infos.values())
    if stored > file_size:
        raise _Refused(f"members claim {stored} bytes in all, but the file has only {file_size}")
    for key, info in infos.items():
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise _Refused(
                f"member {_short(key)} is stored uncompressed but claims {info.file_size} bytes "
                f"from {info.compress_size}"
            )
    if "meta" not in infos:
        raise _Refused("not an nn_xp model file (no 'meta' member)")
    shape, dtype = _header(archive.zip, infos["meta"], "meta")
    if dtype != np.uint8 or len(shape) > 1 or math.prod(shape) > _MAX_META_BYTES:
        raise _Refused(f"member 'meta' must be UTF-8 JSON as a 1-D uint8 array, got {dtype} of shape {shape}")
    meta = _parse_meta(bytes(archive["meta"]))
    sizes = meta["layer_sizes"]
    expected = {f"param_{i}": tuple(shape) for i, shape in enumerate(meta["param_shapes"])}
    buffer_names = {f"buffer_{i}": tuple(shape) for i, shape in enumerate(meta["buffer_shapes"])}
    state_names = {}
    if meta["optimizer"] is not None:
        for key, count in meta["optimizer"]["state"].items():
            for i in range(count):
                state_names[f"opt_{key}_{i}"] = expected.get(f"param_{i}")
    unexpected = sorted(set(infos) - {"meta"} - set(expected) - set(state_names) - set(buffer_names))
    if unexpected:
        shown = ", ".join(_short(name) for name in unexpected[:5]) + (", ..." if len(unexpected) > 5 else "")
        raise _Refused(f"unexpected members [{shown}] (not written by nn_xp.save)")
    missing = sorted((set(expected) | set(state_names) | set(buffer_names)) - set(infos))
    if missing:
        raise _Refused(f"missing members {missing} for layer_sizes {sizes}")
    dtype = np.dtype(meta["dtype"])
    for name in list(expected) + list(state_names) + list(buffer_names):
        shape, stored = _header(archive.zip, infos[name], name)
        want = expected.get(name, state_names.get(name, buffer_names.get(name)))
        if shape != want:
            raise _Refused(f"member {name!r} has shape {shape}, but layer_sizes {sizes} needs {want}")
        if stored.kind != "f" or stored.newbyteorder("=") != dtype:
            raise _Refused(f"member {name!r} has dtype {stored}, but the model's dtype is {meta['dtype']}")
    params = [np.ascontiguousarray(archive[name], dtype=dtype) for name in expected]
    for name, p in zip(expected, params):
        if not np.all(np.isfinite(p)):  # such a model predicts nonsense (NaN probabilities, class 0)
            raise _Refused(f"member {name!r} holds NaN or infinite weights; the model cannot predict")
    buffers = [np.ascontiguousarray(archive[name], dtype=dtype) for name in buffer_names]
    for name, b in zip(buffer_names, buffers):
        if not np.all(np.isfinite(b)):
            raise _Refused(f"member {name!r} holds NaN or infinite values; the model cannot predict")
    opt_state = None
    if meta["optimizer"] is not None:
        opt_state = {
            key: [np.ascontiguousarray(archive[f"opt_{key}_{i}"], dtype=dtype) for i in range(count)]
            for key, count in meta["optimizer"]["state"].items()
        }
    meta["buffers"] = buffers
    return meta, params, opt_state


def _header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str):
    """(shape, dtype) from a member's .npy header, checked against the bytes the zip declares."""
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > _MAX_DEFLATE_RATIO * max(info.compress_size, 1):
        raise _Refused(f"member {name!r} claims {info.file_size} bytes from {info.compress_size} compressed ones")
    with zf.open(info) as stream:
        try:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, _fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, _fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise _Refused(f"member {name!r} uses .npy format {version}, which nn_xp does not write")
        except _Refused:
            raise
        except ValueError as error:
            raise _Refused(f"member {name!r} is not a valid .npy array ({error})") from None
        header_bytes = stream.tell()
    if dtype.hasobject:
        raise _Refused(f"member {name!r} holds Python objects, which would need pickle to load; refused")
    if dtype.kind not in "biuf":
        raise _Refused(f"member {name!r} has non-numeric dtype {dtype}")
    shape = tuple(int(s) for s in shape)
    # The header's shape is only a claim: it must be backed by the member's bytes before anything
    # of that size is allocated.
    if header_bytes + math.prod(shape) * dtype.itemsize > info.file_size:
        raise _Refused(
            f"member {name!r} declares shape {shape} ({math.prod(shape) * dtype.itemsize} bytes) "
            f"but holds only {info.file_size - header_bytes} bytes"
        )
    return shape, dtype


def _parse_meta(raw: bytes) -> dict:
    """The metadata, checked for types and sizes; refuses what this version cannot read."""
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _Refused(f"member 'meta' is not valid UTF-8 JSON ({error})") from None
    except RecursionError:
        raise _Refused("member 'meta' nests JSON too deeply to be an nn_xp model file") from None
    if not isinstance(meta, dict):
        raise _Refused("member 'meta' must be a JSON object")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _Refused(f"not an nn_xp model file (format_version {version!r})")
    if version > FORMAT_VERSION:
        raise _Refused(
            f"written by a newer nn_xp (format {version}); this version reads up to {FORMAT_VERSION}. "
            "Upgrade nn_xp to load it"
        )
    sequential = "layers" in meta
    required = ("layers" if sequential else "activation", "output_activation", "dtype", "rng", "layer_sizes")
    required += () if sequential else ("init",)
    missing = [key for key in required if key not in meta]
    if missing:
        raise _Refused(f"member 'meta' lacks {missing}")
    sizes = meta["layer_sizes"]
    if (
        not isinstance(sizes, list)
        or len(sizes) < 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes)
    ):
        raise _Refused(f"layer_sizes must be a list of at least two positive integers, got {sizes!r}")
    if meta["dtype"] not in backend.DTYPES:
        raise _Refused(f"dtype must be one of {list(backend.DTYPES)}, got {meta['dtype']!r}")
    if sequential:
        if not isinstance(meta["layers"], list) or not all(isinstance(spec, dict) for spec in meta["layers"]):
            raise _Refused(f"layers must be a list of layer specs, got {meta['layers']!r}")
        activation = []
    else:
        activation = meta["activation"]
        if not isinstance(activation, list) or len(activation) != len(sizes) - 2:
            raise _Refused(f"activation must list one spec per hidden layer ({len(sizes) - 2}), got {activation!r}")
    for spec in activation + [meta["output_activation"]]:
        if not isinstance(spec, (str, dict)):
            raise _Refused(f"bad activation spec {spec!r}")
    shapes = meta.get("param_shapes")
    norm = meta.get("norm")
    if norm not in (None, "batch", "layer"):
        raise _Refused(f"norm must be null, 'batch' or 'layer', got {norm!r}")
    if not sequential:  # [W1, b1, ...] from the layer sizes (format 1 stores nothing else)
        derived = [shape for n_in, n_out in zip(sizes[:-1], sizes[1:]) for shape in ([n_out, n_in], [n_out])]
        if norm is not None:  # each hidden layer's W, b, then its norm's weight and bias
            derived = [shape for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))
                       for shape in ([n_out, n_in], [n_out]) + (([n_out], [n_out]) if i < len(sizes) - 2 else ())]
        if shapes is not None and shapes != derived:
            raise _Refused(f"param_shapes {shapes!r} do not match layer_sizes {sizes}")
        shapes = derived
    if not isinstance(shapes, list) or not all(
        isinstance(shape, list) and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
        for shape in shapes
    ):
        raise _Refused(f"param_shapes must be a list of shapes (lists of positive integers), got {shapes!r}")
    meta["param_shapes"] = shapes
    buffer_shapes = meta.get("buffer_shapes", [])
    if not isinstance(buffer_shapes, list) or not all(
        isinstance(shape, list) and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
        for shape in buffer_shapes
    ):
        raise _Refused(f"buffer_shapes must be a list of shapes (lists of positive integers), got {buffer_shapes!r}")
    meta["buffer_shapes"] = buffer_shapes
    key = meta.get("dropout_key")
    if key is not None and (
        not isinstance(key, list) or len(key) != 2
        or not all(isinstance(k, int) and not isinstance(k, bool) and 0 <= k < 2**32 for k in key)
    ):
        raise _Refused(f"dropout_key must be two 32-bit integers, got {key!r}")
    seed = meta.get("seed")
    if isinstance(seed, str) and re.fullmatch(r"\d{1,1000}", seed):  # seeds >= 2**53 are stored as text
        seed = meta["seed"] = int(seed)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise _Refused(f"seed must be null or a non-negative integer, got {seed!r}")
    preprocessing = meta.get("preprocessing")
    if preprocessing is not None and not isinstance(preprocessing, dict):
        raise _Refused(f"preprocessing must be an object or null, got {type(preprocessing).__name__}")
    meta["optimizer"] = _check_optimizer_meta(meta.get("optimizer"), len(shapes))
    meta["history"] = _check_history_meta(meta.get("history"))
    return meta


def _check_optimizer_meta(optimizer, n_params: int):
    if optimizer is None:
        return None
    required = ("name", "hyperparameters", "step_count", "state")
    if not isinstance(optimizer, dict) or not all(key in optimizer for key in required):
        raise _Refused("optimizer must hold name, hyperparameters, step_count and state")
    if not isinstance(optimizer["name"], str) or not isinstance(optimizer["hyperparameters"], dict):
        raise _Refused(f"bad optimizer name or hyperparameters: {optimizer['name']!r}")
    state = optimizer["state"]
    if not isinstance(state, dict):
        raise _Refused("optimizer state must map names to array counts")
    for key, count in state.items():
        if not _KEY_RE.match(key) or isinstance(count, bool) or not isinstance(count, int) or count != n_params:
            raise _Refused(
                f"optimizer state {key!r} must hold one array per parameter ({n_params}), got {count!r}"
            )
    return optimizer


def _check_schema(schema):
    """The stored schema, its kinds checked (its sizes are checked against the network later)."""
    if schema is None:
        return None
    if not isinstance(schema, dict):
        raise _Refused(f"schema must be an object, got {type(schema).__name__}")
    for key in ("feature_names", "classes"):
        value = schema.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, (str, int, float, bool))
                                                                      for v in value)):
            raise _Refused(f"schema {key} must be a list of names or labels, got {value!r}")
    if schema.get("target") is not None and not isinstance(schema["target"], str):
        raise _Refused(f"schema target must be a column name, got {schema['target']!r}")
    if schema.get("split") is not None and not isinstance(schema["split"], dict):
        raise _Refused("schema split must be an object")
    return schema


def _check_history_meta(history):
    if history is None:
        return None
    if not isinstance(history, dict) or not isinstance(history.get("history"), dict):
        raise _Refused("history must be an object with a 'history' dict")
    records = {}
    for key, values in history["history"].items():
        if not isinstance(values, list):
            raise _Refused(f"history[{key!r}] must be a list")
        records[key] = [_float_from_json(v) for v in values]
    epoch = history.get("epoch", [])
    if not isinstance(epoch, list) or not all(isinstance(e, int) and not isinstance(e, bool) for e in epoch):
        raise _Refused("history epoch must be a list of integers")
    stop_reason = history.get("stop_reason")
    if stop_reason is not None and not isinstance(stop_reason, str):
        raise _Refused("history stop_reason must be a string or null")
    return {"history": records, "epoch": epoch, "stop_reason": stop_reason}


def _rng_from_json(state) -> np.random.Generator:
    """A Generator in the saved state; only NumPy's own bit generators, chosen from a fixed list."""
    if not isinstance(state, dict) or state.get("bit_generator") not in _BIT_GENERATORS:
        name = state.get("bit_generator") if isinstance(state, dict) else state
        raise _Refused(f"rng bit_generator must be one of {list(_BIT_GENERATORS)}, got {name!r}")
    bit_generator = getattr(np.random, state["bit_generator"])()

    def ints(value):  # big integers were stored as decimal strings
        if isinstance(value, dict):
            return {k: ints(v) for k, v in value.items()}
        if isinstance(value, list):
            return [ints(v) for v in value]
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            return int(value)
        return value

    try:
        bit_generator.state = ints(state)
    except (TypeError, ValueError, KeyError, OverflowError) as error:
        raise _Refused(f"bad rng state ({error})") from None
    return np.random.Generator(bit_generator)


def _state(meta, params, opt_state) -> dict:
    """The model's state from checked metadata and arrays."""
    if "layers" in meta:
        architecture = {"layers": meta["layers"], "output_activation": meta["output_activation"]}
    else:
        architecture = {key: meta[key] for key in ("layer_sizes", "activation", "output_activation", "init")}
        architecture["dropout"] = meta.get("dropout") or 0.0
        if meta.get("norm") is not None:
            architecture["norm"] = meta["norm"]
    optimizer = meta["optimizer"]
    if optimizer is not None:
        optimizer = dict(optimizer, state=opt_state)
    return {
        "architecture": architecture,
        "dtype": meta["dtype"],
        "seed": meta.get("seed"),
        "dropout_key": meta.get("dropout_key"),
        "params": params,
        "buffers": meta.get("buffers") or [],
        "preprocessing": meta.get("preprocessing"),
        "loss": meta.get("loss"),
        "l2": meta.get("l2"),
        "schema": _check_schema(meta.get("schema")),
        "loss_scaler": meta.get("loss_scaler"),
        "optimizer": optimizer,
        "history": meta["history"],
        "rng": _rng_from_json(meta["rng"]),
    }
