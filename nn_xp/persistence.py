"""Saving and loading models: one .npz file, written atomically, read without pickle.

The file is a NumPy .npz archive (a zip of .npy members) holding
    param_0 ... param_{k-1}   the parameters [W1, b1, W2, b2, ...] in the model's dtype;
    opt_<key>_<i>             the optimizer's state arrays (e.g. opt_m_0, opt_v_3);
    meta                      UTF-8 JSON text as a 1-D uint8 array: the architecture, dtype, seed,
                              preprocessing, optimizer hyperparameters and step count, the training
                              history and the host random generator's state.
Any zip/NumPy reader can open it; nothing in it needs pickle, and loading never executes code.

Big integers (the generator's 128-bit state) are stored as decimal strings and non-finite floats
as "nan"/"inf"/"-inf", so the JSON is strict and any JSON reader can parse it.

`save` writes to a temporary file in the target's folder, fsyncs it and renames it over the
target, so a crash or error mid-save leaves any previous file intact. The path is used exactly as
given: unlike `np.savez`, no ".npz" is appended.

`load` checks everything against what the file really holds before building anything: each
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
import tempfile
import zipfile
import zlib

import numpy as np

from . import backend
from .model import MLP

FORMAT_VERSION = 1
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
def save(model: MLP, path) -> str:
    """Write `model` to `path` (one .npz file, atomically) and return the path.

    Parent folders are created. The path is used as given (no ".npz" is appended).

    Raises:
        TypeError / ValueError: `path` is not a file path.
        PermissionError / OSError: the folder is not writable, the disk is full, ...; the message
            names the path, and any previous file at `path` is left intact.
    """
    path = _check_path(path)
    arrays = {
        f"param_{i}": backend.to_numpy(p).astype(model.dtype, copy=False) for i, p in enumerate(model.parameters())
    }
    optimizer = None
    if model.optimizer is not None:
        state = model.optimizer.state_dict()
        counts = {}
        for key, values in state["state"].items():
            if not isinstance(key, str) or not _KEY_RE.match(key):
                raise ValueError(f"optimizer state key {key!r} cannot be stored (letters, digits and '_' only)")
            counts[key] = len(values)
            for i, value in enumerate(values):
                arrays[f"opt_{key}_{i}"] = np.asarray(value)
        optimizer = {
            "name": state["name"],
            "label": getattr(model.optimizer, "label", None) or state["name"],
            "hyperparameters": state["hyperparameters"],
            "step_count": int(state["step_count"]),
            "learning_rate": float(model.optimizer.learning_rate),
            "initial_learning_rate": float(
                getattr(model.optimizer, "initial_learning_rate", model.optimizer.learning_rate)
            ),
            "state": counts,
        }
    history = None
    if model.history is not None:
        history = {
            "history": {str(k): list(v) for k, v in model.history.history.items()},
            "epoch": [int(e) for e in model.history.epoch],
            "stop_reason": model.history.stop_reason,
        }
    from . import __version__

    meta = {
        "format_version": FORMAT_VERSION,
        "nn_xp_version": __version__,
        "layer_sizes": [int(s) for s in model.layer_sizes],
        "activation": model.activation,
        "output_activation": model.output_activation,
        "init": model.init,
        "dtype": model.dtype,
        "seed": model.seed if isinstance(model.seed, numbers.Integral) and not isinstance(model.seed, bool) else None,
        "preprocessing": model.preprocessing,
        "loss": model.loss,
        "optimizer": optimizer,
        "history": history,
        "rng": _to_json(model.rng.bit_generator.state),
    }
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


def _explained(error: OSError, path: str) -> OSError:
    """The same kind of OSError, its message naming the model file (errno kept)."""
    if error.errno is None:
        return error
    return type(error)(error.errno, f"{path}: cannot write the model file ({error.strerror})")


def _write_atomically(path: str, arrays: dict) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(
            dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp", delete=False
        )
    except OSError as error:
        if error.errno is None:
            raise
        raise type(error)(error.errno, f"{path}: cannot write the model file there ({error.strerror})") from error
    try:
        try:
            with handle:
                # Through the open file: np.savez would append ".npz" to a str path.
                np.savez(handle, **arrays)
                handle.flush()
                os.fsync(handle.fileno())
            # NamedTemporaryFile makes the file owner-only (0600); give it the usual mode of a new
            # file (or keep the mode of the file it replaces).
            mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o644
            os.chmod(handle.name, mode)
            os.replace(handle.name, path)
        except OSError as error:  # disk full, a folder in the way, ...: say which file
            explained = _explained(error, path)
            if explained is error:
                raise
            raise explained from error
    except BaseException:
        try:
            os.unlink(handle.name)
        except OSError:
            pass
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        try:
            descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        except OSError:
            pass


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


def load(path, device=None) -> MLP:
    """Read a model written by `save` onto `device` (None: `nn_xp.default_device()`).

    Restores the parameters, preprocessing, optimizer (state, step count, label), training history
    and the host random generator, so `fit` continues exactly where it stopped.

    Raises:
        FileNotFoundError: no such file.
        ValueError (message starting with the path): not an nn_xp model file, written by a newer
            nn_xp, or inconsistent (shapes, dtypes, names, sizes); nothing is built from it.
    """
    path = _check_path(path)
    device = backend.resolve_device("auto" if device is None else device)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such model file")
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a folder, not an nn_xp model file")
    try:
        meta, params, opt_state = _read(path)
        return _build(meta, params, opt_state, device)
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
                f"member {_short(key)} is stored uncompressed but claims {info.file_size} bytes from {info.compress_size}"
            )
    if "meta" not in infos:
        raise _Refused("not an nn_xp model file (no 'meta' member)")
    shape, dtype = _header(archive.zip, infos["meta"], "meta")
    if dtype != np.uint8 or len(shape) > 1 or math.prod(shape) > _MAX_META_BYTES:
        raise _Refused(f"member 'meta' must be UTF-8 JSON as a 1-D uint8 array, got {dtype} of shape {shape}")
    meta = _parse_meta(bytes(archive["meta"]))
    sizes = meta["layer_sizes"]
    expected = {}
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        expected[f"param_{2 * l}"] = (n_out, n_in)
        expected[f"param_{2 * l + 1}"] = (n_out,)
    state_names = {}
    if meta["optimizer"] is not None:
        for key, count in meta["optimizer"]["state"].items():
            for i in range(count):
                state_names[f"opt_{key}_{i}"] = expected.get(f"param_{i}")
    unexpected = sorted(set(infos) - {"meta"} - set(expected) - set(state_names))
    if unexpected:
        shown = ", ".join(_short(name) for name in unexpected[:5]) + (", ..." if len(unexpected) > 5 else "")
        raise _Refused(f"unexpected members [{shown}] (not written by nn_xp.save)")
    missing = sorted((set(expected) | set(state_names)) - set(infos))
    if missing:
        raise _Refused(f"missing members {missing} for layer_sizes {sizes}")
    dtype = np.dtype(meta["dtype"])
    for name in list(expected) + list(state_names):
        shape, stored = _header(archive.zip, infos[name], name)
        want = expected.get(name, state_names.get(name))
        if shape != want:
            raise _Refused(f"member {name!r} has shape {shape}, but layer_sizes {sizes} needs {want}")
        if stored.kind != "f" or stored.newbyteorder("=") != dtype:
            raise _Refused(f"member {name!r} has dtype {stored}, but the model's dtype is {meta['dtype']}")
    params = [np.ascontiguousarray(archive[name], dtype=dtype) for name in expected]
    opt_state = None
    if meta["optimizer"] is not None:
        opt_state = {
            key: [np.ascontiguousarray(archive[f"opt_{key}_{i}"], dtype=dtype) for i in range(count)]
            for key, count in meta["optimizer"]["state"].items()
        }
    return meta, params, opt_state


def _header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str):
    """(shape, dtype) from a member's .npy header, checked against the bytes the zip declares."""
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > _MAX_DEFLATE_RATIO * max(info.compress_size, 1):
        raise _Refused(f"member {name!r} claims {info.file_size} bytes from {info.compress_size} compressed ones")
    with zf.open(info) as stream:
        try:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
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
    required = ("layer_sizes", "activation", "output_activation", "init", "dtype", "rng")
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
    activation = meta["activation"]
    if not isinstance(activation, list) or len(activation) != len(sizes) - 2:
        raise _Refused(f"activation must list one spec per hidden layer ({len(sizes) - 2}), got {activation!r}")
    for spec in activation + [meta["output_activation"]]:
        if not isinstance(spec, (str, dict)):
            raise _Refused(f"bad activation spec {spec!r}")
    seed = meta.get("seed")
    if isinstance(seed, str) and re.fullmatch(r"\d{1,1000}", seed):  # seeds >= 2**53 are stored as text
        seed = meta["seed"] = int(seed)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise _Refused(f"seed must be null or a non-negative integer, got {seed!r}")
    preprocessing = meta.get("preprocessing")
    if preprocessing is not None and not isinstance(preprocessing, dict):
        raise _Refused(f"preprocessing must be an object or null, got {type(preprocessing).__name__}")
    meta["optimizer"] = _check_optimizer_meta(meta.get("optimizer"), len(sizes) - 1)
    meta["history"] = _check_history_meta(meta.get("history"))
    return meta


