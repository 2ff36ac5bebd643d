"""PyTorch's own CPU-against-CUDA agreement, measured the way `nn-xp parity` measures nn_xp's.

Same network (workload (a): 784-512-256-10, ReLU, softmax cross-entropy), same synthetic data,
same initial weights (an nn_xp MLP's, from the same seed), same batch order and Adam settings as
`nn-xp parity`; PyTorch eager trains it on the CPU and on CUDA (TF32 off) and the two are compared
step by step with nx.parity's norm-wise and element-wise relative differences. It says how close
two correct float32 implementations on these two devices can be expected to stay.

    python -m benchmarks.torch_parity --dtype float32 --output torch-parity-float32.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

import numpy as np

import nn_xp as nx
from nn_xp.data.datasets import load_dataset
from nn_xp.parity import batch_rows, largest_differences

from .systems import TorchSystem
from .workloads import WORKLOADS


def torch_parity(layers, X, y, *, steps=100, batch_size=128, dtype="float32", seed=0, devices=("cpu", "cuda")) -> dict:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    initial = [nx.to_numpy(p) for p in nx.MLP(layers, output_activation="softmax", dtype=dtype, device="cpu",
                                             seed=seed).parameters()]
    # Workload (a)'s settings (ReLU, softmax cross-entropy, Adam 1e-3) on this network and data.
    workload = replace(WORKLOADS["a"], layer_sizes=tuple(layers), batch_size=batch_size, n_samples=X.shape[0],
                       seed=seed)
    devices = list(devices)
    systems = [TorchSystem(torch, workload, X, y, device, dtype, initial_parameters=initial) for device in devices]
    out = {"devices": devices, "dtype": dtype, "steps": steps, "loss": [], "gradients": [], "parameters": [],
           "gradients_elementwise": [], "parameters_elementwise": []}
    for rows in batch_rows(X.shape[0], batch_size, steps, seed):
        losses, grads = [], []
        for system in systems:
            index = torch.from_numpy(rows).to(system.device)
            system.optimizer.zero_grad(set_to_none=True)
            loss = system.loss_fn(system.net(system.X.index_select(0, index)), system.y.index_select(0, index))
            loss.backward()
            losses.append(float(loss.detach()))
            grads.append([p.grad.detach().cpu().numpy().copy() for p in system.net.parameters()])
            system.optimizer.step()
        out["loss"].append(abs(losses[1] - losses[0]) / max(abs(losses[0]), 1e-300))
        reference, other = (system.parameters() for system in systems)
        for key, pairs in (("gradients", zip(grads[1], grads[0])), ("parameters", zip(other, reference))):
            norm, element = largest_differences(pairs)
            out[key].append(norm)
            out[f"{key}_elementwise"].append(element)
    with torch.no_grad():
        predicted = [system.net(system.X).argmax(1).cpu().numpy() for system in systems]
    out["same_predictions"] = bool(np.array_equal(*predicted))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.torch_parity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--n-samples", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--devices", nargs=2, default=["cpu", "cuda"], metavar=("REFERENCE", "OTHER"))
    parser.add_argument("--output", help="write every per-step number here (.json)")
    args = parser.parse_args(argv)
    data = load_dataset("synthetic", n_samples=args.n_samples, seed=args.seed)
    layers = [data.X.shape[1], 512, 256, data.n_outputs]
    out = torch_parity(layers, data.X, data.y, steps=args.steps, batch_size=args.batch_size, dtype=args.dtype,
                       seed=args.seed, devices=args.devices)
    print(f"torch {args.devices[0]} vs {args.devices[1]}, {args.dtype}, {args.steps} Adam steps: "
          f"largest relative difference "
          f"loss {max(out['loss']):.3g}, gradients {max(out['gradients']):.3g}, parameters at the end "
          f"{out['parameters'][-1]:.3g} norm-wise, {out['parameters_elementwise'][-1]:.3g} element-wise; "
          f"predicted classes {'identical' if out['same_predictions'] else 'DIFFER'}")
    for step in range(0, args.steps, max(1, args.steps // 10)):
        print(f"  step {step + 1}: parameters {out['parameters'][step]:.3e} norm-wise, "
              f"{out['parameters_elementwise'][step]:.3e} element-wise")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(out, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
