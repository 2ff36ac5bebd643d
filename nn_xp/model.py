"""The multilayer perceptron: parameters, the forward pass and the explicit backward pass.

Layer l computes Z_l = A_{l-1} @ W_l.T + b_l and A_l = f_l(Z_l), with A_0 = X. Backward, from
dZ_L given by the loss:
    dW_l = dZ_l.T @ A_{l-1},   db_l = sum_rows(dZ_l),   dA_{l-1} = dZ_l @ W_l,
    dZ_{l-1} = f_{l-1}'(dA_{l-1})   (each activation's backward; nothing is done for the input).
"""

from __future__ import annotations

import copy
import numbers

import numpy as np

from . import backend, fast, losses
from .activations import Activation, get_activation
from .initializers import check_init, initial_parameters


class MLP:
    """A fully connected network trained with hand-written forward and backward passes.

    Args:
        layer_sizes: [n_features, hidden..., n_outputs], at least two positive integers.
        activation: hidden activation, a name or a list with one name per hidden layer.
        output_activation: "linear", "sigmoid", "softmax", "tanh", ...
        init: weight initializer ("he", "xavier", "random", ...); biases start at zero.
        dtype: "float32" (default) or "float64", kept end to end.
        device: "auto", "cpu", "cuda" or "cuda:N".
        seed: same seed, bitwise-identical initial weights on every device.
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
    ):
        self.layer_sizes = _check_layer_sizes(layer_sizes)
        self._hidden = _check_hidden_activations(activation, len(self.layer_sizes) - 2)
        self._output = get_activation(output_activation, "output_activation")
        self.init = check_init(init)
        self.dtype = backend.resolve_dtype(dtype)
        self.device = backend.resolve_device(device)
        self.seed = seed
        # One host generator draws the weights and then every shuffle order, so a seed fixes both.
        self.rng = backend.host_rng(seed)
        n_parameters = sum((n_in + 1) * n_out for n_in, n_out in zip(self.layer_sizes[:-1], self.layer_sizes[1:]))
        # The weights are drawn in float64 on the host, then packed into one buffer on the device.
        backend.check_memory(n_parameters * 8, self.device, n_parameters * np.dtype(self.dtype).itemsize,
                             f"layer_sizes {self.layer_sizes} give {n_parameters:,} parameters, which")
        host = initial_parameters(self.layer_sizes, self.init, self.rng)
        self._params = fast.FlatList()
        self._assign([backend.to_device(p.astype(self.dtype), self.device) for p in host])
        self.optimizer = None
        self.history = None
        self.preprocessing = None  # input standardisation statistics, when a dataset asked for it
        self.stop_training = False  # callbacks set this to end fit after the current epoch
        self.loss = None  # the loss fit trained with; None until then (inferred from the output)

    # ---- description -------------------------------------------------------------------------
    @property
    def activation(self) -> list:
        """The hidden activations as JSON-ready specs."""
        return [a.spec() for a in self._hidden]

    @property
    def output_activation(self) -> str:
        return self._output.name

    @property
    def default_loss(self) -> str:
        """The loss fit trained with, else the one the output activation implies."""
        return self.loss or losses.default_loss(self._output.name)

    @property
    def is_classifier(self) -> bool:
        """A sigmoid output trained with mse (the notebooks' sine) is a regressor."""
        return self.default_loss in ("cross_entropy", "binary_cross_entropy")

    def parameters(self) -> list:
        """[W1, b1, W2, b2, ...]: the live arrays, on `self.device`."""
        return self._params

    def n_parameters(self) -> int:
        return sum(int(np.prod(p.shape)) for p in self._params)

    def __repr__(self) -> str:
        hidden = [a.name for a in self._hidden]
        return (
            f"MLP(layer_sizes={list(self.layer_sizes)}, activation={hidden}, "
            f"output_activation={self._output.name!r}, dtype={self.dtype!r}, device={self.device!r})"
        )

    # ---- devices -----------------------------------------------------------------------------
    def _assign(self, arrays) -> None:
        """Make `arrays` the parameters, in the same list object (optimizers hold it); on NumPy
        and CuPy they become views of one flat buffer (fast.py)."""
        xp = backend.get_namespace(*arrays)
        if fast.is_mutable(xp):
            with backend.device_context(backend.device_of(arrays[0])):
                packed = fast.pack(arrays, xp)
            self._params[:] = packed
            self._params.flat, self._params.views = packed.flat, packed.views
        else:
            self._params[:] = arrays
            self._params.flat, self._params.views = None, ()
        self._grads = None  # the fit loop's gradient buffers, made when first needed
        self._workspace = fast.Workspace()  # and its other per-step arrays (fast.py)
        self._xp_type = None

    def set_parameters(self, arrays) -> None:
        """Copy new values into the parameters (shapes must match); optimizers stay linked."""
        arrays = list(arrays)
        if len(arrays) != len(self._params):
            raise ValueError(f"arrays must hold {len(self._params)} arrays, got {len(arrays)}")
        for index, (p, a) in enumerate(zip(self._params, arrays)):
            if tuple(a.shape) != tuple(p.shape):
                raise ValueError(f"arrays[{index}] has shape {tuple(a.shape)}, the parameter {tuple(p.shape)}")
        if not self._params.is_packed():
            self._assign([backend.to_device(p, self.device) for p in self._params])
        for p, a in zip(self._params, arrays):
            p[...] = backend.to_device(a, self.device)

    def to(self, device):
        """Move parameters (and optimizer state, if any) to `device`; returns self."""
        device = backend.resolve_device(device)
        self._assign([backend.to_device(p, device) for p in self._params])
        if self.optimizer is not None:
            self.optimizer.to(device)
        self.device = device
        return self

    def copy(self, dtype=None, device=None) -> "MLP":
        """An independent copy, optionally in another dtype or on another device (no optimizer)."""
        clone = object.__new__(MLP)
        clone.__dict__.update(self.__dict__)
        clone.dtype = backend.resolve_dtype(dtype or self.dtype)
        clone.device = backend.resolve_device(device or self.device)
        clone._params = fast.FlatList()
        clone._assign([backend.to_device(backend.to_numpy(p).astype(clone.dtype), clone.device) for p in self._params])
        clone.optimizer = None
        clone.history = None
        clone.rng = copy.deepcopy(self.rng)
        return clone

    # ---- input checks (run before any work) -------------------------------------------------
    def _check_X(self, X, parameter: str = "X"):
        """X as an array of the model's dtype on the model's device; raises on bad input."""
        X = _check_array_host_or_local(X, self.device, parameter)
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
        narrowed = _narrows(X.dtype, self.dtype)
        if isinstance(X, np.ndarray):
            with np.errstate(over="ignore"):
                X = backend.to_device(X.astype(self.dtype, copy=False), self.device)
        else:
            xp = backend.get_namespace(X)
            X = xp.astype(X, getattr(xp, self.dtype), copy=False)
        if not _all_finite(X):
            raise ValueError(
                f"{parameter} contains NaN or infinite values"
                + (f" (or values too large for {self.dtype})" if narrowed else "")
            )
        return X

    def _check_y(self, y, n_samples: int, loss: str, parameter: str = "y"):
        """Targets as a float array (n_samples, n_outputs) on the model's device."""
        y = _check_array_host_or_local(y, self.device, parameter)
        host = y if isinstance(y, np.ndarray) else backend.to_numpy(y)
        if host.ndim not in (1, 2) or host.shape[0] != n_samples:
            raise ValueError(
                f"{parameter} must have {n_samples} rows (one per sample in X), got shape {host.shape}"
            )
        if not np.all(np.isfinite(host)):
            raise ValueError(f"{parameter} contains NaN or infinite values")
        n_out = self.layer_sizes[-1]
        if loss == "cross_entropy" and host.ndim == 1:
            if host.dtype.kind == "f" and not np.all(np.equal(np.mod(host, 1), 0)):
                raise ValueError(f"{parameter} must hold integer class labels for cross_entropy")
            if host.size and (host.min() < 0 or host.max() >= n_out):
                raise ValueError(
                    f"{parameter} holds class labels outside [0, {n_out}) (the model has {n_out} outputs): "
                    f"min {host.min():g}, max {host.max():g}"
                )
            host = (host.astype(np.int64)[:, None] == np.arange(n_out)).astype(self.dtype)
        else:
            if host.ndim == 1:
                host = host[:, None]
            if host.shape[1] != n_out:
                raise ValueError(
                    f"{parameter} must have shape ({n_samples},) or ({n_samples}, {n_out}) for a model "
                    f"with {n_out} outputs, got {host.shape}"
                )
            if loss == "binary_cross_entropy" and (host.min() < 0 or host.max() > 1):
                raise ValueError(
                    f"{parameter} must hold 0/1 targets (two classes) for binary_cross_entropy; "
                    f"got values in [{host.min():g}, {host.max():g}]"
                )
        narrowed = _narrows(host.dtype, self.dtype)
        with np.errstate(over="ignore"):
            host = np.ascontiguousarray(host, dtype=self.dtype)
        if narrowed and not _all_finite(host):
            raise ValueError(f"{parameter} holds values too large for {self.dtype}")
        return backend.to_device(host, self.device)

    # ---- forward and backward ----------------------------------------------------------------
    def _logits(self, X, keep: bool = False):
        """Output pre-activation Z_L; with keep, also the layer inputs and hidden Z's for backward."""
        xp = backend.get_namespace(X)
        params = self._params
        inputs, Zs = [X], []
        A = X
        for l, act in enumerate(self._hidden):
            Z = A @ params[2 * l].T + params[2 * l + 1]
            A = act.forward(xp, Z)
            if keep:
                Zs.append(Z)
                inputs.append(A)
        Z = A @ params[-2].T + params[-1]
        return (Z, inputs, Zs) if keep else Z

    def _forward(self, X):
        xp = backend.get_namespace(X)
        return self._output.forward(xp, self._logits(X))

    def _loss_value(self, X, Y, loss: str):
        """The loss as a 0-d device array (no host synchronisation)."""
        return self._loss_and_output(X, Y, loss)[0]

    def _loss_and_output(self, X, Y, loss: str):
        """(loss as a 0-d device array, output after the output activation): one forward pass."""
        xp = backend.get_namespace(X)
        Z = self._logits(X)
        out = self._output.forward(xp, Z)
        if loss == "cross_entropy":
            return losses.softmax_cross_entropy_value(xp, Z, Y), out
        if loss == "binary_cross_entropy":
            return losses.sigmoid_binary_cross_entropy_value(xp, Z, Y), out
        return losses.mse_value(xp, out, Y), out

    def _evaluate_checked(self, X, Y, loss: str) -> dict:
        """{"loss", metrics...} as floats for checked inputs (evaluate and fit's validation)."""
        from .metrics import compute_metrics

        value, out = self._loss_and_output(X, Y, loss)
        result = {"loss": float(value)}
        result.update({k: float(v) for k, v in compute_metrics(self, out, Y, loss).items()})
        return result

    def _loss_and_grads(self, X, Y, loss: str):
        """(loss as a 0-d device array, gradients, output) for checked inputs: the training hot path.

        The output is the logits Z for the cross-entropy losses and the activated output A for mse;
        the fit loop reads its running metrics from it without another forward pass.
        """
        xp = backend.get_namespace(X)
        Z, inputs, Zs = self._logits(X, keep=True)
        L, dZ, out = self._output_loss_and_grad(xp, Z, Y, loss)
        params = self._params
        grads = [None] * len(params)
        for l in range(len(params) // 2 - 1, -1, -1):
            grads[2 * l] = dZ.T @ inputs[l]
            grads[2 * l + 1] = xp.sum(dZ, axis=0)
            if l > 0:
                dA = dZ @ params[2 * l]
                dZ = self._hidden[l - 1].backward(xp, dA, Zs[l - 1], inputs[l])
        return L, grads, out

    def _training_step_function(self, xp):
        """The loss-and-gradients function training uses for arrays of namespace xp: the in-place
        fast path on NumPy/CuPy, the standard-only one elsewhere."""
        return self._loss_and_grads_fast if fast.is_mutable(xp) else self._loss_and_grads

    def _loss_and_grads_fast(self, X, Y, loss: str):
        """`_loss_and_grads` for NumPy/CuPy: the same math in place, with the gradients written
        into views of one flat buffer and the activations (and the returned output) into the
        model's workspace, all overwritten by the next call: the fit loop consumes them at once."""
        if type(X) is not self._xp_type:  # one namespace lookup per array type (~20 us each)
            self._xp, self._xp_type = backend.get_namespace(X), type(X)
        xp = self._xp
        raw = fast.raw(xp)
        params = self._params
        if not params.is_packed():
            self._assign(list(params))
        if self._grads is None:
            self._grads = fast.empty_like_packed(params, xp)
        grads = self._grads
        space, n = self._workspace, X.shape[0]
        inputs, Zs = [X], []
        A = X
        for l, act in enumerate(self._hidden):
            W = params[2 * l]
            Z = raw.matmul(A, W.T, out=space.rows(raw, f"Z{l}", n, W.shape[0], W))
            A, Z = fast.add_bias_and_activate(raw, xp, Z, params[2 * l + 1], act)
            Zs.append(Z)  # None where Z was overwritten: backward needs only A
            inputs.append(A)
        W = params[-2]
        Z = raw.matmul(A, W.T, out=space.rows(raw, "Z", n, W.shape[0], W))
        Z += params[-1]
        if loss == "cross_entropy":
            Z -= Z.max(axis=1, keepdims=True)  # shifted logits: same argmax, exp cannot overflow
            E = raw.exp(Z, out=space.rows(raw, "E", n, W.shape[0], W))
            S = E.sum(axis=1, keepdims=True)
            L = (raw.log(S).sum() - (Y * Z).sum()) / n
            dZ = E
            dZ /= S
            dZ -= Y
            dZ *= 1 / n
            out = Z
        else:
            L, dZ, out = self._output_loss_and_grad(xp, Z, Y, loss)
        raw.sum(dZ, axis=0, out=grads[-1])
        for l in range(len(params) // 2 - 1, -1, -1):
            raw.matmul(dZ.T, inputs[l], out=grads[2 * l])
            if l > 0:  # the layer below's dZ and its bias gradient
                W = params[2 * l]
                dA = raw.matmul(dZ, W, out=space.rows(raw, f"dA{l - 1}", n, W.shape[1], W))
                dZ = fast.activation_backward_and_bias_grad(raw, xp, self._hidden[l - 1], dA, Zs[l - 1], inputs[l],
                                                            grads[2 * l - 1])
        return L, grads, out

    def _output_loss_and_grad(self, xp, Z, Y, loss: str):
        """(L, dL/dZ, output) at the output layer, from the logits Z."""
        if loss == "cross_entropy":
            L, dZ = losses.softmax_cross_entropy(xp, Z, Y)
            return L, dZ, Z
        if loss == "binary_cross_entropy":
            L, dZ = losses.sigmoid_binary_cross_entropy(xp, Z, Y)
            return L, dZ, Z
        A = self._output.forward(xp, Z)
        L, dA = losses.mse(xp, A, Y)
        return L, self._output.backward(xp, dA, Z, A), A

    def forward(self, X):
        """The output after the output activation, shape (n_samples, n_outputs), on the model's device."""
        return self._forward(self._check_X(X))

    def loss_and_grads(self, X, y, loss=None):
        """(loss as a float, gradients aligned with `parameters()`) for a batch.

        Args:
            X: (n_samples, n_features).
            y: class labels (n_samples,) or one-hot (n_samples, n_outputs) for cross_entropy;
               0/1 targets for binary_cross_entropy; (n_samples,) or (n_samples, n_outputs) for mse.
            loss: None infers it from the output activation.
        """
        loss = losses.check_loss(loss, self._output.name)
        X = self._check_X(X)
        Y = self._check_y(y, X.shape[0], loss)
        L, grads, _ = self._loss_and_grads(X, Y, loss)
        return float(L), grads

    # ---- training and inference (training.py holds the loop) --------------------------------
    def fit(self, X, y, **kwargs):
        """Train with mini-batch gradient descent; see `nn_xp.training.fit` for the arguments."""
        from .training import fit

        return fit(self, X, y, **kwargs)

    def predict_proba(self, X, batch_size=None):
        """Class probabilities (n_samples, n_classes); a sigmoid model with one output gives two columns."""
        if not self.is_classifier:
            raise ValueError(
                "predict_proba needs a classifier (a softmax or sigmoid output trained with a "
                f"cross-entropy loss); this model's output is {self._output.name!r} with loss {self.default_loss!r}"
            )
        P = self._batched_forward(self._check_X(X), batch_size)
        if self._output.name == "sigmoid" and P.shape[1] == 1:
            xp = backend.get_namespace(P)
            P = xp.concat([1 - P, P], axis=1)
        return P

    def predict(self, X, batch_size=None):
        """Regression: the outputs. Classification: class labels (n_samples,) (multi-label sigmoid: 0/1 per output)."""
        X = self._check_X(X)
        out = self._batched_forward(X, batch_size)
        xp = backend.get_namespace(out)
        if not self.is_classifier:
            return out
        if self._output.name == "softmax":
            return xp.argmax(out, axis=1)
        if self._output.name == "sigmoid":
            labels = xp.astype(out > 0.5, xp.int64)
            return labels[:, 0] if labels.shape[1] == 1 else labels
        return out

    def _batched_forward(self, X, batch_size):
        if batch_size is not None:  # checked before use: "2" or 2.5 must not pass as "large enough"
            batch_size = _check_positive_int(batch_size, "batch_size")
        if batch_size is None or batch_size >= X.shape[0]:
            return self._forward(X)
        xp = backend.get_namespace(X)
        n = X.shape[0]  # the standard forbids slicing past the end
        parts = [self._forward(X[i : min(i + batch_size, n), :]) for i in range(0, n, batch_size)]
        return xp.concat(parts, axis=0)

    def evaluate(self, X, y, loss=None) -> dict:
        """{"loss": ..., and the task's metrics}: accuracy for classification; mse, mae, r2 otherwise."""
        loss = losses.check_loss(loss or self.loss, self._output.name)
        X = self._check_X(X)
        Y = self._check_y(y, X.shape[0], loss)
        return self._evaluate_checked(X, Y, loss)

    def save(self, path):
        """Write the model (and optimizer state and history) to one .npz file, atomically."""
        from .persistence import save

        return save(self, path)


# ---- argument checks ---------------------------------------------------------------------------
# Rows of X are checked for NaN/inf in blocks of about this many elements, so the check's boolean
# temporary stays near 1 MB instead of n_samples * n_features bytes (the data plus O(batch) bound).
_FINITE_BLOCK = 1 << 20


def _all_finite(X) -> bool:
    """True when the 2-D array X holds no NaN or inf; one host read at the end."""
    if isinstance(X, np.ndarray) and X.dtype.kind == "f" and X.flags.c_contiguous:
        # One BLAS pass, a third of the time of isfinite over the blocks: a sum of squares is
        # finite only when every element is. A non-finite one may also be finite values whose
        # squares overflow, so then the exact check below decides.
        flat = X.reshape(-1)
        with np.errstate(all="ignore"):
            if np.isfinite(np.dot(flat, flat)):
                return True
    xp = backend.get_namespace(X)
    n = X.shape[0]
    rows = max(1, _FINITE_BLOCK // max(1, X.shape[1]))
    ok = None
    for start in range(0, n, rows):
        block = xp.all(xp.isfinite(X[start : min(start + rows, n), :]))
        ok = block if ok is None else xp.logical_and(ok, block)
    return bool(ok)


def _narrows(source_dtype, dtype: str) -> bool:
    """True when converting floats of `source_dtype` to `dtype` can overflow (float64 -> float32)."""
    try:
        source = np.dtype(str(source_dtype).rsplit(".", 1)[-1])
    except TypeError:
        return False
    return source.kind == "f" and source.itemsize > np.dtype(dtype).itemsize


def _check_positive_int(value, parameter, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{parameter} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{parameter} must be a positive integer, got {value!r}")
    return int(value)


def _check_layer_sizes(layer_sizes) -> list:
    if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__len__"):
        raise TypeError(f"layer_sizes must be a list of positive integers, got {layer_sizes!r}")
    sizes = list(layer_sizes)
    if len(sizes) < 2:
        raise ValueError(
            f"layer_sizes must have at least 2 entries (inputs and outputs), got {sizes!r}"
        )
    for index, size in enumerate(sizes):
        if isinstance(size, bool) or not isinstance(size, numbers.Integral):
            raise TypeError(f"layer_sizes[{index}] must be a positive integer, got {size!r}")
        if size <= 0:
            raise ValueError(f"layer_sizes[{index}] must be a positive integer, got {size!r}")
    return [int(s) for s in sizes]


def _check_hidden_activations(activation, n_hidden: int) -> list[Activation]:
    if isinstance(activation, (list, tuple)):
        if len(activation) != n_hidden:
            raise ValueError(
                f"activation lists one activation per hidden layer: expected {n_hidden}, got {len(activation)}"
            )
        return [get_activation(a, f"activation[{i}]") for i, a in enumerate(activation)]
    return [get_activation(activation, "activation")] * n_hidden


def _check_array_host_or_local(x, device: str, parameter: str):
    """Host data becomes a numeric NumPy array; an array on the model's device stays as it is."""
    if x is None:
        raise TypeError(f"{parameter} must be an array, got None")
    if backend.is_host(x):
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as error:
            raise TypeError(f"{parameter} must be a numeric array: {error}") from None
        if x.dtype.kind not in "iuf":
            raise TypeError(f"{parameter} must be numeric (integer or float), got dtype {x.dtype}")
        return x
    where = backend.device_of(x)
    if where != device:
        raise ValueError(
            f"{parameter} is on device {where!r} but the model is on {device!r}; "
            f"move it with nx.to_device({parameter}, {device!r}) or model.to({where!r})"
        )
    xp = backend.get_namespace(x)
    if not (xp.isdtype(x.dtype, "real floating") or xp.isdtype(x.dtype, "integral")):
        raise TypeError(f"{parameter} must be numeric (integer or float), got dtype {x.dtype}")
    return x
