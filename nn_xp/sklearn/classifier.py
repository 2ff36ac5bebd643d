"""`MLPClassifier`: scikit-learn's MLPClassifier, trained by nn_xp."""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_array, column_or_1d, validate_data

from ._array_api import dispatching, to_host
from ._base import _FLOATS, _SPARSE, _BaseMLP, _host, follows_input
from ._params import CLASSIFIER_PARAMETERS, check_estimator_params


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's MLPClassifier, trained by nn_xp.

    Softmax output with cross-entropy for multiclass targets; one sigmoid output with binary
    cross-entropy for two classes; one sigmoid per label for multi-label indicator targets.
    Parameters and attributes as in `sklearn.neural_network.MLPClassifier` (see the module docstring
    for the differences), plus `device` ("auto", "cpu" or "numpy", "cuda[:N]" or "cupy[:N]",
    "torch:cpu", "torch:cuda[:N]", "torch:mps", "jax:cpu", "jax:gpu[:N]") and `dtype`, and
    `label_smoothing` in [0, 1) (torch.nn.CrossEntropyLoss's): the multiclass cross-entropy is taken
    against (1 - label_smoothing) * one-hot + label_smoothing / n_classes, in `loss_` and
    `loss_curve_` too; binary and multi-label targets (sigmoid outputs) refuse it.
    """

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
        class_weight=None,
        scoring=None,
        label_smoothing=0.0,
    ):
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init, power_t=power_t,
            max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1,
            beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun, device=device,
            dtype=dtype, scoring=scoring,
        )
        self.class_weight = class_weight
        self.label_smoothing = label_smoothing

    def _check_params(self) -> dict:
        check_estimator_params(self, CLASSIFIER_PARAMETERS)
        return super()._check_params()

    def _loss_spec(self):
        if not self.label_smoothing:
            return None
        if self._output_activation() != "softmax":
            raise ValueError(
                f"label_smoothing={self.label_smoothing!r} needs a multiclass target (a softmax output with "
                "cross-entropy); this y is binary or multi-label (sigmoid outputs): set label_smoothing=0.0"
            )
        return {"name": "cross_entropy", "label_smoothing": float(self.label_smoothing)}

    def _class_sample_weight(self, Y, sample_weight):
        """sample_weight times class_weight's weight of each sample's class (scikit-learn's
        compute_sample_weight: a dict {label: weight} or "balanced")."""
        if self.class_weight is None:
            return sample_weight
        labels = self._label_binarizer.inverse_transform(Y)
        weights = compute_sample_weight(self.class_weight, labels)
        return weights if sample_weight is None else sample_weight * weights

    def _output_activation(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "sigmoid"

    def _gradient_scale(self) -> float:
        # binary cross-entropy: nn_xp averages over outputs too, scikit-learn sums over them.
        return 1.0 if self.out_activation_ == "softmax" else float(self.n_outputs_)

    def _loss_scale(self) -> float:
        return self._gradient_scale()

    def _stratify(self) -> bool:
        return self.n_outputs_ == 1  # as scikit-learn: binary targets only

    def _validate_input(self, X, y, dtype, incremental, reset):
        X, y = _host(X), _host(y)
        X, y = validate_data(self, X, y, multi_output=True, dtype=_FLOATS, reset=reset, accept_sparse=_SPARSE)
        X = X.astype(dtype, copy=False)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if not hasattr(self, "classes_") or not (self.warm_start or incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the previous "
                        f"call to fit. Previously got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        Y = self._label_binarizer.transform(y).astype(dtype)
        return X, Y

    def _labels(self, Y):
        """The labels behind binarized targets, as a scorer compares them with predict's."""
        return self._label_binarizer.inverse_transform(Y.ravel() if self.n_outputs_ == 1 else Y)

    def _validation_targets(self, y_val, Y, dtype):
        y_val = check_array(y_val, ensure_2d=False, dtype=None, input_name="y_val")
        if y_val.ndim == 2 and y_val.shape[1] == 1:
            y_val = column_or_1d(y_val, warn=True)
        if (y_val.ndim == 2) != (self._label_binarizer.y_type_ == "multilabel-indicator"):
            raise ValueError(f"y_val is {type_of_target(y_val)} but y is {self._label_binarizer.y_type_}")
        unseen = np.setdiff1d(unique_labels(y_val), self.classes_)
        if len(unseen):
            raise ValueError(f"y_val has classes {list(unseen)} that y does not have ({list(self.classes_)})")
        return self._label_binarizer.transform(y_val).astype(dtype)

    def _describe_model(self):
        super()._describe_model()
        if getattr(self._label_binarizer, "y_type_", None) != "multilabel-indicator":
            self.model_.classes = [c.item() if hasattr(c, "item") else c for c in self.classes_]

    def _check_solver(self):
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is not stochastic."
            )
        return True

    @available_if(lambda estimator: estimator._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state.

        Args:
            X: (n_samples, n_features). y: (n_samples,) labels, or a multi-label indicator matrix.
            sample_weight: (n_samples,) or None.
            classes: every class that can appear, required on the first call (np.unique(y_all)).
        Returns:
            self.
        """
        if dispatching():  # labels are read on the host, whatever X's namespace
            y, classes = to_host(y), to_host(classes)
        first_call = getattr(self, "classes_", None) is None
        if first_call and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if not first_call and classes is not None and not np.array_equal(self.classes_, unique_labels(classes)):
            raise ValueError(
                f"`classes={classes!r}` is not the same as on last call to partial_fit, was: {self.classes_!r}"
            )
        if first_call:
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
            self.classes_ = self._label_binarizer.classes_
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    @follows_input
    def predict(self, X):
        """Class labels (n_samples,), or a 0/1 indicator matrix (n_samples, n_classes) for multi-label."""
        output = self._output(X)
        if self.n_outputs_ == 1:
            output = output.ravel()
        return self._label_binarizer.inverse_transform(output)

    @follows_input
    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in the order of `classes_`."""
        output = self._output(X)
        if self.n_outputs_ == 1:
            output = output.ravel()
            return np.vstack([1 - output, output]).T
        return output

    @follows_input
    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        return np.log(self.predict_proba(X))

    def score(self, X, y, sample_weight=None) -> float:
        """Mean accuracy of predict(X) against y (weighted by sample_weight), as a Python float."""
        return self._host_score(super().score, X, y, sample_weight)

    def _score_output(self, output, Y, sample_weight=None) -> float:
        if self.n_outputs_ == 1:
            output = output.ravel()
            Y = Y.ravel()
        binarizer = self._label_binarizer
        return accuracy_score(binarizer.inverse_transform(Y), binarizer.inverse_transform(output),
                              sample_weight=sample_weight)

    def _data_loss(self, output, Y) -> float:
        """scikit-learn's log-loss (probabilities clipped to [eps, 1 - eps]), against the smoothed
        labels where label_smoothing is set."""
        eps = np.finfo(output.dtype).eps
        P = np.clip(output.astype(np.float64), eps, 1 - eps)
        Y = Y.astype(np.float64)
        if self.out_activation_ == "softmax":
            if self.label_smoothing:
                Y = Y * (1 - self.label_smoothing) + self.label_smoothing / Y.shape[1]
            return float(-np.sum(Y * np.log(P)) / P.shape[0])
        return float(-np.sum(Y * np.log(P) + (1 - Y) * np.log(1 - P)) / P.shape[0])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

