"""CuPy's ops: NumPy's in-place forms (numpy_ops.py) on the GPU, with fused CUDA kernels.

On a GPU each array operation is a kernel launch, and for the small arrays of an MLP the launches,
not the arithmetic, set the pace. These kernels do in one launch what the standard code does in
several (launches per call, before -> after):
- `bias_activate`: Z = f(Z + b) in place for relu, sigmoid, tanh, linear and leaky_relu
  (relu 2 -> 1, sigmoid 10 -> 1);
- `backward_bias`: dZ = dA * f'(A) written over dA, and db = the column sums of dZ (relu 2 -> 1);
- `softmax_cross_entropy`: the loss, dZ and the shifted logits of the output layer (13 -> 1);
- `take_batch`: the batch's rows of X, Y and the sample weights (one per array -> 1).
These four are raw CUDA in cupy_kernels.cu (cupy.RawModule, templates over double, float, __half and
__nv_bfloat16; tests/test_cupy_kernels.py compiles every instantiation with nvcc, GPU or not).
Their reductions are deterministic: partial sums per block, added by the last block in a fixed
order, no floating-point atomics. NN_XP_FUSED=0 in the environment (`set_fused(False)` in code)
turns them off, so that a benchmark can count launches with and without them.
The older cupy.ElementwiseKernels stay on either way: activation backward alone (relu, sigmoid,
tanh), Adam, and SGD with momentum.

Mixed precision (`half()`): cuBLAS multiplies float16/bfloat16 matrices with float32 accumulation
(CuPy's default compute type), and the kernels load half precision, compute in float32 and round
once on store, as numpy_ops' emulation documents. bfloat16 uses the kernels only where CuPy's
bfloat16 arrays pass a check on first use; elsewhere, and for anything the kernels do not take
(other activations, non-contiguous arrays), the ops fall back to NumPy's path on CuPy.

tests/test_cupy_ops.py and tests/test_ops.py check every kernel against its standard twin on a GPU.
CuPy compiles a kernel the first time it runs and caches it on disk; CuPy itself is imported only
when a CuPy namespace is used.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from importlib import resources

import numpy as np

from .arrays import is_sparse
from .numpy_ops import RELU, SIGMOID, TANH, NumpyOps, _HalfPrecision

_log = logging.getLogger(__name__)

_fused_on = os.environ.get("NN_XP_FUSED", "1").strip().lower() not in ("0", "false", "no", "off")


def fused_enabled() -> bool:
    """True when CupyOps launches the raw-CUDA kernels of cupy_kernels.cu."""
    return _fused_on


def set_fused(flag: bool) -> bool:
    """Use the fused kernels of cupy_kernels.cu (True, the default) or NumPy's path on CuPy (False).

    Returns the previous setting. Results agree to rounding either way.
    """
    global _fused_on
    if not isinstance(flag, bool):
        raise TypeError(f"flag must be True or False, got {flag!r}")
    previous, _fused_on = _fused_on, flag
    return previous


# ---- the kernels' source and instantiations (no CuPy needed: the CPU test reads these) ---------------
# cupy_kernels.cu's enum Activation and launch constants, mirrored.
ACTIVATION_CODES = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "leaky_relu": 4}
TILE, ROWS, BLOCK = 32, 8, 256
FLOAT_TYPES = {"float64": "double", "float32": "float", "float16": "__half"}
BFLOAT16 = "__nv_bfloat16"
BIT_TYPES = {1: "unsigned char", 2: "unsigned short", 4: "unsigned int", 8: "unsigned long long"}
INDEX_TYPES = {"int32": "int", "int64": "long long"}
OPTIONS = ("--std=c++17",)
BFLOAT16_OPTIONS = (*OPTIONS, "-DNN_XP_BFLOAT16")
_LAYER_KERNELS = ("bias_activate", "backward_bias", "softmax_cross_entropy")


def kernel_source() -> str:
    """The CUDA source of the fused kernels (package data)."""
    return resources.files(__package__).joinpath("cupy_kernels.cu").read_text(encoding="utf-8")


def name_expressions(bfloat16: bool = False) -> list[str]:
    """Every kernel instantiation the ops launch, as NVRTC name expressions: the main module's, or
    the bfloat16 module's (compiled with BFLOAT16_OPTIONS)."""
    if bfloat16:
        return [f"nn_xp::{kernel}<{BFLOAT16}>" for kernel in _LAYER_KERNELS]
    names = [f"nn_xp::{kernel}<{T}>" for kernel in _LAYER_KERNELS for T in FLOAT_TYPES.values()]
    return names + [f"nn_xp::take_rows<{U}, {I}>" for U in BIT_TYPES.values() for I in INDEX_TYPES.values()]


