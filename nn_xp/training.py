"""The training loop behind `MLP.fit`: mini-batch gradient descent with any optimizer.

Batch, mini-batch and stochastic gradient descent are all `batch_size` choices of this one loop
(`batch_size=None` or n_samples: batch; 1: stochastic). The data goes to the model's device once;
each epoch draws one shuffle order from the model's host generator, and each batch is gathered on
the device by those indices. The loss stays on the device and reaches the host once per epoch.
"""

from __future__ import annotations

import math
import numbers
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import backend, fast, losses
from .callbacks import check_callbacks
from .clipping import clip_grad_norm, clip_grad_value
from .model import _check_positive_int
from .optim import get_optimizer
from .schedules import get_schedule


@dataclass
class History:
    """Per-epoch records of every `fit` call on a model (a second `fit` appends).

    history: {"loss": [...], "val_loss": [...], "accuracy": [...], "learning_rate": [...],
              "epoch_time": [...], ...}, one value per epoch.
    epoch: the epoch numbers, counted over all fit calls.
    stop_reason: None, or why the last fit ended early ("early_stopping", "interrupted",
                 "non-finite loss").
    """

    history: dict = field(default_factory=dict)
    epoch: list = field(default_factory=list)
    stop_reason: str | None = None

    def append(self, epoch: int, logs: dict) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __len__(self) -> int:
        return len(self.epoch)


def _check_optional_positive(value, parameter):
    """None, or a finite number > 0. A huge finite learning rate is accepted: divergence is the
    non-finite guard's business (it restores the last good epoch), not the argument check's."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{parameter} must be a finite number > 0, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{parameter} must be a finite number > 0, got {value!r}")
    return float(value)


class _Interrupt:
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


def _check_validation_split(validation_split, n: int) -> None:
    n_val = int(math.floor(n * validation_split))
    if validation_split and (n_val == 0 or n_val == n):
        raise ValueError(
            f"validation_split={validation_split} leaves {n_val} of {n} samples for validation; "
            "it must leave at least one sample on each side"
        )


def _split_validation(model, X, Y, validation_split):
    """A random hold-out drawn from the model's generator (sorted data would make the last rows unfit).

    Returns (training row indices, X_val, Y_val): the training rows are gathered batch by batch
    from X itself, so the split does not copy the training data.
    """
    n = X.shape[0]
    n_val = int(math.floor(n * validation_split))
    order = backend.to_device(model.rng.permutation(n), model.device)
    xp = backend.get_namespace(X)
    train, val = order[n_val:], order[:n_val]
    return train, xp.take(X, val, axis=0), xp.take(Y, val, axis=0)


class _Rollback:
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
        if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
            where = "GPU memory" if model.device.startswith("cuda") else "memory"
            batch = self.batch_size if self.batch_size is not None else "None, the full batch"
            cause = type(error).__name__ + (f": {error}" if str(error) else "")
            raise MemoryError(
                f"fit ran out of {where} on {model.device} ({cause}); "
                f"try a smaller batch_size (now {batch}) or a smaller model"
            ) from error
        return False


class _RunningMetrics:
    """Epoch metrics accumulated on the device from each batch's output (no extra forward pass)."""

    def __init__(self, xp, loss, Y_all):
        self.xp, self.loss = xp, loss
        self.regression = loss == "mse"
        if self.regression:  # r2 needs the targets' total sum of squares, known up front
            mean = xp.mean(Y_all, axis=0, keepdims=True)
            self.total_ss = xp.sum((Y_all - mean) * (Y_all - mean))
        self.reset()

    def reset(self):
        self.loss_sum = 0.0
        self.metric_sum = 0.0  # correct labels, or absolute error
        self.count = 0

    def add(self, L, out, Y):
        xp, n = self.xp, out.shape[0]
        self.loss_sum = self.loss_sum + L * n
        if self.loss == "cross_entropy":
            self.metric_sum = self.metric_sum + xp.sum(xp.astype(xp.argmax(out, axis=1) == xp.argmax(Y, axis=1), out.dtype))
        elif self.loss == "binary_cross_entropy":
            self.metric_sum = self.metric_sum + xp.sum(xp.astype((out > 0) == (Y > 0.5), out.dtype)) / out.shape[1]
        else:
            self.metric_sum = self.metric_sum + xp.sum(xp.abs(out - Y)) / out.shape[1]
        self.count += n

    def logs(self) -> dict:
        """The epoch's numbers as Python floats: the one host synchronisation per epoch."""
        count = max(self.count, 1)
        loss = float(self.loss_sum / count)
        if not self.regression:
            return {"loss": loss, "accuracy": float(self.metric_sum / count)}
        total = float(self.total_ss)
        r2 = 1 - loss * count / total if total > 0 else 0.0
        return {"loss": loss, "mse": loss, "mae": float(self.metric_sum / count), "r2": r2}


