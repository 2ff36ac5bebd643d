"""Time training of the same networks in nn_xp (on NumPy, PyTorch and JAX arrays), PyTorch eager and
torch.compile, hand-written JAX and scikit-learn, in one run.

    python -m benchmarks.run                       # full run (several minutes on 2 CPU cores)
    python -m benchmarks.run --quick               # smoke run (a minute or two, mostly compiling)
    python -m benchmarks.run --workloads a,c --repeats 7 --device cuda --out benchmarks/results

Writes <out>/<device>-latest.json (every number, machine information) and <out>/<device>-latest.md
(the tables, also printed); --quick writes <device>-quick.* instead. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import hashlib
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: python benchmarks/run.py
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from benchmarks import floor as floors  # noqa: E402
from benchmarks.gpu_memory import CupyPeak, cupy_memory, torch_memory  # noqa: E402
from benchmarks.lineup import LIBRARIES, MIXED_PRECISION, SYSTEMS, _error, build_systems, parity_checks  # noqa: E402
from benchmarks.report import LABELS, markdown, mixed_summary  # noqa: E402
from benchmarks.systems import NnxpSystem, SklearnSystem, TorchAmpSystem, TorchSystem  # noqa: E402
from benchmarks.workloads import WORKLOADS, flops_per_epoch, make_data, quick  # noqa: E402

MEMORY_SYSTEMS = ("nn_xp", "torch", "sklearn")  # measured in fresh processes (memory_child)
SCALING_SAMPLES = (5_000, 10_000, 20_000)
SCALING_WIDTHS = (128, 256, 512, 1024)
SCALING_WIDTH_SAMPLES = 10_000
MEMORY_MARK = "MEMORY_JSON "
_LIMITS = None  # threadpoolctl's limit under --threads, kept alive for the whole run


def log(message: str) -> None:
    print(message, flush=True)


# ---- environment ------------------------------------------------------------------------------
def blas_threads(requested: int | None):
    """(threads NumPy's BLAS uses, how that was found, threadpoolctl's record of NumPy's BLAS).

    Call before torch and scikit-learn are imported, so the BLAS found is NumPy's own.
    """
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        n = requested or os.cpu_count() or 1
        return n, "--threads" if requested else "os.cpu_count() (threadpoolctl not installed)", {}
    if requested:
        global _LIMITS
        _LIMITS = threadpool_limits(limits=requested, user_api="blas")
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    numpy_root = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy")
    own = [p for p in pools if p.get("filepath", "").startswith(numpy_root)] or pools
    if not own:
        n = requested or os.cpu_count() or 1
        return n, "os.cpu_count() (threadpoolctl found no BLAS)", {}
    return int(own[0]["num_threads"]), "--threads" if requested else "threadpoolctl", own[0]


def import_nn_xp(attempts: int = 4, wait_s: float = 60.0):
    """Import nn_xp and train a tiny model once; if that fails (the package may be mid-edit), wait and retry."""
    for attempt in range(1, attempts + 1):
        try:
            nx = importlib.import_module("nn_xp")
            for module in ("nn.network", "models.sequential", "models.mlp", "nn.layers", "backends", "nn.heads",
                           "training", "optim", "nn.activations"):
                importlib.import_module(f"nn_xp.{module}")
            smoke = nx.MLP([3, 4, 2], output_activation="softmax", device="cpu", seed=0)
            smoke.fit(np.zeros((4, 3), np.float32), np.array([0, 1, 0, 1]), epochs=1, batch_size=2, verbose=0)
            return nx
        except Exception as error:
            if attempt == attempts:
                raise
            log(f"nn_xp does not import or train ({type(error).__name__}: {error}); it may be mid-edit, "
                f"retrying in {wait_s:.0f} s ({attempt}/{attempts - 1})")
            for name in [m for m in sys.modules if m == "nn_xp" or m.startswith("nn_xp.")]:
                del sys.modules[name]
            time.sleep(wait_s)


def import_torch(threads: int):
    try:
        import torch
    except Exception as error:
        log(f"PyTorch is not importable ({type(error).__name__}: {error}): skipping the PyTorch systems")
        return None
    torch.set_num_threads(threads)
    return torch


def import_jax():
    """JAX, or None (with a line saying why). It must not take most of a GPU's memory at its first
    use, as it does by default: CuPy and PyTorch share the GPU with it in one run."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        import jax
    except Exception as error:
        log(f"JAX is not importable ({type(error).__name__}: {error}): skipping the JAX systems")
        return None
    return jax


def import_sklearn():
    try:
        import sklearn
        import sklearn.neural_network
    except Exception as error:
        log(f"scikit-learn is not importable ({type(error).__name__}: {error}): skipping it")
        return None
    return sklearn


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_total_gb():
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        return None


def _source_hash() -> str:
    """sha256 of nn_xp's *.py files: ties these numbers to the code they measured."""
    digest = hashlib.sha256()
    for path in sorted((REPO_ROOT / "nn_xp").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def machine_info(nx, torch, sklearn, threads, source, blas, use_cuda) -> dict:
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": _memory_total_gb(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            "numpy": np.__version__,
            "nn_xp": nx.__version__,
            "torch": torch.__version__ if torch else None,
            "sklearn": sklearn.__version__ if sklearn else None,
        },
        "nn_xp_source_sha256": _source_hash(),
        "blas": {k: blas[k] for k in ("internal_api", "version", "architecture", "threading_layer", "filepath")
                 if k in blas},
        "threads": {"numpy_blas": threads, "source": source, "torch": torch.get_num_threads() if torch else None},
        "loadavg_start": list(os.getloadavg()),
        "nn_xp_available_devices": nx.available_devices(),
    }
    try:
        info["numpy_config"] = np.show_config(mode="dicts").get("Build Dependencies", {})
    except TypeError:  # NumPy < 1.25
        pass
    if torch is not None:
        info["torch_parallel_info"] = torch.__config__.parallel_info()
    if use_cuda:
        import cupy

        info["versions"]["cupy"] = cupy.__version__
        info["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
        if torch is not None and torch.cuda.is_available():
            info["torch_cuda"] = torch.version.cuda
    return info


# ---- timing -----------------------------------------------------------------------------------
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_counters():
    """(CPU seconds busy on the whole machine, CPU seconds of this process, wall clock)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
        busy = (sum(ticks) - ticks[3] - ticks[4]) / _CLOCK_TICKS  # all but idle and iowait
    except OSError:
        busy = float("nan")
    mine = os.times()
    return busy, mine.user + mine.system, time.perf_counter()


def other_load(before, after) -> float:
    """Cores' worth of CPU that other processes used between two `_cpu_counters()` readings."""
    wall = after[2] - before[2]
    return max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / wall) if wall > 0 else float("nan")


