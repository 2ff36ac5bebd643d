"""Layers (layers.py) and the Sequential model: a layer of your own, Dense, Dropout's masks and the
L2 penalty, on every backend of the matrix."""

import numpy as np
import pytest

import nn_xp as nx
from nn_xp.backends import ops_for
from nn_xp.nn import philox
from nn_xp.nn.layers import Context, Dense, Dropout, Layer, register

from .conftest import PARITY_RTOL, relative_difference


@register("test_scale")
class Scale(Layer):
    """y = x * s, one learned scale per unit: forward and backward written by hand, notebook style."""

    def __init__(self, n):
        self.n = n

    def param_shapes(self):
        return {"s": (self.n,)}

    def initial_params(self, rng):
        return {"s": np.ones(self.n)}

    def config(self):
        return {"n": self.n}

    def forward(self, ops, X, ctx):
        s = self.get_param("s")

        def backprop(dY):
            self.set_grad("s", ops.xp.sum(dY * X, axis=0))
            return dY * s

        return X * s, backprop


class Unregistered(Scale):
    pass


def _classes(n=40, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)


def _custom(device="cpu", dtype="float64", layer=Scale):
    return nx.Sequential([Dense(4, 6, "tanh"), layer(6), Dense(6, 3)], output_activation="softmax",
                         dtype=dtype, device=device, seed=0)


# ---- a layer of your own ---------------------------------------------------------------------------
def test_a_custom_layer_passes_gradcheck_trains_and_round_trips(device, tmp_path):
    X, y = _classes()
    model = _custom(device)
    assert [tuple(p.shape) for p in model.parameters()] == [(6, 4), (6,), (6,), (3, 6), (3,)]
    assert nx.gradcheck(model, X[:8], y[:8]) < 1e-7
    before = model.evaluate(X, y)["loss"]
    history = model.fit(X, y, epochs=30, batch_size=10, learning_rate=0.05, verbose=0)
    assert history.history["loss"][-1] < 0.7 * before
    assert not np.allclose(nx.to_numpy(model.parameters()[2]), 1.0)  # the scale itself was trained
    path = model.save(tmp_path / "custom.npz")
    loaded = nx.load(path, device=device)
    assert isinstance(loaded.layers[1], Scale) and loaded.layers[1].n == 6
    np.testing.assert_array_equal(nx.to_numpy(loaded.predict_proba(X)), nx.to_numpy(model.predict_proba(X)))
    assert loaded.optimizer.step_count == model.optimizer.step_count


def test_gradcheck_fails_for_a_custom_layer_with_a_wrong_backward():
    class Wrong(Scale):
        def forward(self, ops, X, ctx):
            Y, backprop = super().forward(ops, X, ctx)
            return Y, lambda dY: 1.1 * backprop(dY)

    X, y = _classes()
    assert nx.gradcheck(_custom(layer=Wrong), X[:8], y[:8]) > 1e-3


def test_an_unregistered_layer_is_refused_at_save_and_an_unknown_kind_at_load(tmp_path):
    model = _custom(layer=Unregistered)
    with pytest.raises(ValueError, match=r"Unregistered cannot be saved: register the class"):
        model.save(tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()
    path = _custom().save(tmp_path / "scale.npz")
    from nn_xp.nn import layers

    saved = layers.LAYERS.pop("test_scale")
    try:
        with pytest.raises(ValueError, match=r"unknown layer kind 'test_scale'.*register"):
            nx.load(path, device="cpu")
    finally:
        layers.LAYERS["test_scale"] = saved


def test_registering_a_second_class_under_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="already registered as 'dense'"):
        register("dense")(Unregistered)


