"""BatchNorm and LayerNorm (layers.py), parameters and buffers by name (nn/network.py): gradients against
central differences, training against PyTorch's BatchNorm1d / LayerNorm, the buffers through files,
resume, to(), copy() and the fit rollback, and the ONNX graphs."""

import importlib.util
import os

import numpy as np
import pytest

import nn_xp as nx
from nn_xp.backends import ops_for
from nn_xp.nn.layers import Activation, BatchNorm, Context, Dense, LayerNorm
from nn_xp.nn.network import _Store

TORCH_TOL = 1e-10  # float64, the same batches, the same initial weights


def _classes(n=40, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(1.0, 2.0, size=(n, d))
    return X, (X[:, 0] > 1).astype(int) + (X[:, 1] > 1.5).astype(int)


def _host(arrays):
    return [nx.to_numpy(a).copy() for a in arrays]


# ---- the layers' backward passes ---------------------------------------------------------------------
def _bound(layer, rng):
    """`layer` bound to parameters (random, so the check sees weight and bias at work) and buffers of its own."""
    store = _Store()
    layer.bind(store, 0, 0)
    store.params[:] = [rng.normal(1.0, 0.5, size=shape) for shape in layer.param_shapes().values()]
    store.grads = [None] * len(store.params)
    store.buffers[:] = [np.abs(rng.normal(0.5, 0.3, size=shape)) + 0.2 for shape in layer.buffer_shapes().values()]
    return store


def _layer_errors(layer, training, n=7, d=5, epsilon=1e-6):
    """Relative errors of dX, dweight, dbias against central differences of L = sum(Y * R), float64."""
    rng = np.random.default_rng(1)
    store = _bound(layer, rng)
    ops = ops_for(nx.backends.get_namespace(np.zeros(1)))
    X, R = rng.normal(0.5, 2.0, size=(n, d)), rng.normal(size=(n, d))

    def loss(X):
        Y, _ = layer.forward(ops, X, Context(ops, training=training))
        return float(np.sum(Y * R))

    _, backprop = layer.forward(ops, X, Context(ops, training=training))
    analytic = [backprop(R.copy())] + [np.asarray(g) for g in store.grads]
    targets = [("X", X)] + [(name, store.params[i]) for i, name in enumerate(layer.param_shapes())]
    errors = {}
    for (name, array), grad in zip(targets, analytic):
        numeric = np.empty_like(array)
        for j in np.ndindex(array.shape):
            keep = array[j]
            array[j] = keep + epsilon
            up = loss(X)
            array[j] = keep - epsilon
            down = loss(X)
            array[j] = keep
            numeric[j] = (up - down) / (2 * epsilon)
        errors[name] = float(np.linalg.norm(grad - numeric) / (np.linalg.norm(grad) + np.linalg.norm(numeric)))
    return errors


@pytest.mark.parametrize("layer, training", [(BatchNorm(5), True), (BatchNorm(5), False), (LayerNorm(5), True),
                                             (LayerNorm(5), False)])
def test_each_norm_layer_passes_gradcheck(layer, training):
    errors = _layer_errors(layer, training)
    assert set(errors) == {"X", "weight", "bias"}
    assert max(errors.values()) < 1e-7, errors


def test_the_layer_gradcheck_fails_for_a_wrong_backward():
    class Wrong(BatchNorm):  # the inference formula in training: misses the batch statistics' part
        def forward(self, ops, X, ctx):
            Y, backprop = super().forward(ops, X, ctx)
            return Y, lambda dY: backprop(dY) * 1.01

    assert _layer_errors(Wrong(5), True)["X"] > 1e-3


@pytest.mark.parametrize("norm", ["batch", "layer"])
@pytest.mark.parametrize("training_step", [None, 0])
def test_an_mlp_with_norm_passes_gradcheck(norm, training_step):
    X, y = _classes()
    model = nx.MLP([4, 6, 5, 3], activation="tanh", output_activation="softmax", dtype="float64", seed=0, norm=norm)
    model.set_parameters([p + np.random.default_rng(2).normal(0, 0.3, size=p.shape) for p in _host(model.parameters())])
    if norm == "layer" or training_step is None:
        assert nx.gradcheck(model, X[:9], y[:9], training_step=training_step) < 1e-7
    else:
        # With the batch's statistics the bias before a BatchNorm has no effect: its gradient is 0
        # (rounding on both sides), which a relative error cannot judge; measured against the
        # gradient's overall size instead.
        _, grads = model.loss_and_grads(X[:9], y[:9], training_step=0)
        head = model.head()
        Xc, Yc = model.check_input(X[:9]), model.check_target(y[:9], 9, head)
        params = model.parameters()
        for index, name in enumerate(model.named_parameters()):
            numeric = np.empty(params[index].shape)
            for j in np.ndindex(numeric.shape):
                keep = params[index][j]
                values = []
                for step in (1e-6, -1e-6):
                    params[index][j] = keep + step
                    values.append(float(model.loss_value(Xc, Yc, head, 0)))
                params[index][j] = keep
                numeric[j] = (values[0] - values[1]) / 2e-6
            analytic = nx.to_numpy(grads[index])
            assert np.linalg.norm(analytic - numeric) <= 1e-7 * max(np.linalg.norm(numeric), 1e-2), name
            if name.endswith("dense_1.b") or name.endswith("dense_2.b"):
                assert np.max(np.abs(analytic)) < 1e-12
    assert model.buffers() == [] or all(np.array_equal(b, i) for b, i in zip(
        _host(model.buffers()), [np.zeros(6), np.ones(6), np.zeros(5), np.ones(5)]))  # a check moves nothing


# ---- the MLP with norm: layers, names ------------------------------------------------------------------
def test_norm_goes_between_the_product_and_the_activation_and_without_it_nothing_changes():
    plain = nx.MLP([4, 6, 3], activation="tanh", seed=0)
    assert [type(layer) for layer in plain.layers] == [Dense, Dense]
    assert plain.layers[0].activation.name == "tanh"
    model = nx.MLP([4, 6, 3], activation="tanh", seed=0, norm="batch", dropout=0.2)
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "BatchNorm", "Activation", "Dropout", "Dense"]
    assert model.layers[0].activation.name == "linear" and model.layers[2].activation.name == "tanh"
    assert model.layer_sizes == [4, 6, 3] and model.activation == [{"name": "tanh"}]
    assert "norm='batch'" in repr(model) and "norm" not in repr(plain)
    # The same seed draws the same Dense weights with or without norm.
    for a, b in zip(_host(plain.parameters()), _host(model.parameters())[:2] + _host(model.parameters())[4:]):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"norm must be one of \[None, 'batch', 'layer'\], got 'group'"):
        nx.MLP([4, 6, 3], norm="group")


