"""`MLPRegressor`: scikit-learn's MLPRegressor, trained by nn_xp."""

from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_array, column_or_1d, validate_data

from ._base import _FLOATS, _SPARSE, _BaseMLP, _host, follows_input
from ._params import REGRESSOR_PARAMETERS, check_estimator_params


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's MLPRegressor, trained by nn_xp.

    loss="squared_error": linear output, scikit-learn's squared error (see the module docstring for
    the factor of 1/2). loss="poisson": exp output (log link), scikit-learn's half Poisson deviance
    summed over outputs and averaged over samples (nn_xp's "poisson" averaged over all elements, times
    n_outputs). loss="absolute_error" (|y - y_hat|), "huber" (torch.nn.HuberLoss with
    delta=`huber_delta` > 0) and "quantile" (the pinball loss of `quantile` in (0, 1), scikit-learn's
    PinballLoss: the predictions estimate that conditional quantile): linear output, the loss summed
    over outputs and averaged over samples, as for "poisson". Parameters and attributes as in
    `sklearn.neural_network.MLPRegressor`, plus `quantile`, `huber_delta`, `device` ("auto", "cpu"
    or "numpy", "cuda[:N]" or "cupy[:N]", "torch:cpu", "torch:cuda[:N]", "torch:mps", "jax:cpu",
    "jax:gpu[:N]") and `dtype`.
    """

    def __init__(
        self,
        loss="squared_error",
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
        quantile=0.5,
        huber_delta=1.0,
    ):
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose, warm_start=warm_start,
            momentum=momentum, nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
            n_iter_no_change=n_iter_no_change, max_fun=max_fun, device=device, dtype=dtype, scoring=scoring,
        )
        self.loss = loss
        self.quantile = quantile
        self.huber_delta = huber_delta

    def _check_params(self) -> dict:
        check_estimator_params(self, REGRESSOR_PARAMETERS)
        return super()._check_params()

    def _loss_spec(self):
        if self.loss == "huber":
            return {"name": "huber", "delta": float(self.huber_delta)}
        if self.loss == "quantile":
            return {"name": "quantile", "quantile": float(self.quantile)}
        return {"squared_error": "mse"}.get(self.loss, self.loss)

    def _output_activation(self) -> str:
        return "exp" if self.loss == "poisson" else "linear"

    def _gradient_scale(self) -> float:
        if self.loss != "squared_error":  # nn_xp averages over outputs too, scikit-learn sums over them
            return float(self.n_outputs_)
        # nn_xp's mse: gradient 2 (A - Y) / (n k); scikit-learn steps along (A - Y) / n.
        return self.n_outputs_ / 2.0

    def _loss_scale(self) -> float:
        return 0.5 if self.loss == "squared_error" else float(self.n_outputs_)

    def _stratify(self) -> bool:
        return False

    def _validate_input(self, X, y, dtype, incremental, reset):
        X, y = _host(X), _host(y)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=_FLOATS, reset=reset,
                             accept_sparse=_SPARSE)
        X = X.astype(dtype, copy=False)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        return X, np.ascontiguousarray(Y, dtype=dtype)

    def _labels(self, Y):
        return Y.ravel() if Y.shape[1] == 1 else Y

    def _validation_targets(self, y_val, Y, dtype):
        y_val = check_array(y_val, ensure_2d=False, dtype=_FLOATS, input_name="y_val")
        if y_val.ndim == 2 and y_val.shape[1] == 1:
            y_val = column_or_1d(y_val, warn=True)
        Y_val = y_val.reshape(-1, 1) if y_val.ndim == 1 else y_val
        if Y_val.shape[1] != Y.shape[1]:
            raise ValueError(f"y_val has {Y_val.shape[1]} outputs, but y has {Y.shape[1]}")
        return np.ascontiguousarray(Y_val, dtype=dtype)

    def _check_solver(self):
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is not stochastic."
            )
        return True

    # scikit-learn's MLPRegressor tests the bound method itself, not its result, so partial_fit
    # stays available with solver="lbfgs" (and runs a whole L-BFGS fit from the current weights).
    @available_if(lambda estimator: estimator._check_solver)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state."""
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    @follows_input
    def predict(self, X):
        """Predictions (n_samples,), or (n_samples, n_outputs) for several targets."""
        output = self._output(X)
        return output.ravel() if output.shape[1] == 1 else output

    def score(self, X, y, sample_weight=None) -> float:
        """R^2 of predict(X) against y (weighted by sample_weight), as a Python float."""
        return self._host_score(super().score, X, y, sample_weight)

    def _score_output(self, output, Y, sample_weight=None) -> float:
        if Y.shape[1] == 1:
            output, Y = output.ravel(), Y.ravel()
        return r2_score(Y, output, sample_weight=sample_weight)

    def _data_loss(self, output, Y) -> float:
        """scikit-learn's squared error, 0.5 * mean((y - y_hat)^2), its half Poisson deviance, or the
        absolute error, Huber or pinball loss summed over outputs, averaged over samples."""
        output = output.astype(np.float64)
        if self.loss == "poisson":
            Y = Y.astype(np.float64)
            logs = np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1.0) / output), 0.0)
            return float(np.sum(np.mean(logs - Y + output, axis=0)))
        D = output - Y
        if self.loss == "absolute_error":
            return float(np.sum(np.mean(np.abs(D), axis=0)))
        if self.loss == "huber":
            delta = float(self.huber_delta)
            elements = np.where(np.abs(D) <= delta, 0.5 * D * D, delta * (np.abs(D) - 0.5 * delta))
            return float(np.sum(np.mean(elements, axis=0)))
        if self.loss == "quantile":
            q = float(self.quantile)
            return float(np.sum(np.mean(np.maximum(-q * D, (1 - q) * D), axis=0)))
        return float(0.5 * np.mean(D * D))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
