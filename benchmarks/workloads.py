"""The benchmark workloads: network, data, batch size and how many epochs one timed call runs.

Every workload's data is synthetic and seeded, so every system and every run sees the same numbers.
Classification labels come from a random "teacher" network, so the task is learnable and the
classes are roughly balanced; the regression workload is the seed notebooks' shifted sine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

LEARNING_RATE = 1e-3
BETAS = (0.9, 0.999)
EPS = 1e-8


@dataclass(frozen=True)
class Workload:
    """One benchmark configuration (all systems train exactly this)."""

    key: str
    title: str
    layer_sizes: tuple
    output_activation: str  # "softmax" (cross-entropy) or "sigmoid" (mse regression)
    loss: str
    batch_size: int
    n_samples: int
    epochs_per_call: int  # epochs in one timed call (tiny epochs need several to be timeable)
    data: str  # "teacher" or "sine"
    seed: int = 0

    @property
    def is_classifier(self) -> bool:
        return self.loss == "cross_entropy"

    @property
    def hidden_sizes(self) -> tuple:
        return tuple(self.layer_sizes[1:-1])

    def as_dict(self) -> dict:
        return asdict(self)


WORKLOADS = {
    "a": Workload("a", "784-512-256-10 softmax CE, batch 128", (784, 512, 256, 10), "softmax",
                  "cross_entropy", 128, 20_000, 1, "teacher"),
    "b": Workload("b", "784-512-256-10 softmax CE, batch 4096", (784, 512, 256, 10), "softmax",
                  "cross_entropy", 4096, 20_000, 1, "teacher"),
    "c": Workload("c", "notebooks' 1-10-10-1 sine, sigmoid + MSE, batch 32", (1, 10, 10, 1), "sigmoid",
                  "mse", 32, 500, 40, "sine"),
    "d": Workload("d", "deep narrow 64-(64x8)-10 softmax CE, batch 128", (64,) + (64,) * 8 + (10,),
                  "softmax", "cross_entropy", 128, 20_000, 1, "teacher"),
}


def quick(workload: Workload) -> Workload:
    """A smoke-test version: few samples, few epochs."""
    if workload.data == "sine":
        return replace(workload, epochs_per_call=2)
    return replace(workload, n_samples=min(workload.n_samples, max(workload.batch_size, 512)))


def make_data(workload: Workload):
    """(X float32 (n_samples, n_features), y): int64 labels (n,) or float32 targets (n, 1)."""
    if workload.data == "sine":
        return sine(workload.n_samples)
    return teacher_classification(workload.n_samples, workload.layer_sizes[0], workload.layer_sizes[-1],
                                  seed=workload.seed)


def teacher_classification(n_samples: int, n_features: int, n_classes: int, seed: int = 0):
    """Gaussian inputs; labels = argmax of a random one-hidden-layer tanh teacher network."""
    rng = np.random.default_rng(seed + 12345)
    X = rng.standard_normal((n_samples, n_features), dtype=np.float32)
    W1 = (rng.standard_normal((n_features, 32)) / np.sqrt(n_features)).astype(np.float32)
    W2 = rng.standard_normal((32, n_classes)).astype(np.float32)
    y = np.argmax(np.tanh(X @ W1) @ W2, axis=1).astype(np.int64)
    return X, y


def sine(n_samples: int = 500):
    """The seed notebooks' data: x in [-2 pi, 2 pi], standardised; y = (sin x + 1) / 2, shape (n, 1)."""
    x = np.linspace(-2 * np.pi, 2 * np.pi, n_samples)
    X = ((x - x.mean()) / x.std())[:, None].astype(np.float32)
    y = (0.5 * (np.sin(x) + 1))[:, None].astype(np.float32)
    return X, y


def one_hot(y: np.ndarray, n_classes: int, dtype="float32") -> np.ndarray:
    return (y[:, None] == np.arange(n_classes)).astype(dtype)


def flops_per_epoch(layer_sizes, n_samples: int) -> dict:
    """Matrix-multiply FLOPs of one epoch (2 per multiply-add).

    forward  X @ W.T:   2 n sum_l in_l out_l
    backward dZ.T @ A:  2 n sum_l in_l out_l         (dW, every layer)
             dZ @ W:    2 n sum_{l>0} in_l out_l     (dX, all but the first layer)
    """
    pairs = list(zip(layer_sizes[:-1], layer_sizes[1:]))
    forward = 2 * n_samples * sum(i * o for i, o in pairs)
    weight_grads = forward
    input_grads = 2 * n_samples * sum(i * o for i, o in pairs[1:])
    return {"forward": forward, "backward_dW": weight_grads, "backward_dX": input_grads,
            "total": forward + weight_grads + input_grads}