class Timer:
    """Times one call of `system.train(epochs)`, from synchronised device to synchronised device.

    Before each call it idles `pause_s`: OpenBLAS's idle threads spin for about 0.1 s and OpenMP's
    for a while too, so without the pause a system would share the cores with the previous
    system's spinning threads. This machine may be shared, so it also watches the other
    processes: while they keep more than `max_load` cores busy it idles on (in `pause_s` steps), and
    a call during which they did is timed again, up to `retakes` times; both within a budget of
    `budget_s` seconds for the whole run. The other processes' load is recorded with every time.
    `train` may return its own seconds (the matmul floor does: it times matmuls, not itself).
    """

    def __init__(self, pause_s: float = 0.2, max_load: float = 0.25, retakes: int = 2, budget_s: float = 60.0):
        self.pause_s, self.max_load, self.retakes, self.budget_s = pause_s, max_load, retakes, budget_s
        self.spent_s = 0.0  # waiting for quiet, and calls thrown away

    def _busy(self, load: float) -> bool:
        return load > self.max_load and self.spent_s < self.budget_s  # False on nan (no /proc/stat)

    def _pause(self) -> None:
        while True:
            before = _cpu_counters()
            time.sleep(self.pause_s)
            if not self._busy(other_load(before, _cpu_counters())):
                return
            self.spent_s += self.pause_s

    def __call__(self, system, epochs: int) -> tuple[float, float, int]:
        """(seconds, other processes' load in cores during the call, retakes used)."""
        for attempt in range(self.retakes + 1):
            gc.collect()
            system.sync()
            self._pause()
            before = _cpu_counters()
            start = time.perf_counter()
            measured = system.train(epochs)
            system.sync()
            seconds = time.perf_counter() - start
            load = other_load(before, _cpu_counters())
            if measured is not None:
                seconds = measured
            if attempt == self.retakes or not self._busy(load):
                break
            self.spent_s += time.perf_counter() - start
        return seconds, load, attempt


