"""CuPy's ops: NumPy's in-place forms (numpy_ops.py) on the GPU, with fused CUDA kernels.

On a GPU each array operation is a kernel launch, and for the small arrays of an MLP the launches,
not the arithmetic, set the pace. These kernels do in one launch what the standard code does in
several, with the same arithmetic in the same order:
- activation backward (relu, sigmoid, tanh): dZ = dA * f'(A), written over dA;
- Adam: m, v and the parameter together (optim.Adam's rule);
- SGD with momentum: the buffer and the parameter together (optim.SGD's rule).
tests/test_ops.py checks them against the standard ops on a GPU. CuPy compiles a kernel the first
time it runs and caches it on disk; CuPy itself is imported only when a CuPy namespace is used.
"""

from __future__ import annotations

import functools

from .backend import is_sparse
from .numpy_ops import RELU, SIGMOID, TANH, NumpyOps


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
    """NumPy's in-place primitives with CuPy's module, and fused kernels where they save launches."""

    name = "cupy"
    native = False  # the compiled loops are for host memory

    def __init__(self, xp):
        import cupy

        super().__init__(xp, raw=cupy)

    def _empty(self, shape, like):
        with like.device:
            return self.raw.empty(shape, dtype=like.dtype)

    def take_rows(self, A, rows, out=None):
        if is_sparse(A):  # cupyx.scipy.sparse: its rows, still sparse (NumpyOps.buffer gave no out)
            return A[rows]
        return self.raw.take(A, rows, axis=0, out=out)

    def _activation_backward(self, activation, dA, Z, A):
        builtin = any(activation is a for a in (RELU, SIGMOID, TANH))
        if not builtin:
            return super()._activation_backward(activation, dA, Z, A)
        _kernels()[0][activation.name](A, dA)
        return dA

    def adam(self, p, g, m, v, *, beta1, beta2, eps_c, step_c, work):
        _kernels()[1](g, beta1, beta2, 1 - beta1, 1 - beta2, step_c, eps_c, p, m, v)
        return p, m, v

    def sgd_momentum(self, p, g, b, *, learning_rate, momentum, dampening, first, nesterov, work):
        _kernels()[2](g, learning_rate, momentum, 1 - dampening, first, nesterov, p, b)
        return p, b
