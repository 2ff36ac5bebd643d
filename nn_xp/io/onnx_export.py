"""Export a model's inference graph to ONNX (the `onnx` extra: `pip install 'nn_xp[onnx]'`).

A model trained on plain arrays: the graph takes X (batch, n_features) in the model's dtype
(float32 -> FLOAT, float64 -> DOUBLE; the batch dimension is free) and computes what
`predict_proba`/`predict` compute:

    X -> missing numbers (NaN) -> the stored fill value   (when trained with impute mean/median)
      -> (X - mean) / std          (when the model holds the training statistics)
      -> Gemm(A, W, b, transB=1)   per Dense layer (nn_xp's W is (n_out, n_in), used as it is),
         then the layer's activation; Dropout layers are the identity at inference;
         BatchNorm -> BatchNormalization with the running statistics (inference mode),
         LayerNorm -> LayerNormalization over the last axis (opset >= 17), Activation as the above
      -> the output activation (softmax over axis 1)

A model trained from a table (`model.feature_names` is not None) takes one input per feature
column, in the training order, each (batch, 1): a number column in the model's dtype (NaN for a
missing value), a one-hot (category) column as STRING. The model's whole input pipeline is in the
graph, in float64 as `Preprocessor.transform` computes it, then cast to the model's dtype:

    number column   -> Where(IsNaN(x), fill value, x)      (impute mean/median)
    category column -> ai.onnx.ml OneHotEncoder(categories, zeros=1)
    -> Concat in the encoded order (`feature_names_out`) -> (X - mean) / std -> the network

A category is the text the library keys it by (str(value): "3" for the number 3). A category not
seen in training gives an all-zero block, as `predict` does (without its warning); so does a
missing one, which a caller passes as an empty string "" (onnxruntime also reads None as the text
"None", which gives zeros too unless "None" was a training category). A missing number is NaN.
Where the library refuses a row (a missing value in a model trained without imputation, an
infinite number), the graph has no error to raise: the NaN or inf runs through to the outputs.
An input is named after its column exactly (ONNX names may be any text); a column whose name
cannot be an input name (the empty name, or the name of an output: "probabilities", "label",
"predictions") is named "input:" + its name. The metadata_props say what the graph holds, each
value JSON: "feature_names" (the columns, in the inputs' order), "feature_names_out" (the
encoded features), "classes", "target" (null where the model has none).

Outputs: a classifier gives "probabilities" (batch, n_classes; one sigmoid output gives the two
columns [1 - p, p], as predict_proba does) and "label": the model's classes in their own type
(int64 for integers, string for text, bool for booleans, double for fractions), or the class
index (int64: argmax, or p > 0.5 per sigmoid output) where it has none. A regressor gives
"predictions" (batch, n_outputs).

Activations map to ONNX operators where one exists with the same formula; gelu is the tanh form
(Gelu approximate="tanh" from opset 20, the primitive formula below it). In float64, leaky_relu,
elu, softplus and gelu are written with primitive operators, so that the graph keeps float64's
precision on onnxruntime: ONNX float attributes are 32-bit (an alpha of 0.2 would be off by 3e-9),
onnxruntime has no double kernels for Elu and Softplus, and its double Gelu is off by about 1e-8.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from .._version import __version__
from ..backends import to_numpy
from ..nn.layers import Activation, BatchNorm, Dense, Dropout, LayerNorm

DEFAULT_OPSET = 20  # the first opset with Gelu; onnxruntime has run it since 1.17
MIN_OPSET = 13  # Softmax over one axis, Squeeze's axes as an input
INPUT = "X"
OUTPUTS = ("probabilities", "label", "predictions")
ML_DOMAIN, ML_OPSET = "ai.onnx.ml", 1  # OneHotEncoder
_GELU_C = math.sqrt(2.0 / math.pi)


def _import_onnx():
    try:
        import onnx
    except ImportError as error:
        raise ImportError(
            "exporting to ONNX needs the 'onnx' package: pip install 'nn_xp[onnx]'"
        ) from error
    return onnx


def check_opset(opset, onnx) -> int:
    """The opset to write: DEFAULT_OPSET for None, else an integer the installed onnx knows."""
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        return min(DEFAULT_OPSET, newest)
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= newest:
        raise ValueError(
            f"opset must be an integer from {MIN_OPSET} to {newest} (the newest the installed onnx "
            f"{onnx.__version__} knows), or None for {min(DEFAULT_OPSET, newest)}; got {opset!r}"
        )
    return int(opset)


class _Graph:
    """Nodes and constants of one graph, in the model's element type, with unique tensor names."""

    def __init__(self, onnx, dtype: str, opset: int, reserved=()):
        self.onnx, self.dtype, self.opset = onnx, np.dtype(dtype), opset
        self.nodes, self.initializers = [], []
        self._count = 0
        self._reserved = set(reserved)  # the input names: a column may be called "sub_5"

    def _name(self, stem: str) -> str:
        self._count += 1
        while f"{stem}_{self._count}" in self._reserved:
            self._count += 1
        return f"{stem}_{self._count}"

    def const(self, value, stem: str = "c", dtype=None) -> str:
        """An initializer holding `value` (in the model's dtype unless `dtype` is given)."""
        array = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        name = self._name(stem)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, *inputs: str, output: str | None = None, domain: str | None = None, **attributes) -> str:
        output = output or self._name(op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [output], domain=domain, **attributes))
        return output


