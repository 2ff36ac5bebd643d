"""Devices, array namespaces and transfers; memory queries and out-of-memory recognition.

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

PyTorch and JAX are imported only when one of their devices or arrays is met, as CuPy is. JAX
keeps float64 only with its `jax_enable_x64` switch: moving a float64 array onto a JAX device
(a float64 model there, say) turns the switch on for the process and says so in one log line.
"""

from __future__ import annotations

import functools
import logging
import os
import re

import array_api_compat
import numpy as np

logger = logging.getLogger("nn_xp")

DTYPES = ("float32", "float64")
STRICT = "array_api_strict"
_DEVICE_RE = re.compile(r"^(cpu|auto|cuda(?::(\d+))?|array_api_strict)$")
_LIBRARY_RE = re.compile(r"^(numpy|cupy(?::(\d+))?|torch:(?:cpu|mps|cuda(?::(\d+))?)|jax:(?:cpu|gpu(?::(\d+))?))$")
EXTRAS = {"torch": "pip install 'nn_xp[torch]'", "jax": "pip install 'nn_xp[jax]'"}


def _cupy():
    """Import CuPy lazily: a machine without it must not notice."""
    import cupy

    return cupy


@functools.cache
def cuda_status() -> tuple[int, str]:
    """Return (number of usable GPUs, why none is usable or "ok"). Never raises."""
    try:
        cupy = _cupy()
    except Exception as error:  # ImportError, or a broken CuPy install
        return 0, (
            f"CuPy is not installed ({error.__class__.__name__}: {error}); install the extra that "
            "matches your driver: pip install 'nn_xp[cuda12]' or 'nn_xp[cuda13]'"
        )
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:
        text = str(error)
        if "InsufficientDriver" in text or "driver version is insufficient" in text.lower():
            return 0, f"the NVIDIA driver is too old for this CuPy build ({text})"
        return 0, f"no CUDA GPU answers ({text})"
    if count == 0:
        return 0, "no CUDA GPU found"
    try:  # a GPU that is listed but cannot run a kernel is no GPU
        with cupy.cuda.Device(0):
            int(cupy.arange(2).sum())
    except Exception as error:
        text = str(error)
        if "InsufficientDriver" in text or "driver version is insufficient" in text.lower():
            return 0, f"the NVIDIA driver is too old for this CuPy build ({text})"
        return 0, f"CUDA GPU found but unusable ({text})"
    return count, "ok"


def _torch():
    """Import PyTorch lazily, as CuPy."""
    import torch

    return torch


def _jax():
    """Import JAX lazily, as CuPy."""
    import jax

    return jax


@functools.cache
def library_status(library: str) -> tuple[tuple[str, ...], str]:
    """(the devices of "torch" or "jax" usable here, "ok" or why the library is not). Never raises."""
    try:
        module = _torch() if library == "torch" else _jax()
    except Exception as error:  # ImportError, or a broken install
        return (), f"{library} is not installed ({error.__class__.__name__}: {error}); {EXTRAS[library]}"
    try:
        if library == "torch":
            found = ["torch:cpu"]
            if module.cuda.is_available():
                found += [f"torch:cuda:{index}" for index in range(module.cuda.device_count())]
            if module.backends.mps.is_available():
                found.append("torch:mps")
            return tuple(found), "ok"
        return ("jax:cpu",) + tuple(f"jax:gpu:{index}" for index in range(len(_jax_gpus(module)))), "ok"
    except Exception as error:
        return (), f"{library} is installed but unusable ({error.__class__.__name__}: {error})"


def _jax_gpus(jax) -> list:
    try:
        return jax.devices("gpu")
    except RuntimeError:  # "Unknown backend: 'gpu' requested, but no platforms ... are present"
        return []


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
    raise RuntimeError(f"{parameter}={device!r} cannot be used: {_unseen_reason(library, name)}")


def _unseen_reason(library: str, name: str) -> str:
    """The library's own reason why it does not see device `name` ("cuda:N", "mps", "gpu:N")."""
    kind, _, index = name.partition(":")
    if library == "torch":
        torch = _torch()
        if kind == "mps":
            if not torch.backends.mps.is_built():
                return "this PyTorch build has no MPS support (torch.backends.mps.is_built() is False; MPS is " \
                       "the GPU of Apple silicon Macs)"
            return "torch.backends.mps.is_available() is False (MPS needs macOS 12.3 or later on Apple silicon)"
        if torch.version.cuda is None:
            return f"this PyTorch build ({torch.__version__}) has no CUDA support (torch.version.cuda is None)"
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return "torch.cuda.is_available() is False: no CUDA GPU or driver answers"
        return f"PyTorch sees only {count} GPU(s) (torch:cuda:0..torch:cuda:{count - 1})"
    jax = _jax()
    try:
        gpus = jax.devices("gpu")
    except RuntimeError as error:
        return f"JAX sees no GPU ({error})"
    return f"JAX sees only {len(gpus)} GPU(s) (jax:gpu:0..jax:gpu:{len(gpus) - 1}), not index {index}"


