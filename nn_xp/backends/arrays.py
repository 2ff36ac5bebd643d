"""What an array is: its namespace and device, whether it lives in host memory or is sparse, and
what its namespace can do with integer words."""

from __future__ import annotations

import array_api_compat
import numpy as np

from .devices import STRICT
from .libraries import import_jax, jax_gpus


def is_host_array(x) -> bool:
    """True for a NumPy array (np.memmap included): host memory that NumPy reads and writes as it is."""
    return isinstance(x, np.ndarray)


def host_view(x):
    """x as a NumPy array sharing its memory: x itself for a NumPy array, Tensor.numpy() for a torch
    tensor in host memory; None for anything else (another device or library, a dtype NumPy lacks).
    Reading it costs no copy; it is written only where x may be."""
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_torch_array(x) and x.device.type == "cpu" and not x.requires_grad:
        try:
            return x.numpy()
        except (TypeError, RuntimeError):  # bfloat16, a conjugated or negative-bit view
            return None
    return None


def is_numpy(x) -> bool:
    return isinstance(x, (np.ndarray, np.generic))


def _backend_name(x) -> str:
    if is_numpy(x):
        return "numpy"
    if array_api_compat.is_cupy_array(x):
        return "cupy"
    module = type(x).__module__.split(".")[0]
    return module


def is_sparse(x) -> bool:
    """True for a scipy.sparse or cupyx.scipy.sparse matrix or array (without importing either)."""
    return type(x).__module__.startswith(("scipy.sparse", "cupyx.scipy.sparse")) and hasattr(x, "tocsr")


def get_namespace(*arrays):
    """The namespace shared by `arrays`; arrays from two backends raise TypeError naming both.

    A sparse matrix counts as its values' backend (scipy.sparse: NumPy; cupyx.scipy.sparse: CuPy).
    """
    arrays = [a.data if is_sparse(a) else a for a in arrays if a is not None and not isinstance(a, (int, float, bool))]
    names = sorted({_backend_name(a) for a in arrays})
    if len(names) > 1:
        raise TypeError(
            f"arrays from different backends cannot be mixed in one call: got {' and '.join(names)}; "
            "move them to one device first with nx.to_device"
        )
    return array_api_compat.array_namespace(*arrays)


def device_of(x) -> str:
    """The device string of an array: "cpu", "cuda:N", "array_api_strict", "torch:cpu",
    "torch:cuda:N", "torch:mps", "jax:cpu" or "jax:gpu:N"."""
    if array_api_compat.is_cupy_array(x):
        return f"cuda:{x.device.id}"
    if array_api_compat.is_torch_array(x):
        kind = x.device.type
        return f"torch:cuda:{x.device.index or 0}" if kind == "cuda" else f"torch:{kind}"
    if array_api_compat.is_jax_array(x):
        # A traced array (inside jax.jit) has no device of its own: jit runs it on JAX's default
        # device unless its inputs are committed to another one.
        where = getattr(x, "device", None) or import_jax().devices()[0]
        if where.platform == "cpu":
            return "jax:cpu"
        return f"jax:gpu:{jax_gpus(import_jax()).index(where)}"
    if is_numpy(x) or not hasattr(x, "__array_namespace__"):
        return "cpu"
    return STRICT


def _is_array_object(x) -> bool:
    """True for an array of a backend other than NumPy (CuPy's ndarray has no __array_namespace__)."""
    return (array_api_compat.is_cupy_array(x) or array_api_compat.is_torch_array(x)
            or (hasattr(x, "__array_namespace__") and not is_numpy(x)))


def is_host(x) -> bool:
    """True for data that lives in host memory as plain Python or NumPy objects."""
    return not _is_array_object(x)


def word_dtype(xp):
    """The integer dtype in which namespace `xp` does exact arithmetic on 32-bit words (values in
    [0, 2**32), no intermediate beyond): uint32, but int64 on PyTorch, whose uint32 tensors have
    no addition, shifts or comparisons on the CPU."""
    return xp.int64 if array_api_compat.is_torch_namespace(xp) else xp.uint32


def wide_words(xp) -> bool:
    """True where `xp` multiplies and shifts uint64 arrays whatever its settings (NumPy, CuPy,
    array-api-strict), so a 64-bit product of two words can be taken whole; PyTorch's uint64 has
    no shifts on the CPU, and JAX has no uint64 without x64."""
    return not (array_api_compat.is_torch_namespace(xp) or array_api_compat.is_jax_namespace(xp))
