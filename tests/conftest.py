"""The test matrix: backends x dtypes, and the cross-backend tolerances, stated once."""

import numpy as np
import pytest

from nn_xp import backends

GPU_COUNT, GPU_WHY = backends.cuda_status()
BACKEND_DEVICES = {"numpy": "cpu", "array_api_strict": "array_api_strict", "cupy": "cuda:0"}
BACKENDS = [
    "numpy",
    "array_api_strict",
    pytest.param("cupy", marks=pytest.mark.skipif(GPU_COUNT == 0, reason=f"CuPy backend: {GPU_WHY.split(';')[0]}")),
]
DTYPES = ["float32", "float64"]
# Largest relative difference allowed between two backends computing the same thing.
PARITY_RTOL = {"float32": 1e-5, "float64": 1e-10}


@pytest.fixture(params=BACKENDS)
def device(request):
    """A device string for each backend of the matrix."""
    return BACKEND_DEVICES[request.param]


@pytest.fixture(params=DTYPES)
def dtype(request):
    return request.param


def relative_difference(a, b) -> float:
    """max |a - b| / max(max |b|, tiny): one number per comparison, both sides on the host."""
    a, b = backends.to_numpy(a).astype(np.float64), backends.to_numpy(b).astype(np.float64)
    scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-30)
    return float(np.max(np.abs(a - b), initial=0.0)) / scale
