"""Optimizers with PyTorch's update rules, step for step, on any Array API backend.

Each optimizer holds a reference to the model's live parameter list (`model.parameters()`) and
updates its arrays in place: `step(grads)` takes one gradient per parameter, in the same order.
State (moments, momentum buffers) is created with `xp.zeros_like(p)` at the first step, so it lives
where the parameters live; `to(device)` moves it when the model moves.

Nothing here reaches the host: hyperparameters and bias corrections are Python floats, which keep
float32 arrays float32.
"""

from __future__ import annotations

import math
import numbers

from . import backend, fast, kernels, native

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam", "adamw")


# ---- argument checks -------------------------------------------------------------------------
def _real(value, parameter: str, *, low=None, high=None, low_open=False, high_open=False) -> float:
    """`value` as a finite Python float inside the given interval, or a ValueError/TypeError."""
    expected = _interval(low, high, low_open, high_open)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{parameter} must be a real number {expected}, got {value!r}")
    value = float(value)
    if (
        not math.isfinite(value)
        or (low is not None and (value <= low if low_open else value < low))
        or (high is not None and (value >= high if high_open else value > high))
    ):
        raise ValueError(f"{parameter} must be a finite number {expected}, got {value!r}")
    return value


def _interval(low, high, low_open, high_open) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {low}"
    return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def _bool(value, parameter: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{parameter} must be True or False, got {value!r}")
    return value


# ---- the shared machinery --------------------------------------------------------------------
class Optimizer:
    """Base class: the parameter list, the step count, state bookkeeping and (de)serialisation.

    Subclasses set `name`, check their other hyperparameters in `_check` (a classmethod returning
    them as a dict), name their state arrays in `_state_names` and write the update in
    `_update_slot(xp, p, g, state, first)`. Hyperparameters are plain attributes; `learning_rate` is checked when
    reassigned (schedules do).
    """

    name = "optimizer"

    def __init__(self, params, learning_rate, **hyperparameters):
        if not isinstance(params, list):
            raise TypeError(
                f"params must be the model's parameter list (model.parameters()), got {type(params).__name__}"
            )
        if not params:
            raise ValueError("params must hold at least one array")
        self.learning_rate = _real(learning_rate, "learning_rate", low=0.0, low_open=True)
        checked = self._check(**hyperparameters)
        self._hyperparameter_names = ("learning_rate",) + tuple(checked)
        self.__dict__.update(checked)
        self.params = params  # the live list itself: model.to() swaps its elements
        self.step_count = 0
        self.state: dict[str, list] = {}  # name -> one array per parameter, made at the first step

    @property
    def learning_rate(self) -> float:
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        # >= 0, not > 0 as in the constructor: a schedule may end exactly at min_learning_rate=0.0.
        self._learning_rate = _real(value, "learning_rate", low=0.0)

    @property
    def hyperparameters(self) -> dict:
        """The constructor's arguments (but params), with their current values."""
        return {key: getattr(self, key) for key in self._hyperparameter_names}

    @classmethod
    def _check(cls, **hyperparameters) -> dict:
        raise NotImplementedError

    @classmethod
    def _state_names(cls, hyperparameters: dict) -> tuple:
        """Names of the per-parameter state arrays under these hyperparameters."""
        return ()

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{type(self).__name__}({arguments})"

    # -- stepping --
    def _check_grads(self, grads) -> list:
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
            if backend.device_of(g) != backend.device_of(p):
                raise ValueError(
                    f"grads[{index}] is on device {backend.device_of(g)!r} but its parameter is on "
                    f"{backend.device_of(p)!r}"
                )
            if g.dtype != p.dtype:
                raise ValueError(f"grads[{index}] has dtype {g.dtype} but its parameter has dtype {p.dtype}")

    def step(self, grads) -> None:
        """Update every parameter in place from `grads`, one array per parameter, in order."""
        packed = self._packed(grads)
        checked = self._checked_views
        if not (packed and checked is not None and grads.views is checked[0] and self.params.views is checked[1]):
            self._check_grads(grads)  # a gradient buffer checked once needs no check per step
            if packed:
                self._checked_views = (grads.views, self.params.views)
        xp = self._namespace(grads)
        self.step_count += 1
        first = self._init_state(xp)
        names = tuple(self.state)
        if packed:
            # Fast path: parameters, gradients and state are views of flat buffers, so one
            # elementwise update over the buffers updates everything (fast.py).
            for key, arrays in self.state.items():
                if not (isinstance(arrays, fast.FlatList) and arrays.flat is not None):
                    self.state[key] = fast.pack(arrays, xp)
            flat_state = {key: self.state[key].flat for key in names}
            if self._update_slot_inplace is not None:
                scratch = getattr(self, "_scratch", None)
                if scratch is None or scratch.shape != self.params.flat.shape or scratch.dtype != self.params.flat.dtype:
                    scratch = self._scratch = xp.empty_like(self.params.flat)
                self._update_slot_inplace(fast.raw(xp), self.params.flat, grads.flat, flat_state, first, scratch)
            else:
                self._update_slot(xp, self.params.flat, grads.flat, flat_state, first)
            return
        for i, (p, g) in enumerate(zip(self.params, grads)):
            self._update_slot(xp, p, g, {key: self.state[key][i] for key in names}, first)

    _checked_views = None
    _namespace_key = None

    def _namespace(self, grads):
        """The arrays' namespace, looked up once per pair of array types (a lookup costs ~20 us)."""
        key = (type(self.params[0]), type(grads[0]))
        if key != self._namespace_key:
            self._namespace_xp = backend.get_namespace(self.params[0], grads[0])
            self._namespace_key = key
        return self._namespace_xp

    def _update_slot(self, xp, p, g, state: dict, first: bool) -> None:
        """The update rule for one parameter array `p` (in place), its gradient and its state."""
        raise NotImplementedError

    # The same rule for NumPy/CuPy (`raw` is the module), allocating nothing: every temporary
    # goes to `scratch`, with the operations in the standard rule's order, so results are
    # bitwise the same (tests/test_fast.py). None where an optimizer has no such variant.
    _update_slot_inplace = None

    def _packed(self, grads) -> bool:
        """True when the flat fast path applies: parameters and gradients are each the views of
        one flat NumPy/CuPy buffer (fast.py)."""
        params = self.params
        return (
            isinstance(params, fast.FlatList)
            and isinstance(grads, fast.FlatList)
            and params.is_packed()
            and grads.is_packed()
            and len(grads.views) == len(params.views)
            and all(g.shape == p.shape for g, p in zip(grads.views, params.views))
        )

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
        device = backend.resolve_device(device)
        for arrays in self.state.values():
            arrays[:] = [backend.to_device(a, device) for a in arrays]
        return self

    def state_dict(self) -> dict:
        """{"name", "hyperparameters", "step_count", "state": {name: [NumPy arrays]}}.

        JSON-ready but for the arrays, which are host copies.
        """
        return {
            "name": self.name,
            "hyperparameters": self.hyperparameters,
            "step_count": self.step_count,
            "state": {key: [backend.to_numpy(a) for a in arrays] for key, arrays in self.state.items()},
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
        learning_rate = _real(saved.pop("learning_rate"), "learning_rate", low=0.0)
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
        host = {}
        for key, arrays in saved_state.items():
            if len(arrays) != len(self.params):
                raise ValueError(
                    f"state_dict['state'][{key!r}] holds {len(arrays)} arrays "
                    f"for {len(self.params)} parameters"
                )
            host[key] = [backend.to_numpy(a) for a in arrays]
            for index, (a, p) in enumerate(zip(host[key], self.params)):
                if a.shape != tuple(p.shape):
                    raise ValueError(
                        f"state_dict['state'][{key!r}][{index}] has shape {a.shape}, "
                        f"its parameter {tuple(p.shape)}"
                    )
        # Every check passed: commit.
        self.state = {key: [_like(a, p) for a, p in zip(arrays, self.params)] for key, arrays in host.items()}
        self.__dict__.update(hyperparameters)
        self.learning_rate = learning_rate
        self.step_count = int(step_count)


def _like(host, p):
    """A host array as an array of `p`'s dtype on `p`'s device."""
    array = backend.to_device(host, backend.device_of(p))
    if array.dtype != p.dtype:
        array = backend.get_namespace(p).astype(array, p.dtype)
    return array


# ---- the optimizers --------------------------------------------------------------------------
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

    def __init__(
        self, params, learning_rate=0.01, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0
    ):
        super().__init__(
            params,
            learning_rate=learning_rate,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            weight_decay=weight_decay,
        )

    @classmethod
    def _check(cls, momentum, dampening, nesterov, weight_decay) -> dict:
        checked = dict(
            momentum=_real(momentum, "momentum", low=0.0),
            dampening=_real(dampening, "dampening", low=0.0, high=1.0),
            nesterov=_bool(nesterov, "nesterov"),
            weight_decay=_real(weight_decay, "weight_decay", low=0.0),
        )
        if checked["nesterov"] and (checked["momentum"] <= 0 or checked["dampening"] != 0):
            raise ValueError(
                "nesterov=True requires momentum > 0 and dampening == 0, "
                f"got momentum={checked['momentum']!r}, dampening={checked['dampening']!r}"
            )
        return checked

    @classmethod
    def _state_names(cls, hyperparameters) -> tuple:
        return ("momentum_buffer",) if hyperparameters["momentum"] > 0 else ()

    def _update_slot(self, xp, p, g, state, first) -> None:
        momentum = self.momentum
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        if momentum > 0:
            b = state["momentum_buffer"]
            if first:  # torch clones the gradient: no dampening on the first step
                b += g
            else:
                b *= momentum
                b += (1 - self.dampening) * g
            g = g + momentum * b if self.nesterov else b
        p -= self.learning_rate * g

    def _update_slot_inplace(self, raw, p, g, state, first, scratch) -> None:
        if self.weight_decay != 0:
            self._update_slot(raw, p, g, state, first)  # the rarer form keeps the standard rule
            return
        lr, momentum = self.learning_rate, self.momentum
        if momentum == 0:
            raw.multiply(g, lr, out=scratch)
            p -= scratch
            return
        b = state["momentum_buffer"]
        if raw.__name__ == "cupy":  # one fused launch (kernels.py)
            kernels.sgd_momentum(p, g, b, learning_rate=lr, momentum=momentum, dampening=self.dampening,
                                 first=first, nesterov=self.nesterov)
            return
        if native.fits(p, g, b):  # the operations below in one compiled pass (native.py)
            native.sgd_momentum(p, g, b, learning_rate=lr, momentum=momentum, dampening=self.dampening,
                                first=first, nesterov=self.nesterov)
            return
        if first:
            b += g
        else:
            b *= momentum
            raw.multiply(g, 1 - self.dampening, out=scratch)
            b += scratch
        if self.nesterov:
            raw.multiply(b, momentum, out=scratch)
            scratch += g
        else:
            raw.add(b, 0, out=scratch)
        scratch *= lr
        p -= scratch


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

    def __init__(
        self, params, learning_rate=0.01, rho=0.99, eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0
    ):
        super().__init__(
            params,
            learning_rate=learning_rate,
            rho=rho,
            eps=eps,
            momentum=momentum,
            centered=centered,
            weight_decay=weight_decay,
        )

    @classmethod
    def _check(cls, rho, eps, momentum, centered, weight_decay) -> dict:
        return dict(
            rho=_real(rho, "rho", low=0.0, high=1.0, high_open=True),
            eps=_real(eps, "eps", low=0.0, low_open=True),
            momentum=_real(momentum, "momentum", low=0.0),
            centered=_bool(centered, "centered"),
            weight_decay=_real(weight_decay, "weight_decay", low=0.0),
        )

    @classmethod
    def _state_names(cls, hyperparameters) -> tuple:
        centered, momentum = hyperparameters["centered"], hyperparameters["momentum"]
        return ("v",) + (("g_avg",) if centered else ()) + (("momentum_buffer",) if momentum > 0 else ())

    def _update_slot(self, xp, p, g, state, first) -> None:
        lr, rho = self.learning_rate, self.rho
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        v = state["v"]
        v *= rho
        v += (1 - rho) * (g * g)
        if self.centered:
            a = state["g_avg"]
            a *= rho
            a += (1 - rho) * g
            d = xp.sqrt(v - a * a)
        else:
            d = xp.sqrt(v)
        d += self.eps
        if self.momentum > 0:
            b = state["momentum_buffer"]
            b *= self.momentum
            b += g / d
            p -= lr * b
        else:
            p -= lr * (g / d)


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

    def __init__(
        self, params, learning_rate=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False
    ):
        super().__init__(
            params,
            learning_rate=learning_rate,
            beta1=beta1,
            beta2=beta2,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
        )

    @classmethod
    def _check(cls, beta1, beta2, eps, weight_decay, amsgrad) -> dict:
        return dict(
            beta1=_real(beta1, "beta1", low=0.0, high=1.0, high_open=True),
            beta2=_real(beta2, "beta2", low=0.0, high=1.0, high_open=True),
            eps=_real(eps, "eps", low=0.0, low_open=True),
            weight_decay=_real(weight_decay, "weight_decay", low=0.0),
            amsgrad=_bool(amsgrad, "amsgrad"),
        )

    @classmethod
    def _state_names(cls, hyperparameters) -> tuple:
        return ("m", "v") + (("v_max",) if hyperparameters["amsgrad"] else ())

    def _decay(self, p, g):
        """L2 weight decay: added to the gradient (AdamW overrides this)."""
        return g + self.weight_decay * p

    def _update_slot(self, xp, p, g, state, first) -> None:
        b1, b2, t = self.beta1, self.beta2, self.step_count
        step_size = self.learning_rate / (1 - b1**t)
        bias_correction2_sqrt = (1 - b2**t) ** 0.5
        if self.weight_decay != 0:
            g = self._decay(p, g)
        m, v = state["m"], state["v"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * (g * g)
        if self.amsgrad:
            v_max = state["v_max"]
            v_max[...] = xp.maximum(v_max, v)
            v = v_max
        # torch's step_size * m / (sqrt(v) / c + eps), with c = sqrt(1 - beta2^t) moved into the
        # constants: the same value, one pass over the arrays fewer.
        denominator = xp.sqrt(v)
        denominator += self.eps * bias_correction2_sqrt
        p -= (step_size * bias_correction2_sqrt) * (m / denominator)

    def _update_slot_inplace(self, raw, p, g, state, first, scratch) -> None:
        if self.amsgrad or (self.weight_decay != 0 and self.name == "adam"):
            self._update_slot(raw, p, g, state, first)  # the rarer forms keep the standard rule
            return
        if self.weight_decay != 0:  # AdamW's decoupled decay comes first
            p *= 1 - self.learning_rate * self.weight_decay
        b1, b2, t = self.beta1, self.beta2, self.step_count
        step_size = self.learning_rate / (1 - b1**t)
        bias_correction2_sqrt = (1 - b2**t) ** 0.5
        m, v = state["m"], state["v"]
        if raw.__name__ == "cupy":  # one fused launch (kernels.py)
            kernels.adam(p, g, m, v, beta1=b1, beta2=b2, step_size=step_size,
                         bias_correction2_sqrt=bias_correction2_sqrt, eps=self.eps)
            return
        if native.fits(p, g, m, v):  # the operations below in one compiled pass (native.py)
            native.adam(p, g, m, v, beta1=b1, beta2=b2, eps_c=self.eps * bias_correction2_sqrt,
                        step_c=step_size * bias_correction2_sqrt)
            return
        m *= b1
        raw.multiply(g, 1 - b1, out=scratch)
        m += scratch
        v *= b2
        raw.multiply(g, g, out=scratch)
        scratch *= 1 - b2
        v += scratch
        raw.sqrt(v, out=scratch)
        scratch += self.eps * bias_correction2_sqrt
        raw.divide(m, scratch, out=scratch)
        scratch *= step_size * bias_correction2_sqrt
        p -= scratch


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

    def _decay(self, p, g):
        p *= 1 - self.learning_rate * self.weight_decay
        return g


# ---- by name -----------------------------------------------------------------------------------
def get_optimizer(spec, params, learning_rate=None) -> Optimizer:
    """An optimizer for `params`: an Optimizer instance (returned as is) or a name from OPTIMIZERS.

    "momentum" is SGD with momentum=0.9. learning_rate=None keeps the class default
    (SGD 0.01, RMSprop 0.01, Adam/AdamW 0.001); it is ignored for an instance.
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
    return {"rmsprop": RMSprop, "adam": Adam, "adamw": AdamW}[key](params, **kwargs)
