"""The compiled training step, for the backends whose ops compile (JAX: `ops.compile`, `ops.scan`).

`pure_step` is one training step as a pure function of arrays,

    (params, buffers, optimizer state, sums, Xb, Yb, Wb, rows, step, learning_rate)
        -> (new params, new buffers, new state, new sums),

written with the model's own `train_step` (its layers, head and dropout masks, keyed by `rows` and
`step`), the L2 penalty and the clipping as `Epoch.run` applies them, and the optimizer's pure
`update`: no second implementation. `sums` holds the epoch's running sums so far (the loss and the
penalty times the batch's samples or weight, the head's batch metric, the samples or weight), each
batch added in turn as `_RunningMetrics.add` adds them, so the history comes out the same.

`CompiledEpoch.run` runs an epoch's batches with it: the full batches under `ops.scan` and then
the last, partial batch, if any, in one compiled call (gathering each batch's rows of X, Y and the
weights on the device as it goes, so no copy of the data is made). Where the model has Dropout
layers the partial batch is a call of the compiled single step of its own (the two in one program
took XLA's CPU compiler 6.4 s where apart they take 1.8 s). Where per-batch callbacks are attached
(a user's `on_batch_end`, the progress bar), every batch is a call of the compiled single step from
the Python loop, so the callbacks see each step's parameters. The shuffle order is the one the
uncompiled epoch gets (the model's host generator, passed to the compiled call as a NumPy array),
so the results are the same. Each call also returns, with the running sums, whether the new
parameters and buffers are all finite, so an epoch's figures and the non-finite guard's check
(epoch.py's `guarded_run`) come back to the host in one read.

The compiled functions are kept on the model (`model._compiled`), keyed by what their trace bakes
in: the head, the optimizer's class and hyperparameters (but the learning rate, passed as an array),
the L2 and clipping settings, the dtype and the layers' settings. The compiler's own cache handles
the shapes, so later epochs and later `fit` calls run without tracing again (`traces()` counts the
traces). `Network.copy` and `to` drop them; model files never hold them.
"""

from __future__ import annotations

import math

import numpy as np

from ..backends import FlatList, placement
from ..nn.layers import Dropout
from ..optim.base import Optimizer
from ..optim.clipping import clip_grad_norm, clip_grad_value
from .callbacks import Callback
from .penalty import l2_penalty

_traces = 0


def traces() -> int:
    """How many times a training step has been traced for compilation in this process."""
    return _traces


def can_compile(ops) -> bool:
    """True where the backend's ops compile pure functions (JAX)."""
    return ops.compile is not None


def covers(optimizer) -> bool:
    """True for an optimizer whose stateful `step` is its pure `update` (a subclass that does more
    in `step`, as the scikit-learn estimators' do, trains uncompiled)."""
    return type(optimizer).step is Optimizer.step


def pure_step(model, head, ops, l2, clip_norm, clip_value):
    """The training step of `model` with `head`, as a pure function of arrays (module docstring).

    step: the optimizer steps taken before this one, a 0-d integer array (the dropout masks'
    step; the update is step + 1). learning_rate: a 0-d array. The model's parameter and buffer
    lists are pointed at the given arrays while its layers run, and put back afterwards.
    """
    xp = ops.xp
    decayed = model.decayed()
    needs_rows = model.needs_rows

    def step_fn(params, buffers, state, sums, Xb, Yb, Wb, rows, step, learning_rate):
        global _traces
        _traces += 1  # Python runs this body only while the compiler traces it
        store = model._store
        kept = store.params, store.buffers, store.grads
        try:
            store.params, store.buffers = FlatList(params), list(buffers)
            L, grads, out = model.train_step(Xb, Yb, head, rows=rows if needs_rows else None, step=step,
                                             weights=Wb, update_buffers=True)
            grads, new_buffers = list(grads), list(store.buffers)
        finally:
            store.params, store.buffers, store.grads = kept
        n = Xb.shape[0] if Wb is None else xp.sum(Wb)  # the batch's samples, or its total weight
        penalty = 0.0
        if l2:
            m = n if Wb is None else xp.where(n > 0, n, xp.ones_like(n))
            penalty = l2_penalty(ops, params, grads, decayed, l2, m)
        if clip_value is not None:
            grads = clip_grad_value(grads, clip_value)
        if clip_norm is not None:
            grads, _ = clip_grad_norm(grads, clip_norm)
        new_params, new_state = model.optimizer.update(grads, state, params, step=step + 1,
                                                       learning_rate=learning_rate)
        metric = head.batch_metric(xp, out, Yb, Wb)
        count = xp.asarray(float(n), dtype=L.dtype) if Wb is None else n
        batch = xp.stack([xp.asarray(v, dtype=L.dtype) for v in (L * n, penalty * n, metric, count)])
        return new_params, new_buffers, new_state, sums + batch

    return step_fn


