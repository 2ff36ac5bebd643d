"""fit's argument checks that need the data or the optimizer: the validation fraction, what a
full-batch optimizer (L-BFGS) allows, what compile=True covers, and class weights turned into
sample weights."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backends as backend
from ..validation import Real
from .callbacks import Callback
from .compiled import can_compile


def check_validation_split(validation_split, n: int) -> None:
    n_val = math.floor(n * validation_split)
    if validation_split and (n_val == 0 or n_val == n):
        raise ValueError(
            f"validation_split={validation_split} leaves {n_val} of {n} samples for validation; "
            "it must leave at least one sample on each side"
        )


def check_compile(device: str, *, lbfgs: bool, half, distributed: bool, streamed: bool) -> None:
    """fit's compile=True: the device's library must compile (JAX), and the training must be what
    the compiled step covers."""
    if not can_compile(backend.ops_for(backend.namespace(device))):
        raise ValueError(f"compile=True needs a device whose library compiles the training step (JAX: "
                         f"'jax:cpu', 'jax:gpu'), got device {device!r}; leave compile out")
    for given, what in ((lbfgs, "optimizer='lbfgs'"), (half is not None, "precision='mixed_*'"),
                        (distributed, "distributed training"), (streamed, "streaming")):
        if given:
            raise ValueError(f"compile=True does not cover {what}, which trains uncompiled: leave compile out")


def class_weights(model, head, Y, W, class_weight):
    """Sample weights (a column, or None) multiplied by the weights of each sample's class.

    class_weight: None, {class index: weight} (classes not named weigh 1) or "balanced":
    n_samples / (n_classes * count of the class), over the classes present (scikit-learn's rule).
    """
    if class_weight is None:
        return W
    if not head.classifier:
        raise ValueError(
            f"class_weight needs a classifier (a cross-entropy loss); this model trains with {head.loss!r}"
        )
    host = backend.to_numpy(Y)
    if head.loss == "cross_entropy":
        labels, n_classes = host.argmax(axis=1), host.shape[1]
    elif host.shape[1] == 1:
        labels, n_classes = (host[:, 0] > 0.5).astype(np.int64), 2
    else:
        raise ValueError(
            f"class_weight applies to one sigmoid output (two classes) or softmax classes; this model has "
            f"{host.shape[1]} sigmoid outputs (multi-label): give sample_weight instead"
        )
    counts = np.bincount(labels, minlength=n_classes)
    if isinstance(class_weight, str) and class_weight == "balanced":
        present = counts > 0
        per_class = np.ones(n_classes)
        per_class[present] = labels.shape[0] / (present.sum() * counts[present])
    elif isinstance(class_weight, dict):
        per_class = np.ones(n_classes)
        for label, weight in class_weight.items():
            if isinstance(label, bool) or not isinstance(label, numbers.Integral) or not 0 <= label < n_classes:
                raise ValueError(f"class_weight names class {label!r}; the classes are 0..{n_classes - 1}")
            per_class[int(label)] = Real(0.0)(weight, f"class_weight[{label!r}]")
    else:
        raise TypeError(f"class_weight must be None, 'balanced' or a dict {{class: weight}}, got {class_weight!r}")
    weights = model.check_weights(per_class[labels], labels.shape[0], "class_weight")
    return weights if W is None else W * weights


def check_full_batch(optimizer, batch_size, clip_norm, clip_value, callbacks) -> None:
    """The arguments of `fit` that a full-batch closure optimizer (L-BFGS) cannot honour."""
    name = getattr(optimizer, "name", optimizer)
    if not (isinstance(name, str) and name.strip().lower() == "lbfgs"):
        return
    if batch_size is not None:
        raise ValueError(
            f"batch_size must be None with optimizer='lbfgs' (it trains full-batch, one step per epoch), "
            f"got {batch_size!r}"
        )
    if clip_norm is not None or clip_value is not None:
        raise ValueError(
            "clip_norm and clip_value must be None with optimizer='lbfgs': its line search and curvature "
            "pairs need the loss's own gradient"
        )
    for index, callback in enumerate(callbacks):
        if type(callback).on_batch_end is not Callback.on_batch_end:
            raise ValueError(
                f"callbacks[{index}] ({type(callback).__name__}) overrides on_batch_end, which has no meaning "
                "with optimizer='lbfgs': an epoch is one step of many loss evaluations, not batches; "
                "use on_epoch_end"
            )
