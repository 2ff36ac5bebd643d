"""`fit` and the epochs' loop: checks, the validation split, the optimizer and schedule, callbacks,
history, early stopping and the progress bar around `Epoch.run`."""

from __future__ import annotations

import math
import numbers
import sys
import time

import numpy as np

from .. import backends as backend
from ..backends import ops_for
from ..optim import LBFGS, get_optimizer
from ..optim.schedules import get_schedule
from ..validation import Real, optional_positive, positive_int
from . import distributed as distributed_
from .callbacks import check_callbacks
from .checks import check_compile, check_full_batch, check_validation_split, class_weights
from .distributed import part
from .epoch import Epoch, FullBatchEpoch
from .guards import Interrupt, Rollback
from .history import History
from .metrics import get_metric
from .precision import LossScaler, check_precision
from .streaming import check_streaming, use_streaming


def _split_validation(model, X, Y, validation_split, streamed=False):
    """A random hold-out drawn from the model's generator (sorted data would make the last rows unfit).

    Returns (training row indices, validation row indices, X_val, Y_val): the training rows are
    gathered batch by batch from X itself, so the split does not copy the training data. With
    `streamed` (X in host memory), the held-out rows are gathered there and moved to the device.
    """
    n = X.shape[0]
    n_val = math.floor(n * validation_split)
    host_order = model.rng.permutation(n)
    order = backend.to_device(host_order, model.device)
    xp = backend.get_namespace(Y)
    train, val = order[n_val:], order[:n_val]
    if streamed:
        X_val = backend.to_device(np.take(X, host_order[:n_val], axis=0), model.device)
    else:
        X_val = ops_for(xp).take_rows(X, val)
    return train, val, X_val, xp.take(Y, val, axis=0)


class _BarAdvance:
    """Moves the progress bar on after every batch (tqdm redraws it at most every 0.2 s)."""

    def __init__(self, bar):
        self.bar = bar

    def on_batch_end(self, epoch, batch):
        self.bar.update(1)


def _metric_value(model, head, X, Y, W, metric) -> float:
    """validation_metric's figure: metric(y_true, y_pred) on the host, in predict's terms (the
    labels for classification, the values for regression). Every rank holds all of X_val."""
    A = backend.to_numpy(model._forward(X))
    Y = backend.to_numpy(Y)
    if head.classifier:
        if A.shape[1] > 1 and model._output.name == "softmax":
            Y, A = np.argmax(Y, axis=1), np.argmax(A, axis=1)
        else:  # sigmoid outputs: 0/1 per output
            Y, A = (Y > 0.5).astype(np.int64), (A > 0.5).astype(np.int64)
            if A.shape[1] == 1:
                Y, A = Y[:, 0], A[:, 0]
        if model.classes is not None and A.ndim == 1:
            Y, A = model.preprocessor.decode(Y), model.preprocessor.decode(A)
    elif A.shape[1] == 1:
        Y, A = Y[:, 0], A[:, 0]
    weights = {} if W is None else {"sample_weight": backend.to_numpy(W).reshape(-1)}
    return float(metric(Y, A, **weights))


