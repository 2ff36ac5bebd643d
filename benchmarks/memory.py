"""Peak memory of loading models and training data, before and after a change, in fresh processes.

    python benchmarks/memory.py                               # this checkout only
    python benchmarks/memory.py --before /path/to/other/checkout   # both, as "before -> after"
    python benchmarks/memory.py --mb 100                      # smaller data files (default 500 MB)

Run by hand (minutes, several GB of disk in a temporary folder), not by the tests. Each case runs
once in a fresh Python process whose PYTHONPATH is the checkout measured: the libraries are imported
first, the peak resident size is reset (/proc/self/clear_refs), and the case reports VmHWM less
VmRSS before it: the memory the case added at its peak. A memory-mapped file's pages count once
they are read (they are resident, though the kernel may drop them at will).

Cases:
  (a) nx.load of a 784-512-256-10 and a 4096-4096-4096-10 float32 model file, and of a hostile small file whose layer
      specs declare Dense(10000, 10000) over a few bytes of members;
  (b) training data from a float32 X.npy of --mb MB with y.npy: `nn-xp train --dataset X.npy
      --targets y.npy` (a checkout without --targets runs `--dataset X.npy`, which reads the file
      and then refuses it), `nn-xp predict` of the same file, and the library path
      `model.fit(np.load(X.npy, mmap_mode="r"), y)`;
  (c) the same data as an uncompressed .npz (np.savez) with members X and y;
  (d) a CSV of about --csv-mb MB with numeric columns (some cells missing) and three text columns,
      through nn_xp.datasets.load_file(path, target=..., one_hot=True, impute="mean"), through
      `nn-xp train ... --one-hot --impute mean` (read, encode and one epoch) and through the
      library's `fit(DataFrame, one_hot=True, impute="mean")` (the frame read by pandas inside the
      case), against pandas alone (read_csv(engine="pyarrow") + get_dummies).
Writes <out>/memory.md (and memory.json).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

N_FEATURES = 128
TRAIN_OPTIONS = ["--layers", str(N_FEATURES), "32", "2", "--epochs", "1", "--batch-size", "4096", "--quiet"]

PROBE = """
import sys, json
import numpy, pandas, pyarrow, pyarrow.csv
import nn_xp, nn_xp.cli, nn_xp.data.datasets, nn_xp.training
numpy.ones((512, 512), numpy.float32) @ numpy.ones((512, 512), numpy.float32)  # BLAS's buffers
def kib(key):
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(key))
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # resets VmHWM to the current resident set
before = kib("VmRSS:")
outcome = "ok"
try:
{statement}
except BaseException as error:
    outcome = f"{{type(error).__name__}}: {{str(error)[-160:]}}"
print("PROBE", json.dumps({{"added_kib": kib("VmHWM:") - before, "outcome": outcome}}))
"""


def _cli(*argv) -> str:
    """A statement running `nn-xp argv`; an exit code other than 0 is the outcome."""
    return f"""code = nn_xp.cli.main({[str(a) for a in argv]!r})
