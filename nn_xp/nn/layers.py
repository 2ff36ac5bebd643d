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

from ..backends import device_of, is_sparse, to_device, to_numpy
from ..validation import Real, positive_int
from . import philox
from .activations import get_activation
from .initializers import INITIALIZERS, check_init

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
    comm: under distributed training, the communicator of the ranks whose parts make up the global
    batch (training/distributed.py), else None: a layer whose output depends on the whole batch (BatchNorm)
    sums its statistics over the ranks with it. The gradient reaching the layers is then already the
    global batch's (each rank's part weighted by its share), so such sums need no rescaling.
    wide: under mixed precision (training/precision.py), the master weights' dtype (float32), in which a norm
    takes its statistics and normalises while the other layers compute in half precision; else None.
    """

    __slots__ = ("buffer", "comm", "input_grad", "key", "layer", "ops", "rows", "step", "training",
                 "update_buffers", "wide", "workspace")

    def __init__(self, ops, training=False, step=0, rows=None, key=(0, 0), workspace=None, update_buffers=False,
                 comm=None, wide=None):
        self.ops, self.training, self.step, self.rows, self.key = ops, training, step, rows, key
        self.update_buffers, self.comm, self.wide = bool(update_buffers), comm, wide
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
    # True for a layer whose output for one row depends on the other rows of the batch (BatchNorm):
    # under distributed training it sums over the ranks with `ctx.comm`.
    couples_rows = False

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


def layer_names(layers) -> list:
    """Each layer's name: its kind and its number among the layers of that kind ("dense_1",
    "batch_norm_1"), as `named_parameters()` and the summary name them."""
    counts, names = {}, []
    for layer in layers:
        kind = layer.kind or type(layer).__name__.lower()
        counts[kind] = counts.get(kind, 0) + 1
        names.append(f"{kind}_{counts[kind]}")
    return names


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


def _put_grad(layer, ops, name: str, value) -> None:
    """The gradient of `name`, written into the training step's flat gradient buffer where there is one."""
    kept = layer.grad_buffer(name)
    if kept is not None and ops.mutable:
        kept[...] = value  # cast to the buffer's dtype (half precision under mixed precision)
    else:
        layer.set_grad(name, value)


@register("activation")
class Activation(Layer):
    """An activation on its own, Y = f(X) (activations.py): what follows a norm in an MLP with
    `norm=`, whose Dense layers are then linear (Linear -> norm -> activation)."""

    def __init__(self, activation="relu"):
        self.activation = get_activation(activation)

    def config(self) -> dict:
        return {"activation": self.activation.spec()}

    def forward(self, ops, X, ctx: Context):
        activation = self.activation
        xp = ops.xp
        Y = activation.forward(xp, X)

        def backprop(dY):
            return activation.backward(xp, dY, X, Y)

        return Y, backprop


def _allreduce_sums(ops, comm, arrays) -> list:
    """`arrays` (1-D) summed over the ranks with one allreduce of their concatenation."""
    xp = ops.xp
    flat = xp.concat(arrays)
    if ops.mutable:  # NumPy or CuPy: in place, where the array lives
        comm.allreduce(flat)
    else:  # an immutable backend: through a host copy
        flat = to_device(comm.allreduce(np.ascontiguousarray(to_numpy(flat))), device_of(flat))
    parts, at = [], 0
    for a in arrays:
        parts.append(flat[at:at + a.shape[0]])
        at += a.shape[0]
    return parts


def _widen(xp, ctx, X, *arrays):
    """(X's dtype, X and `arrays` in the dtype a norm computes in): under mixed precision the
    master weights' float32 (`ctx.wide`), so the statistics are summed in float32; else as they are."""
    dtype = X.dtype
    if ctx.wide is None or dtype == ctx.wide:
        return dtype, (X, *arrays)
    return dtype, tuple(xp.astype(a, ctx.wide) for a in (X, *arrays))


def _narrow(xp, dtype, Y):
    return Y if Y.dtype == dtype else xp.astype(Y, dtype)


