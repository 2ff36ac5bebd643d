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

import numpy as np

import nn_xp as nx
from nn_xp.datasets import load_dataset
from nn_xp.parity import relative_differences


def _net(torch, sizes, initial, device, dtype):
    layers = []
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = torch.nn.Linear(n_in, n_out, device=device, dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(initial[2 * index]))
            linear.bias.copy_(torch.from_numpy(initial[2 * index + 1]))
        layers += [linear, torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def torch_parity(layers, X, y, *, steps=100, batch_size=128, dtype="float32", seed=0, devices=("cpu", "cuda")) -> dict:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    initial = [nx.to_numpy(p) for p in nx.MLP(layers, output_activation="softmax", dtype=dtype, device="cpu",
                                             seed=seed).parameters()]
    torch_dtype = getattr(torch, dtype)
    devices = list(devices)
    nets = [_net(torch, layers, initial, device, torch_dtype) for device in devices]
    optimizers = [torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8) for net in nets]
    data = [(torch.from_numpy(X.astype(dtype)).to(d), torch.from_numpy(y.astype(np.int64)).to(d)) for d in devices]
    loss_fn = torch.nn.CrossEntropyLoss()
    out = {"devices": devices, "dtype": dtype, "steps": steps, "loss": [], "gradients": [], "parameters": [],
           "gradients_elementwise": [], "parameters_elementwise": []}
    n = X.shape[0]
    rng = np.random.default_rng(seed)  # the batch order nx.parity_report uses
    order, position = rng.permutation(n), 0
    for _ in range(steps):
        if position + batch_size > n:
            order, position = rng.permutation(n), 0
        rows = order[position : position + batch_size]
        position += batch_size
        losses, grads = [], []
        for net, optimizer, (Xd, yd), device in zip(nets, optimizers, data, devices):
            index = torch.from_numpy(rows).to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(Xd.index_select(0, index)), yd.index_select(0, index))
            loss.backward()
            losses.append(float(loss.detach()))
            grads.append([p.grad.detach().cpu().numpy().copy() for p in net.parameters()])
            optimizer.step()
        out["loss"].append(abs(losses[1] - losses[0]) / max(abs(losses[0]), 1e-300))
        for key, pairs in (("gradients", zip(grads[1], grads[0])),
                           ("parameters", zip(*[[p.detach().cpu().numpy() for p in net.parameters()]
                                                for net in nets[::-1]]))):
            differences = [relative_differences(a, b) for a, b in pairs]
            out[key].append(max(d[0] for d in differences))
            out[f"{key}_elementwise"].append(max(d[1] for d in differences))
    with torch.no_grad():
        predicted = [net(Xd).argmax(1).cpu().numpy() for net, (Xd, _) in zip(nets, data)]
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
    print(f"torch {args.devices[0]} vs {args.devices[1]}, {args.dtype}, {args.steps} Adam steps: largest relative difference "
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
