"""Output heads (heads.py): the losses' definitions, PyTorch's values and stability from the logits."""

import numpy as np
import pytest

import nn_xp as nx
from nn_xp.heads import get_head
from nn_xp.ops import Ops, ops_for

OUTPUT_FOR = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid", "mse": "linear"}


def _loss_and_grad(loss, Z, Y, standard=False):
    """(L, dZ) of the head for `loss`, on copies (the mutable backends may overwrite Z)."""
    xp = nx.get_namespace(Z)
    ops = Ops(xp) if standard else ops_for(xp)
    L, dZ, _ = get_head(loss, OUTPUT_FOR[loss]).loss_and_grad(ops, xp.asarray(Z, copy=True), Y)
    return L, dZ


@pytest.mark.parametrize("standard", [False, True], ids=["backend-ops", "standard-ops"])
def test_loss_definitions_match_the_formulas(standard):
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(6, 4)) * 3
    labels = rng.integers(0, 4, size=6)
    Y = np.eye(4)[labels]
    log_softmax = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
    ce, dZ = _loss_and_grad("cross_entropy", Z, Y, standard)
    assert float(ce) == pytest.approx(-np.mean(log_softmax[np.arange(6), labels]), rel=1e-12)
    np.testing.assert_allclose(dZ, (np.exp(log_softmax) - Y) / 6, rtol=1e-12, atol=1e-15)
    T = rng.integers(0, 2, size=(6, 4)).astype(float)
    P = 1 / (1 + np.exp(-Z))
    bce, dZ = _loss_and_grad("binary_cross_entropy", Z, T, standard)
    assert float(bce) == pytest.approx(-np.mean(T * np.log(P) + (1 - T) * np.log(1 - P)), rel=1e-12)
    np.testing.assert_allclose(dZ, (P - T) / Z.size, rtol=1e-12, atol=1e-15)
    mse, dZ = _loss_and_grad("mse", Z, T, standard)
    assert float(mse) == pytest.approx(np.mean((Z - T) ** 2), rel=1e-12)
    np.testing.assert_allclose(dZ, 2 * (Z - T) / Z.size, rtol=1e-12)
    for loss, target in [("cross_entropy", Y), ("binary_cross_entropy", T), ("mse", T)]:
        head = get_head(loss, OUTPUT_FOR[loss])
        assert float(head.value(Ops(nx.namespace("cpu")), Z, target)) == pytest.approx(
            float(_loss_and_grad(loss, Z, target, standard)[0]), rel=1e-12)


def test_losses_match_torch_when_installed():
    torch = pytest.importorskip("torch", reason="PyTorch is an optional reference, not a dependency")
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(5, 3)) * 4
    labels = rng.integers(0, 3, size=5)
    T = rng.integers(0, 2, size=(5, 3)).astype(float)
    tZ = torch.tensor(Z)
    ce = torch.nn.CrossEntropyLoss()(tZ, torch.tensor(labels)).item()
    bce = torch.nn.BCELoss()(torch.sigmoid(tZ), torch.tensor(T)).item()
    mse = torch.nn.MSELoss()(tZ, torch.tensor(T)).item()
    assert float(_loss_and_grad("cross_entropy", Z, np.eye(3)[labels])[0]) == pytest.approx(ce, rel=1e-12)
    assert float(_loss_and_grad("binary_cross_entropy", Z, T)[0]) == pytest.approx(bce, rel=1e-10)
    assert float(_loss_and_grad("mse", Z, T)[0]) == pytest.approx(mse, rel=1e-12)


@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy"])
def test_losses_stay_finite_for_huge_logits(loss, device, dtype):
    Z = nx.to_device(np.array([[1000.0, -1000.0], [-1000.0, 1000.0], [1000.0, 1000.0]], dtype=dtype), device)
    Y = nx.to_device(np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]], dtype=dtype), device)
    L, dZ = _loss_and_grad(loss, Z, Y)
    assert np.isfinite(nx.to_numpy(L)).all() and np.isfinite(nx.to_numpy(dZ)).all()
    assert float(L) > 100  # confidently wrong rows cost about 1000, not inf or NaN


def test_a_loss_that_needs_another_output_is_refused_naming_both():
    with pytest.raises(ValueError, match="loss='cross_entropy' needs output_activation='softmax'"):
        get_head("cross_entropy", "sigmoid")
    with pytest.raises(ValueError, match="loss must be one of"):
        get_head("hinge", "linear")
