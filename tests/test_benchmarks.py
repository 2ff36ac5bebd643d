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


# ---- mixed precision in the benchmark ---------------------------------------------------------------
def _tiny_workload():
    from dataclasses import replace

    from benchmarks.workloads import WORKLOADS, make_data

    workload = replace(WORKLOADS["b"], layer_sizes=(20, 16, 8, 4), batch_size=8, n_samples=24)
    return workload, make_data(workload)


def _relative_distance(a, b, reference):
    """||a - b|| / ||b - reference|| over a list of parameter arrays."""
    num = sum(float(np.sum((x - y) ** 2)) for x, y in zip(a, b))
    den = sum(float(np.sum((y - r) ** 2)) for y, r in zip(b, reference))
    return (num / den) ** 0.5


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_torch_amp_trains_as_nn_xp_mixed_precision_does(half):
    """The AMP system (autocast + GradScaler) and nn_xp's mixed precision, from the same weights on the
    same batches, end close together, and float16's first step overflows and is skipped by both."""
    torch = pytest.importorskip("torch")
    import copy

    import nn_xp as nx
    from benchmarks.systems import NnxpSystem, TorchAmpSystem

    workload, (X, y) = _tiny_workload()
    ours = NnxpSystem(nx, workload, X, y, "cpu", precision=f"mixed_{half}")
    try:
        theirs = TorchAmpSystem(torch, workload, X, y, "cpu", half=half, initial_parameters=ours.initial_parameters,
                                shuffle_rng=copy.deepcopy(ours.shuffle_rng))
        theirs.train(1)
    except RuntimeError as error:  # an older PyTorch without this autocast type on the CPU
        pytest.skip(f"autocast {half} on the CPU: {error}")
    ours.train(1)
    assert _relative_distance(ours.parameters(), theirs.parameters(), ours.initial_parameters) < 1e-2
    if half == "float16":  # the same loss-scaling rule: one skipped step, the scale halved
        assert ours.model.loss_scaler.skipped == 1
        assert theirs.scaler.get_scale() == ours.model.loss_scaler.scale == 2.0**15
    else:
        assert not theirs.scaler.is_enabled() and ours.model.loss_scaler is None


def test_torch_amp_system_computes_in_half_precision():
    """Its result differs from the float32 loop's (so autocast is on), but only by rounding."""
    torch = pytest.importorskip("torch")
    import copy

    import nn_xp as nx
    from benchmarks.systems import NnxpSystem, TorchAmpSystem, TorchSystem

    workload, (X, y) = _tiny_workload()
    reference = NnxpSystem(nx, workload, X, y, "cpu")
    systems = [cls(torch, workload, X, y, "cpu", initial_parameters=reference.initial_parameters,
                   shuffle_rng=copy.deepcopy(reference.shuffle_rng), **extra)
               for cls, extra in ((TorchSystem, {}), (TorchAmpSystem, {"half": "bfloat16"}))]
    for system in systems:
        system.train(1)
    distance = _relative_distance(systems[1].parameters(), systems[0].parameters(), reference.initial_parameters)
    assert 0 < distance < 1e-2
    with pytest.raises(ValueError, match="half must be"):
        TorchAmpSystem(torch, workload, X, y, "cpu", half="float8")


def test_nn_xp_system_trains_at_the_precision_it_is_given():
    import nn_xp as nx
    from benchmarks.systems import NnxpSystem

    workload, (X, y) = _tiny_workload()
    mixed, plain = (NnxpSystem(nx, workload, X, y, "cpu", precision=p) for p in ("mixed_float16", "float32"))
    mixed.train(1)
    plain.train(1)
    assert mixed.model.loss_scaler is not None and plain.model.loss_scaler is None


def test_mixed_rows_are_skipped_on_the_cpu_with_the_reason():
    import nn_xp as nx

    workload, (X, y) = _tiny_workload()
    systems, skipped = run.build_systems(nx, None, ["nn_xp"], workload, X, y, use_cuda=False, mixed=True)
    assert list(systems) == ["nn_xp-cpu"]
    assert "emulation" in skipped["nn_xp_mixed-cpu"] and "torch_amp-cpu" in skipped


