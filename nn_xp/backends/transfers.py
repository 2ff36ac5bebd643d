"""Moving arrays: onto any device (between array libraries through DLPack where they can share
memory), to a NumPy copy, and sparse matrices to CSR on their device.

JAX keeps float64 only with its `jax_enable_x64` switch: moving a float64 array onto a JAX device
(a float64 model there, say) turns the switch on for the process and says so in one log line.
"""

from __future__ import annotations

import logging

import array_api_compat
import numpy as np

from .arrays import device_of, is_host, is_numpy
from .devices import STRICT, device_context, is_gpu, resolve_device
from .libraries import import_cupy, import_jax, import_torch, jax_gpus

logger = logging.getLogger("nn_xp")


def to_numpy(x) -> np.ndarray:
    """A NumPy copy of any array-like on the host."""
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):
        return np.array(x.detach().cpu().numpy(), copy=True)  # .cpu(): from cuda or mps too
    if array_api_compat.is_jax_array(x):
        return np.array(x, copy=True)
    if not is_host(x):
        return np.array(np.from_dlpack(x), copy=True)
    return np.array(x, copy=True)


def to_device(x, device: str = "auto"):
    """Any array-like (list, NumPy, CuPy, array-api-strict, PyTorch, JAX) onto `device`, keeping its
    dtype (JAX without x64 aside: see the module's docstring).

    Between two libraries the array goes through DLPack (`from_dlpack`) where both can share its
    memory (PyTorch and JAX on the host, CuPy, PyTorch and JAX on one GPU), else through a host
    copy. Arrays that NumPy may write in place are never shared with JAX, whose buffers are
    immutable: a JAX array onto "cpu", and NumPy arrays onto a JAX device, are copied.
    """
    device = resolve_device(device)
    if device.startswith("torch:"):
        return _to_torch(x, device)
    if device.startswith("jax:"):
        return _to_jax(x, device)
    if device == "cpu":
        if is_numpy(x):
            return np.asarray(x)
        if array_api_compat.is_torch_array(x) and x.device.type == "cpu":
            return x.detach().numpy()  # shares the tensor's memory
        return to_numpy(x) if not is_host(x) else np.asarray(x)
    if device == STRICT:
        import array_api_strict

        host = x if isinstance(x, np.ndarray) else to_numpy(x)
        return array_api_strict.asarray(np.array(host, copy=True, order="C"))  # never share host memory
    cupy = import_cupy()
    index = int(device.split(":")[1])
    if array_api_compat.is_cupy_array(x) and x.device.id == index:
        return x
    with cupy.cuda.Device(index):
        if device_of(x) in (f"torch:cuda:{index}", f"jax:gpu:{index}"):
            return cupy.from_dlpack(x)
        host = x if (is_numpy(x) or array_api_compat.is_cupy_array(x)) else to_numpy(x)
        return cupy.asarray(host)


def _host_array(x) -> np.ndarray:
    """x as a NumPy array (a copy for another library's array)."""
    return np.asarray(x) if is_host(x) else to_numpy(x)


def _to_torch(x, device: str):
    torch = import_torch()
    target = torch.device(device.split(":", 1)[1])
    if device == "torch:mps" and str(getattr(x, "dtype", "")).endswith("float64"):
        raise TypeError("torch:mps has no float64 (Apple's GPUs compute in float32 at most); use "
                        "dtype='float32' there, or 'torch:cpu' for float64")
    if array_api_compat.is_torch_array(x):
        return x.detach().to(target)
    if (array_api_compat.is_jax_array(x) or array_api_compat.is_cupy_array(x)) and _same_memory(device_of(x), device):
        return torch.from_dlpack(x)  # no copy: jax:cpu -> torch:cpu, or within one GPU
    host = _host_array(x)
    if host.dtype.kind not in "biufc":
        raise TypeError(f"only numeric arrays can be moved to {device!r}, got dtype {host.dtype}")
    if not host.flags.writeable or not host.flags.c_contiguous:
        host = np.array(host, order="C")  # PyTorch shares only writeable, contiguous memory
    return torch.from_numpy(host).to(target)


def _to_jax(x, device: str):
    jax = import_jax()
    target = jax.devices("cpu")[0] if device == "jax:cpu" else jax_gpus(jax)[int(device.rsplit(":", 1)[1])]
    dtype = str(x.dtype).rsplit(".", 1)[-1] if hasattr(x, "dtype") else str(np.asarray(x).dtype)
    if dtype in ("float64", "complex128") and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
        logger.info("nn_xp: %s arrays on %s: turning on jax_enable_x64 for this process (without it JAX "
                    "has no 64-bit floats)", dtype, device)
    if array_api_compat.is_jax_array(x):
        return jax.device_put(x, target)
    if (array_api_compat.is_torch_array(x) or array_api_compat.is_cupy_array(x)) and _same_memory(device_of(x), device):
        return jax.device_put(jax.numpy.from_dlpack(x.detach() if hasattr(x, "detach") else x), target)
    # A copy: on the CPU JAX may alias the NumPy array it is given, which NumPy could write later.
    return jax.device_put(np.array(_host_array(x), copy=True, order="C"), target)


def _memory_of(device: str) -> str:
    """Where a resolved device's arrays live: "host", "gpu:N", or "mps"."""
    if device in ("cpu", STRICT, "torch:cpu", "jax:cpu"):
        return "host"
    return "mps" if device == "torch:mps" else f"gpu:{device.rsplit(':', 1)[1]}"


def _same_memory(source: str, target: str) -> bool:
    """True where DLPack can hand an array of `source` to `target`'s library without a copy."""
    return _memory_of(source) == _memory_of(target) != "mps"


def sparse_csr(X, dtype: str, device: str):
    """A scipy.sparse or cupyx.scipy.sparse X as a CSR matrix of `dtype` on `device` ("cpu" or a
    GPU), converting only its nonzero values: X is never made dense."""
    if device == "cpu" and type(X).__module__.startswith("cupyx"):
        X = X.get()
    with np.errstate(over="ignore"):
        X = X.tocsr().astype(dtype, copy=False)
    if is_gpu(device):
        import cupyx.scipy.sparse

        with device_context(device):
            X = cupyx.scipy.sparse.csr_matrix(X)  # from scipy: copied to the GPU; from cupyx: kept
    return X
