"""Export a model's inference graph to ONNX (the `onnx` extra: `pip install 'nn_xp[onnx]'`).

The graph takes X (batch, n_features) in the model's dtype (float32 -> FLOAT, float64 -> DOUBLE;
the batch dimension is free) and computes what `predict_proba`/`predict` compute:

    X -> (X - mean) / std          (when model.preprocessing holds the training statistics)
      -> Gemm(A, W, b, transB=1)   per Dense layer (nn_xp's W is (n_out, n_in), used as it is),
         then the layer's activation; Dropout layers are the identity at inference
      -> the output activation (softmax over axis 1)

Outputs: a classifier gives "probabilities" (batch, n_classes; one sigmoid output gives the two
columns [1 - p, p], as predict_proba does) and "label" (int64: argmax, or p > 0.5 per sigmoid
output); a model with a `classes` attribute (not None) maps the label indices to those values.
A regressor gives "predictions" (batch, n_outputs).

Activations map to ONNX operators where one exists with the same formula; gelu is the tanh form
(Gelu approximate="tanh" from opset 20, the primitive formula below it). In float64, leaky_relu,
elu, softplus and gelu are written with primitive operators, so that the graph keeps float64's
precision on onnxruntime: ONNX float attributes are 32-bit (an alpha of 0.2 would be off by 3e-9),
onnxruntime has no double kernels for Elu and Softplus, and its double Gelu is off by about 1e-8.
"""

from __future__ import annotations

import math
import os

import numpy as np

from . import __version__
from .backend import to_numpy
from .layers import Dense, Dropout

DEFAULT_OPSET = 20  # the first opset with Gelu; onnxruntime has run it since 1.17
MIN_OPSET = 13  # Softmax over one axis, Squeeze's axes as an input
INPUT = "X"
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

    def __init__(self, onnx, dtype: str, opset: int):
        self.onnx, self.dtype, self.opset = onnx, np.dtype(dtype), opset
        self.nodes, self.initializers = [], []
        self._count = 0

    def _name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, value, stem: str = "c", dtype=None) -> str:
        """An initializer holding `value` (in the model's dtype unless `dtype` is given)."""
        array = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        name = self._name(stem)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, *inputs: str, output: str | None = None, **attributes) -> str:
        output = output or self._name(op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [output], **attributes))
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
def _network(g, model) -> str:
    """Standardisation, the layers and the output activation, from the graph input."""
    H = INPUT
    if model.preprocessing and "mean" in model.preprocessing:  # it may hold only a table's encoding
        H = g.node("Sub", H, g.const(model.preprocessing["mean"], "mean"))
        H = g.node("Div", H, g.const(model.preprocessing["std"], "std"))
    for index, layer in enumerate(model.layers):
        if type(layer) is Dropout:
            continue
        if type(layer) is not Dense:
            raise ValueError(
                f"layers[{index}] is a {type(layer).__name__}, which has no ONNX form: to_onnx exports "
                "Dense and Dropout layers only"
            )
        W = to_numpy(layer.get_param("W"))
        b = to_numpy(layer.get_param("b"))
        H = g.node("Gemm", H, g.const(W, f"W{index}"), g.const(b, f"b{index}"), transB=1)
        H = _activation(g, H, layer.activation)
    return _activation(g, H, model.head().activation)


def _classes(g, model, n_classes: int):
    """A constant of the model's class labels, or None where it stores none."""
    classes = getattr(model, "classes", None)
    if classes is None:
        return None
    classes = np.asarray(classes)
    if classes.shape != (n_classes,):
        raise ValueError(f"model.classes must hold {n_classes} labels, one per class; got shape {classes.shape}")
    if classes.dtype.kind in "biu":
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


def build(model, opset=None):
    """The onnx.ModelProto of `model`'s predictions (see the module docstring); checked with
    onnx.checker (full_check) before it is returned."""
    onnx = _import_onnx()
    opset = check_opset(opset, onnx)
    TensorProto = onnx.TensorProto
    elem = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}[model.dtype]
    g = _Graph(onnx, model.dtype, opset)
    out = _network(g, model)
    if model.is_classifier:
        outputs = _classifier_outputs(g, model, out, elem)
    else:
        g.node("Identity", out, output="predictions")
        outputs = [onnx.helper.make_tensor_value_info("predictions", elem, ["batch", model.layer_sizes[-1]])]
    inputs = [onnx.helper.make_tensor_value_info(INPUT, elem, ["batch", model.layer_sizes[0]])]
    graph = onnx.helper.make_graph(g.nodes, "nn_xp", inputs, outputs, initializer=g.initializers)
    opset_id = onnx.helper.make_opsetid("", opset)
    proto = onnx.helper.make_model(graph, opset_imports=[opset_id], producer_name="nn_xp",
                                   producer_version=__version__, doc_string=repr(model))
    # The oldest IR version that carries this opset, so older runtimes read the file too.
    proto.ir_version = onnx.helper.find_min_ir_version_for([opset_id])
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(model, path, opset=None):
    """Write `model`'s ONNX graph to `path`; returns the onnx.ModelProto."""
    from .files import atomic_write

    proto = build(model, opset)
    with atomic_write(os.fspath(path), what="ONNX file") as handle:
        handle.write(proto.SerializeToString())
    return proto
