"""Fast paths for backends with mutable arrays (NumPy, CuPy), beside the standard-only code.

The standard code (model.py, optim.py) runs everywhere, array-api-strict included. Where the
backend allows it, two things make training faster without changing a single result:
- the parameters (and the gradients the fit loop gets, and the optimizer state) are views into
  one flat buffer each, so an optimizer step is a dozen array operations, whatever the depth;
- forward and backward work in place (`out=`, `*=`) where the standard code would allocate;
- on NumPy, a ReLU layer's bias and activation are one compiled pass forward and one backward
  (native.py), where they are built;
- a training step writes its batch, activations and their gradients into arrays kept from the
  step before (`Workspace`), instead of fresh ones each step.
(Splitting the flat update across threads was tried and dropped: next to BLAS's own worker
threads it was slower, not faster, on a 2-core machine.)
tests/test_fast.py checks that each fast path gives the standard path's numbers.
"""

from __future__ import annotations

import array_api_compat

from . import native


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


def add_bias_and_activate(raw, xp, Z, b, act):
    """A hidden layer's `A = act(Z + b)` after its matmul, in place where it can be.

    Returns (A, Z) where backward needs Z, else (A, None) with Z overwritten by A.
    """
    if act.name == "relu" and native.fits(Z, b):
        native.bias_relu(Z, b)
        return Z, None
    Z += b
    if act.forward_inplace is not None:
        return act.forward_inplace(raw, Z), None
    return act.forward(xp, Z), Z


def activation_backward_and_bias_grad(raw, xp, act, dA, Z, A, db):
    """A hidden layer's dZ = dA * act'(Z) (dA may be overwritten), with its bias gradient, the
    sum of dZ over samples, written into `db`. Returns dZ."""
    if act.name == "relu" and native.fits(dA, A, db):
        native.relu_backward_bias_grad(dA, A, db)
        return dA
    if act.backward_inplace is not None:
        dZ = act.backward_inplace(raw, dA, A)
    else:
        dZ = act.backward(xp, dA, Z, A)
    raw.sum(dZ, axis=0, out=db)
    return dZ


class Workspace:
    """Arrays that training steps write into instead of allocating, kept from step to step.

    A fresh multi-megabyte array costs page faults every step (the C allocator hands large blocks
    back to the system when they are freed): at batch size 4096 that was 9,000 faults and about a
    tenth of an epoch. One array per name, as wide as asked and as tall as the most rows asked
    for; a smaller batch gets a view of its first rows (still C-contiguous). A step's arrays are
    overwritten by the next step, so whoever gets one uses it before then (the fit loop does).
    """

    def __init__(self):
        self._arrays = {}

    def rows(self, raw, name: str, n: int, width: int, like):
        """An (n, width) array of like's dtype, on like's device: the rows of array `name`."""
        a = self._arrays.get(name)
        if a is None or a.shape[0] < n or a.shape[1] != width or a.dtype != like.dtype:
            a = self._arrays[name] = _empty(raw, (n, width), like)
        return a[:n]

    def take_rows(self, raw, name: str, A, rows):
        """A[rows] (rows: valid row indices) in array `name`."""
        out = self.rows(raw, name, rows.shape[0], A.shape[1], A)
        if raw.__name__ == "numpy":  # with mode="raise", NumPy would gather into a temporary first
            return raw.take(A, rows, axis=0, out=out, mode="clip")
        return raw.take(A, rows, axis=0, out=out)


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
    flat = _empty(xp, (sum(_size(a) for a in arrays),), arrays[0])
    result = _views_of(flat, [a.shape for a in arrays])
    for view, a in zip(result, arrays):
        view[...] = a
    return result


def copy_arrays(arrays, xp) -> list:
    """Copies of `arrays` on their device: one copy of the flat buffer when they are its views."""
    if isinstance(arrays, FlatList) and arrays.is_packed():
        return _views_of(xp.asarray(arrays.flat, copy=True), [v.shape for v in arrays.views])
    return [xp.asarray(a, copy=True) for a in arrays]


def empty_like_packed(packed: FlatList, xp) -> FlatList:
    """A FlatList of uninitialised arrays shaped like `packed`, in a flat buffer of its own."""
    return _views_of(xp.empty_like(packed.flat), [v.shape for v in packed.views])


def _views_of(flat, shapes) -> FlatList:
    """Consecutive views of the 1-D `flat`, one per shape, as a packed FlatList."""
    result = FlatList()
    offset = 0
    for shape in shapes:
        size = _size_of(shape)
        result.append(flat[offset : offset + size].reshape(shape))
        offset += size
    result.flat, result.views = flat, tuple(result)
    return result


def _empty(module, shape, like):
    """An uninitialised array of like's dtype on like's device (on its GPU, for CuPy)."""
    if array_api_compat.is_cupy_array(like):
        with array_api_compat.device(like):
            return module.empty(shape, dtype=like.dtype)
    return module.empty(shape, dtype=like.dtype)


def _size(a) -> int:
    return _size_of(a.shape)


def _size_of(shape) -> int:
    size = 1
    for n in shape:
        size *= n
    return size
