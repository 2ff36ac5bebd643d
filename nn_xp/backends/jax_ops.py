"""JAX's ops: the standard primitives (ops.py), and the compiler that runs a pure training step
whole (`compile`, jax.jit) and a run of steps in one call (`scan`, jax.lax.scan).

JAX's arrays are immutable, so the arithmetic is `Ops`' own; what JAX adds is that a function of
arrays written with those primitives can be traced once and run as one XLA program, where the
standard ops dispatch every operation on its own. training/compiled.py asks `ops.compile` (None
on the other backends) and never imports JAX. JAX is imported only when one of its devices is.
"""

from __future__ import annotations

from .ops import Ops


class JaxOps(Ops):
    """The standard primitives, plus `compile` and `scan` (the other ops have compile = None)."""

    name = "jax"

    def copy_arrays(self, arrays) -> list:
        """The arrays themselves: a JAX array never changes, so it is its own independent copy
        (the epoch's snapshot costs nothing)."""
        return list(arrays)

    @staticmethod
    def compile(fn):
        """`fn` compiled by jax.jit: traced at its first call for each shape and dtype of its array
        arguments (and each structure of its lists, tuples and Nones), then run as one program.
        Python side effects in `fn` happen at tracing only."""
        import jax

        return jax.jit(fn)

    @staticmethod
    def scan(fn, carry, xs):
        """jax.lax.scan: `fn(carry, x) -> (carry, y)` over the leading axis of the arrays in `xs`
        (a tuple; None entries stay None); returns (the last carry, the ys stacked). Used inside
        a compiled function, where the loop becomes one loop of the program."""
        import jax

        return jax.lax.scan(fn, carry, xs)
