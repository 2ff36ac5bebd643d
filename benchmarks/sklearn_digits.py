"""scikit-learn's MLPClassifier against nn_xp.sklearn.MLPClassifier on the digits data, same settings.

    python benchmarks/sklearn_digits.py                      # 3 repeats, CPU, BLAS threads as installed
    python benchmarks/sklearn_digits.py --repeats 5 --threads 1 --device cuda

Both fit hidden_layer_sizes=(100,), solver="adam", max_iter=200, random_state=0 on 75% of
load_digits (X / 16), and are scored on the other 25%. With the same random_state nn_xp starts
from scikit-learn's weights and sees its batches in the same order, so the accuracies should agree;
nn_xp trains in float32 by default (scikit-learn in float64), and a float64 nn_xp row is timed too.
The systems alternate within each repetition (the order rotates), after one warm-up fit each; the
table gives medians. Writes <out>/sklearn-digits.md and .json (every timing, machine information).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as SklearnMLP  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

import nn_xp  # noqa: E402
from nn_xp.sklearn import MLPClassifier as NnxpMLP  # noqa: E402

SETTINGS = dict(hidden_layer_sizes=(100,), solver="adam", random_state=0)


def systems(device: str) -> dict:
    """name -> a function building a fresh, unfitted estimator for `max_iter` epochs."""
    return {
        "scikit-learn MLPClassifier (float64)": lambda max_iter: SklearnMLP(**SETTINGS, max_iter=max_iter),
        f"nn_xp.sklearn MLPClassifier (float32, {device})": lambda max_iter: NnxpMLP(
            **SETTINGS, max_iter=max_iter, device=device
        ),
        f"nn_xp.sklearn MLPClassifier (float64, {device})": lambda max_iter: NnxpMLP(
            **SETTINGS, max_iter=max_iter, device=device, dtype="float64"
        ),
    }


def timed_fit(make, max_iter, X_train, y_train, X_test, y_test) -> dict:
    estimator = make(max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        started = time.perf_counter()
        estimator.fit(X_train, y_train)
        seconds = time.perf_counter() - started
    return {
        "fit_s": seconds,
        "accuracy": float(estimator.score(X_test, y_test)),
        "n_iter": int(estimator.n_iter_),
        "final_loss": float(estimator.loss_curve_[-1]),
    }


def blas_description() -> str:
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    described = [f"{p.get('internal_api')} {p.get('version')} with {p.get('num_threads')} threads" for p in pools]
    return ", ".join(described) or "unknown"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None, help="limit BLAS threads (default: as installed)")
    parser.add_argument("--device", default="cpu", help="nn_xp's device: cpu, cuda, cuda:N, auto")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    limits = threadpool_limits(limits=args.threads, user_api="blas") if args.threads else None  # noqa: F841

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, test_size=0.25, random_state=0)
    builders = systems(args.device)
    load_start = os.getloadavg()[0]
    for make in builders.values():  # warm-up: imports, first allocations, GPU kernels
        timed_fit(make, 1, X_train, y_train, X_test, y_test)
    runs = {name: [] for name in builders}
    names = list(builders)
    for repeat in range(args.repeats):
        order = names[repeat % len(names):] + names[: repeat % len(names)]
        for name in order:
            result = timed_fit(builders[name], args.max_iter, X_train, y_train, X_test, y_test)
            runs[name].append(result)
            print(f"repeat {repeat + 1}: {name}: {result['fit_s']:.3f} s, accuracy {result['accuracy']:.4f}, "
                  f"{result['n_iter']} epochs", flush=True)
    load_end = os.getloadavg()[0]

    reference = statistics.median(r["fit_s"] for r in runs[names[0]])
    summary = {}
    for name in names:
        times = [r["fit_s"] for r in runs[name]]
        summary[name] = {
            "median_fit_s": statistics.median(times),
            "min_fit_s": min(times),
            "max_fit_s": max(times),
            "speedup_vs_sklearn": reference / statistics.median(times),
            "accuracy": runs[name][0]["accuracy"],
            "accuracies": sorted({r["accuracy"] for r in runs[name]}),
            "n_iter": runs[name][0]["n_iter"],
            "final_loss": runs[name][0]["final_loss"],
        }
    machine = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "nn_xp": nn_xp.__version__,
        "cpu_count": os.cpu_count(),
        "blas": blas_description(),
        "load_average_start": load_start,
        "load_average_end": load_end,
        "nn_xp_devices": nn_xp.available_devices(),
    }
    record = {
        "settings": {**SETTINGS, "max_iter": args.max_iter, "repeats": args.repeats, "device": args.device,
                     "blas_threads_limit": args.threads,
                     "data": "load_digits / 16, train_test_split(test_size=0.25, random_state=0)"},
        "machine": machine,
        "summary": summary,
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sklearn-digits.json").write_text(json.dumps(record, indent=2) + "\n")
    (args.out / "sklearn-digits.md").write_text(markdown(record))
    print(markdown(record))
    return record


def markdown(record: dict) -> str:
    s, m = record["settings"], record["machine"]
    lines = [
        "# scikit-learn MLPClassifier vs nn_xp.sklearn.MLPClassifier on digits",
        "",
        f"{m['date']} · {m['cpu_count']} logical cores · BLAS {m['blas']} · load average "
        f"{m['load_average_start']:.2f} at start, {m['load_average_end']:.2f} at end",
        "",
        f"numpy {m['numpy']} · scikit-learn {m['scikit-learn']} · nn_xp {m['nn_xp']} · Python {m['python']}",
        "",
        f"Settings for both: hidden_layer_sizes={s['hidden_layer_sizes']}, solver={s['solver']!r}, "
        f"max_iter={s['max_iter']}, random_state={s['random_state']}, the other parameters at their "
        f"defaults (alpha=1e-4, batch_size=min(200, n), tol=1e-4). Data: {s['data']} "
        "(1347 training, 450 test samples). Median of "
        f"{s['repeats']} fits per system, systems alternating, after one warm-up fit each.",
        "",
        "| system | median fit (s) | min / max (s) | speed vs scikit-learn | test accuracy | epochs "
        "| final training loss |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in record["summary"].items():
        lines.append(
            f"| {name} | {r['median_fit_s']:.3f} | {r['min_fit_s']:.3f} / {r['max_fit_s']:.3f} | "
            f"{r['speedup_vs_sklearn']:.2f}x | {r['accuracy']:.4f} | {r['n_iter']} | {r['final_loss']:.6f} |"
        )
    lines += [
        "",
        "Same random_state means the same initial weights and the same batch order in both libraries "
        "(nn_xp.sklearn draws from scikit-learn's RandomState in scikit-learn's order), so the float64 row "
        "should reproduce scikit-learn's loss to rounding; float32 differs only by rounding.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
