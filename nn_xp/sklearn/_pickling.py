"""The estimators' network and optimizer as plain Python and NumPy values, and back (pickling)."""

from __future__ import annotations

import warnings

import numpy as np

from ..backends import (
    resolve_device,
)
from ..models.mlp import MLP
from ._optimizers import _SklearnAdam, _SklearnSGD


def _write_params(model, arrays) -> None:
    """Copy `arrays` (host or device) into the model's parameters, in place: the parameter list and
    its arrays stay the ones the optimizer (and nn_xp's flat-buffer fast path) holds (an immutable
    library's, JAX's, are replaced in that list)."""
    model.set_parameters(list(arrays))


_SKLEARN_SETTINGS = ("gradient_scale", "sklearn_epsilon")  # what the estimators' optimizers add


def _model_state(model) -> dict:
    """The network and its optimizer as plain Python and NumPy values (what pickling stores):
    the model's own `state_dict()`, as a model file holds it, and the device it was on."""
    optimizer = model.optimizer
    return {
        "state_dict": model.state_dict(),
        "device": model.device,
        "sklearn": {k: getattr(optimizer, k) for k in _SKLEARN_SETTINGS if hasattr(optimizer, k)},
    }


def _model_from_state(state: dict):
    device = state["device"]
    try:
        device = resolve_device(device)
    except RuntimeError as error:
        warnings.warn(
            f"the pickled network was on {device!r}, which cannot be used here ({error}); loading it on the CPU",
            stacklevel=3,
        )
        device = "cpu"
    saved = dict(state["state_dict"])
    optimizer = saved.pop("optimizer")
    model = MLP.from_state_dict(dict(saved, optimizer=None), device=device)
    if optimizer is not None:
        cls = _SklearnAdam if optimizer["name"] == "adam" else _SklearnSGD
        restored = cls(model.parameters())
        # arrays copied: a memory-mapped pickle is read-only
        arrays = {k: [np.array(a) for a in v] for k, v in optimizer["state"].items()}
        restored.load_state_dict(dict(optimizer, state=arrays))
        restored.__dict__.update(state["sklearn"])
        model.optimizer = restored
    return model

