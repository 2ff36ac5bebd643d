"""NumPy's ops: the standard primitives (ops.py) in place, and the compiled loops of `_native.c`.

What makes training on NumPy faster without changing a result:
- parameters, gradients and optimizer state are views of one flat buffer each (`pack`), so an
  optimizer step is a few operations over one array, whatever the depth;
- primitives write into arrays kept from step to step (`buffer`): a fresh multi-megabyte array
  costs page faults every step (at batch size 4096 that was 9,000 faults and a tenth of an epoch);
- a ReLU layer's bias and activation, and Adam's and SGD-with-momentum's updates, are one
  compiled pass over memory each (`_native.c`), bitwise the NumPy operations they replace.

The compiled loops are optional: installing nn_xp builds them with the machine's C compiler, and
where there is none the build warns and the NumPy operations below stand in, with the same
results. NN_XP_NATIVE=0 in the environment turns them off for a run (`set_native` in code).
(Splitting the flat update across threads was tried and dropped: next to BLAS's own threads it
was slower on a 2-core machine.)
"""

from __future__ import annotations

import math
import os

import numpy as np

from .arrays import is_sparse
from .ops import FlatList, Ops

try:
    from nn_xp.backends import _native
except ImportError:  # built without a C compiler: the NumPy operations stand in
    _native = None

