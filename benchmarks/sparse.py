"""Sparse X in nn_xp: the first layer's sparse products against densifying each batch.

    python benchmarks/sparse.py                 # TF-IDF-like 100,000 x 50,000 at 0.1% density, float32
    python benchmarks/sparse.py --rows 20000 --batches 20

Builds a TF-IDF-like CSR matrix (rows of positive weights, L2-normalised; 0.1% density: about 50
nonzeros per row) and trains a 50000-64-10 softmax network with Adam, batch 256, in two ways
that compute the same numbers:
- sparse: nn_xp's own path, the first layer multiplies the CSR batch (Z = X @ W.T, dW = (X.T @ dZ).T);
- dense batch: each batch made dense first (the most nn_xp would ever densify), then trained.
Densifying the whole X (100,000 x 50,000 float32: 20 GB) is not an option and is not timed.
Reports the median time per training step and the peak memory traced during the steps (tracemalloc:
NumPy's allocations), per way, and the memory of X itself. Writes <out>/sparse.md and .json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import scipy.sparse  # noqa: E402

import nn_xp as nx  # noqa: E402


def tfidf_like(rows: int, columns: int, density: float, seed: int = 0) -> scipy.sparse.csr_matrix:
    rng = np.random.default_rng(seed)
    per_row = max(1, round(density * columns))  # scipy.sparse.random is very slow at this size
    indices = np.sort(rng.integers(0, columns, size=(rows, per_row)), axis=1)
    data = rng.exponential(1.0, size=(rows, per_row)).astype(np.float32)
    data /= np.sqrt(np.sum(data * data, axis=1, keepdims=True))  # rows L2-normalised, as TF-IDF's
    indptr = np.arange(0, rows * per_row + 1, per_row)
    return scipy.sparse.csr_matrix((data.ravel(), indices.ravel(), indptr), shape=(rows, columns))


def time_steps(model, batches, y_batches, densify=False):
    """Seconds per step (median) and the peak traced memory (bytes) over the given batches; with
    `densify`, each sparse batch is made dense first (the way nn_xp does not take)."""
    head = model.head("cross_entropy")
    first = batches[0].toarray() if densify else batches[0]
    model.fit(first, y_batches[0], epochs=1, batch_size=None, verbose=0)  # warm-up, optimizer made
    opt = model.optimizer
    times = []
    tracemalloc.start()
    for Xb, yb in zip(batches, y_batches):
        started = time.perf_counter()
        Xc = model.check_input(Xb.toarray() if densify else Xb)
        Y = model.check_target(yb, Xc.shape[0], head)
        _, grads, _ = model.train_step(Xc, Y, head)
        opt.step(grads)
        times.append(time.perf_counter() - started)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return statistics.median(times), peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--columns", type=int, default=50_000)
    parser.add_argument("--density", type=float, default=0.001)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=30, help="timed steps per way")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    X = tfidf_like(args.rows, args.columns, args.density)
    built = time.perf_counter() - started
    y = np.random.default_rng(1).integers(0, 10, size=args.rows)
    order = np.random.default_rng(2).permutation(args.rows)
    picks = [order[i * args.batch_size : (i + 1) * args.batch_size] for i in range(args.batches)]
    sparse_batches = [X[rows] for rows in picks]
    y_batches = [y[rows] for rows in picks]
    results = {}
    for way in ("sparse", "dense batch"):
        model = nx.MLP([args.columns, 64, 10], output_activation="softmax", device="cpu", seed=0)
        if way == "sparse":
            step, peak = time_steps(model, sparse_batches, y_batches)
        else:  # each batch made dense inside the timed step
            step, peak = time_steps(model, sparse_batches, y_batches, densify=True)
        results[way] = {"step_ms": step * 1e3, "peak_mb": peak / 1e6}
    x_mb = (X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 1e6
    lines = [
        f"# Sparse input: {args.rows:,} x {args.columns:,} TF-IDF-like CSR, density {args.density:g} "
        f"({X.nnz:,} nonzeros), float32",
        "",
        f"X as CSR: {x_mb:.0f} MB (dense it would be {args.rows * args.columns * 4 / 1e9:.0f} GB); "
        f"built in {built:.1f} s. Network {args.columns}-64-10, softmax, Adam, batch {args.batch_size}; "
        f"median of {args.batches} steps.",
        "",
        "| way | ms per step | peak memory during the steps (MB) |",
        "| --- | --- | --- |",
    ]
    for way, r in results.items():
        lines.append(f"| {way} | {r['step_ms']:.2f} | {r['peak_mb']:.1f} |")
    ratio = results["dense batch"]["step_ms"] / results["sparse"]["step_ms"]
    lines += ["", f"The sparse path is {ratio:.1f}x as fast as densifying each batch, so nn_xp never densifies."]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sparse.md").write_text(text + "\n")
    (out / "sparse.json").write_text(json.dumps({"args": vars(args), "nnz": int(X.nnz), "x_mb": x_mb,
                                                 "results": results}, indent=2) + "\n")
