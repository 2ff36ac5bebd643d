"""Hand-written JAX: JAX's own best at the benchmark's training, the reference for nn_xp on JAX.

The same MLP as every other system (Linear layers with W (out, in), ReLU, softmax cross-entropy on
the logits or sigmoid + MSE), from the same initial weights, on the same shuffled batches, with
torch's Adam (learning rate, betas and eps of workloads.py), written with jax.numpy and JAX's own
autodiff (`jax.value_and_grad`); this is JAX at its best, not nn_xp. Two forms:

- JaxJitSystem ("jax_jit"): the training step (forward, loss, gradients, Adam) is one `jax.jit`
  function, called from a Python loop over the epoch's batches. The batch is cut out of the
  epoch's shuffled data inside the step (`lax.dynamic_slice_in_dim` at a traced start), so a step
  is one dispatch; the loss is summed on the device.
- JaxScanSystem ("jax_scan"): the whole epoch is one `jax.jit` function: the shuffle, a
  `jax.lax.scan` of the step over the full batches, then the step on the last partial batch.

As the other systems do, an epoch of n samples is n // B batches of B and, when n % B > 0, one
last batch of n % B samples, its loss the mean over its own rows; the epoch's loss is
sum(loss_b * size_b) / n, read on the host once per epoch. Parameters and Adam's state are donated
to the jitted functions (updated in place). Matrix products use `precision="highest"`: full float32,
as PyTorch and nn_xp compute with TF32 off (on a CPU it changes nothing). JAX dispatches
asynchronously: `sync()` blocks until the parameters are computed.

Compilation happens in the constructor, ahead of time (`jit(f).lower(*args).compile()`, which
fills the cache the later calls hit), and its seconds are kept as `compile_s`, apart from the
timed calls.
"""

from __future__ import annotations

import math
import time
from functools import partial
from typing import NamedTuple

import numpy as np

from .workloads import BETAS, EPS, LEARNING_RATE, Workload


class AdamState(NamedTuple):
    """Adam's state, as optax's ScaleByAdamState: step count, first and second moments."""

    count: object
    mu: list
    nu: list


def jax_device(jax, device: str):
    """The JAX device for "cpu" or "cuda" (JAX calls it "gpu"); RuntimeError when JAX has none."""
    platform = "gpu" if device.split(":")[0] in ("cuda", "gpu") else "cpu"
    index = int(device.split(":")[1]) if ":" in device else 0
    try:
        return jax.devices(platform)[index]
    except (RuntimeError, IndexError) as error:
        raise RuntimeError(f"JAX has no {platform} device {index}: {error}") from None


