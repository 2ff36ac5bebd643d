"""Optimizers with PyTorch's update rules, step for step, on any Array API backend.

Each optimizer holds a reference to the model's live parameter list (`model.parameters()`) and
updates it: `step(grads)` takes one gradient per parameter, in the same order. Each class states
its update rule once, in `_update`, and leaves the arithmetic of the common rules to the backend's
ops (ops.py): the standard version returns new arrays, NumPy's and CuPy's update in place (in one
compiled pass or one fused kernel where they can). Where the parameters, the gradients and the
state are views of flat buffers, one update over the buffers updates every parameter.

State (moments, momentum buffers) is data, optax-style: `opt.init(params)` makes the zero state
(a NamedTuple, the class's `State`) and `opt.update(grads, state, params, step=t)` returns
(new_params, new_state) as a pure function of arrays, so a training step written with it can be
compiled whole (jax.jit); `step(grads)` is the stateful form training calls, which keeps the state
in `opt.state`. State is made with `xp.zeros_like(p)`, so it lives where the parameters live;
`to(device)` moves it when the model moves. Nothing here reaches the host: hyperparameters and
bias corrections are Python floats (or xp ops on a 0-d step), which keep float32 arrays float32.
L-BFGS, driven by a closure, keeps `step(closure)` alone.

The package: base.py (the Optimizer base class), first_order.py (SGD, RMSprop, Adam, AdamW),
lbfgs.py (L-BFGS, with line_search.py), schedules.py (learning-rate schedules), clipping.py
(gradient clipping); `get_optimizer` picks one by name.
"""

from __future__ import annotations

from .base import Optimizer
from .first_order import SGD, Adam, AdamState, AdamW, RMSprop, RMSpropState, SGDState
from .lbfgs import LBFGS, LBFGSStep

__all__ = [
    "LBFGS",
    "OPTIMIZERS",
    "SGD",
    "Adam",
    "AdamState",
    "AdamW",
    "LBFGSStep",
    "Optimizer",
    "RMSprop",
    "RMSpropState",
    "SGDState",
    "get_optimizer",
]

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam", "adamw", "lbfgs")


# ---- by name -----------------------------------------------------------------------------------
def get_optimizer(spec, params, learning_rate=None) -> Optimizer:
    """An optimizer for `params`: an Optimizer instance (returned as is) or a name from OPTIMIZERS.

    "momentum" is SGD with momentum=0.9. learning_rate=None keeps the class default
    (SGD 0.01, RMSprop 0.01, Adam/AdamW 0.001, LBFGS 1.0); it is ignored for an instance.
    """
    if isinstance(spec, Optimizer):
        if spec.params is not params:
            raise ValueError(
                "optimizer was built for another parameter list; build it with the model's own "
                "model.parameters()"
            )
        return spec
    expected = f"optimizer must be one of {list(OPTIMIZERS)} or an nn_xp.optim optimizer, got {spec!r}"
    if not isinstance(spec, str):
        raise TypeError(expected)
    key = spec.strip().lower()
    if key not in OPTIMIZERS:
        raise ValueError(expected)
    kwargs = {} if learning_rate is None else {"learning_rate": learning_rate}
    if key == "sgd":
        return SGD(params, **kwargs)
    if key == "momentum":
        return SGD(params, momentum=0.9, **kwargs)
    return {"rmsprop": RMSprop, "adam": Adam, "adamw": AdamW, "lbfgs": LBFGS}[key](params, **kwargs)