def resolve_dtype(dtype, parameter: str = "dtype") -> str:
    """Return "float32" or "float64" for a dtype name or object."""
    name = getattr(dtype, "__name__", None) or str(dtype)
    name = {"single": "float32", "double": "float64", "float": "float64"}.get(name, name)
    name = name.replace("numpy.", "").replace("cupy.", "")
    if name not in DTYPES:
        raise ValueError(f"{parameter} must be one of {list(DTYPES)}, got {dtype!r}")
    return name


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
        return _jax().numpy  # JAX's own namespace is the Array API one
    import array_api_compat.cupy

    return array_api_compat.cupy


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


def is_host_array(x) -> bool:
    """True for a NumPy array (np.memmap included): host memory that NumPy reads and writes as it is."""
    return isinstance(x, np.ndarray)


def _is_numpy(x) -> bool:
    return isinstance(x, (np.ndarray, np.generic))


def _backend_name(x) -> str:
    if _is_numpy(x):
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
    "torch:cuda:N", "torch:mps", "jax:cpu" or "jax:gpu:N" ("jax" for one traced by jax.jit)."""
    if array_api_compat.is_cupy_array(x):
        return f"cuda:{x.device.id}"
    if array_api_compat.is_torch_array(x):
        kind = x.device.type
        return f"torch:cuda:{x.device.index or 0}" if kind == "cuda" else f"torch:{kind}"
    if array_api_compat.is_jax_array(x):
        where = array_api_compat.device(x)
        if where is None:  # traced by jax.jit: placed where the compiled program runs
            return "jax"
        if where.platform == "cpu":
            return "jax:cpu"
        return f"jax:gpu:{_jax_gpus(_jax()).index(where)}"
    if _is_numpy(x) or not hasattr(x, "__array_namespace__"):
        return "cpu"
    return STRICT


def _is_array_object(x) -> bool:
    """True for an array of a backend other than NumPy (CuPy's ndarray has no __array_namespace__)."""
    return (array_api_compat.is_cupy_array(x) or array_api_compat.is_torch_array(x)
            or (hasattr(x, "__array_namespace__") and not _is_numpy(x)))


def is_host(x) -> bool:
    """True for data that lives in host memory as plain Python or NumPy objects."""
    return not _is_array_object(x)


def to_numpy(x) -> np.ndarray:
    """A NumPy copy of any array-like on the host."""
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):
        return np.array(x.detach().cpu().numpy(), copy=True)  # .cpu(): from cuda or mps too
    if array_api_compat.is_jax_array(x):
        return np.array(x, copy=True)
    if _is_array_object(x):
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
        if _is_numpy(x):
            return np.asarray(x)
        if array_api_compat.is_torch_array(x) and x.device.type == "cpu":
            return x.detach().numpy()  # shares the tensor's memory
        return to_numpy(x) if _is_array_object(x) else np.asarray(x)
    if device == STRICT:
        import array_api_strict

        host = x if isinstance(x, np.ndarray) else to_numpy(x)
        return array_api_strict.asarray(np.array(host, copy=True, order="C"))  # never share host memory
    cupy = _cupy()
    index = int(device.split(":")[1])
    if array_api_compat.is_cupy_array(x) and x.device.id == index:
        return x
    with cupy.cuda.Device(index):
        if device_of(x) in (f"torch:cuda:{index}", f"jax:gpu:{index}"):
            return cupy.from_dlpack(x)
        host = x if (_is_numpy(x) or array_api_compat.is_cupy_array(x)) else to_numpy(x)
        return cupy.asarray(host)


def _host_array(x) -> np.ndarray:
    """x as a NumPy array (a copy for another library's array)."""
    return np.asarray(x) if not _is_array_object(x) else to_numpy(x)


def _to_torch(x, device: str):
    torch = _torch()
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
    jax = _jax()
    target = jax.devices("cpu")[0] if device == "jax:cpu" else _jax_gpus(jax)[int(device.rsplit(":", 1)[1])]
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