def _all_finite(xp, arrays) -> bool:
    """One device reduction per buffer (a single one for packed parameters) and one host read."""
    if isinstance(arrays, fast.FlatList) and arrays.is_packed():
        arrays = [arrays.flat]
    total = 0.0
    for a in arrays:
        total = total + xp.sum(a * 0)  # NaN or inf anywhere makes this NaN
    return math.isfinite(float(total))


def _snapshot(model):
    """Copies of the parameters and the optimizer state to fall back on, made on the model's device:
    no transfer to the host and no synchronisation, so taking one every epoch costs a copy."""
    xp = backend.get_namespace(*model.parameters())
    opt = model.optimizer
    state = {key: fast.copy_arrays(arrays, xp) for key, arrays in opt.state.items()}
    return fast.copy_arrays(model.parameters(), xp), state, opt.step_count


def _restore(model, snapshot):
    params, state, step_count = snapshot
    model.set_parameters(params)
    opt = model.optimizer
    opt.state = state  # the snapshot's copies become the state; the learning rate did not change since
    opt.step_count = step_count


def fit(
    model,
    X,
    y,
    *,
    loss=None,
    optimizer="adam",
    learning_rate=None,
    epochs=100,
    batch_size=32,
    validation_data=None,
    validation_split=0.0,
    shuffle=True,
    callbacks=(),
    verbose=1,
    verbose_epoch=1,
    schedule=None,
    clip_norm=None,
    clip_value=None,
):
    """Train `model` on (X, y) and return its History.

    Args:
        X: (n_samples, n_features). y: targets, as for `MLP.loss_and_grads`.
        loss: None infers it from the output activation.
        optimizer: an `nn_xp.optim` optimizer, or "sgd", "momentum", "rmsprop", "adam", "adamw".
            Calling fit again with the same optimizer name keeps its state (Adam's moments and
            step count), so training continues where it stopped.
        learning_rate: None keeps the optimizer's (default, or the one already in use).
        epochs: passes over the data in this call. batch_size: samples per step; None is full batch.
        validation_data: (X_val, y_val); or validation_split: a fraction in [0, 1) held out at random.
        shuffle: a new order every epoch, drawn from the model's seeded host generator.
        callbacks: `nn_xp.callbacks.Callback` objects (or "early_stopping", "terminate_on_nan").
        verbose: 0 silent; 1 the notebooks' "Epoch N Loss : x" line every `verbose_epoch` epochs,
            and a tqdm progress bar when stderr is a terminal.
        schedule: an `nn_xp.schedules.Schedule` or name ("step", "exponential", "cosine", "plateau").
        clip_norm / clip_value: clip gradients by global L2 norm / by value before each step.

    A non-finite training loss stops training: the parameters and optimizer state go back to the
    end of the last good epoch, a RuntimeWarning says so, and history.stop_reason is "non-finite loss".
    Ctrl-C stops after the current step; the epoch so far is recorded and the history returned.
    A second Ctrl-C raises KeyboardInterrupt as soon as the current optimizer step is complete.

    Bad arguments raise ValueError/TypeError naming the parameter before anything changes. Any
    other exception (from a callback, a schedule, a KeyboardInterrupt) propagates unchanged and
    leaves the model as its last completed optimizer step made it, with the completed epochs in
    its history; if no step was completed, the model is left as fit found it. Running out of
    (GPU) memory raises MemoryError suggesting a smaller batch_size.
    """
    # -- every check before any work --
    epochs = _check_positive_int(epochs, "epochs")
    batch_size = _check_positive_int(batch_size, "batch_size", allow_none=True)
    verbose_epoch = _check_positive_int(verbose_epoch, "verbose_epoch")
    if isinstance(verbose, bool) or not isinstance(verbose, numbers.Integral) or verbose < 0:
        raise ValueError(f"verbose must be an integer >= 0, got {verbose!r}")
    if learning_rate is not None:
        _check_optional_positive(learning_rate, "learning_rate")
    clip_norm = _check_optional_positive(clip_norm, "clip_norm")
    clip_value = _check_optional_positive(clip_value, "clip_value")
    if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real) or not (
        0 <= validation_split < 1
    ):
        raise ValueError(f"validation_split must be a number in [0, 1), got {validation_split!r}")
    if validation_data is not None and validation_split:
        raise ValueError("give either validation_data or validation_split, not both")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
    callbacks = check_callbacks(callbacks)
    schedule = get_schedule(schedule)
    loss = losses.check_loss(loss or model.loss, model.output_activation)
    X = model._check_X(X)
    Y = model._check_y(y, X.shape[0], loss)
    X_val = Y_val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a pair (X_val, y_val)")
        X_val = model._check_X(validation_data[0], "validation_data[0]")
        Y_val = model._check_y(validation_data[1], X_val.shape[0], loss, "validation_data[1]")
    _check_validation_split(validation_split, X.shape[0])
    rollback = _Rollback(model, batch_size)
    reuse = model.optimizer is not None and (
        optimizer is model.optimizer or (isinstance(optimizer, str) and optimizer == getattr(model.optimizer, "label", None))
    )
    if not reuse:
        new = get_optimizer(optimizer, model.parameters(), learning_rate)
        new.label = optimizer if isinstance(optimizer, str) else new.name
        new.initial_learning_rate = new.learning_rate  # what schedules scale, across fit calls
        model.optimizer = new
    elif learning_rate is not None:
        model.optimizer.learning_rate = float(learning_rate)
    opt = model.optimizer
    rollback.start()
    with rollback, backend.device_context(model.device), _Interrupt() as interrupt:
        history, logs, bar = _train(
            model, opt, X, Y, X_val, Y_val, loss, epochs, batch_size, validation_split, shuffle, callbacks,
            verbose, verbose_epoch, schedule, clip_norm, clip_value, interrupt,
        )
    if bar is not None:
        bar.close()
    for callback in callbacks:
        callback.on_train_end(logs)
    return history


