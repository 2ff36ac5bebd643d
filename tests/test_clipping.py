"""Gradient clipping (clipping.py): torch.nn.utils' formulas, every backend, bad input."""

import numpy as np
import pytest

from nn_xp import backends
from nn_xp.optim.clipping import clip_grad_norm, clip_grad_value

from .conftest import PARITY_RTOL, relative_difference

NOISE = [[np.random.default_rng(i).normal(size=s) for i, s in enumerate([(4, 3), (4,), (2, 4), (2,)])]]


def test_clip_grad_norm_formula_and_inputs_untouched():
    grads = [np.array([[3.0, 0.0]]), np.array([4.0])]  # global norm 5
    clipped, total = clip_grad_norm(grads, 1.0)
    assert float(total) == pytest.approx(5.0, rel=1e-15)
    scale = 1.0 / (5.0 + 1e-6)
    np.testing.assert_allclose(clipped[0], [[3.0 * scale, 0.0]], rtol=1e-15)
    np.testing.assert_allclose(clipped[1], [4.0 * scale], rtol=1e-15)
    np.testing.assert_array_equal(grads[1], [4.0])
    unclipped, total = clip_grad_norm(grads, 10.0)
    assert float(total) == pytest.approx(5.0)
    np.testing.assert_array_equal(unclipped[0], grads[0])
    np.testing.assert_array_equal(unclipped[1], grads[1])


def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    grads = [n * 3 for n in NOISE[0]]
    for max_norm in (0.5, 2.0, 1e3):
        params = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        their_total = torch.nn.utils.clip_grad_norm_(params, max_norm)
        ours, total = clip_grad_norm(grads, max_norm)
        assert float(total) == pytest.approx(float(their_total), rel=1e-14)
        for a, p in zip(ours, params):
            assert relative_difference(a, p.grad.numpy()) < 1e-14


def test_clip_grad_norm_on_every_backend(device, dtype):
    grads = [backends.to_device((n * 3).astype(dtype), device) for n in NOISE[0]]
    clipped, total = clip_grad_norm(grads, 1.0)
    assert total.shape == () and backends.device_of(total) == device and str(total.dtype).endswith(dtype)
    def norm(arrays):
        return np.sqrt(sum(np.sum(backends.to_numpy(g).astype(np.float64) ** 2) for g in arrays))
    assert float(total) == pytest.approx(norm(grads), rel=PARITY_RTOL[dtype] * 10)
    expected = norm(grads) / (norm(grads) + 1e-6)  # max_norm / (total_norm + 1e-6), times total_norm
    assert norm(clipped) == pytest.approx(expected, rel=PARITY_RTOL[dtype] * 10)
    for c in clipped:
        assert backends.device_of(c) == device and str(c.dtype).endswith(dtype)


def test_clip_grad_value(device, dtype):
    grads = [backends.to_device(np.array([-3.0, -0.5, 0.0, 0.2, 7.0], dtype=dtype), device)]
    (clipped,) = clip_grad_value(grads, 0.5)
    expected = np.array([-0.5, -0.5, 0.0, 0.2, 0.5], dtype=dtype)
    np.testing.assert_array_equal(backends.to_numpy(clipped), expected)
    assert backends.device_of(clipped) == device and clipped.dtype == grads[0].dtype


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_clipping_rejects_bad_thresholds(bad):
    with pytest.raises(ValueError, match="max_norm must be a finite number > 0"):
        clip_grad_norm([np.ones(2)], bad)
    with pytest.raises(ValueError, match="clip_value must be a finite number > 0"):
        clip_grad_value([np.ones(2)], bad)


def test_clipping_rejects_bad_grads():
    with pytest.raises(ValueError, match="at least one array"):
        clip_grad_norm([], 1.0)
    with pytest.raises(TypeError, match="grads must be a list"):
        clip_grad_value(np.ones(2), 1.0)
    with pytest.raises(TypeError, match="max_norm"):
        clip_grad_norm([np.ones(2)], "1")