# ---- activations: (graph, input name, activation params) -> output name -----------------------
def _leaky_relu(g, X, params):
    slope = params["negative_slope"]
    if g.dtype == np.float32:
        return g.node("LeakyRelu", X, alpha=slope)
    return g.node("Where", g.node("Greater", X, g.const(0)), X, g.node("Mul", X, g.const(slope)))


def _elu(g, X, params):
    alpha = params["alpha"]
    if g.dtype == np.float32:
        return g.node("Elu", X, alpha=alpha)
    # alpha * (exp(min(z, 0)) - 1): exp never overflows on the branch Where discards.
    negative = g.node("Min", X, g.const(0))
    expm1 = g.node("Sub", g.node("Exp", negative), g.const(1))
    return g.node("Where", g.node("Greater", X, g.const(0)), X, g.node("Mul", expm1, g.const(alpha)))


def _softplus(g, X, params):
    if g.dtype == np.float32:
        return g.node("Softplus", X)
    # max(z, 0) + log(1 + exp(-|z|)): no overflow for any z.
    tail = g.node("Log", g.node("Add", g.const(1), g.node("Exp", g.node("Neg", g.node("Abs", X)))))
    return g.node("Add", g.node("Relu", X), tail)


def _gelu(g, X, params):
    if g.opset >= 20 and g.dtype == np.float32:
        return g.node("Gelu", X, approximate="tanh")
    # 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))), as activations._gelu writes it.
    cube = g.node("Mul", g.node("Mul", X, X), X)
    inner = g.node("Mul", g.node("Add", X, g.node("Mul", cube, g.const(0.044715))), g.const(_GELU_C))
    half_z = g.node("Mul", X, g.const(0.5))
    return g.node("Mul", half_z, g.node("Add", g.const(1), g.node("Tanh", inner)))


def _silu(g, X, params):
    return g.node("Mul", X, g.node("Sigmoid", X))


ACTIVATIONS = {
    "linear": lambda g, X, params: X,
    "relu": lambda g, X, params: g.node("Relu", X),
    "sigmoid": lambda g, X, params: g.node("Sigmoid", X),
    "tanh": lambda g, X, params: g.node("Tanh", X),
    "softmax": lambda g, X, params: g.node("Softmax", X, axis=1),
    "softplus": _softplus,
    "silu": _silu,
    "gelu": _gelu,
    "leaky_relu": _leaky_relu,
    "elu": _elu,
}


def _activation(g, X, activation) -> str:
    emit = ACTIVATIONS.get(activation.name)
    if emit is None:
        raise ValueError(f"activation {activation.name!r} has no ONNX form; exportable: {sorted(ACTIVATIONS)}")
    return emit(g, X, activation.params)


# ---- the graph ---------------------------------------------------------------------------------
def input_name(column: str) -> str:
    """The graph input of a feature column: its name, or "input:" + it where the name cannot be one."""
    return f"input:{column}" if column == "" or column in OUTPUTS else column


def _array_input(g, model, elem):
    """A model trained on arrays: the one input X, its missing numbers filled and standardised in
    the model's dtype; (the first layer's input, the graph inputs)."""
    pre = model.preprocessor
    H = INPUT
    fill = (pre.encoding or {}).get("impute") or {}
    if fill:
        values = [fill[str(j)] for j in range(len(fill))]
        H = g.node("Where", g.node("IsNaN", H), g.const(values, "fill"), H)
    if pre.stats is not None:
        H = g.node("Sub", H, g.const(pre.stats["mean"], "mean"))
        H = g.node("Div", H, g.const(pre.stats["std"], "std"))
    return H, [g.onnx.helper.make_tensor_value_info(INPUT, elem, ["batch", model.layer_sizes[0]])]


