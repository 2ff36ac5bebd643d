"""One epoch of batches: the forward/backward pass, the L2 penalty, clipping, mixed precision,
the split across ranks and the optimizer step for each batch, and the epoch's running metrics.
`Epoch` is what `fit` repeats and what the scikit-learn estimators call once per epoch;
`FullBatchEpoch` is L-BFGS's one closure step over the whole data."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np

from .. import backends as backend
from ..backends import FlatList, ops_for
from ..optim.clipping import clip_grad_norm, clip_grad_value
from .compiled import CompiledEpoch, can_compile, covers
from .distributed import part
from .guards import NonFiniteLossWarning, device_finite, restore_snapshot, take_snapshot
from .penalty import l2_penalty
from .streaming import HostBatches


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

    def add_sums(self, sums) -> list:
        """Add a compiled epoch's running sums: an array of the loss times the samples (or weight),
        the penalty times the same, the metric's sum and the samples, and after them whatever else
        the compiled call reads back with them (compiled.py). Returns them all, read in one go."""
        host = backend.to_numpy(sums).tolist()  # one read, as logs() would make
        loss, penalty, metric, count = host[:4]
        self.loss_sum = self.loss_sum + loss
        self.penalty_sum = self.penalty_sum + penalty
        self.metric_sum = self.metric_sum + metric
        self.count = self.count + count
        return host

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
        if not isinstance(self.total_ss, float):  # read once: the targets do not change
            self.total_ss = float(self.total_ss)
        total = self.total_ss
        r2 = 1 - data * count * self.n_outputs / total if total > 0 else 0.0
        return {"loss": loss, "mse": data, "mae": metric_sum / count, "r2": r2}


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
        compile: None or True: where the ops compile (JAX) and the epoch is plain (no mixed
            precision, communicator or streaming), the batches run as compiled calls of one pure
            training step (compiled.py); False: one operation at a time.
    """

    def __init__(self, model, X, Y, head, batch_size, *, l2=0.0, clip_norm=None, clip_value=None, callbacks=(),
                 train_rows=None, comm=None, weights=None, half=None, streaming=False, compile=None):
        self.model, self.X, self.Y, self.head = model, X, Y, head
        self.xp = backend.get_namespace(Y)  # the model's namespace (a streamed X stays on the host)
        self.ops = ops_for(self.xp)
        self.train_rows = train_rows
        self.n = X.shape[0] if train_rows is None else train_rows.shape[0]
        self.batch_size = self.n if batch_size is None else min(batch_size, self.n)
        self.source = HostBatches(X, model.device, self.batch_size) if streaming else None
        self.l2, self.clip_norm, self.clip_value, self.callbacks = l2, clip_norm, clip_value, callbacks
        self.decayed = model.decayed()  # the parameters the L2 penalty applies to, as the layers declare
        self.sample_weight = weights
        self.half = half
        Y_stats, W_stats = Y, weights
        if train_rows is not None and not head.classifier:
            Y_stats = self.xp.take(Y, train_rows, axis=0)
            W_stats = None if weights is None else self.xp.take(weights, train_rows, axis=0)
        self.comm = comm if comm is not None and comm.size > 1 else None
        self.running = _RunningMetrics(self.xp, head, Y_stats, self.comm, W_stats)
        # A layer that couples the rows of a batch (BatchNorm) takes its statistics over every rank's part.
        self.coupled = any(layer.couples_rows for layer in model.layers)
        plain = half is None and self.comm is None and self.source is None
        self.compiled = CompiledEpoch(self) if compile is not False and plain and can_compile(self.ops) else None

    def run(self, epoch: int, order=None, interrupt=None) -> dict:
        """Train on every batch once, in `order` (positions in the training rows; None: as stored).

        `order` may be a NumPy array on any device (fit's, drawn on the host): it is moved to the
        model's device here, or given as it is to the compiled epoch.

        Returns the epoch's logs (floats). Stops after the current step when `interrupt.requested`
        (the current compiled call, where the epoch's batches run as one).
        """
        if self.compiled is not None and covers(self.model.optimizer):
            return self.compiled.run(epoch, order, interrupt)
        model, X, Y, W, xp, ops = self.model, self.X, self.Y, self.sample_weight, self.xp, self.ops
        if isinstance(order, np.ndarray):
            order = backend.to_device(order, model.device)
        opt = model.optimizer
        workspace = model.workspace if ops.mutable else None
        if self.train_rows is not None:  # positions in the training rows -> rows of X
            order = self.train_rows if order is None else xp.take(self.train_rows, order, axis=0)
        self.running.reset()
        comm, source = self.comm, self.source
        batches = []  # (start, stop) of each global batch, and of this rank's part of it
        for start in range(0, self.n, self.batch_size):
            stop = min(start + self.batch_size, self.n)  # the standard forbids slicing past the end
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
                    L, grads, out = model.train_step(Xb, Yb, self.head, rows=rows, step=opt.step_count, weights=Wb,
                                                     update_buffers=True, half=self.half,
                                                     scale=scaler.scale if scaler else 1.0)
                elif comm is None:
                    L, grads, out = model.train_step(Xb, Yb, self.head, rows=rows, step=opt.step_count, weights=Wb,
                                                     update_buffers=True)
                else:
                    L, grads, out = self._distributed_step(Xb, Yb, rows, m, Wb, total_weight)
                if source is not None:  # the step that reads this batch is issued: fetch the next one meanwhile
                    source.release(slot)
                    if batch + 1 < len(batches):
                        source.start(1 - slot, host_rows(batch + 1))
                if scaler is not None and not scaler.update(device_finite(xp, grads)):
                    continue  # overflow: no step this time, a smaller scale next time
                penalty = None
                if self.l2:  # m: the batch's samples, or with sample weights its total weight
                    if W is not None:
                        size = total_weight if comm is not None else xp.sum(Wb)
                        m = xp.where(size > 0, size, xp.ones_like(size))
                    penalty = l2_penalty(ops, model.parameters(), grads, self.decayed, self.l2, m)
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
        snapshot = take_snapshot(model, self.ops)
        # A diverging step overflows in NumPy's products and sums; the check below says what happened
        # once, where NumPy would print a line per operation.
        if self.compiled is not None:
            self.compiled.finite = None
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            logs = self.run(epoch, order, interrupt)
        # A compiled epoch read its arrays' check back with its sums; elsewhere, one read each here.
        finite = None if self.compiled is None else self.compiled.finite
        if finite is None:
            finite = device_finite(self.xp, model.parameters()) and device_finite(self.xp, model.buffers())
        if math.isfinite(logs["loss"]) and finite:
            return logs, None
        if interrupt is not None:
            interrupt.hold()
        restore_snapshot(model, snapshot)
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


class FullBatchEpoch(Epoch):
    """An epoch of a closure optimizer (L-BFGS): one `step(closure)` on the whole training data.

    The closure is the training step on every training row (with the L2 penalty): its loss and
    gradients. The epoch's loss and metrics are those of the first evaluation, before the step, as
    a mini-batch epoch reports each batch's before its update. The optimizer's scalar state is put
    back with the rest when the epoch ends non-finite.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.compiled = None  # a closure step: not a pure function of arrays

    def run(self, epoch: int, order=None, interrupt=None) -> dict:
        model, xp, ops, head = self.model, self.xp, self.ops, self.head
        opt = model.optimizer
        X, Y, W = self.X, self.Y, self.sample_weight
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
                penalty = l2_penalty(ops, model.parameters(), grads, self.decayed, self.l2, m)
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
