"""Memory: how much a device has and has free, checks before a large allocation, and the
recognition of out-of-memory errors."""

from __future__ import annotations

import os

from .devices import is_gpu
from .libraries import import_cupy


def memory_bytes(device: str) -> int | None:
    """Total memory of `device` in bytes (host RAM for the CPU backends), or None when unknown."""
    try:
        if device.startswith("cuda"):
            with import_cupy().cuda.Device(int(device.split(":")[1])):
                return int(import_cupy().cuda.runtime.memGetInfo()[1])
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except Exception:
        return None


def free_memory(device: str) -> int | None:
    """Bytes a new array could take on a GPU `device` now: the GPU's free memory plus what CuPy's
    memory pool holds unused. None for the CPU backends, or when unknown."""
    if not device.startswith("cuda"):
        return None
    try:
        cupy = import_cupy()
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
