"""The backends: everything in nn_xp that knows which array library or device it is on.

- `devices.py`: device strings, their grammar and their resolution at the edge (with the dtype
  and the seed), each device's namespace and what it offers (half precision, sparse matrices);
- `libraries.py`: CuPy, PyTorch and JAX imported lazily, the devices each sees or why none;
- `arrays.py`: what an array is (its namespace, its device, host or not, sparse or not);
- `transfers.py`: arrays moved between devices and libraries (DLPack), to NumPy, sparse to CSR;
- `memory.py`: memory queries and checks, out-of-memory recognition;
- `tf32.py`: whether CuPy's float32 matrix products may use TF32;
- `ops.py`: `Ops`, the standard version of every array primitive (Array API functions only);
- `jax_ops.py`: JAX's compiler (jax.jit, jax.lax.scan) for pure training steps;
- `numpy_ops.py` (with `_native.c`, the compiled loops built by setup.py), `cupy_ops.py` (with
  `cupy_kernels.cu`, the fused CUDA kernels) and `torch_ops.py` (torch's in-place and `out=`
  functions): what each backend does faster;
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

from .arrays import (
    device_of,
    get_namespace,
    host_view,
    is_host,
    is_host_array,
    is_sparse,
    wide_words,
    word_dtype,
)
from .cupy_ops import CupyOps
from .devices import (
    DTYPES,
    STRICT,
    available_devices,
    default_device,
    device_context,
    half_dtype,
    has_half_precision,
    host_rng,
    is_gpu,
    library_of,
    namespace,
    rank_device,
    resolve_device,
    resolve_dtype,
    takes_sparse,
)
from .jax_ops import JaxOps
from .libraries import cuda_status, cupy_version, library_status, library_version
from .memory import check_memory, free_memory, is_out_of_memory, memory_bytes
from .numpy_ops import NumpyOps
from .ops import FlatList, Ops
from .tf32 import apply_tf32, set_tf32, tf32_enabled
from .torch_ops import TorchOps
from .transfers import sparse_csr, to_device, to_numpy


@functools.cache
def _ops_for_namespace(xp) -> Ops:
    if array_api_compat.is_numpy_namespace(xp):
        return NumpyOps(xp)
    if array_api_compat.is_cupy_namespace(xp):
        return CupyOps(xp)
    if array_api_compat.is_jax_namespace(xp):
        return JaxOps(xp)
    if array_api_compat.is_torch_namespace(xp):
        return TorchOps(xp)
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
    "TorchOps",
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
    "host_view",
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