def _train(model, opt, X, Y, X_val, Y_val, loss, epochs, batch_size, validation_split, shuffle, callbacks,
           verbose, verbose_epoch, schedule, clip_norm, clip_value, interrupt):
    """The epochs of `fit`, after every check; returns (history, last logs, progress bar)."""
    train_rows = None
    if validation_split:
        train_rows, X_val, Y_val = _split_validation(model, X, Y, validation_split)
    xp = backend.get_namespace(X)
    n = X.shape[0] if train_rows is None else train_rows.shape[0]
    step = n if batch_size is None else min(batch_size, n)
    if model.history is None:
        model.history = History()
    history = model.history
    history.stop_reason = None
    first_epoch = history.epoch[-1] + 1 if history.epoch else 0
    base_learning_rate = getattr(opt, "initial_learning_rate", opt.learning_rate)
    # Only mse reads the targets up front (r2's total sum of squares).
    loss_and_grads = model._training_step_function(xp)
    # On NumPy/CuPy each batch is gathered into the arrays of the batch before (fast.Workspace).
    space, raw = (model._workspace, fast.raw(xp)) if fast.is_mutable(xp) else (None, None)
    running = _RunningMetrics(xp, loss, Y if train_rows is None or loss != "mse" else xp.take(Y, train_rows, axis=0))
    model.stop_training = False
    model.loss = loss
    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin({})
    show_bar = verbose > 0 and sys.stderr.isatty()
    bar = None
    if show_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, unit="epoch", leave=False)
    write = bar.write if bar is not None else print
    logs: dict = {}
    try:
        for epoch in range(first_epoch, first_epoch + epochs):
            if schedule is not None:
                rate = schedule(epoch, base_learning_rate, logs)
                try:
                    opt.learning_rate = rate
                except (TypeError, ValueError) as error:
                    raise type(error)(f"schedule {schedule!r} gave an unusable learning rate for epoch {epoch}: {error}") from None
            for callback in callbacks:
                callback.on_epoch_begin(epoch)
            started = time.perf_counter()
            snapshot = _snapshot(model)
            # One shuffle order per epoch; each batch is gathered on its own, so memory stays
            # at the data plus O(batch_size) however large the data set.
            order = backend.to_device(model.rng.permutation(n), model.device) if shuffle else None
            if train_rows is not None:  # positions in the training rows -> rows of X
                order = train_rows if order is None else xp.take(train_rows, order, axis=0)
            running.reset()
            for batch, start in enumerate(range(0, n, step)):
                stop = min(start + step, n)  # the standard forbids slicing past the end
                if order is None:
                    Xb, Yb = X[start:stop, :], Y[start:stop, :]
                else:
                    rows = order[start:stop]
                    if space is not None:
                        Xb, Yb = space.take_rows(raw, "X", X, rows), space.take_rows(raw, "Y", Y, rows)
                    else:
                        Xb, Yb = xp.take(X, rows, axis=0), xp.take(Y, rows, axis=0)
                L, grads, out = loss_and_grads(Xb, Yb, loss)
                if clip_value is not None:
                    grads = clip_grad_value(grads, clip_value)
                if clip_norm is not None:
                    grads, _ = clip_grad_norm(grads, clip_norm)
                interrupt.hold()
                opt.step(grads)
                interrupt.release()
                running.add(L, out, Yb)
                for callback in callbacks:
                    callback.on_batch_end(epoch, batch)
                if interrupt.requested:
                    break
            logs = running.logs()
            if not (math.isfinite(logs["loss"]) and _all_finite(xp, model.parameters())):
                interrupt.hold()
                _restore(model, snapshot)
                history.stop_reason = "non-finite loss"
                interrupt.release()
                restored = f"the end of epoch {epoch - 1}" if history.epoch else "its state before this fit"
                what = (f"the training loss became {logs['loss']}" if not math.isfinite(logs["loss"])
                        else f"the parameters became NaN or infinite (training loss {logs['loss']})")
                warnings.warn(
                    f"{what} in epoch {epoch}; training stopped and the model was restored to {restored}",
                    RuntimeWarning,
                    stacklevel=3,
                )
                break
            if X_val is not None:
                logs.update({f"val_{k}": v for k, v in model._evaluate_checked(X_val, Y_val, loss).items()})
            logs["learning_rate"] = opt.learning_rate
            logs["epoch_time"] = time.perf_counter() - started
            interrupt.hold()
            history.append(epoch, logs)
            interrupt.release()
            if verbose and (epoch % verbose_epoch == 0 or interrupt.requested):
                line = f"Epoch {epoch} Loss : {logs['loss']}"
                if "val_loss" in logs:
                    line += f" - val_loss : {logs['val_loss']}"
                write(line)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{logs['loss']:.4g}")
            for callback in callbacks:
                callback.on_epoch_end(epoch, logs)
            if interrupt.requested:
                history.stop_reason = "interrupted"
                break
            if model.stop_training:
                history.stop_reason = history.stop_reason or "stopped by a callback"
                break
    except BaseException:
        if bar is not None:
            bar.close()
        raise
    return history, logs, bar