def time_systems(systems: dict, epochs: int, repeats: int, timer: Timer) -> tuple[dict, list]:
    """One warm-up call each, then `repeats` rounds in which every system runs once, in an order
    rotated by one each round. A system that raises is dropped and its error recorded."""
    records = {name: {"times_s": [], "other_load": [], "retakes": 0, "error": None} for name in systems}
    active = list(systems)
    for name in list(active):
        try:
            records[name]["warmup_s"] = Timer(timer.pause_s, retakes=0, budget_s=0)(systems[name], epochs)[0]
        except Exception as error:
            records[name]["error"] = _error(error)
            active.remove(name)
            log(f"    {name} failed in warm-up: {records[name]['error']}")
    orders = []
    for round_ in range(repeats):
        shift = round_ % max(len(active), 1)
        order = active[shift:] + active[:shift]
        orders.append(order)
        for name in order:
            if name not in active:
                continue
            try:
                seconds, load, retakes = timer(systems[name], epochs)
                records[name]["times_s"].append(seconds)
                records[name]["other_load"].append(load)
                records[name]["retakes"] += retakes
            except Exception as error:
                records[name]["error"] = _error(error)
                active.remove(name)
                log(f"    {name} failed: {records[name]['error']}")
    for name, record in records.items():
        times = record["times_s"]
        if times:
            # The median of the undisturbed calls when at least half are (a call disturbed after the
            # retake budget ran out can be 10-40x slow on a 2-core machine), else of all of them.
            clean = [t for t, load in zip(times, record["other_load"]) if not load > timer.max_load]
            kept = clean if 2 * len(clean) >= len(times) else times
            record["median_s"] = statistics.median(kept)
            record["median_of"] = "undisturbed calls" if kept is clean else "all calls"
            record["undisturbed_calls"] = len(clean)
            record["min_s"] = min(times)
            record["median_other_load"] = statistics.median(record["other_load"])
            try:
                record["last_loss"] = systems[name].last_loss()
            except Exception:
                record["last_loss"] = None
        if getattr(systems[name], "compile_s", None) is not None:  # compiled systems: kept out of the times
            record["compile_s"] = systems[name].compile_s
    return records, orders


