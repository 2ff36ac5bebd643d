"""The array libraries beside NumPy: CuPy, PyTorch and JAX. Each is imported lazily, only when one
of its devices or arrays is met (a machine without it must not notice); here are the devices each
sees, or why it sees none, and their versions."""

from __future__ import annotations

import functools

EXTRAS = {"torch": "pip install 'nn_xp[torch]'", "jax": "pip install 'nn_xp[jax]'"}


def import_cupy():
    """Import CuPy lazily: a machine without it must not notice."""
    import cupy

    return cupy


@functools.cache
def cuda_status() -> tuple[int, str]:
    """Return (number of usable GPUs, why none is usable or "ok"). Never raises."""
    try:
        cupy = import_cupy()
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


def import_torch():
    """Import PyTorch lazily, as CuPy."""
    import torch

    return torch


def import_jax():
    """Import JAX lazily, as CuPy."""
    import jax

    return jax


@functools.cache
def library_status(library: str) -> tuple[tuple[str, ...], str]:
    """(the devices of "torch" or "jax" usable here, "ok" or why the library is not). Never raises."""
    try:
        module = import_torch() if library == "torch" else import_jax()
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
        return ("jax:cpu",) + tuple(f"jax:gpu:{index}" for index in range(len(jax_gpus(module)))), "ok"
    except Exception as error:
        return (), f"{library} is installed but unusable ({error.__class__.__name__}: {error})"


def jax_gpus(jax) -> list:
    try:
        return jax.devices("gpu")
    except RuntimeError:  # "Unknown backend: 'gpu' requested, but no platforms ... are present"
        return []


def unseen_reason(library: str, name: str) -> str:
    """The library's own reason why it does not see device `name` ("cuda:N", "mps", "gpu:N")."""
    kind, _, index = name.partition(":")
    if library == "torch":
        torch = import_torch()
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
    jax = import_jax()
    try:
        gpus = jax.devices("gpu")
    except RuntimeError as error:
        return f"JAX sees no GPU ({error})"
    return f"JAX sees only {len(gpus)} GPU(s) (jax:gpu:0..jax:gpu:{len(gpus) - 1}), not index {index}"


def library_version(library: str) -> str:
    """The version of "torch" or "jax", or "not installed". Never raises."""
    try:
        return (import_torch() if library == "torch" else import_jax()).__version__
    except Exception:
        return "not installed"


def cupy_version() -> str:
    """CuPy's version, or "not installed". Never raises."""
    try:
        return import_cupy().__version__
    except Exception:
        return "not installed"