def _check_optimizer_meta(optimizer, n_layers: int):
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
        if not _KEY_RE.match(key) or isinstance(count, bool) or not isinstance(count, int) or count != 2 * n_layers:
            raise _Refused(
                f"optimizer state {key!r} must hold one array per parameter ({2 * n_layers}), got {count!r}"
            )
    return optimizer


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


def _build(meta, params, opt_state, device) -> MLP:
    """The model from checked metadata and arrays: built on the host, then moved to `device`."""
    from .optim import get_optimizer
    from .training import History

    try:
        # The shapes were checked against the stored arrays, so this allocates nothing the file
        # does not hold; seed=0 keeps the throwaway initial draw off the OS entropy pool.
        model = MLP(
            meta["layer_sizes"],
            activation=meta["activation"],
            output_activation=meta["output_activation"],
            init=meta["init"],
            dtype=meta["dtype"],
            device="cpu",
            seed=0,
        )
    except (ValueError, TypeError) as error:
        raise _Refused(str(error)) from None
    model.seed = meta.get("seed")
    model.rng = _rng_from_json(meta["rng"])
    model.set_parameters(params)
    model.preprocessing = meta.get("preprocessing")
    saved_loss = meta.get("loss")
    if saved_loss is not None:
        from .losses import check_loss

        try:
            model.loss = check_loss(saved_loss, model.output_activation)
        except ValueError as error:
            raise _Refused(f"bad loss record: {error}") from None
    saved = meta["optimizer"]
    if saved is not None:
        try:
            # The class default first: a schedule may have left the saved rate at 0, which the
            # constructor refuses but the restored optimizer may hold.
            optimizer = get_optimizer(saved["name"], model.parameters())
            optimizer.load_state_dict(
                {
                    "name": saved["name"],
                    "hyperparameters": saved["hyperparameters"],
                    "step_count": saved["step_count"],
                    "state": opt_state,
                }
            )
            if saved.get("learning_rate") is not None:
                optimizer.learning_rate = saved["learning_rate"]
        except (ValueError, TypeError) as error:
            raise _Refused(f"bad optimizer record: {error}") from None
        optimizer.label = saved.get("label") or saved["name"]
        if isinstance(saved.get("initial_learning_rate"), (int, float)):
            optimizer.initial_learning_rate = float(saved["initial_learning_rate"])
        model.optimizer = optimizer
    history = meta["history"]
    if history is not None:
        model.history = History(history=history["history"], epoch=history["epoch"], stop_reason=history["stop_reason"])
    return model.to(device)