def memory_bytes(device: str) -> int | None:
    """Total memory of `device` in bytes (host RAM for the CPU backends), or None when unknown."""
    try:
        if device.startswith("cuda"):
            with _cupy().cuda.Device(int(device.split(":")[1])):
                return int(_cupy().cuda.runtime.memGetInfo()[1])
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except Exception:
        return None


def free_memory(device: str) -> int | None:
    """Bytes a new array could take on a GPU `device` now: the GPU's free memory plus what CuPy's
    memory pool holds unused. None for the CPU backends, or when unknown."""
    if not device.startswith("cuda"):
        return None
    try:
        cupy = _cupy()
        with cupy.cuda.Device(int(device.split(":")[1])):
            return int(cupy.cuda.runtime.memGetInfo()[0]) + int(cupy.get_default_memory_pool().free_bytes())
    except Exception:
        return None


def is_out_of_memory(error: BaseException) -> bool:
    """True for an exception that says an allocation failed: MemoryError, or CuPy's OutOfMemoryError
    (recognised by name, so that CuPy need not be imported to ask)."""
    return isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"


def check_memory(host_bytes: int, device: str, device_bytes: int, what: str) -> None:
    """Raise MemoryError, before anything is allocated, when `host_bytes` cannot fit in the host's
    memory or, for a GPU device, `device_bytes` in the GPU's.

    Allocating more than a machine has does not always fail at once: where the operating system
    overcommits memory, filling such an array can run for a long time before the process is killed.
    """
    places = [("host", "cpu", host_bytes)] + ([("GPU", device, device_bytes)] if is_gpu(device) else [])
    for place, where, needed in places:
        total = memory_bytes(where)
        if total is not None and needed > total:
            raise MemoryError(
                f"{what} need {needed / 2**30:,.1f} GiB but the {place} has {total / 2**30:,.1f} GiB in all"
            )


def device_context(device: str):
    """A context manager that makes `device` current for CuPy (a no-op elsewhere)."""
    if is_gpu(device):
        return _cupy().cuda.Device(int(device.split(":")[1]))
    return _NullContext()


class _NullContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


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
        cupy = _cupy()
        try:
            cupy.zeros(1, dtype=ml_dtypes.bfloat16)
        except Exception as error:  # a CuPy without bfloat16 (before 14)
            raise RuntimeError(f"this CuPy ({cupy.__version__}) has no bfloat16 arrays ({error}); "
                               "use mixed_float16, or CuPy >= 14") from None
    return ml_dtypes.bfloat16


def library_version(library: str) -> str:
    """The version of "torch" or "jax", or "not installed". Never raises."""
    try:
        return (_torch() if library == "torch" else _jax()).__version__
    except Exception:
        return "not installed"


def cupy_version() -> str:
    """CuPy's version, or "not installed". Never raises."""
    try:
        return _cupy().__version__
    except Exception:
        return "not installed"


def host_rng(seed=None) -> np.random.Generator:
    """All randomness comes from this host generator, so every device sees the same numbers."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be None or a non-negative integer, got {seed!r}")
    return np.random.default_rng(seed)


_TF32 = {"enabled": None}


def tf32_enabled() -> bool:
    """Whether float32 matrix products on CUDA may use TF32 tensor cores (off unless asked for)."""
    if _TF32["enabled"] is None:
        return os.environ.get("NN_XP_TF32", "0").strip().lower() in ("1", "true", "yes", "on")
    return _TF32["enabled"]


def set_tf32(enabled: bool) -> None:
    """Allow (True) or forbid (False, the default) TF32 in CuPy's float32 matrix products.

    TF32 keeps 10 mantissa bits in the products: about 3x faster matrix work on Ampere and
    Hopper GPUs, at a relative error near 1e-3 instead of 1e-7. The environment variable
    NN_XP_TF32=1 turns it on for a whole run. It has no effect on the CPU.
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True or False, got {enabled!r}")
    _TF32["enabled"] = enabled
    apply_tf32()


def apply_tf32() -> None:
    """Push the TF32 choice into CuPy, if CuPy is loaded (called whenever a GPU is resolved)."""
    if cuda_status()[0] == 0:
        return
    try:
        from cupy._core import _routines_linalg as linalg
    except ImportError:  # a CuPy without this hook: it then follows CUPY_TF32 (default off)
        return
    mode = linalg.COMPUTE_TYPE_TF32 if tf32_enabled() else linalg.COMPUTE_TYPE_DEFAULT
    linalg.set_compute_type(np.float32, mode)
    linalg.set_compute_type(np.complex64, mode)