def make_functions(jax, workload: Workload):
    """(step, epoch, shuffle): the pure functions the two systems jit.

    step(params, state, X, y) -> (params, state, loss): one Adam step on one batch.
    epoch(params, state, X, y, order, batch_size) -> (params, state, mean loss): one epoch.
    shuffle(X, y, order) -> (X[order], y[order]).
    """
    jnp = jax.numpy
    beta1, beta2 = BETAS
    n_layers = len(workload.layer_sizes) - 1

    def forward(params, X):
        A = X
        for index, (W, b) in enumerate(params):
            Z = jnp.matmul(A, W.T, precision="highest") + b
            A = jax.nn.relu(Z) if index < n_layers - 1 else Z
        return A  # the logits

    def loss(params, X, y):
        Z = forward(params, X)
        if workload.is_classifier:  # torch.nn.CrossEntropyLoss on the logits, integer labels
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(Z), y[:, None], axis=1))
        return jnp.mean((jax.nn.sigmoid(Z) - y) ** 2)  # torch.nn.MSELoss of the sigmoid output

    def adam(params, grads, state):
        """torch.optim.Adam: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
        p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""
        count = state.count + 1
        mu = jax.tree_util.tree_map(lambda m, g: beta1 * m + (1 - beta1) * g, state.mu, grads)
        nu = jax.tree_util.tree_map(lambda v, g: beta2 * v + (1 - beta2) * g * g, state.nu, grads)
        # 1 - beta^t as -expm1(t log beta): in float32, 1 - 0.999**t would lose 4 of its 7 digits
        # (torch computes it in double on the host)
        step_size = LEARNING_RATE / -jnp.expm1(count * math.log(beta1))
        root = jnp.sqrt(-jnp.expm1(count * math.log(beta2)))
        params = jax.tree_util.tree_map(lambda p, m, v: p - step_size * m / (jnp.sqrt(v) / root + EPS),
                                        params, mu, nu)
        return params, AdamState(count, mu, nu)

    def step(params, state, X, y):
        L, grads = jax.value_and_grad(loss)(params, X, y)
        params, state = adam(params, grads, state)
        return params, state, L

    def shuffle(X, y, order):
        return jnp.take(X, order, axis=0), jnp.take(y, order, axis=0)

    def epoch(params, state, X, y, order, batch_size):
        n = X.shape[0]
        full, tail = divmod(n, batch_size)
        Xs, ys = shuffle(X, y, order)
        head = full * batch_size
        batches = (Xs[:head].reshape((full, batch_size) + X.shape[1:]),
                   ys[:head].reshape((full, batch_size) + y.shape[1:]))

        def body(carry, batch):
            params, state, L = step(*carry, *batch)
            return (params, state), L

        (params, state), losses = jax.lax.scan(body, (params, state), batches)
        total = jnp.sum(losses) * batch_size
        if tail:  # the last partial batch, a step of its own, as the other systems take it
            params, state, L = step(params, state, Xs[head:], ys[head:])
            total = total + L * tail
        return params, state, total / n

    return step, epoch, shuffle


class _JaxSystem:
    """What both forms share: data, parameters and Adam's state on the JAX device."""

    def __init__(self, jax, workload: Workload, X, y, device: str = "cpu", dtype: str = "float32",
                 initial_parameters=None, shuffle_rng=None):
        if dtype == "float64" and not jax.config.jax_enable_x64:
            raise ValueError("float64 in JAX needs its process-wide x64 switch (jax_enable_x64), which is off")
        if initial_parameters is None:
            raise ValueError("initial_parameters are needed: the JAX systems start from nn_xp's weights")
        self.jax, self.workload, self.dtype = jax, workload, dtype
        self.device = jax_device(jax, device)
        put = partial(jax.device_put, device=self.device)
        self.params = [(put(np.asarray(W, dtype=dtype)), put(np.asarray(b, dtype=dtype)))
                       for W, b in zip(initial_parameters[0::2], initial_parameters[1::2])]
        zeros = partial(jax.tree_util.tree_map, jax.numpy.zeros_like)
        self.state = AdamState(put(np.zeros((), dtype=dtype)), zeros(self.params), zeros(self.params))
        self.X = put(np.ascontiguousarray(X, dtype=dtype))
        target = y.astype(np.int32) if workload.is_classifier else y.astype(dtype)  # JAX's default int is 32-bit
        self.y = put(np.ascontiguousarray(target))
        self.shuffle_rng = shuffle_rng if shuffle_rng is not None else np.random.default_rng(workload.seed)
        self._step, self._epoch, self._shuffle = make_functions(jax, workload)
        self._loss = None
        self.compile_s = 0.0

    def _order(self):
        """The epoch's order, drawn from the shared host generator as every other system draws it."""
        return self.jax.device_put(self.shuffle_rng.permutation(self.X.shape[0]).astype(np.int32), self.device)

    def _identity_order(self):
        """An order to compile with: drawing one would move the shared generator on."""
        return self.jax.device_put(np.arange(self.X.shape[0], dtype=np.int32), self.device)

    def _compile(self, function, args: tuple, static: tuple = (), donate: bool = True):
        """`function` jitted (the parameters and state, its first two arguments, donated when
        `donate`; the arguments after `args`, `static`, as compile-time constants), compiled now;
        returns it with the static arguments bound."""
        static_argnums = tuple(range(len(args), len(args) + len(static)))
        jitted = self.jax.jit(function, donate_argnums=(0, 1) if donate else (), static_argnums=static_argnums)
        start = time.perf_counter()
        jitted.lower(*args, *static).compile()
        self.compile_s += time.perf_counter() - start
        return (lambda *call: jitted(*call, *static)) if static else jitted

    def sync(self) -> None:
        self.jax.block_until_ready(self.params)

    def parameters(self) -> list:
        return [np.array(a) for layer in self.params for a in layer]

    def last_loss(self) -> float:
        return float(self._loss)


class JaxJitSystem(_JaxSystem):
    """`jax.jit` of the training step, a Python loop over the epoch's batches."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        jax, B = self.jax, self.workload.batch_size
        n = self.X.shape[0]

        def sliced_step(params, state, Xs, ys, start, total, size):
            Xb = jax.lax.dynamic_slice_in_dim(Xs, start, size)
            yb = jax.lax.dynamic_slice_in_dim(ys, start, size)
            params, state, L = self._step(params, state, Xb, yb)
            return params, state, total + L * size

        order = self._identity_order()
        self.shuffle = self._compile(self._shuffle, (self.X, self.y, order), donate=False)
        Xs, ys = self.shuffle(self.X, self.y, order)
        # each batch's start on the device once, not copied there at every step
        self.starts = [(jax.device_put(np.int32(first), self.device), min(B, n - first)) for first in range(0, n, B)]
        total = jax.device_put(np.zeros((), self.dtype), self.device)
        self.steps = {size: self._compile(sliced_step, (self.params, self.state, Xs, ys, self.starts[0][0], total),
                                          (size,))
                      for size in sorted({min(B, n), n % B} - {0})}

    def train(self, epochs: int) -> None:
        for _ in range(epochs):
            Xs, ys = self.shuffle(self.X, self.y, self._order())
            total = self.jax.device_put(np.zeros((), self.dtype), self.device)
            for start, size in self.starts:
                self.params, self.state, total = self.steps[size](self.params, self.state, Xs, ys, start, total)
            self._loss = float(total) / self.X.shape[0]  # the one host read per epoch


class JaxScanSystem(_JaxSystem):
    """The whole epoch under one `jax.jit`: `jax.lax.scan` of the step over pre-batched data."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.epoch = self._compile(self._epoch, (self.params, self.state, self.X, self.y, self._identity_order()),
                                   (self.workload.batch_size,))

    def train(self, epochs: int) -> None:
        for _ in range(epochs):
            self.params, self.state, loss = self.epoch(self.params, self.state, self.X, self.y, self._order())
            self._loss = float(loss)  # the one host read per epoch
