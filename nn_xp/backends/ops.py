"""The array primitives that layers, output heads and optimizers are written with, one object per backend.

`Ops` holds the standard version of every primitive: Array API functions only, never an in-place
assignment, so it runs on any backend, an immutable one included (array-api-strict is the test).
Subclasses override only what their backend does faster, with the same arithmetic in the same
order (thinc's `Ops`/`NumpyOps`/`CupyOps` pattern):
- `NumpyOps` (numpy_ops.py): `out=` and in-place updates, and the compiled single-pass loops of
  `_native.c` where they are built;
- `CupyOps` (cupy_ops.py): `NumpyOps`' in-place forms, with fused CUDA kernels in place of the
  compiled loops;
- `TorchOps` (torch_ops.py): `NumpyOps`' in-place forms with torch's `out=` and in-place
  functions (and the compiled loops on torch:cpu, through NumPy views of the same memory);
- `JaxOps` (jax_ops.py): the standard arithmetic, and `compile` / `scan`, which run a pure
  training step (or an epoch of them) as one compiled program.
`ops_for(xp)` (the package's `__init__`, above every ops module) is the only place that chooses;
code above the ops never asks which backend it is on.

Primitives that can write into an existing array take `out=`: the standard version ignores it and
returns a new array, the mutable backends write into it and return it. Every primitive returns its
results, so the caller's code is the same either way:

    dW = ops.matmul(dZ.T, X, out=dW_buffer)

tests/test_ops.py checks each override against the standard version.
"""

from __future__ import annotations


class FlatList(list):
    """A list of arrays that may be consecutive views of one flat buffer (`self.flat`).

    It is an ordinary list to its users; `is_packed()` says whether its elements are still the
    views (assigning a new array to an element unlinks it, and the per-array path is taken).
    """

    flat = None
    views: tuple = ()

    def is_packed(self) -> bool:
        return self.flat is not None and len(self) == len(self.views) and all(
            a is b for a, b in zip(self, self.views)
        )


