"""Layers: the pieces a network is a stack of, each with a hand-written forward and backward pass.

The protocol, for nn_xp's layers and for yours:
- `param_shapes()`: the parameters the layer owns, {name: shape}, in order. The model keeps every
  parameter of every layer in one flat buffer (so an optimizer step, and later a collective, sees
  one array); a layer reads its own with `self.get_param(name)`, a view into that buffer.
- `initial_params(rng)`: their starting values, {name: float64 NumPy array}, drawn from the
  model's host generator (so one seed gives the same weights on every device).
- `decayed()`: the names of the parameters an L2 penalty / weight decay applies to, declared here
  as Keras' per-weight regularizers and optax's masks are (Dense: its W, not its b; none by default).
- `buffer_shapes()` / `initial_buffers()`: the layer's non-trainable state (BatchNorm's running
  statistics), {name: shape} and {name: float64 NumPy array} (zeros by default). The model keeps
  them beside the parameters, saves, moves, copies and restores them; the layer reads one with
  `self.get_buffer(name)` and replaces it with `self.set_buffer(name, array)`, which it may do
  only where `ctx.update_buffers` is True (fit's training steps).
- `output_width(width)`: the number of columns the layer gives for `width` input columns (check
  the input here; the default keeps the width).
- `forward(ops, X, ctx) -> (Y, backprop)`: `ops` holds the backend's primitives (ops.py; `ops.xp`
  is the array namespace), `ctx` the pass's context (`Context`). `backprop(dY)` writes the
  layer's parameter gradients with `self.set_grad(name, array)` and returns dX (it may overwrite
  dY, and returns None where `ctx.input_grad` was False: nothing below needs dX).
- `config()`: the constructor's arguments as JSON values, so a model file can rebuild the layer;
  `register(name)` makes a layer class loadable by that name.

Dense follows thinc's `layers/relu.py`: the backward pass is a closure over what the forward pass
computed. A model gathers the parameters of its layers in order, as micrograd's `parameters()`.
"""

from __future__ import annotations

import numpy as np

from . import philox
from .activations import get_activation
from .backend import is_sparse
from .initializers import INITIALIZERS, check_init
from .validation import Real, positive_int

LAYERS: dict[str, type] = {}


def register(name: str):
    """Class decorator: save and load layers of this class under `name` (a model file stores it)."""

    def decorate(cls):
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if LAYERS.get(name, cls) is not cls:
            raise ValueError(f"a layer class is already registered as {name!r}: {LAYERS[name].__name__}")
        cls.kind = name
        LAYERS[name] = cls
        return cls

    return decorate


class Context:
    """What a forward pass needs besides its input.

    training: dropout is active and norms use the batch's statistics (inside `fit`, or when a
    training step is asked for). update_buffers: the layers may update their buffers (running
    statistics): fit's training steps only, never evaluation, validation or a gradient check.
    step: the optimizer steps taken before this one; rows: the batch's rows of the training data
    (global sample indices); key: the model's dropout key. Masks are a function of these alone.
    layer: this layer's position in the model; input_grad: whether the layer below needs dX.
    """

    __slots__ = ("buffer", "input_grad", "key", "layer", "ops", "rows", "step", "training", "update_buffers",
                 "workspace")

    def __init__(self, ops, training=False, step=0, rows=None, key=(0, 0), workspace=None, update_buffers=False):
        self.ops, self.training, self.step, self.rows, self.key = ops, training, step, rows, key
        self.update_buffers = bool(update_buffers)
        self.workspace = workspace
        self.layer, self.input_grad = 0, True
        if workspace is None:
            self.buffer = _no_buffer
        else:
            def buffer(owner, name: str, shape: tuple, like):
                return ops.buffer(workspace, (id(owner), name), shape, like)

            self.buffer = buffer
    # buffer(owner, name, shape, like): an array `owner` may write into and get back at the next
    # step, or None (then allocate). Only a training step gets these: its outputs are used before
    # the next step overwrites them.


