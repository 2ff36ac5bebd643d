"""Network: a stack of layers (layers.py) with an output head (heads.py), the math alone: the
parameter store, the forward and backward passes, the training step and the input checks.
`nn_xp.models.Sequential` (the user's model: input pipeline, fit, predict, files) is built on it.

A forward pass runs the layers in order, each returning its output and a backward closure; the
head turns the last output (the logits Z) into the loss and dL/dZ; the closures then run in
reverse, each writing its layer's gradients and passing dX down. For the MLP, layer l computes

    Z_l = A_{l-1} @ W_l.T + b_l,   A_l = f_l(Z_l),   A_0 = X,

and backward, from dZ_L given by the head,

    dW_l = dZ_l.T @ A_{l-1},   db_l = sum_rows(dZ_l),   dA_{l-1} = dZ_l @ W_l,   dZ_{l-1} = f'_{l-1}(dA_{l-1}).

One loop serves every backend: the backend's differences are in its ops object (ops.py).
"""

from __future__ import annotations

import copy
import numbers

import numpy as np

from .. import backends as backend
from .. import validation
from ..backends import FlatList, ops_for
from . import philox
from .activations import get_activation
from .heads import Head, check_loss, default_loss, get_head
from .layers import Context, Dense, Layer
from .layers import layer_names as _layer_names


class _Store:
    """The model's parameters and the gradients of the last training step, aligned, and its buffers
    (non-trainable state, in layer order), shared by its layers."""

    def __init__(self):
        self.params = FlatList()
        self.grads = None
        self.buffers = []


def _bind(layers, store) -> None:
    """Each layer to its parameters and buffers in `store`, in layer order."""
    offset = buffer_offset = 0
    for layer in layers:
        layer.bind(store, offset, buffer_offset)
        offset += len(layer.param_shapes())
        buffer_offset += len(layer.buffer_shapes())


