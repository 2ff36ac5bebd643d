"""The fit loops the estimators share: the stochastic solvers' epochs ("sgd", "adam") and L-BFGS."""

from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import shuffle as shuffle_rows

from ..backends import (
    device_context,
    get_namespace,
    to_device,
    to_numpy,
)
from ..models.mlp import MLP
from ..training import Epoch, Interrupt, l2_penalty
from ._optimizers import _has_momentum, _set_learning_rate, _SklearnAdam, _SklearnObjective, _SklearnSGD

# scikit-learn's words for a fit that ends with non-finite weights.
NON_FINITE_MESSAGE = (
    "Solver produced non-finite parameter weights. The input data may contain large values and need to be "
    "preprocessed."
)


def _warn_lbfgs_not_converged(result, n_iter: int, max_iter: int) -> None:
    """scikit-learn's ConvergenceWarning for an L-BFGS run stopped by max_iter or max_fun, worded as
    sklearn.utils.optimize._check_optimize_result words scipy's result."""
    message = ("STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT" if result.reason == "max_iter"
               else "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT")
    text = f"lbfgs failed to converge after {n_iter} iteration(s) (status=1):\n{message}\n"
    if n_iter == max_iter:
        text += f"\nIncrease the number of iterations to improve the convergence (max_iter={max_iter})."
    text += ("\nYou might also want to scale the data as shown in:\n"
             "    https://scikit-learn.org/stable/modules/preprocessing.html")
    warnings.warn(text, ConvergenceWarning, stacklevel=4)