def _no_buffer(owner, name, shape, like):
    return None


class Layer:
    """Base class: no parameters, the identity; subclasses override what they need."""

    kind: str | None = None  # the name given to `register`
    # False for a layer that acts on each feature of its input with parameters of the input's width
    # (a norm): it is no layer of its own in `layer_sizes`.
    counts_in_layer_sizes = True

    def param_shapes(self) -> dict:
        return {}

    def initial_params(self, rng: np.random.Generator) -> dict:
        return {name: np.zeros(shape) for name, shape in self.param_shapes().items()}

    def decayed(self) -> tuple:
        return ()

    def buffer_shapes(self) -> dict:
        return {}

    def initial_buffers(self) -> dict:
        return {name: np.zeros(shape) for name, shape in self.buffer_shapes().items()}

    def output_width(self, width: int) -> int:
        return width

    def config(self) -> dict:
        return {}

    def forward(self, ops, X, ctx: Context):
        return X, _identity

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({arguments})"

    # -- the model binds each layer to its slice of the parameter, gradient and buffer lists --
    _store = None
    _index: dict = {}
    _buffer_index: dict = {}

    def bind(self, store, offset: int, buffer_offset: int = 0) -> None:
        """Called by the model: this layer's parameters start at `store.params[offset]`, its
        buffers at `store.buffers[buffer_offset]`."""
        self._store = store
        self._index = {name: offset + i for i, name in enumerate(self.param_shapes())}
        self._buffer_index = {name: buffer_offset + i for i, name in enumerate(self.buffer_shapes())}

    def get_param(self, name: str):
        """The live parameter array `name` (a view into the model's flat buffer)."""
        return self._store.params[self._index[name]]

    def grad_buffer(self, name: str):
        """Where the gradient of `name` may be written with `out=` (None on the standard ops)."""
        return self._store.grads[self._index[name]]

    def set_grad(self, name: str, value) -> None:
        """Record the gradient of parameter `name` for this step."""
        self._store.grads[self._index[name]] = value

    def get_buffer(self, name: str):
        """The buffer `name` (non-trainable state, on the model's device)."""
        return self._store.buffers[self._buffer_index[name]]

    def set_buffer(self, name: str, value) -> None:
        """Make `value` the buffer `name` (a new array: snapshots of the old one stay valid)."""
        self._store.buffers[self._buffer_index[name]] = value

    def spec(self) -> dict:
        """{"kind": registered name, **config()}: what a model file stores."""
        if self.kind is None or LAYERS.get(self.kind) is not type(self):
            raise ValueError(
                f"{type(self).__name__} cannot be saved: register the class with "
                "@nx.layers.register('name') so that a model file can name it"
            )
        return {"kind": self.kind, **self.config()}


def _identity(dY):
    return dY


def from_spec(spec) -> Layer:
    """A layer from {"kind": ..., **config}; unknown kinds raise ValueError listing the known ones."""
    if not isinstance(spec, dict) or not isinstance(spec.get("kind"), str):
        raise ValueError(f"a layer spec must be a dict with a 'kind' string, got {spec!r}")
    cls = LAYERS.get(spec["kind"])
    if cls is None:
        raise ValueError(
            f"unknown layer kind {spec['kind']!r}; known kinds: {sorted(LAYERS)} (register a custom "
            "layer class with @nx.layers.register before loading a model that uses it)"
        )
    config = {k: v for k, v in spec.items() if k != "kind"}
    try:
        return cls(**config)
    except TypeError as error:
        raise ValueError(f"bad settings for layer {spec['kind']!r}: {error}") from None


