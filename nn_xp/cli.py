"""The nn-xp command line: train, predict, evaluate, info (and parity).

Every option has a hyphenated spelling and the notebooks' underscore spelling
(--learning-rate and --learning_rate). Errors print one line on stderr and exit with status 2;
--debug shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

from . import tabular
from .files import atomic_write
from .preprocessing import MAX_CATEGORIES, MAX_INFERRED_CLASSES, Preprocessor

DEFAULT_EPOCHS = {"sine": 1000}


def _add(group, *names, **kwargs):
    """Add an option under its hyphenated name and the underscore twin the notebooks use."""
    spelled = list(names)
    for name in names:
        if name.startswith("--") and "-" in name[2:]:
            spelled.append("--" + name[2:].replace("-", "_"))
    return group.add_argument(*spelled, **kwargs)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # --epoch is refused, not taken for --epochs
        super().__init__(*args, **kwargs)

    def error(self, message):
        # One line, as for every other error; --help shows the usage.
        self.exit(2, f"nn-xp: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text):
    value = float(text)
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .activations import ACTIVATIONS
    from .datasets import DATASETS
    from .heads import LOSSES
    from .initializers import INIT_NAMES
    from .optim import OPTIMIZERS
    from .optim.schedules import SCHEDULES

    parser = _Parser(
        prog="nn-xp",
        description="Train and use multilayer perceptrons written from scratch, on the CPU or a CUDA GPU.",
    )
    parser.add_argument("--version", action="version", version=f"nn_xp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    train = sub.add_parser(
        "train",
        help="train a network on a dataset",
        description="Train a network. With no --dataset it trains on the notebooks' sine data, e.g.\n"
        "  nn-xp train --layers 1 10 10 1 --learning_rate 0.01 --epochs 1000 --verbose_epoch 200",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = train.add_argument_group("data")
    data.add_argument("--dataset", default="sine",
                      help=f"a built-in name ({', '.join(DATASETS)}) or a .csv/.tsv/.parquet/.npz/.npy file "
                      "(default: sine)")
    data.add_argument("--target", help="the table's column holding the targets")
    data.add_argument("--targets", metavar="Y.npy", help="the targets of a .npy --dataset, one row per sample "
                      "(both are memory-mapped)")
    data.add_argument("--task", choices=["classification", "regression"],
                      help="what the target means; default: text or booleans, or at most "
                      f"{MAX_INFERRED_CLASSES} distinct whole numbers, are classes, other numbers regression")
    _add(data, "--n-samples", type=_positive_int, help="samples to generate for the built-in generators")
    data.add_argument("--standardize", action="store_true",
                      help="standardise inputs; the statistics are saved in the model and reused by predict")
    _add(data, "--test-size", type=float, default=0.0, help="fraction held out for a final test score (default 0)")
    _add(data, "--validation-split", type=float, default=0.0, help="fraction held out for validation (default 0)")
    _add_table_options(data, train=True)

    net = train.add_argument_group("network")
    net.add_argument("--layers", type=_positive_int, nargs="+", metavar="N",
                     help="layer sizes, inputs first (default: inputs, 64, outputs; sine: 1 10 10 1)")
    net.add_argument("--hidden", type=_positive_int, nargs="+", metavar="N",
                     help="the hidden layer sizes only; the input and output widths come from the data")
    net.add_argument("--activation", nargs="+", metavar="NAME",
                     help=f"hidden activation, or one per hidden layer ({', '.join(ACTIVATIONS)}; default relu)")
    _add(net, "--leaky-slope", type=float, default=0.01, help="negative slope of leaky_relu (default 0.01)")
    _add(net, "--output-activation", help="default: softmax for classes, sigmoid for sine, else linear")
    net.add_argument("--init", default="he", help=f"weight initializer ({', '.join(INIT_NAMES)}; default he)")
    net.add_argument("--loss", choices=LOSSES, help="default: inferred from the output activation")
    _add(net, "--huber-delta", type=_positive_float, help="--loss huber: where it turns linear (default 1)")
    net.add_argument("--quantile", type=float, help="--loss quantile: the quantile in (0, 1) (default 0.5)")
    _add(net, "--label-smoothing", type=float,
         help="cross_entropy against (1 - s) one-hot + s / classes, s in [0, 1) (default 0)")
    net.add_argument("--dtype", choices=["float32", "float64"], help="default float32")
    net.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    net.add_argument("--seed", type=int, default=0, help="seed for weights, shuffling and dropout (default 0)")
    net.add_argument("--dropout", type=float, nargs="+", metavar="RATE",
                     help="fraction of each hidden layer's units dropped while training: one rate, or one per "
                     "hidden layer (default 0; saved in the model)")

    opt = train.add_argument_group("optimisation")
    opt.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
    _add(opt, "--learning-rate", type=_positive_float, help="default: the optimizer's (adam 0.001, sgd 0.01)")
    opt.add_argument("--momentum", type=float, help="sgd/rmsprop momentum")
    opt.add_argument("--nesterov", action="store_true", help="Nesterov momentum (sgd)")
    opt.add_argument("--beta1", type=float, help="adam/adamw beta1")
    opt.add_argument("--beta2", type=float, help="adam/adamw beta2")
    opt.add_argument("--eps", type=float, help="adam/adamw/rmsprop epsilon")
    opt.add_argument("--rho", type=float, help="rmsprop decay")
    _add(opt, "--weight-decay", type=float, help="L2 (adamw: decoupled) weight decay")
    opt.add_argument("--amsgrad", action="store_true")
    _add(opt, "--line-search", choices=["strong_wolfe"], help="lbfgs: strong-Wolfe line search")
    opt.add_argument("--epochs", type=_positive_int, help="default 100 (sine: 1000)")
    _add(opt, "--batch-size", type=_positive_int, default=32, help="samples per step (default 32)")
    _add(opt, "--full-batch", action="store_true",
         help="batch gradient descent: one step per epoch (always so with --optimizer lbfgs)")
    opt.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule")
    opt.add_argument("--gamma", type=float, help="step/exponential decay factor")
    _add(opt, "--step-size", type=_positive_int, help="epochs between step decays")
    _add(opt, "--warmup-epochs", type=int, help="cosine warm-up epochs (default 0)")
    _add(opt, "--early-stopping", type=_positive_int, metavar="PATIENCE",
            help="stop after PATIENCE epochs without improvement (val_loss if validating, else loss)")
    _add(opt, "--clip-norm", type=_positive_float, help="clip gradients to this global L2 norm")
    opt.add_argument("--precision", default="float32", choices=["float32", "mixed_float16", "mixed_bfloat16"],
                     help="half-precision products with float32 weights (mixed_float16 scales the loss)")
    opt.add_argument("--streaming", default="auto", choices=["auto", "on", "off"],
                     help="keep the training data in host memory and copy each batch to the GPU while the "
                     "step before runs (auto: when it would take over half the GPU's free memory)")
    opt.add_argument("--l2", type=float, metavar="LAMBDA",
                     help="L2 penalty on the weights: lambda / (2 m) * sum ||W||^2 per batch of m samples "
                     "(default 0, or the resumed model's)")

    out = train.add_argument_group("output")
    data.add_argument("--sample-weight", metavar="COLUMN",
                      help="a column of per-sample weights (not a feature); the loss is their weighted mean")
    data.add_argument("--class-weight", choices=["balanced"],
                      help="weigh each class by n_samples / (n_classes * its count)")
    out.add_argument("--save", metavar="FILE.npz", help="write the trained model here")
    out.add_argument("--resume", metavar="FILE.npz", help="continue training a saved model")
    out.add_argument("--plot", metavar="FILE.png", help="write loss curves and results here")
    out.add_argument("--log", metavar="FILE.csv",
                     help="write one row per epoch here (loss, metrics, validation figures, learning rate, "
                     "epoch time), when training ends")
    _add(out, "--verbose-epoch", type=_positive_int, help="print the loss every N epochs (default epochs/10)")
    out.add_argument("--quiet", action="store_true", help="print only the summary")
    out.add_argument("--debug", action="store_true", help="show tracebacks")
    out.add_argument("--distributed", action="store_true",
                     help="data-parallel training over the ranks of mpiexec (MPI, NCCL between GPUs); "
                     "--batch-size is the global batch, only rank 0 prints and writes files")

    predict = sub.add_parser("predict", help="predict with a saved model",
                             description="Predict with a saved model; prints one line per sample or writes --output.")
    predict.add_argument("model", help="a model file written by --save")
    predict.add_argument("input", help="a .csv (with header), .npy or .npz (member X) file")
    predict.add_argument("--target", help="a CSV column to leave out of the features")
    predict.add_argument("--id", metavar="COLUMN", help="a column to pass through to the output beside each prediction")
    predict.add_argument("--output", "-o", help="write predictions to this .csv or .npy file")
    predict.add_argument("--proba", action="store_true", help="class probabilities instead of labels")
    predict.add_argument("--device", default="auto")
    _add_table_options(predict)
    predict.add_argument("--debug", action="store_true")

    evaluate = sub.add_parser("evaluate", help="loss and metrics of a saved model on labelled data")
    evaluate.add_argument("model", help="a model file written by --save")
    evaluate.add_argument("data", help="a dataset name or a .csv/.npz file with targets")
    evaluate.add_argument("--target", help="CSV column holding the targets")
    evaluate.add_argument("--device", default="auto")
    _add_table_options(evaluate)
    evaluate.add_argument("--json", action="store_true", help="print the result as JSON")
    evaluate.add_argument("--held-out", action="store_true",
                          help="score only the test rows held out when the model was trained (--test-size)")
    evaluate.add_argument("--report", action="store_true",
                          help="per-class precision, recall and F1 (scikit-learn's classification_report)")
    evaluate.add_argument("--debug", action="store_true")

    parity = sub.add_parser(
        "parity", help="train one model on two devices and compare them step by step",
        description="Train the same model from the same seed on two devices and report, per step, the "
        "largest relative difference of loss, gradients and parameters (default: workload (a) of the "
        "benchmarks, 784-512-256-10 on synthetic data, 100 Adam steps, cpu against cuda).")
    parity.add_argument("--devices", nargs=2, default=["cpu", "cuda"], metavar=("REFERENCE", "OTHER"))
    parity.add_argument("--dataset", default="synthetic", help="a dataset name or file (default synthetic)")
    parity.add_argument("--target", help="CSV column holding the targets")
    _add(parity, "--n-samples", type=_positive_int, default=2000, help="samples to draw (default 2000)")
    parity.add_argument("--layers", type=_positive_int, nargs="+", metavar="N",
                        help="layer sizes (default: features 512 256 classes)")
    parity.add_argument("--steps", type=_positive_int, default=100)
    _add(parity, "--batch-size", type=_positive_int, default=128)
    parity.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parity.add_argument("--optimizer", default="adam", choices=[o for o in OPTIMIZERS if o != "lbfgs"])
    parity.add_argument("--tf32", action="store_true", help="allow TF32 matrix products on the GPU")
    parity.add_argument("--seed", type=int, default=0)
    parity.add_argument("--output", "-o", help="also write the report here (.md or .json)")
    parity.add_argument("--debug", action="store_true")

    info = sub.add_parser("info", help="versions, devices and why CUDA is or is not usable")
    info.add_argument("--debug", action="store_true")

    from .onnx_export import DEFAULT_OPSET  # no onnx import: the module imports it when exporting

    export = sub.add_parser("export", help="write a saved model as an ONNX graph (the onnx extra)",
                            description="Write a saved model's predictions as an ONNX graph: classifiers "
                            "output 'probabilities' and 'label', regressors 'predictions'; the stored "
                            "standardisation is part of the graph.")
    export.add_argument("model", help="a model file written by --save")
    export.add_argument("output", help="the .onnx file to write")
    export.add_argument("--opset", type=_positive_int, default=None,
                        help=f"the ONNX opset to target (default {DEFAULT_OPSET})")
    export.add_argument("--debug", action="store_true", help="show tracebacks")

    inspect = sub.add_parser("inspect", help="what a saved model is, reads and was trained with",
                             description="Print a saved model's layers (output shapes, parameter counts), its "
                             "input pipeline (columns, imputation, one-hot categories, standardisation, target, "
                             "classes) and its training (loss, optimizer, epochs, last figures, split).")
    inspect.add_argument("model", help="a model file written by --save")
    inspect.add_argument("--json", action="store_true", help="print the same facts as one JSON object")
    inspect.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def _add_table_options(group, train=False):
    group.add_argument("--delimiter", help="a CSV's delimiter (default: a tab for .tsv, else sniffed)")
    if train:  # predict and evaluate repeat what the model stored
        group.add_argument("--impute", choices=["mean", "median", "drop"],
                           help="fill a table's missing values with the training rows' mean or median (stored in "
                           "the model, reused by predict), or drop those rows")
        _add(group, "--one-hot", nargs="*", metavar="COLUMN",
             help="encode these text columns as one 0/1 column per category (stored in the model); with no "
             "column, every text column, after a note listing them")
        group.add_argument("--columns", nargs="+", metavar="COLUMN", help="the feature columns (default: all but "
                           "the target, --drop and --sample-weight)")
        group.add_argument("--drop", nargs="+", metavar="COLUMN", help="columns that are not features (an ID, a date)")
        group.add_argument("--decimal", default=".", choices=[".", ","],
                           help="the decimal mark of numbers written as text (default '.')")
        _add(group, "--max-categories", type=_positive_int, default=MAX_CATEGORIES,
             help=f"refuse a one-hot column with more categories (default {MAX_CATEGORIES})")


# ---- data ------------------------------------------------------------------------------------
def _is_file(name: str) -> bool:
    return os.sep in name or name.lower().endswith((".csv", ".tsv", ".parquet", ".npz", ".npy")) or os.path.exists(name)


def _load_data(name: str, target=None, n_samples=None, seed=0, **table_options):
    from .datasets import load_dataset, load_file

    if _is_file(name):
        return load_file(name, target=target, progress=True, **table_options)
    given = [f"--{k.replace('_', '-')}" for k, v in table_options.items() if v not in (None, False)]
    if given:
        raise ValueError(f"{given[0]} applies to a table file; {name!r} is a built-in dataset")
    if target is not None:
        raise ValueError(f"--target names a column of a CSV file; {name!r} is a built-in dataset")
    kwargs = {"seed": seed}
    if n_samples is not None:
        kwargs["n_samples"] = n_samples
    return load_dataset(name, **kwargs)


def _check_table_options(args) -> None:
    """Options that choose and encode a table's columns, refused by name for any other dataset."""
    if tabular.is_table_file(args.dataset):
        return
    given = {"--columns": args.columns, "--drop": args.drop, "--impute": args.impute, "--one-hot": args.one_hot,
             "--sample-weight": args.sample_weight, "--target": args.target,
             "--decimal": None if args.decimal == "." else args.decimal}
    for option, value in given.items():
        if value is not None:
            kind = "a built-in dataset" if not tabular.is_file(args.dataset) else "not a table"
            verb = "names a column of" if option in ("--target", "--sample-weight") else "applies to"
            raise ValueError(f"{option} {verb} a table file (.csv, .tsv, .parquet); {args.dataset!r} is {kind}")


