"""The parity report: two devices training the same model, compared step by step."""

import json

import numpy as np
import pytest

import nn_xp as nx
from nn_xp.parity import TOLERANCE

from .conftest import BACKEND_DEVICES, GPU_COUNT


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 12))
    return X, np.argmax(X @ rng.normal(size=(12, 4)), axis=1)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numpy_fast_path_and_the_standard_only_path_agree(dtype):
    X, y = _data()
    report = nx.parity_report([12, 32, 16, 4], X, y, devices=("cpu", "array_api_strict"), steps=40,
                              batch_size=32, dtype=dtype)
    assert report.passed, report.summary()
    assert len(report.loss) == len(report.gradients) == len(report.parameters) == 40
    assert max(report.parameters) <= TOLERANCE[dtype]
    assert "PASS" in report.summary() and "| 40 |" in report.to_markdown(every=10)


def test_norm_wise_and_element_wise_differences_by_hand():
    from nn_xp.parity import relative_differences

    reference = np.ones(100)
    other = reference.copy()
    other[7] += 0.5  # one element off by half: ||d|| / ||b|| = 0.5 / 10, max|d| / max|b| = 0.5
    norm, element = relative_differences(other, reference)
    assert norm == pytest.approx(0.05, rel=1e-12) and element == pytest.approx(0.5, rel=1e-12)
    assert relative_differences(np.zeros(3), np.zeros(3)) == (0.0, 0.0)


def test_the_report_detects_a_difference(monkeypatch):
    """A backend that gets its gradients slightly wrong must fail the report."""
    X, y = _data()
    original = nx.MLP.train_step

    def skewed(self, X, Y, head, **kwargs):
        L, grads, out = original(self, X, Y, head, **kwargs)
        if self.device == "array_api_strict":
            grads = [g * 1.01 for g in grads]
        return L, grads, out

    monkeypatch.setattr(nx.MLP, "train_step", skewed)
    report = nx.parity_report([12, 16, 4], X, y, devices=("cpu", "array_api_strict"), steps=20, batch_size=32)
    assert not report.passed
    assert max(report.gradients) == pytest.approx(0.01, rel=1e-6)
    assert max(report.gradients_elementwise) == pytest.approx(0.01, rel=1e-6)


def _workload_a_on_the_gpu(dtype):
    from nn_xp.data.datasets import load_dataset

    data = load_dataset("synthetic", n_samples=4000)
    return nx.parity_report([784, 512, 256, 10], data.X, data.y, devices=("cpu", BACKEND_DEVICES["cupy"]),
                            steps=100, batch_size=128, dtype=dtype)


@pytest.mark.skipif(GPU_COUNT == 0, reason="needs a CUDA GPU")
def test_cpu_and_gpu_agree_on_workload_a_in_float64():
    report = _workload_a_on_the_gpu("float64")
    assert report.passed, report.summary()


@pytest.mark.skipif(GPU_COUNT == 0, reason="needs a CUDA GPU")
def test_cpu_and_gpu_stay_at_rounding_level_on_workload_a_in_float32():
    """In float32 (TF32 off) the devices agree to rounding (5e-7 to 9e-7 norm-wise on an H100) until
    a ReLU input within rounding of zero is positive on one device only; Adam's first step for the
    weights that unit then gets is about the learning rate whatever the gradient's size, and the
    runs drift apart from there, as PyTorch's own CPU and CUDA runs do (benchmarks/results/gpu-parity.md).
    So: 1e-5 for the first 20 steps (measured at most 5.4e-7; TF32 matrix products alone err by
    about 3e-4), and the same predicted classes after 100 steps."""
    report = _workload_a_on_the_gpu("float32")
    assert max(report.parameters[:20]) <= 1e-5, report.parameters[:20]
    assert report.same_predictions, report.summary()


def test_cli_parity_writes_a_report(tmp_path):
    from nn_xp.cli import main

    out = tmp_path / "parity.json"
    code = main(["parity", "--devices", "cpu", "array_api_strict", "--steps", "5", "--n-samples", "200",
                 "--layers", "784", "32", "10", "--output", str(out)])
    assert code == 0
    saved = json.loads(out.read_text())
    assert saved["passed"] and saved["steps"] == 5 and len(saved["parameters"]) == 5


# ---- several devices: the first is the reference ------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_several_devices_are_each_compared_with_the_first(dtype):
    """cpu, then array_api_strict and cpu again: the standard-only path passes within the tolerance,
    and the reference against a second run of itself differs by nothing at all."""
    X, y = _data()
    report = nx.parity_report([12, 32, 16, 4], X, y, devices=("cpu", "array_api_strict", "cpu"), steps=30,
                              batch_size=32, dtype=dtype)
    assert report.devices == ("cpu", "array_api_strict", "cpu")
    assert [c.device for c in report.comparisons] == ["array_api_strict", "cpu"]
    strict, itself = report.comparisons
    assert strict.passed(report.tolerance) and max(strict.parameters) <= TOLERANCE[dtype]
    for figures in (itself.loss, itself.gradients, itself.parameters, itself.parameters_elementwise):
        assert len(figures) == 30 and max(figures) == 0.0
    assert report.passed and report.same_predictions
    # the two-device form's figures are the first comparison's
    assert report.parameters == strict.parameters and report.loss == strict.loss
    lines = report.summary().splitlines()
    assert len(lines) == 2 and lines[0].startswith("parity cpu vs array_api_strict")
    assert lines[1].startswith("parity cpu vs cpu") and all("PASS" in line for line in lines)
    text = report.to_markdown(every=10)
    assert "# Parity: cpu vs array_api_strict, cpu" in text
    assert "## cpu vs array_api_strict" in text and "## cpu vs cpu" in text and text.count("| 30 |") == 2