@register("dense")
class Dense(Layer):
    r"""A fully connected layer with its activation: Y = f(X @ W.T + b).

    W: (n_out, n_in), b: (n_out,). Backward, from dY:

        dZ = f'(dY),   dW = dZ.T @ X,   db = sum_rows(dZ),   dX = dZ @ W

    Args:
        n_in, n_out: input and output widths. activation: a name or spec (activations.py).
        init: the weight initializer (initializers.py); the bias starts at zero.
    """

    def __init__(self, n_in, n_out, activation="linear", init="he"):
        self.n_in = positive_int(n_in, "n_in")
        self.n_out = positive_int(n_out, "n_out")
        self.activation = get_activation(activation)
        self.init = check_init(init)

    def param_shapes(self) -> dict:
        return {"W": (self.n_out, self.n_in), "b": (self.n_out,)}

    def decayed(self) -> tuple:
        return ("W",)

    def initial_params(self, rng) -> dict:
        return {"W": INITIALIZERS[self.init](rng, self.n_in, self.n_out), "b": np.zeros(self.n_out)}

    def output_width(self, width: int) -> int:
        if width != self.n_in:
            raise ValueError(f"Dense({self.n_in}, {self.n_out}) takes {self.n_in} input columns, but gets {width}")
        return self.n_out

    def config(self) -> dict:
        return {"n_in": self.n_in, "n_out": self.n_out, "activation": self.activation.spec(), "init": self.init}

    def forward(self, ops, X, ctx: Context):
        activation = self.activation
        W, b = self.get_param("W"), self.get_param("b")
        n = X.shape[0]
        if is_sparse(X):
            return self._forward_sparse(ops, X, W, b)
        Z = ops.matmul(X, W.T, out=ctx.buffer(self, "Z", (n, self.n_out), W))
        A, Z = ops.bias_activate(activation, Z, b)
        input_grad = ctx.input_grad
        dX_out = ctx.buffer(self, "dX", (n, self.n_in), W) if input_grad else None

        def backprop(dA):
            dZ, db = ops.backward_bias(activation, dA, Z, A, db=self.grad_buffer("b"))
            self.set_grad("b", db)
            self.set_grad("W", ops.matmul(dZ.T, X, out=self.grad_buffer("W")))
            return ops.matmul(dZ, W, out=dX_out) if input_grad else None

        return A, backprop

    def _forward_sparse(self, ops, X, W, b):
        """The first layer on a sparse (CSR) X, never made dense: Z = X @ W.T and dW = (X.T @ dZ).T,
        products of the sparse matrix with dense ones (it is the model's input: no dX)."""
        activation = self.activation
        A, Z = ops.bias_activate(activation, X @ W.T, b)

        def backprop(dA):
            dZ, db = ops.backward_bias(activation, dA, Z, A, db=self.grad_buffer("b"))
            self.set_grad("b", db)
            dW = (X.T @ dZ).T
            kept = self.grad_buffer("W")
            if kept is not None and ops.mutable:
                kept[...] = dW  # the flat gradient buffer's view
            else:
                self.set_grad("W", dW)
            return None

        return A, backprop


@register("dropout")
class Dropout(Layer):
    """Inverted dropout: during training each unit is zeroed with probability `rate` and the rest
    are scaled by 1 / (1 - rate), so nothing changes at inference (the identity there).

    The mask of sample i (its row in the training data), unit j, at optimizer step t, in the layer
    at position l of the model, is a Philox4x32-10 draw keyed by the model's seed (philox.py): the
    same on every backend, whatever the batch it falls in, and it continues exactly on resume.
    """

    def __init__(self, rate=0.5):
        self.rate = Real(0, 1, closed="left")(rate, "rate")

    def config(self) -> dict:
        return {"rate": self.rate}

    def forward(self, ops, X, ctx: Context):
        if not ctx.training or self.rate == 0:
            return X, _identity
        xp = ops.xp
        rows = ctx.rows if ctx.rows is not None else xp.arange(X.shape[0])
        keep = philox.dropout_mask(xp, ctx.key, ctx.step, ctx.layer, rows, X.shape[1], self.rate)
        scale = 1 / (1 - self.rate)
        Y = ops.dropout(X, keep, scale, out=ctx.buffer(self, "Y", tuple(X.shape), X))

        def backprop(dY):
            return ops.dropout(dY, keep, scale, out=dY if ops.mutable else None)

        return Y, backprop

