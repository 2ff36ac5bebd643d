"""Callbacks for `fit`: hooks called at the start and end of training, of each epoch and of each
batch. Write your own by subclassing `Callback` and overriding the hooks you need; set
`self.model.stop_training = True` to end training after the current epoch.

`logs` at epoch end holds the epoch's numbers as Python floats: "loss", the task's metrics
("accuracy"; or "mse", "mae", "r2"), their "val_" twins when validating, "learning_rate" and
"epoch_time". Batch hooks get no loss: reading it would synchronise the device every step.
"""

from __future__ import annotations

import csv
import math
import numbers
import os

from .. import backends
from .metrics import GREATER_IS_BETTER


class Callback:
    """Base class: every hook does nothing.

    `writes_files`: a callback that writes files (ModelCheckpoint) runs on rank 0 alone in
    distributed training; the others run on every rank, with the same (global) logs.
    """

    model = None
    writes_files = False

    def set_model(self, model) -> None:
        self.model = model

    def on_train_begin(self, logs: dict) -> None:
        pass

    def on_epoch_begin(self, epoch: int) -> None:
        pass

    def on_batch_end(self, epoch: int, batch: int) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        pass

    def on_train_end(self, logs: dict) -> None:
        pass


def _mode_for(monitor: str, mode: str = "auto") -> str:
    """"min" or "max": `mode` itself, or for "auto" "max" where the figure is a score (accuracy, r2,
    and the other greater-is-better names of nn_xp.training.metrics), else "min"."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    return "max" if monitor.split("val_")[-1] in GREATER_IS_BETTER else "min"


def _check_monitor(monitor):
    if not isinstance(monitor, str) or not monitor:
        raise TypeError(f"monitor must be a metric name such as 'val_loss' or 'loss', got {monitor!r}")
    return monitor


def _monitored(logs: dict, monitor: str, owner: str):
    if monitor not in logs:
        raise ValueError(
            f"{owner}: monitor={monitor!r} is not among the logged values {sorted(logs)}; "
            "pass validation data to watch a 'val_' value"
        )
    return logs[monitor]


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs.

    With `restore_best_weights`, the parameters of the best epoch are put back when training stops
    (also when it runs to the last epoch), as in Keras. `mode`: "min", "max", or "auto" ("max" for
    accuracy, r2 and nn_xp.training.metrics' other scores, such as "val_f1_macro" from
    `fit(..., validation_metric="f1_macro")`; "min" for anything else, a callable's included).
    """

    def __init__(self, monitor="val_loss", patience=10, min_delta=0.0, restore_best_weights=False, mode="auto"):
        self.monitor = _check_monitor(monitor)
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) or patience < 0:
            raise ValueError(f"patience must be a non-negative integer, got {patience!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, numbers.Real) or not min_delta >= 0:
            raise ValueError(f"min_delta must be a number >= 0, got {min_delta!r}")
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.restore_best_weights = bool(restore_best_weights)
        self.mode = _mode_for(self.monitor, mode)
        self.best = None
        self.best_epoch = None
        self.best_weights = None
        self.wait = 0
        self.stopped_epoch = None

    def on_train_begin(self, logs):
        self.best, self.best_epoch, self.best_weights, self.wait, self.stopped_epoch = None, None, None, 0, None

    def _improved(self, value) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs):
        value = _monitored(logs, self.monitor, "EarlyStopping")
        if not math.isfinite(value):
            return
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                xp = backends.get_namespace(*self.model.parameters())
                self.best_weights = [xp.asarray(p, copy=True) for p in self.model.parameters()]
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_parameters(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model (with optimizer state and history) to `path` after each epoch, or only
    when `monitor` improved with `save_best_only`. `path` may hold "{epoch}", e.g. "ckpt-{epoch}.npz".
    Each write is atomic: a crash mid-save leaves the previous file intact."""

    writes_files = True

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto"):
        if not isinstance(path, (str, bytes)) and not hasattr(path, "__fspath__"):
            raise TypeError(f"path must be a file path, got {path!r}")
        self.path = str(path)
        self.monitor = _check_monitor(monitor)
        self.save_best_only = bool(save_best_only)
        self.mode = _mode_for(self.monitor, mode)
        self.best = None
        self.saved = []

    def on_epoch_end(self, epoch, logs):
        if self.save_best_only:
            value = _monitored(logs, self.monitor, "ModelCheckpoint")
            better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
            if not (math.isfinite(value) and better):
                return
            self.best = value
        path = self.path.format(epoch=epoch)
        self.model.save(path)
        self.saved.append(path)


class TerminateOnNaN(Callback):
    """Stop as soon as the training or validation loss is NaN or infinite.

    `fit` always guards the training loss itself (it restores the last good epoch and warns);
    this callback adds the same watch on the validation loss, and keeps Keras code working.
    """

    def on_epoch_end(self, epoch, logs):
        for key in ("loss", "val_loss"):
            if key in logs and not math.isfinite(logs[key]):
                self.model.stop_training = True


class CSVLogger(Callback):
    """One CSV row per epoch, as Keras' CSVLogger: epoch, loss, the metrics, the validation
    figures, learning_rate, epoch_time, under a header row. Numbers are written in full (Python's
    repr), so reading them back gives history.history's values exactly.

    The file is written once, at the end of training (also after Ctrl-C or a diverged run), through
    `files.atomic_write`: it is always a whole log, never one cut off mid-row, and training pays
    no write and fsync per epoch (a small network's epoch takes about as long as an fsync). A
    crash loses the log, not the figures: they are in `model.history` and in every saved model.

    Args:
        path: the .csv file. append: False replaces it; True keeps its rows and adds this run's
            (a column one run lacks is left empty in its rows).
        separator: the field delimiter.
    """

    writes_files = True

    def __init__(self, path, append=False, separator=","):
        if not isinstance(path, (str, bytes)) and not hasattr(path, "__fspath__"):
            raise TypeError(f"path must be a file path, got {path!r}")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"separator must be one character, got {separator!r}")
        self.path = os.fsdecode(os.fspath(path))
        self.append = bool(append)
        self.separator = separator
        self.rows: list = []

    def on_train_begin(self, logs):
        self.rows = []

    def on_epoch_end(self, epoch, logs):
        self.rows.append({"epoch": int(epoch), **logs})

    def on_train_end(self, logs):
        from ..files import atomic_write
        from .history import log_order

        columns, rows = ["epoch"], []
        if self.append and os.path.isfile(self.path) and os.path.getsize(self.path) > 0:
            with open(self.path, newline="") as handle:
                reader = csv.DictReader(handle, delimiter=self.separator)
                columns, rows = list(reader.fieldnames or ["epoch"]), list(reader)
        seen = {key: None for row in self.rows for key in row if key != "epoch"}
        columns += [key for key in log_order(seen) if key not in columns]
        rows += [{key: _cell(value) for key, value in row.items()} for row in self.rows]
        with atomic_write(self.path, "w", what="training log", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, delimiter=self.separator, restval="")
            writer.writeheader()
            writer.writerows(rows)


def _cell(value) -> str:
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    return str(value)


# Callbacks that need no arguments can be named by a string.
CALLBACKS = {"early_stopping": EarlyStopping, "terminate_on_nan": TerminateOnNaN}


def check_callbacks(callbacks) -> list:
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    items = list(callbacks) if isinstance(callbacks, (list, tuple)) else None
    if items is None:
        raise TypeError(f"callbacks must be a list of Callback objects, got {callbacks!r}")
    for index, item in enumerate(items):
        if isinstance(item, str):
            if item not in CALLBACKS:
                raise ValueError(f"callbacks[{index}] must be one of {sorted(CALLBACKS)} or a Callback, got {item!r}")
            items[index] = CALLBACKS[item]()
        elif not isinstance(item, Callback):
            raise TypeError(f"callbacks[{index}] must be a Callback (subclass nn_xp.callbacks.Callback), got {item!r}")
    return items
