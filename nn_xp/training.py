"""The training loop behind `MLP.fit`: mini-batch gradient descent with any optimizer.

Batch, mini-batch and stochastic gradient descent are all `batch_size` choices of this one loop
(`batch_size=None` or n_samples: batch; 1: stochastic). The data goes to the model's device once;
each epoch draws one shuffle order from the model's host generator, and each batch is gathered on
the device by those indices. The loss stays on the device and reaches the host once per epoch.
"""

from __future__ import annotations

import copy
import math
import numbers
import signal
import sys
import threading
import time
import warnings

import numpy as np

from . import backends as backend
from . import distributed as distributed_
from .backends import FlatList, ops_for
from .callbacks import Callback, check_callbacks
from .distributed import part
from .history import History
from .metrics import get_metric
from .optim import LBFGS, get_optimizer
from .optim.clipping import clip_grad_norm, clip_grad_value
from .optim.schedules import get_schedule
from .precision import LossScaler, check_precision
from .streaming import HostBatches, check_streaming, use_streaming
from .validation import Real, optional_positive, positive_int


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


def _check_validation_split(validation_split, n: int) -> None:
    n_val = math.floor(n * validation_split)
    if validation_split and (n_val == 0 or n_val == n):
        raise ValueError(
            f"validation_split={validation_split} leaves {n_val} of {n} samples for validation; "
            "it must leave at least one sample on each side"
        )


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


class _RunningMetrics:
    """Epoch metrics accumulated on the device from each batch's output (no extra forward pass)."""

    def __init__(self, xp, head, Y_all, comm=None, W_all=None):
        self.xp, self.head, self.comm = xp, head, comm
        self.regression = not head.classifier
        if self.regression:  # r2 needs the targets' (weighted) total sum of squares, known up front
            w = xp.ones((Y_all.shape[0], 1), dtype=Y_all.dtype) if W_all is None else W_all
            mean = xp.sum(Y_all * w, axis=0, keepdims=True) / xp.sum(w)
            self.total_ss = xp.sum((Y_all - mean) * (Y_all - mean) * w)
            self.n_outputs = Y_all.shape[1]
        self.reset()

    def reset(self):
        self.loss_sum = 0.0
        self.penalty_sum = 0.0
        self.data_loss = self.penalty = 0.0  # the epoch's means, once logs() has read them
        self.metric_sum = 0.0  # correct labels, or absolute error
        self.count = 0

    def add(self, L, penalty, out, Y, W=None):
        n = out.shape[0] if W is None else self.xp.sum(W)  # samples, or their total weight
        self.loss_sum = self.loss_sum + L * n
        if penalty is not None:
            self.penalty_sum = self.penalty_sum + penalty * n
        self.metric_sum = self.metric_sum + self.head.batch_metric(self.xp, out, Y, W)
        self.count = self.count + n

    def logs(self) -> dict:
        """The epoch's numbers as Python floats: the one host synchronisation per epoch.

        "loss" is the objective trained on: the data loss plus the L2 penalty, if any (as Keras
        reports it); "mse" (regression) is the data loss alone.
        """
        sums = [float(self.loss_sum), float(self.penalty_sum), float(self.metric_sum), float(self.count)]
        if self.comm is not None:  # every rank's share of the epoch
            sums = self.comm.allreduce_host(sums).tolist()
        loss_sum, penalty_sum, metric_sum, count = sums
        count = max(count, 1)
        data = loss_sum / count
        self.data_loss, self.penalty = data, penalty_sum / count
        loss = data + self.penalty
        if not self.regression:
            return {"loss": loss, "accuracy": metric_sum / count}
        if self.head.loss != "mse":  # the data loss is no squared error (poisson): mse and r2 unknown here
            return {"loss": loss, "mae": metric_sum / count}
        total = float(self.total_ss)
        r2 = 1 - data * count * self.n_outputs / total if total > 0 else 0.0
        return {"loss": loss, "mse": data, "mae": metric_sum / count, "r2": r2}


def _all_finite(xp, arrays) -> bool:
    """One device reduction per buffer (a single one for packed parameters) and one host read."""
    if isinstance(arrays, FlatList) and arrays.is_packed():
        arrays = [arrays.flat]
    total = 0.0
    with np.errstate(invalid="ignore"):  # inf * 0 is the NaN this looks for, not a mistake to warn of
        for a in arrays:
            total = total + xp.sum(a * 0)  # NaN or inf anywhere makes this NaN
    return math.isfinite(float(total))