def test_a_failing_device_fails_the_report_and_only_its_comparison(monkeypatch):
    X, y = _data()
    original = nx.MLP.train_step

    def skewed(self, X, Y, head, **kwargs):
        L, grads, out = original(self, X, Y, head, **kwargs)
        if self.device == "array_api_strict":
            grads = [g * 1.01 for g in grads]
        return L, grads, out

    monkeypatch.setattr(nx.MLP, "train_step", skewed)
    report = nx.parity_report([12, 16, 4], X, y, devices=("cpu", "cpu", "array_api_strict"), steps=20, batch_size=32)
    assert not report.passed
    same, skewed_device = report.comparisons
    assert same.passed(report.tolerance) and not skewed_device.passed(report.tolerance)
    assert report.comparison("array_api_strict") is skewed_device
    assert max(skewed_device.gradients) == pytest.approx(0.01, rel=1e-6)
    verdicts = [line.split(": ")[1].split(";")[0] for line in report.summary().splitlines()]
    assert verdicts == ["PASS", "FAIL"]
    saved = report.to_dict()
    assert [(c["device"], c["passed"]) for c in saved["comparisons"]] == [("cpu", True), ("array_api_strict", False)]
    assert not saved["passed"] and saved["parameters"] == same.parameters


@pytest.mark.parametrize(("device", "error"), [("not_a_device", ValueError), ("cuda:99", RuntimeError)])
def test_an_unknown_or_unusable_device_is_refused_by_name_before_any_training(device, error, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was made before every device was checked")

    monkeypatch.setattr("nn_xp.parity.MLP", no_model)
    X, y = _data()
    with pytest.raises(error, match=f"devices={device!r}" if error is RuntimeError else repr(device)):
        nx.parity_report([12, 16, 4], X, y, devices=("cpu", "array_api_strict", device), steps=2)


@pytest.mark.parametrize("devices", [("cpu",), "cpu", ()])
def test_fewer_than_two_devices_are_refused(devices):
    X, y = _data()
    with pytest.raises(ValueError, match="two or more devices"):
        nx.parity_report([12, 16, 4], X, y, devices=devices, steps=2)


def test_cli_parity_compares_several_devices(tmp_path, capsys):
    from nn_xp.cli import main

    out = tmp_path / "parity.json"
    code = main(["parity", "--devices", "cpu", "array_api_strict", "cpu", "--steps", "4", "--n-samples", "200",
                 "--layers", "784", "16", "10", "--output", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "parity cpu vs array_api_strict" in printed and "parity cpu vs cpu" in printed
    saved = json.loads(out.read_text())
    assert saved["devices"] == ["cpu", "array_api_strict", "cpu"]
    assert [c["device"] for c in saved["comparisons"]] == ["array_api_strict", "cpu"]
    assert all(c["passed"] and len(c["parameters"]) == 4 for c in saved["comparisons"])
    assert max(saved["comparisons"][1]["parameters"]) == 0.0


@pytest.mark.parametrize("devices", [["cpu"], ["cpu", "array_api_strict", "not_a_device"]])
def test_cli_parity_refuses_bad_devices_before_reading_data(devices, monkeypatch, capsys):
    from nn_xp.cli import info, main

    def no_data(*args, **kwargs):
        raise AssertionError("the data was read before the devices were checked")

    monkeypatch.setattr(info, "_load_data", no_data)
    assert main(["parity", "--devices", *devices, "--steps", "2"]) == 2
    error = capsys.readouterr().err
    assert "--devices" in error and ("not_a_device" in error if len(devices) > 1 else "two or more" in error)


# ---- the other array libraries, once nn_xp has them ------------------------------------------------------
@pytest.mark.skipif("torch:cpu" not in nx.available_devices(), reason="nn_xp has no torch:cpu device here")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_cpu_trains_as_numpy_does(dtype):
    X, y = _data()
    report = nx.parity_report([12, 32, 16, 4], X, y, devices=("cpu", "torch:cpu", "array_api_strict"), steps=40,
                              batch_size=32, dtype=dtype)
    assert report.passed, report.summary()
    assert report.comparison("torch:cpu").parameters[-1] <= TOLERANCE[dtype]


@pytest.mark.skipif("jax:cpu" not in nx.available_devices(), reason="nn_xp has no jax:cpu device here")
def test_jax_cpu_trains_as_numpy_does():
    """float32 only: JAX computes in float64 only with its process-wide x64 switch on."""
    X, y = _data()
    devices = ("cpu", "jax:cpu") + (("torch:cpu",) if "torch:cpu" in nx.available_devices() else ())
    report = nx.parity_report([12, 32, 16, 4], X, y, devices=devices, steps=40, batch_size=32, dtype="float32")
    assert report.passed, report.summary()
    assert report.comparison("jax:cpu").parameters[-1] <= TOLERANCE["float32"]
