"""scikit-learn's objective on top of nn_xp's update rules: the estimators' Adam and SGD."""

from __future__ import annotations

import math

from ..backends import FlatList, ops_of
from ..optim import SGD, Adam


# ---- the optimizers: scikit-learn's objective on top of nn_xp's update rules -----------------
class _SklearnObjective:
    """Mixin for an nn_xp optimizer: turn nn_xp's gradients into those of scikit-learn's objective.

    Before each step every gradient is multiplied by `gradient_scale`. scikit-learn's L2 term is
    nn_xp's own (`training.l2_penalty`, given alpha / gradient_scale, so that after the scaling
    each weight's gradient gains alpha / n_b * W, n_b the batch size, as in scikit-learn).
    """

    def configure(self, gradient_scale: float) -> None:
        self.gradient_scale = float(gradient_scale)

    def step(self, grads) -> None:
        scale = self.gradient_scale
        if scale != 1.0:
            if isinstance(grads, FlatList) and grads.is_packed():
                grads.flat *= scale  # one pass; the views stay the flat buffer's
            else:
                grads = [g * scale for g in grads]
        super().step(grads)


class _SklearnAdam(_SklearnObjective, Adam):
    """Adam with scikit-learn's epsilon: eps_hat added to sqrt(v_t) before the bias correction."""

    def step(self, grads) -> None:
        t = self.step_count + 1
        # torch: (sqrt(v)/sqrt(1-b2^t) + eps); scikit-learn: (sqrt(v) + eps_hat)/sqrt(1-b2^t).
        self.eps = self.sklearn_epsilon / math.sqrt(1 - self.beta2**t)
        super().step(grads)


class _SklearnSGD(_SklearnObjective, SGD):
    """SGD with scikit-learn's momentum (see the module docstring)."""


def _has_momentum(optimizer) -> bool:
    return isinstance(optimizer, SGD) and optimizer.momentum > 0


def _set_learning_rate(optimizer, learning_rate: float) -> None:
    """Change the learning rate as scikit-learn's SGD sees it.

    scikit-learn keeps the velocity v = -learning_rate * b (b: torch's momentum buffer) across a
    change of learning rate; rescaling b by old / new keeps v, so "invscaling" and "adaptive"
    give scikit-learn's updates too.
    """
    old = optimizer.learning_rate
    optimizer.learning_rate = learning_rate
    buffers = getattr(optimizer.state, "momentum_buffer", None) if isinstance(optimizer, SGD) else None
    if buffers and old != learning_rate and learning_rate > 0:
        ratio = old / learning_rate
        if ops_of(buffers[0]).mutable:  # in place: a packed state stays packed
            for b in buffers:
                b *= ratio
        else:
            optimizer.state = optimizer.state._replace(momentum_buffer=[b * ratio for b in buffers])