class _Compiled:
    """The compiled single step and epoch of one trace key.

    Both return (params, buffers, state, sums) with `sums` of five entries: the four running sums
    and, last, the sum of every new parameter and buffer times 0 (NaN where any is NaN or
    infinite), so the epoch's figures and its finiteness come back in one host read.
    """

    def __init__(self, model, head, ops, l2, clip_norm, clip_value):
        step_fn = pure_step(model, head, ops, l2, clip_norm, clip_value)
        xp = ops.xp

        def gather(X, Y, W, rows):
            take = xp.take
            return take(X, rows, axis=0), take(Y, rows, axis=0), None if W is None else take(W, rows, axis=0)

        def finite(params, buffers, sums):  # the four sums, and the check of the arrays (guards.device_finite)
            check = xp.zeros((), dtype=sums.dtype)
            for a in list(params) + list(buffers):
                check = check + xp.astype(xp.sum(a * 0), sums.dtype)
            return xp.concat([sums[:4], xp.reshape(check, (1,))])

        def train(params, buffers, state, sums, X, Y, W, rows, step, learning_rate):
            Xb, Yb, Wb = gather(X, Y, W, rows)
            return step_fn(params, buffers, state, sums, Xb, Yb, Wb, rows, step, learning_rate)

        def one_step(params, buffers, state, sums, X, Y, W, rows, train_rows, step, learning_rate):
            if train_rows is not None:  # positions in the training rows -> rows of X
                rows = xp.take(train_rows, rows, axis=0)
            params, buffers, state, sums = train(params, buffers, state, sums[:4], X, Y, W, rows, step,
                                                 learning_rate)
            return params, buffers, state, finite(params, buffers, sums)

        def epoch(params, buffers, state, X, Y, W, batches, tail, train_rows, step, learning_rate):
            if train_rows is not None:
                batches = xp.take(train_rows, batches, axis=0)  # a (full, size) gather of indices
                tail = None if tail is None else xp.take(train_rows, tail, axis=0)

            def body(carry, rows):
                params, buffers, state, sums, step = carry
                params, buffers, state, sums = train(params, buffers, state, sums, X, Y, W, rows, step,
                                                     learning_rate)
                return (params, buffers, state, sums, step + 1), None

            sums = xp.zeros((4,), dtype=params[0].dtype)
            (params, buffers, state, sums, step), _ = ops.scan(body, (params, buffers, state, sums, step), batches)
            if tail is not None:
                params, buffers, state, sums = train(params, buffers, state, sums, X, Y, W, tail, step,
                                                     learning_rate)
            return params, buffers, state, finite(params, buffers, sums)

        self.step = ops.compile(one_step)
        self.epoch = ops.compile(epoch)


def _settings(opt) -> tuple:
    """The optimizer's hyperparameters that a trace bakes in (all but the learning rate)."""
    return tuple(sorted((k, repr(v)) for k, v in opt.hyperparameters.items() if k != "learning_rate"))


def _trace_key(model, head, l2, clip_norm, clip_value):
    opt = model.optimizer
    settings = _settings(opt)
    return (repr(head.spec()), type(opt), settings, l2, clip_norm, clip_value, model.dtype,
            repr(model.architecture()), model.dropout_key)


def compiled_for(model, head, ops, l2, clip_norm, clip_value) -> _Compiled:
    """The compiled functions for this model and these settings, made once and kept on the model."""
    cache = model.__dict__.setdefault("_compiled", {})
    key = _trace_key(model, head, l2, clip_norm, clip_value)
    if key not in cache:
        cache[key] = _Compiled(model, head, ops, l2, clip_norm, clip_value)
    return cache[key]


def steps_each_batch(callbacks) -> bool:
    """True where a callback acts after every batch (its own on_batch_end, or the progress bar)."""
    return any(getattr(type(c), "on_batch_end", None) is not Callback.on_batch_end for c in callbacks)