_native_on = os.environ.get("NN_XP_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def native_available() -> bool:
    """True when the compiled loops were built with this installation."""
    return _native is not None


def native_enabled() -> bool:
    """True when NumPy's ops use the compiled loops: built, and not turned off."""
    return _native is not None and _native_on


def set_native(flag: bool) -> bool:
    """Use the compiled loops (True, the default where built) or NumPy's operations (False).

    Returns the previous setting. The results are bitwise the same either way.
    """
    global _native_on
    if not isinstance(flag, bool):
        raise TypeError(f"flag must be True or False, got {flag!r}")
    previous, _native_on = _native_on, flag
    return previous


# The primitives an activation may name (Activation.fused) whose forward can overwrite Z and whose
# derivative needs only A; an activation naming none of them runs its own forward/backward pair.
RELU, LINEAR, SIGMOID, TANH = "relu", "linear", "sigmoid", "tanh"


def _native_call(function, *args) -> bool:
    """Run a compiled loop if it is on and takes these arrays; False (nothing written) if not.

    The loops check every buffer (dtype, length, contiguity, writability) before writing any, so
    asking them is the check: cheaper, once a step, than inspecting each array's flags here.
    """
    if not _native_on:
        return False
    try:
        function(*args)
    except (TypeError, ValueError, BufferError):
        return False
    return True


class InPlaceRules:
    """The in-place protocol's arithmetic, shared by every mutable ops class (NumpyOps, CupyOps,
    TorchOps): an activation's derivative from A, and the optimizers' updates, allocating nothing
    (scratch kept in `work`). It is written against `self.raw`, the library's own module, through
    the names NumPy, CuPy and torch all give their functions (multiply, add, subtract, divide,
    sqrt, maximum, each with `out=`), so the arithmetic is the same operation for operation on each.
    `_native_loop` runs a compiled loop where the class has one."""

    def _native_loop(self, name: str, *args) -> bool:
        """Run nn_xp's compiled loop `name` on these arrays; False (nothing written) where none runs."""
        return False

    def _activation_backward(self, activation, dA, Z, A):
        """dA * f'(A) in place for the activations whose derivative comes from A alone."""
        fused = activation.fused
        if fused == RELU:
            dA *= A > 0
        elif fused == SIGMOID:
            dA *= A * (1 - A)
        elif fused == TANH:
            dA *= 1 - A * A
        elif fused != LINEAR:
            return activation.backward(self.xp, dA, Z, A)
        return dA

    # ---- optimizer updates: no allocation, scratch kept in `work` ----------------------------
    def _scratch(self, work: dict, like):
        return self.buffer(work, "scratch", like.shape, like) if like.ndim else self.raw.empty_like(like)

    def scale(self, p, factor: float):
        p *= factor
        return p

    def add_scaled(self, g, p, factor: float):
        g += factor * p
        return g

    def sgd(self, p, g, learning_rate: float, work: dict):
        scratch = self._scratch(work, p)
        self.raw.multiply(g, learning_rate, out=scratch)
        p -= scratch
        return p

    def sgd_momentum(self, p, g, b, *, learning_rate, momentum, dampening, first, nesterov, work):
        if self._native_loop("sgd_momentum", p, g, b, learning_rate, momentum, 1 - dampening, first, nesterov):
            return p, b
        raw, scratch = self.raw, self._scratch(work, p)
        if first:
            b[...] = g
        else:
            b *= momentum
            raw.multiply(g, 1 - dampening, out=scratch)
            b += scratch
        if nesterov:
            raw.multiply(b, momentum, out=scratch)
            scratch += g
        else:
            raw.add(b, 0, out=scratch)
        scratch *= learning_rate
        p -= scratch
        return p, b

    def adam(self, p, g, m, v, *, beta1, beta2, eps_c, step_c, work):
        if self._native_loop("adam", p, g, m, v, beta1, beta2, 1 - beta1, 1 - beta2, eps_c, step_c):
            return p, m, v
        return self._adam(p, g, m, v, None, beta1, beta2, eps_c, step_c, work)[:3]

    def amsgrad(self, p, g, m, v, v_max, *, beta1, beta2, eps_c, step_c, work):
        return self._adam(p, g, m, v, v_max, beta1, beta2, eps_c, step_c, work)

    def _adam(self, p, g, m, v, v_max, beta1, beta2, eps_c, step_c, work):
        """Adam's update in place, allocating nothing; with `v_max`, AMSGrad's running maximum of v."""
        raw, scratch = self.raw, self._scratch(work, p)
        m *= beta1
        raw.multiply(g, 1 - beta1, out=scratch)
        m += scratch
        v *= beta2
        raw.multiply(g, g, out=scratch)
        scratch *= 1 - beta2
        v += scratch
        if v_max is not None:
            raw.maximum(v_max, v, out=v_max)
        raw.sqrt(v if v_max is None else v_max, out=scratch)
        scratch += eps_c
        raw.divide(m, scratch, out=scratch)
        scratch *= step_c
        p -= scratch
        return p, m, v, v_max

    def rmsprop(self, p, g, v, g_avg, b, *, learning_rate, rho, eps, momentum, work):
        raw, scratch = self.raw, self._scratch(work, p)
        v *= rho
        raw.multiply(g, g, out=scratch)
        scratch *= 1 - rho
        v += scratch
        if g_avg is not None:
            g_avg *= rho
            raw.multiply(g, 1 - rho, out=scratch)
            g_avg += scratch
            raw.multiply(g_avg, g_avg, out=scratch)
            raw.subtract(v, scratch, out=scratch)
            raw.sqrt(scratch, out=scratch)
        else:
            raw.sqrt(v, out=scratch)
        scratch += eps
        raw.divide(g, scratch, out=scratch)
        if b is not None:
            b *= momentum
            b += scratch
            raw.multiply(b, learning_rate, out=scratch)
        else:
            scratch *= learning_rate
        p -= scratch
        return p, v, g_avg, b


class NumpyOps(InPlaceRules, Ops):
    """The standard primitives with `out=`, in place, and the compiled loops."""

    name = "numpy"
    mutable = True
    native = _native is not None  # the compiled loops are NumPy's alone

    def __init__(self, xp, raw=np):
        super().__init__(xp)
        self.raw = raw  # the module itself (numpy, cupy), for out= and in-place calls
        # The module's own functions, called without a wrapper: these run several times a step.
        self.matmul = raw.matmul

    def _native_loop(self, name: str, *args) -> bool:
        return self.native and _native_call(getattr(_native, name), *args)

    # ---- memory -------------------------------------------------------------------------------
    def _empty(self, shape, like):
        return self.raw.empty(shape, dtype=like.dtype)

    def buffer(self, store: dict, key, shape: tuple, like):
        """An array as wide as asked and as tall as the most rows asked for; a smaller batch gets a
        view of its first rows (still C-contiguous)."""
        if is_sparse(like):  # a sparse batch is gathered as a new sparse matrix, never into a dense one
            return None
        a = store.get(key)
        if a is None or a.dtype != like.dtype or a.shape[0] < shape[0] or a.shape[1:] != shape[1:]:
            a = store[key] = self._empty(shape, like)
        return a if a.shape[0] == shape[0] else a[: shape[0]]

    def pack(self, arrays, release: bool = False) -> FlatList:
        flat = self._empty((sum(math.prod(a.shape) for a in arrays),), arrays[0])
        result = _views_of(flat, [a.shape for a in arrays])
        for index, view in enumerate(result):
            view[...] = arrays[index]
            if release:
                arrays[index] = None
        return result

    def copy_arrays(self, arrays) -> list:
        if isinstance(arrays, FlatList) and arrays.is_packed():
            return _views_of(self.raw.array(arrays.flat, copy=True), [v.shape for v in arrays.views])
        return super().copy_arrays(arrays)

    def empty_like_packed(self, packed: FlatList) -> FlatList:
        """A FlatList of uninitialised arrays shaped like `packed`, in a flat buffer of its own."""
        return _views_of(self.raw.empty_like(packed.flat), [v.shape for v in packed.views])

    def take_rows(self, A, rows, out=None):
        if out is None:  # A sparse (CSR) A too: its rows, still sparse
            return A[rows]
        if not A.flags.aligned:
            # np.take first copies a misaligned A whole (a memory-mapped .npz member, whose data
            # starts at an odd offset in the zip), at every batch; indexing copies only the rows.
            out[...] = A[rows]
            return out
        # mode="clip" gathers straight into out (with "raise" NumPy gathers into a temporary first)
        return np.take(A, rows, axis=0, out=out, mode="clip")

    def take_batch(self, arrays, rows, outs=None) -> list:
        outs = [None] * len(arrays) if outs is None else outs
        return [None if A is None else self.take_rows(A, rows, out=out) for A, out in zip(arrays, outs)]

    # ---- layers -------------------------------------------------------------------------------
    def sum_rows(self, A, out=None):
        return self.raw.sum(A, axis=0, out=out)

    def bias_activate(self, activation, Z, b):
        if activation.fused == RELU and self._native_loop("bias_relu", Z, b):
            return Z, None
        Z += b
        if activation.fused == RELU:
            return self.raw.maximum(Z, 0, out=Z), None
        if activation.fused == LINEAR:
            return Z, None
        return activation.forward(self.xp, Z), Z

    def backward_bias(self, activation, dA, Z, A, db=None):
        if activation.fused == RELU and db is not None and self._native_loop("relu_backward_bias_grad", dA, A, db):
            return dA, db
        dZ = self._activation_backward(activation, dA, Z, A)
        return dZ, self.raw.sum(dZ, axis=0, out=db)

    def dropout(self, X, keep, scale, out=None):
        out = self.raw.multiply(X, keep, out=out)
        out *= scale
        return out

    def softmax_cross_entropy(self, Z, Y, weight, out=None):
        raw = self.raw
        Z -= Z.max(axis=1, keepdims=True)  # shifted logits: same argmax, exp cannot overflow
        E = raw.exp(Z, out=out)
        S = E.sum(axis=1, keepdims=True)
        if isinstance(weight, float):
            L = (raw.log(S).sum() - (Y * Z).sum()) * weight
        else:  # per-sample weights (a column): the rows' losses weighted
            L = ((raw.log(S) - (Y * Z).sum(axis=1, keepdims=True)) * weight).sum()
        E /= S
        E -= Y
        E *= weight
        return L, E, Z

    # ---- mixed precision ------------------------------------------------------------------------
    def half(self):
        """NumPy's float16/bfloat16 products accumulate in their own precision; tensor cores (and
        cuBLAS) accumulate in float32. These ops do as the GPU does, so the emulation is faithful."""
        if getattr(self, "_half", None) is None:
            self._half = _HalfNumpyOps(self.xp)
        return self._half

    def unscale_into(self, half, out, factor: float):
        out[...] = half  # the cast, then the scaling in place: no temporary
        if factor != 1.0:
            out *= factor
        return out


def _views_of(flat, shapes) -> FlatList:
    """Consecutive views of the 1-D `flat`, one per shape, as a packed FlatList."""
    result = FlatList()
    offset = 0
    for shape in shapes:
        size = math.prod(shape)
        result.append(flat[offset : offset + size].reshape(shape))
        offset += size
    result.flat, result.views = flat, tuple(result)
    return result


class _HalfPrecision(NumpyOps):
    """The elementwise layer work of mixed precision as a fused GPU kernel does it: half-precision
    values loaded, the arithmetic in float32, each result rounded to half precision once when
    stored. Array methods only, so NumPy's and CuPy's half-precision ops share it."""

    def bias_activate(self, activation, Z, b):
        Z32 = Z.astype(np.float32)
        Z32 += b.astype(np.float32)
        A32 = activation.forward(self.xp, Z32)
        kept = None if activation.fused in (RELU, LINEAR) else Z32.astype(Z.dtype)
        Z[...] = A32
        return Z, kept

    def backward_bias(self, activation, dA, Z, A, db=None):
        Z32 = None if Z is None else Z.astype(np.float32)
        dZ32 = activation.backward(self.xp, dA.astype(np.float32), Z32, A.astype(np.float32))
        dA[...] = dZ32
        # The stored (rounded) dZ, as sum(dZ) and the fused kernel add it, in a float32 accumulator.
        total = dA.astype(np.float32).sum(axis=0)
        if db is None:
            return dA, total.astype(dA.dtype)
        db[...] = total
        return dA, db


class _HalfNumpyOps(_HalfPrecision):
    """NumPy's ops for mixed precision: products of half-precision arrays accumulate in float32."""

    def __init__(self, xp):
        super().__init__(xp)
        del self.matmul  # the method below, not NumPy's own

    def matmul(self, A, B, out=None):
        product = np.matmul(A.astype(np.float32), B.astype(np.float32))
        if out is None:
            return product.astype(A.dtype)
        out[...] = product
        return out