def _table_inputs(g, model, elem):
    """A model trained from a table: one input per column, encoded and standardised in float64 as
    Preprocessor.transform does; (the first layer's input, the graph inputs)."""
    TensorProto, helper = g.onnx.TensorProto, g.onnx.helper
    pre = model.preprocessor
    encoding = pre.encoding or {}
    fill, categories = encoding.get("impute") or {}, encoding.get("one_hot") or {}
    names = [input_name(c) for c in pre.feature_names]
    clash = next((n for n in names if names.count(n) > 1), None)
    if clash is not None:
        raise ValueError(f"two feature columns would both be the ONNX input {clash!r}: rename one")
    width = len(pre.feature_names_out)
    if width != model.layer_sizes[0]:
        raise ValueError(f"the input pipeline makes {width} features but the first layer takes {model.layer_sizes[0]}")
    blocks, inputs = [], []
    for column, name in zip(pre.feature_names, names):
        if column in categories:
            inputs.append(helper.make_tensor_value_info(name, TensorProto.STRING, ["batch", 1]))
            if not categories[column]:  # no category in training: the column adds no feature
                continue
            # zeros=1: a category not in the list (unseen, or "" for a missing one) gives all zeros.
            codes = g.node("OneHotEncoder", name, domain=ML_DOMAIN, cats_strings=list(categories[column]), zeros=1)
            codes = g.node("Squeeze", codes, g.const([1], "axes", np.int64))  # (batch, 1, k) -> (batch, k)
            blocks.append(g.node("Cast", codes, to=TensorProto.DOUBLE))
            continue
        inputs.append(helper.make_tensor_value_info(name, elem, ["batch", 1]))
        H = name if elem == TensorProto.DOUBLE else g.node("Cast", name, to=TensorProto.DOUBLE)
        if column in fill:
            H = g.node("Where", g.node("IsNaN", H), g.const([fill[column]], "fill", np.float64), H)
        blocks.append(H)
    H = g.node("Concat", *blocks, axis=1) if len(blocks) > 1 else blocks[0]
    if pre.stats is not None:
        H = g.node("Sub", H, g.const(pre.stats["mean"], "mean", np.float64))
        H = g.node("Div", H, g.const(pre.stats["std"], "std", np.float64))
    if elem != TensorProto.DOUBLE:  # the library standardises in float64, then casts for the first layer
        H = g.node("Cast", H, to=elem)
    return H, inputs


LAYER_NORM_OPSET = 17  # the first opset with LayerNormalization


def _network(g, model, H) -> str:
    """The layers and the output activation, from the first layer's input H."""
    for index, layer in enumerate(model.layers):
        kind = type(layer)
        if kind is Dropout:
            continue
        if kind is Dense:
            W = to_numpy(layer.get_param("W"))
            b = to_numpy(layer.get_param("b"))
            H = g.node("Gemm", H, g.const(W, f"W{index}"), g.const(b, f"b{index}"), transB=1)
            H = _activation(g, H, layer.activation)
        elif kind is Activation:
            H = _activation(g, H, layer.activation)
        elif kind is BatchNorm:  # inference: the running statistics
            weight, bias = (g.const(to_numpy(layer.get_param(n)), f"{n}{index}") for n in ("weight", "bias"))
            mean, var = (g.const(to_numpy(layer.get_buffer(n)), f"{n}{index}") for n in ("running_mean",
                                                                                          "running_var"))
            H = g.node("BatchNormalization", H, weight, bias, mean, var, epsilon=float(layer.eps))
        elif kind is LayerNorm:
            if g.opset < LAYER_NORM_OPSET:
                raise ValueError(f"layers[{index}] is a LayerNorm, whose ONNX form (LayerNormalization) needs "
                                 f"opset >= {LAYER_NORM_OPSET}; got opset={g.opset}")
            weight, bias = (g.const(to_numpy(layer.get_param(n)), f"{n}{index}") for n in ("weight", "bias"))
            H = g.node("LayerNormalization", H, weight, bias, axis=-1, epsilon=float(layer.eps))
        else:
            raise ValueError(
                f"layers[{index}] is a {type(layer).__name__}, which has no ONNX form: to_onnx exports "
                "Dense, Dropout, Activation, BatchNorm and LayerNorm layers only"
            )
    return _activation(g, H, model.head().activation)


