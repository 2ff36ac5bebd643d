"""Kernel launches per training step on a GPU: nn_xp (CuPy) against PyTorch eager, counted by the profiler.

torch.profiler with ProfilerActivity.CUDA records through CUPTI every kernel, copy and memset the
process runs on the GPU, CuPy's included (CuPy and PyTorch share the device's primary context),
and the CUDA API calls that started them: runtime calls (cudaLaunchKernel, PyTorch's and
cuBLAS's) and driver calls (cuLaunchKernel, CuPy's own kernels), where this PyTorch records them.
For workloads (a) and (b) it counts, per training step:
- nn_xp in float32 and in mixed_float16, with its fused CuPy kernels on and off
  (`nn_xp.backends.cupy_ops.set_fused(False)`; where that function does not exist, as the code is);
- PyTorch eager in float32, and under AMP (autocast float16 with a GradScaler);
each in two scopes:
- "step": K steps of the training loop on data already on the GPU (nn_xp's `Epoch.run` over K
  batches, the loop body of `fit`; PyTorch's loop body in benchmarks/systems.py), divided by K;
- "epoch": one epoch as the benchmark times it (`fit(epochs=1)` / `TorchSystem.train(1)`: the
  shuffle, gathers and per-epoch work included), divided by its steps.
Device events (kernels, memcpy, memset) are counted when the API call that issued them lies in
the profiled window, or when the trace holds no such call (CUDA API calls are counted only inside
the window). Host waits are counted too: cuda*Synchronize calls and blocking (non-Async) copies.

    python -m benchmarks.launches [--steps 20] [--workloads a,b] [--scopes step,epoch] [--out DIR]

Writes DIR/launches.json (every count and the most frequent kernels of each case) and
DIR/launches.md (the table, also printed). Without CuPy or a GPU it says so and exits 0. The
counting itself (`count_events`) reads the profiler's Chrome trace and is tested on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

WINDOW = "nn_xp_benchmark_window"
DEVICE_CATEGORIES = {"kernel": "kernels", "gpu_memcpy": "memcpy", "gpu_memset": "memset",
                     "memcpy": "memcpy", "memset": "memset"}  # the last two: older Kineto names
API_CATEGORIES = {"cuda_runtime", "cuda_driver", "runtime", "driver"}
COUNTS = ("kernels", "memcpy", "memset", "api_launches", "api_graph_launches", "api_memcpy", "api_memset",
          "api_syncs", "api_blocking_memcpy", "uncorrelated_device_events")


def api_kind(name: str) -> str | None:
    """Which count a CUDA API call adds to (None: not counted)."""
    if "GraphLaunch" in name:
        return "api_graph_launches"
    if name.startswith(("cudaLaunch", "cuLaunch")) and "HostFunc" not in name:
        return "api_launches"  # cudaLaunchKernel(ExC), cuLaunchKernel(Ex), cooperative launches
    if name.startswith(("cudaMemcpy", "cuMemcpy")):
        return "api_memcpy"
    if name.startswith(("cudaMemset", "cuMemset")):
        return "api_memset"
    if "Synchronize" in name:
        return "api_syncs"
    return None


def count_events(events: list, steps: int, window: str | None = WINDOW, top: int = 10) -> dict:
    """Count a Chrome trace's GPU work and CUDA API calls, in total and per step.

    Args:
        events: the trace's "traceEvents" (dicts with ph, cat, name, ts, dur, args.correlation).
        steps: training steps the window ran. window: the name of the user annotation that
            brackets them (None, or absent from the trace: count everything).
    Returns:
        {"steps", "window_found", "totals": {count: n}, "per_step": {count: n / steps},
         "top_kernels": [[name, count per step], ...], "driver_api_recorded": bool}
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    complete = [e for e in events if e.get("ph") == "X"]
    marks = [e for e in complete
             if window and e.get("name") == window and e.get("cat", "").lower() == "user_annotation"]
    span = (float(marks[0]["ts"]), float(marks[0]["ts"]) + float(marks[0].get("dur", 0.0))) if marks else None

    def inside(e):
        return span is None or span[0] <= float(e["ts"]) <= span[1]

    api_by_correlation = {}
    totals = dict.fromkeys(COUNTS, 0)
    driver_seen = False
    for e in complete:
        if e.get("cat", "").lower() not in API_CATEGORIES:
            continue
        driver_seen = driver_seen or e.get("cat", "").lower() in ("cuda_driver", "driver")
        correlation = (e.get("args") or {}).get("correlation")
        if correlation is not None:
            api_by_correlation[correlation] = e
        name = e.get("name", "")
        kind = api_kind(name)
        if kind is not None and inside(e):
            totals[kind] += 1
            if kind == "api_memcpy" and "Async" not in name:  # a blocking copy waits for the GPU too
                totals["api_blocking_memcpy"] += 1
    kernels = Counter()
    for e in complete:
        kind = DEVICE_CATEGORIES.get(e.get("cat", "").lower())
        if kind is None:
            continue
        issued_by = api_by_correlation.get((e.get("args") or {}).get("correlation"))
        if issued_by is None:
            totals["uncorrelated_device_events"] += 1
        elif not inside(issued_by):
            continue
        totals[kind] += 1
        if kind == "kernels":
            kernels[e.get("name", "?")] += 1
    return {
        "steps": steps,
        "window_found": span is not None,
        "totals": totals,
        "per_step": {key: value / steps for key, value in totals.items()},
        "top_kernels": [[name, n / steps] for name, n in kernels.most_common(top)],
        "driver_api_recorded": driver_seen,
    }