def test_named_parameters_and_buffers_are_the_live_arrays_in_layer_order():
    model = nx.MLP([4, 6, 5, 3], seed=0, norm="batch")
    named = model.named_parameters()
    assert list(named) == ["dense_1.W", "dense_1.b", "batch_norm_1.weight", "batch_norm_1.bias",
                           "dense_2.W", "dense_2.b", "batch_norm_2.weight", "batch_norm_2.bias",
                           "dense_3.W", "dense_3.b"]
    assert all(a is b for a, b in zip(named.values(), model.parameters()))
    np.testing.assert_array_equal(named["batch_norm_2.weight"], np.ones(5))
    np.testing.assert_array_equal(named["batch_norm_1.bias"], np.zeros(6))
    buffers = model.named_buffers()
    assert list(buffers) == ["batch_norm_1.running_mean", "batch_norm_1.running_var",
                             "batch_norm_2.running_mean", "batch_norm_2.running_var"]
    assert [a is b for a, b in zip(buffers.values(), model.buffers())] == [True] * 4
    assert [nx.to_numpy(b).tolist() for b in model.buffers()] == [[0.0] * 6, [1.0] * 6, [0.0] * 5, [1.0] * 5]
    assert model.decayed() == [0, 4, 8]  # the Dense weights only: no bias, no norm parameter
    plain = nx.MLP([4, 6, 3], seed=0)
    assert list(plain.named_parameters()) == ["dense_1.W", "dense_1.b", "dense_2.W", "dense_2.b"]
    assert plain.buffers() == [] and plain.named_buffers() == {}
    assert list(nx.MLP([4, 6, 3], norm="layer").named_parameters())[2:4] == ["layer_norm_1.weight",
                                                                             "layer_norm_1.bias"]


