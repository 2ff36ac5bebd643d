"""Parity reports: train the same model from the same seed on two devices and compare, step by step.

Each step both models see the same batch (drawn from one host generator), compute their loss and
gradients with the same code path `fit` uses, and take one optimizer step. The report holds, per
step, the relative difference of the loss and the largest over arrays of the gradients' and the
parameters' relative differences, b on the reference device, measured two ways:
- norm-wise, ||a - b|| / ||b|| per array: the relative error of the array as a whole;
- element-wise, max |a - b| / max |b| per array: the worst single element.
It checks the norm-wise parameter difference at the end against a per-dtype tolerance, and that
both devices predict the same classes.

The element-wise figure is reported because it is the stricter one, not checked, because in float32
Adam turns a rounding difference in a gradient element near zero into a difference of up to the
learning rate in that parameter (m / sqrt(v) is about +-1 whatever the gradient's size), so a few
elements of a correct run can differ far more than the array as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import backends
from .models.mlp import MLP
from .optim import get_optimizer

# After 100 Adam steps on workload (a): what two correct backends must agree to.
TOLERANCE = {"float64": 1e-9, "float32": 1e-4}


def relative_differences(a, b) -> tuple[float, float]:
    """(||a - b|| / ||b||, max |a - b| / max |b|), each scale taken as 1 where b is all zero."""
    a, b = backends.to_numpy(a).astype(np.float64), backends.to_numpy(b).astype(np.float64)
    d = np.abs(a - b)
    norm, peak = float(np.linalg.norm(b)), float(np.max(np.abs(b), initial=0.0))
    return float(np.linalg.norm(d)) / (norm or 1.0), float(np.max(d, initial=0.0)) / (peak or 1.0)


def largest_differences(pairs) -> tuple[float, float]:
    """The largest norm-wise and the largest element-wise difference over (a, b) array pairs."""
    differences = [relative_differences(a, b) for a, b in pairs]
    return max(d[0] for d in differences), max(d[1] for d in differences)


def batch_rows(n: int, batch_size: int, steps: int, seed: int):
    """The rows of each step's batch: consecutive slices of one seeded shuffle, reshuffled when the
    next batch would run past the end (so every batch is full)."""
    rng = np.random.default_rng(seed)
    order, position = rng.permutation(n), 0
    for _ in range(steps):
        if position + batch_size > n:
            order, position = rng.permutation(n), 0
        yield order[position : position + batch_size]
        position += batch_size


@dataclass
class ParityReport:
    """Per-step differences between two devices training the same model."""

    devices: tuple
    dtype: str
    steps: int
    tolerance: float
    loss: list = field(default_factory=list)
    gradients: list = field(default_factory=list)  # norm-wise, largest over arrays, per step
    parameters: list = field(default_factory=list)  # norm-wise, largest over arrays, per step
    gradients_elementwise: list = field(default_factory=list)
    parameters_elementwise: list = field(default_factory=list)
    same_predictions: bool = False
    tf32: bool = False

    @property
    def passed(self) -> bool:
        return bool(self.parameters) and self.parameters[-1] <= self.tolerance and self.same_predictions

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"parity {self.devices[0]} vs {self.devices[1]}, {self.dtype}, {self.steps} steps"
            f"{' (TF32 on)' if self.tf32 else ''}: {verdict}; largest relative difference "
            f"loss {max(self.loss):.3g}, gradients {max(self.gradients):.3g}, "
            f"parameters at the end {self.parameters[-1]:.3g} norm-wise (tolerance {self.tolerance:g}), "
            f"{self.parameters_elementwise[-1]:.3g} element-wise; "
            f"predicted classes {'identical' if self.same_predictions else 'DIFFER'}"
        )

    def to_markdown(self, every: int = 10) -> str:
        lines = [
            f"# Parity: {self.devices[0]} vs {self.devices[1]} ({self.dtype})",
            "",
            self.summary(),
            "",
            "Largest relative difference over arrays: norm-wise ||a-b||/||b||, and element-wise "
            "max|a-b|/max|b|.",
            "",
            "| step | loss | gradients (norm) | parameters (norm) | gradients (element) | parameters (element) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for step in range(self.steps):
            if step % every == 0 or step == self.steps - 1:
                lines.append(
                    f"| {step + 1} | {self.loss[step]:.3e} | {self.gradients[step]:.3e} | {self.parameters[step]:.3e} "
                    f"| {self.gradients_elementwise[step]:.3e} | {self.parameters_elementwise[step]:.3e} |"
                )
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        return {
            "devices": list(self.devices), "dtype": self.dtype, "steps": self.steps, "tf32": self.tf32,
            "tolerance": self.tolerance, "passed": self.passed, "same_predictions": self.same_predictions,
            "loss": self.loss, "gradients": self.gradients, "parameters": self.parameters,
            "gradients_elementwise": self.gradients_elementwise, "parameters_elementwise": self.parameters_elementwise,
        }


def parity_report(
    layer_sizes,
    X,
    y,
    *,
    devices=("cpu", "cuda"),
    steps: int = 100,
    batch_size: int = 128,
    dtype: str = "float64",
    activation="relu",
    output_activation="softmax",
    init="he",
    loss=None,
    optimizer: str = "adam",
    learning_rate=None,
    seed: int = 0,
    tolerance=None,
) -> ParityReport:
    """Train the same network on two devices and compare them step by step.

    Args:
        layer_sizes, activation, output_activation, init, dtype, seed: as for `MLP`.
        X: (n_samples, n_features); y: targets, as for `fit`.
        devices: (reference, other), e.g. ("cpu", "cuda:0").
        steps: optimizer steps; each uses the next `batch_size` rows of one seeded shuffle.
        tolerance: largest norm-wise relative parameter difference allowed at the end (default per
            dtype: 1e-9 in float64, 1e-4 in float32).

    Returns:
        ParityReport; `.passed`, `.summary()`, `.to_markdown()`.
    """
    if len(devices) != 2:
        raise ValueError(f"devices must name two devices, got {devices!r}")
    devices = tuple(backends.resolve_device(d, "devices") for d in devices)
    dtype = backends.resolve_dtype(dtype)
    models = [
        MLP(layer_sizes, activation=activation, output_activation=output_activation, init=init, dtype=dtype,
            device=device, seed=seed)
        for device in devices
    ]
    head = models[0].head(loss)
    host_X = np.asarray(backends.to_numpy(X))
    data = [(m.check_input(X), m.check_target(y, host_X.shape[0], head)) for m in models]
    optimizers = [get_optimizer(optimizer, m.parameters(), learning_rate) for m in models]
    report = ParityReport(devices, dtype, steps, TOLERANCE[dtype] if tolerance is None else float(tolerance),
                          tf32=backends.tf32_enabled())
    for rows in batch_rows(host_X.shape[0], batch_size, steps, seed):
        results = []
        for model, (Xd, Yd) in zip(models, data):
            xp = backends.get_namespace(Xd)
            index = backends.to_device(rows, model.device)
            with backends.device_context(model.device):
                L, grads, _ = model.train_step(xp.take(Xd, index, axis=0), xp.take(Yd, index, axis=0), head)
            results.append((float(L), grads))
        (loss_a, grads_a), (loss_b, grads_b) = results
        report.loss.append(abs(loss_b - loss_a) / max(abs(loss_a), 1e-300))
        norm, element = largest_differences(zip(grads_b, grads_a))
        report.gradients.append(norm)
        report.gradients_elementwise.append(element)
        for model, optimizer, (_, grads) in zip(models, optimizers, results):
            with backends.device_context(model.device):
                optimizer.step(grads)
        norm, element = largest_differences(zip(models[1].parameters(), models[0].parameters()))
        report.parameters.append(norm)
        report.parameters_elementwise.append(element)
    if models[0].is_classifier:
        predictions = [backends.to_numpy(m.predict(host_X)) for m in models]
        report.same_predictions = bool(np.array_equal(predictions[0], predictions[1]))
    else:
        report.same_predictions = True
    return report
