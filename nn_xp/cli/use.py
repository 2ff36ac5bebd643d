"""Commands that use a trained model file: `predict`, `evaluate`, `export` and `inspect`."""

from __future__ import annotations

import json
import sys

import numpy as np

from ..data import tabular
from ..files import atomic_write
from ._common import _array_input, _format_metrics, _model_input, _predicting, _read_table, _stored_drop

# Rows that `nn-xp predict` sends through the model at a time.
PREDICT_BATCH_ROWS = 16384


def cmd_predict(args) -> int:
    import csv

    import nn_xp as nx

    model = nx.load(args.model, device=args.device)
    ids = None
    if tabular.is_table_file(args.input):
        frame = _read_table(args.input, args.delimiter)
        for option, column in (("--id", args.id), ("--target", args.target)):
            if column is not None and column not in frame.columns:
                raise ValueError(f"{args.input}: no column {column!r} for {option}; the columns are "
                                 f"{list(frame.columns)}")
        ids = frame[args.id].tolist() if args.id is not None else None
        X = _model_input(args.input, frame, model, {args.id, args.target or model.target} - {None})
    else:
        if args.id is not None:
            raise ValueError("--id names a column of a table (.csv, .tsv, .parquet)")
        X, _ = _array_input(args.input, args.target, model)
    classes = model.classes if model.is_classifier else None
    if args.proba:
        result = _predicting(lambda: _in_batches(model.predict_proba, X), args.input)
        header = [str(c) for c in classes] if classes is not None else [f"p{k}" for k in range(result.shape[1])]
        rows = ([f"{v:.8g}" for v in row] for row in result)
    else:
        result = _predicting(lambda: _in_batches(model.predict, X), args.input)
        result = result[:, None] if result.ndim == 1 else result
        rows = ([_cell(v) for v in row] for row in result)
        header = ["prediction"] if result.shape[1] == 1 else [f"prediction{k}" for k in range(result.shape[1])]
    if ids is not None:
        header, rows = [args.id, *header], ([str(i), *row] for i, row in zip(ids, rows))
    # rows are made one at a time as they are written: text for millions of predictions is not
    # held whole beside them.
    if args.output:
        if args.output.lower().endswith(".npy"):
            with atomic_write(args.output, what="predictions file") as handle:  # text labels as strings, no pickle
                np.save(handle, result.astype(str) if result.dtype == object else result)
        else:
            with atomic_write(args.output, "w", what="predictions file", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(header)  # the columns say what they are: classes, or ID and prediction
                writer.writerows(rows)
        print(f"{result.shape[0]} predictions written to {args.output}", file=sys.stderr)
    else:
        for row in rows:
            print(",".join(row))
    return 0


def _in_batches(method, X):
    """predict (or predict_proba) over X's rows PREDICT_BATCH_ROWS at a time, each batch through the
    model's input pipeline and cast on its own: a memory-mapped X is never held whole, nor as float64."""
    from ..backends import to_numpy

    return np.concatenate([to_numpy(method(X[start : start + PREDICT_BATCH_ROWS]))
                           for start in range(0, X.shape[0], PREDICT_BATCH_ROWS)])


def _cell(value) -> str:
    if isinstance(value, (str, np.str_)):
        return str(value)
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (np.integer, int)):
        return str(int(value))
    return f"{value:.8g}"


def cmd_evaluate(args) -> int:
    import nn_xp as nx

    model = nx.load(args.model, device=args.device)
    target = args.target or model.target
    pipeline = model.preprocessor
    if tabular.is_table_file(args.data):
        if target is None:
            raise ValueError(f"{args.data}: give --target COLUMN (the model does not name its target)")
        source = tabular.read(args.data, target=target, pipeline=_stored_drop(pipeline), delimiter=args.delimiter)
        X = _model_input(args.data, source.X, model, set())
    else:
        source = tabular.read(args.data, target=args.target)
        X = source.X
    if source.y is None:
        raise ValueError(f"{args.data}: no targets to evaluate against (give --target COLUMN, or a 'y' member)")
    y = source.y
    if args.held_out:
        if not (model.split and (model.split["test_size"] or model.split["validation_split"])):
            raise ValueError("--held-out needs a model trained with --test-size (its split is stored in the model)")
        columns = model.feature_names if hasattr(source.X, "columns") else None
        if tabular.fingerprint(source, columns) != model.split["data"]:
            raise ValueError(f"{args.data} is not the data the model was trained and split on: --held-out "
                             "cannot find its test rows")
        codes = pipeline.encode_target(y, f"{args.data}: target") if model.is_classifier else y
        _, _, test = tabular.split_rows(model.split, np.asarray(codes), model.is_classifier)
        if test is None:
            raise ValueError("--held-out: the model's split held out no test rows (--test-size was 0)")
        X, y = tabular.take(X, test), y[test]
    result = _predicting(lambda: model.evaluate(X, y, loss=None if model.is_classifier else "mse"), args.data)
    print(json.dumps(result) if args.json else _format_metrics(result))
    if args.report:
        if not model.is_classifier:
            raise ValueError("--report gives per-class figures: it needs a classifier")
        try:
            from sklearn.metrics import classification_report
        except ImportError:
            raise ImportError("--report needs scikit-learn: pip install 'nn_xp[sklearn]'") from None
        predicted = nx.to_numpy(model.predict(X))
        truth = pipeline.decode(model.preprocessor.encode_target(y)) if model.classes is not None else y
        names = [str(c) for c in model.classes] if model.classes is not None else None
        print(classification_report(np.asarray(truth).astype(str) if names else truth,
                                    np.asarray(predicted).astype(str) if names else predicted,
                                    labels=names, zero_division=0))
    return 0


def cmd_export(args) -> int:
    import nn_xp as nx

    model = nx.load(args.model, device="cpu")
    proto = model.to_onnx(args.output, opset=args.opset)
    outputs = ", ".join(output.name for output in proto.graph.output)
    if model.feature_names is not None:  # one input per column: numbers as float, categories as text
        names = [graph_input.name for graph_input in proto.graph.input]
        shown = ", ".join(names[:8]) + (f", ... ({len(names) - 8} more)" if len(names) > 8 else "")
        inputs = f"inputs: {len(names)} column{'s' if len(names) != 1 else ''} ({shown})"
    else:
        inputs = f"input X, {model.layer_sizes[0]} features"
    print(f"ONNX graph (opset {proto.opset_import[0].version}; {inputs}, {model.dtype}; outputs {outputs}) "
          f"written to {args.output}")
    return 0


def cmd_inspect(args) -> int:
    import nn_xp as nx

    from ..inspection import facts

    model = nx.load(args.model, device="cpu")  # inspecting needs no GPU, and must not wait for one
    if args.json:
        print(json.dumps(facts(model), indent=1))
    else:
        print(model.summary())
    return 0


