"""The systems under test, each behind the same three calls: `train(epochs)`, `sync()`, `parameters()`.

Every system trains the workload's network with Adam (learning rate, betas and eps of
workloads.py) in mini-batches; a timed call is `sync(); train(k); sync()`.

- NnxpSystem: `model.fit(X, Y, epochs=k, batch_size=B, verbose=0)`; repeated calls keep the
  optimizer state. The data is moved to the device once, before timing. `precision=` is fit's
  ("mixed_float16": float32 master weights, float16 products, dynamic loss scaling).
- TorchSystem: the equivalent eager loop, started from the nn_xp model's initial weights and
  drawing each epoch's order from a copy of the nn_xp model's host generator, so both see the same
  batches in the same order.
- TorchAmpSystem: the same loop under PyTorch's automatic mixed precision: forward and loss in
  `torch.autocast(device, dtype)`, float32 master weights, and for float16 a
  `torch.amp.GradScaler` (defaults: scale 2^16, doubled after 2000 good steps, halved and the step
  skipped on inf/NaN; nn_xp's LossScaler copies this rule).
- TorchCompileSystem: TorchSystem's module, loss and optimizer, its step function under
  `torch.compile`; the seconds its first step of each batch shape took (compiling) are kept apart.
- The hand-written JAX systems are in jax_systems.py.
- SklearnSystem: MLPClassifier / MLPRegressor with solver="adam", alpha=0, the same batch size and
  learning rate, `max_iter=k` and `warm_start=True`. It uses its own initialisation and shuffles,
  and its regressor has a linear output: it is timed, not compared.
"""

from __future__ import annotations

import copy
import sys
import time
import warnings

import numpy as np

from .workloads import BETAS, EPS, LEARNING_RATE, Workload, one_hot


class NnxpSystem:
    """nn_xp on any of its array libraries: NumPy ("cpu"), CuPy ("cuda:N"), PyTorch ("torch:cpu",
    "torch:cuda:N") or JAX ("jax:cpu", "jax:gpu:N"). On JAX, fit compiles its training step
    (jax.jit, epochs under jax.lax.scan), in the untimed warm-up call; compile=False (fit's
    argument) times it one operation at a time instead."""

    def __init__(self, nx, workload: Workload, X, y, device: str, dtype: str = "float32",
                 precision: str = "float32", compile=None):
        self.nx, self.workload, self.device, self.precision = nx, workload, device, precision
        self.compile = compile
        self.model = nx.MLP(
            list(workload.layer_sizes),
            activation="relu",
            output_activation=workload.output_activation,
            init="he",
            dtype=dtype,
            device=device,
            seed=workload.seed,
        )
        # fit draws each epoch's order as model.rng.permutation(n): a copy replays those orders.
        self.shuffle_rng = copy.deepcopy(self.model.rng)
        self.initial_parameters = [nx.to_numpy(p).copy() for p in self.model.parameters()]
        Y = one_hot(y, workload.layer_sizes[-1], dtype) if workload.is_classifier else y.astype(dtype)
        self.X = nx.to_device(np.ascontiguousarray(X, dtype=dtype), device)
        self.Y = nx.to_device(Y, device)

    def train(self, epochs: int) -> None:
        self.model.fit(
            self.X,
            self.Y,
            loss=self.workload.loss,
            optimizer="adam",
            learning_rate=LEARNING_RATE,
            epochs=epochs,
            batch_size=self.workload.batch_size,
            precision=self.precision,
            verbose=0,
            compile=self.compile,
        )

    def sync(self) -> None:
        """Wait for the device: CuPy's and torch's CUDA streams, JAX's asynchronous dispatch."""
        if self.device.startswith("cuda"):
            import cupy

            cupy.cuda.Device().synchronize()
        elif self.device.startswith("torch:cuda"):
            import torch

            torch.cuda.synchronize()
        elif self.device.startswith("jax:"):
            import jax

            jax.block_until_ready(self.model.parameters())

    def parameters(self) -> list:
        return [self.nx.to_numpy(p) for p in self.model.parameters()]

    def last_loss(self) -> float:
        return float(self.model.history.history["loss"][-1])