class Network:
    """A network that is a stack of layers, trained with their hand-written backward passes: the
    math alone (`nn_xp.Sequential` adds the input pipeline, fit, predict and files).

    Args:
        layers: `nn_xp.layers.Layer` objects; the first one states its input width as `n_in`.
        output_activation: the head's activation on the last layer's output ("linear", "softmax",
            "sigmoid", ...); the loss is chosen from it unless `fit` is given one.
        dtype: "float32" (default) or "float64", kept end to end.
        device: where the arrays live, and which library's they are: "cpu" or "numpy" (NumPy),
            "cuda[:N]" or "cupy[:N]" (CuPy), "torch:cpu", "torch:cuda[:N]" or "torch:mps" (PyTorch),
            "jax:cpu" or "jax:gpu[:N]" (JAX), or "auto" (the default: $NN_XP_DEVICE, else "cuda:0"
            when a GPU answers, else "cpu").
        seed: same seed, bitwise-identical initial weights and dropout masks on every device.
    """

    def __init__(self, layers, output_activation="linear", dtype="float32", device="auto", seed=None):
        if isinstance(layers, Layer) or not hasattr(layers, "__iter__"):
            raise TypeError(f"layers must be a list of nn_xp.layers.Layer objects, got {layers!r}")
        layers = list(layers)
        if not layers:
            raise ValueError("layers must hold at least one layer")
        for index, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{index}] must be an nn_xp.layers.Layer, got {type(layer).__name__}")
        n_features = getattr(layers[0], "n_in", None)
        if not isinstance(n_features, numbers.Integral) or n_features <= 0:
            raise ValueError("the first layer must state its input width as a positive integer n_in")
        self._output = get_activation(output_activation, "output_activation")
        self.dtype = backend.resolve_dtype(dtype)
        self.device = backend.resolve_device(device)
        self._setup(layers, int(n_features), seed)

    def _setup(self, layers, n_features: int, seed) -> None:
        """Widths, initial parameters on the device, and the layers bound to them.

        A model being loaded (`_with_params`) takes its stored arrays instead of drawn ones; their
        shapes are checked against the layers' before anything is allocated, so a file that
        declares a huge network over small members costs nothing."""
        stored = self.__dict__.pop("_stored_params", None)
        self.layers = layers
        sizes = [n_features]
        width = n_features
        for index, layer in enumerate(layers):
            try:
                out = layer.output_width(width)
            except ValueError as error:
                raise ValueError(f"layers[{index}]: {error}") from None
            if out != width or (layer.param_shapes() and layer.counts_in_layer_sizes):
                sizes.append(out)
            width = out
        self.layer_sizes = sizes
        self.seed = seed
        # One host generator draws the weights and then every shuffle order, so a seed fixes both.
        self.rng = backend.host_rng(seed)
        self.dropout_key = philox.key_from_seed(seed if isinstance(seed, numbers.Integral) else None)
        shapes = [tuple(shape) for layer in layers for shape in layer.param_shapes().values()]
        if stored is not None:
            host = _matching(stored, shapes, self.layer_sizes)
            del stored  # the same list
        else:
            n_parameters = sum(int(np.prod(shape)) for shape in shapes)
            # The weights are drawn in float64 on the host, then packed into one buffer on the device.
            backend.check_memory(n_parameters * 8, self.device, n_parameters * np.dtype(self.dtype).itemsize,
                                 f"layer_sizes {self.layer_sizes} give {n_parameters:,} parameters, which")
            host = []
            for index, layer in enumerate(layers):
                values = layer.initial_params(self.rng)
                for name, shape in layer.param_shapes().items():
                    value = np.asarray(values[name])
                    if value.shape != tuple(shape):
                        raise ValueError(f"layers[{index}].initial_params()[{name!r}] has shape {value.shape}, "
                                         f"param_shapes() says {tuple(shape)}")
                    host.append(value)
        self._store = _Store()
        _bind(layers, self._store)
        # Layers other than Dense may read the batch's rows (Dropout keys its masks by them).
        self.needs_rows = any(not isinstance(layer, Dense) for layer in layers)
        # Whether a layer's backward must give dX: only where some layer below has parameters.
        self._input_grad = [any(layer.param_shapes() for layer in layers[:i]) for i in range(len(layers))]
        # copy=False: stored arrays already in the model's dtype are packed as they are (one copy),
        # each dropped from `host` once copied: where `host` is the list `load` read (its only
        # holder), the peak is the parameters and one stored array.
        for index in range(len(host)):
            host[index] = backend.to_device(host[index].astype(self.dtype, copy=False), self.device)
        self._assign(host, release=True)
        self._store.buffers[:] = self._initial_buffers()
        self.optimizer = None  # what trains the parameters (nn_xp.optim), once there is one
        self.loss = None  # the loss fit trained with; None until then (inferred from the output)

    # ---- description -------------------------------------------------------------------------
    @property
    def output_activation(self) -> str:
        return self._output.name

    @property
    def default_loss(self):
        """The loss fit trained with (a name or a spec dict), else the one the output activation implies."""
        return self.loss or default_loss(self._output.name)

    @property
    def is_classifier(self) -> bool:
        """A sigmoid output trained with mse (the notebooks' sine) is a regressor."""
        return self.head().classifier

    def head(self, loss=None):
        """The output head for `loss`, a name or a spec dict ({"name": "huber", "delta": 1.0}); None:
        the loss fit trained with, else the output's default."""
        return get_head(check_loss(loss or self.loss, self._output.name), self._output)

    def parameters(self) -> list:
        """[W1, b1, W2, b2, ...]: every layer's parameters in order, the live arrays on `self.device`
        (a norm's weight and bias after its layer's)."""
        return self._store.params

    def named_parameters(self) -> dict:
        """{"dense_1.W": array, "dense_1.b": ..., "batch_norm_1.weight": ...}: the arrays of
        `parameters()`, in the same order, named by layer (its kind and number) and parameter."""
        return {f"{layer_name}.{name}": layer.get_param(name)
                for layer_name, layer in zip(_layer_names(self.layers), self.layers) for name in layer.param_shapes()}

    def buffers(self) -> list:
        """The layers' non-trainable state in layer order (BatchNorm: running_mean, running_var)."""
        return list(self._store.buffers)

    def named_buffers(self) -> dict:
        """{"batch_norm_1.running_mean": array, ...}: `buffers()` named as `named_parameters()`."""
        return {f"{layer_name}.{name}": layer.get_buffer(name)
                for layer_name, layer in zip(_layer_names(self.layers), self.layers) for name in layer.buffer_shapes()}

    def decayed(self) -> list:
        """The positions in `parameters()` of the parameters an L2 penalty applies to, as their
        layers declare them (`Layer.decayed()`: Dense's W, no bias, no norm parameter)."""
        names = list(self.named_parameters())
        wanted = {f"{layer_name}.{name}" for layer_name, layer in zip(_layer_names(self.layers), self.layers)
                  for name in layer.decayed()}
        return [index for index, name in enumerate(names) if name in wanted]

    def _initial_buffers(self) -> list:
        """Every layer's initial buffers, in the model's dtype on its device."""
        arrays = []
        for index, layer in enumerate(self.layers):
            values = layer.initial_buffers()
            for name, shape in layer.buffer_shapes().items():
                value = np.asarray(values[name])
                if value.shape != tuple(shape):
                    raise ValueError(f"layers[{index}].initial_buffers()[{name!r}] has shape {value.shape}, "
                                     f"buffer_shapes() says {tuple(shape)}")
                arrays.append(backend.to_device(value.astype(self.dtype), self.device))
        return arrays

    def set_buffers(self, arrays) -> None:
        """New values for the buffers, in `buffers()`' order (shapes must match)."""
        arrays = list(arrays)
        shapes = [tuple(shape) for layer in self.layers for shape in layer.buffer_shapes().values()]
        if len(arrays) != len(shapes):
            raise ValueError(f"arrays must hold {len(shapes)} buffers, got {len(arrays)}")
        for index, (a, shape) in enumerate(zip(arrays, shapes)):
            if tuple(a.shape) != shape:
                raise ValueError(f"buffer {index} has shape {tuple(a.shape)}, the layer's {shape}")
        self._store.buffers[:] = [backend.to_device(np.asarray(backend.to_numpy(a)).astype(self.dtype), self.device)
                                  for a in arrays]

    def n_parameters(self) -> int:
        return sum(int(np.prod(p.shape)) for p in self._store.params)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.layers!r}, output_activation={self._output.name!r}, "
                f"dtype={self.dtype!r}, device={self.device!r})")

    # ---- devices -----------------------------------------------------------------------------
    def _assign(self, arrays, release: bool = False) -> None:
        """Make `arrays` the parameters, in the same list object (optimizers and layers hold it);
        where the backend has flat buffers they become views of one. With `release`, the entries of
        the list `arrays` are dropped as they are copied (`Ops.pack`)."""
        ops = ops_for(backend.get_namespace(*arrays))
        with backend.device_context(backend.device_of(arrays[0])):
            packed = ops.pack(arrays, release=release)
        params = self._store.params
        params[:] = packed
        params.flat, params.views = packed.flat, packed.views
        self._store.grads = None  # made at the next training step, shaped like the parameters
        self.workspace = {}  # arrays a training step writes into, kept from step to step

    def set_parameters(self, arrays) -> None:
        """Copy new values into the parameters (shapes must match); optimizers stay linked."""
        arrays = list(arrays)
        params = self._store.params
        if len(arrays) != len(params):
            raise ValueError(f"arrays must hold {len(params)} arrays, got {len(arrays)}")
        for index, (p, a) in enumerate(zip(params, arrays)):
            if tuple(a.shape) != tuple(p.shape):
                raise ValueError(f"arrays[{index}] has shape {tuple(a.shape)}, the parameter {tuple(p.shape)}")
        values = [backend.to_device(a, self.device) for a in arrays]
        values = [v if v.dtype == p.dtype else backend.get_namespace(v).astype(v, p.dtype)
                  for v, p in zip(values, params)]
        if ops_for(backend.get_namespace(*params)).mutable:
            if not params.is_packed():
                self._assign(list(params))
            for p, v in zip(params, values):
                p[...] = v
        else:
            params[:] = values

    def to(self, device):
        """Move parameters (and optimizer state, if any) to `device`; returns self."""
        device = backend.resolve_device(device)
        self.__dict__.pop("_compiled", None)  # compiled training steps (training/compiled.py) of the old device
        self._assign([backend.to_device(p, device) for p in self._store.params])
        self._store.buffers[:] = [backend.to_device(b, device) for b in self._store.buffers]
        if self.optimizer is not None:
            self.optimizer.to(device)
        self.device = device
        return self

    def copy(self, dtype=None, device=None):
        """An independent copy, optionally in another dtype or on another device (no optimizer)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.__dict__.pop("_compiled", None)  # compiled training steps hold this model, not the clone
        clone.dtype = backend.resolve_dtype(dtype or self.dtype)
        clone.device = backend.resolve_device(device or self.device)
        clone.layers = [copy.copy(layer) for layer in self.layers]
        clone._store = _Store()
        _bind(clone.layers, clone._store)
        clone._assign([backend.to_device(backend.to_numpy(p).astype(clone.dtype), clone.device)
                       for p in self._store.params])
        clone._store.buffers[:] = [backend.to_device(backend.to_numpy(b).astype(clone.dtype), clone.device)
                                   for b in self._store.buffers]
        clone.optimizer = None
        clone.rng = copy.deepcopy(self.rng)
        return clone

    # ---- input checks (run before any work) -------------------------------------------------
    def check_input(self, X, parameter: str = "X", comm=None, host: bool = False):
        """X as an array of the model's dtype on the model's device (with `host`, a NumPy array of
        the model's dtype left in host memory, for training/streaming.py); raises on bad input.

        With a communicator (training/distributed.py) each rank checks its share of the rows for NaN/inf
        and the answers are combined, so no rank reads every row. A scipy.sparse X
        (cupyx.scipy.sparse on a GPU) stays sparse, as CSR: the first layer, which must be a Dense
        one, multiplies it as it is."""
        if backend.is_sparse(X):
            if not isinstance(self.layers[0], Dense):
                raise TypeError(f"{parameter} is sparse, which only a model whose first layer is Dense takes")
            return validation.sparse_on(X, self.layer_sizes[0], self.dtype, self.device, parameter)
        X = validation.array_on(X, self.device, parameter)
        if X.ndim != 2:
            raise ValueError(f"{parameter} must be 2-D (n_samples, n_features), got shape {tuple(X.shape)}")
        if X.shape[0] == 0:
            raise ValueError(f"{parameter} has no samples (shape {tuple(X.shape)})")
        if X.shape[1] != self.layer_sizes[0]:
            raise ValueError(
                f"{parameter} has {X.shape[1]} features but the model expects "
                f"layer_sizes[0]={self.layer_sizes[0]}"
            )
        # Convert first (no copy when X already has the model's dtype), then check the converted
        # values: a float64 value beyond float32's range becomes inf in a float32 model.
        narrowed = validation.narrows(X.dtype, self.dtype)
        if backend.is_host_array(X):
            with np.errstate(over="ignore"):
                X = X.astype(self.dtype, copy=False)
            if not host:
                X = backend.to_device(X, self.device)
        else:
            xp = backend.get_namespace(X)
            X = xp.astype(X, getattr(xp, self.dtype), copy=False)
        if comm is not None:
            lo, hi = comm.share(X.shape[0])
            finite = comm.allreduce_host([0.0 if hi == lo or validation.all_finite(X[lo:hi, :]) else 1.0])[0] == 0
        else:
            finite = validation.all_finite(X)
        if not finite:
            raise ValueError(
                f"{parameter} contains NaN or infinite values"
                + (f" (or values too large for {self.dtype})" if narrowed else "")
            )
        return X

    def check_target(self, y, n_samples: int, loss, parameter: str = "y"):
        """Targets as a float array (n_samples, n_outputs) on the model's device, as the head for
        `loss` (a name, a spec dict or a head) reads them."""
        head = loss if isinstance(loss, Head) else self.head(loss)
        y = validation.array_on(y, self.device, parameter)
        host = y if backend.is_host_array(y) else backend.to_numpy(y)
        if host.ndim not in (1, 2) or host.shape[0] != n_samples:
            raise ValueError(
                f"{parameter} must have {n_samples} rows (one per sample in X), got shape {host.shape}"
            )
        if not np.all(np.isfinite(host)):
            raise ValueError(f"{parameter} contains NaN or infinite values")
        host = head.targets(host, self.layer_sizes[-1], parameter)
        narrowed = validation.narrows(host.dtype, self.dtype)
        with np.errstate(over="ignore"):
            host = np.ascontiguousarray(host, dtype=self.dtype)
        if narrowed and not validation.all_finite(host):
            raise ValueError(f"{parameter} holds values too large for {self.dtype}")
        return backend.to_device(host, self.device)

    def check_weights(self, sample_weight, n_samples: int, parameter: str = "sample_weight"):
        """Sample weights (n_samples,) as a column (n_samples, 1) of the model's dtype on its device,
        or None; they must be finite, >= 0 and not all 0."""
        if sample_weight is None:
            return None
        w = sample_weight if backend.is_host_array(sample_weight) else backend.to_numpy(
            validation.array_on(sample_weight, self.device, parameter))
        w = np.asarray(w)
        if w.dtype.kind not in "biuf":
            raise TypeError(f"{parameter} must be numeric, got dtype {w.dtype}")
        if w.shape != (n_samples,):
            raise ValueError(f"{parameter} must have shape ({n_samples},) (one weight per sample), got {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"{parameter} must hold finite weights >= 0")
        if not np.any(w > 0):
            raise ValueError(f"{parameter} must not be all zero")
        return backend.to_device(np.ascontiguousarray(w, dtype=self.dtype)[:, None], self.device)

    # ---- forward and backward: one loop for every backend -----------------------------------
    def _logits(self, X, ctx: Context):
        """The last layer's output Z and the backward closures, for checked X."""
        ops = ctx.ops
        backprops = []
        H = X
        for index, layer in enumerate(self.layers):
            ctx.layer, ctx.input_grad = index, self._input_grad[index]
            H, backprop = layer.forward(ops, H, ctx)
            backprops.append(backprop)
        if H is X:  # a model of parameter-free layers: the head must not write into the caller's X
            H = ops.xp.asarray(X, copy=True)
        return H, backprops

    def train_step(self, X, Y, head, *, rows=None, step=None, training=True, reuse=True, weights=None,
                   update_buffers=False, comm=None, grad_scale=1.0, half=None, scale=1.0):
        """(loss as a 0-d device array, gradients aligned with `parameters()`, what the head's
        metric reads) for checked X, Y: the training hot path, in full or mixed precision.

        rows: the batch's rows of the training data (dropout keys its masks by them; None: 0..n-1).
        step: the optimizer step the masks belong to (None: the optimizer's step count).
        reuse: write the activations, gradients and returned output into arrays kept from the
            step before (the mutable backends), all overwritten by the next call: the fit loop uses
            them at once. Without it the gradients are new arrays.
        weights: sample weights, a column (n_samples, 1) (check_weights), or None.
        update_buffers: the layers update their buffers (BatchNorm's running statistics): fit's
            training steps, and no other pass.
        comm, grad_scale: a distributed step of a model with a layer that couples the rows of a
            batch (BatchNorm): the communicator the layer sums over, and this rank's share of the
            global batch, by which dL/dZ is scaled before the backward pass (so the gradients come
            back already weighted for the allreduce).
        half, scale: mixed precision (training/precision.py; NumPy or CuPy only, always reusing
            the kept arrays): the layers compute in `half` ("float16" or "bfloat16") with a half
            copy of the parameters, the head in the parameters' dtype on the logits, and the
            gradients of the loss times `scale` come back unscaled in the parameters' dtype; norms
            take their statistics in that dtype.
        """
        ops = self._ops_of(X)
        store = self._store
        params = store.params
        if (ops.mutable or half is not None) and not params.is_packed():
            self._assign(list(params))
        if step is None:
            step = self.optimizer.step_count if self.optimizer is not None else 0
        kept = store.grads
        if half is not None:
            ops, X, grads, half_grads = self._enter_half(ops, X, half)  # the layers read and write half copies
        elif reuse and ops.mutable:
            if kept is None:
                kept = store.grads = ops.empty_like_packed(params)
            grads = kept
        else:
            grads = store.grads = [None] * len(params)
        ctx = Context(ops, training=training, step=step, rows=rows, key=self.dropout_key,
                      workspace=self.workspace if reuse and ops.mutable else None, update_buffers=update_buffers,
                      comm=comm, wide=None if half is None else params.flat.dtype)
        try:
            if half is None:
                Z, backprops = self._logits(X, ctx)
                L, dH, out = head.loss_and_grad(ops, Z, Y, weights=weights,
                                                out=ctx.buffer(head, "dZ", Z.shape, Z) if head.writes_out else None)
                if grad_scale != 1.0:
                    dH = dH * grad_scale
                _backward(backprops, dH)
            else:
                # Overflow to inf is what the loss scaler watches for: no warning from NumPy's emulation.
                with np.errstate(over="ignore", invalid="ignore"):
                    Z, backprops = self._logits(X, ctx)
                    L, dZ, out = head.loss_and_grad(ops, ops.xp.astype(Z, params.flat.dtype), Y, weights=weights)
                    if scale != 1.0:
                        dZ = dZ * scale
                    _backward(backprops, ops.xp.astype(dZ, half_grads.flat.dtype))
        finally:
            store.params, store.grads = params, kept  # the training step's buffers stay for the next one
        if half is not None:
            ops.unscale_into(half_grads.flat, grads.flat, 1.0 / scale)  # unscaled and cast in one pass
        return L, grads, out

    def _enter_half(self, ops, X, half: str):
        """Mixed precision's side of `train_step`: the half ops, X cast into a kept half buffer, the
        float32 gradients to return and the half gradients; the store's parameters and gradients
        become half copies (one cast of the flat buffer), which `train_step` puts back."""
        store = self._store
        params = store.params
        dtype = backend.half_dtype(self.device, half)
        ops = ops.half()
        mixed = self._mixed if getattr(self, "_mixed", None) and self._mixed[0] == dtype else None
        if mixed is None or mixed[1].flat.shape != params.flat.shape:
            half_params = ops.pack([ops.xp.zeros(tuple(p.shape), dtype=dtype) for p in params])
            mixed = self._mixed = (dtype, half_params, ops.empty_like_packed(half_params),
                                   ops.empty_like_packed(params))
        _, half_params, half_grads, grads = mixed
        half_params.flat[...] = params.flat
        Xh = ops.buffer(self.workspace, "mixed_X", tuple(X.shape), half_params.flat)
        Xh[...] = X
        store.params, store.grads = half_params, half_grads
        return ops, Xh, grads, half_grads

    _ops_key = None

    def _ops_of(self, X):
        """The ops for X's backend, looked up once per array type (a namespace lookup costs ~20 us)."""
        if type(X) is not self._ops_key:
            self._ops_cached, self._ops_key = ops_for(backend.get_namespace(X)), type(X)
        return self._ops_cached

    def zero_grads(self):
        """Zero gradients aligned with `parameters()`: in the training step's buffers where there are some."""
        params = self._store.params
        ops = self._ops_of(params[0])
        if ops.mutable:
            if not params.is_packed():
                self._assign(list(params))
            if self._store.grads is None:
                self._store.grads = ops.empty_like_packed(params)
            self._store.grads.flat[...] = 0
            return self._store.grads
        return [ops.xp.zeros_like(p) for p in params]

    def _forward(self, X):
        """The output after the output activation, for checked X (no dropout)."""
        ops = self._ops_of(X)
        Z, _ = self._logits(X, Context(ops))
        return self._output.forward(ops.xp, Z)

    def loss_value(self, X, Y, head, training_step=None):
        """The loss alone (0-d device array) for checked X, Y; with `training_step`, under the
        dropout masks of that optimizer step (rows 0..n-1), as `loss_and_grads` uses them."""
        ops = ops_for(backend.get_namespace(X))
        ctx = Context(ops, training=training_step is not None, step=training_step or 0, key=self.dropout_key)
        Z, _ = self._logits(X, ctx)
        return head.value(ops, Z, Y)

    def evaluate_checked(self, X, Y, head, weights=None) -> dict:
        """{"loss", metrics...} as floats for checked inputs (evaluate and fit's validation)."""
        ops = ops_for(backend.get_namespace(X))
        Z, _ = self._logits(X, Context(ops))
        result = {"loss": float(head.value(ops, Z, Y, weights))}
        metrics = head.metrics(ops.xp, self._output.forward(ops.xp, Z), Y, weights)
        result.update({k: float(v) for k, v in metrics.items()})
        return result

    def forward(self, X):
        """The output after the output activation, shape (n_samples, n_outputs), on the model's device."""
        return self._forward(self.check_input(X))

    def loss_and_grads(self, X, y, loss=None, training_step=None):
        """(loss as a float, gradients aligned with `parameters()`) for a batch.

        Args:
            X: (n_samples, n_features).
            y: class labels (n_samples,) or one-hot (n_samples, n_outputs) for cross_entropy;
               0/1 targets for binary_cross_entropy; (n_samples,) or (n_samples, n_outputs) for mse
               and the other regression losses.
            loss: a name or a spec dict (heads.py: {"name": "huber", "delta": 1.0},
               {"name": "quantile", "quantile": 0.9}, {"name": "cross_entropy", "label_smoothing": 0.1});
               None infers it from the output activation.
            training_step: None (the default) runs the network as at inference, without dropout;
               an integer runs it as `fit`'s optimizer step of that number would, with the same
               dropout masks (rows 0..n-1), so that gradients can be checked with them held fixed.
        """
        head = self.head(loss)
        X = self.check_input(X)
        Y = self.check_target(y, X.shape[0], head)
        if training_step is not None:
            training_step = validation.Integer(0)(training_step, "training_step")
        L, grads, _ = self.train_step(X, Y, head, step=training_step or 0, training=training_step is not None,
                                      reuse=False)
        return float(L), list(grads)

    # ---- description for files ---------------------------------------------------------------
    def architecture(self) -> dict:
        """What rebuilds the network (JSON-ready): the layers' specs and the output activation."""
        return {"layers": [layer.spec() for layer in self.layers], "output_activation": self._output.spec()}


def _backward(backprops, dH) -> None:
    """Run the layers' backward closures from the top, each passing dX to the one below."""
    for backprop in reversed(backprops):
        dH = backprop(dH)
        if dH is None:  # nothing below has parameters
            break


class _Handover(list):
    """Parameter arrays given to a model being built: it empties the list as it packs them."""


def _with_params(cls, params, *args, **kwargs):
    """cls(*args, **kwargs) holding `params` (host arrays, or None: drawn from the seed as usual).

    The arrays reach `_setup` beside the constructor's arguments rather than as one of them, so the
    public constructors keep their signatures."""
    model = cls.__new__(cls)
    if params is not None:
        # A caller's list is left alone; a _Handover (what `load` read) is emptied as it is packed.
        model._stored_params = params if isinstance(params, _Handover) else list(params)
    model.__init__(*args, **kwargs)
    return model


def _matching(arrays: list, shapes: list, layer_sizes: list) -> list:
    """`arrays` as NumPy arrays, after checking they are what the layers need (nothing allocated)."""
    if len(arrays) != len(shapes):
        raise ValueError(f"layer_sizes {layer_sizes} need {len(shapes)} parameter arrays, got {len(arrays)}")
    for index, (array, shape) in enumerate(zip(arrays, shapes)):
        if tuple(array.shape) != shape:
            raise ValueError(f"arrays[{index}] has shape {tuple(array.shape)}, but layer_sizes {layer_sizes} "
                             f"need {shape}")
    arrays[:] = [np.asarray(array) for array in arrays]  # the same list: its owner may hand it over
    return arrays