class Ops:
    """The standard version of every primitive, for any Array API namespace `xp`."""

    name = "standard"
    mutable = False  # True where arrays are written in place (flat buffers, workspaces, out=)
    # A compiler for pure functions of arrays (JaxOps: jax.jit, with `scan` beside it); None here:
    # the standard ops run one operation at a time.
    compile = None
    scan = None

    def __init__(self, xp):
        self.xp = xp

    def __repr__(self) -> str:
        return f"{type(self).__name__}({getattr(self.xp, '__name__', self.xp)!r})"

    # ---- memory -------------------------------------------------------------------------------
    def buffer(self, store: dict, key, shape: tuple, like):
        """An array of `shape` kept in `store` from call to call, or None where nothing is kept."""
        return None

    def pack(self, arrays, release: bool = False) -> FlatList:
        """The arrays as a FlatList (views of one new flat buffer where the backend has them).

        release: set each entry of the list `arrays` to None once it is copied, so that a caller
            whose list holds the only references frees each array as it goes (peak: the buffer and
            one array, not the buffer and all of them). Nothing is copied here, so nothing to drop.
        """
        return FlatList(arrays)

    def copy_arrays(self, arrays) -> list:
        """Independent copies of `arrays`."""
        return [self.xp.asarray(a, copy=True) for a in arrays]

    def take_rows(self, A, rows, out=None):
        """A[rows] for valid row indices."""
        return self.xp.take(A, rows, axis=0)

    def take_batch(self, arrays, rows, outs=None) -> list:
        """[A[rows] for A in arrays]: one batch's rows of several arrays (X, Y, sample weights) at once.

        Args:
            arrays: 2-D arrays (n_samples, n_columns_a) with the same rows, or None (given back as None).
            rows: (n_batch,) valid row indices.
            outs: None, or one entry per array: None, or an array (n_batch, n_columns_a) of its dtype
                that the mutable backends gather into (the standard version returns new arrays).
        Returns:
            a list aligned with `arrays`.
        """
        return [None if A is None else self.take_rows(A, rows) for A in arrays]

    # ---- layers -------------------------------------------------------------------------------
    def matmul(self, A, B, out=None):
        return A @ B

    def sum_rows(self, A, out=None):
        """The sum over samples (axis 0)."""
        return self.xp.sum(A, axis=0)

    def bias_activate(self, activation, Z, b):
        """A layer's `A = f(Z + b)` after its matrix product.

        Returns (A, Z) where the backward pass needs Z, else (A, None) (Z may be overwritten by A).
        """
        Z = Z + b
        return activation.forward(self.xp, Z), Z

    def backward_bias(self, activation, dA, Z, A, db=None):
        """(dZ = dA * f'(Z), db = sum of dZ over samples); dA may be overwritten."""
        dZ = activation.backward(self.xp, dA, Z, A)
        return dZ, self.xp.sum(dZ, axis=0)

    def dropout(self, X, keep, scale, out=None):
        """Inverted dropout: X * scale where `keep`, 0 elsewhere (also the backward of itself)."""
        xp = self.xp
        return xp.where(keep, X * scale, xp.zeros_like(X))

    def softmax_cross_entropy(self, Z, Y, weight, out=None):
        """Cross-entropy of softmax(Z) against probability rows Y, from the logits.

            L = sum_i weight_i * ( logsumexp(Z_i) - <Y_i, Z_i> ),   dZ_i = weight_i * (softmax(Z_i) - Y_i)

        weight is 1 / n_samples for the mean (a number), or a column (n_samples, 1) of sample
        weights that sum to 1. Returns (L, dZ, logits: what the metrics read; the mutable
        backends return the logits shifted by their row maximum, with the same argmax).
        """
        xp = self.xp
        m = xp.max(Z, axis=1, keepdims=True)
        E = xp.exp(Z - m)
        S = xp.sum(E, axis=1, keepdims=True)
        if isinstance(weight, float):
            L = -xp.sum(Y * ((Z - m) - xp.log(S))) * weight
        else:
            L = -xp.sum(Y * ((Z - m) - xp.log(S)) * weight)
        return L, (E / S - Y) * weight, Z

    # ---- optimizer updates --------------------------------------------------------------------
    # Each returns the updated arrays; the mutable backends update their inputs in place and return
    # them. `work` is a dict the optimizer owns, for scratch arrays kept between steps.
    def scale(self, p, factor: float):
        """p * factor (AdamW's decoupled decay)."""
        return p * factor

    def half(self):
        """The ops for half-precision arrays (mixed precision): these, unless a backend differs."""
        return self

    def unscale_into(self, half, out, factor: float):
        """`half` cast to out's dtype and multiplied by `factor` (mixed precision's gradients)."""
        return self.xp.astype(half, out.dtype) * factor

    def add_scaled(self, g, p, factor: float):
        """g + factor * p (the L2 penalty's gradient)."""
        return g + factor * p

    def sgd(self, p, g, learning_rate: float, work: dict):
        return p - learning_rate * g

    def sgd_momentum(self, p, g, b, *, learning_rate, momentum, dampening, first, nesterov, work):
        """torch.optim.SGD with momentum: returns (p, b). See optim.SGD for the rule.

        first: True at the first step (b becomes a copy of g); a 0-d boolean array selects the
        same way (a step number traced by jax.jit is not a Python bool).
        """
        if isinstance(first, bool):
            b = g if first else b * momentum + (1 - dampening) * g
        else:
            b = self.xp.where(first, g, b * momentum + (1 - dampening) * g)
        step = g + momentum * b if nesterov else b
        return p - learning_rate * step, b

    def adam(self, p, g, m, v, *, beta1, beta2, eps_c, step_c, work):
        """Adam's moments and step: returns (p, m, v). See optim.Adam for the rule.

        eps_c = eps * sqrt(1 - beta2^t), step_c = learning_rate / (1 - beta1^t) * sqrt(1 - beta2^t):
        torch's step_size * m / (sqrt(v) / sqrt(1 - beta2^t) + eps) with the bias correction moved
        into the constants, one pass over the arrays fewer.
        """
        m = m * beta1 + (1 - beta1) * g
        v = v * beta2 + (1 - beta2) * (g * g)
        return p - step_c * (m / (self.xp.sqrt(v) + eps_c)), m, v

    def amsgrad(self, p, g, m, v, v_max, *, beta1, beta2, eps_c, step_c, work):
        """Adam with AMSGrad's running maximum of v: returns (p, m, v, v_max)."""
        xp = self.xp
        m = m * beta1 + (1 - beta1) * g
        v = v * beta2 + (1 - beta2) * (g * g)
        v_max = xp.maximum(v_max, v)
        return p - step_c * (m / (xp.sqrt(v_max) + eps_c)), m, v, v_max

    def rmsprop(self, p, g, v, g_avg, b, *, learning_rate, rho, eps, momentum, work):
        """torch.optim.RMSprop: returns (p, v, g_avg, b); g_avg / b are None when not used."""
        xp = self.xp
        v = v * rho + (1 - rho) * (g * g)
        if g_avg is not None:
            g_avg = g_avg * rho + (1 - rho) * g
            d = xp.sqrt(v - g_avg * g_avg) + eps
        else:
            d = xp.sqrt(v) + eps
        if b is not None:
            b = b * momentum + g / d
            return p - learning_rate * b, v, g_avg, b
        return p - learning_rate * (g / d), v, g_avg, b