def _snapshot(model):
    """Copies of the parameters and the optimizer state to fall back on, made on the model's device,
    and the buffers (which the layers replace, never write into): no transfer to the host and no
    synchronisation, so taking one every epoch costs a copy."""
    ops = ops_for(backend.get_namespace(*model.parameters()))
    opt = model.optimizer
    state = {key: ops.copy_arrays(arrays) for key, arrays in opt.state.items()}
    return ops.copy_arrays(model.parameters()), state, opt.step_count, model.buffers()


def _restore(model, snapshot):
    params, state, step_count, buffers = snapshot
    model.set_parameters(params)
    model._store.buffers[:] = buffers
    opt = model.optimizer
    opt.state = state  # the snapshot's copies become the state; the learning rate did not change since
    opt.step_count = step_count


def l2_penalty(ops, params, grads, weights, l2: float, n: int):
    """The L2 penalty of a batch of n samples on the weights (not the biases), added to their gradients:

        L += l2 / (2 n) * sum_l ||W_l||^2,      dW_l += l2 / n * W_l

    (the notebooks' lambda / (2m) and scikit-learn's alpha, m the batch size, or with sample
    weights the batch's total weight, as scikit-learn's MLP and repeated rows have it). Returns the penalty
    as a 0-d device array; the gradients are updated in place where the backend allows it.
    """
    xp = ops.xp
    penalty = 0.0
    for i in weights:
        W = params[i]
        flat = xp.reshape(W, (-1,))
        penalty = penalty + xp.vecdot(flat, flat)
        grads[i] = ops.add_scaled(grads[i], W, l2 / n)
    return penalty * (l2 / (2 * n))


class _BarAdvance:
    """Moves the progress bar on after every batch (tqdm redraws it at most every 0.2 s)."""

    def __init__(self, bar):
        self.bar = bar

    def on_batch_end(self, epoch, batch):
        self.bar.update(1)


