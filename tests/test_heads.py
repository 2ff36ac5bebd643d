"""Output heads (heads.py): the losses' definitions, PyTorch's values and stability from the logits."""

import numpy as np
import pytest

import nn_xp as nx
from nn_xp.backends import Ops, ops_for
from nn_xp.nn.heads import get_head

OUTPUT_FOR = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid", "mse": "linear", "poisson": "exp"}


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


# ---- Poisson: scikit-learn's half deviance, from the logits --------------------------------------
@pytest.mark.parametrize("standard", [False, True], ids=["backend-ops", "standard-ops"])
def test_poisson_is_scikit_learns_half_deviance(standard):
    rng = np.random.default_rng(4)
    Z = rng.normal(size=(7, 1))
    Y = rng.poisson(0.8, size=(7, 1)).astype(float)  # zeros among them: 0 log 0 = 0
    assert (Y == 0).any()
    L, dZ = _loss_and_grad("poisson", Z, Y, standard)
    A = np.exp(Z)
    by_hand = np.mean(np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1) / A), 0) - Y + A)
    assert float(L) == pytest.approx(by_hand, rel=1e-12)
    np.testing.assert_allclose(dZ, (A - Y) / Y.size, rtol=1e-12)
    sklearn_base = pytest.importorskip("sklearn.neural_network._base")
    # One output: scikit-learn sums over outputs and averages over samples, nn_xp averages all.
    assert float(L) == pytest.approx(sklearn_base.poisson_loss(Y, A), rel=1e-12)
    Z3, Y3 = rng.normal(size=(7, 3)), rng.poisson(1.0, size=(7, 3)).astype(float)
    assert 3 * float(_loss_and_grad("poisson", Z3, Y3)[0]) == pytest.approx(
        sklearn_base.poisson_loss(Y3, np.exp(Z3)), rel=1e-12)


def test_poisson_gradient_is_torchs_poisson_nll_with_log_input():
    torch = pytest.importorskip("torch", reason="PyTorch is an optional reference, not a dependency")
    rng = np.random.default_rng(5)
    Z, Y = rng.normal(size=(6, 2)), rng.poisson(1.5, size=(6, 2)).astype(float)
    tZ = torch.tensor(Z, requires_grad=True)
    torch_loss = torch.nn.PoissonNLLLoss(log_input=True, full=False)(tZ, torch.tensor(Y))
    torch_loss.backward()
    L, dZ = _loss_and_grad("poisson", Z, Y)
    np.testing.assert_allclose(dZ, tZ.grad.numpy(), rtol=1e-12)
    # The values differ by torch's left-out constant mean(Y log Y - Y).
    constant = np.mean(np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1)), 0) - Y)
    assert float(L) == pytest.approx(torch_loss.item() + constant, rel=1e-12)


def test_poisson_model_trains_predicts_counts_and_refuses_negative_targets():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(200, 2))
    y = rng.poisson(np.exp(0.5 * X[:, 0] - 0.3 * X[:, 1]))
    model = nx.MLP([2, 8, 1], activation="tanh", output_activation="exp", dtype="float64", device="cpu", seed=0)
    assert model.default_loss == "poisson" and not model.is_classifier
    history = model.fit(X, y, optimizer="adam", learning_rate=0.01, epochs=30, batch_size=50, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert set(history.history) >= {"loss", "mae"} and "mse" not in history.history
    assert (nx.to_numpy(model.predict(X)) > 0).all()
    assert set(model.evaluate(X, y)) == {"loss", "mse", "mae", "r2"}
    with pytest.raises(ValueError, match="y must hold counts or rates >= 0 for the poisson loss"):
        model.fit(X, -y - 1.0, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="loss='poisson' needs output_activation='exp'"):
        get_head("poisson", "linear")
    with pytest.raises(ValueError, match="activation must be one of"):
        nx.MLP([2, 3, 1], activation="exp")  # an output activation only
