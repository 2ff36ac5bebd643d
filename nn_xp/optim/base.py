"""The optimizers' base class: the parameter list, the step count, state bookkeeping and
(de)serialisation, and the helpers its subclasses share (first_order.py, lbfgs.py).

State (moments, momentum buffers) is made with `xp.zeros_like(p)` at the first step, so it lives
where the parameters live; `to(device)` moves it when the model moves. Nothing here reaches the
host: hyperparameters and bias corrections are Python floats, which keep float32 arrays float32.
"""

from __future__ import annotations

import numbers

from .. import backends
from ..backends import FlatList, ops_for
from ..validation import Real, check_params

_LEARNING_RATE = Real(0.0, None, closed="neither")
_RATE_OR_ZERO = Real(0.0, None)  # a schedule may end exactly at min_learning_rate=0.0


class Optimizer:
    """Base class: the parameter list, the step count, state bookkeeping and (de)serialisation.

    Subclasses set `name`, declare their hyperparameters in `constraints` (validation.py), their
    state as a NamedTuple class `State` (one field per state array, None where unused) with
    `_state_names`, and write the update rule in `_update(ops, p, g, state, first)`, which returns
    the new (p, state). `learning_rate` is checked when reassigned (schedules do).
    """

    name = "optimizer"
    constraints: dict = {}
    State = None

    def __init__(self, params, learning_rate, **hyperparameters):
        if not isinstance(params, list):
            raise TypeError(
                f"params must be the model's parameter list (model.parameters()), got {type(params).__name__}"
            )
        if not params:
            raise ValueError("params must hold at least one array")
        self.learning_rate = _LEARNING_RATE(learning_rate, "learning_rate")
        checked = self._check(**hyperparameters)
        self._hyperparameter_names = ("learning_rate",) + tuple(checked)
        self.__dict__.update(checked)
        self.params = params  # the live list itself: model.to() swaps its elements
        self.step_count = 0
        self.state: dict[str, list] = {}  # name -> one array per parameter, made at the first step
        self._work = {}  # scratch arrays the backend's ops keep between steps

    @property
    def learning_rate(self) -> float:
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        self._learning_rate = _RATE_OR_ZERO(value, "learning_rate")

    @property
    def hyperparameters(self) -> dict:
        """The constructor's arguments (but params), with their current values."""
        return {key: getattr(self, key) for key in self._hyperparameter_names}

    @classmethod
    def _check(cls, **hyperparameters) -> dict:
        return check_params(cls.constraints, hyperparameters)

    @classmethod
    def _state_names(cls, hyperparameters: dict) -> tuple:
        """Names of the per-parameter state arrays under these hyperparameters."""
        return ()

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{type(self).__name__}({arguments})"

    # -- stepping --
    def _check_grads(self, grads) -> None:
        if not isinstance(grads, (list, tuple)):
            raise TypeError(f"grads must be a list of arrays (one per parameter), got {type(grads).__name__}")
        if len(grads) != len(self.params):
            raise ValueError(
                f"grads must hold one array per parameter: expected {len(self.params)}, got {len(grads)}"
            )
        for index, (g, p) in enumerate(zip(grads, self.params)):
            shape = tuple(g.shape) if hasattr(g, "shape") else type(g).__name__
            if shape != tuple(p.shape):
                raise ValueError(
                    f"grads[{index}] must have its parameter's shape {tuple(p.shape)}, got {shape}"
                )
            if backends.device_of(g) != backends.device_of(p):
                raise ValueError(
                    f"grads[{index}] is on device {backends.device_of(g)!r} but its parameter is on "
                    f"{backends.device_of(p)!r}"
                )
            if g.dtype != p.dtype:
                raise ValueError(f"grads[{index}] has dtype {g.dtype} but its parameter has dtype {p.dtype}")

    _checked_views = None
    _namespace_key = None

    def step(self, grads) -> None:
        """Update every parameter from `grads`, one array per parameter, in order."""
        params = self.params
        packed = _packed(params, grads)
        checked = self._checked_views
        if not (packed and checked is not None and grads.views is checked[0] and params.views is checked[1]):
            self._check_grads(grads)  # a gradient buffer checked once needs no check per step
            if packed:
                self._checked_views = (grads.views, params.views)
        ops = self._ops(grads)
        self.step_count += 1
        first = self._init_state(ops.xp)
        names = tuple(self.state)
        if packed and ops.mutable:
            # Parameters, gradients and state are views of flat buffers: one update does all.
            for key, arrays in self.state.items():
                if not (isinstance(arrays, FlatList) and arrays.flat is not None):
                    self.state[key] = ops.pack(arrays)
            state = self._state_of({key: self.state[key].flat for key in names})
            p, new = self._update(ops, params.flat, grads.flat, state, first)
            _write_back(params.flat, p)
            for key in names:
                _write_back(self.state[key].flat, getattr(new, key))
            return
        for i, (p, g) in enumerate(zip(params, grads)):
            state = self._state_of({key: self.state[key][i] for key in names})
            p, new = self._update(ops, p, g, state, first)
            if ops.mutable:  # in place where the ops were; copied where a rule made new arrays
                _write_back(params[i], p)
                for key in names:
                    _write_back(self.state[key][i], getattr(new, key))
            else:
                params[i] = p
                for key in names:
                    self.state[key][i] = getattr(new, key)

    def _state_of(self, arrays: dict):
        return self.State(**arrays) if self.State is not None else None

    def _ops(self, grads):
        """The arrays' ops, looked up once per pair of array types (a namespace lookup costs ~20 us)."""
        key = (type(self.params[0]), type(grads[0]))
        if key != self._namespace_key:
            self._ops_cached = ops_for(backends.get_namespace(self.params[0], grads[0]))
            self._namespace_key = key
        return self._ops_cached

    def _update(self, ops, p, g, state, first: bool):
        """The update rule for one parameter array `p`, its gradient and its state: (p, state)."""
        raise NotImplementedError

    def _init_state(self, xp) -> bool:
        """Make the zero state at the first step, on the parameters' device; True if made now."""
        if self.state or self.step_count > 1:
            return False
        names = self._state_names(self.hyperparameters)
        self.state = {key: [xp.zeros_like(p) for p in self.params] for key in names}
        return True

    # -- devices and serialisation --
    def to(self, device):
        """Move the state arrays to `device` (the model moves the parameters); returns self."""
        device = backends.resolve_device(device)
        for arrays in self.state.values():
            arrays[:] = [backends.to_device(a, device) for a in arrays]
        self._work = {}
        return self

    def state_dict(self) -> dict:
        """{"name", "hyperparameters", "step_count", "state": {name: [NumPy arrays]}}.

        JSON-ready but for the arrays, which are host copies.
        """
        return {
            "name": self.name,
            "hyperparameters": self.hyperparameters,
            "step_count": self.step_count,
            "state": {key: [backends.to_numpy(a) for a in arrays] for key, arrays in self.state.items()},
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters, step count and state exactly; arrays go to their parameter's device.

        Everything is checked before anything changes: another optimizer's dict, a state that does not
        fit the hyperparameters, or arrays whose shapes differ from the parameters raise ValueError.
        """
        keys = {"name", "hyperparameters", "step_count", "state"}
        if not isinstance(state_dict, dict) or not keys <= set(state_dict):
            raise ValueError(f"state_dict must be a dict with keys {sorted(keys)}, as made by state_dict()")
        if state_dict["name"] != self.name:
            raise ValueError(
                f"state_dict is for optimizer {state_dict['name']!r}, this optimizer is {self.name!r}"
            )
        saved = dict(state_dict["hyperparameters"])
        unknown = set(saved) - set(self._hyperparameter_names)
        if unknown:
            raise ValueError(f"state_dict has hyperparameters unknown to {self.name!r}: {sorted(unknown)}")
        saved = {**self.hyperparameters, **saved}
        learning_rate = _RATE_OR_ZERO(saved.pop("learning_rate"), "learning_rate")
        hyperparameters = self._check(**saved)
        step_count = state_dict["step_count"]
        if isinstance(step_count, bool) or not isinstance(step_count, numbers.Integral) or step_count < 0:
            raise ValueError(f"state_dict['step_count'] must be an integer >= 0, got {step_count!r}")
        saved_state = state_dict["state"]
        expected = set(self._state_names(hyperparameters)) if step_count > 0 else set()
        if set(saved_state) != expected:
            raise ValueError(
                f"state_dict['state'] must hold {sorted(expected)} after {step_count} steps with these "
                f"hyperparameters, got {sorted(saved_state)}"
            )
        host = _host_state(saved_state, self.params)
        # Every check passed: commit.
        self.state = {key: [_like(a, p) for a, p in zip(arrays, self.params)] for key, arrays in host.items()}
        self.__dict__.update(hyperparameters)
        self.learning_rate = learning_rate
        self.step_count = int(step_count)


def _packed(params, grads) -> bool:
    """True when parameters and gradients are each the views of one flat buffer, shaped alike."""
    return (
        isinstance(params, FlatList)
        and isinstance(grads, FlatList)
        and params.is_packed()
        and grads.is_packed()
        and len(grads.views) == len(params.views)
        and all(g.shape == p.shape for g, p in zip(grads.views, params.views))
    )


def _write_back(target, value) -> None:
    """Make `target` hold `value` (nothing to do when the ops updated it in place)."""
    if value is not target:
        target[...] = value


def _host_state(saved_state: dict, params) -> dict:
    """A state dict's arrays as host copies, {name: one array per parameter}, each checked to be
    shaped like its parameter (a ValueError naming the array otherwise)."""
    host = {}
    for key, arrays in saved_state.items():
        if len(arrays) != len(params):
            raise ValueError(f"state_dict['state'][{key!r}] holds {len(arrays)} arrays for {len(params)} parameters")
        host[key] = [backends.to_numpy(a) for a in arrays]
        for index, (a, p) in enumerate(zip(host[key], params)):
            if a.shape != tuple(p.shape):
                raise ValueError(
                    f"state_dict['state'][{key!r}][{index}] has shape {a.shape}, its parameter {tuple(p.shape)}"
                )
    return host


def _like(host, p):
    """A host array as an array of `p`'s dtype on `p`'s device."""
    array = backends.to_device(host, backends.device_of(p))
    if array.dtype != p.dtype:
        array = backends.get_namespace(p).astype(array, p.dtype)
    return array


