"""The first-order optimizers, SGD, RMSprop, Adam and AdamW, with PyTorch's update rules, step for step.

Each class states its update rule once, in `_update`, and leaves the arithmetic of the common
rules to the backend's ops (backends/ops.py): the standard version returns new arrays, NumPy's and
CuPy's update in place (in one compiled pass or one fused kernel where they can). Where the
parameters, the gradients and the state are views of flat buffers, one update over the buffers
updates every parameter.
"""

from __future__ import annotations

from typing import NamedTuple

from ..validation import Boolean, Real
from .base import Optimizer, floating_step, is_number, scalar_like


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

    def _update(self, ops, p, g, state, *, step, learning_rate, work):
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        learning_rate = scalar_like(ops, learning_rate, p)
        if self.momentum == 0:
            return ops.sgd(p, g, learning_rate, work), state
        # The first step copies the gradient into the buffer: a bool for a step number, a 0-d
        # boolean array (which the ops select with) for a step array.
        first = step == 1 if not is_number(step) else bool(step == 1)
        p, b = ops.sgd_momentum(p, g, state.momentum_buffer, learning_rate=learning_rate,
                                momentum=self.momentum, dampening=self.dampening, first=first,
                                nesterov=self.nesterov, work=work)
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

    def _update(self, ops, p, g, state, *, step, learning_rate, work):
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        p, v, g_avg, b = ops.rmsprop(p, g, state.v, state.g_avg, state.momentum_buffer,
                                     learning_rate=scalar_like(ops, learning_rate, p), rho=self.rho,
                                     eps=self.eps, momentum=self.momentum, work=work)
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

    def _decay(self, ops, p, g, learning_rate):
        """L2 weight decay: added to the gradient (AdamW overrides this). Returns (p, g)."""
        return p, g + self.weight_decay * p

    def _update(self, ops, p, g, state, *, step, learning_rate, work):
        b1, b2 = self.beta1, self.beta2
        if is_number(step):
            bias_correction1 = 1 - b1**step
            bias_correction2_sqrt = (1 - b2**step) ** 0.5
        else:  # a 0-d step array (traced under jax.jit): the same formulas in xp
            t = floating_step(ops, step, p)
            bias_correction1 = 1 - b1**t
            bias_correction2_sqrt = ops.xp.sqrt(1 - b2**t)
        # torch's step_size * m / (sqrt(v) / c + eps), with c = sqrt(1 - beta2^t) moved into the
        # constants: the same value, one pass over the arrays fewer.
        step_c = scalar_like(ops, (learning_rate / bias_correction1) * bias_correction2_sqrt, p)
        eps_c = scalar_like(ops, self.eps * bias_correction2_sqrt, p)
        if self.weight_decay != 0:
            p, g = self._decay(ops, p, g, learning_rate)
        if self.amsgrad:
            p, m, v, v_max = ops.amsgrad(p, g, state.m, state.v, state.v_max, beta1=b1, beta2=b2, eps_c=eps_c,
                                         step_c=step_c, work=work)
            return p, AdamState(m, v, v_max)
        p, m, v = ops.adam(p, g, state.m, state.v, beta1=b1, beta2=b2, eps_c=eps_c, step_c=step_c, work=work)
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

    def _decay(self, ops, p, g, learning_rate):
        return ops.scale(p, scalar_like(ops, 1 - learning_rate * self.weight_decay, p)), g