def bench_workload(nx, torch, wanted, workload, repeats, use_cuda, timer, *, with_floor=True, with_parity=True,
                   cpu=True, mixed=False, jax=None, libraries=("numpy",), refused=None) -> dict:
    X, y = make_data(workload)
    refused = {} if refused is None else refused
    systems, skipped = build_systems(nx, torch, wanted, workload, X, y, use_cuda, cpu, mixed, jax=jax,
                                     libraries=libraries, refused=refused)
    if with_floor:
        for device in (["cpu"] if cpu else []) + (["cuda:0"] if use_cuda else []):
            kind = device.split(":")[0]
            systems[f"floor-{kind}"] = floors.FloorSystem(
                workload.layer_sizes, workload.n_samples, workload.batch_size, device)
            # The same matmuls through PyTorch's BLAS: how much of nn_xp vs torch is the BLAS itself.
            if f"torch-{kind}" in systems:
                systems[f"floor_torch-{kind}"] = floors.FloorSystem(
                    workload.layer_sizes, workload.n_samples, workload.batch_size, device, library="torch")
            if "nn_xp_mixed-cuda" in systems and kind == "cuda":  # the products of mixed_float16: CuPy's float16
                systems["floor_half-cuda"] = floors.FloorSystem(
                    workload.layer_sizes, workload.n_samples, workload.batch_size, device, dtype="float16")
    records, orders = time_systems(systems, workload.epochs_per_call, repeats, timer)
    samples_per_call = workload.n_samples * workload.epochs_per_call
    for name, record in records.items():
        record["label"] = LABELS.get(name, name)
        if "median_s" in record:
            record["samples_per_s"] = samples_per_call / record["median_s"]
    result = {
        "workload": workload.as_dict(),
        "flops_per_epoch": flops_per_epoch(workload.layer_sizes, workload.n_samples),
        "systems": records,
        "skipped": skipped,
        "orders": orders,
    }
    for name, system in systems.items():
        if isinstance(system, floors.FloorSystem) and system.last is not None:
            records[name]["last_measurement"] = system.last
    if mixed and use_cuda:
        result["mixed"] = mixed_summary(records)
    del systems
    gc.collect()
    if with_parity and torch is not None:
        try:
            result["parity"] = parity_checks(nx, torch, wanted, workload, X, y, use_cuda, cpu, jax=jax,
                                             libraries=libraries, refused=refused)
        except Exception as error:
            result["parity"] = {"all": {"error": _error(error)}}
    return result


def print_workload(key: str, result: dict) -> None:
    for name, record in result["systems"].items():
        if record.get("median_s"):
            log(f"    {name:16s} {record['samples_per_s']:>12,.0f} samples/s   median {record['median_s']:.3f} s "
                f"(times {', '.join(f'{t:.3f}' for t in record['times_s'])}; other processes "
                f"{', '.join(f'{x:.2f}' for x in record['other_load'])} cores; {record['retakes']} retakes; "
                f"median of {record['median_of']})")
    for name, record in result["systems"].items():
        if record.get("compile_s") is not None:
            log(f"    {name:16s} compiled in {record['compile_s']:.2f} s (not timed; warm-up call "
                f"{record.get('warmup_s', float('nan')):.2f} s)")
    for name, parity in result.get("parity", {}).items():
        if "error" in parity:
            log(f"    parity {name} failed: {parity['error']}")
        else:
            log(f"    parity {name} vs {parity['reference']} ({parity['dtype']}, {parity['steps']} steps): "
                f"max relative parameter difference {parity['max_relative_parameter_difference']:.2e}, "
                f"loss {parity['loss']:.6f} vs {parity['loss_torch']:.6f}")