class Epoch:
    """One pass over the data in batches: what `fit` repeats, and what the scikit-learn estimators
    call once per epoch with their own batch order (after checking everything once).

    Args:
        model: the model; its optimizer takes the steps.
        X, Y: checked arrays on the model's device. head: the output head (model.head(loss)).
        batch_size: samples per step (None: the whole data). l2: the weights' L2 penalty.
        clip_norm / clip_value: gradient clipping before each step.
        callbacks: their on_batch_end is called after each step.
        train_rows: the rows of X to train on (None: all).
        weights: sample weights, a column (n_samples, 1) (model.check_weights), or None.
        half: None, or "float16" / "bfloat16" for mixed precision (precision.py); float16 scales
            the loss with the model's `loss_scaler` and skips the steps whose gradients overflow.
        comm: a communicator (distributed.py): each batch is split across its ranks, and the
            gradients are summed by one allreduce of the flat buffer before the step.
        streaming: X is a NumPy array in host memory, and each batch is gathered there and copied
            to the model's device while the step before runs (streaming.py); Y and the weights
            are on the device.
    """

    def __init__(self, model, X, Y, head, batch_size, *, l2=0.0, clip_norm=None, clip_value=None, callbacks=(),
                 train_rows=None, comm=None, weights=None, half=None, streaming=False):
        self.model, self.X, self.Y, self.head = model, X, Y, head
        self.xp = backend.get_namespace(Y)  # the model's namespace (a streamed X stays on the host)
        self.ops = ops_for(self.xp)
        self.train_rows = train_rows
        self.n = X.shape[0] if train_rows is None else train_rows.shape[0]
        self.step = self.n if batch_size is None else min(batch_size, self.n)
        self.source = HostBatches(X, model.device, self.step) if streaming else None
        self.l2, self.clip_norm, self.clip_value, self.callbacks = l2, clip_norm, clip_value, callbacks
        self.weights = model.decayed()  # the parameters the L2 penalty applies to, as the layers declare
        self.W = weights
        self.half = half
        Y_stats, W_stats = Y, weights
        if train_rows is not None and not head.classifier:
            Y_stats = self.xp.take(Y, train_rows, axis=0)
            W_stats = None if weights is None else self.xp.take(weights, train_rows, axis=0)
        self.comm = comm if comm is not None and comm.size > 1 else None
        self.running = _RunningMetrics(self.xp, head, Y_stats, self.comm, W_stats)
        # A layer that couples the rows of a batch (BatchNorm) takes its statistics over every rank's part.
        self.coupled = any(layer.couples_rows for layer in model.layers)

    def run(self, epoch: int, order=None, interrupt=None) -> dict:
        """Train on every batch once, in `order` (positions in the training rows; None: as stored).

        Returns the epoch's logs (floats). Stops after the current step when `interrupt.requested`.
        """
        model, X, Y, W, xp, ops = self.model, self.X, self.Y, self.W, self.xp, self.ops
        opt = model.optimizer
        workspace = model.workspace if ops.mutable else None
        if self.train_rows is not None:  # positions in the training rows -> rows of X
            order = self.train_rows if order is None else xp.take(self.train_rows, order, axis=0)
        self.running.reset()
        comm, source = self.comm, self.source
        batches = []  # (start, stop) of each global batch, and of this rank's part of it
        for start in range(0, self.n, self.step):
            stop = min(start + self.step, self.n)  # the standard forbids slicing past the end
            lo, hi = part(stop - start, comm.rank, comm.size) if comm is not None else (0, stop - start)
            batches.append((start, stop, start + lo, start + hi))
        host_order = None if source is None or order is None else backend.to_numpy(order)

        def host_rows(k):  # batch k's rows of X, for the host source
            _, _, first, last = batches[k]
            return slice(first, last) if host_order is None else host_order[first:last]

        if source is not None:
            source.start(0, host_rows(0))
        try:
            for batch, (start, stop, first, last) in enumerate(batches):
                m = stop - start  # the batch's size, over every rank
                Wb = total_weight = None
                stop_here = False  # under a communicator: every rank's Ctrl-C, as all of them saw it
                if comm is not None:  # this rank's part of the batch; and every rank stops at the same step
                    if W is not None:  # the whole batch's weight, for this part's share
                        total_weight = xp.sum(W[start:stop, :] if order is None
                                              else ops.take_rows(W, order[start:stop]))
                    if interrupt is not None:
                        stop_here = comm.allreduce_host([float(interrupt.requested)])[0] > 0
                        interrupt.requested = interrupt.requested or stop_here
                start, stop = first, last
                slot = batch % 2
                if order is None:
                    Xb = source.batch(slot, stop - start) if source is not None else X[start:stop, :]
                    Yb = Y[start:stop, :]
                    Wb = None if W is None else W[start:stop, :]
                    rows = xp.arange(start, stop) if model.needs_rows else None
                else:  # one gather for the batch's rows of X (unless streamed), Y and the weights
                    rows, k = order[start:stop], stop - start
                    Xd = X if source is None else None
                    outs = None
                    if workspace is not None:  # gathered into the arrays of the batch before
                        outs = [None if Xd is None else ops.buffer(workspace, "X", (k, X.shape[1]), X),
                                ops.buffer(workspace, "Y", (k, Y.shape[1]), Y),
                                None if W is None else ops.buffer(workspace, "W", (k, 1), W)]
                    Xb, Yb, Wb = ops.take_batch((Xd, Y, W), rows, outs)
                    if source is not None:
                        Xb = source.batch(slot, k)
                scaler = model.loss_scaler if self.half == "float16" else None
                if self.half is not None:
                    L, grads, out = model.mixed_step(Xb, Yb, self.head, self.half, scaler.scale if scaler else 1.0,
                                                     rows=rows, step=opt.step_count, weights=Wb)
                elif comm is None:
                    L, grads, out = model.train_step(Xb, Yb, self.head, rows=rows, step=opt.step_count, weights=Wb,
                                                     update_buffers=True)
                else:
                    L, grads, out = self._distributed_step(Xb, Yb, rows, m, Wb, total_weight)
                if source is not None:  # the step that reads this batch is issued: fetch the next one meanwhile
                    source.release(slot)
                    if batch + 1 < len(batches):
                        source.start(1 - slot, host_rows(batch + 1))
                if scaler is not None and not scaler.update(_all_finite(xp, grads)):
                    continue  # overflow: no step this time, a smaller scale next time
                penalty = None
                if self.l2:  # m: the batch's samples, or with sample weights its total weight
                    if W is not None:
                        size = total_weight if comm is not None else xp.sum(Wb)
                        m = xp.where(size > 0, size, xp.ones_like(size))
                    penalty = l2_penalty(ops, model.parameters(), grads, self.weights, self.l2, m)
                if self.clip_value is not None:
                    grads = clip_grad_value(grads, self.clip_value)
                if self.clip_norm is not None:
                    grads, _ = clip_grad_norm(grads, self.clip_norm)
                if interrupt is not None:
                    interrupt.hold()
                opt.step(grads)
                if interrupt is not None:
                    interrupt.release()
                if out is not None:
                    self.running.add(L, penalty, out, Yb, Wb)
                for callback in self.callbacks:
                    callback.on_batch_end(epoch, batch)
                # A Ctrl-C that lands on one rank after the agreement above waits for the next one:
                # deciding on the local flag here would leave the other ranks in a collective alone.
                if interrupt is not None and (stop_here if comm is not None else interrupt.requested):
                    break
        finally:
            if source is not None:
                source.close()
        return self.running.logs()

    def _distributed_step(self, Xb, Yb, rows, m, Wb=None, total_weight=None):
        """This rank's part (Xb, Yb) of a global batch of m rows: (loss, summed gradients, output).

        The part's mean gradient is weighted by its share n_local / m (with sample weights, its
        share of the batch's weight), and one allreduce of the flat buffer sums the ranks' into the
        global batch's mean gradient.
        """
        model, comm = self.model, self.comm
        n_local = Xb.shape[0]
        if Wb is None:
            weight = n_local / m
        else:
            total = float(total_weight)
            weight = float(self.xp.sum(Wb)) / total if n_local and total > 0 else 0.0
        coupled = self.coupled
        if n_local:
            L, grads, out = model.train_step(Xb, Yb, self.head, rows=rows, step=model.optimizer.step_count,
                                             weights=Wb, update_buffers=True, comm=comm if coupled else None,
                                             grad_scale=weight if coupled else 1.0)
        else:  # a batch smaller than the number of ranks: this one adds nothing
            L, out = 0.0, None
            grads = model.zero_grads()
        if coupled:
            weight = 1  # the gradients came back weighted (train_step's grad_scale)
        if isinstance(grads, FlatList) and grads.is_packed():
            if weight != 1:
                grads.flat *= weight
            comm.allreduce(grads.flat)
        else:  # an immutable backend's arrays: summed through host copies
            grads = [backend.to_device(comm.allreduce(np.ascontiguousarray(backend.to_numpy(g) * weight)),
                                       backend.device_of(g)) for g in grads]
        return L, grads, out

    def guarded_run(self, epoch: int, order=None, interrupt=None, stacklevel: int = 3):
        """`run`, and when the loss or the parameters end non-finite, the model put back as it was
        before the epoch with a RuntimeWarning. Returns (logs, "non-finite loss" or None)."""
        model = self.model
        snapshot = _snapshot(model)
        # A diverging step overflows in NumPy's products and sums; the check below says what happened
        # once, where NumPy would print a line per operation.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            logs = self.run(epoch, order, interrupt)
        if math.isfinite(logs["loss"]) and _all_finite(self.xp, model.parameters()) and _all_finite(
                self.xp, model.buffers()):
            return logs, None
        if interrupt is not None:
            interrupt.hold()
        _restore(model, snapshot)
        if interrupt is not None:
            interrupt.release()
        history = model.history
        done = history is not None and history.epoch
        restored = f"the end of epoch {epoch - 1}" if done else "its state before this fit"
        what = (f"the training loss became {logs['loss']}" if not math.isfinite(logs["loss"])
                else f"the parameters or buffers became NaN or infinite (training loss {logs['loss']})")
        warnings.warn(f"{what} in epoch {epoch}; training stopped and the model was restored to {restored}",
                      NonFiniteLossWarning, stacklevel=stacklevel)
        return logs, "non-finite loss"



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