if code:
    raise SystemExit(f"exit {{code}}")"""


def cases(folder: Path) -> dict:
    """{name: statement}, the statements reading the files `write_files` made in `folder`."""
    f = {name: str(folder / name) for name in ("model.npz", "large.npz", "hostile.npz", "X.npy", "y.npy", "data.npz",
                                                "table.csv", "predictions.npy", "trained.npz")}
    return {
        "(a) nx.load, 784-512-256-10 float32 model (2 MB)": f"nn_xp.load({f['model.npz']!r}, device='cpu')",
        "(a) nx.load, 4096-4096-4096-10 float32 model (128 MB)": f"nn_xp.load({f['large.npz']!r}, device='cpu')",
        "(a) nx.load, small file declaring Dense(10000, 10000)": f"nn_xp.load({f['hostile.npz']!r}, device='cpu')",
        "(b) nn-xp train --dataset X.npy --targets y.npy": _cli("train", "--dataset", f["X.npy"], "--targets",
                                                                 f["y.npy"], *TRAIN_OPTIONS),
        "(b) nn-xp predict MODEL X.npy": _cli("predict", f["trained.npz"], f["X.npy"], "--output",
                                              f["predictions.npy"]),
        "(b) library: fit(np.load(X.npy, mmap_mode='r'), y)": (
            f"X = numpy.load({f['X.npy']!r}, mmap_mode='r'); y = numpy.load({f['y.npy']!r})\n"
            f"nn_xp.MLP([{N_FEATURES}, 32, 2], output_activation='softmax', seed=0, device='cpu')"
            ".fit(X, y, epochs=1, batch_size=4096, verbose=0)"),
        "(c) nn-xp train --dataset data.npz (uncompressed)": _cli("train", "--dataset", f["data.npz"], *TRAIN_OPTIONS),
        "(d) load_file(csv, one_hot=True, impute='mean')": (
            f"nn_xp.datasets.load_file({f['table.csv']!r}, target='label', one_hot=True, impute='mean')"),
        "(d) nn-xp train --dataset table.csv --target label --one-hot --impute mean": _cli(
            "train", "--dataset", f["table.csv"], "--target", "label", "--one-hot", "--impute", "mean",
            "--epochs", "1", "--batch-size", "4096", "--quiet"),
        "(d) library: fit(read_csv(table.csv), one_hot=True, impute='mean')": (
            f"frame = pandas.read_csv({f['table.csv']!r}, engine='pyarrow')\n"
            "nn_xp.MLP([60, 32, 3], output_activation='softmax', seed=0, device='cpu').fit("
            "frame.drop(columns='label'), frame['label'], one_hot=True, impute='mean', epochs=1, batch_size=4096, "
            "verbose=0)"),
        "(d) pandas alone: read_csv(engine='pyarrow') + get_dummies": (
            f"frame = pandas.read_csv({f['table.csv']!r}, engine='pyarrow')\n"
            "X = pandas.get_dummies(frame.drop(columns='label'), dtype=float)"),
    }


def write_files(folder: Path, mb: float, csv_mb: float) -> dict:
    """The data files; returns their sizes in bytes."""
    import json as json_

    import pandas as pd

    import nn_xp as nx
    from nn_xp.nn.layers import Dense

    rng = np.random.default_rng(0)
    rows = int(mb * 2**20 / (N_FEATURES * 4))
    X = np.lib.format.open_memmap(folder / "X.npy", mode="w+", dtype=np.float32, shape=(rows, N_FEATURES))
    y = np.empty(rows, dtype=np.int64)
    for start in range(0, rows, 65536):  # written in blocks: the parent stays small too
        block = rng.standard_normal((min(65536, rows - start), N_FEATURES), dtype=np.float32)
        X[start : start + block.shape[0]] = block
        y[start : start + block.shape[0]] = block[:, 0] > 0
    X.flush()
    np.save(folder / "y.npy", y)
    np.savez(folder / "data.npz", X=X, y=y)
    del X
    nx.MLP([784, 512, 256, 10], output_activation="softmax", seed=0, device="cpu").save(folder / "model.npz")
    nx.MLP([4096, 4096, 4096, 10], output_activation="softmax", seed=0, device="cpu").save(folder / "large.npz")
    trained = nx.MLP([N_FEATURES, 32, 2], output_activation="softmax", seed=0, device="cpu")
    trained.save(folder / "trained.npz")
    # The hostile file: a real small model whose layer specs are then made to claim a huge network.
    nx.Sequential([Dense(3, 5, "tanh"), Dense(5, 2)], output_activation="softmax", seed=0).save(folder / "hostile.npz")
    with np.load(folder / "hostile.npz") as archive:
        members = {name: archive[name] for name in archive.files}
    meta = json_.loads(bytes(members.pop("meta")))
    meta["layers"][0].update(n_in=10000, n_out=10000)
    meta["layers"][1].update(n_in=10000)
    members["meta"] = np.frombuffer(json_.dumps(meta).encode(), dtype=np.uint8)
    with open(folder / "hostile.npz", "wb") as handle:
        np.savez(handle, **members)
    # The table: 8 numeric columns (1% of their cells missing), 3 text columns, a label.
    n = int(csv_mb * 2**20 / 84)  # about 84 bytes a row
    frame = pd.DataFrame(rng.standard_normal((n, 8)).round(5), columns=[f"x{i}" for i in range(8)])
    frame = frame.mask(rng.random(frame.shape) < 0.01)
    frame["city"] = rng.choice([f"city_{i}" for i in range(40)], n)
    frame["colour"] = rng.choice(["red", "green", "blue", "yellow", "black"], n)
    frame["grade"] = rng.choice(list("ABCDEFG"), n)
    frame["label"] = rng.integers(0, 3, n)
    frame.to_csv(folder / "table.csv", index=False)
    return {name: os.path.getsize(folder / name) for name in ("X.npy", "data.npz", "table.csv", "model.npz",
                                                                "hostile.npz")}


def measure(code_root: str, statement: str, timeout: float = 1800) -> dict:
    """{"added_mb", "outcome"} of one statement in a fresh process running the checkout at code_root."""
    body = "\n".join("    " + line for line in statement.splitlines())
    env = {**os.environ, "PYTHONPATH": code_root}
    done = subprocess.run([sys.executable, "-c", PROBE.format(statement=body)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=code_root)
    lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    if not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return {"added_mb": None, "outcome": f"died: {tail[0][-160:]}"}
    result = json.loads(lines[-1][len("PROBE "):])
    outcome = result["outcome"]
    if outcome.startswith("SystemExit") and done.stderr.strip():  # the command line's own message
        outcome += ": " + done.stderr.strip().splitlines()[-1][-160:]
    return {"added_mb": result["added_kib"] / 1024, "outcome": outcome}


def run_cases(code_root: str, folder: Path) -> dict:
    results = {}
    for name, statement in cases(folder).items():
        if "'--targets'" in statement and not _knows_targets(code_root):
            # A checkout without --targets: what it can be asked, the .npy alone.
            result = measure(code_root, statement.replace(f", '--targets', '{folder / 'y.npy'}'", ""))
            result["outcome"] = "(no --targets) " + result["outcome"]
        else:
            result = measure(code_root, statement)
        result["outcome"] = result["outcome"].replace(f"{folder}{os.sep}", "")
        results[name] = result
        print(f"  {name}: {_mb(result['added_mb'])} MB  [{result['outcome']}]", flush=True)
    return results


def _knows_targets(code_root: str) -> bool:
    """True where the checkout's command line has --targets (nn_xp/cli.py, or the nn_xp/cli/ package)."""
    sources = [Path(code_root, "nn_xp", "cli.py"), *sorted(Path(code_root, "nn_xp", "cli").glob("*.py"))]
    return any("--targets" in path.read_text() for path in sources if path.is_file())


