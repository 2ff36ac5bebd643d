"""Device strings: their grammar, and their resolution at the edge (with the dtype and the seed).

A device is a string: "cpu", "cuda", "cuda:N", or "auto" (resolved once, at the edge, by
`resolve_device`). Everything past the edge takes its namespace from the arrays at hand.
"array_api_strict" is an extra, test-only device: arrays from array-api-strict, on the host, which
reject anything outside the Array API standard.

A device may also name its array library (resolved names on the right):

    "numpy"                              -> "cpu"
    "cupy", "cupy:N"                     -> "cuda:0", "cuda:N"
    "torch:cpu", "torch:mps"             -> the same (PyTorch tensors, no autograd used)
    "torch:cuda", "torch:cuda:N"         -> "torch:cuda:N"
    "jax:cpu"; "jax:gpu", "jax:gpu:N"    -> the same; "jax:gpu:N"

PyTorch and JAX are imported only when one of their devices or arrays is met, as CuPy is
(`libraries.py`).
"""

from __future__ import annotations

import logging
import os
import re

import numpy as np

from .libraries import cuda_status, import_cupy, import_jax, library_status, unseen_reason
from .tf32 import apply_tf32

logger = logging.getLogger("nn_xp")

DTYPES = ("float32", "float64")
STRICT = "array_api_strict"
_DEVICE_RE = re.compile(r"^(cpu|auto|cuda(?::(\d+))?|array_api_strict)$")
_LIBRARY_RE = re.compile(r"^(numpy|cupy(?::(\d+))?|torch:(?:cpu|mps|cuda(?::(\d+))?)|jax:(?:cpu|gpu(?::(\d+))?))$")


def available_devices() -> list[str]:
    """["cpu"] plus one "cuda:N" per usable GPU, then the devices of PyTorch and JAX where they are
    installed and usable. Never raises."""
    count, _ = cuda_status()
    torch_devices, _ = library_status("torch")
    jax_devices, _ = library_status("jax")
    return ["cpu"] + [f"cuda:{index}" for index in range(count)] + list(torch_devices) + list(jax_devices)


def _installed() -> str:
    """The installed array libraries and their devices, for error messages."""
    count, _ = cuda_status()
    parts = ["numpy ('cpu' or 'numpy')", "array_api_strict ('array_api_strict')"]
    if count:
        parts.append("cupy ('cuda', 'cuda:N', 'cupy', 'cupy:N'; here " + ", ".join(
            f"'cuda:{index}'" for index in range(count)) + ")")
    for library in ("torch", "jax"):
        found = library_status(library)[0]
        if found:
            parts.append(f"{library} ({', '.join(repr(d) for d in found)})")
    return "; ".join(parts)


def library_of(device: str) -> str:
    """The array library of a resolved device: "numpy", "cupy", "torch", "jax" or "array_api_strict"."""
    if device.startswith(("torch:", "jax:")):
        return device.split(":")[0]
    return "cupy" if is_gpu(device) else ("numpy" if device == "cpu" else device)


def rank_device(local_rank: int) -> str:
    """The device for the process of `local_rank` on its machine: a GPU of its own, shared round
    robin when there are more processes than GPUs ("cuda:<local_rank mod GPUs>"), else "cpu"."""
    count = cuda_status()[0]
    return f"cuda:{local_rank % count}" if count else "cpu"


def default_device() -> str:
    """The device "auto" means: $NN_XP_DEVICE if set, else "cuda:0" when a GPU answers, else "cpu"."""
    override = os.environ.get("NN_XP_DEVICE", "").strip()
    if override and override != "auto":
        return resolve_device(override, parameter="NN_XP_DEVICE")
    count, why = cuda_status()
    if count:
        return "cuda:0"
    logger.debug("nn_xp: using the CPU because %s", why)
    return "cpu"


def resolve_device(device: str = "auto", parameter: str = "device") -> str:
    """Check a device string and make it concrete: "cpu", "cuda:N", "array_api_strict",
    "torch:cpu", "torch:cuda:N", "torch:mps", "jax:cpu" or "jax:gpu:N".

    Raises:
        ValueError: not a device string; the message lists the installed libraries and their devices.
        RuntimeError: a GPU was asked for and cannot be had, a library is not installed (the message
            names its extra) or does not see the device (the message gives the library's reason).
    """
    if not isinstance(device, str):
        raise TypeError(
            f"{parameter} must be a string such as 'auto', 'cpu', 'cuda' or 'cuda:0', "
            f"got {type(device).__name__}"
        )
    text = device.strip().lower()
    library = _LIBRARY_RE.match(text)
    if library is not None:
        return _resolve_library(text, parameter, device)
    match = _DEVICE_RE.match(text)
    if match is None:
        raise ValueError(
            f"{parameter} must be one of 'auto', 'cpu', 'cuda', 'cuda:N' (N a GPU index), or a device "
            f"of an array library; installed here: {_installed()}. Got {device!r}"
        )
    name = match.group(1)
    if name == "auto":
        return default_device()
    if name in ("cpu", STRICT):
        return name
    index = int(match.group(2) or 0)
    count, why = cuda_status()
    if count == 0:
        raise RuntimeError(f"{parameter}={device!r} cannot be used: {why}")
    if index >= count:
        raise RuntimeError(
            f"{parameter}={device!r} cannot be used: only {count} GPU(s) found (cuda:0..cuda:{count - 1})"
        )
    apply_tf32()
    return f"cuda:{index}"


