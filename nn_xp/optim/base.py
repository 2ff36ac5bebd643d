"""The optimizers' base class: the update protocol (`init`, `update`, `step`), the step count,
(de)serialisation, and the helpers its subclasses share (first_order.py, lbfgs.py).

Optimizer state is data, optax-style: `init(params)` makes the zero state, a NamedTuple of the
class's `State` type (one list of arrays per field, one array per parameter; None for the fields
these hyperparameters do not use), and `update(grads, state, params, step=t)` is a pure function
of arrays that returns the new parameters and the new state. A training step written with it is a
pure function of arrays, which a compiler (jax.jit) can take whole. `step(grads)` is the stateful
form that training calls: it keeps the state on the object (`self.state`), counts the steps and
updates the live parameter list, in place on NumPy and CuPy (one update over flat buffers where the
parameters are views of one), with the same rule.

State is made with `xp.zeros_like(p)`, so it lives where the parameters live; `to(device)` moves
it when the model moves. Nothing here reaches the host: hyperparameters and bias corrections are
Python floats, which keep float32 arrays float32; a step or learning rate given as a 0-d array
stays an array (computed with xp ops) and is cast to the parameters' dtype where it meets them.
"""

from __future__ import annotations

import numbers

from .. import backends
from ..backends import FlatList, ops_for
from ..validation import Integer, Real, check_params

_LEARNING_RATE = Real(0.0, None, closed="neither")
_RATE_OR_ZERO = Real(0.0, None)  # a schedule may end exactly at min_learning_rate=0.0
_STEP = Integer(1)