def _normalized_backward(xp, dXhat, Xhat, inv, axis: int, n: int):
    """dX of Xhat = (X - mean(X)) * inv, inv = 1 / sqrt(var(X) + eps), the mean and the biased
    variance taken along `axis` over n values:

        dX = inv / n * (n dXhat - sum(dXhat) - Xhat * sum(dXhat * Xhat))
    """
    total = xp.sum(dXhat, axis=axis, keepdims=True)
    projection = xp.sum(dXhat * Xhat, axis=axis, keepdims=True)
    return (inv / n) * (n * dXhat - total - Xhat * projection)


@register("batch_norm")
class BatchNorm(Layer):
    r"""Batch normalisation over the features, torch.nn.BatchNorm1d's definition.

    In fit's training steps each feature is normalised with the batch's mean and biased variance,

        Y = (X - mean) / sqrt(var + eps) * weight + bias,

    and the running statistics move towards the batch's with `momentum`, the running variance
    towards the unbiased variance (var * n / (n - 1)):

        running_mean = (1 - momentum) running_mean + momentum mean
        running_var  = (1 - momentum) running_var  + momentum var_unbiased

    Everywhere else (predict, evaluate, validation, forward) the running statistics stand in for
    the batch's. Under distributed training (`ctx.comm`) the batch is the global one, as
    torch.nn.SyncBatchNorm's: one allreduce of the per-rank sums of X - K and (X - K)^2 and the row
    count gives the global mean and biased variance (K, the running mean, is the same on every rank
    and keeps the sums small), and one allreduce of sum_rows(dXhat) and sum_rows(dXhat * Xhat)
    the backward pass's global sums. Backward, with Xhat the normalised input and inv = 1 / sqrt(var + eps):

        dweight = sum_rows(dY * Xhat),   dbias = sum_rows(dY),
        dX = inv / n * (n dXhat - sum_rows(dXhat) - Xhat * sum_rows(dXhat * Xhat)),  dXhat = dY * weight

    (at inference the statistics are constants: dX = dY * weight * inv).
    Parameters: weight (gamma, 1) and bias (beta, 0), no L2; buffers: running_mean (0), running_var (1).
    """

    counts_in_layer_sizes = False
    couples_rows = True

    def __init__(self, n_features, momentum=0.1, eps=1e-5):
        self.n_features = positive_int(n_features, "n_features")
        self.momentum = Real(0, 1)(momentum, "momentum")
        self.eps = Real(0, None, closed="neither")(eps, "eps")

    def param_shapes(self) -> dict:
        return {"weight": (self.n_features,), "bias": (self.n_features,)}

    def initial_params(self, rng) -> dict:
        return {"weight": np.ones(self.n_features), "bias": np.zeros(self.n_features)}

    def buffer_shapes(self) -> dict:
        return {"running_mean": (self.n_features,), "running_var": (self.n_features,)}

    def initial_buffers(self) -> dict:
        return {"running_mean": np.zeros(self.n_features), "running_var": np.ones(self.n_features)}

    def output_width(self, width: int) -> int:
        if width != self.n_features:
            raise ValueError(f"{type(self).__name__}({self.n_features}) takes {self.n_features} input columns, "
                             f"but gets {width}")
        return width

    def config(self) -> dict:
        return {"n_features": self.n_features, "momentum": self.momentum, "eps": self.eps}

    def forward(self, ops, X, ctx: Context):
        xp = ops.xp
        dtype, (X, weight, bias) = _widen(xp, ctx, X, self.get_param("weight"), self.get_param("bias"))
        n = X.shape[0]
        comm = ctx.comm if ctx.training else None
        if ctx.training:
            if comm is not None:  # the global batch's statistics, from every rank's sums
                K = self.get_buffer("running_mean")
                D = X - K
                count = xp.full((1,), float(n), dtype=X.dtype)
                shift, square, count = _allreduce_sums(ops, comm, [xp.sum(D, axis=0), xp.sum(D * D, axis=0), count])
                n = int(float(count[0]))
            if n < 2:
                raise ValueError("BatchNorm needs at least 2 rows per training batch to take a batch variance, "
                                 f"got {n}: use a larger batch_size (or norm='layer')")
            if comm is not None:
                shift = shift / n
                mean = K + shift
                var = xp.maximum(square / n - shift * shift, xp.zeros_like(shift))
                centered = X - mean
            else:
                mean = xp.mean(X, axis=0)
                centered = X - mean
                var = xp.mean(centered * centered, axis=0)
            if ctx.update_buffers:
                m = self.momentum
                self.set_buffer("running_mean", (1 - m) * self.get_buffer("running_mean") + m * mean)
                self.set_buffer("running_var", (1 - m) * self.get_buffer("running_var") + m * (var * (n / (n - 1))))
        else:
            centered = X - self.get_buffer("running_mean")
            var = self.get_buffer("running_var")
        inv = 1 / xp.sqrt(var + self.eps)
        Xhat = centered * inv
        Y = _narrow(xp, dtype, Xhat * weight + bias)
        training, input_grad = ctx.training, ctx.input_grad

        def backprop(dY):
            dY = xp.astype(dY, Xhat.dtype) if dY.dtype != Xhat.dtype else dY
            _put_grad(self, ops, "weight", xp.sum(dY * Xhat, axis=0))
            _put_grad(self, ops, "bias", xp.sum(dY, axis=0))
            if not input_grad:
                return None
            dXhat = dY * weight
            if not training:
                return _narrow(xp, dtype, dXhat * inv)
            if comm is not None:
                total, projection = _allreduce_sums(ops, comm, [xp.sum(dXhat, axis=0), xp.sum(dXhat * Xhat, axis=0)])
                return _narrow(xp, dtype, (inv / n) * (n * dXhat - total - Xhat * projection))
            return _narrow(xp, dtype, _normalized_backward(xp, dXhat, Xhat, inv, 0, n))

        return Y, backprop