class _Fitting:
    """The training half of `_BaseMLP`: a new network, the optimizer, the epochs, L-BFGS."""

    def _initialize(self, layer_sizes, settings, random_state):
        """A new network with scikit-learn's initial weights, drawn from `random_state` in its order."""
        model = MLP(
            layer_sizes,
            activation=settings["activation"],
            output_activation=self._output_activation(),
            dtype=settings["dtype"],
            device=settings["device"],
            seed=0,  # unused: weights and every shuffle come from random_state below
        )
        factor = 2.0 if settings["activation"] == "sigmoid" else 6.0
        params = []
        for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]):
            bound = math.sqrt(factor / (fan_in + fan_out))
            coef = random_state.uniform(-bound, bound, (fan_in, fan_out))
            intercept = random_state.uniform(-bound, bound, fan_out)
            params += [np.ascontiguousarray(coef.T), intercept]
        _write_params(model, params)
        self.model_ = model
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = layer_sizes[-1]
        self.n_layers_ = len(layer_sizes)
        self.out_activation_ = {"softmax": "softmax", "sigmoid": "logistic", "exp": "exp"}.get(
            model.output_activation, "identity")
        self._learning_rate_init = None
        self._best_params = self._copy_params()
        if settings["solver"] != "lbfgs":  # as scikit-learn: L-BFGS keeps no loss curve nor stopping state
            self._initialize_stochastic(settings)

    def _initialize_stochastic(self, settings):
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if settings["early_stopping"]:
            self.validation_scores_ = []
            self.validation_loss_curve_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.validation_loss_curve_ = None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf

    def _prepare_optimizer(self, settings, incremental):
        """The model's optimizer, kept across warm starts and partial_fit, with this call's settings."""
        model = self.model_
        opt = model.optimizer
        solver = settings["solver"]
        momentum = settings["momentum"]
        if (
            not isinstance(opt, _SklearnObjective)  # none yet, or one fit made on model_ directly
            or opt.name != solver
            or (solver == "sgd" and _has_momentum(opt) != (momentum > 0))  # the state would not fit
        ):
            if solver == "adam":
                opt = _SklearnAdam(model.parameters(), settings["learning_rate_init"])
            else:
                opt = _SklearnSGD(model.parameters(), settings["learning_rate_init"])
            model.optimizer = opt  # fit keeps an optimizer object it is handed again
            self._learning_rate_init = None
        if solver == "adam":
            opt.beta1, opt.beta2 = settings["beta_1"], settings["beta_2"]
            opt.sklearn_epsilon = settings["epsilon"]
        else:
            opt.momentum = momentum
            opt.nesterov = settings["nesterovs_momentum"] and momentum > 0  # torch's rule
        opt.configure(self._gradient_scale())
        # The learning rate: constant, or scikit-learn's schedules for sgd. "adaptive" keeps its
        # reduced rate across warm starts and partial_fit unless learning_rate_init changed.
        schedule = settings["learning_rate"] if solver == "sgd" else "constant"
        initial = settings["learning_rate_init"]
        if schedule == "invscaling":
            _set_learning_rate(opt, initial / (self.t_ + 1) ** settings["power_t"])
        elif schedule == "constant" or self._learning_rate_init != initial:
            _set_learning_rate(opt, initial)
        self._learning_rate_init = initial
        return opt

    def _train(self, X, Y, settings, opt, random_state, incremental, sample_weight=None, tasks=None, val=None,
               scorer=None):
        model = self.model_
        early_stopping = settings["early_stopping"]
        if early_stopping and self.best_validation_score_ is None:  # switched on for a warm start
            self.best_validation_score_, self.best_loss_ = -np.inf, None
        elif not early_stopping and self.best_loss_ is None:  # switched off
            self.best_loss_ = np.inf
        if (early_stopping or val is not None) and self.validation_scores_ is None:
            self.validation_scores_, self.validation_loss_curve_ = [], []
        if early_stopping and val is None:
            # scikit-learn stratifies on its boolean indicator: the same split and the same words
            # ("Classes with too few members are: ['True']") when a class has one member.
            stratify = Y.astype(bool) if self._stratify() else None
            W_val = None
            if sample_weight is None:
                X, X_val, Y, Y_val = train_test_split(
                    X, Y, random_state=random_state, test_size=settings["validation_fraction"], stratify=stratify
                )
            else:
                X, X_val, Y, Y_val, sample_weight, W_val = train_test_split(
                    X, Y, sample_weight, random_state=random_state, test_size=settings["validation_fraction"],
                    stratify=stratify,
                )
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' or the size of your dataset."
                )
            val = {"X": X_val, "Y": Y_val, "W": W_val}
        if val is not None:
            val.update(device=model.check_input(val["X"]), scorer=scorer, early_stopping=early_stopping)
        n_samples = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                    stacklevel=4,
                )
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        # Everything is checked once here; each epoch then runs nn_xp's own epoch of batches.
        head = model.head(self._loss_spec())
        X_device = model.check_input(X)
        Y_device = model.check_target(Y, n_samples, head)
        runner = Epoch(model, X_device, Y_device, head, batch_size, l2=settings["alpha"] / self._gradient_scale(),
                       weights=model.check_weights(sample_weight, n_samples))
        model.loss = head.spec()
        loss_scale = self._loss_scale()
        sample_idx = np.arange(n_samples)
        if not incremental:
            self._no_improvement_count = 0
        self.n_iter_ = 0
        max_iter = 1 if incremental else settings["max_iter"]
        self._diverged = False
        with device_context(model.device), Interrupt() as interrupt:
            self._epochs(runner, val, settings, opt, random_state, incremental, sample_idx, loss_scale, max_iter,
                         interrupt, tasks)
        if early_stopping:
            _write_params(model, self._best_params)
        elif self._diverged:
            raise ValueError(NON_FINITE_MESSAGE)

    def _train_lbfgs(self, X, Y, settings, sample_weight=None, tasks=None, val=None):
        """scikit-learn's solver="lbfgs": one run of scipy's L-BFGS-B on the whole data, up to max_iter
        iterations and max_fun evaluations of scikit-learn's objective, stopping where
        max |gradient| <= tol. Callbacks see one subtask per iteration (scipy's `callback`); with a
        validation set of the user's own, its score is recorded after every iteration."""
        model = self.model_
        head = model.head(self._loss_spec())
        X_device = model.check_input(X)
        Y_device = model.check_target(Y, X.shape[0], head)
        scale = self._gradient_scale()
        weights = model.decayed()  # alpha's parameters, as the layers declare them (the weights)
        l2 = settings["alpha"] / scale
        W = model.check_weights(sample_weight, X.shape[0])
        n = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
        ops = None
        model.loss = head.spec()
        reported = {}  # objective value -> the loss as scikit-learn reports it, for each evaluation

        def objective():
            """scikit-learn's objective (consistent with its gradient) and its gradient; the loss as
            scikit-learn reports it goes to `reported`."""
            nonlocal ops
            L, grads, _ = model.train_step(X_device, Y_device, head, step=0, reuse=False, weights=W)
            if ops is None:
                from ..backends import ops_for

                ops = ops_for(get_namespace(X_device))
            penalty = float(l2_penalty(ops, model.parameters(), grads, weights, l2, n)) if l2 else 0.0
            grads = [g * scale for g in grads]
            value = (float(L) + penalty) * scale
            reported[value] = float(L) * self._loss_scale() + penalty * scale
            return value, grads

        # scikit-learn's own solver: scipy's L-BFGS-B on the flat float64 parameter vector, with its
        # memory (10 pairs), its gtol (tol), maxiter and maxfun (every evaluation of the fit counts)
        # and its stopping rules, so that a fit stops where scikit-learn's stops. The objective and
        # its gradient are nn_xp's backward pass on the model's device.
        from scipy.optimize import minimize
        from sklearn.utils.optimize import _check_optimize_result

        params = model.parameters()
        shapes = [tuple(p.shape) for p in params]
        sizes = [int(np.prod(shape)) for shape in shapes]
        xp = get_namespace(params[0])

        def assign(x):
            arrays, at = [], 0
            for shape, size in zip(shapes, sizes):
                arrays.append(np.asarray(x[at : at + size]).reshape(shape))
                at += size
            model.set_parameters(arrays)

        def value_and_gradient(x):
            assign(x)
            value, grads = objective()
            return value, np.concatenate([to_numpy(xp.reshape(g, (-1,))).astype(np.float64) for g in grads])

        if val is not None:  # scikit-learn's L-BFGS has no early stopping: the scores are only recorded
            val.update(device=model.check_input(val["X"]), early_stopping=False)
            self.validation_scores_, self.validation_loss_curve_ = [], []
            self.best_validation_score_ = None

        def iteration_done(xk):
            """scipy's callback after each iteration: the model at xk, scored, told to the callbacks.
            A callback's request to stop is not passed on: scipy's minimize honours it only from
            1.11 on, with its own status, as scikit-learn's LogisticRegression leaves it too."""
            assign(xk)
            if val is not None:
                self._update_validation(val, settings["tol"])
            if tasks is not None:
                tasks.end()
                tasks.begin()

        start = np.concatenate([to_numpy(xp.reshape(p, (-1,))).astype(np.float64) for p in params])
        track = tasks is not None or val is not None
        if tasks is not None:
            tasks.begin()
        with device_context(model.device), np.errstate(over="ignore", invalid="ignore"):
            result = minimize(value_and_gradient, start, method="L-BFGS-B", jac=True,
                              options={"maxfun": settings["max_fun"], "maxiter": settings["max_iter"],
                                       "gtol": settings["tol"]},
                              callback=iteration_done if track else None)
        if tasks is not None:
            tasks.end_empty()  # the iteration begun after the last one, which scipy did not run
        assign(result.x)
        self.n_iter_ = _check_optimize_result("lbfgs", result, settings["max_iter"])
        self.loss_ = reported.get(float(result.fun), math.nan)
        if not all(bool(np.all(np.isfinite(to_numpy(p)))) for p in model.parameters()):
            raise ValueError(NON_FINITE_MESSAGE)

    def _epochs(self, runner, val, settings, opt, random_state, incremental, sample_idx, loss_scale, max_iter,
                interrupt, tasks=None):
        model, early_stopping, n_samples = self.model_, settings["early_stopping"], runner.n
        for _ in range(max_iter):
            if tasks is not None:
                tasks.begin()
            order = None
            if settings["shuffle"]:
                sample_idx = shuffle_rows(sample_idx, random_state=random_state)
                order = to_device(sample_idx, model.device)
            with warnings.catch_warnings():  # nn_xp's own warning; scikit-learn's words follow
                warnings.filterwarnings("ignore", message=".*training stopped and the model was restored",
                                        category=RuntimeWarning)
                _, stop_reason = runner.guarded_run(self.n_iter_, order, interrupt, stacklevel=6)
            if stop_reason == "non-finite loss":  # the last good parameters are back
                self._record_divergence(settings, n_samples, max_iter, val is not None)
                if tasks is not None:
                    tasks.end_empty()
                break
            # scikit-learn's loss: its data loss, and the L2 term given alpha / gradient_scale rescaled.
            running = runner.running
            loss = running.data_loss * loss_scale + running.penalty * self._gradient_scale()
            self.n_iter_ += 1
            self.t_ += n_samples
            self.loss_ = loss
            self.loss_curve_.append(loss)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
            if interrupt.requested:
                warnings.warn("Training interrupted by user.", stacklevel=4)
                if tasks is not None:
                    tasks.end()
                break
            if val is not None:
                self._update_validation(val, settings["tol"])
            if not early_stopping:
                if loss > self.best_loss_ - settings["tol"]:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                self.best_loss_ = min(self.best_loss_, loss)
            if settings["solver"] == "sgd" and settings["learning_rate"] == "invscaling":
                _set_learning_rate(opt, settings["learning_rate_init"] / (self.t_ + 1) ** settings["power_t"])
            if tasks is not None and tasks.end():  # a callback asked to stop
                break
            if self._no_improvement_count > settings["n_iter_no_change"]:
                what = "Validation score" if early_stopping else "Training loss"
                message = (
                    f"{what} did not improve more than tol={settings['tol']:f} for "
                    f"{settings['n_iter_no_change']} consecutive epochs."
                )
                adaptive = settings["solver"] == "sgd" and settings["learning_rate"] == "adaptive"
                if not adaptive or opt.learning_rate <= 1e-6:
                    if self.verbose:
                        print(message + (" Learning rate too small." if adaptive else "") + " Stopping.")
                    break
                _set_learning_rate(opt, opt.learning_rate / 5.0)
                self._no_improvement_count = 0
                if self.verbose:
                    print(f"{message} Setting learning rate to {opt.learning_rate:f}")
            if incremental:
                break
            if self.n_iter_ == max_iter:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({max_iter}) reached and the "
                    "optimization hasn't converged yet.",
                    ConvergenceWarning,
                    stacklevel=4,
                )

    def _record_divergence(self, settings, n_samples, max_iter, validating=False):
        """An epoch whose loss or weights became non-finite, as scikit-learn records one: a NaN
        loss (and validation score), then a ConvergenceWarning. scikit-learn goes on stepping with
        NaN weights to max_iter (appending NaN); nn_xp stops at once, with the last good weights."""
        self._diverged = True
        self.n_iter_ += 1
        self.t_ += n_samples
        self.loss_ = np.nan
        self.loss_curve_.append(np.nan)
        if validating:
            self.validation_scores_.append(np.nan)
            self.validation_loss_curve_.append(np.nan)
        warnings.warn(
            f"Stochastic Optimizer: the loss became non-finite in iteration {self.n_iter_} (of max_iter="
            f"{max_iter}) and the optimization stopped without converging.",
            ConvergenceWarning,
            stacklevel=5,
        )

    def _update_validation(self, val, tol):
        """Score and loss on the validation set; with early stopping, keep a copy of the best
        parameters (scikit-learn's rule). `val`: X, Y, W (host), device (X there), scorer, early_stopping."""
        output = to_numpy(self.model_.forward(val["device"]))
        Y_val, W_val = val["Y"], val["W"]
        if np.all(np.isfinite(output)):
            if val["scorer"] is None:
                score = self._score_output(output, Y_val, W_val)
            else:
                metadata = {} if W_val is None else {"sample_weight": W_val}
                score = float(val["scorer"](self, val["X"], self._labels(Y_val), **metadata))
            self.validation_loss_curve_.append(self._data_loss(output, Y_val))
        else:
            score = np.nan
            self.validation_loss_curve_.append(np.nan)
        self.validation_scores_.append(score)
        if self.verbose:
            print(f"Validation score: {score:f}")
        if not val["early_stopping"]:
            return
        if score < self.best_validation_score_ + tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            self._best_params = self._copy_params()


def _write_params(model, arrays) -> None:
    """Copy `arrays` (host or device) into the model's parameters, in place: the parameter list and
    its arrays stay the ones the optimizer (and nn_xp's flat-buffer fast path) holds (an immutable
    library's, JAX's, are replaced in that list)."""
    model.set_parameters(list(arrays))