class TorchSystem:
    """PyTorch eager: Linear/ReLU layers, CrossEntropyLoss on the logits or Sigmoid + MSELoss."""

    def __init__(self, torch, workload: Workload, X, y, device: str, dtype: str = "float32",
                 initial_parameters=None, shuffle_rng=None):
        self.torch, self.workload = torch, workload
        self.device = torch.device(device)
        torch_dtype = getattr(torch, dtype)
        layers = []
        sizes = workload.layer_sizes
        for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            linear = torch.nn.Linear(n_in, n_out, device=self.device, dtype=torch_dtype)
            if initial_parameters is not None:  # nn_xp's W is (out, in), as torch's weight
                with torch.no_grad():
                    linear.weight.copy_(torch.from_numpy(np.asarray(initial_parameters[2 * index])))
                    linear.bias.copy_(torch.from_numpy(np.asarray(initial_parameters[2 * index + 1])))
            layers.append(linear)
            if index < len(sizes) - 2:
                layers.append(torch.nn.ReLU())
        if workload.output_activation == "sigmoid":
            layers.append(torch.nn.Sigmoid())
        self.net = torch.nn.Sequential(*layers)
        # softmax + cross-entropy: torch takes the logits, as nn_xp's loss does.
        self.loss_fn = torch.nn.CrossEntropyLoss() if workload.is_classifier else torch.nn.MSELoss()
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=LEARNING_RATE, betas=BETAS, eps=EPS)
        self.X = torch.from_numpy(np.ascontiguousarray(X, dtype=dtype)).to(self.device)
        target = y if workload.is_classifier else y.astype(dtype)
        self.y = torch.from_numpy(np.ascontiguousarray(target)).to(self.device)
        self.shuffle_rng = shuffle_rng if shuffle_rng is not None else np.random.default_rng(workload.seed)
        self._loss = None

    def train(self, epochs: int) -> None:
        torch, n, step = self.torch, self.X.shape[0], self.workload.batch_size
        for _ in range(epochs):
            order = torch.from_numpy(self.shuffle_rng.permutation(n)).to(self.device)
            Xs, ys = self.X.index_select(0, order), self.y.index_select(0, order)
            total = torch.zeros((), dtype=self.X.dtype, device=self.device)
            for start in range(0, n, step):
                Xb, yb = Xs[start : start + step], ys[start : start + step]
                total += self.step(Xb, yb) * Xb.shape[0]
            self._loss = total.item() / n  # the one host read per epoch, as nn_xp's fit

    def step(self, Xb, yb):
        """One optimizer step on a batch; returns the batch's loss, detached, on the device."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.net(Xb), yb)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def parameters(self) -> list:
        out = []
        for module in self.net:
            if isinstance(module, self.torch.nn.Linear):
                out += [module.weight.detach().cpu().numpy().copy(), module.bias.detach().cpu().numpy().copy()]
        return out

    def last_loss(self) -> float:
        return float(self._loss)


class TorchAmpSystem(TorchSystem):
    """PyTorch eager under automatic mixed precision (the recipe of PyTorch's AMP documentation).

    Each step: `zero_grad(set_to_none=True)`; forward and loss inside
    `torch.autocast(device_type, dtype=half)` (linear layers in half precision, cross-entropy in
    float32); `scaler.scale(loss).backward()`; `scaler.step(optimizer)`; `scaler.update()`.
    The parameters and Adam's state stay float32. `half="float16"` uses a GradScaler with its
    defaults; "bfloat16" needs none (the scaler is disabled: a pass-through).
    On a CPU, autocast supports bfloat16 (float16 only in recent PyTorch builds).
    """

    def __init__(self, torch, workload: Workload, X, y, device: str, half: str = "float16",
                 initial_parameters=None, shuffle_rng=None):
        super().__init__(torch, workload, X, y, device, "float32", initial_parameters, shuffle_rng)
        if half not in ("float16", "bfloat16"):
            raise ValueError(f"half must be 'float16' or 'bfloat16', got {half!r}")
        self.half = half
        self.autocast_dtype = getattr(torch, half)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=half == "float16")

    def step(self, Xb, yb):
        self.optimizer.zero_grad(set_to_none=True)
        with self.torch.autocast(self.device.type, dtype=self.autocast_dtype):
            loss = self.loss_fn(self.net(Xb), yb)  # float32: autocast runs cross-entropy in float32
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)  # unscales; skips the step when a gradient is inf/NaN
        self.scaler.update()
        return loss.detach()


class TorchCompileSystem(TorchSystem):
    """TorchSystem with its step function (zero_grad, forward, loss, backward, Adam) under
    `torch.compile` (default mode, `dynamic=False`: one compiled version for the full batches'
    shape and one for the last partial batch's). Dynamo breaks the graph at `loss.backward()`: the
    forward and loss are one graph, whose backward AOTAutograd compiles too, and Adam's update
    another.

    Compiling happens in a system's first call of each batch shape (in the harness's warm-up,
    which is not timed); `compile_s` keeps the seconds of those calls (compile and that one step).
    """

    def __init__(self, torch, workload: Workload, X, y, device: str, dtype: str = "float32",
                 initial_parameters=None, shuffle_rng=None):
        super().__init__(torch, workload, X, y, device, dtype, initial_parameters, shuffle_rng)
        # Dynamo keeps compiled code per code object (this class's `step`) and falls back to eager
        # once a code object has been recompiled `recompile_limit` times (8): every instance, each
        # workload's and each parity check's, would count. Start each instance's count afresh.
        torch._dynamo.reset()
        self._compiled_step = torch.compile(super().step, dynamic=False)
        self._shapes = set()
        self.compile_s = 0.0

    def step(self, Xb, yb):
        if Xb.shape in self._shapes:
            return self._compiled_step(Xb, yb)
        self.sync()
        start = time.perf_counter()
        loss = self._compiled_step(Xb, yb)
        self.sync()
        self.compile_s += time.perf_counter() - start
        self._shapes.add(Xb.shape)
        return loss


class SklearnSystem:
    """scikit-learn's MLPClassifier / MLPRegressor (CPU, NumPy BLAS), timed only."""

    def __init__(self, workload: Workload, X, y):
        from sklearn.neural_network import MLPClassifier, MLPRegressor

        self.workload = workload
        estimator = MLPClassifier if workload.is_classifier else MLPRegressor
        self.estimator = estimator(
            hidden_layer_sizes=workload.hidden_sizes,
            activation="relu",
            solver="adam",
            alpha=0.0,  # no L2 penalty: the other systems have none
            batch_size=workload.batch_size,
            learning_rate_init=LEARNING_RATE,
            beta_1=BETAS[0],
            beta_2=BETAS[1],
            epsilon=EPS,
            max_iter=workload.epochs_per_call,
            shuffle=True,
            random_state=workload.seed,
            tol=0.0,
            n_iter_no_change=sys.maxsize,  # never stop early
            early_stopping=False,
            warm_start=True,  # each fit call continues from the current weights
        )
        self.X = np.ascontiguousarray(X, dtype=np.float32)  # sklearn keeps float32 end to end
        self.y = y if workload.is_classifier else np.ravel(y).astype(np.float32)

    def train(self, epochs: int) -> None:
        from sklearn.exceptions import ConvergenceWarning

        self.estimator.max_iter = epochs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.estimator.fit(self.X, self.y)

    def sync(self) -> None:
        pass

    def parameters(self) -> list:
        out = []
        for W, b in zip(self.estimator.coefs_, self.estimator.intercepts_):
            out += [W.T.copy(), b.copy()]
        return out

    def last_loss(self) -> float:
        return float(self.estimator.loss_)


def relative_difference(a, b) -> float:
    """max |a - b| / max |b| (as tests/conftest.py), in float64 on the host."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-30)
    return float(np.max(np.abs(a - b), initial=0.0)) / scale


def parity_check(nx, torch, workload: Workload, X, y, nnxp_device: str, torch_device: str, steps: int = 3) -> dict:
    """Train nn_xp and torch in float64 for `steps` Adam steps from the same weights on the same
    shuffled batches; return the largest relative parameter difference (expect ~1e-12)."""
    n = min(steps * workload.batch_size, X.shape[0])
    X, y = X[:n].astype(np.float64), y[:n]
    ours = NnxpSystem(nx, workload, X, y, nnxp_device, dtype="float64")
    theirs = TorchSystem(torch, workload, X, y, torch_device, dtype="float64",
                         initial_parameters=ours.initial_parameters,
                         shuffle_rng=copy.deepcopy(ours.shuffle_rng))
    ours.train(1)
    theirs.train(1)
    mine, reference = ours.parameters(), theirs.parameters()
    differences = [relative_difference(a, b) for a, b in zip(mine, reference)]
    largest_difference = max(float(np.max(np.abs(a - b))) for a, b in zip(mine, reference))
    largest_update = max(float(np.max(np.abs(a - a0))) for a, a0 in zip(mine, ours.initial_parameters))
    return {
        "dtype": "float64",
        "steps": -(-n // workload.batch_size),
        "n_samples": n,
        "shuffled_same_order": True,
        "max_relative_parameter_difference": max(differences),
        "per_parameter": differences,
        # against how far the parameters moved, so a tiny difference cannot mean "nothing trained"
        "max_difference_over_update": largest_difference / max(largest_update, 1e-300),
        "max_update": largest_update,
        "loss_nn_xp": ours.last_loss(),
        "loss_torch": theirs.last_loss(),
        "nnxp_device": nnxp_device,
        "torch_device": torch_device,
    }