# ---- memory: one fresh process per system ------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _vm_hwm_mb():
    """This process's peak RSS (VmHWM), which /proc/self/clear_refs can reset; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None


def memory_child(name: str, threads: int | None, quick_run: bool, workload_key: str = "a") -> None:
    """In a fresh process: imports and data, RSS; one epoch of `name`; peak RSS, and on a GPU the
    figures of gpu_memory.py. Prints one JSON line."""
    system, kind = name.split("-")
    library = "nn_xp" if system.startswith("nn_xp") else system.split("_")[0]  # nn_xp_mixed, torch_amp
    threads, _, _ = blas_threads(threads)
    workload = quick(WORKLOADS[workload_key]) if quick_run else WORKLOADS[workload_key]
    torch = nx = None
    if library == "nn_xp":
        nx = import_nn_xp()
    elif library == "torch":
        torch = import_torch(threads)
    else:
        import_sklearn()
    X, y = make_data(workload)
    gc.collect()
    rss_setup = _rss_mb()
    try:  # start the peak afresh, so imports' and data creation's transient peaks do not count
        Path("/proc/self/clear_refs").write_text("5")
        peak_reset = True
    except OSError:
        peak_reset = False
    gpu_peak = CupyPeak() if kind == "cuda" and library == "nn_xp" else contextlib.nullcontext()
    with gpu_peak as peak:  # from before the data goes to the GPU
        if system == "nn_xp":
            runner = NnxpSystem(nx, workload, X, y, "cuda:0" if kind == "cuda" else "cpu")
        elif system == "nn_xp_mixed":
            runner = NnxpSystem(nx, workload, X, y, "cuda:0" if kind == "cuda" else "cpu", precision=MIXED_PRECISION)
        elif system == "torch":
            runner = TorchSystem(torch, workload, X, y, kind)
        elif system == "torch_amp":
            runner = TorchAmpSystem(torch, workload, X, y, kind, half="float16")
        else:
            runner = SklearnSystem(workload, X, y)
        if kind == "cuda":
            runner.sync()
            after_setup = peak.pool.used_bytes() if peak is not None else torch.cuda.memory_allocated()
        runner.train(1)
        runner.sync()
    # ru_maxrss of a child started by fork+exec starts at the parent's RSS (the kernel keeps the
    # forked image's peak across exec), so the peak comes from VmHWM, which is this image's alone.
    hwm, maxrss = _vm_hwm_mb(), _maxrss_mb()
    rss_peak = hwm if hwm is not None else maxrss
    out = {"rss_after_setup_mb": rss_setup, "peak_rss_mb": rss_peak, "increment_mb": rss_peak - rss_setup,
           "ru_maxrss_mb": maxrss, "vm_hwm_mb": hwm, "peak_reset": peak_reset, "n_samples": workload.n_samples,
           "workload": workload.key, "batch_size": workload.batch_size}
    if kind == "cuda":
        out.update(cupy_memory(peak, after_setup) if peak is not None else torch_memory(torch, after_setup))
    print(MEMORY_MARK + json.dumps(out), flush=True)


def _memory_record(workload_key: str, systems: dict) -> dict:
    """measure_memory's results for one workload, with whether every child could reset its peak."""
    return {"workload": workload_key, "systems": systems,
            "peak_reset": all(r.get("peak_reset") for r in systems.values() if "error" not in r)}


def measure_memory(names, threads_override, quick_run, workload_key: str = "a") -> dict:
    results = {}
    for name in names:
        command = [sys.executable, "-m", "benchmarks.run", "--memory-child", name, "--memory-workload", workload_key]
        if threads_override:
            command += ["--threads", str(threads_override)]
        if quick_run:
            command.append("--quick")
        try:
            done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
            lines = [line for line in done.stdout.splitlines() if line.startswith(MEMORY_MARK)]
            if not lines:
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                raise RuntimeError(f"exit {done.returncode}: {tail[0]}")
            results[name] = json.loads(lines[-1][len(MEMORY_MARK):])
            r = results[name]
            gpu = (f"; GPU peak {r['gpu_peak_mb']:.0f} MB, held {r['gpu_held_mb']:.0f} MB, device used "
                   f"{r['gpu_device_used_mb']:.0f} MB" if "gpu_peak_mb" in r else "")
            log(f"    {name:16s} RSS after setup {r['rss_after_setup_mb']:.0f} MB, "
                f"peak {r['peak_rss_mb']:.0f} MB, increment {r['increment_mb']:.0f} MB{gpu}")
        except Exception as error:
            results[name] = {"error": _error(error)}
            log(f"    {name} failed: {results[name]['error']}")
    return results


