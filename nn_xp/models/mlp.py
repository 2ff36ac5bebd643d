"""The MLP: a Sequential of Dense layers (with norms and Dropout where asked), and `load`, which
reads any model file back (format 1 files, written before layers, load as the MLP they describe).
"""

from __future__ import annotations

import os

from .. import backends as backend
from .. import validation
from ..io import persistence
from ..nn.activations import get_activation
from ..nn.initializers import check_init
from ..nn.layers import Activation, BatchNorm, Dense, Dropout, LayerNorm
from ..nn.network import _Handover, _with_params
from .sequential import Sequential


class MLP(Sequential):
    """A fully connected network: Dense layers with their activations (and Dropout after each hidden one).

    Args:
        layer_sizes: [n_features, hidden..., n_outputs], at least two positive integers.
        activation: hidden activation, a name or a list with one name per hidden layer.
        output_activation: "linear", "sigmoid", "softmax", "tanh", ...
        init: weight initializer ("he", "xavier", "random", ...); biases start at zero.
        dtype: "float32" (default) or "float64", kept end to end.
        device: where the arrays live, and which library's they are: "cpu" or "numpy" (NumPy),
            "cuda[:N]" or "cupy[:N]" (CuPy), "torch:cpu", "torch:cuda[:N]" or "torch:mps" (PyTorch),
            "jax:cpu" or "jax:gpu[:N]" (JAX), or "auto" (the default: $NN_XP_DEVICE, else "cuda:0"
            when a GPU answers, else "cpu").
        seed: same seed, bitwise-identical initial weights (and dropout masks) on every device.
        dropout: the fraction of each hidden layer's units dropped during `fit` (the Keras/PyTorch
            meaning), one rate or one per hidden layer; 0 (the default) adds no Dropout layers.
        norm: None (the default), "batch" (BatchNorm) or "layer" (LayerNorm): a norm after each
            hidden layer's product, before its activation (Dense without activation -> norm ->
            Activation); None keeps Dense layers with their own activation.
    """

    def __init__(
        self,
        layer_sizes,
        activation="relu",
        output_activation="linear",
        init="he",
        dtype="float32",
        device="auto",
        seed=None,
        dropout=0.0,
        norm=None,
    ):
        sizes = validation.layer_sizes(layer_sizes)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {list(NORMS)}, got {norm!r}")
        n_hidden = len(sizes) - 2
        hidden = _hidden_activations(activation, n_hidden)
        rates = validation.rate_per_layer(dropout, "dropout", n_hidden)
        init = check_init(init)
        output = get_activation(output_activation, "output_activation")
        layers = []
        for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            if index < n_hidden:
                if norm is None:
                    layers.append(Dense(n_in, n_out, hidden[index], init))
                else:  # Linear -> norm -> activation
                    layers += [Dense(n_in, n_out, "linear", init), NORMS[norm](n_out), Activation(hidden[index])]
                if any(rates):
                    layers.append(Dropout(rates[index]))
            else:
                layers.append(Dense(n_in, n_out, "linear", init))
        self._output = output
        self.dtype = backend.resolve_dtype(dtype)
        self.device = backend.resolve_device(device)
        self.init = init
        self.dropout = rates
        self.norm = norm
        self._hidden = [a.spec() for a in hidden]
        self._setup(layers, sizes[0], seed)

    @property
    def activation(self) -> list:
        """The hidden activations as JSON-ready specs."""
        return list(self._hidden)

    def __repr__(self) -> str:
        hidden = [spec["name"] for spec in self.activation]
        dropout = f", dropout={self.dropout}" if any(self.dropout) else ""
        norm = f", norm={self.norm!r}" if self.norm is not None else ""
        return (
            f"MLP(layer_sizes={list(self.layer_sizes)}, activation={hidden}, "
            f"output_activation={self._output.name!r}, dtype={self.dtype!r}, device={self.device!r}{dropout}{norm})"
        )

    def architecture(self) -> dict:
        architecture = {"layer_sizes": list(self.layer_sizes), "activation": self.activation,
                        "output_activation": self._output.spec(), "init": self.init, "dropout": list(self.dropout)}
        if self.norm is not None:  # files of an MLP without norm stay as they were
            architecture["norm"] = self.norm
        return architecture

    @classmethod
    def from_architecture(cls, architecture: dict, dtype: str, device: str = "cpu", params=None):
        if "layers" in architecture:
            return Sequential.from_architecture(architecture, dtype, device, params)
        return _with_params(MLP, params, architecture["layer_sizes"], activation=architecture["activation"],
                            output_activation=architecture["output_activation"], init=architecture.get("init", "he"),
                            dtype=dtype, device=device, seed=0, dropout=architecture.get("dropout") or 0.0,
                            norm=architecture.get("norm"))


NORMS = {None: None, "batch": BatchNorm, "layer": LayerNorm}


def _hidden_activations(activation, n_hidden: int) -> list:
    if isinstance(activation, (list, tuple)):
        if len(activation) != n_hidden:
            raise ValueError(
                f"activation lists one activation per hidden layer: expected {n_hidden}, got {len(activation)}"
            )
        return [get_activation(a, f"activation[{i}]") for i, a in enumerate(activation)]
    return [get_activation(activation, "activation")] * n_hidden


def load(path, device=None) -> Sequential:
    """Read a model written by `save` onto `device` (None: `nn_xp.default_device()`).

    Restores the parameters, preprocessing, optimizer (state, step count, label), training history,
    the host random generator and the dropout key, so `fit` continues exactly where it stopped.
    Files of format 1 (nn_xp before layers) load as the MLP they describe.

    Raises:
        FileNotFoundError: no such file.
        ValueError (message starting with the path): not an nn_xp model file, written by a newer
            nn_xp, or inconsistent (shapes, dtypes, names, sizes); nothing is built from it.
    """
    device = backend.resolve_device("auto" if device is None else device)
    state = persistence.read(path)
    params = _Handover(state.pop("params"))  # the model frees each array read once it is copied
    try:
        return MLP._from_state(state, device, params)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{os.fspath(path)}: {error}") from None