@functools.cache
def _module(bfloat16: bool):
    import cupy

    return cupy.RawModule(code=kernel_source(), options=BFLOAT16_OPTIONS if bfloat16 else OPTIONS,
                          name_expressions=name_expressions(bfloat16))


@functools.cache
def _kernel(name: str):
    """A kernel by its name expression (a RawKernel: CuPy loads it once per device)."""
    return _module(BFLOAT16 in name).get_function(name)


@functools.cache
def _compiled() -> bool:
    """Whether the fused kernels built (CuPy compiles them with NVRTC on first use). If they did
    not, a RuntimeWarning says why and the ops take NumPy's path on CuPy from then on: training
    goes on, with more launches."""
    global _fused_on
    try:
        for name in name_expressions():
            _kernel(name)
    except Exception as error:
        _fused_on = False
        warnings.warn(f"nn_xp's fused CUDA kernels did not compile ({type(error).__name__}: {error}); "
                      "using CuPy's array operations instead", RuntimeWarning, stacklevel=3)
        return False
    return True


@functools.cache
def _bfloat16_works() -> bool:
    """Whether CuPy's bfloat16 arrays go through the bfloat16 kernels: one small launch, checked
    bit for bit, the first time a bfloat16 array meets a kernel."""
    try:
        import cupy
        import ml_dtypes

        host = np.array([[1.5, -2.0]], dtype=ml_dtypes.bfloat16)
        Z, b = cupy.asarray(host), cupy.asarray(np.array([0.25, 1.0], dtype=ml_dtypes.bfloat16))
        relu = np.int32(ACTIVATION_CODES["relu"])
        _kernel(f"nn_xp::bias_activate<{BFLOAT16}>")((1,), (32,), (Z, b, np.int64(2), np.int32(2), relu, np.float64(0)))
        expected = np.array([[1.75, 0.0]], dtype=ml_dtypes.bfloat16).view(np.uint16)
        return bool(np.array_equal(Z.view(cupy.uint16).get(), expected))
    except Exception as error:  # no ml_dtypes, no bfloat16 in this CuPy, or the module did not build
        _log.debug("bfloat16 arrays use NumPy's path on CuPy: %s", error)
        return False


def _element_type(dtype) -> str | None:
    """The kernels' C type for an array dtype, or None where they do not take it."""
    name = dtype.name
    if name == "bfloat16":
        return BFLOAT16 if _bfloat16_works() else None
    return FLOAT_TYPES.get(name)


@functools.cache
def _multiprocessors(device_id: int) -> int:
    import cupy

    return cupy.cuda.Device(device_id).attributes["MultiProcessorCount"]


def _fused_activation(activation):
    """(activation code, slope) for the primitives the kernels compute (`activation.fused`), None
    for the others and while the fused kernels are off."""
    code = ACTIVATION_CODES.get(activation.fused)
    if code is None or not (_fused_on and _compiled()):
        return None
    if code == ACTIVATION_CODES["leaky_relu"]:
        return code, float(activation.params["negative_slope"])
    return code, 0.0


