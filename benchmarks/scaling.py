"""Data-parallel scaling: samples per second of nn_xp's distributed fit on 1, 2, ... MPI ranks.

    python -m benchmarks.scaling                      # workloads a and b, 1 and 2 ranks
    python -m benchmarks.scaling --ranks 1,2,4,8 --workloads a,b --repeats 5

Each rank count runs under `mpiexec -n R` with the machine's cores shared out: R ranks of
cores / R BLAS threads each. One more row runs 1 rank with 1 thread, which makes the ideal line
(R ranks of one thread each would train R times as fast as it, at best). Per row: the median
samples/s over the timed epochs, the speed-up against 1 rank with every thread, and the time of
the gradient allreduce alone per step (the flat buffer, timed in the same processes).
Writes benchmarks/results/<device>-distributed.{json,md}. Needs the 'mpi' extra.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.workloads import WORKLOADS, make_data  # noqa: E402

MARK = "SCALING_JSON "


def worker(key: str, epochs: int, repeats: int) -> None:
    """One rank: train the workload, time each epoch and the allreduce; rank 0 prints the result."""
    import nn_xp as nx

    comm = nx.distributed.init()
    workload = WORKLOADS[key]
    X, y = make_data(workload)
    model = nx.MLP(list(workload.layer_sizes), output_activation=workload.output_activation, device="cpu", seed=0)
    fit = dict(loss=workload.loss, epochs=epochs, batch_size=workload.batch_size, verbose=0, distributed=comm)
    model.fit(X, y, **{**fit, "epochs": 1})  # warm-up: buffers, the optimizer
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.fit(X, y, **fit)
        times.append((time.perf_counter() - started) / epochs)
    buffer = np.zeros(model.n_parameters(), dtype=np.float32)
    comm.allreduce(buffer)
    started = time.perf_counter()
    for _ in range(50):
        comm.allreduce(buffer)
    allreduce_ms = (time.perf_counter() - started) / 50 * 1e3
    if comm.rank == 0:
        epoch_s = statistics.median(times)
        print(MARK + json.dumps({"workload": key, "ranks": comm.size, "epoch_s": epoch_s, "times": times,
                                 "samples_per_s": workload.n_samples / epoch_s, "allreduce_ms": allreduce_ms,
                                 "steps": -(-workload.n_samples // workload.batch_size),
                                 "buffer_mb": buffer.nbytes / 2**20}), flush=True)


def run(ranks: int, threads: int, key: str, epochs: int, repeats: int) -> dict:
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit("mpiexec not found: pip install 'nn_xp[mpi]'")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "NN_XP_DEVICE": "cpu"}
    command = [mpiexec, "-n", str(ranks), sys.executable, "-m", "benchmarks.scaling", "--worker", key,
               "--epochs", str(epochs), "--repeats", str(repeats)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=3600)
    lines = [line for line in result.stdout.splitlines() if line.startswith(MARK)]
    if result.returncode != 0 or not lines:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return {**json.loads(lines[-1][len(MARK):]), "threads_per_rank": threads}


def markdown(rows: list, cores: int) -> str:
    out = [f"Data-parallel scaling on {cores} CPU cores (nn_xp distributed fit over MPI, float32, Adam; "
           "one epoch per timed call, median):", "",
           "| workload | ranks x BLAS threads | samples/s | speed-up vs 1 x all threads | ideal (ranks x 1 x 1) "
           "| allreduce ms/step | allreduce share of a step |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for key in sorted({r["workload"] for r in rows}):
        group = [r for r in rows if r["workload"] == key]
        base = next(r for r in group if r["ranks"] == 1 and r["threads_per_rank"] == cores)
        single = next((r for r in group if r["ranks"] == 1 and r["threads_per_rank"] == 1), None)
        for r in group:
            ideal = f"{r['ranks'] * single['samples_per_s']:,.0f}" if single else "-"
            step_ms = r["epoch_s"] / r["steps"] * 1e3
            share = r["allreduce_ms"] / step_ms if r["ranks"] > 1 else 0.0
            out.append(f"| ({key}) | {r['ranks']} x {r['threads_per_rank']} | {r['samples_per_s']:,.0f} "
                       f"| {r['samples_per_s'] / base['samples_per_s']:.2f} | {ideal} "
                       f"| {r['allreduce_ms']:.3f} | {share:.1%} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="1,2", help="rank counts, comma-separated (default 1,2)")
    parser.add_argument("--workloads", default="a,b")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.epochs, args.repeats)
        return 0
    rows = []
    for key in args.workloads.split(","):
        plan = [(1, args.cores), (1, 1)] + [(r, max(1, args.cores // r)) for r in map(int, args.ranks.split(","))
                                             if r > 1]
        for ranks, threads in plan:
            print(f"workload ({key}): {ranks} rank(s) x {threads} BLAS thread(s) ...", flush=True)
            rows.append(run(ranks, threads, key, args.epochs, args.repeats))
            print(f"    {rows[-1]['samples_per_s']:,.0f} samples/s, allreduce {rows[-1]['allreduce_ms']:.3f} ms",
                  flush=True)
    table = markdown(rows, args.cores)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    (out / "cpu-distributed.json").write_text(json.dumps({"date": stamp, "cores": args.cores, "rows": rows},
                                                         indent=1))
    (out / "cpu-distributed.md").write_text(f"# Distributed scaling ({stamp})\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