def test_l2_leaves_norm_parameters_alone():
    X, y = _classes()
    grads = {}
    for l2 in (0.0, 5.0):
        model = nx.MLP([4, 6, 3], output_activation="softmax", dtype="float64", seed=0, norm="layer")
        model.fit(X, y, epochs=1, batch_size=40, optimizer="sgd", learning_rate=1.0, l2=l2, verbose=0)
        grads[l2] = _host(model.parameters())
    changed = [not np.array_equal(a, b) for a, b in zip(grads[0.0], grads[5.0])]
    # Only the Dense weights feel the penalty directly in one full-batch step.
    assert changed == [True, False, False, False, True, False]


# ---- against PyTorch -----------------------------------------------------------------------------------
def _torch_twin(model, norm):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for BatchNorm1d and LayerNorm")
    modules = []
    for layer in model.layers:
        if isinstance(layer, Dense):
            linear = torch.nn.Linear(layer.n_in, layer.n_out, dtype=torch.float64)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(nx.to_numpy(layer.get_param("W")).copy()))
                linear.bias.copy_(torch.from_numpy(nx.to_numpy(layer.get_param("b")).copy()))
            modules.append(linear)
        elif isinstance(layer, (BatchNorm, LayerNorm)):
            cls = torch.nn.BatchNorm1d if norm == "batch" else torch.nn.LayerNorm
            modules.append(cls(layer.n_features, dtype=torch.float64))
        elif isinstance(layer, Activation):
            assert layer.activation.name == "relu"
            modules.append(torch.nn.ReLU())
    return torch, torch.nn.Sequential(*modules)


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_training_equals_pytorch_on_the_same_batches(norm):
    X, y = _classes(n=48, d=4)
    X_val, y_val = _classes(n=20, d=4, seed=5)
    model = nx.MLP([4, 6, 5, 3], activation="relu", output_activation="softmax", dtype="float64", seed=0, norm=norm)
    torch, twin = _torch_twin(model, norm)
    epochs, batch, rate = 4, 8, 0.1
    # Validation after each epoch must not move the running statistics (torch never sees it).
    model.fit(X, y, epochs=epochs, batch_size=batch, optimizer="sgd", learning_rate=rate, shuffle=False,
              validation_data=(X_val, y_val), verbose=0)
    model.evaluate(X, y)  # nor evaluation
    sgd = torch.optim.SGD(twin.parameters(), lr=rate)
    twin.train()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(epochs):
        for start in range(0, len(X), batch):
            sgd.zero_grad()
            torch.nn.functional.cross_entropy(twin(Xt[start:start + batch]), yt[start:start + batch]).backward()
            sgd.step()
    twin.eval()
    theirs = [p.detach().numpy() for p in twin.parameters()]
    ours = _host(model.parameters())
    assert [a.shape for a in ours] == [b.shape for b in theirs]
    worst = {"parameters": max(float(np.max(np.abs(a - b))) for a, b in zip(ours, theirs))}
    if norm == "batch":
        stats = [t.numpy() for m in twin if isinstance(m, torch.nn.BatchNorm1d) for t in (m.running_mean,
                                                                                        m.running_var)]
        worst["running statistics"] = max(float(np.max(np.abs(a - b))) for a, b in zip(_host(model.buffers()), stats))
        assert not np.allclose(stats[1], 1.0)  # the running variance did move
    with torch.no_grad():
        expected = torch.softmax(twin(torch.from_numpy(X_val)), dim=1).numpy()
    worst["inference"] = float(np.max(np.abs(nx.to_numpy(model.predict_proba(X_val)) - expected)))
    assert max(worst.values()) <= TORCH_TOL, worst
    print(norm, worst)