# ---- launch shapes: functions of the array shapes and the GPU's multiprocessor count alone ------------
def elementwise_grid(size: int, multiprocessors: int) -> int:
    """Blocks of BLOCK threads for a grid-stride loop over `size` elements: enough to fill the GPU
    (2048 threads a multiprocessor), no more."""
    return max(1, min(-(-size // BLOCK), 8 * multiprocessors))


def backward_bias_grid(n: int, k: int, multiprocessors: int) -> tuple[int, int, int]:
    """(column tiles, row chunks, rows per chunk) for backward_bias on dA (n, k), n, k > 0: about
    four blocks a multiprocessor, and at least four rows for each of a block's ROWS thread rows."""
    tiles = -(-k // TILE)
    chunks = max(1, min(-(-4 * multiprocessors // tiles), -(-n // (4 * ROWS))))
    chunk = -(-n // chunks)
    return tiles, -(-n // chunk), chunk


def softmax_grid(n: int, k: int, multiprocessors: int) -> tuple[int, int]:
    """(blocks, lanes per row) for softmax_cross_entropy on Z (n, k), n, k > 0: about four columns a
    lane (narrow rows share a warp), a whole warp for wide rows; at most eight blocks a multiprocessor."""
    group = min(32, 1 << (-(-k // 4) - 1).bit_length())
    return max(1, min(-(-n // (BLOCK // group)), 8 * multiprocessors)), group


@functools.cache
def _kernels():
    import cupy

    backward = {
        # A NaN in A gives 0 here, as in the standard where(A > 0, dA, 0).
        "relu": cupy.ElementwiseKernel("T A", "T dA", "dA = A > (T)0 ? dA : (T)0", "nn_xp_relu_backward"),
        "sigmoid": cupy.ElementwiseKernel("T A", "T dA", "dA = dA * (A * ((T)1 - A))", "nn_xp_sigmoid_backward"),
        "tanh": cupy.ElementwiseKernel("T A", "T dA", "dA = dA * ((T)1 - A * A)", "nn_xp_tanh_backward"),
    }
    adam = cupy.ElementwiseKernel(
        "T g, T b1, T b2, T one_minus_b1, T one_minus_b2, T step_c, T eps_c",
        "T p, T m, T v",
        """
        m = m * b1 + one_minus_b1 * g;
        v = v * b2 + one_minus_b2 * (g * g);
        p = p - step_c * (m / (sqrt(v) + eps_c));
        """,
        "nn_xp_adam",
    )
    sgd_momentum = cupy.ElementwiseKernel(
        "T g, T learning_rate, T momentum, T one_minus_dampening, bool first, bool nesterov",
        "T p, T b",
        """
        b = first ? g : b * momentum + one_minus_dampening * g;
        p = p - learning_rate * (nesterov ? g + momentum * b : b);
        """,
        "nn_xp_sgd_momentum",
    )
    return backward, adam, sgd_momentum


class CupyOps(NumpyOps):
    """NumPy's in-place primitives with CuPy's module, and fused kernels where they save launches.

    Each fused method checks that the kernel takes its arrays (dtype, shape, C order, a built-in
    activation) and otherwise runs NumpyOps' method, on CuPy.
    """

    name = "cupy"
    native = False  # the compiled loops are for host memory

    def __init__(self, xp):
        import cupy

        super().__init__(xp, raw=cupy)
        self._scratch_arrays = {}

    def _empty(self, shape, like):
        with like.device:
            return self.raw.empty(shape, dtype=like.dtype)

    def _dense(self, *arrays) -> bool:
        """All CuPy arrays (not sparse, not None) in C order: what the raw kernels index."""
        ndarray = self.raw.ndarray
        return all(type(a) is ndarray and a.flags.c_contiguous for a in arrays)

    def _kernel_scratch(self, device_id: int, kind: str, size: int, dtype):
        """A kept array of at least `size` elements for the kernels' partial sums ("partials") or
        tickets ("tickets": zeros, which every launch leaves at zero), one per device and stream."""
        key = (device_id, self.raw.cuda.get_current_stream().ptr, kind, dtype)
        a = self._scratch_arrays.get(key)
        if a is None or a.size < size:
            with self.raw.cuda.Device(device_id):
                a = self._scratch_arrays[key] = (self.raw.zeros if kind == "tickets" else self.raw.empty)(size, dtype)
        return a

    def half(self):
        """The ops for mixed precision on CuPy (see _HalfCupyOps)."""
        if getattr(self, "_half", None) is None:
            self._half = _HalfCupyOps(self.xp)
        return self._half

    def take_rows(self, A, rows, out=None):
        if is_sparse(A):  # cupyx.scipy.sparse: its rows, still sparse (NumpyOps.buffer gave no out)
            return A[rows]
        return self.raw.take(A, rows, axis=0, out=out)

    def take_batch(self, arrays, rows, outs=None) -> list:
        outs = [None] * len(arrays) if outs is None else list(outs)
        results = [None] * len(arrays)
        groups = {}  # itemsize -> [(index, A, out)]: one launch gathers up to four arrays of one size
        if (_fused_on and self._dense(rows) and rows.ndim == 1 and rows.dtype.name in INDEX_TYPES
                and _compiled()):
            device_id, n = rows.device.id, rows.shape[0]
            n_source = next((A.shape[0] for A in arrays if A is not None), None)
            for index, (A, out) in enumerate(zip(arrays, outs)):
                if (A is not None and A.ndim == 2 and A.shape[0] == n_source and self._dense(A)
                        and A.device.id == device_id
                        and (out is None or (self._dense(out) and out.shape == (n, A.shape[1])
                                             and out.dtype == A.dtype))):
                    if out is None:
                        out = outs[index] = self._empty((n, A.shape[1]), A)
                    groups.setdefault(A.dtype.itemsize, []).append((index, A, out))
        for itemsize, members in groups.items():
            for start in range(0, len(members), 4):
                self._take_rows_kernel(rows, members[start:start + 4], itemsize)
            for index, _, out in members:
                results[index] = out
        for index, (A, out) in enumerate(zip(arrays, outs)):
            if A is not None and results[index] is None:
                results[index] = self.take_rows(A, rows, out=out)
        return results

    def _take_rows_kernel(self, rows, members, itemsize: int) -> None:
        """One launch gathering up to four (index, A, out) of one itemsize, bits copied as they are."""
        n, width = rows.shape[0], sum(A.shape[1] for _, A, _ in members)
        if n == 0 or width == 0:
            return
        arguments = [rows, np.int64(n), np.int64(members[0][1].shape[0])]
        for slot in range(4):
            if slot < len(members):
                _, A, out = members[slot]
                arguments += [A, out, np.int32(A.shape[1])]
            else:
                arguments += [None, None, np.int32(0)]
        kernel = _kernel(f"nn_xp::take_rows<{BIT_TYPES[itemsize]}, {INDEX_TYPES[rows.dtype.name]}>")
        with rows.device:
            kernel((elementwise_grid(n * width, _multiprocessors(rows.device.id)),), (BLOCK,), tuple(arguments))

    # ---- layers -------------------------------------------------------------------------------
    def bias_activate(self, activation, Z, b):
        fused = _fused_activation(activation)
        if (fused is not None and Z.ndim == 2 and b.shape == Z.shape[1:] and b.dtype == Z.dtype
                and self._dense(Z, b) and (T := _element_type(Z.dtype)) is not None):
            code, slope = fused
            if Z.size:
                with Z.device:
                    _kernel(f"nn_xp::bias_activate<{T}>")(
                        (elementwise_grid(Z.size, _multiprocessors(Z.device.id)),), (BLOCK,),
                        (Z, b, np.int64(Z.size), np.int32(Z.shape[1]), np.int32(code), np.float64(slope)))
            # leaky_relu's backward reads only the sign of Z, which A shares (slope >= 0): A stands in
            # for Z there, so that every backward path, fused or not, gets what it needs.
            return Z, (Z if code == ACTIVATION_CODES["leaky_relu"] else None)
        return super().bias_activate(activation, Z, b)

    def backward_bias(self, activation, dA, Z, A, db=None):
        fused = _fused_activation(activation) if db is not None else None
        if (fused is not None and dA.ndim == 2 and A.shape == dA.shape and db.shape == dA.shape[1:]
                and dA.dtype == A.dtype == db.dtype and self._dense(dA, A, db)
                and (T := _element_type(dA.dtype)) is not None):
            n, k = dA.shape
            if n == 0:
                db.fill(0)
            elif k:
                self._backward_bias_kernel(T, fused, dA, A, db)
            return dA, db
        return super().backward_bias(activation, dA, Z, A, db)

    def _backward_bias_kernel(self, T, fused, dA, A, db) -> None:
        (n, k), device_id = dA.shape, dA.device.id
        tiles, chunks, chunk = backward_bias_grid(n, k, _multiprocessors(device_id))
        accumulate = np.float64 if dA.dtype == np.float64 else np.float32
        partials = self._kernel_scratch(device_id, "partials", chunks * k, accumulate)
        tickets = self._kernel_scratch(device_id, "tickets", tiles, np.uint32)
        code, slope = fused
        with dA.device:
            _kernel(f"nn_xp::backward_bias<{T}>")(
                (tiles, chunks), (TILE, ROWS),
                (dA, A, db, partials, tickets, np.int64(n), np.int32(k), np.int64(chunk), np.int32(code),
                 np.float64(slope)))

    def softmax_cross_entropy(self, Z, Y, weight, out=None):
        column = not isinstance(weight, float)
        if (_fused_on and Z.ndim == 2 and Y.shape == Z.shape and Y.dtype == Z.dtype and self._dense(Z, Y)
                and (not column or (self._dense(weight) and weight.shape == (Z.shape[0], 1)
                                    and weight.dtype == Z.dtype))
                and (out is None or (out.shape == Z.shape and out.dtype == Z.dtype and self._dense(out)))
                and (T := _element_type(Z.dtype)) is not None and _compiled()):
            dZ = self._empty(Z.shape, Z) if out is None else out
            n, k = Z.shape
            if n == 0 or k == 0:
                with Z.device:
                    return self.raw.zeros((), Z.dtype), dZ, Z
            blocks, group = softmax_grid(n, k, _multiprocessors(Z.device.id))
            accumulate = np.float64 if Z.dtype == np.float64 else np.float32
            partials = self._kernel_scratch(Z.device.id, "partials", blocks, accumulate)
            ticket = self._kernel_scratch(Z.device.id, "tickets", 1, np.uint32)
            with Z.device:
                L = self.raw.empty((), Z.dtype)
                _kernel(f"nn_xp::softmax_cross_entropy<{T}>")(
                    (blocks,), (BLOCK,),
                    (Z, Y, weight if column else None, np.float64(0.0 if column else weight), dZ, partials, ticket,
                     L, np.int64(n), np.int32(k), np.int32(group)))
            return L, dZ, Z
        return super().softmax_cross_entropy(Z, Y, weight, out=out)

    def _activation_backward(self, activation, dA, Z, A):
        if activation.fused not in (RELU, SIGMOID, TANH):
            return super()._activation_backward(activation, dA, Z, A)
        _kernels()[0][activation.fused](A, dA)
        return dA

    # ---- optimizer updates --------------------------------------------------------------------
    def adam(self, p, g, m, v, *, beta1, beta2, eps_c, step_c, work):
        _kernels()[1](g, beta1, beta2, 1 - beta1, 1 - beta2, step_c, eps_c, p, m, v)
        return p, m, v

    def sgd_momentum(self, p, g, b, *, learning_rate, momentum, dampening, first, nesterov, work):
        _kernels()[2](g, learning_rate, momentum, 1 - dampening, first, nesterov, p, b)
        return p, b


class _HalfCupyOps(CupyOps, _HalfPrecision):
    """CuPy's ops for mixed precision.

    cuBLAS already multiplies half-precision matrices with float32 accumulation (so `matmul` stays
    CuPy's own), and the fused kernels load half precision and compute in float32. Where a kernel
    does not apply, CupyOps' `super()` reaches `_HalfPrecision` (the method resolution order is
    _HalfCupyOps, CupyOps, _HalfPrecision, NumpyOps): the emulation's float32 round trip, never
    arithmetic in half precision.
    """
