"""The benchmark harness's options, and the PyTorch parity reference (benchmarks/ is not timed here)."""

import numpy as np
import pytest

from benchmarks import run
from benchmarks.torch_parity import torch_parity

from .conftest import GPU_COUNT


def test_epochs_per_call_can_be_set_per_workload():
    args = run.parse_args(["--epochs", "a=5,b=20", "--workloads", "a,b"])
    assert args.epochs_per_call == {"a": 5, "b": 20}
    assert run.parse_args([]).epochs_per_call == {}


@pytest.mark.parametrize("value", ["a=0", "a=x", "z=3", "a"])
def test_bad_epochs_are_refused_naming_the_option(value, capsys):
    with pytest.raises(SystemExit) as info:
        run.parse_args(["--epochs", value])
    assert info.value.code == 2 and "--epochs" in capsys.readouterr().err


@pytest.mark.skipif(GPU_COUNT > 0, reason="checks the answer where no GPU answers")
def test_gpu_only_without_a_gpu_says_so(capsys):
    assert run.main(["--gpu-only", "--quick", "--no-memory"]) == 2
    assert "--gpu-only needs a GPU" in capsys.readouterr().out


def test_torch_parity_of_a_device_with_itself_is_exact():
    """The reference measurement itself: the same device twice must give no difference at all, and
    the per-step lists must be complete."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 12))
    y = np.argmax(X @ rng.normal(size=(12, 4)), axis=1)
    out = torch_parity([12, 16, 4], X, y, steps=6, batch_size=32, devices=("cpu", "cpu"))
    for key in ("loss", "gradients", "parameters", "gradients_elementwise", "parameters_elementwise"):
        assert len(out[key]) == 6 and max(out[key]) == 0.0
    assert out["same_predictions"]


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_the_matmul_floor_times_every_product_of_a_step(library):
    if library == "torch":
        pytest.importorskip("torch")
    from benchmarks import floor

    rows = floor.step_matmuls([6, 5, 3], batch_size=4, library=library)
    # forward and dW for both layers, dX for the second only; m x k x n as the floor counts FLOPs
    assert [(r["layer"], r["op"], r["mkn"]) for r in rows] == [
        (0, "forward A@W.T", [4, 6, 5]), (0, "backward dZ.T@A", [5, 4, 6]),
        (1, "forward A@W.T", [4, 5, 3]), (1, "backward dZ.T@A", [3, 4, 5]), (1, "backward dZ@W", [4, 3, 5]),
    ]
    assert all(r["seconds"] > 0 for r in rows)
    epoch = floor.epoch_floor([6, 5, 3], n_samples=10, batch_size=4, library=library)
    assert (epoch["full_batches"], epoch["partial_batch"], epoch["library"]) == (2, 2, library)
    assert epoch["epoch_s"] == pytest.approx(2 * epoch["step_s"] + epoch["partial_step_s"])


def test_the_matmul_floor_refuses_an_unknown_library():
    from benchmarks import floor

    with pytest.raises(ValueError, match="library must be 'numpy' or 'torch'"):
        floor.step_matmuls([3, 2], batch_size=2, library="jax")


def test_the_loading_benchmark_writes_its_table(tmp_path):
    pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from benchmarks import loading

    assert loading.main(["--rows", "500", "--repeats", "1", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "cpu-loading.md").read_text()
    assert "| nn_xp load_file |" in text and "| pandas.read_csv (C engine) |" in text and "target <= 2x" in text
