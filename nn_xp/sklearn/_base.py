"""The shared estimator: parameters, their checks, `fit`, prediction, pickling and scikit-learn's layout."""

from __future__ import annotations

import functools

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.metrics import check_scoring
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_array, check_is_fitted, validate_data

from ..backends import (
    get_namespace,
    is_host,
    is_sparse,
    resolve_device,
    to_device,
    to_numpy,
)
from ..nn.layers import Dense
from ._array_api import (
    check_same_space,
    dispatching,
    host_work,
    input_space,
    reference,
    space_of,
    to_host,
    to_space,
    training_device,
)
from ._callbacks import CallbackSupportMixin, FitTasks, with_callbacks
from ._fitting import _Fitting
from ._params import fit_settings
from ._pickling import _model_from_state, _model_state

_PREDICT_CHUNK = 65536  # rows per forward pass at prediction time: bounds device memory
_FLOATS = (np.float64, np.float32)  # what X is validated to, as scikit-learn's MLP
_SPARSE = ("csr", "csc")  # scipy.sparse X, as scikit-learn's MLP takes it: the first layer multiplies it


def _host(data):
    """CuPy (and other Array API) arrays to NumPy: inputs are validated on the host, as any other."""
    data = to_host(data) if dispatching() else data
    return data if is_host(data) else to_numpy(data)


def follows_input(method):
    """A prediction method under scikit-learn's array API dispatch: X checked against fit's
    namespace and device, the work done on the host as without dispatch, the result in X's space."""
    name = method.__name__

    @functools.wraps(method)
    def wrapper(self, X, *args, **kwargs):
        if not dispatching():
            return method(self, X, *args, **kwargs)
        check_is_fitted(self)
        check_same_space(self, X, name)
        space, X = input_space(X), _host(X)  # to NumPy while dispatch is on: every namespace's arrays
        with host_work():
            result = method(self, X, *args, **kwargs)
        return to_space(result, space)

    return wrapper


