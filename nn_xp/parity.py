"""Parity reports: train the same model from the same seed on several devices and compare each with
the first, step by step.

Each step every model sees the same batch (drawn from one host generator), computes its loss and
gradients with the same code path `fit` uses, and takes one optimizer step. For each device after
the first (the reference) the report holds, per step, the relative difference of the loss and the
largest over arrays of the gradients' and the parameters' relative differences, b on the reference
device, measured two ways:
- norm-wise, ||a - b|| / ||b|| per array: the relative error of the array as a whole;
- element-wise, max |a - b| / max |b| per array: the worst single element.
It checks each device's norm-wise parameter difference at the end against a per-dtype tolerance,
and that it predicts the same classes as the reference.

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
class Comparison:
    """One device against the reference: per-step largest relative differences over arrays."""

    device: str
    loss: list = field(default_factory=list)
    gradients: list = field(default_factory=list)  # norm-wise, largest over arrays, per step
    parameters: list = field(default_factory=list)  # norm-wise, largest over arrays, per step
    gradients_elementwise: list = field(default_factory=list)
    parameters_elementwise: list = field(default_factory=list)
    same_predictions: bool = False

    def passed(self, tolerance: float) -> bool:
        return bool(self.parameters) and self.parameters[-1] <= tolerance and self.same_predictions

    def to_dict(self, tolerance: float) -> dict:
        return {
            "device": self.device, "passed": self.passed(tolerance), "same_predictions": self.same_predictions,
            "loss": self.loss, "gradients": self.gradients, "parameters": self.parameters,
            "gradients_elementwise": self.gradients_elementwise, "parameters_elementwise": self.parameters_elementwise,
        }


@dataclass
class ParityReport:
    """Per-step differences between a reference device (`devices[0]`) and each other device.

    `comparisons` holds one `Comparison` per device after the reference, in order. The per-step
    lists and `same_predictions` of the report itself are those of the first comparison (the
    two-device form: `devices[1]` against `devices[0]`); `passed` needs every comparison to pass.
    """

    devices: tuple
    dtype: str
    steps: int
    tolerance: float
    comparisons: list = field(default_factory=list)
    tf32: bool = False

    def comparison(self, device: str) -> Comparison:
        """The comparison of `device` (as the report names it, `devices[i]`) with the reference."""
        for item in self.comparisons:
            if item.device == device:
                return item
        raise KeyError(f"device must be one of {list(self.devices[1:])}, got {device!r}")

    @property
    def passed(self) -> bool:
        return bool(self.comparisons) and all(c.passed(self.tolerance) for c in self.comparisons)

    # The two-device form's figures: the first device after the reference.
    @property
    def loss(self) -> list:
        return self.comparisons[0].loss

    @property
    def gradients(self) -> list:
        return self.comparisons[0].gradients

    @property
    def parameters(self) -> list:
        return self.comparisons[0].parameters

    @property
    def gradients_elementwise(self) -> list:
        return self.comparisons[0].gradients_elementwise

    @property
    def parameters_elementwise(self) -> list:
        return self.comparisons[0].parameters_elementwise

    @property
    def same_predictions(self) -> bool:
        return all(c.same_predictions for c in self.comparisons)

    def _line(self, c: Comparison) -> str:
        return (
            f"parity {self.devices[0]} vs {c.device}, {self.dtype}, {self.steps} steps"
            f"{' (TF32 on)' if self.tf32 else ''}: {'PASS' if c.passed(self.tolerance) else 'FAIL'}; "
            f"largest relative difference loss {max(c.loss):.3g}, gradients {max(c.gradients):.3g}, "
            f"parameters at the end {c.parameters[-1]:.3g} norm-wise (tolerance {self.tolerance:g}), "
            f"{c.parameters_elementwise[-1]:.3g} element-wise; "
            f"predicted classes {'identical' if c.same_predictions else 'DIFFER'}"
        )

    def summary(self) -> str:
        """One line per device after the reference: PASS or FAIL, and the largest differences."""
        return "\n".join(self._line(c) for c in self.comparisons)

    def to_markdown(self, every: int = 10) -> str:
        """The summary, then each device's table of every `every`-th step (and the last)."""
        others = ", ".join(c.device for c in self.comparisons)
        lines = [f"# Parity: {self.devices[0]} vs {others} ({self.dtype})", "", self.summary(), ""]
        if len(self.comparisons) > 1:
            lines += [
                "| device | verdict | loss (largest) | gradients (largest, norm) | parameters at the end (norm) "
                "| parameters at the end (element) | predicted classes |",
                "| --- | --- | ---: | ---: | ---: | ---: | --- |",
            ]
            lines += [
                f"| {c.device} | {'PASS' if c.passed(self.tolerance) else 'FAIL'} | {max(c.loss):.3e} "
                f"| {max(c.gradients):.3e} | {c.parameters[-1]:.3e} | {c.parameters_elementwise[-1]:.3e} "
                f"| {'identical' if c.same_predictions else 'DIFFER'} |"
                for c in self.comparisons
            ]
            lines += ["", f"Tolerance on the parameters at the end, norm-wise: {self.tolerance:g}.", ""]
        lines += [
            "Largest relative difference over arrays: norm-wise ||a-b||/||b||, and element-wise "
            "max|a-b|/max|b|.",
        ]
        for c in self.comparisons:
            if len(self.comparisons) > 1:
                lines += ["", f"## {self.devices[0]} vs {c.device}"]
            lines += [
                "",
                "| step | loss | gradients (norm) | parameters (norm) | gradients (element) | parameters (element) |",
                "| ---: | ---: | ---: | ---: | ---: | ---: |",
            ]
            for step in range(self.steps):
                if step % every == 0 or step == self.steps - 1:
                    lines.append(
                        f"| {step + 1} | {c.loss[step]:.3e} | {c.gradients[step]:.3e} | {c.parameters[step]:.3e} "
                        f"| {c.gradients_elementwise[step]:.3e} | {c.parameters_elementwise[step]:.3e} |"
                    )
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        """Every figure; the top-level per-step lists are the first comparison's (the two-device form)."""
        first = self.comparisons[0].to_dict(self.tolerance)
        return {
            "devices": list(self.devices), "dtype": self.dtype, "steps": self.steps, "tf32": self.tf32,
            "tolerance": self.tolerance, "passed": self.passed, "same_predictions": self.same_predictions,
            **{key: first[key] for key in ("loss", "gradients", "parameters", "gradients_elementwise",
                                           "parameters_elementwise")},
            "comparisons": [c.to_dict(self.tolerance) for c in self.comparisons],
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
    """Train the same network on several devices and compare each with the first, step by step.

    Args:
        layer_sizes, activation, output_activation, init, dtype, seed: as for `MLP`.
        X: (n_samples, n_features); y: targets, as for `fit`.
        devices: the reference first, then one or more devices to compare with it, e.g.
            ("cpu", "cuda:0") or ("cpu", "torch:cpu", "jax:cpu", "array_api_strict"). Every one is
            checked (`resolve_device`) before any model is made: an unknown or unavailable device
            raises that check's ValueError or RuntimeError, naming it.
        steps: optimizer steps; each uses the next `batch_size` rows of one seeded shuffle.
        tolerance: largest norm-wise relative parameter difference allowed at the end (default per
            dtype: 1e-9 in float64, 1e-4 in float32).

    Returns:
        ParityReport; `.passed` (every device), `.summary()`, `.to_markdown()`, `.comparisons`
        (one per device after the reference).
    """
    if isinstance(devices, str) or len(devices) < 2:
        raise ValueError(f"devices must name two or more devices (the reference first), got {devices!r}")
    resolved = tuple(backends.resolve_device(d, "devices") for d in devices)
    dtype = backends.resolve_dtype(dtype)
    models = [
        MLP(layer_sizes, activation=activation, output_activation=output_activation, init=init, dtype=dtype,
            device=device, seed=seed)
        for device in resolved
    ]
    head = models[0].head(loss)
    host_X = np.asarray(backends.to_numpy(X))
    data = [(m.check_input(X), m.check_target(y, host_X.shape[0], head)) for m in models]
    optimizers = [get_optimizer(optimizer, m.parameters(), learning_rate) for m in models]
    comparisons = [Comparison(device) for device in resolved[1:]]
    report = ParityReport(resolved, dtype, steps, TOLERANCE[dtype] if tolerance is None else float(tolerance),
                          comparisons, tf32=backends.tf32_enabled())
    for rows in batch_rows(host_X.shape[0], batch_size, steps, seed):
        results = []
        for model, (Xd, Yd) in zip(models, data):
            xp = backends.get_namespace(Xd)
            index = backends.to_device(rows, model.device)
            with backends.device_context(model.device):
                L, grads, _ = model.train_step(xp.take(Xd, index, axis=0), xp.take(Yd, index, axis=0), head)
            results.append((float(L), grads))
        loss_a, grads_a = results[0]
        for c, (loss_b, grads_b) in zip(comparisons, results[1:]):
            c.loss.append(abs(loss_b - loss_a) / max(abs(loss_a), 1e-300))
            norm, element = largest_differences(zip(grads_b, grads_a))
            c.gradients.append(norm)
            c.gradients_elementwise.append(element)
        for model, optimizer, (_, grads) in zip(models, optimizers, results):
            with backends.device_context(model.device):
                optimizer.step(grads)
        for c, model in zip(comparisons, models[1:]):
            norm, element = largest_differences(zip(model.parameters(), models[0].parameters()))
            c.parameters.append(norm)
            c.parameters_elementwise.append(element)
    if models[0].is_classifier:
        predictions = [backends.to_numpy(m.predict(host_X)) for m in models]
        for c, other in zip(comparisons, predictions[1:]):
            c.same_predictions = bool(np.array_equal(predictions[0], other))
    else:
        for c in comparisons:
            c.same_predictions = True
    return report
