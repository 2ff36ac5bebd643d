"""CuPy's ops (cupy_ops.py): the fused kernels agree with the standard ops, and training on the GPU
keeps a steady memory pool. These need a CUDA GPU; without one they are skipped, the reason shown."""

import numpy as np
import pytest

import nn_xp as nx
from nn_xp import activations
from nn_xp.ops import ops_for

from .conftest import GPU_COUNT, GPU_WHY, relative_difference

pytestmark = pytest.mark.skipif(GPU_COUNT == 0, reason=f"needs a CUDA GPU: {GPU_WHY.split(';')[0]}")


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_activation_backward_kernel_matches_the_standard_backward(name, dtype):
    import cupy

    xp = nx.namespace("cuda:0")
    rng = np.random.default_rng(0)
    Z = cupy.asarray(rng.normal(size=(257, 129)).astype(dtype))
    act = activations.get_activation(name)
    A = act.forward(xp, Z)
    dA = cupy.asarray(rng.normal(size=(257, 129)).astype(dtype))
    expected = act.backward(xp, dA, Z, A)
    got, _ = ops_for(xp).backward_bias(act, dA.copy(), Z, A)
    assert relative_difference(got, expected) <= (1e-6 if dtype == "float32" else 1e-14)


# The optimizer kernels are checked against the standard ops in tests/test_ops.py (device cuda:0).


def test_memory_pool_reaches_a_steady_state():
    import cupy

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(4096, 784)).astype(np.float32), rng.integers(0, 10, 4096)
    model = nx.MLP([784, 512, 256, 10], output_activation="softmax", device="cuda:0", seed=0)
    pool = cupy.get_default_memory_pool()
    model.fit(X, y, epochs=1, batch_size=128, verbose=0)
    after_first = pool.used_bytes()
    model.fit(X, y, epochs=4, batch_size=128, verbose=0)
    assert pool.used_bytes() == after_first


def test_training_on_the_gpu_matches_the_cpu():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(512, 20)), rng.integers(0, 4, 512)
    models = [nx.MLP([20, 32, 4], output_activation="softmax", dtype="float64", device=d, seed=0)
              for d in ("cpu", "cuda:0")]
    for model in models:
        model.fit(X, y, epochs=3, batch_size=64, verbose=0)
    for a, b in zip(*(m.parameters() for m in models)):
        assert relative_difference(b, a) <= 1e-10
