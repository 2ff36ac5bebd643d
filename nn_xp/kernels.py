"""Fused CuPy elementwise kernels for the GPU fast path.

On a GPU each array operation is a kernel launch, and for the small arrays of an MLP the launches,
not the arithmetic, set the pace. These kernels do in one launch what the standard code does in
several, with the same arithmetic in the same order:
- activation backward (relu, sigmoid, tanh): dZ = dA * f'(A), written over dA;
- Adam: m, v and the parameter updated together (torch.optim.Adam's rule, see optim.Adam);
- SGD with momentum: the buffer and the parameter together (torch.optim.SGD's rule).
Each has a standard-only twin in activations.py / optim.py, and tests/test_kernels.py checks that
both agree on a GPU. CuPy compiles a kernel the first time it runs and caches it on disk.
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def _compiled():
    import cupy

    backward = {
        # A NaN in A gives 0 here, as in the standard where(A > 0, dA, 0).
        "relu": cupy.ElementwiseKernel("T A", "T dA", "dA = A > (T)0 ? dA : (T)0", "nn_xp_relu_backward"),
        "sigmoid": cupy.ElementwiseKernel("T A", "T dA", "dA = dA * A * ((T)1 - A)", "nn_xp_sigmoid_backward"),
        "tanh": cupy.ElementwiseKernel("T A", "T dA", "dA = dA * ((T)1 - A * A)", "nn_xp_tanh_backward"),
    }
    adam = cupy.ElementwiseKernel(
        "T g, T b1, T b2, T one_minus_b1, T one_minus_b2, T step_size, T bias_correction2_sqrt, T eps",
        "T p, T m, T v",
        """
        m = m * b1 + one_minus_b1 * g;
        v = v * b2 + one_minus_b2 * (g * g);
        p = p - (step_size * bias_correction2_sqrt) * (m / (sqrt(v) + eps * bias_correction2_sqrt));
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


def has_backward(name: str) -> bool:
    return name in ("relu", "sigmoid", "tanh")


def activation_backward(name: str, dA, A):
    """dA *= f'(A) for relu, sigmoid or tanh, in one launch; returns dA."""
    _compiled()[0][name](A, dA)
    return dA


def adam(p, g, m, v, *, beta1, beta2, step_size, bias_correction2_sqrt, eps) -> None:
    """One Adam step for flat arrays, in place (no weight decay, no AMSGrad)."""
    _compiled()[1](g, beta1, beta2, 1 - beta1, 1 - beta2, step_size, bias_correction2_sqrt, eps, p, m, v)


def sgd_momentum(p, g, b, *, learning_rate, momentum, dampening, first, nesterov) -> None:
    """One SGD-with-momentum step for flat arrays, in place (no weight decay)."""
    _compiled()[2](g, learning_rate, momentum, 1 - dampening, first, nesterov, p, b)
