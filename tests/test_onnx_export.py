"""ONNX export: onnxruntime, running the exported graph, gives nn_xp's predictions."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

import nn_xp as nx
from nn_xp.data.datasets import fit_standardizer
from nn_xp.nn.layers import Dense, Layer

HAVE_ONNX = importlib.util.find_spec("onnx") is not None
HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="needs the 'onnx' extra: pip install 'nn_xp[onnx]'")
needs_runtime = pytest.mark.skipif(not (HAVE_ONNX and HAVE_ORT),
                                   reason="needs onnx and onnxruntime (the 'dev' extra) to run the graphs")
# Largest difference (absolute and relative) between onnxruntime's outputs and nn_xp's.
EXPORT_TOL = {"float32": 1e-5, "float64": 1e-12}
HIDDEN = ["relu", "tanh", "sigmoid", {"name": "leaky_relu", "negative_slope": 0.2}, {"name": "elu", "alpha": 1.3},
          "softplus", "silu", "gelu", "linear", "softmax"]


def _name(activation):
    return activation if isinstance(activation, str) else activation["name"]


def _data(n_features, n_samples=50, seed=0):
    """Raw inputs far from standardised (mean about 2, std about 3), so the stored statistics matter."""
    return np.random.default_rng(seed).normal(2.0, 3.0, size=(n_samples, n_features))


def _randomized(model, seed=0):
    """The model with random weights and non-zero biases (a fresh model's biases are 0)."""
    rng = np.random.default_rng(seed)
    model.set_parameters([rng.normal(0, 0.7, size=p.shape) for p in model.parameters()])
    return model


def _model(layer_sizes, X, activation="relu", output_activation="softmax", dtype="float32", standardized=True,
           dropout=0.0, device="cpu"):
    model = _randomized(nx.MLP(layer_sizes, activation=activation, output_activation=output_activation,
                               dtype=dtype, device=device, seed=0, dropout=dropout))
    model.preprocessing = fit_standardizer(X) if standardized else None
    return model


def _run(path, X):
    """onnxruntime's outputs, by name, for X."""
    import onnxruntime

    session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return dict(zip([output.name for output in session.get_outputs()], session.run(None, {"X": X})))


def _export_and_run(model, X, tmp_path, opset=None):
    """Export, check the file with onnx.checker (full_check), run it on X in the model's dtype."""
    import onnx

    path = tmp_path / "model.onnx"
    model.to_onnx(path, opset=opset)
    proto = onnx.load(os.fspath(path))
    onnx.checker.check_model(proto, full_check=True)
    return proto, _run(path, X.astype(model.dtype))


def _expected(model, X):
    """What nn_xp gives for raw X (the model applies its own standardisation): predict_proba/predict
    or the outputs."""
    if model.is_classifier:
        return {"probabilities": nx.to_numpy(model.predict_proba(X)), "label": nx.to_numpy(model.predict(X))}
    return {"predictions": nx.to_numpy(model.predict(X))}


def _assert_matches(got, expected, dtype):
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        if name == "label":
            assert got[name].dtype == np.int64
            np.testing.assert_array_equal(got[name], value)
        else:
            assert got[name].dtype == np.dtype(dtype) and got[name].shape == value.shape
            tol = EXPORT_TOL[dtype]
            np.testing.assert_allclose(got[name], value, rtol=tol, atol=tol)


def _ops(proto):
    return {node.op_type for node in proto.graph.node}


@needs_runtime
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", HIDDEN, ids=_name)
def test_every_hidden_activation_matches(activation, dtype, tmp_path):
    X = _data(5)
    model = _model([5, 8, 7, 3], X, activation=activation, dtype=dtype)
    proto, got = _export_and_run(model, X, tmp_path)
    _assert_matches(got, _expected(model, X), dtype)
    elem = proto.graph.input[0].type.tensor_type.elem_type
    assert elem == {"float32": 1, "float64": 11}[dtype]  # TensorProto.FLOAT, DOUBLE


@needs_runtime
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("standardized", [True, False], ids=["standardized", "raw"])
@pytest.mark.parametrize("output_activation,n_out,loss", [
    ("softmax", 4, None),
    ("sigmoid", 1, None),       # binary: probabilities [1 - p, p], label p > 0.5
    ("sigmoid", 3, None),       # multi-label: 0/1 per output
    ("linear", 2, None),        # regression
    ("sigmoid", 1, "mse"),      # the notebooks' sine: a sigmoid output trained with mse is a regressor
    ("tanh", 1, None),
])
def test_outputs_match(output_activation, n_out, loss, standardized, dtype, tmp_path):
    X = _data(6)
    model = _model([6, 9, n_out], X, activation="tanh", output_activation=output_activation, dtype=dtype,
                   standardized=standardized, dropout=0.3)
    model.loss = loss
    proto, got = _export_and_run(model, X, tmp_path)
    expected = _expected(model, X)
    _assert_matches(got, expected, dtype)
    assert ("Sub" in _ops(proto) and "Div" in _ops(proto)) == standardized
    if model.is_classifier:  # labels that could be wrong: more than one class is predicted
        assert len(np.unique(expected["label"])) > 1


@needs_runtime
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_layers_are_the_identity(dtype, tmp_path):
    X = _data(4)
    model = _model([4, 16, 16, 3], X, activation="relu", dtype=dtype, dropout=[0.5, 0.2])
    assert sum(type(layer).__name__ == "Dropout" for layer in model.layers) == 2
    proto, got = _export_and_run(model, X, tmp_path)
    _assert_matches(got, _expected(model, X), dtype)
    assert "Dropout" not in _ops(proto) and [n.op_type for n in proto.graph.node].count("Gemm") == 3


@needs_runtime
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opset", [17, 20, 21])
def test_gelu_is_the_operator_from_opset_20_and_primitive_ops_before(opset, dtype, tmp_path):
    X = _data(5)
    model = _model([5, 12, 3], X, activation="gelu", dtype=dtype)
    proto, got = _export_and_run(model, X, tmp_path, opset=opset)
    _assert_matches(got, _expected(model, X), dtype)
    assert proto.opset_import[0].version == opset
    # float64 always uses the primitive form: onnxruntime's double Gelu is off by about 1e-8.
    assert ("Gelu" in _ops(proto)) == (opset >= 20 and dtype == "float32")
    assert ("Tanh" in _ops(proto)) == (opset < 20 or dtype == "float64")


@needs_runtime
def test_the_batch_dimension_is_free(tmp_path):
    X = _data(3, n_samples=40)
    model = _model([3, 5, 2], X)
    path = tmp_path / "model.onnx"
    proto = model.to_onnx(path)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    for n in (1, 7, 40):
        got = _run(path, X[:n].astype("float32"))
        _assert_matches(got, _expected(model, X[:n]), "float32")


@needs_runtime
def test_large_logits_stay_finite(tmp_path):
    X = _data(5) * 1e3
    model = _model([5, 8, 3], X, activation="softplus", standardized=False)
    _, got = _export_and_run(model, X, tmp_path)
    assert np.all(np.isfinite(got["probabilities"]))
    _assert_matches(got, _expected(model, X), "float32")


@needs_runtime
def test_a_model_on_another_backend_exports_the_same_graph(device, tmp_path):
    X = _data(5)
    reference = _model([5, 8, 3], X)
    model = _model([5, 8, 3], X, device=device)
    _, got = _export_and_run(model, X, tmp_path)
    _assert_matches(got, _expected(reference, X), "float32")


@needs_runtime
def test_stored_class_labels_are_given_back(tmp_path):
    X = _data(5)
    model = _model([5, 8, 3], X)
    model.classes = np.array(["cat", "dog", "eel"])
    _, got = _export_and_run(model, X, tmp_path)
    assert got["label"].tolist() == model.predict(X).tolist()
    binary = _model([5, 8, 1], X, output_activation="sigmoid")
    binary.classes = [3, 7]
    _, got = _export_and_run(binary, X, tmp_path)
    expected = binary.predict(X)
    assert set(expected.tolist()) == {3, 7}
    assert got["label"].dtype == np.int64 and got["label"].tolist() == expected.tolist()
    binary.classes = [1, 2, 3]
    with pytest.raises(ValueError, match="model.classes must hold 2 labels"):
        binary.to_onnx(tmp_path / "bad.onnx")


class _Scale(Layer):
    """y = x * 2, a layer ONNX export does not know."""

    def forward(self, ops, X, ctx):
        return X * 2, lambda dY: dY * 2


@needs_onnx
def test_a_custom_layer_is_refused_by_name(tmp_path):
    model = nx.Sequential([Dense(3, 4, "relu"), _Scale(), Dense(4, 2)], output_activation="softmax", device="cpu")
    with pytest.raises(ValueError, match=r"layers\[1\] is a _Scale, which has no ONNX form"):
        model.to_onnx(tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


@needs_onnx
@pytest.mark.parametrize("opset", [12, 10_000, "20", 20.0, True])
def test_a_bad_opset_is_refused(opset, tmp_path):
    model = nx.MLP([3, 4, 2], device="cpu", seed=0)
    with pytest.raises(ValueError, match="opset must be an integer from 13"):
        model.to_onnx(tmp_path / "model.onnx", opset=opset)


def test_missing_onnx_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError
    model = nx.MLP([3, 4, 2], device="cpu", seed=0)
    with pytest.raises(ImportError, match=r"pip install 'nn_xp\[onnx\]'"):
        model.to_onnx(tmp_path / "model.onnx")


def _cli(*args, cwd=None):
    env = {**os.environ, "NN_XP_DEVICE": "cpu"}
    return subprocess.run([sys.executable, "-m", "nn_xp", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=240)


@needs_runtime
def test_cli_export_round_trip(tmp_path):
    X = _data(4)
    model = _model([4, 10, 3], X, activation="elu", dtype="float64")
    model.save(tmp_path / "model.npz")
    result = _cli("export", str(tmp_path / "model.npz"), str(tmp_path / "model.onnx"), "--opset", "17")
    assert result.returncode == 0, result.stderr
    assert "opset 17" in result.stdout and "probabilities, label" in result.stdout
    _assert_matches(_run(tmp_path / "model.onnx", X), _expected(nx.load(tmp_path / "model.npz", device="cpu"), X),
                    "float64")
    bad = _cli("export", str(tmp_path / "model.npz"), str(tmp_path / "old.onnx"), "--opset", "9")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "opset must be an integer from 13" in bad.stderr.strip().splitlines()[-1]
