"""Fast paths for backends with mutable arrays (NumPy, CuPy), beside the standard-only code.

The standard code (model.py, optim.py) runs everywhere, array-api-strict included. Where the
backend allows it, three things make training faster without changing a single result:
- the parameters (and the gradients the fit loop gets, and the optimizer state) are views into
  one flat buffer each, so an optimizer step is a dozen array operations, whatever the depth;
- forward and backward work in place (`out=`, `*=`) where the standard code would allocate;
- on NumPy, a large flat optimizer update is split across threads (NumPy releases the GIL).
tests/test_fast.py checks that each fast path gives the standard path's numbers.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import array_api_compat

# Below this many elements a thread hand-off costs more than it saves.
_THREAD_MIN = 1 << 16


def is_mutable(xp) -> bool:
    """True for the namespaces whose arrays support out= and in-place updates (NumPy, CuPy)."""
    return array_api_compat.is_numpy_namespace(xp) or array_api_compat.is_cupy_namespace(xp)


def raw(xp):
    """The module behind a compat namespace (numpy or cupy), for out= and in-place calls."""
    if array_api_compat.is_numpy_namespace(xp):
        import numpy

        return numpy
    import cupy

    return cupy


class FlatList(list):
    """A list of arrays that may be consecutive views of one flat buffer (`self.flat`).

    It is an ordinary list to its users; `is_packed()` says whether its elements are still the
    views (assigning a new array to an element unlinks it, and the code falls back to the
    standard path).
    """

    flat = None
    views: tuple = ()

    def is_packed(self) -> bool:
        return self.flat is not None and len(self) == len(self.views) and all(
            a is b for a, b in zip(self, self.views)
        )


def pack(arrays, xp) -> FlatList:
    """A FlatList holding copies of `arrays` as views of one new flat buffer."""
    result = FlatList()
    total = sum(_size(a) for a in arrays)
    flat = xp.empty((total,), dtype=arrays[0].dtype) if not array_api_compat.is_cupy_namespace(xp) else None
    if flat is None:  # CuPy: allocate on the arrays' device
        with array_api_compat.device(arrays[0]):
            flat = xp.empty((total,), dtype=arrays[0].dtype)
    views, offset = [], 0
    for a in arrays:
        view = flat[offset : offset + _size(a)].reshape(a.shape)
        view[...] = a
        views.append(view)
        offset += _size(a)
    result.extend(views)
    result.flat, result.views = flat, tuple(views)
    return result


def empty_like_packed(packed: FlatList, xp) -> FlatList:
    """A FlatList of uninitialised arrays shaped like `packed`, in a flat buffer of its own."""
    result = FlatList()
    flat = xp.empty_like(packed.flat)
    views, offset = [], 0
    for a in packed.views:
        views.append(flat[offset : offset + _size(a)].reshape(a.shape))
        offset += _size(a)
    result.extend(views)
    result.flat, result.views = flat, tuple(views)
    return result


def _size(a) -> int:
    size = 1
    for n in a.shape:
        size *= n
    return size


_pool = None


def _threads() -> int:
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(count, 8))


def run_chunked(update, xp, arrays: list) -> None:
    """Call update(*chunk) on matching chunks of 1-D arrays of one length, in threads on NumPy.

    The update must be elementwise (each output element depends on the same element of the
    inputs only), so chunking cannot change its result.
    """
    n = arrays[0].shape[0]
    threads = _threads()
    if not array_api_compat.is_numpy_namespace(xp) or threads == 1 or n < _THREAD_MIN:
        update(*arrays)
        return
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(threads, thread_name_prefix="nn_xp")
    bounds = [n * k // threads for k in range(threads + 1)]
    chunks = [[a[bounds[k] : bounds[k + 1]] for a in arrays] for k in range(threads)]
    for future in [_pool.submit(update, *chunk) for chunk in chunks]:
        future.result()
