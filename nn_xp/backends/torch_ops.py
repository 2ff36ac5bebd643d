"""PyTorch's ops: NumPy's in-place protocol (numpy_ops.py) with torch's own functions.

The standard ops (ops.py) on torch tensors allocate every result and update each parameter with
about ten separate operations, through array-api-compat's wrappers; on torch:cpu that made a fit
slower than PyTorch's own eager loop. These ops call the torch module itself, in place and with
`out=`:
- parameters, gradients and optimizer state are views of one flat tensor each (`pack`), so an
  optimizer step is a few in-place passes (mul_, add_, addcmul_, addcdiv_) over one tensor;
- layer results land in tensors kept from step to step (`buffer`, torch.matmul(out=),
  torch.index_select(out=) for the batch's rows);
- on the CPU, where nn_xp's compiled loops are built and on, a ReLU layer's bias and activation and
  Adam's and SGD-with-momentum's updates run through them on NumPy views of the same memory
  (Tensor.numpy() shares it): one pass each, bitwise NumPy's results.

The arithmetic is NumPy's, operation for operation, so a float64 fit on torch:cpu agrees with one
on NumPy to rounding. Nothing here writes into an array the caller handed in (a NumPy array shared
through DLPack stays untouched): only buffers these ops or the layers made are written.
torch is imported when the first TorchOps is made, never by a NumPy fit.
"""

from __future__ import annotations

import math

from . import numpy_ops
from .arrays import host_view, is_sparse
from .numpy_ops import LINEAR, RELU, InPlaceRules, _views_of
from .ops import FlatList, Ops


class TorchOps(InPlaceRules, Ops):
    """The standard primitives with torch's `out=` and in-place functions."""

    name = "torch"
    mutable = True

    def __init__(self, xp):
        import torch

        super().__init__(xp)
        self.raw = torch
        self.matmul = torch.matmul  # (A, B, out=None): called several times a step, no wrapper

    def _native_loop(self, name: str, *args) -> bool:
        """Run the compiled loop `name` on NumPy views of CPU tensors; False (nothing written) where it
        does not take them (loops off or not built, another device, a dtype or layout they lack)."""
        if not numpy_ops.native_enabled():
            return False
        views = []
        for a in args:
            if hasattr(a, "numpy"):
                a = host_view(a)
                if a is None:
                    return False
            views.append(a)
        return numpy_ops._native_call(getattr(numpy_ops._native, name), *views)

    # ---- memory -------------------------------------------------------------------------------
    def _empty(self, shape, like):
        return self.raw.empty(shape, dtype=like.dtype, device=like.device)

    def buffer(self, store: dict, key, shape: tuple, like):
        """As NumpyOps.buffer: as wide as asked, as tall as the most rows asked for; a smaller batch
        gets a view of its first rows (still contiguous)."""
        if is_sparse(like):
            return None
        a = store.get(key)
        shape = tuple(shape)
        if (a is None or a.dtype != like.dtype or a.device != like.device or a.shape[0] < shape[0]
                or tuple(a.shape[1:]) != shape[1:]):
            a = store[key] = self._empty(shape, like)
        return a if a.shape[0] == shape[0] else a[: shape[0]]

    def pack(self, arrays, release: bool = False) -> FlatList:
        flat = self._empty((sum(math.prod(a.shape) for a in arrays),), arrays[0])
        result = _views_of(flat, [tuple(a.shape) for a in arrays])
        for index, view in enumerate(result):
            view.copy_(arrays[index])
            if release:
                arrays[index] = None
        return result

    def copy_arrays(self, arrays) -> list:
        if isinstance(arrays, FlatList) and arrays.is_packed():
            return _views_of(arrays.flat.clone(), [tuple(v.shape) for v in arrays.views])
        return [a.clone() for a in arrays]

    def empty_like_packed(self, packed: FlatList) -> FlatList:
        """A FlatList of uninitialised tensors shaped like `packed`, in a flat buffer of its own."""
        return _views_of(self.raw.empty_like(packed.flat), [tuple(v.shape) for v in packed.views])

    def take_rows(self, A, rows, out=None):
        return self.raw.index_select(A, 0, rows, out=out) if out is not None else self.raw.index_select(A, 0, rows)

    def take_batch(self, arrays, rows, outs=None) -> list:
        outs = [None] * len(arrays) if outs is None else outs
        return [None if A is None else self.take_rows(A, rows, out=out) for A, out in zip(arrays, outs)]

    # ---- layers -------------------------------------------------------------------------------
    def sum_rows(self, A, out=None):
        return self.raw.sum(A, dim=0) if out is None else self.raw.sum(A, dim=0, out=out)

    def bias_activate(self, activation, Z, b):
        fused = activation.fused
        if fused == RELU and self._native_loop("bias_relu", Z, b):
            return Z, None
        Z += b
        if fused == RELU:
            return Z.clamp_min_(0), None  # a NaN stays NaN, as with NumPy's maximum
        if fused == LINEAR:
            return Z, None
        return activation.forward(self.xp, Z), Z

    def backward_bias(self, activation, dA, Z, A, db=None):
        if activation.fused == RELU and db is not None and self._native_loop("relu_backward_bias_grad", dA, A, db):
            return dA, db
        dZ = self._activation_backward(activation, dA, Z, A)
        return dZ, self.sum_rows(dZ, out=db)

    def dropout(self, X, keep, scale, out=None):
        out = self.raw.mul(X, keep) if out is None else self.raw.mul(X, keep, out=out)
        out *= scale
        return out

    def softmax_cross_entropy(self, Z, Y, weight, out=None):
        raw = self.raw
        Z -= Z.amax(dim=1, keepdim=True)  # shifted logits: same argmax, exp cannot overflow
        E = raw.exp(Z) if out is None else raw.exp(Z, out=out)
        S = E.sum(dim=1, keepdim=True)
        if isinstance(weight, float):
            L = (raw.log(S).sum() - (Y * Z).sum()) * weight
        else:  # per-sample weights (a column): the rows' losses weighted
            L = ((raw.log(S) - (Y * Z).sum(dim=1, keepdim=True)) * weight).sum()
        E /= S
        E -= Y
        E *= weight
        return L, E, Z

    # ---- mixed precision's unscaling (the updates are InPlaceRules', numpy_ops.py) -------------
    def unscale_into(self, half, out, factor: float):
        out.copy_(half)  # the cast, then the scaling in place: no temporary
        if factor != 1.0:
            out *= factor
        return out