# ---- backends, files, devices -------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_numpy_and_array_api_strict_train_bitwise_alike(norm):
    X, y = _classes()
    results = []
    for device in ("cpu", "array_api_strict"):
        model = nx.MLP([4, 6, 5, 3], output_activation="softmax", dtype="float64", seed=0, norm=norm, device=device)
        model.fit(X, y, epochs=3, batch_size=10, optimizer="adam", learning_rate=0.01, verbose=0)
        results.append((_host(model.parameters()) + _host(model.buffers()), nx.to_numpy(model.predict_proba(X))))
    for a, b in zip(results[0][0] + [results[0][1]], results[1][0] + [results[1][1]]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_saved_loaded_and_resumed_exactly(norm, tmp_path):
    X, y = _classes()
    arguments = dict(epochs=2, batch_size=10, optimizer="adam", learning_rate=0.01, verbose=0)

    def fresh():
        return nx.MLP([4, 6, 5, 3], output_activation="softmax", dtype="float32", seed=0, norm=norm, device="cpu")

    straight = fresh()
    straight.fit(X, y, **{**arguments, "epochs": 4})
    first = fresh()
    first.fit(X, y, **arguments)
    path = first.save(tmp_path / "norm.npz")
    loaded = nx.load(path, device="cpu")
    assert loaded.norm == norm and repr(loaded) == repr(first)
    for a, b in zip(_host(loaded.buffers()) + _host(loaded.parameters()),
                    _host(first.buffers()) + _host(first.parameters())):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(nx.to_numpy(loaded.predict_proba(X)), nx.to_numpy(first.predict_proba(X)))
    loaded.fit(X, y, **arguments)
    for a, b in zip(_host(loaded.buffers()) + _host(loaded.parameters()),
                    _host(straight.buffers()) + _host(straight.parameters())):
        np.testing.assert_array_equal(a, b)


def test_a_sequential_with_norm_layers_round_trips(tmp_path):
    X, y = _classes()
    model = nx.Sequential([Dense(4, 6), BatchNorm(6, momentum=0.3, eps=1e-3), Activation("tanh"), Dense(6, 3),
                           LayerNorm(3, eps=1e-4)], output_activation="softmax", dtype="float64", seed=0)
    assert model.layer_sizes == [4, 6, 3]
    model.fit(X, y, epochs=2, batch_size=10, verbose=0)
    loaded = nx.load(model.save(tmp_path / "seq.npz"))
    assert repr(loaded.layers) == repr(model.layers)
    np.testing.assert_array_equal(nx.to_numpy(loaded.predict_proba(X)), nx.to_numpy(model.predict_proba(X)))


def test_copy_and_to_carry_the_buffers():
    X, y = _classes()
    model = nx.MLP([4, 6, 3], output_activation="softmax", dtype="float64", seed=0, norm="batch", device="cpu")
    model.fit(X, y, epochs=2, batch_size=10, verbose=0)
    expected = nx.to_numpy(model.predict_proba(X))
    clone = model.copy()
    for a, b in zip(_host(clone.buffers()), _host(model.buffers())):
        np.testing.assert_array_equal(a, b)
    clone.fit(X, y, epochs=1, batch_size=10, verbose=0)  # the clone's training leaves the model's buffers alone
    assert not np.array_equal(_host(clone.buffers())[0], _host(model.buffers())[0])
    np.testing.assert_array_equal(nx.to_numpy(model.predict_proba(X)), expected)
    moved = model.copy().to("array_api_strict")
    assert all(nx.backends.device_of(b) == "array_api_strict" for b in moved.buffers())
    np.testing.assert_array_equal(nx.to_numpy(moved.predict_proba(X)), expected)
    np.testing.assert_array_equal(nx.to_numpy(moved.to("cpu").predict_proba(X)), expected)
    single = model.copy(dtype="float32")
    assert all(b.dtype == np.float32 for b in single.buffers())


def test_inference_uses_the_running_statistics_and_leaves_them_alone():
    X, y = _classes()
    model = nx.MLP([4, 6, 3], output_activation="softmax", dtype="float64", seed=0, norm="batch")
    model.fit(X, y, epochs=1, batch_size=10, verbose=0)
    before = _host(model.buffers())
    P = nx.to_numpy(model.predict_proba(X))
    model.evaluate(X, y)
    model.loss_and_grads(X, y, training_step=0)
    for a, b in zip(_host(model.buffers()), before):
        np.testing.assert_array_equal(a, b)
    # by hand: Dense, the running statistics, relu, Dense, softmax
    W1, b1, g, beta, W2, b2 = _host(model.parameters())
    mean, var = before
    H = np.maximum((X @ W1.T + b1 - mean) / np.sqrt(var + 1e-5) * g + beta, 0)
    Z = H @ W2.T + b2
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(P, E / E.sum(axis=1, keepdims=True), rtol=1e-12)


def test_a_diverging_fit_puts_the_buffers_back_too():
    X, y = _classes()
    model = nx.MLP([4, 6, 3], output_activation="softmax", dtype="float64", seed=0, norm="batch")
    model.fit(X, y, epochs=1, batch_size=10, verbose=0)
    before = _host(model.buffers())
    X_bad = X.copy()
    X_bad[13, 0] = 1e300  # overflows in the batch statistics: the epoch ends non-finite
    with pytest.warns(nx.training.NonFiniteLossWarning):
        model.fit(X_bad, y, epochs=1, batch_size=10, verbose=0)
    for a, b in zip(_host(model.buffers()), before):
        np.testing.assert_array_equal(a, b)


def test_files_written_before_buffers_still_load(tmp_path):
    X, _ = _classes()
    model = nx.MLP([4, 6, 3], output_activation="softmax", seed=0)
    path = model.save(tmp_path / "plain.npz")
    with np.load(path) as archive:
        members = dict(archive)
    import json

    meta = json.loads(bytes(members["meta"]).decode())
    assert meta["buffer_shapes"] == [] and not any(k.startswith("buffer_") for k in members)
    del meta["buffer_shapes"]  # as an nn_xp before buffers wrote it
    members["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    old = tmp_path / "old.npz"
    with open(old, "wb") as handle:
        np.savez(handle, **members)
    np.testing.assert_array_equal(nx.to_numpy(nx.load(old).predict_proba(X)), nx.to_numpy(model.predict_proba(X)))


# ---- what is refused -----------------------------------------------------------------------------------
def test_batch_norm_refuses_a_training_batch_of_one_row_and_bad_settings():
    X, y = _classes(n=11)
    model = nx.MLP([4, 6, 3], output_activation="softmax", seed=0, norm="batch")
    with pytest.raises(ValueError, match="at least 2 rows per training batch"):
        model.fit(X, y, epochs=1, batch_size=10, verbose=0)
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm(3, momentum=1.5)
    with pytest.raises(ValueError, match="eps"):
        LayerNorm(3, eps=0.0)
    with pytest.raises(ValueError, match=r"BatchNorm\(5\) takes 5 input columns, but gets 6"):
        nx.Sequential([Dense(4, 6), BatchNorm(5)])


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_mixed_precision_takes_the_statistics_in_float32(norm):
    """Pre-norm values about 1000 over 128 rows, under float16's loss scale (2^16): normalised in
    float16, the mean of such values keeps steps of 0.5 and the backward pass's n * dXhat overflows,
    so the step is skipped; in float32 the step is taken and the running statistics are the batch's."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(128, 3)), rng.integers(0, 2, 128)
    model = nx.MLP([3, 4, 2], output_activation="softmax", seed=0, norm=norm, device="cpu")
    params = _host(model.parameters())
    params[1][:] = 1000.0  # dense_1.b
    model.set_parameters(params)
    reference = model.copy(dtype="float64")
    model.fit(X, y, epochs=1, batch_size=128, optimizer="sgd", learning_rate=1e-3, shuffle=False,
              precision="mixed_float16", verbose=0)
    assert all(b.dtype == np.float32 for b in model.buffers())
    assert np.all(np.isfinite(nx.to_numpy(model.predict_proba(X))))
    trained = _host(model.parameters())
    assert all(np.all(np.isfinite(p)) for p in trained) and not np.array_equal(trained[0], params[0])
    if norm == "batch":
        Z = X @ params[0].T.astype(np.float64) + params[1]
        mean, var = _host(model.buffers())
        np.testing.assert_allclose(mean, 0.1 * Z.mean(axis=0), rtol=2e-3)
        np.testing.assert_allclose(var, 0.9 + 0.1 * Z.var(axis=0, ddof=1), rtol=2e-2)
    reference.fit(X, y, epochs=1, batch_size=128, optimizer="sgd", learning_rate=1e-3, shuffle=False, verbose=0)
    np.testing.assert_allclose(trained[2], _host(reference.parameters())[2], rtol=1e-2, atol=1e-5)


# ---- ONNX ----------------------------------------------------------------------------------------------
HAVE_ORT = importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("onnxruntime") is not None


@pytest.mark.skipif(not HAVE_ORT, reason="needs onnx and onnxruntime to run the graphs")
@pytest.mark.parametrize("norm", ["batch", "layer"])
@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-5), ("float64", 1e-12)])
def test_onnx_export_of_norm_models_runs_as_predict(norm, dtype, tolerance, tmp_path):
    import onnxruntime

    X, y = _classes()
    model = nx.MLP([4, 6, 5, 3], output_activation="softmax", dtype=dtype, seed=0, norm=norm)
    model.fit(X, y, epochs=3, batch_size=10, verbose=0)
    proto = model.to_onnx(tmp_path / "norm.onnx")
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count({"batch": "BatchNormalization", "layer": "LayerNormalization"}[norm]) == 2
    session = onnxruntime.InferenceSession(os.fspath(tmp_path / "norm.onnx"), providers=["CPUExecutionProvider"])
    probabilities, labels = session.run(["probabilities", "label"], {"X": X.astype(dtype)})
    np.testing.assert_allclose(probabilities, nx.to_numpy(model.predict_proba(X)), rtol=tolerance, atol=tolerance)
    np.testing.assert_array_equal(labels, nx.to_numpy(model.predict(X)))
    if norm == "layer":
        with pytest.raises(ValueError, match="LayerNormalization\\) needs opset >= 17; got opset=16"):
            model.to_onnx(tmp_path / "old.onnx", opset=16)


def test_lbfgs_moves_the_running_statistics_once_per_epoch():
    """With the first evaluation of the step's closure (the line search's trial points are not batches)."""
    X, y = _classes()
    model = nx.MLP([4, 6, 3], output_activation="softmax", dtype="float64", seed=0, norm="batch")
    W, b = _host(model.parameters())[:2]
    model.fit(X, y, optimizer="lbfgs", epochs=1, batch_size=None, verbose=0)
    assert model.optimizer.scalars["func_evals"] > 1  # the closure ran more than once
    Z = X @ W.T + b
    mean, var = _host(model.buffers())
    np.testing.assert_allclose(mean, 0.1 * Z.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(var, 0.9 + 0.1 * Z.var(axis=0, ddof=1), rtol=1e-12)
