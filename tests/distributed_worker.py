"""Run by tests/test_distributed.py under mpiexec: one rank of a distributed fit.

    mpiexec -n 2 python tests/distributed_worker.py SPEC.json OUT_DIR

Writes OUT_DIR/rank<r>.npz (the parameters, the history as JSON) or OUT_DIR/rank<r>.error (the
message of a ValueError, which every rank must raise alike).
"""

import json
import os
import signal
import sys
from pathlib import Path

import numpy as np

import nn_xp as nx


class FailOnRank(nx.callbacks.Callback):
    """Raises on one rank only, at the end of an epoch: the others must not be left waiting."""

    def __init__(self, rank, epoch):
        self.rank, self.epoch = rank, epoch

    def on_epoch_end(self, epoch, logs):
        if self.comm_rank == self.rank and epoch == self.epoch:
            raise RuntimeError("boom")


class CtrlCOnRank(nx.callbacks.Callback):
    """A Ctrl-C on one rank only, right after a step: after the ranks agreed whether to stop at
    this step and before the step's own check, the moment a local decision would split them."""

    def __init__(self, rank, batch):
        self.rank, self.batch = rank, batch

    def on_batch_end(self, epoch, batch):
        if self.comm_rank == self.rank and epoch == 0 and batch == self.batch:
            os.kill(os.getpid(), signal.SIGINT)


class Started(nx.callbacks.Callback):
    """Leaves a file once the first epoch is done, so the test knows when to press Ctrl-C."""

    def __init__(self, path):
        self.path = path

    def on_epoch_end(self, epoch, logs):
        if epoch == 0:
            Path(self.path).write_text("started")


def data(spec):
    rng = np.random.default_rng(spec["data_seed"])
    X = rng.normal(size=(spec["n"], spec["layers"][0]))
    y = rng.integers(0, spec["layers"][-1], spec["n"])
    return X, y


def model_for(spec, device="cpu"):
    return nx.MLP(spec["layers"], output_activation="softmax", dtype=spec["dtype"], device=device,
                  seed=spec["seed"], dropout=spec.get("dropout", 0.0), norm=spec.get("norm"))


def fit_kwargs(spec):
    kwargs = dict(epochs=spec["epochs"], batch_size=spec["batch_size"], optimizer=spec.get("optimizer", "adam"),
                  l2=spec.get("l2", 0.0), validation_split=spec.get("validation_split", 0.0), verbose=0,
                  streaming=spec.get("streaming", "auto"))
    if spec.get("weighted"):  # zeros too: a part of a batch may weigh nothing
        kwargs["sample_weight"] = np.tile([0.0, 0.5, 1.0, 2.0, 3.5], spec["n"])[: spec["n"]]
    return kwargs


def main(spec_path, out):
    spec = json.loads(Path(spec_path).read_text())
    out = Path(out)
    comm = nx.distributed.init(spec.get("backend", "auto"))
    X, y = data(spec)
    if spec.get("memmap"):
        X = np.load(spec["memmap"], mmap_mode="r")
    if spec.get("perturb_rank") == comm.rank:
        X = X.copy()
        X[0, 0] += 1.0
    device = spec.get("device", "cpu")
    model = model_for(spec, comm.device() if device == "rank" else device)
    if comm.rank != 0:  # the others start elsewhere: rank 0's model is broadcast
        model.set_parameters([np.full(p.shape, 7.0) for p in model.parameters()])
    callbacks = []
    if "fail_rank" in spec:
        failing = FailOnRank(spec["fail_rank"], 1)
        failing.comm_rank = comm.rank
        callbacks.append(failing)
    if "ctrl_c_rank" in spec:
        ctrl_c = CtrlCOnRank(spec["ctrl_c_rank"], spec["ctrl_c_batch"])
        ctrl_c.comm_rank = comm.rank
        callbacks.append(ctrl_c)
    if "started_file" in spec and comm.rank == 0:
        callbacks.append(Started(spec["started_file"]))
    try:
        history = model.fit(X, y, **fit_kwargs(spec), callbacks=callbacks, distributed=comm)
    except ValueError as error:
        (out / f"rank{comm.rank}.error").write_text(str(error))
        return 3
    # The parameters, then the buffers (a norm's running statistics).
    np.savez(out / f"rank{comm.rank}.npz", *[nx.to_numpy(p) for p in model.parameters() + model.buffers()],
             history=np.frombuffer(json.dumps(history.history).encode(), dtype=np.uint8),
             size=np.array(comm.size), stop_reason=np.array(str(history.stop_reason)),
             step_count=np.array(model.optimizer.step_count))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
