"""What a model is and how well it does: `score` (scikit-learn's estimator score), `facts` (every
fact a model holds about itself, JSON-ready) and `summary` (those facts as text, as Keras'
`model.summary()` lays out its layers). `nn-xp inspect` prints the one or the other.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from . import backends
from .data.labels import host_labels
from .nn.layers import Activation, Dense, Dropout, layer_names
from .training.history import log_order


# ---- score ------------------------------------------------------------------------------------
def score(model, X, y, sample_weight=None) -> float:
    """Classifiers: the (weighted) mean accuracy of `model.predict(X)` against the labels `y`
    (multi-label: whole rows right). Regressors: the coefficient of determination R^2, averaged
    uniformly over the outputs, with scikit-learn's `r2_score` conventions.

    X, y: raw, as `predict` and `fit` take them (a table, the labels themselves).
    sample_weight: (n_samples,) or None.
    """
    predicted = model.predict(X)
    predicted = predicted if backends.is_host_array(predicted) else backends.to_numpy(predicted)
    n = predicted.shape[0]
    weights = None
    if sample_weight is not None:
        model.check_weights(sample_weight, n)  # the model's own checks and messages
        weights = np.asarray(backends.to_numpy(sample_weight), dtype=np.float64)
    if model.is_classifier:
        truth = host_labels(y, "y")
        if truth.ndim == 2 and predicted.ndim == 1:  # one-hot rows of class indices
            truth = np.argmax(truth, axis=1)
        _check_rows(truth, n)
        if truth.shape[1:] != predicted.shape[1:]:
            raise ValueError(f"y has shape {truth.shape}, the predictions {predicted.shape}")
        right = truth == predicted
        right = right if right.ndim == 1 else np.all(right, axis=1)
        return float(np.average(right, weights=weights))
    truth = host_labels(y, "y", numeric=True).astype(np.float64)
    _check_rows(truth, n)
    return r2(truth, predicted, weights)


def _check_rows(truth, n: int) -> None:
    if truth.ndim == 0 or truth.shape[0] != n:
        raise ValueError(f"y must hold one target per sample of X ({n}), got shape {truth.shape}")


def r2(y_true, y_pred, weights=None) -> float:
    r"""Coefficient of determination, uniform average over the outputs:

        R^2_j = 1 - \sum_i w_i (y_ij - p_ij)^2 / \sum_i w_i (y_ij - \bar y_j)^2,   \bar y_j = weighted mean

    As `sklearn.metrics.r2_score`: an output whose targets are constant scores 1.0 where it is
    predicted exactly, else 0.0; fewer than two samples give NaN with a warning.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    y_true = y_true[:, None] if y_true.ndim == 1 else y_true
    y_pred = y_pred[:, None] if y_pred.ndim == 1 else y_pred
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y has shape {y_true.shape}, the predictions {y_pred.shape}")
    if y_true.shape[0] < 2:
        warnings.warn("R^2 is not defined for fewer than two samples", UserWarning, stacklevel=3)
        return math.nan
    w = np.ones(y_true.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w[:, None]
    numerator = np.sum(w * (y_true - y_pred) ** 2, axis=0)
    mean = np.sum(w * y_true, axis=0) / np.sum(w)
    denominator = np.sum(w * (y_true - mean) ** 2, axis=0)
    per_output = np.ones(y_true.shape[1])
    defined = denominator != 0
    per_output[defined] = 1 - numerator[defined] / denominator[defined]
    per_output[~defined & (numerator != 0)] = 0.0
    return float(np.mean(per_output))


# ---- facts ------------------------------------------------------------------------------------
def facts(model) -> dict:
    """Everything the model knows about itself, JSON-ready: {"model", "layers", "total_params",
    "columns", "features", "standardize", "target", "task", "classes", "options", "history",
    "split"}."""
    pre = model.preprocessor
    history = model.history
    last = {}
    if history is not None and len(history):
        last = {key: values[-1] for key, values in history.history.items() if len(values) == len(history)}
        last = {key: last[key] for key in log_order(last)}
    optimizer = None
    if model.optimizer is not None:
        opt = model.optimizer
        optimizer = {"name": opt.name, "label": getattr(opt, "label", None) or opt.name,
                     "hyperparameters": _plain(opt.hyperparameters), "step_count": int(opt.step_count)}
    layers = _layer_rows(model)
    return {
        "model": type(model).__name__,
        "layer_sizes": [int(n) for n in model.layer_sizes],
        "layers": layers,
        "total_params": sum(row["params"] for row in layers),
        "columns": _columns(pre),
        "features": pre.feature_names_out,
        "standardize": pre.stats is not None,
        "target": pre.target,
        "task": "classification" if model.is_classifier else "regression",
        "classes": _plain(model.classes),
        "options": {
            "output_activation": model.output_activation,
            "loss": _plain(model.loss) if model.loss is not None else model.default_loss,
            "optimizer": optimizer,
            "l2": float(model.l2),
            "dropout": [float(layer.rate) for layer in model.layers if isinstance(layer, Dropout)],
            "dtype": model.dtype,
            "device": model.device,
            "seed": model.seed if isinstance(model.seed, int) and not isinstance(model.seed, bool) else None,
        },
        "history": None if history is None else {
            "epochs": len(history), "stop_reason": history.stop_reason, "last": _plain(last)},
        "split": _plain(model.split),
    }


def _layer_rows(model) -> list:
    rows, width = [], model.layer_sizes[0]
    for name, layer in zip(layer_names(model.layers), model.layers):
        width = layer.output_width(width)
        row = {"name": name, "type": type(layer).__name__, "output_shape": [None, int(width)],
               "params": sum(int(np.prod(shape)) for shape in layer.param_shapes().values())}
        if isinstance(layer, (Dense, Activation)):
            row["activation"] = layer.activation.name
        if isinstance(layer, Dropout):
            row["rate"] = float(layer.rate)
        rows.append(row)
    # The output activation belongs to the head (the loss is computed from the logits before it).
    rows.append({"name": "output", "type": "Activation", "activation": model.output_activation,
                 "output_shape": [None, int(width)], "params": 0})
    return rows


def _columns(pre) -> list | None:
    """One entry per input column, in order: how it is read."""
    if pre.feature_names is None:
        return None
    encoding = pre.encoding or {}
    categories, imputed = encoding.get("one_hot") or {}, encoding.get("impute") or {}
    strategy = encoding.get("strategy")
    columns = []
    for name in pre.feature_names:
        if name in categories:
            entry = {"name": name, "read": "one-hot", "categories": list(categories[name])}
            if strategy in ("mean", "median"):
                entry["missing"] = "all zeros"
        else:
            entry = {"name": name, "read": "number"}
            if name in imputed:
                entry["missing"] = float(imputed[name])
        columns.append(entry)
    return columns


def _plain(value):
    """NumPy scalars and tuples as JSON's own types, all the way down."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---- summary ----------------------------------------------------------------------------------
def summary(model) -> str:
    """The facts as text: the layers as a table with output shapes and parameter counts, the input
    pipeline, and how the model was trained."""
    f = facts(model)
    lines = [f"Model: {f['model']} ({f['task']}), {f['layer_sizes'][0]} inputs, {f['options']['dtype']} "
             f"on {f['options']['device']}"]
    table = [("Layer (type)", "Output shape", "Params")]
    for row in f["layers"]:
        detail = ", ".join([row["type"]] + [str(row[key]) for key in ("activation", "rate") if key in row])
        shape = "(" + ", ".join(str(n) for n in row["output_shape"]) + ")"
        table.append((f"{row['name']} ({detail})", shape, f"{row['params']:,}"))
    widths = [max(len(cells[i]) for cells in table) for i in range(3)]
    rule = "-" * (sum(widths) + 6)
    for index, cells in enumerate(table):
        lines.append(f"{cells[0]:<{widths[0]}}   {cells[1]:<{widths[1]}}   {cells[2]:>{widths[2]}}")
        if index == 0:
            lines.append(rule)
    lines += ["=" * len(rule), f"Total params: {f['total_params']:,}", "", "Input pipeline"]
    strategy = (model.preprocessor.encoding or {}).get("strategy")
    if f["columns"] is None:
        lines.append(f"  X: {f['layer_sizes'][0]} numeric features (an array, no column names)")
    else:
        lines.append(f"  columns ({len(f['columns'])}, in order), {len(f['features'])} features after encoding:")
        name_width = max(len(c["name"]) for c in f["columns"])
        for column in f["columns"]:
            lines.append(f"    {column['name']:<{name_width}}  {_read(column, strategy)}")
    if strategy == "drop":
        lines.append("  rows with a missing value: dropped from training (refused in predictions)")
    lines.append("  standardised: (x - mean) / std per feature, from the training rows" if f["standardize"]
                 else "  standardised: no")
    lines.append(f"  target: {f['target'] if f['target'] is not None else '(not named)'} ({f['task']})")
    if f["classes"] is not None:
        lines.append(f"  classes ({len(f['classes'])}): {', '.join(str(c) for c in f['classes'])}")
    options = f["options"]
    lines += ["", "Training", f"  loss: {_loss(options['loss'])}" + ("" if model.loss is not None else
                                                                   " (the output's default; not trained yet)")]
    opt = options["optimizer"]
    if opt is None:
        lines.append("  optimizer: none yet")
    else:
        arguments = ", ".join(f"{k}={v!r}" for k, v in opt["hyperparameters"].items())
        label = f"{opt['label']}: " if opt["label"] != opt["name"] else ""
        lines.append(f"  optimizer: {label}{opt['name']}({arguments}), {opt['step_count']:,} steps")
    dropout = ", ".join(f"{r:g}" for r in options["dropout"]) or "none"
    lines.append(f"  l2: {options['l2']:g}, dropout: {dropout}, dtype: {options['dtype']}, device: {options['device']}"
                 + (f", seed: {options['seed']}" if options["seed"] is not None else ""))
    history = f["history"]
    if history is None or not history["epochs"]:
        lines.append("  epochs trained: 0")
    else:
        stop = f" (last fit stopped: {history['stop_reason']})" if history["stop_reason"] else ""
        lines.append(f"  epochs trained: {history['epochs']}{stop}")
        figures = {k: v for k, v in history["last"].items() if k not in ("learning_rate", "epoch_time")}
        train = ", ".join(f"{k} {v:.6g}" for k, v in figures.items() if not k.startswith("val_"))
        lines.append(f"  last epoch: {train}")
        val = ", ".join(f"{k[4:]} {v:.6g}" for k, v in figures.items() if k.startswith("val_"))
        if val:
            lines.append(f"  last validation: {val}")
        if "learning_rate" in history["last"]:
            lines.append(f"  learning rate at the last epoch: {history['last']['learning_rate']:g}")
    split = f["split"]
    if split is not None:
        lines.append(f"  split of {split.get('n_samples')} rows (seed {split.get('seed')}): "
                     f"test {split.get('test_size')}, validation {split.get('validation_split')} of the rest; "
                     f"data {split.get('data')}")
    return "\n".join(lines)


def _read(column: dict, strategy) -> str:
    if column["read"] == "one-hot":
        shown = ", ".join(column["categories"][:6]) + (", ..." if len(column["categories"]) > 6 else "")
        missing = "; missing: all zeros" if column.get("missing") else ""
        return f"one-hot, {len(column['categories'])} categories ({shown}){missing}"
    if "missing" in column:
        return f"number; missing: {column['missing']:.6g} (the training {strategy})"
    return "number"


def _loss(loss) -> str:
    if isinstance(loss, dict):  # a spec: {"name": "huber", "delta": 1.0}
        rest = ", ".join(f"{k}={v!r}" for k, v in loss.items() if k != "name")
        return f"{loss.get('name')}({rest})" if rest else str(loss.get("name"))
    return str(loss)
