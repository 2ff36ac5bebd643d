"""Philox4x32-10 (nn_xp.nn.philox): known answers, a scalar reference, backend parity, dropout masks."""

import array_api_compat.numpy as xnp
import array_api_strict as xst
import numpy as np
import pytest

from nn_xp import backends
from nn_xp.nn.philox import dropout_mask, key_from_seed, philox4x32, uniform_bits

HOST = [pytest.param(xnp, id="numpy"), pytest.param(xst, id="array_api_strict")]
GPU_COUNT, GPU_WHY = backends.cuda_status()
KEY = (0x12345678, 0x9ABCDEF0)

# Known answers: the rows "philox4x32 7" and "philox4x32 10" of tests/kat_vectors in
# DEShawResearch/random123 (github.com/DEShawResearch/random123, file last changed in commit
# d8a0c25e49992685c0b9d91b553c1d04f81b6b4b, 2021-01-16; read from the repository at 9545ff64).
# Format: rounds, counter[4], key[2], expected[4].
KAT = [
    (10, (0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    (10, (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (10, (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    (7, (0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x5F6FB709, 0x0D893F64, 0x4F121F81, 0x4F730A48)),
    (7, (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x5207DDC2, 0x45165E59, 0x4D8EE751, 0x8C52F662)),
    (7, (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0x4DFCCABA, 0x190A87F0, 0xC47362BA, 0xB6B5242A)),
]


def reference(counter, key, rounds=10):
    """Philox4x32 on plain Python ints, written independently of nn_xp.nn.philox."""
    x0, x1, x2, x3 = counter
    k0, k1 = key
    for r in range(rounds):
        if r > 0:
            k0, k1 = (k0 + 0x9E3779B9) % 2**32, (k1 + 0xBB67AE85) % 2**32
        p0, p1 = 0xD2511F53 * x0, 0xCD9E8D57 * x2
        x0, x1, x2, x3 = (p1 >> 32) ^ x1 ^ k0, p1 % 2**32, (p0 >> 32) ^ x3 ^ k1, p0 % 2**32
    return x0, x1, x2, x3


def host(x) -> np.ndarray:
    """Any backend's array as a NumPy array."""
    if hasattr(x, "get"):  # CuPy
        return x.get()
    return x if isinstance(x, np.ndarray) else np.from_dlpack(x)


def rows_of(xp, values):
    return xp.asarray(np.asarray(values, dtype=np.int64))


def test_reference_matches_kat():
    for rounds, counter, key, expected in KAT:
        assert reference(counter, key, rounds) == expected


@pytest.mark.parametrize("xp", HOST)
@pytest.mark.parametrize("rounds, counter, key, expected", KAT)
def test_known_answers(xp, rounds, counter, key, expected):
    words = tuple(xp.asarray([c], dtype=xp.uint32) for c in counter)
    out = philox4x32(xp, words, key, rounds=rounds)
    assert all(o.dtype == xp.uint32 and o.shape == (1,) for o in out)
    assert tuple(int(host(o)[0]) for o in out) == expected
    # Python ints stand for scalar words and give the same block.
    out = philox4x32(xp, counter, key, rounds=rounds)
    assert all(o.shape == () and o.dtype == xp.uint32 for o in out)
    assert tuple(int(host(o)) for o in out) == expected


@pytest.mark.parametrize("xp", HOST)
def test_vectorised_matches_scalar_reference(xp):
    rng = np.random.default_rng(0)
    for _ in range(4):
        counters = rng.integers(0, 2**32, size=(4, 64), dtype=np.uint32)
        key = tuple(int(k) for k in rng.integers(0, 2**32, size=2))
        out = [host(o) for o in philox4x32(xp, tuple(xp.asarray(c) for c in counters), key)]
        for i in range(counters.shape[1]):
            expected = reference(tuple(int(c[i]) for c in counters), key)
            assert tuple(int(o[i]) for o in out) == expected


@pytest.mark.parametrize("xp", HOST)
def test_uniform_bits_layout_matches_reference(xp):
    rows = [0, 7, 2**32 + 5, 123456]  # 2**32 + 5 keeps its low 32 bits: 5
    bits = host(uniform_bits(xp, KEY, 2**32 + 3, 2, rows_of(xp, rows), 10))
    assert bits.shape == (4, 10) and bits.dtype == np.uint32
    for i, row in enumerate(rows):
        for j in range(10):
            block = reference((j // 4, row % 2**32, 3, 2), KEY)
            assert int(bits[i, j]) == block[j % 4]


@pytest.mark.parametrize("xp", HOST)
def test_row_dtype_does_not_matter(xp):
    rows = np.arange(50, 80)
    a = uniform_bits(xp, KEY, 1, 0, xp.asarray(rows.astype(np.int64)), 9)
    b = uniform_bits(xp, KEY, 1, 0, xp.asarray(rows.astype(np.int32)), 9)
    np.testing.assert_array_equal(host(a), host(b))


def assert_backends_agree(xp_a, xp_b):
    rows = np.arange(1000, 1300)
    for fn, args in [(uniform_bits, ()), (dropout_mask, (0.3,))]:
        a = fn(xp_a, KEY, 17, 3, rows_of(xp_a, rows), 37, *args)
        b = fn(xp_b, KEY, 17, 3, rows_of(xp_b, rows), 37, *args)
        assert a.shape == b.shape == (300, 37)
        np.testing.assert_array_equal(host(a), host(b))


def test_backends_agree_bitwise():
    assert_backends_agree(xnp, xst)


@pytest.mark.parametrize("xp", HOST)
def test_mask_is_split_invariant(xp):
    rows = np.arange(500, 600)
    full = host(dropout_mask(xp, KEY, 9, 1, rows_of(xp, rows), 33, 0.5))
    for part in (np.arange(0, 10), np.arange(37, 91), np.array([99, 3, 50, 50])):
        piece = host(dropout_mask(xp, KEY, 9, 1, rows_of(xp, rows[part]), 33, 0.5))
        np.testing.assert_array_equal(piece, full[part])


@pytest.mark.parametrize("xp", HOST)
def test_step_layer_and_key_change_the_mask(xp):
    rows = rows_of(xp, np.arange(64))
    base = host(dropout_mask(xp, KEY, 5, 0, rows, 32, 0.5))
    others = [
        dropout_mask(xp, KEY, 6, 0, rows, 32, 0.5),
        dropout_mask(xp, KEY, 5, 1, rows, 32, 0.5),
        dropout_mask(xp, key_from_seed(1), 5, 0, rows, 32, 0.5),
    ]
    for other in others:
        assert np.mean(host(other) != base) > 0.4  # independent masks disagree about half the time


@pytest.mark.parametrize("xp", HOST)
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_kept_fraction(xp, rate):
    mask = host(dropout_mask(xp, KEY, 0, 0, rows_of(xp, np.arange(2000)), 64, rate))
    assert mask.shape == (2000, 64) and mask.dtype == np.bool_
    assert abs(mask.mean() - (1 - rate)) < 0.005


@pytest.mark.parametrize("xp", HOST)
def test_bits_are_roughly_uniform(xp):
    bits = host(uniform_bits(xp, KEY, 0, 0, rows_of(xp, np.arange(2000)), 64)).astype(np.float64) / 2**32
    assert abs(bits.mean() - 0.5) < 0.01
    counts = np.bincount((bits * 16).astype(int).ravel(), minlength=16)
    assert np.all(np.abs(counts / bits.size - 1 / 16) < 0.005)


@pytest.mark.parametrize("xp", HOST)
@pytest.mark.parametrize("rate", [1.0, -0.1, "x", float("nan"), None])
def test_bad_rate_raises(xp, rate):
    with pytest.raises(ValueError, match="rate"):
        dropout_mask(xp, KEY, 0, 0, rows_of(xp, np.arange(4)), 8, rate)


@pytest.mark.parametrize("xp", HOST)
def test_rate_zero_keeps_everything(xp):
    assert host(dropout_mask(xp, KEY, 0, 0, rows_of(xp, np.arange(300)), 40, 0.0)).all()
    assert host(dropout_mask(xp, KEY, 0, 0, rows_of(xp, np.arange(300)), 40, 0)).all()


def test_key_from_seed():
    key = key_from_seed(42)
    assert key == key_from_seed(42) and key != key_from_seed(43)
    assert all(isinstance(k, int) and 0 <= k < 2**32 for k in key)
    assert key_from_seed(None) != key_from_seed(None)
    with pytest.raises(ValueError, match="seed"):
        key_from_seed(-1)


def test_bad_key_raises():
    with pytest.raises(ValueError, match="key"):
        philox4x32(xnp, (0, 0, 0, 0), (2**32, 0))


@pytest.mark.parametrize(
    "name", [pytest.param("cupy", marks=pytest.mark.skipif(GPU_COUNT == 0, reason=f"no CuPy GPU: {GPU_WHY}"))]
)
def test_cupy_matches_host(name):
    import array_api_compat.cupy as xcp

    rounds, counter, key, expected = KAT[2]
    out = philox4x32(xcp, tuple(xcp.asarray([c], dtype=xcp.uint32) for c in counter), key, rounds=rounds)
    assert tuple(int(host(o)[0]) for o in out) == expected
    assert_backends_agree(xnp, xcp)