class Optimizer:
    """Base class: the update protocol, the step count, state bookkeeping and (de)serialisation.

    Subclasses set `name`, declare their hyperparameters in `constraints` (validation.py), their
    state as a NamedTuple class `State` (one field per state array, None where unused) with
    `_state_names`, and write the update rule once, in
    `_update(ops, p, g, state, *, step, learning_rate, work)`, which returns the new (p, state) of
    one array (a parameter, or the flat buffer of all of them). `learning_rate` is checked when
    reassigned (schedules do).
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
        self.state = None  # a `State`, made by init() at the first step
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

    # -- the pure protocol --
    def init(self, params):
        """The zero state for `params`: a `State` whose fields in use hold one `xp.zeros_like(p)`
        per parameter (so each lives on its parameter's device), the others None.

        Args:
            params: a list or tuple of arrays, the parameters the state is for.
        """
        _check_arrays(params, "params")
        xp = backends.get_namespace(params[0])
        names = self._state_names(self.hyperparameters)
        return self.State(**{key: [xp.zeros_like(p) for p in params] for key in names})

    def update(self, grads, state, params, *, step, learning_rate=None):
        """One update as a pure function of arrays: returns (new_params, new_state).

        The inputs are left as they were (on NumPy and CuPy the in-place rules run on copies), so
        a training step written with this is a pure function, which jax.jit can compile.

        Args:
            grads: one array per parameter, shaped like it.
            state: this optimizer's `State`, from `init(params)` or the previous update.
            params: a list or tuple of arrays.
            step: the number of this step, 1 for the first: an integer >= 1, or a 0-d array
                (a traced one under jax.jit).
            learning_rate: a number >= 0 or a 0-d array; None uses `self.learning_rate`. The other
                hyperparameters are the object's.

        Returns:
            new_params: a list, one array per parameter.
            new_state: a `State` of the same fields, one list each.
        """
        _check_arrays(params, "params")
        self._check_grads(grads, params)
        if not isinstance(state, self.State):
            raise TypeError(
                f"state must be this optimizer's State ({self.State.__name__}), as made by init(params); "
                f"got {type(state).__name__}"
            )
        expected = set(self._state_names(self.hyperparameters))
        held = set(state_arrays(state))
        if held != expected:
            raise ValueError(f"state must hold {sorted(expected)} with these hyperparameters, got {sorted(held)}")
        for key, arrays in state_arrays(state).items():
            if len(arrays) != len(params):
                raise ValueError(f"state.{key} holds {len(arrays)} arrays for {len(params)} parameters")
        step = _scalar_argument(step, "step", _STEP, "an integer >= 1")
        if learning_rate is None:
            learning_rate = self.learning_rate
        learning_rate = _scalar_argument(learning_rate, "learning_rate", _RATE_OR_ZERO, "a number >= 0")
        ops = ops_for(backends.get_namespace(params[0], grads[0]))
        if ops.mutable:  # the in-place rules write into copies, never into the caller's arrays
            params = ops.copy_arrays(params)
            state = map_state(state, ops.copy_arrays)
        return self._apply(ops, grads, state, params, step, learning_rate, {})

    def _apply(self, ops, grads, state, params, step, learning_rate, work):
        """The rule over every parameter in turn: (new_params, new_state), one list per field."""
        make = type(state)._make
        used = [index for index, field in enumerate(state) if field is not None]
        new_params, new_fields = [], [None if field is None else [] for field in state]
        for i, (p, g) in enumerate(zip(params, grads)):
            at_i = make([None if field is None else field[i] for field in state])
            p, new = self._update(ops, p, g, at_i, step=step, learning_rate=learning_rate, work=work)
            new_params.append(p)
            for index in used:
                new_fields[index].append(new[index])
        return new_params, make(new_fields)

    def _update(self, ops, p, g, state, *, step, learning_rate, work):
        """The update rule for one array `p`, its gradient and its state: (p, state).

        step, learning_rate: Python numbers or 0-d arrays. work: the dict where the backend's ops
        keep scratch arrays (mutable ops only).
        """
        raise NotImplementedError

    # -- stepping: the stateful form --
    def _check_grads(self, grads, params=None) -> None:
        params = self.params if params is None else params
        if not isinstance(grads, (list, tuple)):
            raise TypeError(f"grads must be a list of arrays (one per parameter), got {type(grads).__name__}")
        if len(grads) != len(params):
            raise ValueError(
                f"grads must hold one array per parameter: expected {len(params)}, got {len(grads)}"
            )
        for index, (g, p) in enumerate(zip(grads, params)):
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
    _flat_state = None  # (the state, its flat buffers as a State) of the last packed step

    def step(self, grads) -> None:
        """Update every parameter from `grads`, one array per parameter, in order.

        The stateful form of `update`: the state is `self.state` (made at the first step), the step
        number `self.step_count`, and the live parameter list is updated (in place where the ops
        are mutable; its elements replaced by new arrays elsewhere).
        """
        params = self.params
        packed = _packed(params, grads)
        checked = self._checked_views
        if not (packed and checked is not None and grads.views is checked[0] and params.views is checked[1]):
            self._check_grads(grads)  # a gradient buffer checked once needs no check per step
            if packed:
                self._checked_views = (grads.views, params.views)
        ops = self._ops(grads)
        self.step_count += 1
        if self.state is None:
            self.state = self.init(params)
        state, step, learning_rate = self.state, self.step_count, self.learning_rate
        if not ops.mutable:  # new arrays replace the list's and the state's
            params[:], self.state = self._apply(ops, grads, state, params, step, learning_rate, self._work)
            return
        if packed:
            # Parameters, gradients and state are views of flat buffers: one update does all.
            cached = self._flat_state
            if cached is None or cached[0] is not state:  # a state new since the last step: packed once
                self.state = state = map_state(
                    state, lambda arrays: arrays if isinstance(arrays, FlatList) and arrays.flat is not None
                    else ops.pack(arrays))
                cached = self._flat_state = (state, type(state)._make(
                    [None if field is None else field.flat for field in state]))
            flat = cached[1]
            p, new = self._update(ops, params.flat, grads.flat, flat, step=step, learning_rate=learning_rate,
                                  work=self._work)
            _write_back(params.flat, p)
            for target, value in zip(flat, new):
                if target is not None:
                    _write_back(target, value)
            return
        new_params, new_state = self._apply(ops, grads, state, params, step, learning_rate, self._work)
        # In place where the ops were; copied where a rule made new arrays.
        for target, value in zip(params, new_params):
            _write_back(target, value)
        for targets, values in zip(state, new_state):
            for target, value in zip(targets or (), values or ()):
                _write_back(target, value)

    def _ops(self, grads):
        """The arrays' ops, looked up once per pair of array types (a namespace lookup costs ~20 us)."""
        key = (type(self.params[0]), type(grads[0]))
        if key != self._namespace_key:
            self._ops_cached = ops_for(backends.get_namespace(self.params[0], grads[0]))
            self._namespace_key = key
        return self._ops_cached

    # -- devices and serialisation --
    def to(self, device):
        """Move the state arrays to `device` (the model moves the parameters); returns self."""
        device = backends.resolve_device(device)
        self.state = map_state(self.state, lambda arrays: [backends.to_device(a, device) for a in arrays])
        self._work, self._flat_state, self._checked_views = {}, None, None  # nothing kept on the old device
        return self

    def state_dict(self) -> dict:
        """{"name", "hyperparameters", "step_count", "state": {name: [NumPy arrays]}}.

        JSON-ready but for the arrays, which are host copies.
        """
        return {
            "name": self.name,
            "hyperparameters": self.hyperparameters,
            "step_count": self.step_count,
            "state": {key: [backends.to_numpy(a) for a in arrays] for key, arrays in state_arrays(self.state).items()},
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
        self.state, self._flat_state = None, None
        if step_count > 0:
            self.state = self.State(**{key: [_like(a, p) for a, p in zip(arrays, self.params)]
                                       for key, arrays in host.items()})
        self.__dict__.update(hyperparameters)
        self.learning_rate = learning_rate
        self.step_count = int(step_count)


def state_arrays(state) -> dict:
    """{name: one array per parameter} for the fields of `state` in use (a `State`, L-BFGS's
    dict or None)."""
    if state is None:
        return {}
    if isinstance(state, dict):
        return dict(state)
    return {key: arrays for key, arrays in state._asdict().items() if arrays is not None}


def map_state(state, function):
    """`state` of the same kind (a `State`, L-BFGS's dict or None) with `function` applied to each
    of its lists of arrays."""
    if state is None:
        return None
    if isinstance(state, dict):
        return {key: function(arrays) for key, arrays in state.items()}
    return type(state)(*(None if arrays is None else function(arrays) for arrays in state))


def _check_arrays(arrays, name: str) -> None:
    if not isinstance(arrays, (list, tuple)) or not arrays:
        raise TypeError(f"{name} must be a non-empty list or tuple of arrays, got {type(arrays).__name__}")


def _scalar_argument(value, name: str, check, expected: str):
    """A Python number, checked, or a 0-d array, taken as it is (its value may be traced)."""
    if isinstance(value, numbers.Number):
        return check(value, name)
    if tuple(getattr(value, "shape", (None,))) != ():
        raise TypeError(f"{name} must be {expected} or a 0-d array, got {type(value).__name__}"
                        f"{' of shape ' + str(tuple(value.shape)) if hasattr(value, 'shape') else ''}")
    return value


def is_number(value) -> bool:
    """True for a Python (or NumPy scalar) number, False for an array (a 0-d one included)."""
    return type(value) in _PLAIN_NUMBERS or isinstance(value, numbers.Number)


_PLAIN_NUMBERS = (float, int, bool)


def scalar_like(ops, value, like):
    """A step's constant as the update uses it against `like`: a Python number as it is (NumPy
    and the Array API cast it to like's dtype), a 0-d array cast to like's dtype (the same rounding,
    done explicitly: a float64 learning rate must not make float32 parameters float64)."""
    if is_number(value):
        return value
    return ops.xp.astype(value, like.dtype)


def floating_step(ops, step, like):
    """A 0-d step array as a floating one (an integer step takes like's dtype); numbers as they are."""
    if is_number(step) or ops.xp.isdtype(step.dtype, "real floating"):
        return step
    return ops.xp.astype(step, like.dtype)


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


