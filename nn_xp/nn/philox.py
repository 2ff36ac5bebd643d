"""Philox4x32-10, a counter-based random generator, written with Array API standard operations only.

Algorithm: Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011,
as implemented in D. E. Shaw Research's Random123 library (include/Random123/philox.h). A block
of four 32-bit words is a pure function of a 128-bit counter and a 64-bit key, so any element can
be drawn without drawing the ones before it, and the same numbers come out bitwise on NumPy,
array-api-strict, CuPy, PyTorch and JAX. The arithmetic stays within 32-bit words (`_mulhilo`).
"""

from __future__ import annotations

import numbers

import numpy as np

from ..backends import placement, wide_words, word_dtype

M0, M1 = 0xD2511F53, 0xCD9E8D57  # round multipliers
W0, W1 = 0x9E3779B9, 0xBB67AE85  # key schedule bumps (golden ratio, sqrt(3) - 1)
MASK32 = 0xFFFFFFFF


def _mulhilo(xp, m: int, x):
    """(high, low) 32-bit halves of the 64-bit product m * x, x an array of `word_dtype` words:
    the product taken whole in uint64 where the namespace has it (`wide_words`: NumPy, CuPy,
    array-api-strict; 1.7x faster), else on 16-bit halves (`_mulhilo_halves`). Both are exact."""
    if wide_words(xp):
        p = xp.astype(x, xp.uint64) * m
        return xp.astype(p >> 32, xp.uint32), xp.astype(p & MASK32, xp.uint32)
    return _mulhilo_halves(m, x)


def _mulhilo_halves(m: int, x):
    """_mulhilo by schoolbook multiplication on 16-bit halves, so that no intermediate value
    reaches 2**32: the same arithmetic is exact in uint32 (JAX without x64 has no 64-bit integers)
    and in int64 (PyTorch's uint32 has no +, >> or >= on the CPU), whichever `word_dtype` is used.
    """
    m_hi, m_lo = m >> 16, m & 0xFFFF
    x_hi, x_lo = x >> 16, x & 0xFFFF
    lo_lo, lo_hi, hi_lo = x_lo * m_lo, x_lo * m_hi, x_hi * m_lo
    middle = (lo_lo >> 16) + (lo_hi & 0xFFFF) + (hi_lo & 0xFFFF)  # < 3 * 2**16
    low = (lo_lo & 0xFFFF) | ((middle & 0xFFFF) << 16)
    high = x_hi * m_hi + (lo_hi >> 16) + (hi_lo >> 16) + (middle >> 16)
    return high, low


