"""Where a training step's time goes on a GPU: nn_xp (CuPy) against PyTorch CUDA eager, piece by piece.

For workloads (a) and (b) of the benchmark, on the same data and weights, it times (synchronised
before and after, median of several runs of many steps each):
- backward: nn_xp's loss and gradients for one batch / torch's forward, loss and backward;
- step: the same plus the optimizer step (Adam);
- fit epoch: one epoch of `model.fit` / of the benchmark's torch loop (gathers, metrics, per-epoch work);
and prints microseconds per step. A diagnostic for the benchmark's ratios, not a benchmark itself.

    python -m benchmarks.gpu_profile
"""

from __future__ import annotations

import statistics
import sys
import time

import nn_xp as nx
from benchmarks.systems import NnxpSystem, TorchSystem
from benchmarks.workloads import WORKLOADS, make_data


def _median_us(run, sync, steps, repeats=5):
    run(steps)  # warm-up: compilation, allocation, handles
    sync()
    times = []
    for _ in range(repeats):
        sync()
        started = time.perf_counter()
        run(steps)
        sync()
        times.append((time.perf_counter() - started) / steps * 1e6)
    return statistics.median(times)


def profile(key: str) -> dict:
    import cupy
    import torch

    workload = WORKLOADS[key]
    X, y = make_data(workload)
    ours = NnxpSystem(nx, workload, X, y, "cuda:0")
    theirs = TorchSystem(torch, workload, X, y, "cuda", initial_parameters=ours.initial_parameters)
    B = workload.batch_size
    Xb, Yb = ours.X[:B], ours.Y[:B]
    model = ours.model
    model.fit(Xb, Yb, loss=workload.loss, epochs=1, batch_size=B, verbose=0)  # makes the optimizer
    head = model.head(workload.loss)
    Xc, Yc = model.check_input(Xb), model.check_target(Yb, B, head.loss)
    opt = model.optimizer

    def nn_backward(k):
        for _ in range(k):
            model.train_step(Xc, Yc, head)

    def nn_step(k):
        for _ in range(k):
            _, grads, _ = model.train_step(Xc, Yc, head)
            opt.step(grads)

    tXb, tyb = theirs.X[:B], theirs.y[:B]

    def torch_backward(k):
        for _ in range(k):
            theirs.optimizer.zero_grad(set_to_none=True)
            theirs.loss_fn(theirs.net(tXb), tyb).backward()

    def torch_step(k):
        for _ in range(k):
            theirs.optimizer.zero_grad(set_to_none=True)
            theirs.loss_fn(theirs.net(tXb), tyb).backward()
            theirs.optimizer.step()

    steps_per_epoch = -(-workload.n_samples // B)
    sync_cupy, sync_torch = cupy.cuda.Device().synchronize, torch.cuda.synchronize
    row = {
        "nn_xp backward": _median_us(nn_backward, sync_cupy, 200),
        "torch backward": _median_us(torch_backward, sync_torch, 200),
        "nn_xp step": _median_us(nn_step, sync_cupy, 200),
        "torch step": _median_us(torch_step, sync_torch, 200),
        "nn_xp fit epoch": _median_us(lambda k: ours.train(k), sync_cupy, 2) / steps_per_epoch,
        "torch fit epoch": _median_us(lambda k: theirs.train(k), sync_torch, 2) / steps_per_epoch,
    }
    return row


def launch_cost() -> str:
    """What one small elementwise operation costs from Python in each library (launch-bound)."""
    import cupy
    import torch

    a, t = cupy.ones(1000, dtype=cupy.float32), torch.ones(1000, device="cuda")

    def cupy_add(k):
        for _ in range(k):
            a.__iadd__(1.0)

    def torch_add(k):
        for _ in range(k):
            t.add_(1.0)

    us_cupy = _median_us(cupy_add, cupy.cuda.Device().synchronize, 2000)
    us_torch = _median_us(torch_add, torch.cuda.synchronize, 2000)
    return f"one in-place add of 1000 floats: cupy {us_cupy:.1f} us, torch {us_torch:.1f} us"


def main() -> int:
    print(launch_cost())
    print("microseconds per step (median), nn_xp CuPy vs torch CUDA eager")
    for key in ("a", "b"):
        row = profile(key)
        print(f"workload ({key}): " + ", ".join(f"{name} {value:,.0f}" for name, value in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
