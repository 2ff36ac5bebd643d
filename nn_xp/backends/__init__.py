"""The backends: everything in nn_xp that knows which array library or device it is on.

- `devices.py`: device strings, array namespaces and transfers, memory queries, out-of-memory
  recognition, the half-precision types, TF32;
- `ops.py`: `Ops`, the standard version of every array primitive (Array API functions only);
- `jax_ops.py`: JAX's compiler (jax.jit, jax.lax.scan) for pure training steps;
- `numpy_ops.py` (with `_native.c`, the compiled loops built by setup.py) and `cupy_ops.py` (with
  `cupy_kernels.cu`, the fused CUDA kernels): what each backend does faster;
- `host_batches.py`: batches copied from host memory to a GPU through pinned buffers on a second
  stream (streaming);
- `nccl.py`: NCCL's collectives between GPUs (distributed training).

Code outside this package asks the functions below or an ops object (`ops_for(xp)`), never an
array's type. The package imports nothing else of nn_xp, and this module sits above the ops
modules, which import only their siblings, so no import runs in a circle. CuPy is imported only
when a GPU is asked for; PyTorch and JAX only when one of their devices is.
"""

from __future__ import annotations

import functools

import array_api_compat

from .cupy_ops import CupyOps
from .devices import (
    DTYPES,
    STRICT,
    apply_tf32,
    available_devices,
    check_memory,
    cuda_status,
    cupy_version,
    default_device,
    device_context,
    device_of,
    free_memory,
    get_namespace,
    half_dtype,
    has_half_precision,
    host_rng,
    is_gpu,
    is_host,
    is_host_array,
    is_out_of_memory,
    is_sparse,
    library_of,
    library_status,
    library_version,
    memory_bytes,
    namespace,
    rank_device,
    resolve_device,
    resolve_dtype,
    set_tf32,
    sparse_csr,
    takes_sparse,
    tf32_enabled,
    to_device,
    to_numpy,
    wide_words,
    word_dtype,
)
from .jax_ops import JaxOps
from .numpy_ops import NumpyOps
from .ops import FlatList, Ops


@functools.cache
def _ops_for_namespace(xp) -> Ops:
    if array_api_compat.is_numpy_namespace(xp):
        return NumpyOps(xp)
    if array_api_compat.is_cupy_namespace(xp):
        return CupyOps(xp)
    if array_api_compat.is_jax_namespace(xp):
        return JaxOps(xp)
    return Ops(xp)


def ops_for(xp) -> Ops:
    """The ops object for namespace `xp`: the one place where a backend's faster idiom is chosen."""
    return _ops_for_namespace(xp)


def placement(x):
    """x's device as its namespace's creation functions take it (`device=`): None for an array
    traced by a compiler (jax.jit), which has no device of its own, and lets the function place it."""
    return array_api_compat.device(x)


def ops_of(*arrays) -> Ops:
    """The ops object for the arrays' shared namespace (see `get_namespace`)."""
    return ops_for(get_namespace(*arrays))


__all__ = [
    "DTYPES",
    "STRICT",
    "CupyOps",
    "FlatList",
    "JaxOps",
    "NumpyOps",
    "Ops",
    "apply_tf32",
    "available_devices",
    "check_memory",
    "cuda_status",
    "cupy_version",
    "default_device",
    "device_context",
    "device_of",
    "free_memory",
    "get_namespace",
    "half_dtype",
    "has_half_precision",
    "host_rng",
    "is_gpu",
    "is_host",
    "is_host_array",
    "is_out_of_memory",
    "is_sparse",
    "library_of",
    "library_status",
    "library_version",
    "memory_bytes",
    "namespace",
    "ops_for",
    "ops_of",
    "placement",
    "rank_device",
    "resolve_device",
    "resolve_dtype",
    "set_tf32",
    "sparse_csr",
    "takes_sparse",
    "tf32_enabled",
    "to_device",
    "to_numpy",
    "wide_words",
    "word_dtype",
]
