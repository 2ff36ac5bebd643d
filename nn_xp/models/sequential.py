"""Sequential: the user's model, a `Network` (nn/network.py: the layers and their math) with what
the data meant and what training made of it: the input pipeline (an `nn_xp.Preprocessor`: columns,
imputation, one-hot, standardisation, class labels), `fit` (training/ holds the loop), `predict`,
`predict_proba`, `evaluate`, `score`, `summary`, and its state: `state_dict`, `from_state_dict`,
`save`, `to_onnx` (io/ holds the formats).
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers

import numpy as np

from .. import backends as backend
from .. import inspection, training, validation
from ..data.columns import as_frame, is_table, take_rows
from ..data.labels import host_labels
from ..data.preprocessing import Preprocessor
from ..io import onnx_export, persistence
from ..nn.heads import check_loss
from ..nn.layers import from_spec
from ..nn.network import Network, _Handover, _with_params
from ..optim import get_optimizer
from ..training.history import History
from ..training.precision import LossScaler


class Sequential(Network):
    """A network that is a stack of layers, trained with their hand-written backward passes.

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

    def _setup(self, layers, n_features: int, seed) -> None:
        super()._setup(layers, n_features, seed)
        self.history = None
        # The input pipeline (preprocessing.py): the feature columns, imputation, one-hot
        # categories, standardisation, the target column and the class labels in their own type
        # (output i is classes[i]); predict, predict_proba, evaluate and fit apply it.
        self.preprocessor = Preprocessor()
        self.stop_training = False  # callbacks set this to end fit after the current epoch
        self.l2 = 0.0  # the L2 penalty fit trained with
        self.split = None  # how the command line drew the train/validation/test split of a table
        self.loss_scaler = None  # mixed_float16's dynamic loss scale (training/precision.py), once used

    def copy(self, dtype=None, device=None):
        """An independent copy, optionally in another dtype or on another device (no optimizer, no
        history)."""
        clone = super().copy(dtype, device)
        clone.history = None
        clone.preprocessor = copy.deepcopy(self.preprocessor)
        return clone

    # ---- what the data meant (the input pipeline, preprocessing.py) ---------------------------
    @property
    def feature_names(self):
        """The input columns in order (None for a model trained on plain arrays)."""
        return self.preprocessor.feature_names

    @feature_names.setter
    def feature_names(self, names):
        self.preprocessor.feature_names = None if names is None else [str(n) for n in names]

    @property
    def classes(self):
        """The class labels in their own type (output i is classes[i]), or None (labels are 0..k-1)."""
        return self.preprocessor.classes

    @classes.setter
    def classes(self, labels):
        self.preprocessor.classes = None if labels is None else list(labels)

    @property
    def target(self):
        """The target column of the table the model was trained on, or None."""
        return self.preprocessor.target

    @target.setter
    def target(self, name):
        self.preprocessor.target = name

    @property
    def preprocessing(self):
        """The input pipeline's fitted state as the model file stores it ({"mean", "std",
        "encoding"}), or None."""
        return self.preprocessor.to_dict()

    @preprocessing.setter
    def preprocessing(self, state):
        old = self.preprocessor
        self.preprocessor = Preprocessor.from_dict(state, feature_names=old.feature_names, classes=old.classes,
                                                   target=old.target)

    # ---- training and inference (training/ holds the loop) --------------------------------
    def fit(self, X, y, *, columns=None, drop=(), impute=None, one_hot=None, standardize=False, preprocessor=None,
            **kwargs):
        """Train with mini-batch gradient descent; see `nn_xp.training.fit` for the arguments.

        X may be a pandas DataFrame or a pyarrow Table, y any labels (strings, integers, booleans).
        The first fit of a model learns its input pipeline (an `nn_xp.Preprocessor`, or one made
        from columns=, drop=, impute=, one_hot=, standardize=; see preprocessing.py) from the
        training rows (validation_split's rows left out) and the classes from y; later fits,
        predict, predict_proba and evaluate apply it. Integer labels 0..k-1 stay class indices.
        """
        options = {"columns": columns, "drop": drop, "impute": impute, "one_hot": one_hot, "standardize": standardize}
        given = [name for name, value in options.items() if value not in (None, (), [], False)]
        if preprocessor is not None and not isinstance(preprocessor, Preprocessor):
            raise TypeError(f"preprocessor must be an nn_xp.Preprocessor, got {type(preprocessor).__name__}")
        if preprocessor is not None and given:
            raise ValueError(f"give either preprocessor= or {given[0]}=, not both")
        old = self.preprocessor
        if (given or preprocessor is not None) and old.fitted:
            raise ValueError(f"{given[0] if given else 'preprocessor'}=: the model already owns its input pipeline "
                             "(from its first fit or its file); leave it out")
        kwargs = dict(kwargs)
        history_length = len(self.history) if self.history is not None else 0
        if not old.fitted and (given or preprocessor is not None or is_table(X)):
            pre = preprocessor if preprocessor is not None else Preprocessor(**options)
            pre.task = "classification" if self.head(kwargs.get("loss")).classifier else "regression"
            X, y, kwargs = self._hold_out_before_fitting(X, y, kwargs)
            X, Y = pre.fit_transform(X, y)
            if pre.kept is not None and kwargs.get("sample_weight") is not None:
                kwargs["sample_weight"] = np.asarray(kwargs["sample_weight"])[pre.kept]
            self.preprocessor = pre
            if Y is not None and pre.classes is not None:
                self._check_n_classes(len(pre.classes))
        else:
            X, Y = self._inputs(X), self._targets(y, learn=True, loss=kwargs.get("loss"))
        try:
            validation_data = kwargs.get("validation_data")
            if isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3):
                kwargs["validation_data"] = (self._inputs(validation_data[0], "validation_data[0]"),
                                             self._targets(validation_data[1], "validation_data[1]",
                                                           loss=kwargs.get("loss")),
                                             *validation_data[2:])
            class_weight = kwargs.get("class_weight")
            if isinstance(class_weight, dict) and self.classes is not None:
                labels = list(class_weight)
                codes = self.preprocessor.encode_target(np.asarray(labels, dtype=object), "class_weight")
                kwargs["class_weight"] = {int(c): class_weight[label] for c, label in zip(codes, labels)}
            return training.fit(self, X, Y, **kwargs)
        except BaseException:
            if (len(self.history) if self.history is not None else 0) == history_length:
                self.preprocessor = old  # nothing was trained: the model is as fit found it
            raise

    def _hold_out_before_fitting(self, X, y, kwargs):
        """validation_split's rows drawn before the input pipeline learns its statistics, so they
        come from the training rows only; the held-out rows become validation_data."""
        fraction = kwargs.get("validation_split") or 0.0
        if not fraction or kwargs.get("validation_data") is not None:
            return X, y, kwargs
        n = len(as_frame(X)) if is_table(X) else len(X)
        n_val = math.floor(n * fraction)
        if not 0 < n_val < n:
            return X, y, kwargs  # training.fit says what is wrong with the fraction
        order = self.rng.permutation(n)
        val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
        weights = kwargs.get("sample_weight")
        kwargs = dict(kwargs, validation_split=0.0)
        kwargs["validation_data"] = (take_rows(X, val), take_rows(y, val)) + (
            (np.asarray(weights)[val],) if weights is not None else ())
        if weights is not None:
            kwargs["sample_weight"] = np.asarray(weights)[train]
        return take_rows(X, train), take_rows(y, train), kwargs

    def _check_n_classes(self, k: int) -> None:
        n_out = self.layer_sizes[-1]
        fits = k == n_out or (n_out == 1 and k == 2 and self._output.name == "sigmoid")
        if not fits and n_out == 1 and self._output.name == "sigmoid":
            raise ValueError(f"y holds {k} classes, but one sigmoid output gives two classes: use softmax with {k} "
                             "outputs")
        if not fits:
            raise ValueError(f"y holds {k} classes but the model has {n_out} output{'s' if n_out > 1 else ''}: "
                             f"give layer_sizes[-1]={k if k > 2 or self._output.name != 'sigmoid' else 1}")

    def _inputs(self, X, where: str = "X"):
        """X as the first layer reads it: through the input pipeline where the model has one (a
        table's columns by name; raw numbers in the training columns' order); else as given."""
        if is_table(X) or self.preprocessor.fitted:
            return self.preprocessor.transform(X, where)
        return X

    def _targets(self, y, where: str = "y", learn: bool = False, loss=None):
        """y as the head reads it: a classifier's labels as class indices. Integer labels 0..k-1 are
        the indices themselves; with `learn` (fit), other labels make the model's classes."""
        if not self.head(loss).classifier:
            return host_labels(y, where, numeric=True) if not hasattr(y, "__array_namespace__") else y
        if self.classes is not None:
            labels = host_labels(y, where)
            return labels if labels.ndim != 1 else self.preprocessor.encode_target(labels, where)
        if hasattr(y, "__array_namespace__") and not backend.is_host_array(y):
            return y  # a device array holds numbers: class indices (or one-hot rows)
        n_out = self.layer_sizes[-1]
        k = 2 if n_out == 1 else n_out
        learn = learn and self.optimizer is None  # a model trained on indices keeps to them
        y = np.asarray(y) if isinstance(y, (list, tuple)) else y
        if not learn and backend.is_host_array(y) and y.dtype.kind not in "biuf":
            raise TypeError(f"{where} must be numeric class indices 0..{k - 1} (the model knows no other labels), "
                            f"got dtype {y.dtype}")
        labels = host_labels(y, where)
        if labels.dtype.kind in "iuf" and not np.all(np.isfinite(labels)):
            return labels  # check_target says what is wrong
        # Numbers that are class indices, or fractions (soft targets, which the loss checks), stay as
        # they are; text, booleans and other whole numbers are labels.
        indices = labels.dtype.kind in "iuf" and (labels.size == 0 or not np.all(np.mod(labels, 1) == 0) or (
            labels.min() >= 0 and labels.max() < k))
        if labels.ndim != 1 or indices or (not learn and labels.dtype.kind in "iuf"):
            return labels
        if not learn:
            raise TypeError(f"{where} must be numeric class indices 0..{k - 1} (the model knows no other labels), "
                            f"got {labels.dtype}")
        pre = Preprocessor(task="classification")
        Y = pre.fit_target(labels, where)
        self._check_n_classes(len(pre.classes))
        self.preprocessor.task, self.classes = "classification", pre.classes
        return Y

    def predict_proba(self, X, batch_size=None):
        """Class probabilities (n_samples, n_classes), columns in the order of `classes`; a sigmoid
        model with one output gives two columns. X: as for `predict`."""
        if not self.is_classifier:
            raise ValueError(
                "predict_proba needs a classifier (a softmax or sigmoid output trained with a "
                f"cross-entropy loss); this model's output is {self._output.name!r} with loss {self.default_loss!r}"
            )
        P = self._batched_forward(self.check_input(self._inputs(X)), batch_size)
        if self._output.name == "sigmoid" and P.shape[1] == 1:
            xp = backend.get_namespace(P)
            P = xp.concat([1 - P, P], axis=1)
        return P

    def predict(self, X, batch_size=None):
        """Regression: the outputs. Classification: the class labels (n_samples,), the model's
        `classes` in their own type where it has them (a NumPy array), else indices on its device
        (multi-label sigmoid: 0/1 per output).

        X: (n_samples, n_features) raw inputs, or a DataFrame / pyarrow Table whose columns are
        found by name; the model's input pipeline (columns, imputation, one-hot, standardisation)
        is applied to either.
        """
        X = self.check_input(self._inputs(X))
        out = self._batched_forward(X, batch_size)
        xp = backend.get_namespace(out)
        if not self.is_classifier:
            return out
        if self._output.name == "softmax":
            labels = xp.argmax(out, axis=1)
        elif self._output.name == "sigmoid":
            labels = xp.astype(out > 0.5, xp.int64)
            labels = labels[:, 0] if labels.shape[1] == 1 else labels
        else:
            return out
        if self.classes is not None and labels.ndim == 1:
            return self.preprocessor.decode(backend.to_numpy(labels))
        return labels

    def _batched_forward(self, X, batch_size):
        if batch_size is not None:  # checked before use: "2" or 2.5 must not pass as "large enough"
            batch_size = validation.positive_int(batch_size, "batch_size")
        if batch_size is None or batch_size >= X.shape[0]:
            return self._forward(X)
        xp = backend.get_namespace(X)
        n = X.shape[0]  # the standard forbids slicing past the end
        parts = [self._forward(X[i : min(i + batch_size, n), :]) for i in range(0, n, batch_size)]
        return xp.concat(parts, axis=0)

    def evaluate(self, X, y, loss=None, sample_weight=None) -> dict:
        """{"loss": ..., and the task's metrics}: accuracy for classification; mse, mae, r2 otherwise.

        X and y as for `predict` and `fit` (a raw table, labels). With `sample_weight` (n_samples,),
        the loss and the metrics are weighted means.
        """
        X, y = self._inputs(X), self._targets(y, loss=loss)
        head = self.head(loss)
        X = self.check_input(X)
        Y = self.check_target(y, X.shape[0], head)
        weights = self.check_weights(sample_weight, X.shape[0])
        return self.evaluate_checked(X, Y, head, weights)

    def score(self, X, y, sample_weight=None) -> float:
        """scikit-learn's estimator score: a classifier's mean accuracy (of `predict` against the
        labels), a regressor's R^2 (uniform average over the outputs, as `r2_score`); weighted means
        with `sample_weight` (n_samples,). X, y raw, as for `predict` and `fit`."""
        return inspection.score(self, X, y, sample_weight)

    def summary(self) -> str:
        """The layers (output shapes, parameter counts), the input pipeline and the training
        options, as text: `print(model.summary())`. `nn_xp.inspection.facts(model)` gives the same
        as a dict."""
        return inspection.summary(self)

    def state_dict(self) -> dict:
        """Everything a model file holds, as JSON-ready values and host (NumPy) arrays.

        {"architecture", "dtype", "seed", "dropout_key", "params": [arrays], "buffers": [arrays], "preprocessing",
        "loss", "l2", "schema": {feature_names, target, classes, split}, "optimizer":
        optimizer.state_dict() plus its label and learning rates, or None,
        "history": History.state_dict() or None, "rng": the host generator's state}.
        """
        optimizer = None
        if self.optimizer is not None:
            opt = self.optimizer
            optimizer = dict(opt.state_dict(), label=getattr(opt, "label", None) or opt.name,
                             learning_rate=float(opt.learning_rate),
                             initial_learning_rate=float(getattr(opt, "initial_learning_rate", opt.learning_rate)))
        seed = self.seed if isinstance(self.seed, numbers.Integral) and not isinstance(self.seed, bool) else None
        return {
            "architecture": self.architecture(),
            "dtype": self.dtype,
            "seed": seed,
            "dropout_key": list(self.dropout_key),
            "params": [backend.to_numpy(p).astype(self.dtype, copy=False) for p in self._store.params],
            "buffers": [backend.to_numpy(b).astype(self.dtype, copy=False) for b in self._store.buffers],
            "preprocessing": self.preprocessing,
            "loss": self.loss,
            "l2": self.l2,
            "schema": {"feature_names": self.feature_names, "target": self.target, "classes": self.classes,
                       "split": self.split},
            "optimizer": optimizer,
            "history": None if self.history is None else self.history.state_dict(),
            "loss_scaler": None if self.loss_scaler is None else self.loss_scaler.state_dict(),
            "rng": self.rng.bit_generator.state,
        }

    @classmethod
    def from_architecture(cls, architecture: dict, dtype: str, device: str = "cpu", params=None):
        """A new model with the given architecture (as `architecture()` gives it), weights from seed 0.

        params: None, or the host arrays [W1, b1, ...] to start from instead: no weights are drawn,
            and arrays whose shapes differ from the layers' raise ValueError before any allocation.
        """
        return _with_params(Sequential, params, [from_spec(spec) for spec in architecture["layers"]],
                            output_activation=architecture["output_activation"], dtype=dtype, device=device, seed=0)

    @classmethod
    def from_state_dict(cls, state: dict, device=None):
        """The model a `state_dict()` describes, on `device` (None: the default device).

        Raises ValueError (or TypeError) on a state that does not fit together; nothing is kept then.
        """
        return cls._from_state(state, device, _Handover(np.asarray(p) for p in state["params"]))

    @classmethod
    def _from_state(cls, state: dict, device, params: _Handover):
        """`from_state_dict` with the parameters given apart, handed over: a caller that gives the
        only references frees each array in turn as the model packs it."""
        device = backend.resolve_device("auto" if device is None else device)
        # Built around the stored arrays: no random weights are drawn only to be overwritten.
        model = cls.from_architecture(state["architecture"], state["dtype"], "cpu", params=params)
        del params
        if state.get("buffers") is not None:  # files written before buffers hold none: initial ones
            model.set_buffers([np.asarray(b) for b in state["buffers"]])
        model.seed = state.get("seed")
        if state.get("dropout_key") is not None:
            model.dropout_key = tuple(int(k) for k in state["dropout_key"])
        rng = state.get("rng")
        if rng is not None:
            model.rng = rng if isinstance(rng, np.random.Generator) else _generator(rng)
        if state.get("loss") is not None:
            model.loss = check_loss(state["loss"], model.output_activation)
        model.l2 = validation.Real(0.0)(state.get("l2") or 0.0, "l2")
        schema = state.get("schema") or {}
        model.split = schema.get("split")
        model.preprocessor = Preprocessor.from_dict(
            state.get("preprocessing"), feature_names=schema.get("feature_names"), classes=schema.get("classes"),
            target=schema.get("target"))
        widths = model.preprocessor.feature_names_out
        if widths is not None and len(widths) != model.layer_sizes[0]:
            raise ValueError(f"the schema names {len(widths)} features for {model.layer_sizes[0]} inputs")
        if model.classes is not None and len(model.classes) not in (model.layer_sizes[-1], 2):
            raise ValueError(f"the schema names {len(model.classes)} classes for {model.layer_sizes[-1]} outputs")
        saved = state.get("optimizer")
        if saved is not None:
            # The class default first: a schedule may have left the saved rate at 0, which the
            # constructor refuses but the restored optimizer may hold.
            optimizer = get_optimizer(saved["name"], model.parameters())
            optimizer.load_state_dict({key: saved[key] for key in ("name", "hyperparameters", "step_count", "state",
                                                                   "scalars") if key in saved})
            if saved.get("learning_rate") is not None:
                optimizer.learning_rate = saved["learning_rate"]
            optimizer.label = saved.get("label") or saved["name"]
            if isinstance(saved.get("initial_learning_rate"), (int, float)):
                optimizer.initial_learning_rate = float(saved["initial_learning_rate"])
            model.optimizer = optimizer
        if state.get("history") is not None:
            model.history = History.from_state_dict(state["history"])
        if state.get("loss_scaler") is not None:
            model.loss_scaler = LossScaler.from_state_dict(state["loss_scaler"])
        # Already on the host: moving there again would pack a second copy of the parameters.
        return model if device == model.device else model.to(device)

    def save(self, path):
        """Write the model (and optimizer state and history) to one .npz file, atomically."""
        return persistence.save(self, path)

    def to_onnx(self, path, opset=None):
        """Write an ONNX graph of the model's predictions to `path` (the `onnx` extra); returns the
        onnx.ModelProto. Classifiers output "probabilities" and "label", regressors "predictions";
        see `nn_xp.io.onnx_export`. opset: None for onnx_export.DEFAULT_OPSET."""
        return onnx_export.export(self, path, opset=opset)


def _fit_signature():
    """`Sequential.fit`'s signature as `help()` shows it: training.fit's, with self for the model and
    the input pipeline's options."""
    signature = inspect.signature(training.fit)
    parameters = list(signature.parameters.values())
    parameters[0] = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    own = inspect.signature(Sequential.fit).parameters
    pipeline = [own[name] for name in ("columns", "drop", "impute", "one_hot", "standardize", "preprocessor")]
    pipeline = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in pipeline]
    return signature.replace(parameters=parameters[:3] + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                                                          for p in parameters[3:]] + pipeline)


Sequential.fit.__signature__ = _fit_signature()
Sequential.fit.__doc__ = Sequential.fit.__doc__ + "\n" + training.fit.__doc__


def _generator(state: dict) -> np.random.Generator:
    """A NumPy Generator in a saved bit-generator state."""
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)