def _mb(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _git(code_root: str) -> str:
    try:
        return subprocess.run(["git", "-C", code_root, "log", "-1", "--format=%h %s"], capture_output=True,
                              text=True, check=True).stdout.strip()[:90]
    except (OSError, subprocess.CalledProcessError):
        return "?"


def render(report: dict) -> str:
    sizes = report["sizes"]
    lines = [
        "# Peak memory: model files and training data",
        "",
        f"`python benchmarks/memory.py{' --before CHECKOUT' if report.get('before_root') else ''}"
        f" --mb {report['mb']:g} --csv-mb {report['csv_mb']:g}`, {report['date']}, {report['machine']}.",
        "Each figure: MB the case added to a fresh process's resident set at its peak (VmHWM less VmRSS "
        "after the imports). A memory-mapped file's pages count once read.",
        "",
        f"Files: X.npy {sizes['X.npy'] / 2**20:,.0f} MB (float32, {N_FEATURES} columns) with y.npy, data.npz "
        f"{sizes['data.npz'] / 2**20:,.0f} MB (np.savez, uncompressed), "
        f"table.csv {sizes['table.csv'] / 2**20:,.0f} MB, "
        f"model.npz {sizes['model.npz'] / 2**20:.1f} MB, hostile.npz {sizes['hostile.npz']:,} bytes.",
        "",
    ]
    after = report["after"]
    before = report.get("before")
    if before:
        lines += [f"before: `{report['before_commit']}`  ", f"after: `{report['after_commit']}`", "",
                  "| case | before MB | after MB | before: outcome | after: outcome |",
                  "| --- | ---: | ---: | --- | --- |"]
        for name, result in after.items():
            old = before.get(name, {"added_mb": None, "outcome": "-"})
            lines.append(f"| {name} | {_mb(old['added_mb'])} | {_mb(result['added_mb'])} | "
                         f"{old['outcome'].replace('|', '/')} | {result['outcome'].replace('|', '/')} |")
    else:
        lines += [f"code: `{report['after_commit']}`", "", "| case | MB | outcome |", "| --- | ---: | --- |"]
        for name, result in after.items():
            lines.append(f"| {name} | {_mb(result['added_mb'])} | {result['outcome'].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="another checkout of nn_xp to measure first (the 'before' column)")
    parser.add_argument("--before-label", help="what the 'before' checkout is (default: its last commit)")
    parser.add_argument("--mb", type=float, default=500, help="size of X.npy and data.npz in MB (default 500)")
    parser.add_argument("--csv-mb", type=float, default=50, help="size of the CSV in MB (default 50)")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    import platform

    report = {"mb": args.mb, "csv_mb": args.csv_mb, "date": datetime.date.today().isoformat(),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, NumPy {np.__version__}",
              "after_commit": _git(str(REPO_ROOT))}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        print("writing the files ...", flush=True)
        report["sizes"] = write_files(folder, args.mb, args.csv_mb)
        if args.before:
            report["before_root"] = os.path.abspath(args.before)
            report["before_commit"] = args.before_label or _git(report["before_root"])
            print(f"before: {report['before_root']}", flush=True)
            report["before"] = run_cases(report["before_root"], folder)
        print(f"after: {REPO_ROOT}", flush=True)
        report["after"] = run_cases(str(REPO_ROOT), folder)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "memory.json"), "w") as handle:
        json.dump(report, handle, indent=1)
    text = render(report)
    with open(os.path.join(args.out, "memory.md"), "w") as handle:
        handle.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