def _resolve_library(text: str, parameter: str, device: str) -> str:
    """A device string that names its library ("numpy", "cupy:N", "torch:...", "jax:..."), resolved."""
    if text == "numpy":
        return "cpu"
    if text.startswith("cupy"):
        return resolve_device(text.replace("cupy", "cuda", 1), parameter)
    library, _, name = text.partition(":")
    found, why = library_status(library)
    if not found:
        raise RuntimeError(f"{parameter}={device!r} cannot be used: {why}")
    if name in ("cuda", "gpu"):
        name += ":0"
    concrete = f"{library}:{name}"
    if concrete in found:
        return concrete
    raise RuntimeError(f"{parameter}={device!r} cannot be used: {unseen_reason(library, name)}")


def resolve_dtype(dtype, parameter: str = "dtype") -> str:
    """Return "float32" or "float64" for a dtype name or object."""
    name = getattr(dtype, "__name__", None) or str(dtype)
    name = {"single": "float32", "double": "float64", "float": "float64"}.get(name, name)
    name = name.replace("numpy.", "").replace("cupy.", "")
    if name not in DTYPES:
        raise ValueError(f"{parameter} must be one of {list(DTYPES)}, got {dtype!r}")
    return name


def host_rng(seed=None) -> np.random.Generator:
    """All randomness comes from this host generator, so every device sees the same numbers."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be None or a non-negative integer, got {seed!r}")
    return np.random.default_rng(seed)


def namespace(device: str):
    """The array namespace (xp) for a device."""
    device = resolve_device(device)
    if device == "cpu":
        import array_api_compat.numpy

        return array_api_compat.numpy
    if device == STRICT:
        import array_api_strict

        return array_api_strict
    if device.startswith("torch:"):
        import array_api_compat.torch

        return array_api_compat.torch
    if device.startswith("jax:"):
        return import_jax().numpy  # JAX's own namespace is the Array API one
    import array_api_compat.cupy

    return array_api_compat.cupy


def is_gpu(device: str) -> bool:
    """True for a resolved device string that names a GPU (CuPy's arrays, memory of its own)."""
    return device.startswith("cuda")


def has_half_precision(device: str) -> bool:
    """True where the device's arrays have half-precision types (NumPy's and CuPy's; the Array API
    standard, and so array-api-strict, has none)."""
    return device == "cpu" or is_gpu(device)


def takes_sparse(device: str) -> bool:
    """True where the device's backend has sparse matrices (scipy.sparse, cupyx.scipy.sparse)."""
    return device == "cpu" or is_gpu(device)


def half_dtype(device: str, half: str):
    """The array dtype for `half` ("float16" or "bfloat16") on `device`'s backend.

    Raises:
        ImportError: bfloat16 without the ml_dtypes package.
        RuntimeError: bfloat16 on a GPU whose CuPy has no bfloat16 arrays.
    """
    if half == "float16":
        return np.float16
    try:
        import ml_dtypes
    except ImportError:
        raise ImportError("precision='mixed_bfloat16' needs bfloat16 from the ml_dtypes package "
                          "(NumPy >= 2.1.2, CuPy >= 14): pip install ml_dtypes") from None
    if is_gpu(device):
        cupy = import_cupy()
        try:
            cupy.zeros(1, dtype=ml_dtypes.bfloat16)
        except Exception as error:  # a CuPy without bfloat16 (before 14)
            raise RuntimeError(f"this CuPy ({cupy.__version__}) has no bfloat16 arrays ({error}); "
                               "use mixed_float16, or CuPy >= 14") from None
    return ml_dtypes.bfloat16


def device_context(device: str):
    """A context manager that makes `device` current for CuPy (a no-op elsewhere)."""
    if is_gpu(device):
        return import_cupy().cuda.Device(int(device.split(":")[1]))
    return _NullContext()


class _NullContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