# ---- commands --------------------------------------------------------------------------------
def _optimizer(args, params):
    from .optim import get_optimizer

    numbers = ("momentum", "beta1", "beta2", "eps", "rho", "weight_decay")
    flags = ("nesterov", "amsgrad")
    chosen = {k: getattr(args, k) for k in numbers if getattr(args, k) is not None}
    chosen.update({k: True for k in flags if getattr(args, k)})
    if args.line_search:
        chosen["line_search_fn"] = args.line_search
    if not chosen:
        return args.optimizer
    optimizer = get_optimizer(args.optimizer, params, args.learning_rate)
    defaults = optimizer.state_dict()["hyperparameters"]
    for key in chosen:
        if key not in defaults:
            flag = "line-search" if key == "line_search_fn" else key.replace("_", "-")
            raise ValueError(f"--{flag} does not apply to the {args.optimizer} optimizer")
    optimizer = type(optimizer)(params, **{**defaults, **chosen})
    optimizer.label = args.optimizer
    return optimizer


def _schedule(args):
    from .optim.schedules import get_schedule

    uses = {"gamma": ("step", "exponential"), "step_size": ("step",), "warmup_epochs": ("cosine",)}
    for key, schedules in uses.items():
        if getattr(args, key) is not None and args.schedule not in schedules:
            raise ValueError(f"--{key.replace('_', '-')} needs --schedule {' or '.join(schedules)}")
    if args.schedule is None:
        return None
    kwargs = {}
    if args.schedule == "step":
        kwargs = {"step_size": args.step_size or 10, "gamma": args.gamma if args.gamma is not None else 0.1}
    elif args.schedule == "exponential":
        kwargs = {"gamma": args.gamma if args.gamma is not None else 0.95}
    elif args.schedule == "cosine":
        kwargs = {"total_epochs": args.epochs, "warmup_epochs": args.warmup_epochs or 0}
    elif args.schedule == "plateau":
        kwargs = {"monitor": "val_loss" if args.validation_split else "loss"}
    return get_schedule(args.schedule, **kwargs)