def test_sequential_of_dense_layers_is_the_mlp():
    X, _ = _classes()
    mlp = nx.MLP([4, 8, 3], activation="tanh", output_activation="softmax", dtype="float64", seed=3)
    seq = nx.Sequential([Dense(4, 8, "tanh"), Dense(8, 3)], output_activation="softmax", dtype="float64", seed=3)
    for a, b in zip(mlp.parameters(), seq.parameters()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(mlp.forward(X), seq.forward(X))
    assert mlp.layer_sizes == seq.layer_sizes == [4, 8, 3]


@pytest.mark.parametrize("layers, words", [
    ([Dense(4, 6), Dense(5, 3)], r"layers\[1\]: Dense\(5, 3\) takes 5 input columns, but gets 6"),
    ([], "at least one layer"),
    ([Dense(4, 6), "relu"], r"layers\[1\] must be an nn_xp.layers.Layer"),
    ([Scale(4)], "the first layer must state its input width"),
])
def test_bad_stacks_are_refused_naming_the_layer(layers, words):
    with pytest.raises((TypeError, ValueError), match=words):
        nx.Sequential(layers)


# ---- dropout ----------------------------------------------------------------------------------------
def test_dropout_keeps_about_one_minus_rate_and_scales_the_rest():
    xp = nx.namespace("cpu")
    layer = Dropout(0.3)
    X = np.ones((2000, 50))
    ctx = Context(ops_for(xp), training=True, step=7, rows=np.arange(2000), key=(1, 2))
    Y, backprop = layer.forward(ctx.ops, X, ctx)
    kept = Y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(Y[kept], 1 / 0.7)
    np.testing.assert_array_equal(backprop(np.ones_like(X)) != 0, kept)  # the same mask backward
    Y_off, _ = layer.forward(ctx.ops, X, Context(ctx.ops))  # not training: the identity
    assert Y_off is X


def test_a_sample_gets_the_same_mask_whatever_batch_it_falls_in():
    xp = nx.namespace("cpu")
    rows = np.array([5, 17, 2, 40, 41, 9])
    full = philox.dropout_mask(xp, (3, 4), 11, 1, rows, 33, 0.5)
    part = philox.dropout_mask(xp, (3, 4), 11, 1, rows[[3, 0]], 33, 0.5)
    np.testing.assert_array_equal(part, full[[3, 0]])


def test_inference_never_drops():
    X, y = _classes()
    plain = nx.MLP([4, 16, 16, 3], output_activation="softmax", dtype="float64", seed=5)
    dropped = nx.MLP([4, 16, 16, 3], output_activation="softmax", dtype="float64", seed=5, dropout=0.5)
    np.testing.assert_array_equal(plain.forward(X), dropped.forward(X))
    np.testing.assert_array_equal(plain.predict(X), dropped.predict(X))
    np.testing.assert_array_equal(plain.predict_proba(X), dropped.predict_proba(X))
    assert plain.evaluate(X, y) == dropped.evaluate(X, y)
    assert plain.loss_and_grads(X, y)[0] == dropped.loss_and_grads(X, y)[0]
    # ...while a training step does drop, differently from step to step.
    losses = {dropped.loss_and_grads(X, y, training_step=t)[0] for t in range(3)}
    assert len(losses) == 3 and plain.loss_and_grads(X, y)[0] not in losses


def test_gradcheck_with_the_dropout_masks_held_fixed(device):
    X, y = _classes(12)
    model = nx.MLP([4, 7, 6, 3], activation=["tanh", "sigmoid"], output_activation="softmax", dtype="float64",
                   device=device, seed=2, dropout=[0.4, 0.25])
    assert nx.gradcheck(model, X, y, training_step=5) < 1e-7


def test_training_with_dropout_is_the_same_on_numpy_and_array_api_strict():
    X, y = _classes(60)
    models = [nx.MLP([4, 16, 8, 3], output_activation="softmax", dtype="float64", device=d, seed=4, dropout=0.3)
              for d in ("cpu", "array_api_strict")]
    for model in models:
        model.fit(X, y, epochs=5, batch_size=16, verbose=0)
    worst = max(relative_difference(b, a) for a, b in zip(*(m.parameters() for m in models)))
    assert worst <= 1e-12, worst
    assert models[0].history.history["loss"] == pytest.approx(models[1].history.history["loss"], rel=1e-12)


def test_dropout_changes_training_and_a_saved_run_resumes_with_the_same_masks(tmp_path):
    X, y = _classes(50)

    def make():
        return nx.MLP([4, 16, 3], output_activation="softmax", dtype="float64", device="cpu", seed=6, dropout=0.5)

    straight = make()
    straight.fit(X, y, epochs=4, batch_size=10, verbose=0)
    first = make()
    first.fit(X, y, epochs=2, batch_size=10, verbose=0)
    resumed = nx.load(first.save(tmp_path / "half.npz"), device="cpu")
    assert resumed.dropout == [0.5] and resumed.dropout_key == first.dropout_key
    resumed.fit(X, y, epochs=2, batch_size=10, verbose=0)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(a, b)
    plain = nx.MLP([4, 16, 3], output_activation="softmax", dtype="float64", device="cpu", seed=6)
    plain.fit(X, y, epochs=4, batch_size=10, verbose=0)
    assert not np.array_equal(plain.parameters()[0], straight.parameters()[0])


@pytest.mark.parametrize("dropout, words", [
    (1.0, r"dropout must be a finite number in \[0, 1\)"),
    (-0.1, "dropout must be"),
    ([0.1, 0.2], "one rate per hidden layer: expected 1, got 2"),
    ("0.5", "dropout must be a real number"),
])
def test_bad_dropout_rates_are_refused(dropout, words):
    with pytest.raises((TypeError, ValueError), match=words):
        nx.MLP([4, 8, 3], dropout=dropout)


# ---- the L2 penalty ---------------------------------------------------------------------------------
def test_l2_adds_lambda_over_m_times_the_weights_to_their_gradients_only(device, dtype):
    X, y = _classes(20)
    kwargs = dict(layer_sizes=[4, 5, 3], activation="tanh", output_activation="softmax", dtype=dtype,
                  device=device, seed=8)
    model, reference = nx.MLP(**kwargs), nx.MLP(**kwargs)
    loss, grads = reference.loss_and_grads(X, y)
    start = [nx.to_numpy(p).astype(np.float64) for p in reference.parameters()]
    lam, lr, m = 0.7, 0.1, X.shape[0]
    history = model.fit(X, y, optimizer="sgd", learning_rate=lr, epochs=1, batch_size=None, shuffle=False,
                        l2=lam, verbose=0)
    penalty = lam / (2 * m) * sum(np.sum(W * W) for W in start[0::2])
    assert history.history["loss"][0] == pytest.approx(loss + penalty, rel=PARITY_RTOL[dtype] * 10)
    for index, (after, before, g) in enumerate(zip(model.parameters(), start, grads)):
        expected = before - lr * (nx.to_numpy(g) + (lam / m * before if index % 2 == 0 else 0))
        assert relative_difference(after, expected) <= PARITY_RTOL[dtype] * 10
    assert model.l2 == lam


def test_l2_must_be_a_number_at_least_zero():
    X, y = _classes()
    model = nx.MLP([4, 3], output_activation="softmax", seed=0)
    with pytest.raises(ValueError, match="l2 must be a finite number >= 0"):
        model.fit(X, y, l2=-1.0, verbose=0)
    with pytest.raises(TypeError, match="l2 must be a real number"):
        model.fit(X, y, l2="0.1", verbose=0)
    assert model.optimizer is None


# ---- sparse input: the first Dense layer multiplies it as it is --------------------------------------
def _sparse_problem(n=60, n_features=30, density=0.15, seed=0):
    sparse = pytest.importorskip("scipy.sparse")
    X = sparse.random(n, n_features, density=density, format="csr", random_state=seed, dtype=np.float64)
    score = np.asarray(X[:, :10].sum(axis=1)).ravel() - np.asarray(X[:, 10:20].sum(axis=1)).ravel()
    y = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))
    return X, y


