"""L-BFGS on one flat vector of all parameters, with an optional strong-Wolfe line search
(line_search.py): `torch.optim.LBFGS`, step for step."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .. import backends
from ..backends import FlatList, ops_for
from ..validation import Integer, Options, Real
from .base import _RATE_OR_ZERO, Optimizer, _host_state, _like
from .line_search import strong_wolfe


# ---- L-BFGS: a closure, one flat vector ----------------------------------------------------------
class LBFGSStep(NamedTuple):
    """What the last `LBFGS.step` did: iterations and loss evaluations, why it stopped, and the loss
    at the parameters it left (nan when, without a line search, the step ended at max_iter: the
    last iteration moves them without evaluating, as in torch)."""

    iterations: int
    evaluations: int
    reason: str  # "max_iter", "max_eval", "tolerance_grad", "tolerance_change"
    loss: float = math.nan


class LBFGS(Optimizer):
    r"""L-BFGS with an optional strong-Wolfe line search: `torch.optim.LBFGS`, step for step.

    `step(closure)` calls `closure()` -> (loss, grads), as `model.loss_and_grads` returns them, as
    often as it needs, and runs up to `max_iter` iterations on the flat vector x of all parameters.
    With g_k the gradient at x_k, s_i = x_{i+1} - x_i and y_i = g_{i+1} - g_i (a pair is kept only
    when y_i.s_i > 1e-10, the newest `history_size` pairs), the direction is the two-loop recursion

        q = -g_k;   for i newest to oldest:  a_i = rho_i s_i.q,  q -= a_i y_i       (rho_i = 1 / y_i.s_i)
        r = H q     (H = y.s / y.y of the newest pair);
        for i oldest to newest:  r += (a_i - rho_i y_i.r) s_i;   d_k = r

    (d_1 = -g_1), and x_{k+1} = x_k + t d_k with t = learning_rate (the first iteration ever:
    min(1, 1 / sum|g_1|) * learning_rate), or the step the strong-Wolfe search finds from there.
    The loop stops after `max_iter` iterations or `max_eval` evaluations, or when max|g| <=
    tolerance_grad, g.d > -tolerance_change, max|t d| <= tolerance_change or the loss changed by
    less than tolerance_change. The memory (pairs, last direction and step) carries over from one
    `step` to the next, as in torch.

    As in torch: the line search's own tolerance on the bracket is 1e-9, whatever tolerance_change
    is; without a line search, the last iteration of a step does not re-evaluate the loss.

    Scalars (dot products, step lengths) are Python floats read from the device; the vectors stay on
    the parameters' device, so this runs on every backend. State: `state` holds the flat arrays
    ("d", "prev_flat_grad", "old_dirs", "old_stps"), `scalars` the rest, `last_step` what the last
    step did (an LBFGSStep).

    L-BFGS is outside the `init` / `update` protocol of the other optimizers: a step evaluates the
    loss as often as its line search and stopping tests need, and decides on the host what to do
    next, so it cannot be a pure function of (gradients, state, parameters). `init` and `update`
    raise TypeError; `step(closure)` is its interface, and its `state` stays a dict of flat vectors.

    Args:
        params: the model's live parameter list.
        learning_rate: > 0 (torch's lr). max_iter: iterations per step, >= 1.
        max_eval: loss evaluations per step (None: max_iter * 5 // 4, as torch).
        tolerance_grad, tolerance_change: >= 0. history_size: pairs kept, >= 1.
        line_search_fn: None or "strong_wolfe".
    """

    name = "lbfgs"
    constraints = {"max_iter": Integer(1), "max_eval": Integer(1), "tolerance_grad": Real(0.0),
                   "tolerance_change": Real(0.0), "history_size": Integer(1),
                   "line_search_fn": Options("strong_wolfe", none=True)}

    def __init__(self, params, learning_rate=1.0, max_iter=20, max_eval=None, tolerance_grad=1e-7,
                 tolerance_change=1e-9, history_size=100, line_search_fn=None):
        max_iter = Integer(1)(max_iter, "max_iter")
        if max_eval is None:
            max_eval = max(1, max_iter * 5 // 4)
        super().__init__(params, learning_rate=learning_rate, max_iter=max_iter, max_eval=max_eval,
                         tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                         history_size=history_size, line_search_fn=line_search_fn)
        self.state = {}
        self.scalars = _LBFGS_START.copy()
        self.last_step = None

    def init(self, params):
        raise TypeError(_OUTSIDE_PROTOCOL)

    def update(self, grads, state, params, *, step, learning_rate=None):
        raise TypeError(_OUTSIDE_PROTOCOL)

    # -- the flat vector --
    def _flat(self, xp, arrays):
        """A new 1-D array holding `arrays` one after another."""
        return xp.concat([xp.reshape(a, (-1,)) for a in arrays])

    def _set_flat(self, ops, x) -> None:
        """Make the parameters hold the flat vector x."""
        params = self.params
        if ops.mutable and isinstance(params, FlatList) and params.is_packed():
            params.flat[...] = x
            return
        offset = 0
        for i, p in enumerate(params):
            size = math.prod(p.shape)
            value = ops.xp.reshape(x[offset : offset + size], p.shape)
            offset += size
            if ops.mutable:
                p[...] = value
            else:
                params[i] = value

    def step(self, closure):
        """Run up to `max_iter` iterations; `closure()` -> (loss, grads) at the current parameters.

        Returns the loss of the first evaluation, before any update (as torch's step does).
        """
        if not callable(closure):
            raise TypeError(
                "LBFGS.step takes a closure: a function returning (loss, grads) at the current "
                f"parameters, as model.loss_and_grads does; got {type(closure).__name__}"
            )
        xp = backends.get_namespace(self.params[0])
        ops = ops_for(xp)
        tolerance_change, tolerance_grad = self.tolerance_change, self.tolerance_grad

        def evaluate():
            loss, grads = closure()
            self._check_grads(grads)
            return float(loss), self._flat(xp, grads)

        def dot(a, b) -> float:
            return float(xp.vecdot(a, b))

        def max_abs(a) -> float:
            return float(xp.max(xp.abs(a)))

        scalars, state = self.scalars, self.state
        self.step_count += 1
        loss, flat_grad = evaluate()
        orig_loss = loss
        evaluations = 1
        scalars["func_evals"] += 1
        if max_abs(flat_grad) <= tolerance_grad:
            self.last_step = LBFGSStep(0, evaluations, "tolerance_grad", loss)
            return orig_loss

        d, prev_flat_grad = state.get("d", [None])[0], state.get("prev_flat_grad", [None])[0]
        old_dirs, old_stps = state.get("old_dirs", []), state.get("old_stps", [])
        ro, t, H_diag, prev_loss = scalars["ro"], scalars["t"], scalars["H_diag"], scalars["prev_loss"]
        n_iter = 0
        reason = "max_iter"
        moved_unevaluated = False  # loss is the loss at the parameters, until a move it does not evaluate
        while n_iter < self.max_iter:
            n_iter += 1
            scalars["n_iter"] += 1
            # -- the direction --
            if scalars["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro, H_diag = [], [], [], 1.0
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = dot(y, s)
                if ys > 1e-10:
                    if len(old_dirs) == self.history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / dot(y, y)
                al = [0.0] * len(old_dirs)
                q = -flat_grad
                for i in range(len(old_dirs) - 1, -1, -1):
                    al[i] = dot(old_stps[i], q) * ro[i]
                    q = q - al[i] * old_dirs[i]
                d = r = q * H_diag
                for i in range(len(old_dirs)):
                    be_i = dot(old_dirs[i], r) * ro[i]
                    r = r + (al[i] - be_i) * old_stps[i]
                d = r
            prev_flat_grad = flat_grad
            prev_loss = loss
            # -- the step length --
            if scalars["n_iter"] == 1:
                total = float(xp.sum(xp.abs(flat_grad)))
                t = min(1.0, 1.0 / total if total else math.inf) * self.learning_rate
            else:
                t = self.learning_rate
            gtd = dot(flat_grad, d)
            if gtd > -tolerance_change:
                reason = "tolerance_change"
                break
            evaluations_here = 0
            if self.line_search_fn is not None:
                x_init = self._flat(xp, self.params)

                def evaluate_at(step, x_init=x_init, d=d):
                    self._set_flat(ops, x_init + step * d)
                    result = evaluate()
                    self._set_flat(ops, x_init)
                    return result

                # torch passes neither tolerance_change nor c1, c2: the search uses its defaults. Its
                # max_ls, as torch's, lets the step end one evaluation past max_eval.
                loss, flat_grad, t, evaluations_here = strong_wolfe(
                    evaluate_at, dot, t, d, loss, flat_grad, gtd, max_abs(d), max_ls=self.max_eval - evaluations
                )
                self._set_flat(ops, x_init + t * d)
                optimal = max_abs(flat_grad) <= tolerance_grad
            else:
                self._set_flat(ops, self._flat(xp, self.params) + t * d)
                optimal = False
                moved_unevaluated = n_iter == self.max_iter
                if n_iter != self.max_iter:  # torch does not re-evaluate after the last iteration
                    loss, flat_grad = evaluate()
                    optimal = max_abs(flat_grad) <= tolerance_grad
                    evaluations_here = 1
            evaluations += evaluations_here
            scalars["func_evals"] += evaluations_here
            # -- stop? --
            if n_iter == self.max_iter:
                reason = "max_iter"
                break
            if evaluations >= self.max_eval:
                reason = "max_eval"
                break
            if optimal:
                reason = "tolerance_grad"
                break
            if max_abs(d * t) <= tolerance_change or abs(loss - prev_loss) < tolerance_change:
                reason = "tolerance_change"
                break
        self.state = {"d": [d], "prev_flat_grad": [prev_flat_grad], "old_dirs": old_dirs, "old_stps": old_stps}
        scalars.update(t=float(t), ro=ro, H_diag=float(H_diag), prev_loss=float(prev_loss))
        self.last_step = LBFGSStep(n_iter, evaluations, reason, math.nan if moved_unevaluated else loss)
        return orig_loss

    # -- serialisation: the flat vectors split as the parameters are, for model files --
    def state_dict(self) -> dict:
        """As Optimizer.state_dict, plus "scalars"; each flat vector is stored split into arrays
        shaped like the parameters ("d", "prev_flat_grad", "old_dirs_0", "old_stps_0", ...)."""
        shapes = [tuple(p.shape) for p in self.params]
        state = {}
        for key, vectors in self.state.items():
            if key in ("old_dirs", "old_stps"):
                for i, vector in enumerate(vectors):
                    state[f"{key}_{i}"] = _split(backends.to_numpy(vector), shapes)
            else:
                state[key] = _split(backends.to_numpy(vectors[0]), shapes)
        scalars = dict(self.scalars, ro=list(self.scalars["ro"]))
        return {"name": self.name, "hyperparameters": self.hyperparameters, "step_count": self.step_count,
                "state": state, "scalars": scalars}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what `state_dict()` gave; everything is checked before anything changes."""
        keys = {"name", "hyperparameters", "step_count", "state", "scalars"}
        if not isinstance(state_dict, dict) or not keys <= set(state_dict):
            raise ValueError(f"state_dict must be a dict with keys {sorted(keys)}, as made by LBFGS.state_dict()")
        if state_dict["name"] != self.name:
            raise ValueError(f"state_dict is for optimizer {state_dict['name']!r}, this optimizer is {self.name!r}")
        saved = {**self.hyperparameters, **dict(state_dict["hyperparameters"])}
        learning_rate = _RATE_OR_ZERO(saved.pop("learning_rate"), "learning_rate")
        hyperparameters = self._check(**saved)
        step_count = Integer(0)(state_dict["step_count"], "state_dict['step_count']")
        scalars = state_dict["scalars"]
        if not isinstance(scalars, dict) or set(scalars) != set(_LBFGS_START):
            raise ValueError(f"state_dict['scalars'] must hold {sorted(_LBFGS_START)}")
        ro = [Real()(r, "state_dict['scalars']['ro']") for r in scalars["ro"]]
        n_pairs = len(ro)
        expected = set()
        if scalars["n_iter"] > 0:
            expected = {"d", "prev_flat_grad"} | {f"{k}_{i}" for k in ("old_dirs", "old_stps") for i in range(n_pairs)}
        saved_state = state_dict["state"]
        if set(saved_state) != expected:
            raise ValueError(
                f"state_dict['state'] must hold {sorted(expected)} for {n_pairs} stored pairs, "
                f"got {sorted(saved_state)}"
            )
        flat = {key: _like(np.concatenate([a.reshape(-1) for a in host]), self.params[0])
                for key, host in _host_state(saved_state, self.params).items()}
        # Every check passed: commit.
        self.state = {}
        if expected:
            self.state = {"d": [flat["d"]], "prev_flat_grad": [flat["prev_flat_grad"]],
                          "old_dirs": [flat[f"old_dirs_{i}"] for i in range(n_pairs)],
                          "old_stps": [flat[f"old_stps_{i}"] for i in range(n_pairs)]}
        self.scalars = dict(scalars, ro=ro, func_evals=int(scalars["func_evals"]), n_iter=int(scalars["n_iter"]))
        self.__dict__.update(hyperparameters)
        self.learning_rate = learning_rate
        self.step_count = int(step_count)


_OUTSIDE_PROTOCOL = (
    "LBFGS has no pure init/update: each step evaluates the loss as often as it needs, through a "
    "closure; call step(closure), with closure() -> (loss, grads)"
)

# L-BFGS's scalar state before its first step (torch keeps the same in its state dict).
_LBFGS_START = {"func_evals": 0, "n_iter": 0, "t": None, "ro": [], "H_diag": None, "prev_loss": None}


def _split(vector, shapes) -> list:
    """A flat host vector as arrays of the given shapes, in order."""
    parts, offset = [], 0
    for shape in shapes:
        size = math.prod(shape)
        parts.append(vector[offset : offset + size].reshape(shape))
        offset += size
    return parts
