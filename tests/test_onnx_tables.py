"""ONNX export of a model trained from a table: one input per column, the input pipeline inside
the graph, and the labels in their own type, as `predict` gives them."""

import importlib.util
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import nn_xp as nx

HAVE_RUNTIME = all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime", "pandas"))
pytestmark = pytest.mark.skipif(not HAVE_RUNTIME, reason="needs onnx, onnxruntime and pandas (the 'dev' extra)")
# Largest difference between onnxruntime's probabilities and predict_proba's. The graph takes the
# numbers in the model's dtype, so float32 inputs are rounded before the float64 pipeline runs.
PROBABILITY_TOL = {"float32": 1e-5, "float64": 1e-12}
FLOAT, STRING, BOOL, INT64, DOUBLE = 1, 8, 9, 7, 11  # onnx.TensorProto's element types
COLUMNS = ["bill length (mm)", "mass", "island", "sub_3"]  # odd names pass as they are


def _frame(n=90, seed=0):
    """Two numeric columns with missing values, one category column, one numeric named like an
    internal tensor ("sub_3"), plus a column that is not a feature."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "bill length (mm)": rng.normal(44.0, 5.0, n),
        "mass": rng.normal(4200.0, 600.0, n),
        "island": rng.choice(["Biscoe", "Dream", "Torgersen"], n),
        "sub_3": rng.integers(0, 4, n).astype(np.float64),
        "id": np.arange(n),
    })
    frame.loc[::6, "bill length (mm)"] = np.nan
    frame.loc[3::9, "mass"] = np.nan
    return frame


def _new_rows(frame):
    """Rows to predict: training rows, plus a category not seen in training, a missing category
    and missing numbers."""
    rows = frame.iloc[:30].copy()
    rows.loc[rows.index[0], "island"] = "Atlantis"
    rows.loc[rows.index[1], "island"] = None
    rows.loc[rows.index[2], ["bill length (mm)", "mass"]] = np.nan
    return rows


def _fit(frame, y, dtype="float32", n_out=None, output_activation="softmax"):
    n_out = n_out or len(set(np.asarray(y).tolist()))
    model = nx.MLP([6, 10, n_out], activation="tanh", output_activation=output_activation, dtype=dtype,
                   device="cpu", seed=0)
    model.fit(frame, y, drop=["id"], impute="mean", one_hot=True, standardize=True, epochs=25, batch_size=16,
              learning_rate=0.02, verbose=0)
    return model


def _feed(model, rows):
    """One (n, 1) array per feature column: numbers in the model's dtype (NaN where missing),
    categories as text ("" where missing)."""
    categories = model.preprocessor.encoding["one_hot"]
    feed = {}
    for column in model.feature_names:
        values = rows[[column]]
        if column in categories:
            feed[column] = values.fillna("").astype(str).to_numpy(dtype=object)
        else:
            feed[column] = values.to_numpy(dtype=model.dtype, na_value=np.nan)
    return feed


def _run(path, feed):
    import onnxruntime

    session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return dict(zip([output.name for output in session.get_outputs()], session.run(None, feed)))


def _export(model, tmp_path):
    import onnx

    path = tmp_path / "model.onnx"
    model.to_onnx(path)
    proto = onnx.load(os.fspath(path))
    onnx.checker.check_model(proto, full_check=True)
    return path, proto


def _assert_predicts_as_the_library(model, rows, got):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the unseen category's warning
        labels, probabilities = model.predict(rows), nx.to_numpy(model.predict_proba(rows))
    assert got["label"].tolist() == labels.tolist()
    assert [type(v) for v in got["label"].tolist()] == [type(v) for v in labels.tolist()]
    tol = PROBABILITY_TOL[model.dtype]
    assert got["probabilities"].dtype == np.dtype(model.dtype)
    np.testing.assert_allclose(got["probabilities"], probabilities, rtol=tol, atol=tol)
    assert len(set(labels.tolist())) > 1  # labels that could be wrong


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_string_labels_and_the_pipeline_in_the_graph(dtype, tmp_path):
    frame = _frame()
    y = np.where(frame["island"] == "Dream", "dream", np.where(frame["mass"].fillna(4200) > 4200, "heavy", "light"))
    model = _fit(frame, y, dtype)
    path, proto = _export(model, tmp_path)
    inputs = {i.name: i.type.tensor_type for i in proto.graph.input}
    assert list(inputs) == COLUMNS == model.feature_names
    elem = {"float32": FLOAT, "float64": DOUBLE}[dtype]
    assert {name: t.elem_type for name, t in inputs.items()} == {
        "bill length (mm)": elem, "mass": elem, "island": STRING, "sub_3": elem}
    assert all([d.dim_param or d.dim_value for d in t.shape.dim] == ["batch", 1] for t in inputs.values())
    ops = {node.op_type for node in proto.graph.node}
    assert {"IsNaN", "Where", "OneHotEncoder", "Concat", "Sub", "Div"} <= ops
    assert {o.domain: o.version for o in proto.opset_import}["ai.onnx.ml"] == 1
    label = next(o for o in proto.graph.output if o.name == "label")
    assert label.type.tensor_type.elem_type == STRING

    rows = _new_rows(frame)
    got = _run(path, _feed(model, rows))
    _assert_predicts_as_the_library(model, rows, got)
    # The unseen and the missing category are all-zero blocks: the rows differ from a known island's.
    known = rows.iloc[:2].assign(island="Biscoe")
    assert not np.allclose(got["probabilities"][:2], _run(path, _feed(model, known))["probabilities"])


def test_metadata_names_the_columns_the_classes_and_the_target(tmp_path):
    frame = _frame()
    frame["kind"] = np.where(frame["sub_3"] > 1, "many", "few")
    model = nx.MLP([6, 8, 2], output_activation="softmax", device="cpu", seed=0)
    model.fit(frame.drop(columns="kind"), frame["kind"], drop=["id"], impute="median", one_hot=True, epochs=2,
              verbose=0)
    model.target = "kind"
    _, proto = _export(model, tmp_path)
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert meta == {"feature_names": COLUMNS, "classes": ["few", "many"], "target": "kind",
                    "feature_names_out": ["bill length (mm)", "mass", "island=Biscoe", "island=Dream",
                                          "island=Torgersen", "sub_3"]}
    assert "Sub" not in {node.op_type for node in proto.graph.node}  # trained without standardize


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_integer_labels_come_back_as_int64(dtype, tmp_path):
    frame = _frame()
    y = np.where(frame["island"] == "Dream", 3, np.where(frame["sub_3"] > 1, 5, 7))
    model = _fit(frame, y, dtype)
    assert model.classes == [3, 5, 7]
    model.save(tmp_path / "model.npz")
    for source in (model, nx.load(tmp_path / "model.npz", device="cpu")):  # the file's classes are ints too
        path, proto = _export(source, tmp_path)
        rows = _new_rows(frame)
        got = _run(path, _feed(source, rows))
        assert got["label"].dtype == np.int64
        _assert_predicts_as_the_library(source, rows, got)
        assert json.loads({p.key: p.value for p in proto.metadata_props}["classes"]) == [3, 5, 7]


def test_boolean_labels_come_back_as_bool(tmp_path):
    frame = _frame()
    y = (frame["sub_3"] > 1).to_numpy()
    model = _fit(frame, y, n_out=1, output_activation="sigmoid")
    assert model.classes == [False, True]
    path, proto = _export(model, tmp_path)
    label = next(o for o in proto.graph.output if o.name == "label")
    assert label.type.tensor_type.elem_type == BOOL
    rows = _new_rows(frame)
    got = _run(path, _feed(model, rows))
    assert got["label"].dtype == np.bool_
    _assert_predicts_as_the_library(model, rows, got)


def test_a_regressor_from_a_table(tmp_path):
    frame = _frame()
    y = frame["sub_3"].to_numpy() * 2.0 + (frame["island"] == "Dream")
    model = nx.MLP([5, 8, 1], device="cpu", seed=0, dtype="float64")
    model.fit(frame.drop(columns="sub_3"), y, drop=["id"], impute="mean", one_hot=True, standardize=True,
              epochs=5, verbose=0)
    path, proto = _export(model, tmp_path)
    assert [i.name for i in proto.graph.input] == ["bill length (mm)", "mass", "island"]
    rows = _new_rows(frame)
    got = _run(path, _feed(model, rows))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        expected = nx.to_numpy(model.predict(rows))
    np.testing.assert_allclose(got["predictions"], expected, rtol=1e-12, atol=1e-12)


def test_a_column_named_like_an_output_gets_a_prefix(tmp_path):
    frame = _frame().rename(columns={"mass": "label"})
    model = _fit(frame, np.where(frame["island"] == "Dream", "a", "b"))
    path, proto = _export(model, tmp_path)
    assert [i.name for i in proto.graph.input] == ["bill length (mm)", "input:label", "island", "sub_3"]
    assert json.loads({p.key: p.value for p in proto.metadata_props}["feature_names"])[1] == "label"
    feed = _feed(model, frame)
    feed["input:label"] = feed.pop("label")
    _assert_predicts_as_the_library(model, frame, _run(path, feed))


def test_an_array_model_keeps_one_input_and_fills_its_missing_numbers(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(2.0, 3.0, size=(60, 3))
    X[::5, 1] = np.nan
    y = (np.nan_to_num(X[:, 0]) > 2).astype(np.int64)
    model = nx.MLP([3, 6, 2], output_activation="softmax", device="cpu", seed=0)
    model.fit(X, y, impute="mean", standardize=True, epochs=5, verbose=0)
    path, proto = _export(model, tmp_path)
    assert [i.name for i in proto.graph.input] == ["X"]
    assert json.loads({p.key: p.value for p in proto.metadata_props}["feature_names"]) is None
    got = _run(path, {"X": X.astype(np.float32)})
    np.testing.assert_array_equal(got["label"], nx.to_numpy(model.predict(X)))
    np.testing.assert_allclose(got["probabilities"], nx.to_numpy(model.predict_proba(X)), rtol=1e-5, atol=1e-5)


def test_cli_export_names_the_input_columns(tmp_path):
    frame = _frame()
    model = _fit(frame, np.where(frame["island"] == "Dream", "a", "b"))
    model.save(tmp_path / "model.npz")
    result = subprocess.run([sys.executable, "-m", "nn_xp", "export", str(tmp_path / "model.npz"),
                             str(tmp_path / "model.onnx")], capture_output=True, text=True, timeout=240,
                            env={**os.environ, "NN_XP_DEVICE": "cpu"})
    assert result.returncode == 0, result.stderr
    assert "inputs: 4 columns (bill length (mm), mass, island, sub_3)" in result.stdout
    assert "probabilities, label" in result.stdout


def test_the_penguins_table(tmp_path):
    palmerpenguins = pytest.importorskip("palmerpenguins", reason="the penguins table needs palmerpenguins")
    penguins = palmerpenguins.load_penguins().dropna(subset=["species"])
    features = penguins.drop(columns="species")
    # island (3 categories), 4 measurements, sex (2), year: 10 encoded features
    model = nx.MLP([10, 16, 3], output_activation="softmax", device="cpu", seed=0)
    model.fit(features, penguins["species"], one_hot=True, impute="mean", standardize=True, epochs=30,
              verbose=0)
    assert model.feature_names == list(features.columns)
    path, proto = _export(model, tmp_path)
    assert [i.name for i in proto.graph.input] == list(features.columns)
    got = _run(path, _feed(model, features))
    _assert_predicts_as_the_library(model, features, got)
    assert (got["label"] == penguins["species"].to_numpy()).mean() > 0.9