@pytest.mark.parametrize("layout", ["csr", "csc"])
def test_sparse_input_gives_the_dense_results(layout):
    X, y = _sparse_problem()
    Xs, Xd = X.asformat(layout), X.toarray()
    model = nx.MLP([30, 8, 3], activation="tanh", output_activation="softmax", dtype="float64", device="cpu",
                   seed=0, dropout=0.2)
    loss_s, grads_s = model.loss_and_grads(Xs, y, training_step=2)
    loss_d, grads_d = model.loss_and_grads(Xd, y, training_step=2)
    assert abs(loss_s - loss_d) < 1e-12
    for a, b in zip(grads_s, grads_d):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.forward(Xs), model.forward(Xd), rtol=0, atol=1e-12)
    # L-BFGS's curvature pairs amplify rounding (the sparse and dense products add in different
    # orders, about 1e-16 apart) to 1e-11 within a few steps: one step of 5 iterations is compared.
    for optimizer, batch_size, epochs in [("adam", 16, 3), (nx.optim.LBFGS, None, 1)]:
        sparse_fit, dense_fit = model.copy(), model.copy()
        settings = dict(batch_size=batch_size, epochs=epochs, validation_split=0.2, l2=0.01, verbose=0)
        history_s = sparse_fit.fit(Xs, y, optimizer=_optimizer_for(sparse_fit, optimizer), **settings)
        history_d = dense_fit.fit(Xd, y, optimizer=_optimizer_for(dense_fit, optimizer), **settings)
        np.testing.assert_allclose(history_s.history["loss"], history_d.history["loss"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(history_s.history["val_loss"], history_d.history["val_loss"], rtol=0, atol=1e-12)
        for a, b in zip(sparse_fit.parameters(), dense_fit.parameters()):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(sparse_fit.predict(Xs, batch_size=7), dense_fit.predict(Xd))


def _optimizer_for(model, optimizer):
    return optimizer if isinstance(optimizer, str) else optimizer(model.parameters(), max_iter=5)


def test_sparse_input_is_never_made_dense(monkeypatch):
    """Training and prediction on a 20000 x 100000 sparse X (dense: 8 GB in float32) stay near the
    size of its nonzeros: no dense copy of X, nor of a batch, is made anywhere."""
    import tracemalloc

    sparse = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(1)  # 10 nonzeros per row (scipy.sparse.random is slow at this size)
    columns = np.sort(rng.integers(0, 100000, size=(20000, 10)), axis=1)
    X = sparse.csr_matrix((rng.random(200000, dtype=np.float32), columns.ravel(), np.arange(0, 200001, 10)),
                          shape=(20000, 100000))
    y = (np.asarray(X.sum(axis=1)).ravel() > 0.5).astype(int)

    def refuse(self, *args, **kwargs):
        raise AssertionError("a sparse matrix was made dense")

    for cls in (sparse.csr_matrix, sparse.csc_matrix, sparse.coo_matrix):
        monkeypatch.setattr(cls, "toarray", refuse)
        monkeypatch.setattr(cls, "todense", refuse)
    model = nx.MLP([100000, 4, 1], output_activation="sigmoid", device="cpu", seed=0)
    tracemalloc.start()
    try:
        model.fit(X, y, epochs=1, batch_size=500, verbose=0)
        predictions = model.predict(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert predictions.shape == (20000,)
    assert peak < 64e6  # the parameters, Adam's state and dW are 1.6 MB each; a dense X is 8 GB


def test_bad_sparse_input_is_refused_naming_x():
    sparse = pytest.importorskip("scipy.sparse")
    X, y = _sparse_problem()
    model = nx.MLP([30, 4, 3], output_activation="softmax", device="cpu", seed=0)
    bad = X.copy()
    bad.data[3] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or infinite values"):
        model.fit(bad, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="X has 29 features but the model expects layer_sizes"):
        model.predict(X[:, :29])
    with pytest.raises(ValueError, match="validation_data.0. has no samples"):
        model.fit(X, y, epochs=1, verbose=0, validation_data=(X[:0], y[:0]))
    with pytest.raises(ValueError, match="X is sparse, which the 'array_api_strict' device does not take"):
        nx.MLP([30, 4, 3], device="array_api_strict").predict(sparse.csr_matrix(X))


# ---- state by name: named parameters, L2 as declared, buffers ------------------------------------------
@register("test_running_max")
class RunningMax(Layer):
    """The identity, keeping the largest |x| per unit seen in fit's training steps as a buffer."""

    def __init__(self, n):
        self.n = n

    def buffer_shapes(self):
        return {"peak": (self.n,)}

    def config(self):
        return {"n": self.n}

    def forward(self, ops, X, ctx):
        if ctx.update_buffers:
            xp = ops.xp
            self.set_buffer("peak", xp.maximum(self.get_buffer("peak"), xp.max(xp.abs(X), axis=0)))
        return X, lambda dY: dY


def test_parameters_and_buffers_by_name_and_l2_as_the_layers_declare(tmp_path):
    X, y = _classes()
    model = nx.Sequential([Dense(4, 6, "tanh"), Scale(6), RunningMax(6), Dense(6, 3)], output_activation="softmax",
                          dtype="float64", seed=0)
    assert model.layer_sizes == [4, 6, 6, 3]
    named = model.named_parameters()
    assert list(named) == ["dense_1.W", "dense_1.b", "test_scale_1.s", "dense_2.W", "dense_2.b"]
    assert all(a is b for a, b in zip(named.values(), model.parameters()))
    assert model.decayed() == [0, 3]  # Dense's W; Scale declares none
    assert list(model.named_buffers()) == ["test_running_max_1.peak"]
    np.testing.assert_array_equal(nx.to_numpy(model.buffers()[0]), np.zeros(6))
    model.loss_and_grads(X, y, training_step=0)
    model.evaluate(X, y)
    np.testing.assert_array_equal(nx.to_numpy(model.buffers()[0]), np.zeros(6))  # outside fit: untouched
    model.fit(X, y, epochs=2, batch_size=10, l2=0.1, verbose=0, validation_data=(10 * X, y))
    peak = nx.to_numpy(model.buffers()[0])
    assert np.all(peak > 0) and np.all(peak <= 1.0)  # tanh's range, whatever the validation inputs gave
    loaded = nx.load(model.save(tmp_path / "peak.npz"))
    np.testing.assert_array_equal(nx.to_numpy(loaded.buffers()[0]), peak)
    np.testing.assert_array_equal(nx.to_numpy(model.copy().buffers()[0]), peak)
    with pytest.raises(ValueError, match="arrays must hold 1 buffers, got 0"):
        model.set_buffers([])


def test_the_l2_penalty_follows_the_declaration_not_the_shapes():
    class DecayedScale(Scale):
        def decayed(self):
            return ("s",)

    X, y = _classes()
    after = {}
    for layer in (Scale, DecayedScale):
        model = _custom(layer=layer)
        model.fit(X, y, epochs=1, batch_size=40, optimizer="sgd", learning_rate=1.0, l2=0.0, verbose=0)
        plain = nx.to_numpy(model.parameters()[2]).copy()
        model = _custom(layer=layer)
        model.fit(X, y, epochs=1, batch_size=40, optimizer="sgd", learning_rate=1.0, l2=5.0, verbose=0)
        after[layer] = np.array_equal(nx.to_numpy(model.parameters()[2]), plain)
    assert after == {Scale: True, DecayedScale: False}