def _evaluate(model, X, Y, head, comm, W=None) -> dict:
    """Validation figures; under a communicator each rank scores its part of the rows and the
    sums are combined (r2 from the global squared error and the targets' total sum of squares)."""
    if comm is None:
        return model.evaluate_checked(X, Y, head, W)
    xp = backend.get_namespace(Y)
    n = X.shape[0]
    lo, hi = part(n, comm.rank, comm.size)
    Wl = None if W is None else W[lo:hi, :]
    local = model.evaluate_checked(X[lo:hi, :], Y[lo:hi, :], head, Wl) if hi > lo else {}
    share = (hi - lo) if W is None else float(xp.sum(Wl))
    keys = ["loss", "accuracy"] if head.classifier else ["loss", "mse", "mae"]
    *sums, total_weight = comm.allreduce_host([local.get(k, 0.0) * share for k in keys] + [share])
    result = {k: float(s) / total_weight for k, s in zip(keys, sums)}
    if not head.classifier:
        w = xp.ones((n, 1), dtype=Y.dtype) if W is None else W
        mean = xp.sum(Y * w, axis=0, keepdims=True) / xp.sum(w)
        total = float(xp.sum((Y - mean) * (Y - mean) * w))
        result["r2"] = 1 - result["mse"] * total_weight * Y.shape[1] / (total if total > 0 else 1.0)
    return result


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
    validation_metric=None,
    shuffle=True,
    callbacks=(),
    verbose=1,
    verbose_epoch=None,
    schedule=None,
    clip_norm=None,
    clip_value=None,
    l2=0.0,
    sample_weight=None,
    class_weight=None,
    precision="float32",
    distributed=None,
    streaming="auto",
    compile=None,
):
    """Train `model` on (X, y) and return its History.

    Args:
        X: (n_samples, n_features). y: targets, as for `MLP.loss_and_grads`.
        loss: a name ("mse", "absolute_error", "huber", "quantile", "cross_entropy", ...) or a spec dict
            with its settings ({"name": "quantile", "quantile": 0.9}; heads.py); None infers it
            from the output activation. The model keeps it (`model.loss`, saved with the model).
        optimizer: an `nn_xp.optim` optimizer, or "sgd", "momentum", "rmsprop", "adam", "adamw",
            "lbfgs" (full-batch: batch_size=None, one L-BFGS step of up to max_iter iterations per
            epoch; no clipping and no callbacks with on_batch_end).
            Calling fit again with the same optimizer name keeps its state (Adam's moments and
            step count), so training continues where it stopped.
        learning_rate: None keeps the optimizer's (default, or the one already in use).
        epochs: passes over the data in this call. batch_size: samples per step; None is full batch.
        validation_data: (X_val, y_val) or (X_val, y_val, sample_weight_val); or validation_split: a
            fraction in [0, 1) held out at random (with its rows' sample weights).
        validation_metric: one more validation figure, logged per epoch as "val_<name>" (in the
            history, to callbacks: `EarlyStopping(monitor="val_f1_macro")`): a name of
            `nn_xp.training.metrics.METRICS` ("accuracy", "balanced_accuracy", "f1_macro", "r2", "mse",
            "rmse", "mae"), or a callable(y_true, y_pred) -> float such as scikit-learn's
            `matthews_corrcoef`, named "val_<its __name__>" (and given sample_weight= where the
            validation data has weights). y_true and y_pred are the labels (classification, as
            `predict` gives them) or the values (regression, 1-D for one output). EarlyStopping
            and ModelCheckpoint take mode="max" for a callable that is a score.
        shuffle: a new order every epoch, drawn from the model's seeded host generator.
        callbacks: `nn_xp.callbacks.Callback` objects (or "early_stopping", "terminate_on_nan").
        verbose: 0 silent; 1: on a terminal a progress bar that moves with every batch and shows
            the last epoch's loss and validation figures; elsewhere, or where `verbose_epoch` is
            given, the notebooks' "Epoch N Loss : x" line every `verbose_epoch` epochs (default:
            a tenth of the epochs).
        schedule: an `nn_xp.schedules.Schedule` or name ("step", "exponential", "cosine", "plateau").
        clip_norm / clip_value: clip gradients by global L2 norm / by value before each step.
        l2: the L2 penalty on the weights (not the biases): each batch of m samples adds
            l2 / (2 m) * sum_l ||W_l||^2 to its loss (the notebooks' lambda / (2m), scikit-learn's
            alpha). The history's "loss" includes it; "mse" and the validation figures do not.
        sample_weight: (n_samples,) weights >= 0: each batch's loss is the weighted mean
            sum_i w_i l_i / sum_i w_i, so integer weights equal repeated rows; the metrics are
            weighted too. class_weight: {class index: weight} or "balanced" (n_samples /
            (n_classes * count of the class), scikit-learn's rule), multiplying sample_weight.
        precision: "float32" (the model's own dtype), or "mixed_float16" / "mixed_bfloat16" (Keras'
            names): float32 master weights and optimizer state, half-precision products, float32
            losses; float16 with dynamic loss scaling (precision.py; NumPy emulates it slowly).
        distributed: None; a communicator from `nx.distributed.init()`; or True for one. Every
            rank passes the same X and y (a np.memmap for data larger than memory: each rank
            reads only its rows); `batch_size` is the global batch, split across the ranks, and
            training equals one process training with that batch, to rounding. Rank 0's model
            and optimizer are broadcast first; the history is global; callbacks' decision to
            stop is rank 0's; only rank 0 prints, and callbacks that write files run on rank 0
            alone. A failure on one rank stops every rank with its message.
        streaming: "auto" (default), True or False. With True, or "auto" on a GPU when X would
            take more than half of the GPU's free memory, X stays in host memory (a NumPy array or
            a np.memmap) and each batch is gathered there and copied to the GPU while the step
            before runs (streaming.py); the results are those of X on the GPU. Mini-batches only;
            the targets, weights and validation data are moved to the device as usual.
        compile: None (default) or True: on a JAX device ("jax:cpu", "jax:gpu[:N]") the training
            step is compiled with jax.jit, a pure function of the parameters, buffers, optimizer
            state, batch, step and learning rate written with the same layers, head and optimizer
            (training/compiled.py), and each epoch's batches run under jax.lax.scan in one
            call (its last, partial batch in a call of its own where the model has Dropout
            layers; batch by batch, still compiled, where a callback has on_batch_end or the
            progress bar shows); the results are those of the uncompiled step, to rounding. The
            compiled functions are kept on the model: later epochs and fits reuse them. The
            learning rate is an argument, so schedules cause no recompilation. L-BFGS,
            mixed precision, distributed training and streaming run uncompiled (with None; True
            refuses them). False: one operation at a time, as on the other devices. True on a
            device whose library does not compile raises ValueError.

    Dropout layers (`MLP(..., dropout=...)`) drop units only here, keyed by the optimizer's step
    count and each sample's row in X, so a resumed fit continues the same masks.

    A non-finite training loss stops training: the parameters and optimizer state go back to the
    end of the last good epoch, a RuntimeWarning says so, and history.stop_reason is "non-finite loss".
    Ctrl-C stops after the current step (under compile, after the current compiled call: the
    epoch's batches are one); the epoch so far is recorded and the history returned.
    A second Ctrl-C raises KeyboardInterrupt as soon as the current optimizer step is complete.

    Bad arguments raise ValueError/TypeError naming the parameter before anything changes. Any
    other exception (from a callback, a schedule, a KeyboardInterrupt) propagates unchanged and
    leaves the model as its last completed optimizer step made it, with the completed epochs in
    its history; if no step was completed, the model is left as fit found it. Running out of
    (GPU) memory raises MemoryError suggesting a smaller batch_size.
    """
    # -- every check before any work --
    epochs = positive_int(epochs, "epochs")
    batch_size = positive_int(batch_size, "batch_size", allow_none=True)
    lines = verbose_epoch is not None  # asked for: the notebooks' lines even under a progress bar
    verbose_epoch = positive_int(verbose_epoch, "verbose_epoch") if lines else max(1, epochs // 10)
    if isinstance(verbose, bool) or not isinstance(verbose, numbers.Integral) or verbose < 0:
        raise ValueError(f"verbose must be an integer >= 0, got {verbose!r}")
    optional_positive(learning_rate, "learning_rate")
    clip_norm = optional_positive(clip_norm, "clip_norm")
    clip_value = optional_positive(clip_value, "clip_value")
    l2 = Real(0.0)(l2, "l2")
    if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real) or not (
        0 <= validation_split < 1
    ):
        raise ValueError(f"validation_split must be a number in [0, 1), got {validation_split!r}")
    if validation_data is not None and validation_split:
        raise ValueError("give either validation_data or validation_split, not both")
    metric = None if validation_metric is None else get_metric(validation_metric)
    if metric is not None and validation_data is None and not validation_split:
        raise ValueError("validation_metric needs validation data: give validation_data or validation_split")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
    callbacks = check_callbacks(callbacks)
    check_streaming(streaming)
    if compile not in (None, True, False):
        raise TypeError(f"compile must be None, True or False, got {compile!r}")
    check_full_batch(optimizer, batch_size, clip_norm, clip_value, callbacks)
    schedule = get_schedule(schedule)
    head = model.head(loss)
    half = check_precision(precision, model)
    comm = distributed_.resolve(distributed)
    if half is not None and comm is not None and comm.size > 1:
        raise ValueError("precision='mixed_*' with distributed training is not supported yet; use float32")
    lbfgs = getattr(optimizer, "name", optimizer) == "lbfgs"
    if lbfgs and (half is not None or (comm is not None and comm.size > 1)):
        raise ValueError("optimizer='lbfgs' trains in one process at the model's precision: leave out "
                         "precision= and distributed=")
    if comm is not None and comm.size == 1:
        comm = None
    streamed = use_streaming(streaming, X, model.device, model.dtype, full_batch=lbfgs)
    if compile:
        check_compile(model.device, lbfgs=lbfgs, half=half, distributed=comm is not None, streamed=streamed)
    X = model.check_input(X, comm=comm, host=streamed)
    Y = model.check_target(y, X.shape[0], head)
    W = class_weights(model, head, Y, model.check_weights(sample_weight, X.shape[0]), class_weight)
    X_val = Y_val = W_val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise TypeError("validation_data must be a pair (X_val, y_val) or a triple (X_val, y_val, sample_weight)")
        X_val = model.check_input(validation_data[0], "validation_data[0]", comm=comm)
        Y_val = model.check_target(validation_data[1], X_val.shape[0], head, "validation_data[1]")
        if len(validation_data) == 3:
            W_val = model.check_weights(validation_data[2], X_val.shape[0], "validation_data[2]")
    check_validation_split(validation_split, X.shape[0])
    if comm is not None:  # the same checks give the same answer on every rank: no rank is left waiting
        if batch_size is not None and batch_size < comm.size:
            raise ValueError(
                f"batch_size={batch_size} is smaller than the number of ranks ({comm.size}): batch_size is "
                "the global batch, split across the ranks"
            )
        n_train = X.shape[0] - math.floor(X.shape[0] * validation_split)
        last = n_train % batch_size if batch_size is not None else 0
        if any(layer.couples_rows for layer in model.layers) and 0 < last < comm.size:
            # A rank without rows would leave the others waiting in BatchNorm's allreduce.
            raise ValueError(f"BatchNorm under distributed training needs every global batch to give each of the "
                             f"{comm.size} ranks a row, but the last batch of {n_train} training samples in batches "
                             f"of {batch_size} has {last}: choose batch_size so that it has at least {comm.size}")
        distributed_.check_same_data(comm, "X and y", X, Y)
        if X_val is not None:
            distributed_.check_same_data(comm, "validation_data", X_val, Y_val)
    rollback = Rollback(model, batch_size)
    same_name = isinstance(optimizer, str) and optimizer == getattr(model.optimizer, "label", None)
    reuse = model.optimizer is not None and (optimizer is model.optimizer or same_name)
    if not reuse:
        new = get_optimizer(optimizer, model.parameters(), learning_rate)
        new.label = optimizer if isinstance(optimizer, str) else new.name
        new.initial_learning_rate = new.learning_rate  # what schedules scale, across fit calls
        model.optimizer = new
    elif learning_rate is not None:
        model.optimizer.learning_rate = float(learning_rate)
    opt = model.optimizer
    rollback.start()
    if half == "float16" and model.loss_scaler is None:
        model.loss_scaler = LossScaler()
    if comm is not None:
        verbose = verbose if comm.rank == 0 else 0
        if comm.rank != 0:
            callbacks = [c for c in callbacks if not c.writes_files]
    with rollback, backend.device_context(model.device), Interrupt() as interrupt:
        try:
            if comm is not None:
                distributed_.broadcast_training_state(model, comm)
            history, logs, bar = _train(
                model, opt, X, Y, W, X_val, Y_val, W_val, head, epochs, batch_size, validation_split, shuffle,
                callbacks, verbose, verbose_epoch, schedule, clip_norm, clip_value, l2, interrupt, comm, lines, half,
                streamed, metric, compile,
            )
        except BaseException as error:
            if comm is None:
                raise
            comm.abort(f"rank {comm.rank} of {comm.size} failed: {type(error).__name__}: {error}")
    if bar is not None:
        bar.close()
    for callback in callbacks:
        callback.on_train_end(logs)
    return history


