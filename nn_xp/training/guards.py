"""What keeps a fit whole: Ctrl-C taken between steps, the model put back when fit fails before
its first step, and the fallback to the last finite parameters when the loss stops being finite."""

from __future__ import annotations

import math
import signal
import threading

import numpy as np

from .. import backends as backend
from ..backends import FlatList, ops_for
from ..optim.base import map_state


class NonFiniteLossWarning(RuntimeWarning):
    """fit stopped because the loss or the parameters became NaN or infinite (the model was restored)."""


class Interrupt:
    """Turns Ctrl-C into a flag the loop reads after each step, so no update is left half done.

    A second Ctrl-C raises KeyboardInterrupt at once, except inside a held section (an optimizer
    step, a history record): there it is raised as soon as the section ends, so the parameters,
    the optimizer state and the history always match.
    """

    def __init__(self):
        self.requested = False
        self._previous = None
        self._holding = False
        self._pending = False

    def hold(self):
        self._holding = True

    def release(self):
        self._holding = False
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C stops at once (after a held section)
            if self._holding:
                self._pending = True
                return
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


class Rollback:
    """Puts the model back as it was before `fit` when `fit` fails before its first optimizer step
    (a bad schedule, a callback's on_train_begin, ...); converts running out of memory into a
    MemoryError that suggests a smaller batch. After a completed step the model keeps the state of
    its last completed step (parameters, optimizer and history agree) and the error propagates."""

    def __init__(self, model, batch_size):
        self.model, self.batch_size = model, batch_size
        self.optimizer = model.optimizer
        self.learning_rate = None if model.optimizer is None else model.optimizer.learning_rate
        self.history = model.history
        self.stop_reason = None if model.history is None else model.history.stop_reason
        self.loss = model.loss
        self.rng_state = model.rng.bit_generator.state
        self.buffers = model.buffers()  # the layers replace buffers, never write into them
        self.steps = None

    def start(self):
        """Called once the optimizer for this fit is in place."""
        self.steps = self.model.optimizer.step_count

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if error is None:
            return False
        model = self.model
        if model.optimizer.step_count == self.steps:
            model.optimizer = self.optimizer
            if self.optimizer is not None:
                self.optimizer.learning_rate = self.learning_rate
            model.history = self.history
            if self.history is not None:
                self.history.stop_reason = self.stop_reason
            model.loss = self.loss
            model.rng.bit_generator.state = self.rng_state
            model._store.buffers[:] = self.buffers
        if backend.is_out_of_memory(error):
            where = "GPU memory" if backend.is_gpu(model.device) else "memory"
            batch = self.batch_size if self.batch_size is not None else "None, the full batch"
            cause = type(error).__name__ + (f": {error}" if str(error) else "")
            raise MemoryError(
                f"fit ran out of {where} on {model.device} ({cause}); "
                f"try a smaller batch_size (now {batch}) or a smaller model"
            ) from error
        return False


def device_finite(xp, arrays) -> bool:
    """One device reduction per buffer (a single one for packed parameters) and one host read."""
    if isinstance(arrays, FlatList) and arrays.is_packed():
        arrays = [arrays.flat]
    total = 0.0
    with np.errstate(invalid="ignore"):  # inf * 0 is the NaN this looks for, not a mistake to warn of
        for a in arrays:
            total = total + xp.sum(a * 0)  # NaN or inf anywhere makes this NaN
    return math.isfinite(float(total))


def take_snapshot(model, ops=None):
    """Copies of the parameters and the optimizer state to fall back on, made on the model's device,
    and the buffers (which the layers replace, never write into): no transfer to the host and no
    synchronisation, so taking one every epoch costs a copy. ops: the model's, where known."""
    if ops is None:
        ops = ops_for(backend.get_namespace(*model.parameters()))
    opt = model.optimizer
    state = map_state(opt.state, ops.copy_arrays)
    return ops.copy_arrays(model.parameters()), state, opt.step_count, model.buffers()


def restore_snapshot(model, snapshot):
    params, state, step_count, buffers = snapshot
    model.set_parameters(params)
    model._store.buffers[:] = buffers
    opt = model.optimizer
    opt.state = state  # the snapshot's copies become the state; the learning rate did not change since
    opt.step_count = step_count
