"""Activation functions as forward/backward pairs, written against the Array API standard.

Each forward is `A = f(xp, Z)`; each backward is `dZ = df(xp, dA, Z, A)`, computing the
derivative from the saved output `A` where that is cheaper and exact (relu, sigmoid, tanh).
A new activation is one pair of functions and one line in `_FIXED` (or `_PARAMETRIC`). An activation
may also name the ops primitive that computes the same pair faster (`fused`, with its settings in
`params`): the backends' in-place and fused-kernel forms (nn_xp/backends/) look at that name alone,
never at the functions, and an activation without one (None) runs its own pair on every backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ..validation import Real


@dataclass(frozen=True)
class Activation:
    """A named forward/backward pair; `params` holds its settings (e.g. a leaky ReLU slope).

    fused: the name of the ops primitive that computes this very pair ("linear", "relu", "sigmoid",
        "tanh", "leaky_relu" with params["negative_slope"]), or None: the ops then call
        forward/backward. An activation of your own that shares a built-in's name keeps None, and
        so its own functions.
    """

    name: str
    forward: Callable
    backward: Callable
    params: dict = field(default_factory=dict)
    fused: str | None = None

    def spec(self) -> dict:
        """A JSON-ready description, inverted by `get_activation`."""
        return {"name": self.name, **self.params}


def _linear(xp, Z):
    return Z


def _linear_backward(xp, dA, Z, A):
    return dA


def _relu(xp, Z):
    # maximum, not where(Z > 0, ...): a NaN must propagate (as in PyTorch), never become 0.
    return xp.maximum(Z, xp.zeros_like(Z))


def _relu_backward(xp, dA, Z, A):
    return xp.where(A > 0, dA, xp.zeros_like(dA))



def sigmoid(xp, Z):
    # exp of a non-positive number never overflows: 1/(1+e^-z) for z >= 0, e^z/(1+e^z) below.
    E = xp.exp(-xp.abs(Z))
    return xp.where(Z >= 0, 1 / (1 + E), E / (1 + E))


def _sigmoid_backward(xp, dA, Z, A):
    return dA * A * (1 - A)


def _tanh(xp, Z):
    return xp.tanh(Z)


def _tanh_backward(xp, dA, Z, A):
    return dA * (1 - A * A)


def _softmax(xp, Z):
    E = xp.exp(Z - xp.max(Z, axis=1, keepdims=True))
    return E / xp.sum(E, axis=1, keepdims=True)


def _softmax_backward(xp, dA, Z, A):
    # Jacobian-vector product of softmax: A * (dA - <dA, A>) row by row.
    return A * (dA - xp.sum(dA * A, axis=1, keepdims=True))


def _softplus(xp, Z):
    return xp.where(Z > 0, Z, xp.zeros_like(Z)) + xp.log1p(xp.exp(-xp.abs(Z)))


def _softplus_backward(xp, dA, Z, A):
    return dA * sigmoid(xp, Z)


def _silu(xp, Z):
    return Z * sigmoid(xp, Z)


def _silu_backward(xp, dA, Z, A):
    S = sigmoid(xp, Z)
    return dA * (S + Z * S * (1 - S))


_GELU_C = math.sqrt(2.0 / math.pi)


def _gelu(xp, Z):
    # The tanh form (PyTorch's gelu(approximate="tanh")): erf is not in the Array API standard.
    return 0.5 * Z * (1 + xp.tanh(_GELU_C * (Z + 0.044715 * Z * Z * Z)))


def _gelu_backward(xp, dA, Z, A):
    T = xp.tanh(_GELU_C * (Z + 0.044715 * Z * Z * Z))
    dT = (1 - T * T) * _GELU_C * (1 + 3 * 0.044715 * Z * Z)
    return dA * (0.5 * (1 + T) + 0.5 * Z * dT)


def leaky_relu(negative_slope: float = 0.01) -> Activation:
    """Leaky ReLU, f(z) = z for z > 0 else negative_slope * z."""
    slope = _check_positive_param("negative_slope", negative_slope, allow_zero=True)

    def forward(xp, Z):
        return xp.where(Z > 0, Z, slope * Z)

    def backward(xp, dA, Z, A):
        return xp.where(Z > 0, dA, slope * dA)

    return Activation("leaky_relu", forward, backward, {"negative_slope": slope}, fused="leaky_relu")


def elu(alpha: float = 1.0) -> Activation:
    """ELU, f(z) = z for z > 0 else alpha * (exp(z) - 1)."""
    alpha = _check_positive_param("alpha", alpha)

    def forward(xp, Z):
        return xp.where(Z > 0, Z, alpha * xp.expm1(xp.where(Z > 0, xp.zeros_like(Z), Z)))

    def backward(xp, dA, Z, A):
        return xp.where(Z > 0, dA, dA * (A + alpha))

    return Activation("elu", forward, backward, {"alpha": alpha})


def _check_positive_param(name, value, allow_zero=False):
    return Real(0, None, closed="both" if allow_zero else "neither")(value, name)


_FIXED = {
    "linear": Activation("linear", _linear, _linear_backward, fused="linear"),
    "relu": Activation("relu", _relu, _relu_backward, fused="relu"),
    "sigmoid": Activation("sigmoid", sigmoid, _sigmoid_backward, fused="sigmoid"),
    "tanh": Activation("tanh", _tanh, _tanh_backward, fused="tanh"),
    "softmax": Activation("softmax", _softmax, _softmax_backward),
    "softplus": Activation("softplus", _softplus, _softplus_backward),
    "silu": Activation("silu", _silu, _silu_backward),
    "gelu": Activation("gelu", _gelu, _gelu_backward),
}
_PARAMETRIC = {"leaky_relu": leaky_relu, "elu": elu}
ACTIVATIONS = tuple(sorted([*_FIXED, *_PARAMETRIC]))


def _exp(xp, Z):
    return xp.exp(Z)


def _exp_backward(xp, dA, Z, A):
    return dA * A


# Output activations only: "exp" is the Poisson loss's inverse log link (scikit-learn's "exp").
_OUTPUT_ONLY = {"exp": Activation("exp", _exp, _exp_backward)}
OUTPUT_ACTIVATIONS = tuple(sorted([*ACTIVATIONS, *_OUTPUT_ONLY]))


def get_activation(spec, parameter: str = "activation") -> Activation:
    """An Activation from a name ("relu"), a dict ({"name": "leaky_relu", "negative_slope": 0.2})
    or an Activation object. Unknown names raise ValueError listing the valid ones."""
    if isinstance(spec, Activation):
        return spec
    params = {}
    if isinstance(spec, dict):
        params = {k: v for k, v in spec.items() if k != "name"}
        spec = spec.get("name")
    if not isinstance(spec, str):
        raise TypeError(f"{parameter} must be an activation name, one of {list(ACTIVATIONS)}, got {spec!r}")
    name = spec.strip().lower()
    if name in _FIXED and not params:
        return _FIXED[name]
    if name in _OUTPUT_ONLY and not params and parameter == "output_activation":
        return _OUTPUT_ONLY[name]
    if name in _PARAMETRIC:
        try:
            return _PARAMETRIC[name](**params)
        except TypeError as error:
            raise ValueError(f"{parameter}: bad settings for {name}: {error}") from None
    choices = OUTPUT_ACTIVATIONS if parameter == "output_activation" else ACTIVATIONS
    raise ValueError(f"{parameter} must be one of {list(choices)}, got {spec!r}")