def profile_counts(torch, run, sync, steps: int) -> dict:
    """Run `run()` once under torch.profiler (CPU and CUDA activities), inside the WINDOW annotation,
    and count its trace."""
    from torch.profiler import ProfilerActivity, profile, record_function

    sync()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        with record_function(WINDOW):
            run()
        sync()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    return count_events(events, steps)


# ---- the cases -----------------------------------------------------------------------------------
def nnxp_case(nx, workload, data, scope, precision, steps, device="cuda:0"):
    """(run, sync, steps per run) for nn_xp, warmed up. device="cpu" only to test the harness."""
    from benchmarks.systems import NnxpSystem
    from nn_xp.training import Epoch

    system = NnxpSystem(nx, workload, *data, device, precision=precision)
    system.train(1)  # optimizer, workspace, loss scaler, compiled kernels
    sync = system.sync
    if scope == "epoch":
        return (lambda: system.train(1)), sync, -(-workload.n_samples // workload.batch_size)
    model = system.model
    head = model.head(workload.loss)
    X = model.check_input(system.X)
    Y = model.check_target(system.Y, X.shape[0], head.loss)
    half = None if precision == "float32" else precision.split("_", 1)[1]
    runner = Epoch(model, X, Y, head, workload.batch_size, half=half)
    order = nx.to_device(model.rng.permutation(X.shape[0]), device)

    def run():
        runner.run(0, order)

    run()
    return run, sync, steps


def torch_case(torch, workload, data, scope, precision, steps, device="cuda", half="float16"):
    """(run, sync, steps per run) for PyTorch eager or AMP, warmed up."""
    from benchmarks.systems import TorchAmpSystem, TorchSystem

    if precision == "float32":
        system = TorchSystem(torch, workload, *data, device)
    else:
        system = TorchAmpSystem(torch, workload, *data, device, half=half)
    system.train(1)
    if scope == "epoch":
        return (lambda: system.train(1)), system.sync, -(-workload.n_samples // workload.batch_size)
    B = workload.batch_size

    def run():  # train()'s loop body, on batches already in place
        total = torch.zeros((), dtype=system.X.dtype, device=system.device)
        for index in range(steps):
            Xb, yb = system.X[index * B:(index + 1) * B], system.y[index * B:(index + 1) * B]
            total += system.step(Xb, yb) * Xb.shape[0]
        return total

    run()
    return run, system.sync, steps


def cases(set_fused) -> list:
    """(system, precision, fused) in the order of the table; fused None: nn_xp as it is."""
    fused = [True, False] if set_fused is not None else [None]
    out = [("nn_xp", precision, flag) for precision in ("float32", "mixed_float16") for flag in fused]
    return out + [("torch", "float32", None), ("torch", "mixed_float16", None)]


def measure(nx, torch, keys, scopes, steps, save=lambda rows: None, device="cuda:0") -> list:
    """Every case's counts, in the order scope, workload, case; `save(rows)` after each, so that a run
    cut short by a time limit keeps the step scope, which matters most. device="cpu" tests the harness."""
    import nn_xp.backends.cupy_ops  # imports no CuPy by itself
    from benchmarks.workloads import WORKLOADS, make_data

    set_fused = getattr(nn_xp.backends.cupy_ops, "set_fused", None)  # being added: count "as is" without it
    rows = []
    for scope in scopes:
        for key in keys:
            workload = WORKLOADS[key]
            if scope == "step":
                workload = replace(workload, n_samples=steps * workload.batch_size)
            data = make_data(workload)
            for system, precision, fused in cases(set_fused):
                row = {"workload": key, "system": system, "precision": precision, "scope": scope,
                       "fused": {True: "on", False: "off", None: "as is"}[fused] if system == "nn_xp" else "–"}
                args = (workload, data, scope, precision, steps)
                try:
                    if fused is not None:
                        set_fused(fused)
                    if system == "nn_xp":
                        case = nnxp_case(nx, *args, device=device)
                    else:
                        case = torch_case(torch, *args, device=device.split(":")[0])
                    row.update(profile_counts(torch, *case))
                except Exception as error:
                    row["error"] = f"{type(error).__name__}: {error}"
                finally:
                    if fused is not None:
                        set_fused(True)
                rows.append(row)
                print(line(row), flush=True)
                save(rows)
    return rows


def line(row: dict) -> str:
    head = f"({row['workload']}) {row['system']:5s} {row['precision']:13s} fused {row['fused']:5s} {row['scope']:5s}"
    if "error" in row:
        return f"{head}: failed: {row['error']}"
    p = row["per_step"]
    waits = p["api_syncs"] + p["api_blocking_memcpy"]
    return (f"{head}: {p['kernels']:6.1f} kernels, {p['memcpy']:4.1f} memcpy, {p['memset']:4.1f} memset, "
            f"{p['api_launches']:6.1f} launch calls, {waits:4.1f} host waits per step")


def markdown(rows: list, info: dict) -> str:
    lines = [
        "# Kernel launches per training step", "",
        f"{info.get('gpu', '?')} · CuPy {info.get('cupy')} · torch {info.get('torch')} · "
        f"{info.get('steps')} steps in the 'step' scope · fused switch: {info.get('fused_switch')}", "",
        "Counted by torch.profiler (CUPTI): kernels, memcpy and memset that ran on the GPU, the CUDA API calls "
        "that launched kernels (cudaLaunchKernel*, cuLaunchKernel*), and the host's waits for the GPU "
        "(cuda*Synchronize calls and blocking copies), per training step. 'step': the training loop's body "
        "on data already on the GPU; 'epoch': one whole epoch as the benchmark times it, divided by its "
        "steps. 'uncorrelated': device events whose launching API call the profiler did not record (launch "
        "calls then undercount).", "",
        "| workload | system | precision | fused | scope | kernels | memcpy | memset | launch calls | host waits "
        "| uncorrelated |",
        "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        head = f"| ({row['workload']}) | {row['system']} | {row['precision']} | {row['fused']} | {row['scope']} |"
        if "error" in row:
            lines.append(f"{head} failed: {row['error'][:100]} | | | | | |")
            continue
        p = row["per_step"]
        lines.append(f"{head} {p['kernels']:.1f} | {p['memcpy']:.1f} | {p['memset']:.1f} | {p['api_launches']:.1f} "
                     f"| {p['api_syncs'] + p['api_blocking_memcpy']:.2f} | {p['uncorrelated_device_events']:.1f} |")
    recorded = {row.get("driver_api_recorded") for row in rows if "error" not in row}
    lines += ["", f"Driver API calls (cuLaunchKernel, CuPy's kernels) recorded by this profiler: "
              f"{'yes' if recorded == {True} else 'no' if recorded == {False} else 'in some cases'}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.launches", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="steps in the 'step' scope (default 20)")
    parser.add_argument("--workloads", default="a,b", help="comma-separated workloads (default a,b)")
    parser.add_argument("--scopes", default="step,epoch", help="step, epoch or both (default both)")
    parser.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for launches.json/.md")
    args = parser.parse_args(argv)
    keys = [k for k in args.workloads.split(",") if k]
    scopes = [s for s in args.scopes.split(",") if s]
    if args.steps < 1 or not set(scopes) <= {"step", "epoch"} or not scopes:
        parser.error("--steps must be >= 1 and --scopes a subset of step,epoch")
    import nn_xp as nx
    from nn_xp import backends

    count, why = backends.cuda_status()
    if count == 0:
        print(f"launches: no GPU for nn_xp ({why}); nothing to count")
        return 0
    try:
        import torch
    except ImportError as error:
        print(f"launches: PyTorch is needed for its profiler ({error}); nothing counted")
        return 0
    if not torch.cuda.is_available():
        print("launches: this PyTorch has no CUDA, so its profiler cannot see the GPU; nothing counted")
        return 0
    import cupy

    import nn_xp.backends.cupy_ops

    torch.backends.cuda.matmul.allow_tf32 = False
    info = {"gpu": torch.cuda.get_device_name(0), "cupy": cupy.__version__, "torch": torch.__version__,
            "steps": args.steps,
            "fused_switch": "nn_xp.backends.cupy_ops.set_fused" if hasattr(nn_xp.backends.cupy_ops, "set_fused")
            else "absent (nn_xp as is)"}
    from benchmarks.workloads import WORKLOADS

    unknown = [k for k in keys if k not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads {unknown}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save(rows):
        (out / "launches.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1) + "\n")
        (out / "launches.md").write_text(markdown(rows, info))

    rows = measure(nx, torch, keys, scopes, args.steps, save)
    print(markdown(rows, info))
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
