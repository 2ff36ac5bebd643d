"""Reading a large CSV: nn_xp.datasets.load_file against pandas.read_csv, time and peak memory.

    python benchmarks/loading.py                  # 200,000 rows x 50 float columns + a label: ~95 MB
    python benchmarks/loading.py --rows 20000     # a quick run

The file is written once (seeded) to a temporary folder. Time: each reader reads the whole file once
per repetition, the readers alternating (the order rotates), median of --repeats (3). Memory: each
reader runs once in a fresh subprocess; the peak resident memory (VmHWM, reset after the imports)
less the resident memory before the read, against the data's size (rows x columns x 8 bytes, the
float64 values). Targets: load_file within 2x pandas.read_csv's time (its default C engine), and
its peak within 2x the data's size. Writes <out>/cpu-loading.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow  # noqa: E402

from nn_xp.data.datasets import load_file  # noqa: E402

N_FEATURES = 50
TIME_TARGET = 2.0
MEMORY_TARGET = 2.0

# name -> the statement a fresh process runs on `path` (memory) and the call timed here.
READERS = {
    "nn_xp load_file": "from nn_xp.data.datasets import load_file; data = load_file(path, target='label')",
    "pandas.read_csv (C engine)": "import pandas; frame = pandas.read_csv(path)",
    "pandas.read_csv (pyarrow engine)": "import pandas; frame = pandas.read_csv(path, engine='pyarrow')",
}
CALLS = {
    "nn_xp load_file": lambda path: load_file(path, target="label"),
    "pandas.read_csv (C engine)": lambda path: pd.read_csv(path),
    "pandas.read_csv (pyarrow engine)": lambda path: pd.read_csv(path, engine="pyarrow"),
}

# Run in a fresh process: the imports, then the resident set before and the peak after one read.
PROBE = """
import sys
{imports}
def kib(key):
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(key))
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # resets VmHWM to the current resident set
path = sys.argv[1]
before = kib("VmRSS:")
{statement}
print(before, kib("VmHWM:"))
"""


def write_csv(path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, N_FEATURES))
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(N_FEATURES)])
    frame["label"] = rng.integers(0, 10, size=rows)
    frame.to_csv(path, index=False, float_format="%.6f")


def time_readers(path, repeats: int) -> dict:
    times = {name: [] for name in CALLS}
    names = list(CALLS)
    for repetition in range(repeats):
        order = names[repetition % len(names):] + names[: repetition % len(names)]
        for name in order:
            started = time.perf_counter()
            result = CALLS[name](path)
            times[name].append(time.perf_counter() - started)
            del result
    return times


def peak_memory(path, name: str) -> dict:
    # Libraries are imported before the measurement: their code is not the data's cost.
    imports = "import numpy, pandas, pyarrow, pyarrow.csv, pyarrow.compute\nimport nn_xp.data.datasets"
    code = PROBE.format(imports=imports, statement=READERS[name])
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    before, peak = int(out[0]) * 1024, int(out[1]) * 1024
    return {"before_bytes": before, "peak_bytes": peak, "added_bytes": peak - before}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "large.csv")
        write_csv(path, args.rows)
        file_bytes = os.path.getsize(path)
        data_bytes = args.rows * (N_FEATURES + 1) * 8
        print(f"{path}: {file_bytes / 2**20:.1f} MB, {args.rows} rows x {N_FEATURES} features + label", flush=True)
        times = time_readers(path, args.repeats)
        memory = {name: peak_memory(path, name) for name in READERS}
    medians = {name: statistics.median(t) for name, t in times.items()}
    reference = medians["pandas.read_csv (C engine)"]
    ours = medians["nn_xp load_file"]
    lines = [
        "# Loading a large CSV",
        "",
        f"`python benchmarks/loading.py` ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC): "
        f"{args.rows:,} rows x {N_FEATURES} float columns + an integer label, {file_bytes / 2**20:.1f} MB on disk; "
        f"the data as float64: {data_bytes / 2**20:.1f} MB. Time: median of {args.repeats} alternating reads. "
        "Peak memory: one read in a fresh process, peak resident set less the resident set before the read.",
        "",
        "| reader | median s | runs (s) | time / pandas.read_csv | peak added MB | peak / data size |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in READERS:
        added = memory[name]["added_bytes"]
        lines.append(
            f"| {name} | {medians[name]:.2f} | {', '.join(f'{t:.2f}' for t in times[name])} | "
            f"{medians[name] / reference:.2f} | {added / 2**20:.0f} | {added / data_bytes:.2f} |"
        )
    time_ratio = ours / reference
    memory_ratio = memory["nn_xp load_file"]["added_bytes"] / data_bytes
    verdict = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    lines += [
        "",
        f"- time: load_file takes {time_ratio:.2f}x pandas.read_csv (C engine); target <= {TIME_TARGET:g}x: "
        f"{verdict(time_ratio <= TIME_TARGET)}.",
        f"- memory: load_file's peak is {memory_ratio:.2f}x the data's size; target <= {MEMORY_TARGET:g}x: "
        f"{verdict(memory_ratio <= MEMORY_TARGET)}.",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())} at the end; Python "
        f"{platform.python_version()}, NumPy {np.__version__}, pandas {pd.__version__}, pyarrow {pyarrow.__version__}.",
        "",
        "<details><summary>raw</summary>",
        "",
        "```json",
        json.dumps({"times_s": times, "memory": memory, "file_bytes": file_bytes, "data_bytes": data_bytes}, indent=1),
        "```",
        "</details>",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    Path(args.out, "cpu-loading.md").write_text(text)
    print(f"written to {os.path.join(args.out, 'cpu-loading.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
