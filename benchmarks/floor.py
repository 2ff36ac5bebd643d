"""The matmul floor: what one epoch's matrix multiplies alone cost on this machine, measured now.

For every layer (n_in -> n_out) a training step does, at batch size B:
    forward   A @ W.T     (B, n_in) x (n_in, n_out)      every layer
    backward  dZ.T @ A    (n_out, B) x (B, n_in)         every layer (dW)
              dZ @ W      (B, n_out) x (n_out, n_in)     all but the first layer (dX)
Each is timed on its own, with the same shapes and memory layouts (W.T and dZ.T are transposed
views, as in nn_xp), by the array library's own matmul; their sum is one step's floor, and the
epoch's floor is that over the epoch's full batches plus the last, partial one. The floor is
nn_xp's (NumPy's BLAS on the CPU, CuPy's cuBLAS on a GPU); `library="torch"` measures the same
products with PyTorch's matmul (its own BLAS: MKL or oneDNN on x86 CPUs), to show how much of a
difference between nn_xp and PyTorch is the BLAS itself. Nothing else a
step needs (activations, loss, optimizer, data shuffling, Python) is counted, so no system can
reach 100%; the matmuls also run on warm caches, so the floor is an optimistic one.
"""

from __future__ import annotations

import time

import numpy as np


def _host_sync():
    pass


def device_namespace(device: str):
    """(array module, synchronise) for "cpu" (NumPy) or "cuda..." (CuPy)."""
    if device.startswith("cuda"):
        import cupy

        return cupy, lambda: cupy.cuda.Device().synchronize()
    return np, _host_sync


def _operands(library: str, device: str):
    """(make an array from a NumPy one, synchronise) for the library's matmul on `device`."""
    if library == "torch":
        import torch

        target = torch.device("cuda" if device.startswith("cuda") else "cpu")
        sync = torch.cuda.synchronize if target.type == "cuda" else _host_sync
        return (lambda a: torch.from_numpy(a).to(target)), sync
    if library != "numpy":
        raise ValueError(f"library must be 'numpy' or 'torch', got {library!r}")
    xp, sync = device_namespace(device)
    return xp.asarray, sync


def time_per_call(fn, sync, min_block_s: float = 0.01, blocks: int = 5) -> float:
    """Seconds per call of `fn`: the fastest of `blocks` blocks, each long enough to read a clock on.

    The fastest, not the median: a floor is the best this machine can do, and on a shared machine
    other processes only ever make a block slower.
    """
    fn()
    sync()
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= min_block_s or calls >= 1 << 16:
            break
        calls = max(calls * 2, int(calls * min_block_s / max(elapsed, 1e-9) * 1.2))
    times = [elapsed / calls]
    for _ in range(blocks - 1):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        times.append((time.perf_counter() - start) / calls)
    return min(times)


def step_matmuls(layer_sizes, batch_size: int, device: str = "cpu", dtype: str = "float32", seed: int = 0,
                 library: str = "numpy") -> list:
    """One training step's matmuls, each timed: [{"layer", "op", "shape", "seconds"}]."""
    asarray, sync = _operands(library, device)
    rng = np.random.default_rng(seed)
    rows = []
    for layer, (n_in, n_out) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:])):
        A = asarray(rng.standard_normal((batch_size, n_in)).astype(dtype))
        W = asarray(rng.standard_normal((n_out, n_in)).astype(dtype))
        dZ = asarray(rng.standard_normal((batch_size, n_out)).astype(dtype))
        ops = [("forward A@W.T", lambda A=A, W=W: A @ W.T, (batch_size, n_in, n_out)),
               ("backward dZ.T@A", lambda A=A, dZ=dZ: dZ.T @ A, (n_out, batch_size, n_in))]
        if layer > 0:
            ops.append(("backward dZ@W", lambda W=W, dZ=dZ: dZ @ W, (batch_size, n_out, n_in)))
        for op, fn, (m, k, n) in ops:
            rows.append({"layer": layer, "op": op, "mkn": [m, k, n],
                         "seconds": time_per_call(fn, sync, min_block_s=0.005, blocks=3)})
    return rows


def epoch_floor(layer_sizes, n_samples: int, batch_size: int, device: str = "cpu", dtype: str = "float32",
                library: str = "numpy") -> dict:
    """Seconds one epoch's matmuls take: full batches x step floor + the partial batch's step floor."""
    batch_size = min(batch_size, n_samples)
    full, rest = divmod(n_samples, batch_size)
    step = step_matmuls(layer_sizes, batch_size, device, dtype, library=library)
    step_s = sum(r["seconds"] for r in step)
    rest_s = sum(r["seconds"] for r in step_matmuls(layer_sizes, rest, device, dtype, library=library)) if rest else 0.0
    return {
        "device": device,
        "library": library,
        "epoch_s": full * step_s + rest_s,
        "step_s": step_s,
        "full_batches": full,
        "partial_batch": rest,
        "partial_step_s": rest_s,
        "step_matmuls": step,
    }


class SquareGemm:
    """GFLOP/s of one large square matmul, for context; `train()` measures once (timer-compatible)
    and `best` keeps the fastest measurement."""

    def __init__(self, size: int, device: str = "cpu", dtype: str = "float32"):
        self.xp, self._sync = device_namespace(device)
        rng = np.random.default_rng(1)
        self.A = self.xp.asarray(rng.standard_normal((size, size)).astype(dtype))
        self.B = self.xp.asarray(rng.standard_normal((size, size)).astype(dtype))
        self.size, self.device, self.dtype = size, device, dtype
        self.best = None

    def train(self, epochs: int = 1) -> float:
        seconds = time_per_call(lambda: self.A @ self.B, self._sync, min_block_s=0.05, blocks=3)
        if self.best is None or seconds < self.best["seconds"]:
            self.best = {"device": self.device, "size": self.size, "dtype": self.dtype, "seconds": seconds,
                         "gflops": 2 * self.size**3 / seconds / 1e9}
        return seconds

    def sync(self) -> None:
        self._sync()


class FloorSystem:
    """The matmul floor as a participant in the timing rotation, so it is measured under the same
    conditions as the systems: `train(epochs)` times one epoch's matmuls and returns epochs x that
    (the timer records the returned seconds, not its own clock)."""

    def __init__(self, layer_sizes, n_samples: int, batch_size: int, device: str = "cpu", dtype: str = "float32",
                 library: str = "numpy"):
        self.layer_sizes, self.n_samples, self.device, self.dtype = layer_sizes, n_samples, device, dtype
        self.batch_size = min(batch_size, n_samples)
        self.library = library
        self.last = None

    def train(self, epochs: int) -> float:
        self.last = epoch_floor(self.layer_sizes, self.n_samples, self.batch_size, self.device, self.dtype,
                                self.library)
        return epochs * self.last["epoch_s"]

    def sync(self) -> None:
        pass

    def last_loss(self):
        return None