# ---- the shared estimator ---------------------------------------------------------------------
class _BaseMLP(_Fitting, CallbackSupportMixin, BaseEstimator):
    """What MLPClassifier and MLPRegressor share: parameters, fit, prediction and the layout (the
    training loops come from `_Fitting`)."""

    # An empty array in fit's X namespace and on its device under array API dispatch; None: NumPy.
    _fit_reference = None

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.array_api_support = True
        return tags

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        device="auto",
        dtype=None,
        scoring=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.device = device
        self.dtype = dtype
        self.scoring = scoring

    # -- checks --
    def _check_params(self) -> dict:
        """Every constructor parameter checked, with the derived settings; raises before any work."""
        return fit_settings(self)

    # -- fitting --
    @with_callbacks
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None, sample_weight_val=None):
        """Train on (X, y) for up to `max_iter` epochs (scikit-learn's stopping rule).

        Args:
            X: (n_samples, n_features). y: (n_samples,) or (n_samples, n_outputs).
            sample_weight: (n_samples,) or None: each batch's loss is the weighted mean, and its L2
                term is divided by the batch's total weight, as in scikit-learn.
            X_val, y_val: a validation set of your own, as HistGradientBoosting's fit takes it. With
                `early_stopping=True` it replaces the `validation_fraction` split (all of X trains);
                without, its score is only recorded in `validation_scores_` (and its loss in
                `validation_loss_curve_`) after every epoch (every L-BFGS iteration for "lbfgs").
                Scored by `scoring` (None: the estimator's `score`).
            sample_weight_val: (n_val_samples,) or None: weights of the validation rows.
        Returns:
            self.

        Callbacks set with `set_callbacks` (scikit-learn's `sklearn.callback`) see one fit task with
        one subtask per epoch, or per L-BFGS iteration.
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight,
                         validation=(X_val, y_val, sample_weight_val))

    def _fit(self, X, y, incremental, sample_weight=None, validation=(None, None, None)):
        settings = self._check_params()
        settings["device"] = self.device
        if not dispatching():
            return self._fit_host(X, y, incremental, settings, sample_weight, validation)
        # scikit-learn's array API dispatch: train on X's device; attributes in X's namespace.
        device = training_device(X)
        if self.device != "auto" and resolve_device(self.device) != device:
            raise ValueError(
                f"device={self.device!r} but X lives on nn_xp's device {device!r}: with array_api_dispatch "
                "the network trains where X is; leave device='auto' or move X there"
            )
        refitted = getattr(self, "model_", None) is not None and (settings["warm_start"] or incremental)
        if refitted:
            check_same_space(self, X, "partial_fit" if incremental else "fit")
        settings["device"] = device
        space = input_space(X)
        X, y, sample_weight = _host(X), _host(y), _host(sample_weight)
        validation = tuple(_host(part) for part in validation)
        with host_work():
            self._fit_host(X, y, incremental, settings, sample_weight, validation)
        self._fit_reference = reference(space)
        return self

    def _fit_host(self, X, y, incremental, settings, sample_weight, validation):
        """fit on host data (NumPy, sparse, DataFrames, lists; CuPy and array-api-strict arrays are
        copied to NumPy), the network on settings["device"]."""
        if incremental and settings["early_stopping"]:
            raise ValueError("partial_fit does not support early_stopping=True")
        X_val, y_val, sample_weight_val = validation
        if (X_val is None) != (y_val is None):
            given, missing = ("X_val", "y_val") if y_val is None else ("y_val", "X_val")
            raise ValueError(f"{given} was given without {missing}: a validation set needs both X_val and y_val")
        if sample_weight_val is not None and X_val is None:
            raise ValueError("sample_weight_val was given without X_val and y_val")
        scorer = self._check_scoring()
        first_pass = getattr(self, "model_", None) is None or not (settings["warm_start"] or incremental)
        dtype = settings["dtype"]
        if dtype is None:  # scikit-learn's rule: float32 input in float32, anything else in float64
            fitted = None if first_pass else self.model_.dtype
            X_dtype = getattr(_host(X), "dtype", None)
            dtype = np.dtype(fitted or (np.float32 if X_dtype == np.float32 else np.float64))
        X, Y = self._validate_input(X, y, dtype, incremental, reset=first_pass)
        settings["dtype"] = dtype
        if sample_weight is not None:
            sample_weight = _check_sample_weight(_host(sample_weight), X, dtype=np.float64)
        given_weight = sample_weight
        sample_weight = self._class_sample_weight(Y, sample_weight)
        val = None
        if X_val is not None:
            val = self._check_validation_set(X, Y, X_val, y_val, sample_weight_val, dtype)
        layer_sizes = [X.shape[1], *settings["hidden"], Y.shape[1]]
        random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(layer_sizes, settings, random_state)
        elif list(self.model_.layer_sizes) != layer_sizes:
            raise ValueError(
                f"the fitted network has layer sizes {list(self.model_.layer_sizes)} but this call needs "
                f"{layer_sizes}: with warm_start or partial_fit, hidden_layer_sizes and the number of "
                "outputs must stay the same"
            )
        lbfgs = settings["solver"] == "lbfgs"
        tasks = None
        if not incremental:  # partial_fit is one step of the caller's loop, not a fit task
            # L-BFGS: a subtask even with max_iter=0, and the empty one left when scipy returns.
            tasks = FitTasks(self, X, self._labels(Y), given_weight,
                             max_subtasks=settings["max_iter"] + 1 if lbfgs else settings["max_iter"],
                             subtask_name="lbfgs-iter" if lbfgs else "epoch")
        if val is not None:
            val["scorer"] = scorer
        if lbfgs:
            self._train_lbfgs(X, Y, settings, sample_weight, tasks, val)
        else:
            if not hasattr(self, "loss_curve_"):  # a warm start after solver="lbfgs"
                self._initialize_stochastic(settings)
            optimizer = self._prepare_optimizer(settings, incremental)
            self._train(X, Y, settings, optimizer, random_state, incremental, sample_weight, tasks, val, scorer)
        self._describe_model()
        if first_pass:
            self._fit_reference = None  # NumPy; a fit under dispatch sets X's namespace and device
        if tasks is not None:
            tasks.close()
        return self

    def _check_scoring(self):
        """The scorer named by `scoring` (None: the estimator's own score, computed directly)."""
        scoring = self.scoring
        if scoring is None:
            return None
        if not (isinstance(scoring, str) or callable(scoring)):
            raise ValueError(f"scoring must be None, a scikit-learn scorer name or a callable scorer, got {scoring!r}")
        try:
            return check_scoring(self, scoring=scoring)
        except (ValueError, TypeError) as error:
            raise ValueError(f"scoring={scoring!r} is not a scorer: {error}") from None

    def _check_validation_set(self, X, Y, X_val, y_val, sample_weight_val, dtype) -> dict:
        """X_val, y_val and sample_weight_val checked against the training data, before any training."""
        X_val = _host(X_val)
        width = check_array(X_val, accept_sparse=_SPARSE, dtype=None, ensure_all_finite=False,
                            input_name="X_val").shape[1]
        if width != X.shape[1]:
            raise ValueError(f"X_val has {width} features, but X has {X.shape[1]}: they must have the same columns")
        X_val = validate_data(self, X_val, reset=False, dtype=_FLOATS, accept_sparse=_SPARSE).astype(dtype, copy=False)
        Y_val = self._validation_targets(_host(y_val), Y, dtype)
        if Y_val.shape[0] != X_val.shape[0]:
            raise ValueError(f"X_val has {X_val.shape[0]} rows but y_val has {Y_val.shape[0]}")
        W_val = None
        if sample_weight_val is not None:
            W_val = _check_sample_weight(_host(sample_weight_val), X_val, dtype=np.float64)
        W_val = self._class_sample_weight(Y_val, W_val)
        return {"X": X_val, "Y": Y_val, "W": W_val}

    def _describe_model(self):
        """What the data meant, on the nn_xp model too, so that `model_.predict` (and a saved
        `model_`) give the labels themselves and find a DataFrame's columns by name."""
        names = getattr(self, "feature_names_in_", None)
        self.model_.feature_names = None if names is None else [str(n) for n in names]

    def _class_sample_weight(self, Y, sample_weight):
        """sample_weight, times the class weights where the estimator has them (MLPClassifier)."""
        return sample_weight

    def _loss_spec(self):
        """The nn_xp loss (heads.py) the network trains with; None: the output activation's own."""
        return None

    def _copy_params(self):
        params = self.model_.parameters()
        xp = get_namespace(*params)
        return [xp.asarray(p, copy=True) for p in params]

    # -- prediction --
    def _forward(self, X):
        """Output activations (n_samples, n_outputs) as a NumPy array, for validated X."""
        model = self.model_
        parts = []
        for start in range(0, X.shape[0], _PREDICT_CHUNK):
            chunk = X[start : start + _PREDICT_CHUNK].astype(model.dtype, copy=False)
            parts.append(to_numpy(model.forward(chunk if is_sparse(chunk) else to_device(chunk, model.device))))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _output(self, X):
        """The network's output for new X, in X's float dtype (float64 unless X is float32), as scikit-learn."""
        check_is_fitted(self)
        X = validate_data(self, _host(X), reset=False, dtype=_FLOATS, accept_sparse=_SPARSE)
        return self._forward(X).astype(X.dtype, copy=False)

    def _host_score(self, score, X, y, sample_weight):
        """The mixin's `score` (accuracy, R^2); under array API dispatch on NumPy copies, so that it
        is the same float wherever X lives (scikit-learn's metrics need float64, which some
        devices lack)."""
        if not dispatching():
            return score(X, y, sample_weight=sample_weight)
        check_is_fitted(self)
        check_same_space(self, X, "score")
        X, y, sample_weight = _host(X), _host(y), _host(sample_weight)
        with host_work():
            return float(score(X, y, sample_weight=sample_weight))

    # -- pickling: the network as plain arrays, not nn_xp's internal objects --
    def __getstate__(self):
        state = dict(super().__getstate__())
        if state.get("model_") is not None:
            state["model_"] = _model_state(state["model_"])
            if state.get("_best_params") is not None:
                state["_best_params"] = [to_numpy(p) for p in state["_best_params"]]
        return state

    def __setstate__(self, state):
        state = dict(state)
        if isinstance(state.get("model_"), dict):
            state["model_"] = _model_from_state(state["model_"])
            if state.get("_best_params") is not None:
                model = state["model_"]
                state["_best_params"] = [to_device(p, model.device) for p in state["_best_params"]]
        super().__setstate__(state)

    # -- sklearn's layout --
    def _in_fit_space(self, arrays: list) -> list:
        """Host arrays in fit's namespace and device (fit under array API dispatch), else NumPy."""
        reference_array = self.__dict__.get("_fit_reference")
        if reference_array is None:
            return arrays
        space = space_of(reference_array)
        return [to_space(a, space) for a in arrays]

    @property
    def coefs_(self) -> list:
        """Weight matrices in scikit-learn's layout: coefs_[i] is (n_in, n_out) = W_i.T (copies, in
        the namespace and on the device of fit's X under array API dispatch; NumPy otherwise)."""
        return self._in_fit_space([np.ascontiguousarray(to_numpy(W).T) for W in self._fitted_params("W")])

    @coefs_.setter
    def coefs_(self, coefs) -> None:
        self._set_params_from_host(coefs, "W", transpose=True)

    @property
    def intercepts_(self) -> list:
        """Bias vectors, intercepts_[i] of shape (n_out,) (copies, in fit's space as coefs_)."""
        return self._in_fit_space([to_numpy(b) for b in self._fitted_params("b")])

    @intercepts_.setter
    def intercepts_(self, intercepts) -> None:
        self._set_params_from_host(intercepts, "b", transpose=False)

    def _fitted_params(self, name: str) -> list:
        """The parameter `name` ("W" or "b") of each Dense layer, by name, in layer order."""
        model = self.__dict__.get("model_")
        if model is None:
            raise AttributeError(f"this {type(self).__name__} is not fitted yet")
        return [layer.get_param(name) for layer in model.layers if isinstance(layer, Dense)]

    def _set_params_from_host(self, arrays, name, transpose):
        targets = self._fitted_params(name)
        arrays = list(arrays)
        if len(arrays) != len(targets):
            raise ValueError(f"expected {len(targets)} arrays, got {len(arrays)}")
        for index, (array, target) in enumerate(zip(arrays, targets)):
            array = np.asarray(to_host(array))
            array = array.T if transpose else array
            if array.shape != tuple(target.shape):
                expected = tuple(target.shape)[::-1] if transpose else tuple(target.shape)
                given = np.asarray(to_host(arrays[index])).shape
                raise ValueError(f"array {index} must have shape {expected}, got {given}")
            target[...] = to_device(np.ascontiguousarray(array, dtype=self.model_.dtype), self.model_.device)