class CompiledEpoch:
    """`Epoch.run` for an epoch (`runner`, an Epoch) whose ops compile: see the module docstring.

    An order may be a NumPy array (fit's, drawn on the host): it goes to the compiled call as an
    argument, with no separate transfer. After `run`, `finite` says whether the parameters and
    buffers are all finite, read with the epoch's sums (None where per-batch callbacks ran after
    the compiled calls, or none ran).
    """

    def __init__(self, runner):
        self.runner = runner
        self.each_batch = steps_each_batch(runner.callbacks)
        # The partial last batch in the epoch's program, but where Dropout layers hash their masks:
        # their code twice in one program took XLA's CPU compiler 6.4 s, where apart it takes 1.8 s.
        self.tail_inside = not any(isinstance(layer, Dropout) for layer in runner.model.layers)
        self.finite = None
        self._zeros = None
        self._fns = self._held = None

    def run(self, epoch: int, order=None, interrupt=None) -> dict:
        r = self.runner
        model, xp, ops = r.model, r.xp, r.ops
        opt = model.optimizer
        # The rest of the trace key is the epoch's own (its head, settings and model): only the
        # optimizer may change from one epoch to the next (a callback's doing).
        held = opt, _settings(opt)
        if self._held != held:
            self._fns = compiled_for(model, r.head, ops, r.l2, r.clip_norm, r.clip_value)
            self._held = held
        fns = self._fns
        if order is None:
            order = np.arange(r.n)  # a host order, as a shuffled one is: one compilation
        if opt.state is None:
            opt.state = opt.init(list(model.parameters()))
        dtype = model.parameters()[0].dtype
        size, n = r.batch_size, r.n
        full = n // size  # >= 1: the batch size is at most n
        start = 0
        self.finite = sums = None
        if not self.each_batch:  # the epoch's batches in one call
            reshape = np.reshape if isinstance(order, np.ndarray) else xp.reshape
            batches = reshape(order[:full * size], (full, size))
            tail = order[full * size:] if n % size and self.tail_inside else None
            result = fns.epoch(*self._state(), r.X, r.Y, r.sample_weight, batches, tail, r.train_rows,
                               opt.step_count, np.asarray(opt.learning_rate, dtype=dtype))
            sums = self._commit(result, full + (tail is not None), interrupt)
            start = n if tail is not None else full * size
        elif isinstance(order, np.ndarray):  # sliced batch by batch on the device
            order = xp.asarray(order, device=placement(r.Y))
        if sums is None:
            if self._zeros is None:  # placed as the parameters (committed, as the outputs are: one compilation)
                self._zeros = xp.zeros((5,), dtype=dtype, device=placement(model.parameters()[0]))
            sums = self._zeros
        for batch, first in enumerate(range(start, n, size), start=start // size):
            if interrupt is not None and interrupt.requested:
                break
            rows = order[first:min(first + size, n)]
            learning_rate = np.asarray(opt.learning_rate, dtype=dtype)  # a callback may have changed it
            result = fns.step(*self._state(), sums, r.X, r.Y, r.sample_weight, rows, r.train_rows,
                              opt.step_count, learning_rate)
            sums = self._commit(result, 1, interrupt)
            for callback in r.callbacks:
                callback.on_batch_end(epoch, batch)
        r.running.reset()
        if sums is not self._zeros:  # one host read: the sums and the check of the arrays
            sums = r.running.add_sums(sums)
            # Where per-batch callbacks ran after the last call, guarded_run reads the arrays themselves.
            self.finite = None if self.each_batch else math.isfinite(sums[4])
        return r.running.logs()

    def _state(self):
        model = self.runner.model
        return list(model.parameters()), model.buffers(), model.optimizer.state

    def _commit(self, result, steps: int, interrupt):
        """The compiled call's new parameters, buffers and state become the model's; returns the sums."""
        params, buffers, state, sums = result
        model = self.runner.model
        if interrupt is not None:
            interrupt.hold()
        model.parameters()[:] = params  # the live list: the optimizer and the layers hold it
        model._store.buffers[:] = buffers
        opt = model.optimizer
        opt.state = state
        opt.step_count += steps
        if interrupt is not None:
            interrupt.release()
        return sums