def _classes(g, model, n_classes: int):
    """A constant of the model's class labels, or None where it stores none."""
    classes = getattr(model, "classes", None)
    if classes is None:
        return None
    classes = np.asarray(classes)
    if classes.shape != (n_classes,):
        raise ValueError(f"model.classes must hold {n_classes} labels, one per class; got shape {classes.shape}")
    if classes.dtype.kind == "b":  # as predict gives them: a bool array
        return g.const(classes, "classes", np.bool_)
    if classes.dtype.kind in "iu":
        return g.const(classes, "classes", np.int64)
    if classes.dtype.kind == "f":
        return g.const(classes, "classes", np.float64)
    return g.const(np.array([str(c) for c in classes], dtype=object), "classes", object)


def _classifier_outputs(g, model, P, elem) -> list:
    """"probabilities" and "label" from the output activation's P; their value infos."""
    TensorProto = g.onnx.TensorProto
    n_out = model.layer_sizes[-1]
    if model.output_activation == "sigmoid" and n_out == 1:
        g.node("Concat", g.node("Sub", g.const(1), P), P, axis=1, output="probabilities")
        positive = g.node("Cast", g.node("Greater", P, g.const(0.5)), to=TensorProto.INT64)
        index = g.node("Squeeze", positive, g.const([1], "axes", np.int64))
        n_classes, label_shape = 2, ["batch"]
    elif model.output_activation == "sigmoid":  # multi-label: 0/1 per output, no class names
        g.node("Identity", P, output="probabilities")
        index = g.node("Cast", g.node("Greater", P, g.const(0.5)), to=TensorProto.INT64)
        n_classes, label_shape = n_out, ["batch", n_out]
    else:
        g.node("Identity", P, output="probabilities")
        index = g.node("ArgMax", P, axis=1, keepdims=0)
        n_classes, label_shape = n_out, ["batch"]
    classes = _classes(g, model, n_classes) if len(label_shape) == 1 else None
    if classes is None:
        g.node("Identity", index, output="label")
        label_type = TensorProto.INT64
    else:
        g.node("Gather", classes, index, axis=0, output="label")
        label_type = g.initializers[-1].data_type
    return [g.onnx.helper.make_tensor_value_info("probabilities", elem, ["batch", n_classes]),
            g.onnx.helper.make_tensor_value_info("label", label_type, label_shape)]


def _json_classes(classes):
    """The class labels as JSON values in their own type (NumPy scalars as Python's)."""
    if classes is None:
        return None
    return [c.item() if isinstance(c, np.generic) else c for c in classes]


def build(model, opset=None):
    """The onnx.ModelProto of `model`'s predictions (see the module docstring); checked with
    onnx.checker (full_check) before it is returned."""
    onnx = _import_onnx()
    opset = check_opset(opset, onnx)
    TensorProto = onnx.TensorProto
    elem = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}[model.dtype]
    pre = model.preprocessor
    table = pre.feature_names is not None
    g = _Graph(onnx, model.dtype, opset, reserved=[input_name(c) for c in pre.feature_names or []])
    H, inputs = _table_inputs(g, model, elem) if table else _array_input(g, model, elem)
    out = _network(g, model, H)
    if model.is_classifier:
        outputs = _classifier_outputs(g, model, out, elem)
    else:
        g.node("Identity", out, output="predictions")
        outputs = [onnx.helper.make_tensor_value_info("predictions", elem, ["batch", model.layer_sizes[-1]])]
    graph = onnx.helper.make_graph(g.nodes, "nn_xp", inputs, outputs, initializer=g.initializers)
    opsets = [onnx.helper.make_opsetid("", opset)]
    if any(node.domain == ML_DOMAIN for node in g.nodes):
        opsets.append(onnx.helper.make_opsetid(ML_DOMAIN, ML_OPSET))
    proto = onnx.helper.make_model(graph, opset_imports=opsets, producer_name="nn_xp",
                                   producer_version=__version__, doc_string=repr(model))
    # The oldest IR version that carries these opsets, so older runtimes read the file too.
    proto.ir_version = onnx.helper.find_min_ir_version_for(opsets)
    onnx.helper.set_model_props(proto, {
        "feature_names": json.dumps(pre.feature_names), "feature_names_out": json.dumps(pre.feature_names_out),
        "classes": json.dumps(_json_classes(model.classes)), "target": json.dumps(pre.target)})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(model, path, opset=None):
    """Write `model`'s ONNX graph to `path`; returns the onnx.ModelProto."""
    from ..files import atomic_write

    proto = build(model, opset)
    with atomic_write(os.fspath(path), what="ONNX file") as handle:
        handle.write(proto.SerializeToString())
    return proto