def class_weights(model, head, Y, W, class_weight):
    """Sample weights (a column, or None) multiplied by the weights of each sample's class.

    class_weight: None, {class index: weight} (classes not named weigh 1) or "balanced":
    n_samples / (n_classes * count of the class), over the classes present (scikit-learn's rule).
    """
    if class_weight is None:
        return W
    if not head.classifier:
        raise ValueError(
            f"class_weight needs a classifier (a cross-entropy loss); this model trains with {head.loss!r}"
        )
    host = backend.to_numpy(Y)
    if head.loss == "cross_entropy":
        labels, n_classes = host.argmax(axis=1), host.shape[1]
    elif host.shape[1] == 1:
        labels, n_classes = (host[:, 0] > 0.5).astype(np.int64), 2
    else:
        raise ValueError(
            f"class_weight applies to one sigmoid output (two classes) or softmax classes; this model has "
            f"{host.shape[1]} sigmoid outputs (multi-label): give sample_weight instead"
        )
    counts = np.bincount(labels, minlength=n_classes)
    if isinstance(class_weight, str) and class_weight == "balanced":
        present = counts > 0
        per_class = np.ones(n_classes)
        per_class[present] = labels.shape[0] / (present.sum() * counts[present])
    elif isinstance(class_weight, dict):
        per_class = np.ones(n_classes)
        for label, weight in class_weight.items():
            if isinstance(label, bool) or not isinstance(label, numbers.Integral) or not 0 <= label < n_classes:
                raise ValueError(f"class_weight names class {label!r}; the classes are 0..{n_classes - 1}")
            per_class[int(label)] = Real(0.0)(weight, f"class_weight[{label!r}]")
    else:
        raise TypeError(f"class_weight must be None, 'balanced' or a dict {{class: weight}}, got {class_weight!r}")
    weights = model.check_weights(per_class[labels], labels.shape[0], "class_weight")
    return weights if W is None else W * weights


