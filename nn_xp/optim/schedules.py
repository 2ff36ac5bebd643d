"""Learning-rate schedules, one value per epoch, usable with every optimizer.

A schedule is called at the start of each epoch as `schedule(epoch, base_learning_rate, logs)` and
returns the learning rate for that epoch; `epoch` counts from 0 and `logs` holds the previous epoch's
numbers ({"loss": ..., "val_loss": ...}; empty at epoch 0). The fit loop assigns the result to
`optimizer.learning_rate`. Each schedule names the `torch.optim.lr_scheduler` class it matches.
"""

from __future__ import annotations

import math

from ..validation import Integer, Real

SCHEDULES = ("step", "exponential", "cosine", "plateau")


def _integer(value, parameter: str, low: int) -> int:
    return Integer(low)(value, parameter)


def _real(value, parameter: str, low: float, high=None, low_open=False, high_open=False) -> float:
    closed = {(False, False): "both", (True, False): "right", (False, True): "left", (True, True): "neither"}
    return Real(low, high, closed[(low_open, high_open)])(value, parameter)


class Schedule:
    """Base class: `schedule(epoch, base_learning_rate, logs) -> learning rate for that epoch`.

    Subclasses write `_value`; stateful ones also `_state` and `_load_state`.
    """

    name = "schedule"

    def __call__(self, epoch: int, base_learning_rate: float, logs: dict | None = None) -> float:
        epoch = _integer(epoch, "epoch", 0)
        base_learning_rate = _real(base_learning_rate, "base_learning_rate", 0.0, low_open=True)
        if logs is not None and not isinstance(logs, dict):
            raise TypeError(f"logs must be a dict of the previous epoch's metrics, got {type(logs).__name__}")
        return float(self._value(epoch, base_learning_rate, logs or {}))

    def _value(self, epoch: int, base_learning_rate: float, logs: dict) -> float:
        raise NotImplementedError

    def config(self) -> dict:
        """The constructor's arguments."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"

    def _state(self) -> dict:
        return {}

    def _load_state(self, state: dict) -> None:
        pass

    def state_dict(self) -> dict:
        """{"name", "config", "state"}: plain Python values, JSON-ready."""
        return {"name": self.name, "config": self.config(), "state": self._state()}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the running state saved by `state_dict()` (the configuration is the constructor's)."""
        if not isinstance(state_dict, dict) or state_dict.get("name") != self.name:
            found = state_dict.get("name") if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"state_dict is for schedule {found!r}, this schedule is {self.name!r}")
        self._load_state(dict(state_dict.get("state", {})))