@register("layer_norm")
class LayerNorm(Layer):
    r"""Layer normalisation over the features of each row, torch.nn.LayerNorm(n_features)'s
    definition (elementwise affine): the same in training and at inference, no buffers.

        Y = (X - mean_row) / sqrt(var_row + eps) * weight + bias     (biased variance)

    Backward as BatchNorm's, along each row: dX = inv / d * (d dXhat - sum(dXhat) - Xhat *
    sum(dXhat * Xhat)), dXhat = dY * weight, d the number of features.
    Parameters: weight (1) and bias (0), no L2.
    """

    counts_in_layer_sizes = False

    def __init__(self, n_features, eps=1e-5):
        self.n_features = positive_int(n_features, "n_features")
        self.eps = Real(0, None, closed="neither")(eps, "eps")

    param_shapes = BatchNorm.param_shapes
    initial_params = BatchNorm.initial_params
    output_width = BatchNorm.output_width

    def config(self) -> dict:
        return {"n_features": self.n_features, "eps": self.eps}

    def forward(self, ops, X, ctx: Context):
        xp = ops.xp
        dtype, (X, weight, bias) = _widen(xp, ctx, X, self.get_param("weight"), self.get_param("bias"))
        d = X.shape[1]
        centered = X - xp.mean(X, axis=1, keepdims=True)
        var = xp.mean(centered * centered, axis=1, keepdims=True)
        inv = 1 / xp.sqrt(var + self.eps)
        Xhat = centered * inv
        Y = _narrow(xp, dtype, Xhat * weight + bias)
        input_grad = ctx.input_grad

        def backprop(dY):
            dY = xp.astype(dY, Xhat.dtype) if dY.dtype != Xhat.dtype else dY
            _put_grad(self, ops, "weight", xp.sum(dY * Xhat, axis=0))
            _put_grad(self, ops, "bias", xp.sum(dY, axis=0))
            if not input_grad:
                return None
            return _narrow(xp, dtype, _normalized_backward(xp, dY * weight, Xhat, inv, 1, d))

        return Y, backprop