class FullBatchEpoch(Epoch):
    """An epoch of a closure optimizer (L-BFGS): one `step(closure)` on the whole training data.

    The closure is the training step on every training row (with the L2 penalty): its loss and
    gradients. The epoch's loss and metrics are those of the first evaluation, before the step, as
    a mini-batch epoch reports each batch's before its update. The optimizer's scalar state is put
    back with the rest when the epoch ends non-finite.
    """

    def run(self, epoch: int, order=None, interrupt=None) -> dict:
        model, xp, ops, head = self.model, self.xp, self.ops, self.head
        opt = model.optimizer
        X, Y, W = self.X, self.Y, self.W
        if self.train_rows is not None:  # one gather per epoch: the batch is every training row
            X, Y = ops.take_rows(X, self.train_rows), ops.take_rows(Y, self.train_rows)
            W = None if W is None else ops.take_rows(W, self.train_rows)
        m = self.n if W is None else xp.sum(W)  # the L2 term's m: the samples, or their weight
        rows = xp.arange(self.n) if model.needs_rows else None
        running = self.running
        running.reset()
        first = []

        def closure():
            # The running statistics move once per epoch, with the first evaluation (the line
            # search's further evaluations are trial points, not training batches).
            L, grads, out = model.train_step(X, Y, head, rows=rows, step=opt.step_count, weights=W,
                                             update_buffers=not first)
            penalty = None
            if self.l2:
                penalty = l2_penalty(ops, model.parameters(), grads, self.weights, self.l2, m)
            if not first:  # the metrics read `out` now: the next evaluation overwrites it
                first.append(True)
                running.add(L, penalty, out, Y, W)
            return (L if penalty is None else L + penalty), grads

        if interrupt is not None:
            interrupt.hold()
        opt.step(closure)
        if interrupt is not None:
            interrupt.release()
        return running.logs()

    def guarded_run(self, epoch: int, order=None, interrupt=None, stacklevel: int = 3):
        scalars = copy.deepcopy(self.model.optimizer.scalars)
        logs, stop_reason = super().guarded_run(epoch, order, interrupt, stacklevel + 1)
        if stop_reason is not None:
            self.model.optimizer.scalars = scalars
        return logs, stop_reason


def check_full_batch(optimizer, batch_size, clip_norm, clip_value, callbacks) -> None:
    """The arguments of `fit` that a full-batch closure optimizer (L-BFGS) cannot honour."""
    name = getattr(optimizer, "name", optimizer)
    if not (isinstance(name, str) and name.strip().lower() == "lbfgs"):
        return
    if batch_size is not None:
        raise ValueError(
            f"batch_size must be None with optimizer='lbfgs' (it trains full-batch, one step per epoch), "
            f"got {batch_size!r}"
        )
    if clip_norm is not None or clip_value is not None:
        raise ValueError(
            "clip_norm and clip_value must be None with optimizer='lbfgs': its line search and curvature "
            "pairs need the loss's own gradient"
        )
    for index, callback in enumerate(callbacks):
        if type(callback).on_batch_end is not Callback.on_batch_end:
            raise ValueError(
                f"callbacks[{index}] ({type(callback).__name__}) overrides on_batch_end, which has no meaning "
                "with optimizer='lbfgs': an epoch is one step of many loss evaluations, not batches; "
                "use on_epoch_end"
            )


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
            `nn_xp.metrics.METRICS` ("accuracy", "balanced_accuracy", "f1_macro", "r2", "mse",
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

    Dropout layers (`MLP(..., dropout=...)`) drop units only here, keyed by the optimizer's step
    count and each sample's row in X, so a resumed fit continues the same masks.

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
    _check_validation_split(validation_split, X.shape[0])
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
    rollback = _Rollback(model, batch_size)
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
                streamed, metric,
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
           lines=True, half=None, streamed=False, metric=None):
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
        train_rows=train_rows, comm=comm, weights=W, half=half, streaming=streamed)
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
            order = backend.to_device(model.rng.permutation(n), model.device) if shuffle else None
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