def _train(model, opt, X, Y, W, X_val, Y_val, W_val, head, epochs, batch_size, validation_split, shuffle,
           callbacks, verbose, verbose_epoch, schedule, clip_norm, clip_value, l2, interrupt, comm=None,
           lines=True, half=None, streamed=False, metric=None, compile=None):
    """The epochs of `fit`, after every check; returns (history, last logs, progress bar)."""
    train_rows = None
    if validation_split:
        train_rows, val_rows, X_val, Y_val = _split_validation(model, X, Y, validation_split, streamed)
        if W is not None:
            W_val = backend.get_namespace(W).take(W, val_rows, axis=0)
    if model.history is None:
        model.history = History()
    history = model.history
    history.stop_reason = None
    first_epoch = history.epoch[-1] + 1 if history.epoch else 0
    base_learning_rate = getattr(opt, "initial_learning_rate", opt.learning_rate)
    show_bar = verbose > 0 and sys.stderr.isatty()
    bar = None
    batch_hooks = list(callbacks)
    if show_bar:
        from tqdm.auto import tqdm

        steps = -(-(X.shape[0] if train_rows is None else train_rows.shape[0]) // (batch_size or X.shape[0]))
        bar = tqdm(total=epochs * steps, unit="batch", leave=False, mininterval=0.2)
        batch_hooks.append(_BarAdvance(bar))
    runner = (FullBatchEpoch if isinstance(opt, LBFGS) else Epoch)(
        model, X, Y, head, batch_size, l2=l2, clip_norm=clip_norm, clip_value=clip_value, callbacks=batch_hooks,
        train_rows=train_rows, comm=comm, weights=W, half=half, streaming=streamed, compile=compile)
    n = runner.n
    model.stop_training = False
    model.loss = head.spec()
    model.l2 = l2
    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin({})
    write = bar.write if bar is not None else print
    logs: dict = {}
    try:
        for epoch in range(first_epoch, first_epoch + epochs):
            if schedule is not None:
                rate = schedule(epoch, base_learning_rate, logs)
                try:
                    opt.learning_rate = rate
                except (TypeError, ValueError) as error:
                    raise type(error)(
                        f"schedule {schedule!r} gave an unusable learning rate for epoch {epoch}: {error}"
                    ) from None
            for callback in callbacks:
                callback.on_epoch_begin(epoch)
            started = time.perf_counter()
            # One shuffle order per epoch; each batch is gathered on its own, so memory stays
            # at the data plus O(batch_size) however large the data set.
            # Drawn on the host; Epoch.run moves it to the device (a compiled epoch takes it as it is).
            order = model.rng.permutation(n) if shuffle else None
            logs, stop_reason = runner.guarded_run(epoch, order, interrupt, stacklevel=5)
            if stop_reason is not None:
                history.stop_reason = stop_reason
                break
            if X_val is not None:
                logs.update({f"val_{k}": v for k, v in _evaluate(model, X_val, Y_val, head, comm, W_val).items()})
                if metric is not None:
                    logs[f"val_{metric[0]}"] = _metric_value(model, head, X_val, Y_val, W_val, metric[1])
            logs["learning_rate"] = opt.learning_rate
            logs["epoch_time"] = time.perf_counter() - started
            interrupt.hold()
            history.append(epoch, logs)
            interrupt.release()
            if verbose and (bar is None or lines) and (epoch % verbose_epoch == 0 or interrupt.requested):
                line = f"Epoch {epoch} Loss : {logs['loss']}"
                if "val_loss" in logs:
                    line += f" - val_loss : {logs['val_loss']}"
                write(line)
            if bar is not None:
                shown = {k: v for k, v in logs.items() if k not in ("learning_rate", "epoch_time")}
                bar.set_description(f"epoch {epoch}")
                bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
            for callback in callbacks:
                callback.on_epoch_end(epoch, logs)
            interrupted = interrupt.requested
            if comm is not None:  # rank 0's callbacks decide for every rank; a Ctrl-C on any stops all
                model.stop_training = comm.broadcast_object(model.stop_training)
                interrupted = comm.allreduce_host([float(interrupt.requested)])[0] > 0
            if interrupted:
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