# ---- scaling -------------------------------------------------------------------------------------
def scaling(nx, torch, wanted, repeats, quick_run, timer) -> dict:
    """Seconds per epoch for nn_xp and torch on the CPU vs samples and vs hidden width."""
    wanted = [s for s in wanted if s in ("nn_xp", "torch")]
    base = WORKLOADS["a"]
    samples = (1_000, 2_000) if quick_run else SCALING_SAMPLES
    widths = (32, 64) if quick_run else SCALING_WIDTHS
    width_samples = 1_000 if quick_run else SCALING_WIDTH_SAMPLES
    out = {"samples": [], "width": []}

    def run(workload, row):
        X, y = make_data(workload)
        systems, _ = build_systems(nx, torch, wanted, workload, X, y, use_cuda=False)
        records, _ = time_systems(systems, 1, repeats, timer)
        for name, record in records.items():
            row[name] = record.get("median_s")
            row[f"{name}_times_s"] = record["times_s"]
        log("    " + ", ".join(f"{k}={v}" for k, v in row.items() if not k.endswith("_times_s") and k != "description"))
        return row

    for n in samples:
        workload = replace(base, n_samples=n)
        out["samples"].append(run(workload, {"n_samples": n, "batch_size": base.batch_size,
                                             "description": "784-512-256-10"}))
    for width in widths:
        workload = replace(base, layer_sizes=(784, width, width, 10), n_samples=width_samples)
        out["width"].append(run(workload, {"width": width, "n_samples": width_samples, "batch_size": base.batch_size,
                                           "description": f"784-w-w-10, n={width_samples}"}))
    return out


