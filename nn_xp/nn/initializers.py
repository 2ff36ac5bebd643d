"""Weight initializers. Weights are drawn on the host in float64 from a numpy Generator, so the
same seed gives bitwise-identical weights on every device; biases start at zero.

Each initializer maps (rng, n_in, n_out) to W of shape (n_out, n_in):
- random:          N(0, 1) * 0.01                     (the seed notebooks)
- xavier_normal:   N(0, 2 / (n_in + n_out))           (Glorot & Bengio 2010); "xavier", "glorot"
- xavier_uniform:  U(-a, a), a = sqrt(6 / (n_in + n_out))
- he_normal:       N(0, 2 / n_in)                     (He et al. 2015); "he"
- he_uniform:      U(-a, a), a = sqrt(6 / n_in)
- lecun_normal:    N(0, 1 / n_in)                     (LeCun 1998); "lecun"
- lecun_uniform:   U(-a, a), a = sqrt(3 / n_in)
"""

from __future__ import annotations

import math

import numpy as np


def _normal(variance):
    def init(rng: np.random.Generator, n_in: int, n_out: int) -> np.ndarray:
        return rng.standard_normal((n_out, n_in)) * math.sqrt(variance(n_in, n_out))

    return init


def _uniform(limit_squared):
    def init(rng: np.random.Generator, n_in: int, n_out: int) -> np.ndarray:
        limit = math.sqrt(limit_squared(n_in, n_out))
        return rng.uniform(-limit, limit, size=(n_out, n_in))

    return init


def _random(rng: np.random.Generator, n_in: int, n_out: int) -> np.ndarray:
    return rng.standard_normal((n_out, n_in)) * 0.01


INITIALIZERS = {
    "random": _random,
    "xavier_normal": _normal(lambda i, o: 2.0 / (i + o)),
    "xavier_uniform": _uniform(lambda i, o: 6.0 / (i + o)),
    "he_normal": _normal(lambda i, o: 2.0 / i),
    "he_uniform": _uniform(lambda i, o: 6.0 / i),
    "lecun_normal": _normal(lambda i, o: 1.0 / i),
    "lecun_uniform": _uniform(lambda i, o: 3.0 / i),
}
ALIASES = {
    "xavier": "xavier_normal",
    "glorot": "xavier_normal",
    "glorot_normal": "xavier_normal",
    "glorot_uniform": "xavier_uniform",
    "he": "he_normal",
    "kaiming": "he_normal",
    "lecun": "lecun_normal",
}
INIT_NAMES = tuple(sorted([*INITIALIZERS, *ALIASES]))


def check_init(init, parameter: str = "init") -> str:
    """The canonical initializer name; unknown names raise ValueError listing the valid ones."""
    if isinstance(init, str):
        name = ALIASES.get(init.strip().lower(), init.strip().lower())
        if name in INITIALIZERS:
            return name
    raise ValueError(f"{parameter} must be one of {list(INIT_NAMES)}, got {init!r}")


def initial_parameters(layer_sizes, init: str, rng: np.random.Generator) -> list[np.ndarray]:
    """[W1, b1, W2, b2, ...] in float64 on the host."""
    draw = INITIALIZERS[check_init(init)]
    params = []
    for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        params.append(draw(rng, n_in, n_out))
        params.append(np.zeros(n_out))
    return params