def _format_metrics(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" if k != "loss" else f"loss {v:.6g}" for k, v in metrics.items())


def cmd_train(args) -> int:
    import nn_xp as nx

    from .training import NonFiniteLossWarning
    from .training.callbacks import CSVLogger, EarlyStopping

    for name, value in (("--test-size", args.test_size), ("--validation-split", args.validation_split)):
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    args.epochs = args.epochs or DEFAULT_EPOCHS.get(args.dataset, 100)
    schedule = _schedule(args)  # checked before any data is loaded
    _check_targets_option(args.dataset, args.targets)
    for option, path in (("--save", args.save), ("--plot", args.plot), ("--log", args.log)):
        if path:
            _check_writable(option, path)
    comm = None
    if args.distributed:
        usable, why = nx.distributed.mpi_status()
        if not usable:  # said even outside mpiexec, where training alone would quietly go on
            raise RuntimeError(f"--distributed needs MPI: {why}")
        comm = nx.distributed.init()
        nx.distributed.check_same_settings(comm, _computation_options(args), "options", _flag)
        if args.device == "auto":
            args.device = comm.device()  # each rank its own GPU where there are GPUs
        if comm.rank != 0:  # one rank speaks and writes
            sys.stdout = open(os.devnull, "w")  # for the rest of this process
            args.save = args.plot = None
    _check_table_options(args)
    _check_targets_option(args.dataset, args.targets)
    resumed = nx.load(args.resume, device=args.device) if args.resume else None
    pipeline = _pipeline(args, resumed)
    target = args.target or (resumed.target if resumed is not None else None)
    # A resumed model's pipeline is fitted, and read() drops rows (impute drop) only for an unfitted
    # one: the stored drop is asked for again, as evaluate --held-out does, to find the same rows.
    source = tabular.read(args.dataset, target=target, weight=args.sample_weight,
                          pipeline=pipeline if resumed is None else _stored_drop(pipeline), task=args.task,
                          delimiter=args.delimiter, n_samples=args.n_samples, seed=args.seed, targets=args.targets)
    if source.y is None:
        raise ValueError(f"{args.dataset}: no targets found (give --target COLUMN for a table, or a 'y' member "
                         "in an .npz)")
    if comm is not None:  # a rank given other data would fail alone, or wait in a collective for ever
        data_hash = tabular.fingerprint(source) + ("" if source.weights is None else tabular.fingerprint(
            tabular.Source(source.weights, None, None, None, "", [])))
        nx.distributed.check_same_settings(comm, {"data": data_hash}, "data", lambda key: f"the hash of {args.dataset}")
    if args.task is not None and source.task is not None and args.task != source.task and not tabular.is_table_file(
            args.dataset):
        raise ValueError(f"--task {args.task}: {args.dataset} holds {source.task} targets")
    # The task and the classes come from every row (a class seen only in the test rows is still a class).
    labels = Preprocessor(task=args.task or source.task)
    if resumed is not None:
        labels.task = "classification" if resumed.is_classifier else "regression"
        if resumed.classes is not None:
            labels.classes = resumed.classes
    codes = labels.fit_target(source.y, f"{args.dataset}: target") if labels.classes is None else None
    if resumed is not None and resumed.classes is not None:
        _check_same_classes(args.dataset, labels, source.y, resumed)
        codes = labels.encode_target(source.y, f"{args.dataset}: target")
    for note in source.notes + labels.notes:
        print(f"note: {note}", file=sys.stderr)
    task = labels.task
    split = _split(args, resumed, source, pipeline)
    args.validation_split = split["validation_split"]  # early stopping watches val_loss where there is one
    train_rows, val_rows, test_rows = tabular.split_rows(split, codes, task == "classification")
    X, y = tabular.take(source.X, train_rows), source.y[train_rows]
    weights = None if source.weights is None else source.weights[train_rows]
    X_test = y_test = validation = None
    if test_rows is not None:
        X_test, y_test = tabular.take(source.X, test_rows), source.y[test_rows]
    if val_rows is not None:
        validation = (tabular.take(source.X, val_rows), source.y[val_rows]) + (
            (source.weights[val_rows],) if source.weights is not None else ())
    if not pipeline.fitted:  # the statistics, categories and columns from the training rows only
        pipeline.target = target
        pipeline.fit(X, where=args.dataset)
        for note in pipeline.notes:
            print(f"note: {note}", file=sys.stderr)
    pipeline.task, pipeline.classes = task, labels.classes
    n_in = len(pipeline.feature_names_out) if pipeline.feature_names_out is not None else source.X.shape[1]
    if resumed is not None:
        model = resumed
        _check_resumed(args, model, n_in)
    else:
        model = _new_model(args, task, labels.classes, n_in)
    model.preprocessor = pipeline
    model.split = split
    epochs = args.epochs
    callbacks = []
    if args.early_stopping:
        monitor = "val_loss" if args.validation_split else "loss"
        callbacks.append(EarlyStopping(monitor=monitor, patience=args.early_stopping, restore_best_weights=True))
    if args.log:  # writes_files: rank 0 alone writes it under --distributed
        callbacks.append(CSVLogger(args.log))
    optimizer = (model.optimizer.label if args.resume and model.optimizer is not None and args.optimizer == "adam"
                 else _optimizer(args, model.parameters()))
    # A sigmoid output on regression targets (the sine) means MSE, not binary cross-entropy.
    loss = _loss_spec(args, args.loss or ("mse" if task == "regression" else None))
    args.loss = loss
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteLossWarning)  # said below as an error, with a hint
        history = model.fit(
            X, y, loss=loss, optimizer=optimizer, learning_rate=args.learning_rate, epochs=epochs,
            batch_size=None if args.full_batch or args.optimizer == "lbfgs" else args.batch_size,
            validation_data=validation,
            callbacks=callbacks, verbose=0 if args.quiet else 1,
            verbose_epoch=args.verbose_epoch or max(1, epochs // 10), schedule=schedule, clip_norm=args.clip_norm,
            l2=args.l2 if args.l2 is not None else model.l2, distributed=comm, sample_weight=weights,
            class_weight=args.class_weight, precision=args.precision,
            streaming={"auto": "auto", "on": True, "off": False}[args.streaming],
        )
    if history.stop_reason == "non-finite loss":
        raise _diverged(args, history, comm)
    elapsed = time.perf_counter() - started
    # Figures of this run's last epoch only: a key an earlier run logged (say val_loss) but this one
    # did not has fewer values than there are epochs, and its last value is stale.
    last = {k: v[-1] for k, v in history.history.items()
            if k not in ("learning_rate", "epoch_time") and len(v) == len(history) and len(history)}
    print(f"device {model.device} ({model.dtype}), {len(history)} epochs in all, {elapsed:.2f} s this run"
          + (f" [stopped: {history.stop_reason}]" if history.stop_reason else ""))
    print(f"train: {_format_metrics({k: v for k, v in last.items() if not k.startswith('val_')})}")
    val = {k[4:]: v for k, v in last.items() if k.startswith("val_")}
    if val:
        print(f"validation: {_format_metrics(val)}")
    if X_test is not None:
        print(f"test: {_format_metrics(model.evaluate(X_test, y_test, loss=args.loss))}")
    if args.save:
        model.save(args.save)
        print(f"model written to {args.save}")
    if args.log:
        print(f"training log written to {args.log}")
    if args.plot:
        from .plot import training_figure

        os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
        shown_X, shown_y = (X_test, y_test) if X_test is not None else (X, y)
        training_figure(model, shown_X, shown_y, path=args.plot, on_training_data=X_test is None)
        print(f"plot written to {args.plot}")
    if history.stop_reason == "interrupted":  # Ctrl-C: what was trained is written, and the exit says so
        print("nn-xp: interrupted", file=sys.stderr)
        return 130
    return 0


def _pipeline(args, resumed) -> Preprocessor:
    """The input pipeline this run asks for; a resumed model's own, where options that would
    contradict it are refused by name."""
    one_hot = None if args.one_hot is None else (args.one_hot or True)
    asked = {"--columns": args.columns, "--drop": args.drop, "--impute": args.impute, "--one-hot": one_hot,
             "--standardize": args.standardize or None, "--decimal": None if args.decimal == "." else args.decimal}
    if resumed is None:
        return Preprocessor(columns=args.columns, drop=args.drop or (), impute=args.impute, one_hot=one_hot,
                            standardize=args.standardize, task=args.task, decimal=args.decimal,
                            max_categories=args.max_categories)
    stored = resumed.preprocessor
    encoding = stored.encoding or {}
    has = {"--impute": encoding.get("strategy"), "--one-hot": sorted(encoding.get("one_hot") or {}) or None,
           "--standardize": True if stored.stats is not None else None,
           "--decimal": None if stored.decimal == "." else stored.decimal}
    for option, value in asked.items():
        if value is None or option in ("--columns", "--drop"):
            continue
        if option == "--one-hot" and value is not True and has[option] is not None and sorted(value) == has[option]:
            continue
        if option == "--one-hot" and value is True and has[option] is not None:
            continue
        if value != has[option]:
            raise ValueError(f"{option} {_shown(value)} differs from the resumed model's "
                             f"({_shown(has[option]) if has[option] is not None else 'not used'}): the model keeps "
                             "the encoding it was trained with; leave it out")
    if args.columns is not None and stored.feature_names is not None and list(args.columns) != stored.feature_names:
        raise ValueError(f"--columns {args.columns} differs from the resumed model's columns {stored.feature_names}")
    read = [c for c in args.drop or () if stored.feature_names is not None and c in stored.feature_names]
    if read:
        raise ValueError(f"--drop {read[0]}: the resumed model reads {read[0]!r} as a feature (its columns: "
                         f"{stored.feature_names}); it keeps the columns it was trained with: leave it out")
    if args.target is not None and resumed.target is not None and args.target != resumed.target:
        raise ValueError(f"--target {args.target!r} differs from the resumed model's target {resumed.target!r}")
    if args.task is not None and args.task != ("classification" if resumed.is_classifier else "regression"):
        raise ValueError(f"--task {args.task} differs from the resumed model's task")
    return stored


# Rows that `nn-xp predict` sends through the model at a time.
PREDICT_BATCH_ROWS = 16384


# What each rank of a --distributed run may set for itself: where it writes, what it prints, its device.
_PER_RANK_OPTIONS = ("command", "save", "plot", "quiet", "debug", "device", "verbose_epoch", "distributed")


def _computation_options(args) -> dict:
    """The parsed options that change what is computed, to compare across ranks."""
    return {key: value for key, value in vars(args).items() if key not in _PER_RANK_OPTIONS}


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _diverged(args, history, comm) -> RuntimeError:
    """The error for a run whose loss became NaN or infinite: nothing of it is written."""
    epoch = history.epoch[-1] + 1 if history.epoch else 0
    written = [f"{option} {path} left as it was" for option, path in (("--save", args.save), ("--plot", args.plot))
               if path]
    rate = f" than {args.learning_rate:g}" if args.learning_rate else ""
    error = RuntimeError(
        f"the training loss became non-finite (NaN or infinite) in epoch {epoch}; training stopped and nothing "
        f"was written{' (' + ', '.join(written) + ')' if written else ''}: try a smaller --learning-rate{rate}, "
        "--clip-norm, or --standardize")
    error.silent = comm is not None and comm.rank != 0  # every rank stops alike; rank 0 says so
    return error


def _shown(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else ("" if value is True else str(value))


def _check_same_classes(name, labels, y, model) -> None:
    """A table whose classes differ from the resumed model's is refused, naming both."""
    found = Preprocessor(task="classification")
    try:
        found.fit_target(y, f"{name}: target")
    except ValueError:
        return  # one class: encode_target below says which labels are unknown, if any
    if [str(c) for c in found.classes] != [str(c) for c in model.classes]:
        raise ValueError(f"{name}: the classes {found.classes} differ from the resumed model's {model.classes}")


def _split(args, resumed, source, pipeline) -> dict:
    """How this run splits the rows: the resumed model's split on the same data (so its held-out
    rows stay held out), else this run's --seed, --test-size and --validation-split."""
    columns = None
    if hasattr(source.X, "columns"):
        columns = resumed.feature_names if resumed is not None and resumed.feature_names else pipeline.select(
            source.X, args.dataset)
    fingerprint = tabular.fingerprint(source, columns)
    saved = resumed.split if resumed is not None else None
    if saved is not None and saved.get("data") == fingerprint:
        for option, key in (("--test-size", "test_size"), ("--validation-split", "validation_split")):
            given = getattr(args, key)
            if given and given != saved[key]:
                raise ValueError(f"{option} {given} differs from the resumed model's split ({saved[key]}); "
                                 "the held-out rows must stay the same: leave it out")
        return saved
    if saved is not None:
        print(f"note: {args.dataset} is not the data the resumed model was split on; drawing a new split",
              file=sys.stderr)
    return {"seed": int(args.seed), "test_size": float(args.test_size),
            "validation_split": float(args.validation_split), "n_samples": int(source.n_samples), "data": fingerprint}


def _check_resumed(args, model, n_in: int) -> None:
    """Options that would change the resumed network are refused by name, never ignored."""
    if args.layers and list(args.layers) != list(model.layer_sizes):
        raise ValueError(f"--layers {args.layers} differs from the resumed model's {list(model.layer_sizes)}")
    if args.hidden and list(args.hidden) != list(model.layer_sizes[1:-1]):
        raise ValueError(f"--hidden {args.hidden} differs from the resumed model's {list(model.layer_sizes[1:-1])}")
    if n_in != model.layer_sizes[0]:
        raise ValueError(f"{args.dataset} has {n_in} features but the resumed model expects {model.layer_sizes[0]}")
    if args.dtype is not None and args.dtype != model.dtype:
        raise ValueError(f"--dtype {args.dtype} differs from the resumed model's {model.dtype}")
    if args.activation is not None:
        wanted = [_activation_spec(a, args.leaky_slope) for a in args.activation]
        have = [layer.activation.spec() for layer in model.layers if hasattr(layer, "activation")][:-1] or [
            a.spec() for a in getattr(model, "activation", [])]
        names = [a if isinstance(a, str) else a.get("name") for a in wanted]
        have_names = [a if isinstance(a, str) else a.get("name") for a in have]
        if (names * len(have_names) if len(names) == 1 else names) != have_names:
            raise ValueError(f"--activation {' '.join(args.activation)} differs from the resumed model's "
                             f"{' '.join(have_names)}")
    if args.output_activation is not None and args.output_activation != model.output_activation:
        raise ValueError(f"--output-activation {args.output_activation} differs from the resumed model's "
                         f"{model.output_activation}")
    from .heads import loss_name

    if args.loss is not None and model.loss is not None and args.loss != loss_name(model.loss):
        raise ValueError(f"--loss {args.loss} differs from the resumed model's {model.loss}")
    saved_dropout = getattr(model, "dropout", None)
    if args.dropout is not None and saved_dropout is not None:
        wanted = args.dropout * len(saved_dropout) if len(args.dropout) == 1 else args.dropout
        if [float(r) for r in wanted] != list(saved_dropout):
            raise ValueError(f"--dropout {args.dropout} differs from the resumed model's {saved_dropout}; "
                             "dropout is part of the saved network")


def _new_model(args, task: str, classes, n_in: int):
    import nn_xp as nx

    n_out = len(classes) if task == "classification" else 1
    if task == "classification" and len(classes) == 2 and args.output_activation == "sigmoid":
        n_out = 1
    if args.layers and args.hidden:
        raise ValueError("give --layers (all sizes) or --hidden (the hidden sizes only), not both")
    if args.hidden:
        layers = [n_in, *args.hidden, n_out]
    else:
        layers = args.layers or ([1, 10, 10, 1] if args.dataset == "sine" else [n_in, 64, n_out])
    if layers[0] != n_in:
        raise ValueError(f"--layers starts with {layers[0]} inputs but {args.dataset} has {n_in} features "
                         "(give --hidden with the hidden sizes only, and the widths come from the data)")
    if layers[-1] != n_out:
        raise ValueError(f"--layers ends with {layers[-1]} outputs but {args.dataset} needs {n_out}")
    output = args.output_activation or (
        "softmax" if task == "classification" else ("sigmoid" if args.dataset == "sine" else "linear"))
    _check_output_fits(task, len(classes) if classes is not None else None, args.dataset, output, args.loss)
    n_hidden = len(layers) - 2
    activation = [_activation_spec(a, args.leaky_slope) for a in (args.activation or ["relu"])]
    if len(activation) == 1:
        activation = activation[0]
    elif len(activation) != n_hidden:
        layers_text = f"{n_hidden} hidden layer{'s' if n_hidden != 1 else ''}"
        raise ValueError(
            f"--activation gives {len(activation)} names but the network has {layers_text}: give one "
            "name for every hidden layer" + (f", or one per hidden layer ({n_hidden})" if n_hidden > 1 else "")
        )
    dropout = 0.0 if args.dropout is None else (args.dropout[0] if len(args.dropout) == 1 else args.dropout)
    return nx.MLP(layers, activation=activation, output_activation=output, init=args.init,
                  dtype=args.dtype or "float32", device=args.device, seed=args.seed, dropout=dropout)


def _check_targets_option(dataset: str, targets) -> None:
    """A .npy of features needs --targets, and --targets needs one: said before either is read."""
    is_npy = dataset.lower().endswith(".npy")
    if is_npy and targets is None:
        raise ValueError(f"{dataset}: a .npy file holds the features only; give their targets with --targets Y.npy "
                         "(one row per sample), or train from an .npz with members X and y")
    if targets is not None and not is_npy:
        raise ValueError(f"--targets gives the targets of a .npy --dataset; {dataset!r} is not one (a CSV names "
                         "its target column with --target, an .npz holds a 'y' member)")


def _check_writable(option: str, path: str) -> None:
    """Refuse, before any training, a path that cannot be written (its folder is made if need be)."""
    folder = os.path.dirname(os.path.abspath(path)) or "."
    try:
        os.makedirs(folder, exist_ok=True)
        import tempfile

        with tempfile.NamedTemporaryFile(dir=folder, prefix=".nn-xp-check-"):
            pass
    except OSError as error:
        raise OSError(error.errno, f"{option} {path}: cannot write there ({error.strerror})") from None
    if os.path.isdir(path):
        raise ValueError(f"{option} {path}: is a folder; give a file name")


def _loss_spec(args, loss):
    """--loss with its settings (--huber-delta, --quantile, --label-smoothing) as a loss spec."""
    settings = {"huber": ("huber_delta", "delta"), "quantile": ("quantile", "quantile"),
                "cross_entropy": ("label_smoothing", "label_smoothing")}
    for owner, (option, key) in settings.items():
        value = getattr(args, option)
        if value is None:
            continue
        if owner == "cross_entropy" and loss is None:
            loss = "cross_entropy"
        if loss != owner:
            raise ValueError(f"--{option.replace('_', '-')} is a setting of --loss {owner}, not of --loss {loss}")
        loss = {"name": owner, key: value}
    return loss


def _check_output_fits(task, k, name, output: str, loss) -> None:
    """A loss or output activation that cannot fit the data's targets: say what to change."""
    if task != "classification":
        return
    if loss in ("mse", "absolute_error", "huber", "quantile"):
        raise ValueError(
            f"--loss {loss} needs numeric targets, but {name or 'the dataset'} has {k} classes: drop --loss "
            "(softmax with cross_entropy, the default for classes), or give numeric targets"
        )
    if output == "sigmoid" and k > 2:
        raise ValueError(
            f"--output-activation sigmoid gives one yes/no output, but the data has {k} classes: use softmax "
            "(the default for classes)"
        )
    if output not in ("softmax", "sigmoid"):
        raise ValueError(
            f"--output-activation {output} cannot give class probabilities for {k} classes: use softmax "
            "(the default for classes)" + (" or sigmoid" if k == 2 else "")
        )


def _activation_spec(name, slope):
    return {"name": "leaky_relu", "negative_slope": slope} if name == "leaky_relu" else name


def _read_table(path, delimiter=None):
    """A table file (.csv, .tsv, .parquet) as a pandas DataFrame, read as training reads it."""
    from .datasets import read_table
    from .preprocessing import as_frame

    return as_frame(read_table(path, delimiter=delimiter, progress=True), path)


def _model_input(path, frame, model, skip):
    """What the model predicts from: the table itself where the model knows its columns (found by
    name, others left out with a note); else the other columns in order, as numbers."""
    columns = list(frame.columns)
    names = model.feature_names
    if names is None:
        names = [c for c in columns if c not in skip]
        return frame[names].to_numpy()
    extra = [c for c in columns if c not in names and c not in skip]
    if extra:
        print(f"note: {path}: ignoring columns {extra} (not features of the model)", file=sys.stderr)
    return frame


def _predicting(function, path):
    """Run `function`, its warnings (unseen categories) said as one line each, naming the file."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function()
    for warning in caught:
        print(f"warning: {str(warning.message).replace('X: ', path + ': ', 1)}", file=sys.stderr)
    return result


def _array_input(path, target, model):
    """(X, labels or None) from a .npy or .npz file or a built-in dataset's name."""
    source = tabular.read(path, target=target)
    return source.X, source.y


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
    from .backends import to_numpy

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


def _stored_drop(pipeline):
    """A pipeline that drops rows as the stored one did (impute drop), for --held-out to find them."""
    if pipeline.impute != "drop":
        return None
    again = Preprocessor(impute="drop", columns=pipeline.feature_names)
    return again


def cmd_info(args) -> int:
    import numpy

    from . import __version__, backends

    count, why = backends.cuda_status()
    cupy_version = backends.cupy_version()
    print(f"nn_xp {__version__}")
    print(f"numpy {numpy.__version__}")
    print(f"cupy {cupy_version}")
    print(f"devices: {', '.join(backends.available_devices())}")
    print(f"default device: {backends.default_device()}")
    print(f"CUDA: {'usable, ' + str(count) + ' GPU(s)' if count else 'not usable: ' + why}")
    from .backends.numpy_ops import native_available, native_enabled
    from .training.distributed import mpi_status, nccl_status

    state = "built, in use" if native_enabled() else ("built, turned off (NN_XP_NATIVE=0)" if native_available()
                                                       else "not built (no C compiler at install)")
    print(f"compiled loops (nn_xp/backends/_native.c): {state}")
    print(f"BLAS: {_blas()}")

    for name, (usable, detail) in (("MPI", mpi_status()), ("NCCL", nccl_status())):
        print(f"{name}: {'usable, ' if usable else 'not usable: '}{detail}")
    return 0


def _blas() -> str:
    """NumPy's BLAS library, version and threads, as threadpoolctl sees them."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl is not installed; it comes with the sklearn extra)"
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if not pools:
        return "none found"
    p = pools[0]
    return f"{p.get('internal_api')} {p.get('version')} with {p.get('num_threads')} threads"


def cmd_parity(args) -> int:
    from . import backends
    from .parity import parity_report

    data = _load_data(args.dataset, args.target, args.n_samples, args.seed)
    if data.y is None:
        raise ValueError(f"{args.dataset}: no targets found")
    n_out = data.n_outputs
    layers = args.layers or [data.X.shape[1], 512, 256, n_out]
    backends.set_tf32(bool(args.tf32))
    classification = data.task == "classification"
    report = parity_report(
        layers, data.X, data.y, devices=tuple(args.devices), steps=args.steps, batch_size=args.batch_size,
        dtype=args.dtype, output_activation="softmax" if classification else "linear",
        loss=None if classification else "mse", optimizer=args.optimizer, seed=args.seed,
    )
    print(report.to_markdown(every=max(1, args.steps // 10)))
    if args.output:
        with atomic_write(args.output, "w", what="report") as handle:
            if args.output.lower().endswith(".json"):
                json.dump(report.to_dict(), handle, indent=1)
            else:
                handle.write(report.to_markdown(every=1))
        print(f"report written to {args.output}")
    return 0 if report.passed else 1


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

    from .inspection import facts

    model = nx.load(args.model, device="cpu")  # inspecting needs no GPU, and must not wait for one
    if args.json:
        print(json.dumps(facts(model), indent=1))
    else:
        print(model.summary())
    return 0


COMMANDS = {"train": cmd_train, "predict": cmd_predict, "evaluate": cmd_evaluate, "info": cmd_info,
            "parity": cmd_parity, "export": cmd_export, "inspect": cmd_inspect}


def main(argv=None) -> int:
    from .signals import TerminateAsInterrupt

    with TerminateAsInterrupt() as terminate:  # SIGTERM stops as Ctrl-C does; 143 = 128 + SIGTERM
        code = _main(argv)
    return 143 if code == 130 and terminate.received else code


def _main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # `nn-xp predict ... | head -1`: the reader is gone; say nothing
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that Python's own flush at exit is quiet too
        return 141
    except KeyboardInterrupt:
        print("nn-xp: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, ImportError, RuntimeError, KeyError, MemoryError) as error:
        if getattr(args, "debug", False):
            raise
        if getattr(error, "silent", False):  # the same error on every rank: rank 0 has said it
            return 2
        message = str(error) if not isinstance(error, KeyError) else f"missing {error}"
        if isinstance(error, MemoryError):
            message = f"out of memory: {message or 'the data or the network is too large for this machine'}"
        print(f"nn-xp: error: {message}", file=sys.stderr)
        return 2