# ---- main ------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Time training in nn_xp, PyTorch (eager, torch.compile), JAX and scikit-learn on the same "
        "networks, data, initial weights, batch order and optimizer settings.",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny data, 1 repeat, no memory or scaling "
                        "(a minute or two, mostly compiling)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per system (default 5; --quick 2)")
    parser.add_argument("--workloads", default="a,b,c,d", help="comma-separated subset of a,b,c,d (default all)")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated subset of {','.join(SYSTEMS)} (default all; jax: the hand-written "
                        "JAX reference, its jit-step and jit+scan forms)")
    parser.add_argument("--libraries", default=",".join(LIBRARIES),
                        help=f"the array libraries nn_xp runs on, a subset of {','.join(LIBRARIES)} (default all: "
                        "each one whose device nx.available_devices() lists; the others are skipped with a line "
                        "saying why)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="cpu: CPU systems only; cuda: also nn_xp on CuPy and torch on CUDA "
                        "(auto: cuda when nn_xp sees a GPU)")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"), help="results folder")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS and torch threads (default: what NumPy's BLAS uses)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling tables")
    parser.add_argument("--pause", type=float, default=None,
                        help="seconds of idle before each timed call, so the previous library's threads "
                        "stop spinning (default 0.2; --quick 0.02)")
    parser.add_argument("--max-load", type=float, default=0.25,
                        help="retake a timed call when other processes kept more than this many cores busy")
    parser.add_argument("--retakes", type=int, default=2, help="at most this many retakes per timed call")
    parser.add_argument("--wait-budget", type=float, default=120.0,
                        help="seconds the whole run may spend waiting for other processes and retaking calls")
    parser.add_argument("--gpu-only", action="store_true",
                        help="with a GPU: time only the systems on the GPU and the GPU floor")
    parser.add_argument("--epochs", default="",
                        help="epochs per timed call for some workloads, e.g. a=10,b=20 (default: the "
                        "workload's own; on a GPU one epoch of (a) or (b) is milliseconds, too short "
                        "to time steadily)")
    parser.add_argument("--mixed", default="b",
                        help="workloads that get the mixed-precision rows on a GPU: nn_xp mixed_float16 and "
                        "PyTorch AMP (default b; '' for none; on the CPU they are skipped)")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--memory-workload", default="a", choices=tuple(WORKLOADS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown or not workloads:
        parser.error(f"--workloads must list some of {list(WORKLOADS)}, got {args.workloads!r}")
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not systems or any(s not in SYSTEMS for s in systems):
        parser.error(f"--systems must list some of {list(SYSTEMS)}, got {args.systems!r}")
    args.libraries = [s.strip() for s in args.libraries.split(",") if s.strip()]
    if not args.libraries or any(s not in LIBRARIES for s in args.libraries):
        parser.error(f"--libraries must list some of {list(LIBRARIES)}, got {','.join(args.libraries)!r}")
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    args.epochs_per_call = {}
    for item in filter(None, (part.strip() for part in args.epochs.split(","))):
        key, _, value = item.partition("=")
        if key not in WORKLOADS or not value.isdigit() or int(value) < 1:
            parser.error(f"--epochs takes items like a=10 (a workload and a positive count), got {item!r}")
        args.epochs_per_call[key] = int(value)
    args.mixed_keys = [w.strip() for w in args.mixed.split(",") if w.strip()]
    if any(w not in WORKLOADS for w in args.mixed_keys):
        parser.error(f"--mixed must list some of {list(WORKLOADS)} (or be empty), got {args.mixed!r}")
    args.workload_keys, args.system_names = workloads, systems
    args.repeats = args.repeats or (1 if args.quick else 5)
    args.pause = args.pause if args.pause is not None else (0.02 if args.quick else 0.2)
    if args.quick:  # a smoke run: no waiting for a quiet machine, no subprocesses, no sweeps
        args.no_memory = args.no_scaling = True
        args.wait_budget = 0.0
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, args.threads, args.quick, args.memory_workload)
        return 0
    started = time.perf_counter()
    threads, source, blas = blas_threads(args.threads)  # before torch/sklearn load their own BLAS
    nx = import_nn_xp()
    gpus = [d for d in nx.available_devices() if d.startswith("cuda")]
    if args.device == "cuda" and not gpus:
        from nn_xp import backends

        log(f"--device cuda: nn_xp sees no GPU ({backends.cuda_status()[1]})")
        return 2
    use_cuda = bool(gpus) and args.device != "cpu"
    if args.gpu_only and not use_cuda:
        log("--gpu-only needs a GPU that nn_xp sees and --device cuda or auto")
        return 2
    cpu = not args.gpu_only
    device = "cuda" if use_cuda else "cpu"
    # torch's threads are set for nn_xp on torch:cpu as for PyTorch itself
    uses_torch = {"torch", "torch_compile"} & set(args.system_names) or "torch" in args.libraries
    torch = import_torch(threads) if uses_torch else None
    jax = import_jax() if "jax" in args.system_names or "jax" in args.libraries else None
    sklearn = import_sklearn() if "sklearn" in args.system_names else None
    missing = {"torch": torch is None, "torch_compile": torch is None, "jax": jax is None, "sklearn": sklearn is None}
    wanted = [s for s in args.system_names if not missing.get(s)]
    if {"torch", "torch_compile"} & set(args.system_names) and torch is None:
        log("(PyTorch systems skipped: not importable)")
    info = machine_info(nx, torch, sklearn, threads, source, blas, use_cuda)
    info["versions"]["jax"] = jax.__version__ if jax else None
    refused = {}  # nn_xp devices found unusable: each is reported once, then skipped
    log(f"nn_xp benchmark on {device}: {info['cpu_model']}, {info['logical_cores']} cores, "
        f"BLAS threads {threads} ({source}), torch threads {info['threads']['torch']}, "
        f"repeats {args.repeats}{', quick' if args.quick else ''}")
    results = {
        "machine": info,
        "config": {"device": device, "quick": args.quick, "repeats": args.repeats, "workloads": args.workload_keys,
                   "systems": wanted, "libraries": args.libraries, "gpu_only": args.gpu_only,
                   "epochs_per_call": args.epochs_per_call,
                   "command": " ".join([Path(sys.executable).name] + sys.argv)},
        "workloads": {},
    }
    timer = Timer(args.pause, args.max_load, args.retakes, args.wait_budget)
    results["config"].update(pause_s=args.pause, max_other_load=args.max_load, max_retakes=args.retakes,
                             wait_budget_s=args.wait_budget)

    log("large square sgemm ...")
    results["square_gemm"] = []
    gemms = ([(512 if args.quick else 2048, "cpu")] if cpu else []) + ([(8192, "cuda:0")] if use_cuda else [])
    for size, gemm_device in gemms:
        gemm = floors.SquareGemm(size, gemm_device)
        loads = [timer(gemm, 1)[1] for _ in range(1 if args.quick else 3)]  # keeps its fastest
        results["square_gemm"].append({**gemm.best, "other_load": loads})
        log(f"    {gemm_device}: {gemm.best['gflops']:.1f} GFLOP/s ({size}^2 float32)")

    for key in args.workload_keys:
        workload = quick(WORKLOADS[key]) if args.quick else WORKLOADS[key]
        if key in args.epochs_per_call:
            workload = replace(workload, epochs_per_call=args.epochs_per_call[key])
        log(f"workload ({key}) {workload.title}, n={workload.n_samples}, "
            f"{workload.epochs_per_call} epoch(s) per call ...")
        mixed = key in args.mixed_keys and "nn_xp" in wanted
        results["workloads"][key] = bench_workload(nx, torch, wanted, workload, args.repeats, use_cuda, timer, cpu=cpu,
                                                   mixed=mixed, jax=jax, libraries=args.libraries, refused=refused)
        print_workload(key, results["workloads"][key])
        # Written after every workload, so a run stopped by a time limit keeps what it measured.
        results["partial"] = True
        results["total_seconds"] = time.perf_counter() - started
        write_results(results, args.out, f"{device}-{'quick' if args.quick else 'latest'}")

    if not args.no_memory:
        log("peak memory, workload (a), one fresh process per system ...")
        names = [f"{s}-cpu" for s in wanted if s in MEMORY_SYSTEMS] if cpu else []
        if use_cuda:
            names += [f"{s}-cuda" for s in wanted if s in ("nn_xp", "torch")]
        systems = measure_memory(names, args.threads, args.quick)
        results["memory"] = _memory_record("a", systems)
        mixed_keys = [k for k in args.mixed_keys if k in args.workload_keys]
        if use_cuda and mixed_keys and "nn_xp" in wanted:
            key = mixed_keys[0]
            log(f"GPU memory, workload ({key}), float32 and mixed precision, one fresh process per system ...")
            names = ["nn_xp-cuda", "nn_xp_mixed-cuda"] + (["torch-cuda", "torch_amp-cuda"] if "torch" in wanted else [])
            systems = measure_memory(names, args.threads, args.quick, key)
            results["memory_mixed"] = _memory_record(key, systems)

    if not args.no_scaling and cpu and ("nn_xp" in wanted or "torch" in wanted):
        log("scaling on the CPU ...")
        results["scaling"] = scaling(nx, torch, wanted, min(args.repeats, 3), args.quick, timer)

    info["loadavg_end"] = list(os.getloadavg())
    results["waiting_and_retakes_s"] = timer.spent_s
    results["total_seconds"] = time.perf_counter() - started
    results.pop("partial", None)
    stem, report = write_results(results, args.out, f"{device}-{'quick' if args.quick else 'latest'}")
    print()
    print(report)
    log(f"wrote {stem}.json and .md in {results['total_seconds']:.0f} s")
    return 0


def write_results(results: dict, folder, stem: str) -> tuple[Path, str]:
    """<folder>/<stem>.json and .md; returns (<folder>/<stem>, the markdown report)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=_json_default) + "\n")
    report = markdown(results)
    (out / f"{stem}.md").write_text(report)
    return out / stem, report


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
