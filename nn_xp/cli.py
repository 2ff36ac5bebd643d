"""The nn-xp command line (a first version: train the notebooks' sine example)."""

from __future__ import annotations

import argparse

import numpy as np

import nn_xp as nx


def sine_data(n: int = 500):
    """The notebooks' shifted sine: x in [-2 pi, 2 pi] standardised, y = (sin x + 1) / 2."""
    x = np.linspace(-2 * np.pi, 2 * np.pi, n)
    return ((x - x.mean()) / x.std())[:, None], 0.5 * (np.sin(x) + 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nn-xp")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train on the notebooks' sine data")
    train.add_argument("--layers", type=int, nargs="+", default=[1, 10, 10, 1])
    train.add_argument("--learning_rate", "--learning-rate", type=float, default=0.5)
    train.add_argument("--epochs", type=int, default=2000)
    train.add_argument("--verbose_epoch", "--verbose-epoch", type=int, default=200)
    args = parser.parse_args(argv)
    X, y = sine_data()
    model = nx.MLP(args.layers, output_activation="sigmoid", seed=0)
    for epoch in range(args.epochs):
        loss, grads = model.loss_and_grads(X, y, loss="mse")
        for p, g in zip(model.parameters(), grads):
            p -= args.learning_rate * g
        if epoch % args.verbose_epoch == 0:
            print(f"Epoch {epoch} Loss : {loss}")
    print(f"final loss {loss:.6f} on {model.device}")
    return 0
