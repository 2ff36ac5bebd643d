"""Determinism on the CPU: the same seed gives bit-for-bit the same training, run after run and
process after process (whatever PYTHONHASHSEED is), given the same BLAS thread settings.

What is not promised: equality across BLAS thread counts (OpenBLAS may split a large matrix
product differently, which changes the order of the float additions), across BLAS builds or
CPUs, or between the CPU and a GPU (those agree within tests/conftest.PARITY_RTOL). See
"Determinism" in README.md.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nn_xp as nx
from nn_xp.training.callbacks import EarlyStopping

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import nn_xp as nx
    from nn_xp.training.callbacks import EarlyStopping

    rng = np.random.default_rng(7)
    y = rng.integers(0, 3, size=300)
    X = np.array([[0, 3, 1], [3, 0, -1], [-3, -3, 0]])[y] + rng.normal(size=(300, 3))
    model = nx.MLP([3, 32, 16, 3], activation=["tanh", "relu"], output_activation="softmax",
                   device="cpu", seed=11)
    model.fit(X, y, optimizer="adam", learning_rate=0.01, epochs=6, batch_size=16, validation_split=0.2,
              schedule=nx.schedules.StepDecay(step_size=2, gamma=0.5), clip_norm=5.0, verbose=0,
              callbacks=[EarlyStopping(monitor="val_loss", patience=50)])
    model.fit(X, y, optimizer="adam", learning_rate=0.002, epochs=2, batch_size=32, verbose=0)
    model.save(sys.argv[1])
    print(json.dumps({"loss": model.history.history["loss"], "hash": hash("nn_xp")}))
    """
)


def _train_in_a_subprocess(path, hash_seed, threads="1"):
    env = {**os.environ, "NN_XP_DEVICE": "cpu", "PYTHONHASHSEED": str(hash_seed),
           "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _arrays(path):
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files if name != "meta"}


@pytest.mark.parametrize("threads", ["1", "2"])
def test_two_processes_with_different_hash_seeds_train_bitwise_alike(tmp_path, threads):
    first, second = tmp_path / "first.npz", tmp_path / "second.npz"
    a = _train_in_a_subprocess(first, 0, threads)
    b = _train_in_a_subprocess(second, 12345, threads)
    assert a["hash"] != b["hash"]  # the hash seeds did differ
    assert a["loss"] == b["loss"]
    arrays_a, arrays_b = _arrays(first), _arrays(second)
    assert arrays_a.keys() == arrays_b.keys() and "opt_m_0" in arrays_a  # parameters and Adam's state
    for name in arrays_a:
        assert arrays_a[name].tobytes() == arrays_b[name].tobytes(), name
    meta = [json.loads(bytes(np.load(path)["meta"])) for path in (first, second)]
    for record in meta:  # wall-clock times are the only thing allowed to differ
        record["history"]["history"].pop("epoch_time")
    assert meta[0] == meta[1]


def _train(dtype, device="cpu"):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, size=120)
    X = np.array([[0, 3], [3, 0], [-3, -3]])[y] + rng.normal(size=(120, 2))
    model = nx.MLP([2, 8, 8, 3], activation=["gelu", "leaky_relu"], output_activation="softmax",
                   dtype=dtype, device=device, seed=5)
    model.fit(X, y, optimizer="adamw", epochs=4, batch_size=7, validation_split=0.25, clip_value=1.0,
              schedule=nx.schedules.ExponentialDecay(gamma=0.9),
              callbacks=[EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)], verbose=0)
    return model


@pytest.mark.parametrize("device", ["cpu", "array_api_strict"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_same_training_in_one_process(dtype, device):
    a, b = _train(dtype, device), _train(dtype, device)
    for p, q in zip(a.parameters(), b.parameters()):
        assert nx.to_numpy(p).tobytes() == nx.to_numpy(q).tobytes()
    for key in a.history.history:
        if key != "epoch_time":
            assert a.history.history[key] == b.history.history[key], key
    for key, arrays in a.optimizer.state_dict()["state"].items():
        for p, q in zip(arrays, b.optimizer.state_dict()["state"][key]):
            assert p.tobytes() == q.tobytes()
    assert a.rng.bit_generator.state == b.rng.bit_generator.state


def test_a_different_seed_trains_differently():
    """The check above could be vacuous if training ignored the seed."""
    a = _train("float64")
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, size=120)
    X = np.array([[0, 3], [3, 0], [-3, -3]])[y] + rng.normal(size=(120, 2))
    b = nx.MLP([2, 8, 8, 3], activation=["gelu", "leaky_relu"], output_activation="softmax",
               dtype="float64", device="cpu", seed=6)
    b.fit(X, y, optimizer="adamw", epochs=4, batch_size=7, validation_split=0.25, clip_value=1.0,
          schedule=nx.schedules.ExponentialDecay(gamma=0.9), verbose=0)
    assert not np.array_equal(a.parameters()[0], b.parameters()[0])