class StepDecay(Schedule):
    """Multiply the learning rate by `gamma` every `step_size` epochs (torch `StepLR`).

        learning_rate(epoch) = base_learning_rate * gamma ** (epoch // step_size)
    """

    name = "step"

    def __init__(self, step_size: int, gamma: float = 0.1):
        self.step_size = _integer(step_size, "step_size", 1)
        self.gamma = _real(gamma, "gamma", 0.0, 1.0, low_open=True)

    def config(self) -> dict:
        return {"step_size": self.step_size, "gamma": self.gamma}

    def _value(self, epoch, base_learning_rate, logs):
        return base_learning_rate * self.gamma ** (epoch // self.step_size)


class ExponentialDecay(Schedule):
    """Multiply the learning rate by `gamma` every epoch (torch `ExponentialLR`).

        learning_rate(epoch) = base_learning_rate * gamma ** epoch
    """

    name = "exponential"

    def __init__(self, gamma: float):
        self.gamma = _real(gamma, "gamma", 0.0, 1.0, low_open=True)

    def config(self) -> dict:
        return {"gamma": self.gamma}

    def _value(self, epoch, base_learning_rate, logs):
        return base_learning_rate * self.gamma**epoch


class CosineWithWarmup(Schedule):
    """Linear warm-up, then cosine annealing to `min_learning_rate`.

    With base rate b, minimum m, W = warmup_epochs and T = total_epochs:

        epoch < W:        b * (epoch + 1) / W                   (b / W, 2b / W, ..., b)
        W <= epoch < T:   m + (b - m) * (1 + cos(pi * (epoch - W) / (T - W))) / 2
        epoch >= T:       m

    With W = 0 this is torch's `CosineAnnealingLR(T_max=T, eta_min=m)`; the warm-up is torch's
    `LinearLR(start_factor=1/W, total_iters=W-1)` before it (`SequentialLR`, milestone W).
    """

    name = "cosine"

    def __init__(self, total_epochs: int, warmup_epochs: int = 0, min_learning_rate: float = 0.0):
        self.total_epochs = _integer(total_epochs, "total_epochs", 1)
        self.warmup_epochs = _integer(warmup_epochs, "warmup_epochs", 0)
        if self.warmup_epochs >= self.total_epochs:
            raise ValueError(
                f"warmup_epochs must be less than total_epochs={self.total_epochs}, got {self.warmup_epochs}"
            )
        self.min_learning_rate = _real(min_learning_rate, "min_learning_rate", 0.0)

    def config(self) -> dict:
        return {
            "total_epochs": self.total_epochs,
            "warmup_epochs": self.warmup_epochs,
            "min_learning_rate": self.min_learning_rate,
        }

    def _value(self, epoch, base_learning_rate, logs):
        if self.min_learning_rate > base_learning_rate:
            raise ValueError(
                f"min_learning_rate={self.min_learning_rate} is above the base learning rate "
                f"{base_learning_rate}"
            )
        warmup, total, low = self.warmup_epochs, self.total_epochs, self.min_learning_rate
        if epoch < warmup:
            return base_learning_rate * (epoch + 1) / warmup
        if epoch >= total:
            return low
        progress = (epoch - warmup) / (total - warmup)
        return low + (base_learning_rate - low) * (1 + math.cos(math.pi * progress)) / 2


class ReduceOnPlateau(Schedule):
    """Multiply the learning rate by `factor` when the monitored metric stops improving.

    torch `ReduceLROnPlateau(mode="min", threshold_mode="abs", threshold=min_delta, cooldown=0)`:
    an epoch improves when `metric < best - min_delta`; after more than `patience` epochs in a row
    without improvement the rate becomes `max(rate * factor, min_learning_rate)` (a change smaller
    than torch's eps=1e-8 is skipped) and the count starts again.

    `monitor` names a key of the epoch logs, "val_loss" by default; when the logs have no such key
    (no validation data), the training "loss" is monitored instead.

    The schedule is stateful: it keeps its own current rate (starting from the base rate at its first
    call), the best value and the count of epochs without improvement, across `fit` calls and through
    `state_dict()`/`load_state_dict()`.
    """

    name = "plateau"
    _TORCH_EPS = 1e-8  # torch's minimal decay: smaller reductions are not applied

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, min_delta=1e-4, min_learning_rate=0.0):
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(
                f"monitor must be the name of a logged metric such as 'val_loss', got {monitor!r}"
            )
        self.monitor = monitor
        self.factor = _real(factor, "factor", 0.0, 1.0, low_open=True, high_open=True)
        self.patience = _integer(patience, "patience", 0)
        self.min_delta = _real(min_delta, "min_delta", 0.0)
        self.min_learning_rate = _real(min_learning_rate, "min_learning_rate", 0.0)
        self.learning_rate = None  # the current rate; None until the first call
        self.best = None  # the best value seen; None until the first metric arrives
        self.num_bad_epochs = 0

    def config(self) -> dict:
        return {
            "monitor": self.monitor,
            "factor": self.factor,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "min_learning_rate": self.min_learning_rate,
        }

    def _value(self, epoch, base_learning_rate, logs):
        if self.learning_rate is None:
            self.learning_rate = base_learning_rate
        if not logs:  # the first epoch of a fit call: nothing to judge yet
            return self.learning_rate
        key = self.monitor if self.monitor in logs else "loss"
        if key not in logs:
            raise ValueError(
                f"ReduceOnPlateau monitors {self.monitor!r} (or 'loss' as a fallback), but the logs only "
                f"have {sorted(logs)}"
            )
        current = float(logs[key])
        if self.best is None or current < self.best - self.min_delta:
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.num_bad_epochs > self.patience:
            reduced = max(self.learning_rate * self.factor, self.min_learning_rate)
            if self.learning_rate - reduced > self._TORCH_EPS:
                self.learning_rate = reduced
            self.num_bad_epochs = 0
        return self.learning_rate

    def _state(self) -> dict:
        return {"learning_rate": self.learning_rate, "best": self.best, "num_bad_epochs": self.num_bad_epochs}

    def _load_state(self, state: dict) -> None:
        learning_rate, best = state.get("learning_rate"), state.get("best")
        if learning_rate is not None:
            learning_rate = _real(learning_rate, "state['learning_rate']", 0.0)
        self.learning_rate = learning_rate
        self.best = None if best is None else float(best)
        self.num_bad_epochs = _integer(state.get("num_bad_epochs", 0), "state['num_bad_epochs']", 0)


_CLASSES = {
    "step": StepDecay,
    "exponential": ExponentialDecay,
    "cosine": CosineWithWarmup,
    "plateau": ReduceOnPlateau,
}


def get_schedule(spec, **kwargs):
    """A Schedule from an instance (returned as is), None (no schedule) or a name in SCHEDULES.

    `kwargs` go to the named class: get_schedule("step", step_size=10, gamma=0.5).
    """
    if spec is None or isinstance(spec, Schedule):
        if kwargs:
            raise ValueError(f"schedule arguments {sorted(kwargs)} need a schedule name, got {spec!r}")
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"schedule must be one of {list(SCHEDULES)}, a Schedule or None, got {spec!r}")
    key = spec.strip().lower()
    if key not in _CLASSES:
        raise ValueError(f"schedule must be one of {list(SCHEDULES)}, a Schedule or None, got {spec!r}")
    return _CLASSES[key](**kwargs)
