"""Gradient clipping, by global L2 norm or by value, with PyTorch's semantics and no host synchronisation.

Both take the gradient list of `MLP.loss_and_grads` and return new arrays (the inputs are left alone).
"""

from __future__ import annotations

from .. import backends
from ..validation import Real

_POSITIVE = Real(0.0, None, closed="neither")


def _positive(value, parameter: str) -> float:
    return _POSITIVE(value, parameter)


def _check_grads(grads) -> list:
    if not isinstance(grads, (list, tuple)):
        raise TypeError(f"grads must be a list of arrays, got {type(grads).__name__}")
    if not grads:
        raise ValueError("grads must hold at least one array")
    return list(grads)


def clip_grad_norm(grads, max_norm):
    """Scale all gradients together so that their global L2 norm is at most `max_norm`.

    Like `torch.nn.utils.clip_grad_norm_` (norm_type 2):

        total_norm = || (||g_1||, ..., ||g_k||) ||_2
        g_i <- g_i * min(1, max_norm / (total_norm + 1e-6))

    Args:
        grads: list of arrays. max_norm: a finite number > 0.

    Returns:
        (clipped grads: a new list of new arrays, total_norm: a 0-d array on the gradients' device,
        the norm before clipping).
    """
    max_norm = _positive(max_norm, "max_norm")
    grads = _check_grads(grads)
    xp = backends.get_namespace(*grads)
    norms = xp.stack([xp.linalg.vector_norm(g) for g in grads])
    total_norm = xp.linalg.vector_norm(norms)
    # Always multiplying (by 1 when under the limit) keeps the step free of host synchronisation.
    scale = xp.clip(max_norm / (total_norm + 1e-6), None, 1.0)
    return [g * scale for g in grads], total_norm


def clip_grad_value(grads, clip_value):
    """Clip every gradient element into [-clip_value, clip_value] (`torch.nn.utils.clip_grad_value_`).

    Returns a new list of new arrays.
    """
    clip_value = _positive(clip_value, "clip_value")
    grads = _check_grads(grads)
    xp = backends.get_namespace(*grads)
    return [xp.clip(g, -clip_value, clip_value) for g in grads]