def test_mixed_rows_on_a_gpu_share_the_weights_and_batches(monkeypatch):
    """On a GPU, build_systems adds nn_xp in mixed_float16 and PyTorch AMP float16, both from the
    reference nn_xp system's weights and a copy of its shuffle generator (fakes stand in for the GPU)."""
    made = []

    class Fake:
        def __init__(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs
            self.initial_parameters, self.shuffle_rng = ["weights"], np.random.default_rng(7)
            made.append(self)

    class FakeTorch:
        class cuda:
            @staticmethod
            def is_available():
                return True

    from benchmarks import lineup

    for name in ("NnxpSystem", "TorchSystem", "TorchAmpSystem"):
        monkeypatch.setattr(lineup, name, type(name, (Fake,), {}))
    workload, (X, y) = _tiny_workload()
    systems, skipped = run.build_systems(None, FakeTorch, ["nn_xp", "torch"], workload, X, y, use_cuda=True,
                                         cpu=False, mixed=True)
    assert list(systems) == ["nn_xp-cuda", "nn_xp_mixed-cuda", "torch-cuda", "torch_amp-cuda"] and not skipped
    assert systems["nn_xp_mixed-cuda"].kwargs == {"precision": "mixed_float16"}
    amp = systems["torch_amp-cuda"]
    assert amp.args[-1] == "cuda" and amp.kwargs["half"] == "float16"
    assert amp.kwargs["initial_parameters"] is systems["nn_xp-cuda"].initial_parameters
    # a copy of the reference's generator: the same orders, not the same object
    rng = amp.kwargs["shuffle_rng"]
    assert rng is not systems["nn_xp-cuda"].shuffle_rng
    assert rng.integers(1 << 30) == np.random.default_rng(7).integers(1 << 30)


def _record(samples_per_s):
    return {"samples_per_s": samples_per_s, "median_s": 1.0 / samples_per_s, "last_loss": 0.5}


def test_mixed_summary_gives_the_ratios_and_judges_the_targets():
    from benchmarks.report import mixed_summary

    systems = {"nn_xp-cuda": _record(100.0), "nn_xp_mixed-cuda": _record(250.0), "torch-cuda": _record(125.0),
               "torch_amp-cuda": _record(300.0), "floor_half-cuda": {"median_s": 1 / 1000.0}}
    summary = mixed_summary(systems)
    assert summary["nn_xp_mixed_vs_nn_xp_float32"] == pytest.approx(2.5)
    assert summary["nn_xp_mixed_vs_torch_amp"] == pytest.approx(250 / 300)
    assert summary["torch_amp_vs_torch_float32"] == pytest.approx(2.4)
    assert summary["percent_of_half_floor"] == {"nn_xp_mixed-cuda": pytest.approx(25.0),
                                                "torch_amp-cuda": pytest.approx(30.0)}
    assert summary["meets"] == {"nn_xp_mixed_vs_nn_xp_float32": True, "nn_xp_mixed_vs_torch_amp": False}
    del systems["torch_amp-cuda"]
    missing = mixed_summary(systems)
    assert missing["nn_xp_mixed_vs_torch_amp"] is None and missing["meets"]["nn_xp_mixed_vs_torch_amp"] is None


def _fake_results():
    from benchmarks.report import mixed_summary

    systems = {"nn_xp-cuda": _record(100.0), "nn_xp_mixed-cuda": _record(250.0), "torch-cuda": _record(125.0),
               "torch_amp-cuda": _record(300.0), "floor-cuda": {"median_s": 1 / 500.0},
               "floor_half-cuda": {"median_s": 1 / 1000.0}}
    workload = {"title": "784-512-256-10 softmax CE, batch 4096", "n_samples": 20000, "epochs_per_call": 1}
    gpu = {"rss_after_setup_mb": 100.0, "peak_rss_mb": 150.0, "increment_mb": 50.0, "peak_reset": True}
    return {
        "machine": {"date": "today", "cpu_model": "cpu", "logical_cores": 16, "blas": {}, "loadavg_start": [0.0],
                    "threads": {"numpy_blas": 1, "source": "test"}, "versions": {}, "python": "3"},
        "config": {"device": "cuda", "quick": False, "repeats": 1},
        "workloads": {"b": {"workload": workload, "systems": systems, "flops_per_epoch": {"total": 1e9},
                            "mixed": mixed_summary(systems)}},
        "memory_mixed": {"workload": "b", "peak_reset": True, "systems": {
            "nn_xp-cuda": {**gpu, "gpu_after_setup_mb": 64.0, "gpu_peak_mb": 90.0, "gpu_held_mb": 100.0,
                           "gpu_device_used_mb": 700.0},
            "torch-cuda": {**gpu, "gpu_after_setup_mb": 64.0, "gpu_peak_mb": 180.0, "gpu_held_mb": 200.0,
                           "gpu_device_used_mb": 900.0}}},
    }


def test_the_report_shows_the_mixed_precision_ratios_and_gpu_memory():
    from benchmarks.report import markdown, workload_rows

    results = _fake_results()
    text = markdown(results)
    assert "## Mixed precision, workload (b)" in text
    assert "| nn_xp mixed_float16 / nn_xp float32 | 2.50 (target met) | >= 2 |" in text
    assert "| nn_xp mixed_float16 / PyTorch AMP | 0.83 (target missed) | >= 1 |" in text
    assert "| nn_xp mixed_float16, % of float16 floor | 25% | |" in text
    assert "| nn_xp (CuPy) | 100 | 150 | 50 | 64 | 90 | 100 | 700 |" in text
    assert "nn_xp (CuPy) / PyTorch eager (CUDA): GPU peak 0.50, GPU held 0.50" in text
    # the mixed rows are measured against the float16 floor, the float32 rows against float32's
    rows = {row["system"]: row for row in workload_rows(results["workloads"]["b"])}
    assert rows["nn_xp_mixed-cuda"]["percent_of_floor"] == pytest.approx(25.0)
    assert rows["nn_xp-cuda"]["percent_of_floor"] == pytest.approx(20.0)
    assert rows["floor_half-cuda"]["percent_of_floor"] == pytest.approx(100.0)


def test_mixed_takes_workload_keys():
    assert run.parse_args([]).mixed_keys == ["b"]
    assert run.parse_args(["--mixed", ""]).mixed_keys == []
    with pytest.raises(SystemExit):
        run.parse_args(["--mixed", "z"])


def test_cupy_peak_keeps_the_largest_used_bytes_seen_after_an_allocation(monkeypatch):
    """CuPy keeps no peak: CupyPeak reads the pool's used_bytes() after every allocation. A fake CuPy
    plays the pool and calls the hooks as CuPy's pool does (malloc_postprocess after each malloc)."""
    import sys
    import types

    from benchmarks.gpu_memory import CupyPeak, cupy_memory

    class Pool:
        used = 1000

        def used_bytes(self):
            return self.used

        def total_bytes(self):
            return 8 * 2**20

    hooks = []

    class MemoryHook:
        def __enter__(self):
            hooks.append(self)

        def __exit__(self, *exc):
            hooks.remove(self)

    pool = Pool()
    runtime = types.SimpleNamespace(memGetInfo=lambda: (6 * 2**20, 16 * 2**20))
    fake = types.SimpleNamespace(get_default_memory_pool=lambda: pool,
                                 cuda=types.SimpleNamespace(MemoryHook=MemoryHook, runtime=runtime))
    monkeypatch.setitem(sys.modules, "cupy", fake)

    def malloc(size):
        pool.used += size
        for hook in hooks:
            hook.malloc_postprocess(device_id=0, size=size, mem_size=size, mem_ptr=1, pmem_id=1)

    with CupyPeak() as peak:
        malloc(2**20)
        malloc(3 * 2**20)
        pool.used -= 4 * 2**20  # frees: the peak stays
        malloc(2**20)
    malloc(10 * 2**20)  # after the hook is gone: not seen
    assert peak.bytes == 1000 + 4 * 2**20 and not hooks
    figures = cupy_memory(peak, used_after_setup=2**20)
    assert figures["gpu_held_mb"] == 8 and figures["gpu_device_used_mb"] == 10 and figures["gpu_after_setup_mb"] == 1


# ---- kernel launches per step -------------------------------------------------------------------
def _event(cat, name, ts, correlation=None, dur=1.0, ph="X"):
    event = {"ph": ph, "cat": cat, "name": name, "ts": ts, "dur": dur}
    if correlation is not None:
        event["args"] = {"correlation": correlation}
    return event


def test_launch_counting_separates_kernels_copies_and_api_calls_inside_the_window():
    from benchmarks.launches import WINDOW, count_events

    events = [
        _event("user_annotation", WINDOW, ts=100, dur=100),           # the window: 100..200
        _event("cuda_runtime", "cudaLaunchKernel", 110, correlation=1),
        _event("kernel", "sgemm", 150, correlation=1),
        _event("cuda_driver", "cuLaunchKernel", 120, correlation=2),  # CuPy's own kernels
        _event("kernel", "nn_xp_adam", 160, correlation=2),
        _event("cuda_runtime", "cudaMemcpyAsync", 130, correlation=3),
        _event("gpu_memcpy", "Memcpy HtoD", 170, correlation=3),
        _event("cuda_runtime", "cudaMemsetAsync", 131, correlation=4),
        _event("gpu_memset", "Memset (Device)", 171, correlation=4),
        _event("cuda_runtime", "cudaStreamSynchronize", 190),
        _event("cuda_runtime", "cudaMemcpy", 191, correlation=6),     # a blocking copy: a host wait
        _event("gpu_memcpy", "Memcpy DtoH", 192, correlation=6),
        _event("cuda_runtime", "cudaLaunchHostFunc", 140),            # not a kernel launch
        _event("kernel", "nn_xp_adam", 180, correlation=99),          # its API call was not recorded
        _event("cuda_runtime", "cudaLaunchKernel", 250, correlation=5),  # after the window
        _event("kernel", "late", 260, correlation=5),
        _event("cuda_runtime", "cudaDeviceSynchronize", 255),
        _event("kernel", "flow", 150, correlation=1, ph="f"),         # not a complete event
        _event("cpu_op", "aten::mm", 115),
    ]
    counts = count_events(events, steps=2)
    assert counts["window_found"] and counts["driver_api_recorded"]
    assert counts["totals"] == {"kernels": 3, "memcpy": 2, "memset": 1, "api_launches": 2, "api_graph_launches": 0,
                                "api_memcpy": 2, "api_memset": 1, "api_syncs": 1, "api_blocking_memcpy": 1,
                                "uncorrelated_device_events": 1}
    assert counts["per_step"]["kernels"] == 1.5 and counts["per_step"]["api_launches"] == 1.0
    assert counts["top_kernels"][0] == ["nn_xp_adam", 1.0]
    # without the annotation everything counts
    whole = count_events(events[1:], steps=1)
    assert not whole["window_found"] and whole["totals"]["kernels"] == 4 and whole["totals"]["api_syncs"] == 2
    with pytest.raises(ValueError, match="steps"):
        count_events(events, steps=0)


def test_api_kinds():
    from benchmarks.launches import api_kind

    assert [api_kind(n) for n in ("cudaLaunchKernelExC", "cuLaunchKernelEx", "cudaGraphLaunch", "cuMemcpyHtoDAsync",
                                  "cudaMemsetAsync", "cudaEventSynchronize", "cudaLaunchHostFunc", "cudaMalloc")] == [
        "api_launches", "api_launches", "api_graph_launches", "api_memcpy", "api_memset", "api_syncs", None, None]


def test_launch_cases_list_the_fused_switch_only_where_it_exists():
    from benchmarks.launches import cases

    assert cases(None) == [("nn_xp", "float32", None), ("nn_xp", "mixed_float16", None),
                           ("torch", "float32", None), ("torch", "mixed_float16", None)]
    assert [c for c in cases(lambda flag: None) if c[0] == "nn_xp"] == [
        ("nn_xp", "float32", True), ("nn_xp", "float32", False),
        ("nn_xp", "mixed_float16", True), ("nn_xp", "mixed_float16", False)]


@pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")  # torch's profiler on the CPU
@pytest.mark.parametrize("scope", ["step", "epoch"])
@pytest.mark.parametrize("precision", ["float32", "mixed_float16"])
def test_every_launch_case_runs_under_the_profiler_on_the_cpu(scope, precision):
    """The cases the GPU run will profile, on the CPU: they build, train, and the profiler's real trace
    holds the window (and, on the CPU, no kernels)."""
    torch = pytest.importorskip("torch")
    import nn_xp as nx
    from benchmarks.launches import nnxp_case, profile_counts, torch_case

    workload, data = _tiny_workload()
    for case in (nnxp_case(nx, workload, data, scope, precision, steps=3, device="cpu"),
                 torch_case(torch, workload, data, scope, precision, steps=3, device="cpu", half="bfloat16")):
        run_case, sync, steps = case
        counts = profile_counts(torch, run_case, sync, steps)
        assert counts["window_found"] and counts["steps"] == 3
        assert counts["totals"]["kernels"] == 0


@pytest.mark.skipif(GPU_COUNT > 0, reason="checks the answer where no GPU answers")
def test_launches_without_a_gpu_say_so_and_exit_0(tmp_path, capsys):
    from benchmarks import launches

    assert launches.main(["--out", str(tmp_path)]) == 0
    assert "nothing to count" in capsys.readouterr().out and not list(tmp_path.iterdir())


def test_the_launch_table_has_a_row_per_case():
    from benchmarks.launches import WINDOW, count_events, markdown

    counts = count_events([_event("user_annotation", WINDOW, 0, dur=10), _event("kernel", "k", 5)], steps=4)
    rows = [{"workload": "b", "system": "nn_xp", "precision": "float32", "fused": "off", "scope": "step", **counts},
            {"workload": "b", "system": "torch", "precision": "mixed_float16", "fused": "–", "scope": "epoch",
             "error": "RuntimeError: boom"}]
    text = markdown(rows, {"gpu": "H200", "steps": 4})
    assert "| (b) | nn_xp | float32 | off | step | 0.2 | 0.0 | 0.0 | 0.0 | 0.00 | 0.2 |" in text
    assert "| (b) | torch | mixed_float16 | – | epoch | failed: RuntimeError: boom |" in text
    assert "recorded by this profiler: no" in text


@pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")  # torch's profiler on the CPU
def test_launch_measurement_toggles_the_fused_kernels_and_saves_every_row(monkeypatch):
    """measure() on the CPU with a tiny workload and a stand-in for nn_xp's fused switch: every case
    gets a row, nn_xp's with the switch off and on, the switch is left on, and rows are saved as they come."""
    torch = pytest.importorskip("torch")
    import nn_xp as nx
    import nn_xp.backends.cupy_ops
    from benchmarks import launches, workloads

    workload, _ = _tiny_workload()
    monkeypatch.setitem(workloads.WORKLOADS, "b", workload)
    switched, saved = [], []
    monkeypatch.setattr(nn_xp.backends.cupy_ops, "set_fused", switched.append, raising=False)
    rows = launches.measure(nx, torch, ["b"], ["step"], steps=2, save=lambda r: saved.append(len(r)), device="cpu")
    assert [(r["system"], r["precision"], r["fused"]) for r in rows] == [
        ("nn_xp", "float32", "on"), ("nn_xp", "float32", "off"), ("nn_xp", "mixed_float16", "on"),
        ("nn_xp", "mixed_float16", "off"), ("torch", "float32", "–"), ("torch", "mixed_float16", "–")]
    assert not [r["error"] for r in rows if "error" in r]
    assert all(r["steps"] == 2 and r["window_found"] for r in rows)
    assert switched == [True, True, False, True, True, True, False, True] and saved == [1, 2, 3, 4, 5, 6]


# ---- CUDA graph probe --------------------------------------------------------------------------------
class _FakeStream:
    """Stands for a CuPy stream: whether it captures, and what ending the capture does."""

    def __init__(self, end_error=None):
        self.capturing, self.ended, self.end_error = False, 0, end_error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def begin_capture(self):
        self.capturing = True

    def end_capture(self):
        self.capturing = False
        self.ended += 1
        if self.end_error is not None:
            raise self.end_error
        return "graph"


def test_a_failed_capture_is_ended_and_its_error_kept():
    from benchmarks.graph_probe import capture

    def cublas_call():
        raise NotImplementedError("calling cuBLAS API during stream capture is currently unsupported")

    stream = _FakeStream()
    graph, result = capture(None, stream, cublas_call)
    assert graph is None and not result["captured"] and not stream.capturing and stream.ended == 1
    assert result["error"] == ("NotImplementedError: calling cuBLAS API during stream capture is currently "
                               "unsupported")
    stream = _FakeStream(end_error=RuntimeError("capture invalidated"))
    graph, result = capture(None, stream, lambda: None)
    assert graph is None and result["end_error"] == "RuntimeError: capture invalidated" and result["error"] is None
    graph, result = capture(None, _FakeStream(), lambda: None)
    assert graph == "graph" and result["captured"]


def test_the_graph_probe_without_cupy_says_so_and_exits_0(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed here")
    from benchmarks import graph_probe

    assert graph_probe.main(["--out", str(tmp_path)]) == 0
    assert "CuPy is not installed" in capsys.readouterr().out and not list(tmp_path.iterdir())


# ---- the one-call GPU session script ------------------------------------------------------------------
SESSION = ["bash", "benchmarks/gpu_session.sh"]


def _session(*args, **env):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    environment = {**os.environ, "PYTHON": sys.executable, **env}
    return subprocess.run(SESSION + list(args), cwd=root, env=environment, capture_output=True, text=True, timeout=300)


def test_the_gpu_session_parses_and_its_plan_fits_in_8_minutes():
    import shutil

    if shutil.which("bash") is None:
        pytest.skip("no bash")
    import subprocess

    assert subprocess.run(["bash", "-n", "benchmarks/gpu_session.sh"], capture_output=True).returncode == 0
    done = _session("plan")
    assert done.returncode == 0
    rows = [line.split() for line in done.stdout.splitlines()]
    steps = [row[0] for row in rows[:-1]]
    # most valuable first, as the issue ranks them
    assert steps == ["prep", "tests", "parity", "launches", "graph", "bench", "streaming", "distributed"]
    limits = [int(row[1]) for row in rows[:-1]]
    assert sum(limits) == int(rows[-1][1]) <= 480 and "TOTAL_LIMIT=470" in rows[-1][-2] + rows[-1][-1]
    assert _session("plan", TESTS_LIMIT="200").stdout.splitlines()[1] == "tests 200"


def test_the_gpu_session_without_a_gpu_skips_its_steps_and_exits_0(tmp_path):
    if GPU_COUNT > 0:
        pytest.skip("a GPU answers here")
    done = _session("launches", "graph", "bench", "streaming", OUT=str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    for step in ("launches", "graph", "bench", "streaming"):
        assert f"\n{step:12s} skipped" in done.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["session.log"]
    assert "=== done" in (tmp_path / "session.log").read_text()


def test_the_gpu_session_stops_at_its_time_limit_and_says_so(tmp_path):
    done = _session("graph", OUT=str(tmp_path), TOTAL_LIMIT="1")
    assert done.returncode == 1
    assert "out of time, not run" in done.stdout and "\ngraph        out of time" in done.stdout
    assert _session("nosuch", OUT=str(tmp_path)).returncode == 2


def test_a_cpu_memory_table_keeps_its_columns():
    from benchmarks.report import memory_section

    cpu = {"rss_after_setup_mb": 100.0, "peak_rss_mb": 150.0, "increment_mb": 50.0}
    text = "\n".join(memory_section({"workload": "a", "systems": {"nn_xp-cpu": cpu, "torch-cpu": {"error": "x"}}}))
    assert "| nn_xp (NumPy) | 100 | 150 | 50 |\n" in text + "\n" and "GPU" not in text
    assert "| PyTorch eager (CPU) | failed: x | | |" in text


# ---- the other array libraries and compilers in the benchmark ------------------------------------------
def _partial_workload(key="b", n_samples=28):
    """A tiny workload whose epoch ends with a partial batch (28 = 3 x 8 + 4)."""
    from dataclasses import replace

    from benchmarks.workloads import WORKLOADS, make_data

    sizes = (20, 16, 8, 4) if key == "b" else WORKLOADS[key].layer_sizes
    workload = replace(WORKLOADS[key], layer_sizes=sizes, batch_size=8, n_samples=n_samples)
    return workload, make_data(workload)


def _from_the_same_start(cls, library, workload, X, y, dtype="float32"):
    """(nn_xp NumPy reference, torch eager, the system under test), all from the reference's weights
    and copies of its shuffle generator."""
    import copy

    import nn_xp as nx
    from benchmarks.systems import NnxpSystem, TorchSystem

    torch = pytest.importorskip("torch")
    reference = NnxpSystem(nx, workload, X, y, "cpu", dtype=dtype)
    same = {"initial_parameters": reference.initial_parameters}
    theirs = TorchSystem(torch, workload, X, y, "cpu", dtype=dtype, shuffle_rng=copy.deepcopy(reference.shuffle_rng),
                         **same)
    system = cls(library, workload, X, y, "cpu", dtype=dtype, shuffle_rng=copy.deepcopy(reference.shuffle_rng), **same)
    return reference, theirs, system


@pytest.mark.parametrize("key", ["b", "c"])
@pytest.mark.parametrize("form", ["JaxJitSystem", "JaxScanSystem"])
def test_hand_written_jax_trains_as_torch_does_partial_batch_included(form, key):
    """Two epochs of 3 full batches and one of 4 samples, classification and the sigmoid + MSE
    regression: JAX ends where PyTorch eager does, to float32 rounding (a dropped or mis-weighted
    last batch would be a quarter of the update off), and reports the same mean loss."""
    jax = pytest.importorskip("jax")
    from benchmarks import jax_systems

    workload, (X, y) = _partial_workload(key)
    reference, theirs, ours = _from_the_same_start(getattr(jax_systems, form), jax, workload, X, y)
    assert all(np.array_equal(a, b) for a, b in zip(ours.parameters(), reference.initial_parameters))
    for system in (theirs, ours):
        system.train(2)
        system.sync()
    assert _relative_distance(ours.parameters(), theirs.parameters(), reference.initial_parameters) < 1e-4
    assert ours.last_loss() == pytest.approx(theirs.last_loss(), rel=1e-5)
    assert ours.compile_s > 0


def test_the_jit_step_form_compiles_one_step_per_batch_shape():
    jax = pytest.importorskip("jax")
    from benchmarks.jax_systems import JaxJitSystem

    workload, (X, y) = _partial_workload()
    _, _, ours = _from_the_same_start(JaxJitSystem, jax, workload, X, y)
    assert sorted(ours.steps) == [4, 8]
    workload, (X, y) = _partial_workload(n_samples=24)  # no partial batch: one shape
    _, _, ours = _from_the_same_start(JaxJitSystem, jax, workload, X, y)
    assert sorted(ours.steps) == [8]


def test_hand_written_jax_in_float64_is_torch_to_the_last_bits():
    """float64 needs JAX's process-wide x64 switch: a process of its own. Both forms against PyTorch
    eager, 2 epochs with a partial batch: the same arithmetic, differences at float64 rounding."""
    pytest.importorskip("jax")
    pytest.importorskip("torch")
    import subprocess
    import sys
    from pathlib import Path

    script = """
import copy, jax, torch, numpy as np
jax.config.update("jax_enable_x64", True)
import nn_xp as nx
from dataclasses import replace
from benchmarks.workloads import WORKLOADS, make_data
from benchmarks.systems import NnxpSystem, TorchSystem, relative_difference
from benchmarks.jax_systems import JaxJitSystem, JaxScanSystem
workload = replace(WORKLOADS["a"], layer_sizes=(20, 16, 8, 4), batch_size=8, n_samples=28)
X, y = make_data(workload)
reference = NnxpSystem(nx, workload, X, y, "cpu", dtype="float64")
systems = [cls(*lib, workload, X, y, "cpu", dtype="float64", initial_parameters=reference.initial_parameters,
               shuffle_rng=copy.deepcopy(reference.shuffle_rng))
           for cls, lib in ((TorchSystem, (torch,)), (JaxJitSystem, (jax,)), (JaxScanSystem, (jax,)))]
for system in systems:
    system.train(2)
    system.sync()
base = systems[0].parameters()
print(max(max(relative_difference(a, b) for a, b in zip(s.parameters(), base)) for s in systems[1:]))
"""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=root,
                          env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.split()[-1]) < 1e-12


def test_hand_written_jax_refuses_what_it_cannot_do():
    jax = pytest.importorskip("jax")
    from benchmarks.jax_systems import JaxJitSystem

    workload, (X, y) = _partial_workload()
    if not jax.config.jax_enable_x64:
        with pytest.raises(ValueError, match="x64"):
            JaxJitSystem(jax, workload, X, y, "cpu", dtype="float64", initial_parameters=[np.zeros(1)])
    with pytest.raises(ValueError, match="initial_parameters"):
        JaxJitSystem(jax, workload, X, y, "cpu")


def test_torch_compile_trains_as_eager_and_keeps_its_compile_time_apart():
    """The compiled step (compiled once for the full batches, once for the partial one) ends where
    the eager loop does, to float32 rounding; the first call of each shape is counted as compiling."""
    torch = pytest.importorskip("torch")
    from benchmarks.systems import TorchCompileSystem

    workload, (X, y) = _partial_workload(n_samples=12)
    reference, eager, compiled = _from_the_same_start(TorchCompileSystem, torch, workload, X, y)
    try:
        compiled.train(1)
    except Exception as error:  # torch.compile needs a working C++ compiler on the CPU
        pytest.skip(f"torch.compile does not run here: {type(error).__name__}: {error}")
    eager.train(1)
    assert compiled._shapes == {(8, 20), (4, 20)} and compiled.compile_s > 0
    first = compiled.compile_s
    compiled.train(1)
    eager.train(1)
    assert compiled.compile_s == first  # nothing new to compile
    assert _relative_distance(compiled.parameters(), eager.parameters(), reference.initial_parameters) < 1e-4


@pytest.mark.parametrize(("device", "listed", "expected"), [
    ("torch:cpu", ["cpu", "torch:cpu"], True), ("torch:cpu", ["cpu"], False),
    ("torch:cuda:0", ["torch:cuda"], True), ("jax:cpu", ["jax:cpu:0"], True),
    ("jax:gpu:0", ["jax:gpu:1"], False), ("jax:gpu:0", ["cuda:0"], False),
])
def test_a_device_is_listed_with_or_without_its_index_0(device, listed, expected):
    from benchmarks.lineup import is_listed

    assert is_listed(device, listed) is expected


def test_an_nn_xp_library_without_its_device_is_skipped_with_one_line(monkeypatch, capsys):
    """Unlisted: skipped, saying so once for the whole run; listed but refused by the model: skipped
    with the model's error; neither stops NumPy's row."""
    import nn_xp as nx
    from benchmarks import lineup

    original = lineup.NnxpSystem

    def refusing(nx_, workload, X, y, device, **kwargs):
        if device != "cpu":
            raise ValueError(f"device must be one of 'cpu', ..., got {device!r}")
        return original(nx_, workload, X, y, device, **kwargs)

    monkeypatch.setattr(lineup, "NnxpSystem", refusing)
    monkeypatch.setattr(nx, "available_devices", lambda: ["cpu", "jax:cpu"])
    workload, (X, y) = _tiny_workload()
    refused = {}
    for call in range(2):
        systems, skipped = lineup.build_systems(nx, None, ["nn_xp"], workload, X, y, use_cuda=False,
                                                libraries=("numpy", "torch", "jax"), refused=refused)
        assert list(systems) == ["nn_xp-cpu"]
        assert "lacks 'torch:cpu'" in skipped["nn_xp_torch-cpu"]
        assert "refused device 'jax:cpu'" in skipped["nn_xp_jax-cpu"] and "got 'jax:cpu'" in skipped["nn_xp_jax-cpu"]
        printed = capsys.readouterr().out
        assert printed.count("skipped") == (2 if call == 0 else 0)


def test_the_systems_share_the_weights_of_an_untimed_nn_xp_model_when_nn_xp_is_left_out():
    torch = pytest.importorskip("torch")
    import nn_xp as nx
    from benchmarks import lineup

    workload, (X, y) = _tiny_workload()
    systems, _ = lineup.build_systems(nx, torch, ["torch"], workload, X, y, use_cuda=False)
    weights = nx.MLP(list(workload.layer_sizes), output_activation="softmax", init="he", device="cpu",
                     seed=workload.seed).parameters()
    assert list(systems) == ["torch-cpu"]
    assert all(np.array_equal(a, b) for a, b in zip(systems["torch-cpu"].parameters(), weights))


def test_parity_checks_every_system_against_torch_eager():
    pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    import torch

    import nn_xp as nx
    from benchmarks import lineup

    workload, (X, y) = _partial_workload(n_samples=40)
    out = lineup.parity_checks(nx, torch, ["nn_xp", "torch", "jax"], workload, X, y, use_cuda=False, jax=jax,
                               refused={})
    assert set(out) == {"nn_xp-cpu", "jax_jit-cpu", "jax_scan-cpu"}
    assert out["nn_xp-cpu"]["dtype"] == "float64" and out["nn_xp-cpu"]["max_relative_parameter_difference"] < 1e-12
    for name in ("jax_jit-cpu", "jax_scan-cpu"):
        assert out[name]["dtype"] == ("float64" if jax.config.jax_enable_x64 else "float32")
        assert out[name]["max_difference_over_update"] < 1e-3
    for record in out.values():
        assert record["same_initial_weights"] and record["steps"] == 3 and record["n_samples"] == 24
        assert record["reference"] == "torch-cpu" and record["max_update"] > 0
        assert record["loss"] == pytest.approx(record["loss_torch"], rel=1e-5)


def test_libraries_option():
    assert run.parse_args([]).libraries == ["numpy", "torch", "jax"]
    assert run.parse_args(["--libraries", "numpy,jax"]).libraries == ["numpy", "jax"]
    assert "torch_compile" in run.parse_args([]).system_names and "jax" in run.parse_args([]).system_names


@pytest.mark.parametrize("value", ["cupy", "", "numpy,tensorflow"])
def test_bad_libraries_are_refused_naming_the_option(value, capsys):
    with pytest.raises(SystemExit) as info:
        run.parse_args(["--libraries", value])
    assert info.value.code == 2 and "--libraries" in capsys.readouterr().err


def test_the_report_shows_the_new_rows_their_compile_time_and_parity():
    from benchmarks.report import markdown, workload_rows

    systems = {"torch-cpu": _record(100.0), "jax_scan-cpu": {**_record(300.0), "compile_s": 1.5, "warmup_s": 0.2},
               "torch_compile-cpu": {**_record(150.0), "compile_s": 20.0, "warmup_s": 21.0},
               "nn_xp_jax-cpu": _record(50.0)}
    workload = {"title": "tiny", "n_samples": 100, "epochs_per_call": 1}
    parity = {"jax_scan-cpu": {"dtype": "float32", "same_initial_weights": True,
                               "max_relative_parameter_difference": 2e-7, "max_difference_over_update": 1e-4,
                               "loss": 0.5, "loss_torch": 0.5}}
    results = {
        "machine": {"date": "today", "cpu_model": "cpu", "logical_cores": 2, "blas": {}, "loadavg_start": [0.0],
                    "threads": {"numpy_blas": 1, "source": "test"}, "versions": {}, "python": "3"},
        "config": {"device": "cpu", "quick": True, "repeats": 1},
        "workloads": {"a": {"workload": workload, "systems": systems, "flops_per_epoch": {"total": 1e9},
                            "parity": parity}},
    }
    rows = {row["system"]: row for row in workload_rows(results["workloads"]["a"])}
    assert rows["jax_scan-cpu"]["vs_torch"] == pytest.approx(3.0)
    assert rows["torch_compile-cpu"]["vs_torch"] == pytest.approx(1.5)
    assert rows["nn_xp_jax-cpu"]["vs_torch"] == pytest.approx(0.5)
    text = markdown(results)
    assert "| (a) | JAX, jit + scan epoch (CPU) | 300 | 3.3 | 3.00 |" in text
    assert "| (a) | PyTorch torch.compile (CPU) | 20.00 | 21.000 | 0.007 |" in text
    assert "| (a) | JAX, jit + scan epoch (CPU) | float32 | yes | 2.0e-07 | 1.0e-04 | 0.500000 | 0.500000 |" in text
    assert "nn_xp (jax:cpu)" in text


def _nnxp_on(device):
    """An NnxpSystem on `device`, made as the other systems are (its own seed gives the same weights
    and batch order)."""
    import nn_xp as nx
    from benchmarks.systems import NnxpSystem

    def make(_library, workload, X, y, _device, dtype, shuffle_rng, initial_parameters):
        return NnxpSystem(nx, workload, X, y, device, dtype=dtype)

    return make


@pytest.mark.skipif("torch:cpu" not in __import__("nn_xp").available_devices(),
                    reason="nn_xp has no torch:cpu device here")
def test_nn_xp_on_torch_cpu_trains_as_torch_eager_does():
    workload, (X, y) = _partial_workload()
    reference, theirs, ours = _from_the_same_start(_nnxp_on("torch:cpu"), None, workload, X, y)
    assert all(np.array_equal(a, b) for a, b in zip(ours.parameters(), reference.initial_parameters))
    for system in (theirs, ours):
        system.train(2)
        system.sync()
    assert _relative_distance(ours.parameters(), theirs.parameters(), reference.initial_parameters) < 1e-4


@pytest.mark.skipif("jax:cpu" not in __import__("nn_xp").available_devices(), reason="nn_xp has no jax:cpu device here")
def test_nn_xp_on_jax_cpu_trains_as_torch_eager_does():
    workload, (X, y) = _partial_workload()
    reference, theirs, ours = _from_the_same_start(_nnxp_on("jax:cpu"), None, workload, X, y)
    assert all(np.array_equal(a, b) for a, b in zip(ours.parameters(), reference.initial_parameters))
    for system in (theirs, ours):
        system.train(2)
        system.sync()
    assert _relative_distance(ours.parameters(), theirs.parameters(), reference.initial_parameters) < 1e-4


def test_the_report_says_a_reason_shared_by_every_workload_once():
    from benchmarks.report import markdown

    workload = {"title": "tiny", "n_samples": 100, "epochs_per_call": 1}

    def result(skipped):
        return {"workload": workload, "systems": {"torch-cpu": _record(100.0)}, "flops_per_epoch": {"total": 1e9},
                "skipped": skipped}

    lacks = "nx.available_devices() lacks 'jax:cpu'"
    results = {
        "machine": {"date": "today", "cpu_model": "cpu", "logical_cores": 2, "blas": {}, "loadavg_start": [0.0],
                    "threads": {"numpy_blas": 1, "source": "test"}, "versions": {}, "python": "3"},
        "config": {"device": "cpu", "quick": True, "repeats": 1},
        "workloads": {"a": result({"nn_xp_jax-cpu": lacks}),
                      "b": result({"nn_xp_jax-cpu": lacks, "torch_amp-cpu": "left out"})},
    }
    text = markdown(results)
    assert text.count(lacks) == 1 and f"every workload: nn_xp (jax:cpu) skipped: {lacks}" in text
    assert "(b) torch_amp-cpu skipped: left out" in text


def test_nn_xp_on_jax_is_timed_compiled_and_trains_as_on_numpy():
    """The "nn_xp on jax:cpu" system runs fit's compiled step (jax.jit, scan), from the same
    weights and batches as nn_xp on NumPy, to float32 rounding; compile=False times it uncompiled."""
    pytest.importorskip("jax")
    import nn_xp as nx
    from benchmarks.systems import NnxpSystem
    from nn_xp.training import compiled

    workload, (X, y) = _partial_workload()
    reference = NnxpSystem(nx, workload, X, y, "cpu")
    traced = compiled.traces()
    ours = NnxpSystem(nx, workload, X, y, "jax:cpu")
    plain = NnxpSystem(nx, workload, X, y, "jax:cpu", compile=False)
    for system in (reference, ours, plain):
        system.train(2)
        system.sync()
    assert compiled.traces() > traced and "_compiled" in ours.model.__dict__
    assert "_compiled" not in plain.model.__dict__
    assert _relative_distance(ours.parameters(), reference.parameters(), reference.initial_parameters) < 1e-4
    assert _relative_distance(plain.parameters(), reference.parameters(), reference.initial_parameters) < 1e-4