def _check_word(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value <= MASK32:
        raise ValueError(f"{name} must be an integer in [0, 2**32), got {value!r}")
    return int(value)


def philox4x32(xp, counter, key, rounds: int = 10):
    """Philox4x32 with `rounds` rounds (10 is the standard, Random123's philox4x32_R(10, ...)).

    counter: 4 uint32 arrays of namespace `xp`, mutually broadcastable; a Python int stands for a
    scalar word. key: 2 Python ints in [0, 2**32). Returns 4 uint32 arrays of the broadcast shape.
    The key used in round r (counting from 0) is the key after r bumps, as in Random123.
    """
    word = word_dtype(xp)
    blocks = _philox_words(xp, counter, key, rounds, word)
    return tuple(xp.asarray(xp.astype(c, xp.uint32)) for c in blocks)  # NumPy makes 0-d results scalars


def _philox_words(xp, counter, key, rounds: int, word):
    """philox4x32 as 4 arrays of `word` dtype holding the 32-bit words."""
    k0, k1 = (_check_word(k, "key word") for k in key)
    device = next((placement(c) for c in counter if not isinstance(c, numbers.Integral)), None)
    words = [
        xp.asarray(_check_word(c, "counter word"), dtype=word, device=device)
        if isinstance(c, numbers.Integral)
        else (c if c.dtype == word else xp.astype(c, word))
        for c in counter
    ]
    c0, c1, c2, c3 = xp.broadcast_arrays(*words)
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
        hi0, lo0 = _mulhilo(xp, M0, c0)
        hi1, lo1 = _mulhilo(xp, M1, c2)
        # The key words as arrays: JAX refuses Python ints beyond int32 next to uint32 arrays.
        key0, key1 = (xp.asarray(k, dtype=word, device=device) for k in (k0, k1))
        c0, c1, c2, c3 = hi1 ^ c1 ^ key0, lo1, hi0 ^ c3 ^ key1, lo0
    return c0, c1, c2, c3


def key_from_seed(seed=None) -> tuple[int, int]:
    """Two 32-bit key words (plain Python ints) from a non-negative int seed.

    Derived on the host with numpy.random.SeedSequence(seed).generate_state(2); seed None draws
    fresh entropy from the operating system.
    """
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    state = np.random.SeedSequence(None if seed is None else int(seed)).generate_state(2)
    return int(state[0]), int(state[1])


def uniform_bits(xp, key, step: int, layer: int, rows, n_units: int):
    """Uniform uint32 bits of shape (len(rows), n_units).

    Element (i, j) is word j % 4 of philox4x32 with counter (j // 4, low 32 bits of rows[i],
    step mod 2**32, layer) and `key`. `step` is an integer or a 0-d integer array >= 0 (a
    compiled training step's, traced). `rows` is a 1-D integer array of global sample indices, so
    a row's bits do not depend on which other rows are drawn with it.
    """
    return xp.astype(_bits(xp, key, step, layer, rows, n_units), xp.uint32)


def _bits(xp, key, step: int, layer: int, rows, n_units: int):
    """uniform_bits in the namespace's `word_dtype`."""
    layer = _check_word(layer, "layer")
    if isinstance(n_units, bool) or not isinstance(n_units, numbers.Integral) or n_units < 0:
        raise ValueError(f"n_units must be a non-negative integer, got {n_units!r}")
    word = word_dtype(xp)
    if rows.dtype in (xp.int64, xp.uint64):
        rows = rows & MASK32
    c1 = xp.expand_dims(xp.astype(rows, word), axis=1)  # (n, 1); indices of 32 bits or fewer as they are
    blocks = -(-int(n_units) // 4)
    c0 = xp.expand_dims(xp.arange(blocks, dtype=word, device=placement(rows)), axis=0)  # (1, blocks)
    if isinstance(step, numbers.Integral):
        step = int(step) % 2**32
    elif step.dtype in (xp.int64, xp.uint64):  # a 0-d step array (traced by jax.jit): its low 32 bits
        step = step & MASK32
    out = _philox_words(xp, (c0, c1, step, layer), key, 10, word)  # 4 x (n, blocks)
    # Word k of each block to column 4 * block + k, by selection rather than xp.stack: XLA's CPU
    # compiler takes ~10 s over a concatenation of the four words (jax.jit of a dropout layer),
    # and well under a second over this.
    lane = xp.reshape(xp.arange(4, dtype=word, device=placement(rows)), (1, 1, 4))
    bits = xp.expand_dims(out[3], axis=2)
    for k in (2, 1, 0):
        bits = xp.where(lane == k, xp.expand_dims(out[k], axis=2), bits)
    return xp.reshape(bits, (rows.shape[0], 4 * blocks))[:, :n_units]


def dropout_mask(xp, key, step: int, layer: int, rows, n_units: int, rate: float):
    """Boolean keep-mask of shape (len(rows), n_units): True where the unit is KEPT.

    A unit is kept iff its uniform_bits are >= int(rate * 2**32) (clipped to [0, 2**32 - 1]), an
    exact integer comparison, so the mask is identical on every backend. Each element depends only
    on (key, step, layer, global row index, unit), so a row's mask is the same however the batch
    is split (across minibatches or processes). rate must be in [0, 1); rate 0 keeps everything.
    """
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
        raise ValueError(f"dropout rate must be a number in [0, 1), got rate={rate!r}")
    threshold = min(max(int(rate * 2**32), 0), MASK32)
    return _bits(xp, key, step, layer, rows, n_units) >= threshold
