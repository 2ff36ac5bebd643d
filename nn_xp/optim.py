"""Optimizers with PyTorch's update rules, step for step, on any Array API backend.

Each optimizer holds a reference to the model's live parameter list (`model.parameters()`) and
updates it: `step(grads)` takes one gradient per parameter, in the same order. Each class states
its update rule once, in `_update`, and leaves the arithmetic of the common rules to the backend's
ops (ops.py): the standard version returns new arrays, NumPy's and CuPy's update in place (in one
compiled pass or one fused kernel where they can). Where the parameters, the gradients and the
state are views of flat buffers, one update over the buffers updates every parameter.

State (moments, momentum buffers) is made with `xp.zeros_like(p)` at the first step, so it lives
where the parameters live; `to(device)` moves it when the model moves. Nothing here reaches the
host: hyperparameters and bias corrections are Python floats, which keep float32 arrays float32.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from . import backends
from .backends import FlatList, ops_for
from .line_search import strong_wolfe
from .validation import Boolean, Integer, Options, Real, check_params

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam", "adamw", "lbfgs")
_LEARNING_RATE = Real(0.0, None, closed="neither")
_RATE_OR_ZERO = Real(0.0, None)  # a schedule may end exactly at min_learning_rate=0.0


class Optimizer:
    """Base class: the parameter list, the step count, state bookkeeping and (de)serialisation.

    Subclasses set `name`, declare their hyperparameters in `constraints` (validation.py), their
    state as a NamedTuple class `State` (one field per state array, None where unused) with
    `_state_names`, and write the update rule in `_update(ops, p, g, state, first)`, which returns
    the new (p, state). `learning_rate` is checked when reassigned (schedules do).
    """

    name = "optimizer"
    constraints: dict = {}
    State = None

    def __init__(self, params, learning_rate, **hyperparameters):
        if not isinstance(params, list):
            raise TypeError(
                f"params must be the model's parameter list (model.parameters()), got {type(params).__name__}"
            )
        if not params:
            raise ValueError("params must hold at least one array")
        self.learning_rate = _LEARNING_RATE(learning_rate, "learning_rate")
        checked = self._check(**hyperparameters)
        self._hyperparameter_names = ("learning_rate",) + tuple(checked)
        self.__dict__.update(checked)
        self.params = params  # the live list itself: model.to() swaps its elements
        self.step_count = 0
        self.state: dict[str, list] = {}  # name -> one array per parameter, made at the first step
        self._work = {}  # scratch arrays the backend's ops keep between steps

    @property
    def learning_rate(self) -> float:
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        self._learning_rate = _RATE_OR_ZERO(value, "learning_rate")

    @property
    def hyperparameters(self) -> dict:
        """The constructor's arguments (but params), with their current values."""
        return {key: getattr(self, key) for key in self._hyperparameter_names}

    @classmethod
    def _check(cls, **hyperparameters) -> dict:
        return check_params(cls.constraints, hyperparameters)

    @classmethod
    def _state_names(cls, hyperparameters: dict) -> tuple:
        """Names of the per-parameter state arrays under these hyperparameters."""
        return ()

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{type(self).__name__}({arguments})"

    # -- stepping --
    def _check_grads(self, grads) -> None:
        if not isinstance(grads, (list, tuple)):
            raise TypeError(f"grads must be a list of arrays (one per parameter), got {type(grads).__name__}")
        if len(grads) != len(self.params):
            raise ValueError(
                f"grads must hold one array per parameter: expected {len(self.params)}, got {len(grads)}"
            )
        for index, (g, p) in enumerate(zip(grads, self.params)):
            shape = tuple(g.shape) if hasattr(g, "shape") else type(g).__name__
            if shape != tuple(p.shape):
                raise ValueError(
                    f"grads[{index}] must have its parameter's shape {tuple(p.shape)}, got {shape}"
                )
            if backends.device_of(g) != backends.device_of(p):
                raise ValueError(
                    f"grads[{index}] is on device {backends.device_of(g)!r} but its parameter is on "
                    f"{backends.device_of(p)!r}"
                )
            if g.dtype != p.dtype:
                raise ValueError(f"grads[{index}] has dtype {g.dtype} but its parameter has dtype {p.dtype}")

    _checked_views = None
    _namespace_key = None

    def step(self, grads) -> None:
        """Update every parameter from `grads`, one array per parameter, in order."""
        params = self.params
        packed = _packed(params, grads)
        checked = self._checked_views
        if not (packed and checked is not None and grads.views is checked[0] and params.views is checked[1]):
            self._check_grads(grads)  # a gradient buffer checked once needs no check per step
            if packed:
                self._checked_views = (grads.views, params.views)
        ops = self._ops(grads)
        self.step_count += 1
        first = self._init_state(ops.xp)
        names = tuple(self.state)
        if packed and ops.mutable:
            # Parameters, gradients and state are views of flat buffers: one update does all.
            for key, arrays in self.state.items():
                if not (isinstance(arrays, FlatList) and arrays.flat is not None):
                    self.state[key] = ops.pack(arrays)
            state = self._state_of({key: self.state[key].flat for key in names})
            p, new = self._update(ops, params.flat, grads.flat, state, first)
            _write_back(params.flat, p)
            for key in names:
                _write_back(self.state[key].flat, getattr(new, key))
            return
        for i, (p, g) in enumerate(zip(params, grads)):
            state = self._state_of({key: self.state[key][i] for key in names})
            p, new = self._update(ops, p, g, state, first)
            if ops.mutable:  # in place where the ops were; copied where a rule made new arrays
                _write_back(params[i], p)
                for key in names:
                    _write_back(self.state[key][i], getattr(new, key))
            else:
                params[i] = p
                for key in names:
                    self.state[key][i] = getattr(new, key)

    def _state_of(self, arrays: dict):
        return self.State(**arrays) if self.State is not None else None

    def _ops(self, grads):
        """The arrays' ops, looked up once per pair of array types (a namespace lookup costs ~20 us)."""
        key = (type(self.params[0]), type(grads[0]))
        if key != self._namespace_key:
            self._ops_cached = ops_for(backends.get_namespace(self.params[0], grads[0]))
            self._namespace_key = key
        return self._ops_cached

    def _update(self, ops, p, g, state, first: bool):
        """The update rule for one parameter array `p`, its gradient and its state: (p, state)."""
        raise NotImplementedError

    def _init_state(self, xp) -> bool:
        """Make the zero state at the first step, on the parameters' device; True if made now."""
        if self.state or self.step_count > 1:
            return False
        names = self._state_names(self.hyperparameters)
        self.state = {key: [xp.zeros_like(p) for p in self.params] for key in names}
        return True

    # -- devices and serialisation --
    def to(self, device):
        """Move the state arrays to `device` (the model moves the parameters); returns self."""
        device = backends.resolve_device(device)
        for arrays in self.state.values():
            arrays[:] = [backends.to_device(a, device) for a in arrays]
        self._work = {}
        return self

    def state_dict(self) -> dict:
        """{"name", "hyperparameters", "step_count", "state": {name: [NumPy arrays]}}.

        JSON-ready but for the arrays, which are host copies.
        """
        return {
            "name": self.name,
            "hyperparameters": self.hyperparameters,
            "step_count": self.step_count,
            "state": {key: [backends.to_numpy(a) for a in arrays] for key, arrays in self.state.items()},
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters, step count and state exactly; arrays go to their parameter's device.

        Everything is checked before anything changes: another optimizer's dict, a state that does not
        fit the hyperparameters, or arrays whose shapes differ from the parameters raise ValueError.
        """
        keys = {"name", "hyperparameters", "step_count", "state"}
        if not isinstance(state_dict, dict) or not keys <= set(state_dict):
            raise ValueError(f"state_dict must be a dict with keys {sorted(keys)}, as made by state_dict()")
        if state_dict["name"] != self.name:
            raise ValueError(
                f"state_dict is for optimizer {state_dict['name']!r}, this optimizer is {self.name!r}"
            )
        saved = dict(state_dict["hyperparameters"])
        unknown = set(saved) - set(self._hyperparameter_names)
        if unknown:
            raise ValueError(f"state_dict has hyperparameters unknown to {self.name!r}: {sorted(unknown)}")
        saved = {**self.hyperparameters, **saved}
        learning_rate = _RATE_OR_ZERO(saved.pop("learning_rate"), "learning_rate")
        hyperparameters = self._check(**saved)
        step_count = state_dict["step_count"]
        if isinstance(step_count, bool) or not isinstance(step_count, numbers.Integral) or step_count < 0:
            raise ValueError(f"state_dict['step_count'] must be an integer >= 0, got {step_count!r}")
        saved_state = state_dict["state"]
        expected = set(self._state_names(hyperparameters)) if step_count > 0 else set()
        if set(saved_state) != expected:
            raise ValueError(
                f"state_dict['state'] must hold {sorted(expected)} after {step_count} steps with these "
                f"hyperparameters, got {sorted(saved_state)}"
            )
        host = _host_state(saved_state, self.params)
        # Every check passed: commit.
        self.state = {key: [_like(a, p) for a, p in zip(arrays, self.params)] for key, arrays in host.items()}
        self.__dict__.update(hyperparameters)
        self.learning_rate = learning_rate
        self.step_count = int(step_count)


def _packed(params, grads) -> bool:
    """True when parameters and gradients are each the views of one flat buffer, shaped alike."""
    return (
        isinstance(params, FlatList)
        and isinstance(grads, FlatList)
        and params.is_packed()
        and grads.is_packed()
        and len(grads.views) == len(params.views)
        and all(g.shape == p.shape for g, p in zip(grads.views, params.views))
    )


def _write_back(target, value) -> None:
    """Make `target` hold `value` (nothing to do when the ops updated it in place)."""
    if value is not target:
        target[...] = value


def _host_state(saved_state: dict, params) -> dict:
    """A state dict's arrays as host copies, {name: one array per parameter}, each checked to be
    shaped like its parameter (a ValueError naming the array otherwise)."""
    host = {}
    for key, arrays in saved_state.items():
        if len(arrays) != len(params):
            raise ValueError(f"state_dict['state'][{key!r}] holds {len(arrays)} arrays for {len(params)} parameters")
        host[key] = [backends.to_numpy(a) for a in arrays]
        for index, (a, p) in enumerate(zip(host[key], params)):
            if a.shape != tuple(p.shape):
                raise ValueError(
                    f"state_dict['state'][{key!r}][{index}] has shape {a.shape}, its parameter {tuple(p.shape)}"
                )
    return host


def _like(host, p):
    """A host array as an array of `p`'s dtype on `p`'s device."""
    array = backends.to_device(host, backends.device_of(p))
    if array.dtype != p.dtype:
        array = backends.get_namespace(p).astype(array, p.dtype)
    return array


# ---- the optimizers --------------------------------------------------------------------------
class SGDState(NamedTuple):
    momentum_buffer: object = None


class SGD(Optimizer):
    r"""Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay.

    Matches `torch.optim.SGD` step for step. With gradient g_t of parameter p at step t:

        g_t   <- g_t + weight_decay * p_{t-1}
        b_1   =  g_1                                              (first step: a copy, no dampening)
        b_t   =  momentum * b_{t-1} + (1 - dampening) * g_t       (t > 1)
        g_t   <- g_t + momentum * b_t   if nesterov   else   b_t  (when momentum > 0)
        p_t   =  p_{t-1} - learning_rate * g_t

    Args:
        params: the model's live parameter list.
        learning_rate: > 0. momentum: >= 0. dampening: in [0, 1].
        nesterov: needs momentum > 0 and dampening == 0 (torch's rule).
        weight_decay: >= 0, added to the gradient (L2 regularisation).
    """

    name = "sgd"
    constraints = {"momentum": Real(0.0), "dampening": Real(0.0, 1.0), "nesterov": Boolean(),
                   "weight_decay": Real(0.0)}
    State = SGDState

    def __init__(
        self, params, learning_rate=0.01, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0
    ):
        super().__init__(params, learning_rate=learning_rate, momentum=momentum, dampening=dampening,
                         nesterov=nesterov, weight_decay=weight_decay)

    @classmethod
    def _check(cls, **hyperparameters) -> dict:
        checked = super()._check(**hyperparameters)
        if checked["nesterov"] and (checked["momentum"] <= 0 or checked["dampening"] != 0):
            raise ValueError(
                "nesterov=True requires momentum > 0 and dampening == 0, "
                f"got momentum={checked['momentum']!r}, dampening={checked['dampening']!r}"
            )
        return checked

    @classmethod
    def _state_names(cls, hyperparameters) -> tuple:
        return ("momentum_buffer",) if hyperparameters["momentum"] > 0 else ()

    def _update(self, ops, p, g, state, first):
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        if self.momentum == 0:
            return ops.sgd(p, g, self.learning_rate, self._work), state
        p, b = ops.sgd_momentum(p, g, state.momentum_buffer, learning_rate=self.learning_rate,
                                momentum=self.momentum, dampening=self.dampening, first=first,
                                nesterov=self.nesterov, work=self._work)
        return p, SGDState(b)


class RMSpropState(NamedTuple):
    v: object = None
    g_avg: object = None
    momentum_buffer: object = None


class RMSprop(Optimizer):
    r"""RMSprop: divide the gradient by a running root mean square of recent gradients.

    Matches `torch.optim.RMSprop` step for step (`rho` is torch's `alpha`). With gradient g_t:

        g_t     <- g_t + weight_decay * p_{t-1}
        v_t     =  rho * v_{t-1} + (1 - rho) * g_t^2                       (v_0 = 0)
        centered:   a_t = rho * a_{t-1} + (1 - rho) * g_t;   d_t = sqrt(v_t - a_t^2) + eps
        otherwise:  d_t = sqrt(v_t) + eps
        momentum > 0:  b_t = momentum * b_{t-1} + g_t / d_t;   p_t = p_{t-1} - learning_rate * b_t   (b_0 = 0)
        otherwise:     p_t = p_{t-1} - learning_rate * g_t / d_t

    Note that eps sits outside the square root, as in PyTorch (Keras puts it inside).
    """

    name = "rmsprop"
    constraints = {"rho": Real(0.0, 1.0, closed="left"), "eps": Real(0.0, None, closed="neither"),
                   "momentum": Real(0.0), "centered": Boolean(), "weight_decay": Real(0.0)}
    State = RMSpropState

    def __init__(
        self, params, learning_rate=0.01, rho=0.99, eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0
    ):
        super().__init__(params, learning_rate=learning_rate, rho=rho, eps=eps, momentum=momentum,
                         centered=centered, weight_decay=weight_decay)

    @classmethod
    def _state_names(cls, hyperparameters) -> tuple:
        centered, momentum = hyperparameters["centered"], hyperparameters["momentum"]
        return ("v",) + (("g_avg",) if centered else ()) + (("momentum_buffer",) if momentum > 0 else ())

    def _update(self, ops, p, g, state, first):
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        p, v, g_avg, b = ops.rmsprop(p, g, state.v, state.g_avg, state.momentum_buffer,
                                     learning_rate=self.learning_rate, rho=self.rho, eps=self.eps,
                                     momentum=self.momentum, work=self._work)
        return p, RMSpropState(v, g_avg, b)


class AdamState(NamedTuple):
    m: object = None
    v: object = None
    v_max: object = None


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015), with optional AMSGrad and L2 weight decay added to the gradient.

    Matches `torch.optim.Adam` step for step. With gradient g_t at step t = 1, 2, ...:

        g_t <- g_t + weight_decay * p_{t-1}                     (L2: coupled, unlike AdamW)
        m_t =  beta1 * m_{t-1} + (1 - beta1) * g_t              (m_0 = 0)
        v_t =  beta2 * v_{t-1} + (1 - beta2) * g_t^2            (v_0 = 0)
        amsgrad:  v_max_t = max(v_max_{t-1}, v_t), used in place of v_t below
        p_t =  p_{t-1} - (learning_rate / (1 - beta1^t)) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)

    eps is added after the bias correction of sqrt(v_t), as in PyTorch (the "eps-hat" of the paper's
    faster formulation differs from this by a factor sqrt(1 - beta2^t) on eps). AMSGrad keeps the
    maximum of the raw v_t and bias-corrects it, as torch 2.x does.
    """

    name = "adam"
    constraints = {"beta1": Real(0.0, 1.0, closed="left"), "beta2": Real(0.0, 1.0, closed="left"),
                   "eps": Real(0.0, None, closed="neither"), "weight_decay": Real(0.0), "amsgrad": Boolean()}
    State = AdamState

    def __init__(
        self, params, learning_rate=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False
    ):
        super().__init__(params, learning_rate=learning_rate, beta1=beta1, beta2=beta2, eps=eps,
                         weight_decay=weight_decay, amsgrad=amsgrad)

    @classmethod
    def _state_names(cls, hyperparameters) -> tuple:
        return ("m", "v") + (("v_max",) if hyperparameters["amsgrad"] else ())

    def _decay(self, ops, p, g):
        """L2 weight decay: added to the gradient (AdamW overrides this). Returns (p, g)."""
        return p, g + self.weight_decay * p

    def _update(self, ops, p, g, state, first):
        b1, b2, t = self.beta1, self.beta2, self.step_count
        bias_correction2_sqrt = (1 - b2**t) ** 0.5
        # torch's step_size * m / (sqrt(v) / c + eps), with c = sqrt(1 - beta2^t) moved into the
        # constants: the same value, one pass over the arrays fewer.
        step_c = (self.learning_rate / (1 - b1**t)) * bias_correction2_sqrt
        eps_c = self.eps * bias_correction2_sqrt
        if self.weight_decay != 0:
            p, g = self._decay(ops, p, g)
        if self.amsgrad:
            p, m, v, v_max = ops.amsgrad(p, g, state.m, state.v, state.v_max, beta1=b1, beta2=b2, eps_c=eps_c,
                                         step_c=step_c, work=self._work)
            return p, AdamState(m, v, v_max)
        p, m, v = ops.adam(p, g, state.m, state.v, beta1=b1, beta2=b2, eps_c=eps_c, step_c=step_c,
                           work=self._work)
        return p, AdamState(m, v)


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay.

    Matches `torch.optim.AdamW` step for step: first

        p_{t-1} <- p_{t-1} * (1 - learning_rate * weight_decay)

    then Adam's update without any weight decay in the gradient (see `Adam`). The decay is scaled
    by the learning rate, as in PyTorch (optax's `adamw` does the same; the paper's schedule
    multiplier is the learning rate here).
    """

    name = "adamw"

    def __init__(
        self, params, learning_rate=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, amsgrad=False
    ):
        super().__init__(params, learning_rate, beta1, beta2, eps, weight_decay, amsgrad)

    def _decay(self, ops, p, g):
        return ops.scale(p, 1 - self.learning_rate * self.weight_decay), g


# ---- L-BFGS: a closure, one flat vector ----------------------------------------------------------
class LBFGSStep(NamedTuple):
    """What the last `LBFGS.step` did: iterations and loss evaluations, why it stopped, and the loss
    at the parameters it left (nan when, without a line search, the step ended at max_iter: the
    last iteration moves them without evaluating, as in torch)."""

    iterations: int
    evaluations: int
    reason: str  # "max_iter", "max_eval", "tolerance_grad", "tolerance_change"
    loss: float = math.nan


class LBFGS(Optimizer):
    r"""L-BFGS with an optional strong-Wolfe line search: `torch.optim.LBFGS`, step for step.

    `step(closure)` calls `closure()` -> (loss, grads), as `model.loss_and_grads` returns them, as
    often as it needs, and runs up to `max_iter` iterations on the flat vector x of all parameters.
    With g_k the gradient at x_k, s_i = x_{i+1} - x_i and y_i = g_{i+1} - g_i (a pair is kept only
    when y_i.s_i > 1e-10, the newest `history_size` pairs), the direction is the two-loop recursion

        q = -g_k;   for i newest to oldest:  a_i = rho_i s_i.q,  q -= a_i y_i       (rho_i = 1 / y_i.s_i)
        r = H q     (H = y.s / y.y of the newest pair);
        for i oldest to newest:  r += (a_i - rho_i y_i.r) s_i;   d_k = r

    (d_1 = -g_1), and x_{k+1} = x_k + t d_k with t = learning_rate (the first iteration ever:
    min(1, 1 / sum|g_1|) * learning_rate), or the step the strong-Wolfe search finds from there.
    The loop stops after `max_iter` iterations or `max_eval` evaluations, or when max|g| <=
    tolerance_grad, g.d > -tolerance_change, max|t d| <= tolerance_change or the loss changed by
    less than tolerance_change. The memory (pairs, last direction and step) carries over from one
    `step` to the next, as in torch.

    As in torch: the line search's own tolerance on the bracket is 1e-9, whatever tolerance_change
    is; without a line search, the last iteration of a step does not re-evaluate the loss.

    Scalars (dot products, step lengths) are Python floats read from the device; the vectors stay on
    the parameters' device, so this runs on every backend. State: `state` holds the flat arrays
    ("d", "prev_flat_grad", "old_dirs", "old_stps"), `scalars` the rest, `last_step` what the last
    step did (an LBFGSStep).

    Args:
        params: the model's live parameter list.
        learning_rate: > 0 (torch's lr). max_iter: iterations per step, >= 1.
        max_eval: loss evaluations per step (None: max_iter * 5 // 4, as torch).
        tolerance_grad, tolerance_change: >= 0. history_size: pairs kept, >= 1.
        line_search_fn: None or "strong_wolfe".
    """

    name = "lbfgs"
    constraints = {"max_iter": Integer(1), "max_eval": Integer(1), "tolerance_grad": Real(0.0),
                   "tolerance_change": Real(0.0), "history_size": Integer(1),
                   "line_search_fn": Options("strong_wolfe", none=True)}

    def __init__(self, params, learning_rate=1.0, max_iter=20, max_eval=None, tolerance_grad=1e-7,
                 tolerance_change=1e-9, history_size=100, line_search_fn=None):
        max_iter = Integer(1)(max_iter, "max_iter")
        if max_eval is None:
            max_eval = max(1, max_iter * 5 // 4)
        super().__init__(params, learning_rate=learning_rate, max_iter=max_iter, max_eval=max_eval,
                         tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                         history_size=history_size, line_search_fn=line_search_fn)
        self.scalars = _LBFGS_START.copy()
        self.last_step = None

    # -- the flat vector --
    def _flat(self, xp, arrays):
        """A new 1-D array holding `arrays` one after another."""
        return xp.concat([xp.reshape(a, (-1,)) for a in arrays])

    def _set_flat(self, ops, x) -> None:
        """Make the parameters hold the flat vector x."""
        params = self.params
        if ops.mutable and isinstance(params, FlatList) and params.is_packed():
            params.flat[...] = x
            return
        offset = 0
        for i, p in enumerate(params):
            size = math.prod(p.shape)
            value = ops.xp.reshape(x[offset : offset + size], p.shape)
            offset += size
            if ops.mutable:
                p[...] = value
            else:
                params[i] = value

    def step(self, closure):
        """Run up to `max_iter` iterations; `closure()` -> (loss, grads) at the current parameters.

        Returns the loss of the first evaluation, before any update (as torch's step does).
        """
        if not callable(closure):
            raise TypeError(
                "LBFGS.step takes a closure: a function returning (loss, grads) at the current "
                f"parameters, as model.loss_and_grads does; got {type(closure).__name__}"
            )
        xp = backends.get_namespace(self.params[0])
        ops = ops_for(xp)
        tolerance_change, tolerance_grad = self.tolerance_change, self.tolerance_grad

        def evaluate():
            loss, grads = closure()
            self._check_grads(grads)
            return float(loss), self._flat(xp, grads)

        def dot(a, b) -> float:
            return float(xp.vecdot(a, b))

        def max_abs(a) -> float:
            return float(xp.max(xp.abs(a)))

        scalars, state = self.scalars, self.state
        self.step_count += 1
        loss, flat_grad = evaluate()
        orig_loss = loss
        evaluations = 1
        scalars["func_evals"] += 1
        if max_abs(flat_grad) <= tolerance_grad:
            self.last_step = LBFGSStep(0, evaluations, "tolerance_grad", loss)
            return orig_loss

        d, prev_flat_grad = state.get("d", [None])[0], state.get("prev_flat_grad", [None])[0]
        old_dirs, old_stps = state.get("old_dirs", []), state.get("old_stps", [])
        ro, t, H_diag, prev_loss = scalars["ro"], scalars["t"], scalars["H_diag"], scalars["prev_loss"]
        n_iter = 0
        reason = "max_iter"
        moved_unevaluated = False  # loss is the loss at the parameters, until a move it does not evaluate
        while n_iter < self.max_iter:
            n_iter += 1
            scalars["n_iter"] += 1
            # -- the direction --
            if scalars["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro, H_diag = [], [], [], 1.0
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = dot(y, s)
                if ys > 1e-10:
                    if len(old_dirs) == self.history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / dot(y, y)
                al = [0.0] * len(old_dirs)
                q = -flat_grad
                for i in range(len(old_dirs) - 1, -1, -1):
                    al[i] = dot(old_stps[i], q) * ro[i]
                    q = q - al[i] * old_dirs[i]
                d = r = q * H_diag
                for i in range(len(old_dirs)):
                    be_i = dot(old_dirs[i], r) * ro[i]
                    r = r + (al[i] - be_i) * old_stps[i]
                d = r
            prev_flat_grad = flat_grad
            prev_loss = loss
            # -- the step length --
            if scalars["n_iter"] == 1:
                total = float(xp.sum(xp.abs(flat_grad)))
                t = min(1.0, 1.0 / total if total else math.inf) * self.learning_rate
            else:
                t = self.learning_rate
            gtd = dot(flat_grad, d)
            if gtd > -tolerance_change:
                reason = "tolerance_change"
                break
            evaluations_here = 0
            if self.line_search_fn is not None:
                x_init = self._flat(xp, self.params)

                def evaluate_at(step, x_init=x_init, d=d):
                    self._set_flat(ops, x_init + step * d)
                    result = evaluate()
                    self._set_flat(ops, x_init)
                    return result

                # torch passes neither tolerance_change nor c1, c2: the search uses its defaults. Its
                # max_ls, as torch's, lets the step end one evaluation past max_eval.
                loss, flat_grad, t, evaluations_here = strong_wolfe(
                    evaluate_at, dot, t, d, loss, flat_grad, gtd, max_abs(d), max_ls=self.max_eval - evaluations
                )
                self._set_flat(ops, x_init + t * d)
                optimal = max_abs(flat_grad) <= tolerance_grad
            else:
                self._set_flat(ops, self._flat(xp, self.params) + t * d)
                optimal = False
                moved_unevaluated = n_iter == self.max_iter
                if n_iter != self.max_iter:  # torch does not re-evaluate after the last iteration
                    loss, flat_grad = evaluate()
                    optimal = max_abs(flat_grad) <= tolerance_grad
                    evaluations_here = 1
            evaluations += evaluations_here
            scalars["func_evals"] += evaluations_here
            # -- stop? --
            if n_iter == self.max_iter:
                reason = "max_iter"
                break
            if evaluations >= self.max_eval:
                reason = "max_eval"
                break
            if optimal:
                reason = "tolerance_grad"
                break
            if max_abs(d * t) <= tolerance_change or abs(loss - prev_loss) < tolerance_change:
                reason = "tolerance_change"
                break
        self.state = {"d": [d], "prev_flat_grad": [prev_flat_grad], "old_dirs": old_dirs, "old_stps": old_stps}
        scalars.update(t=float(t), ro=ro, H_diag=float(H_diag), prev_loss=float(prev_loss))
        self.last_step = LBFGSStep(n_iter, evaluations, reason, math.nan if moved_unevaluated else loss)
        return orig_loss

    # -- serialisation: the flat vectors split as the parameters are, for model files --
    def state_dict(self) -> dict:
        """As Optimizer.state_dict, plus "scalars"; each flat vector is stored split into arrays
        shaped like the parameters ("d", "prev_flat_grad", "old_dirs_0", "old_stps_0", ...)."""
        shapes = [tuple(p.shape) for p in self.params]
        state = {}
        for key, vectors in self.state.items():
            if key in ("old_dirs", "old_stps"):
                for i, vector in enumerate(vectors):
                    state[f"{key}_{i}"] = _split(backends.to_numpy(vector), shapes)
            else:
                state[key] = _split(backends.to_numpy(vectors[0]), shapes)
        scalars = dict(self.scalars, ro=list(self.scalars["ro"]))
        return {"name": self.name, "hyperparameters": self.hyperparameters, "step_count": self.step_count,
                "state": state, "scalars": scalars}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what `state_dict()` gave; everything is checked before anything changes."""
        keys = {"name", "hyperparameters", "step_count", "state", "scalars"}
        if not isinstance(state_dict, dict) or not keys <= set(state_dict):
            raise ValueError(f"state_dict must be a dict with keys {sorted(keys)}, as made by LBFGS.state_dict()")
        if state_dict["name"] != self.name:
            raise ValueError(f"state_dict is for optimizer {state_dict['name']!r}, this optimizer is {self.name!r}")
        saved = {**self.hyperparameters, **dict(state_dict["hyperparameters"])}
        learning_rate = _RATE_OR_ZERO(saved.pop("learning_rate"), "learning_rate")
        hyperparameters = self._check(**saved)
        step_count = Integer(0)(state_dict["step_count"], "state_dict['step_count']")
        scalars = state_dict["scalars"]
        if not isinstance(scalars, dict) or set(scalars) != set(_LBFGS_START):
            raise ValueError(f"state_dict['scalars'] must hold {sorted(_LBFGS_START)}")
        ro = [Real()(r, "state_dict['scalars']['ro']") for r in scalars["ro"]]
        n_pairs = len(ro)
        expected = set()
        if scalars["n_iter"] > 0:
            expected = {"d", "prev_flat_grad"} | {f"{k}_{i}" for k in ("old_dirs", "old_stps") for i in range(n_pairs)}
        saved_state = state_dict["state"]
        if set(saved_state) != expected:
            raise ValueError(
                f"state_dict['state'] must hold {sorted(expected)} for {n_pairs} stored pairs, "
                f"got {sorted(saved_state)}"
            )
        flat = {key: _like(np.concatenate([a.reshape(-1) for a in host]), self.params[0])
                for key, host in _host_state(saved_state, self.params).items()}
        # Every check passed: commit.
        self.state = {}
        if expected:
            self.state = {"d": [flat["d"]], "prev_flat_grad": [flat["prev_flat_grad"]],
                          "old_dirs": [flat[f"old_dirs_{i}"] for i in range(n_pairs)],
                          "old_stps": [flat[f"old_stps_{i}"] for i in range(n_pairs)]}
        self.scalars = dict(scalars, ro=ro, func_evals=int(scalars["func_evals"]), n_iter=int(scalars["n_iter"]))
        self.__dict__.update(hyperparameters)
        self.learning_rate = learning_rate
        self.step_count = int(step_count)


# L-BFGS's scalar state before its first step (torch keeps the same in its state dict).
_LBFGS_START = {"func_evals": 0, "n_iter": 0, "t": None, "ro": [], "H_diag": None, "prev_loss": None}


def _split(vector, shapes) -> list:
    """A flat host vector as arrays of the given shapes, in order."""
    parts, offset = [], 0
    for shape in shapes:
        size = math.prod(shape)
        parts.append(vector[offset : offset + size].reshape(shape))
        offset += size
    return parts


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
