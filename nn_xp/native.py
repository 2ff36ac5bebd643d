"""The compiled single-pass loops for NumPy (nn_xp/_native.c), when they are built.

The NumPy fast path updates the flat parameter buffer with whole-array operations (optim.py):
Adam's twelve passes over memory cost a training step of workload (a) about 1.3 ms of its 5 ms.
A ReLU layer's bias and activation take two passes forward and two backward (fast.py).
`_native` does the same arithmetic in one pass each and gives bitwise the same numbers
(tests/test_native.py). It is what kernels.py is for CuPy, on the CPU.

Installing nn_xp builds it with the machine's C compiler; where there is none, the build warns
and nn_xp runs the NumPy operations instead, with the same results, only slower. NN_XP_NATIVE=0
in the environment turns the compiled updates off for a run (`set_enabled` does it in code).
"""

from __future__ import annotations

import os

import numpy as np

try:
    from nn_xp import _native
except ImportError:  # built without a C compiler: the NumPy operations stand in
    _native = None

_enabled = os.environ.get("NN_XP_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def available() -> bool:
    """True when the compiled updates were built with this installation."""
    return _native is not None


def enabled() -> bool:
    """True when the NumPy fast path uses the compiled updates: built, and not turned off."""
    return _native is not None and _enabled


def set_enabled(flag: bool) -> bool:
    """Use the compiled updates (True, the default where built) or NumPy's operations (False).

    Returns the previous setting. The results are bitwise the same either way.
    """
    global _enabled
    if not isinstance(flag, bool):
        raise TypeError(f"flag must be True or False, got {flag!r}")
    previous, _enabled = _enabled, flag
    return previous


def fits(*arrays) -> bool:
    """True when the compiled loops can take these arrays: enabled, NumPy arrays of one float32 or
    float64 dtype, C-contiguous and writable."""
    if _native is None or not _enabled:
        return False
    dtype = getattr(arrays[0], "dtype", None)
    if dtype is None or dtype.char not in "fd":
        return False
    for a in arrays:  # a plain loop: this runs several times a training step
        if type(a) is not np.ndarray or a.dtype != dtype:
            return False
        flags = a.flags
        if not (flags.c_contiguous and flags.writeable):
            return False
    return True


def adam(p, g, m, v, *, beta1, beta2, eps_c, step_c) -> None:
    """One Adam step in place: the operations of optim.Adam's NumPy fast path, in one pass."""
    _native.adam(p, g, m, v, beta1, beta2, 1 - beta1, 1 - beta2, eps_c, step_c)


def sgd_momentum(p, g, b, *, learning_rate, momentum, dampening, first, nesterov) -> None:
    """One step of SGD with momentum in place: optim.SGD's NumPy fast path, in one pass."""
    _native.sgd_momentum(p, g, b, learning_rate, momentum, 1 - dampening, first, nesterov)


def bias_relu(Z, b) -> None:
    """Z = maximum(Z + b, 0) in place: a ReLU layer's forward after its matmul, in one pass.

    Z: (n_samples, n_units); b: (n_units,).
    """
    _native.bias_relu(Z, b)


def relu_backward_bias_grad(dA, A, db) -> None:
    """dA = dA * (A > 0) in place, and db = its sum over samples: a ReLU layer's backward, one pass.

    dA, A: (n_samples, n_units); db: (n_units,), written.
    """
    _native.relu_backward_bias_grad(dA, A, db)
