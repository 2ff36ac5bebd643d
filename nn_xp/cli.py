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

import numpy as np

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
    from .schedules import SCHEDULES

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
                      help=f"a built-in name ({', '.join(DATASETS)}) or a .csv/.npz file (default: sine)")
    data.add_argument("--target", help="CSV column holding the targets")
    _add(data, "--n-samples", type=_positive_int, help="samples to generate for the built-in generators")
    data.add_argument("--standardize", action="store_true",
                      help="standardise inputs; the statistics are saved in the model and reused by predict")
    _add(data, "--test-size", type=float, default=0.0, help="fraction held out for a final test score (default 0)")
    _add(data, "--validation-split", type=float, default=0.0, help="fraction held out for validation (default 0)")
    _add_table_options(data, train=True)

    net = train.add_argument_group("network")
    net.add_argument("--layers", type=_positive_int, nargs="+", metavar="N",
                     help="layer sizes, inputs first (default: inputs, 64, outputs; sine: 1 10 10 1)")
    net.add_argument("--activation", nargs="+", default=["relu"], metavar="NAME",
                     help=f"hidden activation, or one per hidden layer ({', '.join(ACTIVATIONS)})")
    _add(net, "--leaky-slope", type=float, default=0.01, help="negative slope of leaky_relu (default 0.01)")
    _add(net, "--output-activation", help="default: softmax for classes, sigmoid for sine, else linear")
    net.add_argument("--init", default="he", help=f"weight initializer ({', '.join(INIT_NAMES)}; default he)")
    net.add_argument("--loss", choices=LOSSES, help="default: inferred from the output activation")
    net.add_argument("--dtype", default="float32", choices=["float32", "float64"])
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
    opt.add_argument("--epochs", type=_positive_int, help="default 100 (sine: 1000)")
    _add(opt, "--batch-size", type=_positive_int, default=32, help="samples per step (default 32)")
    _add(opt, "--full-batch", action="store_true", help="batch gradient descent: one step per epoch")
    opt.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule")
    opt.add_argument("--gamma", type=float, help="step/exponential decay factor")
    _add(opt, "--step-size", type=_positive_int, help="epochs between step decays")
    _add(opt, "--warmup-epochs", type=int, help="cosine warm-up epochs (default 0)")
    _add(opt, "--early-stopping", type=_positive_int, metavar="PATIENCE",
            help="stop after PATIENCE epochs without improvement (val_loss if validating, else loss)")
    _add(opt, "--clip-norm", type=_positive_float, help="clip gradients to this global L2 norm")
    opt.add_argument("--l2", type=float, metavar="LAMBDA",
                     help="L2 penalty on the weights: lambda / (2 m) * sum ||W||^2 per batch of m samples "
                     "(default 0, or the resumed model's)")

    out = train.add_argument_group("output")
    out.add_argument("--save", metavar="FILE.npz", help="write the trained model here")
    out.add_argument("--resume", metavar="FILE.npz", help="continue training a saved model")
    out.add_argument("--plot", metavar="FILE.png", help="write loss curves and results here")
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
    parity.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
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
    return parser


def _add_table_options(group, train=False):
    group.add_argument("--delimiter", help="a CSV's delimiter (default: a tab for .tsv, else sniffed)")
    if train:  # predict and evaluate repeat what the model stored
        group.add_argument("--impute", choices=["mean", "median", "drop"],
                           help="fill a table's missing values with the column's mean or median (stored in the "
                           "model, reused by predict), or drop those rows")
        _add(group, "--one-hot", action="store_true",
             help="encode text columns as one 0/1 column per category (stored in the model)")


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


def _standardizer(model):
    """The stored standardisation statistics, or None (preprocessing may hold only an encoding)."""
    stats = model.preprocessing
    return stats if stats and "mean" in stats else None


def _apply_preprocessing(model, X):
    from .datasets import standardize

    return standardize(X, _standardizer(model)) if _standardizer(model) else X


# ---- commands --------------------------------------------------------------------------------
def _optimizer(args, params):
    from .optim import get_optimizer

    numbers = ("momentum", "beta1", "beta2", "eps", "rho", "weight_decay")
    flags = ("nesterov", "amsgrad")
    chosen = {k: getattr(args, k) for k in numbers if getattr(args, k) is not None}
    chosen.update({k: True for k in flags if getattr(args, k)})
    if not chosen:
        return args.optimizer
    optimizer = get_optimizer(args.optimizer, params, args.learning_rate)
    defaults = optimizer.state_dict()["hyperparameters"]
    for key in chosen:
        if key not in defaults:
            raise ValueError(f"--{key.replace('_', '-')} does not apply to the {args.optimizer} optimizer")
    optimizer = type(optimizer)(params, **{**defaults, **chosen})
    optimizer.label = args.optimizer
    return optimizer


def _schedule(args):
    from .schedules import get_schedule

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

    from .callbacks import EarlyStopping
    from .datasets import fit_standardizer, standardize, train_test_split

    for name, value in (("--test-size", args.test_size), ("--validation-split", args.validation_split)):
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    args.epochs = args.epochs or DEFAULT_EPOCHS.get(args.dataset, 100)
    schedule = _schedule(args)  # checked before any data is loaded
    for option, path in (("--save", args.save), ("--plot", args.plot)):
        if path:
            _check_writable(option, path)
    comm = None
    if args.distributed:
        usable, why = nx.distributed.mpi_status()
        if not usable:  # said even outside mpiexec, where training alone would quietly go on
            raise RuntimeError(f"--distributed needs MPI: {why}")
        comm = nx.distributed.init()
        if args.device == "auto":
            args.device = comm.device()  # each rank its own GPU where there are GPUs
        if comm.rank != 0:  # one rank speaks and writes
            sys.stdout = open(os.devnull, "w")  # for the rest of this process
            args.save = args.plot = None
    data = _load_data(args.dataset, args.target, args.n_samples, args.seed, delimiter=args.delimiter,
                      impute=args.impute, one_hot=args.one_hot)
    if data.y is None:
        raise ValueError(
            f"{args.dataset}: no targets found (give --target COLUMN for a CSV, or a 'y' member in an .npz)"
        )
    X, y = data.X, data.y
    X_test = y_test = None
    if args.test_size:
        X, X_test, y, y_test = train_test_split(X, y, test_size=args.test_size, seed=args.seed,
                                                stratify=data.task == "classification")
    if args.resume:
        model = nx.load(args.resume, device=args.device)
        if args.layers and list(args.layers) != list(model.layer_sizes):
            raise ValueError(f"--layers {args.layers} differs from the resumed model's {list(model.layer_sizes)}")
        if X.shape[1] != model.layer_sizes[0]:
            raise ValueError(
                f"{args.dataset} has {X.shape[1]} features but the resumed model expects {model.layer_sizes[0]}"
            )
        saved_dropout = getattr(model, "dropout", None)
        if args.dropout is not None and saved_dropout is not None:
            wanted = args.dropout * len(saved_dropout) if len(args.dropout) == 1 else args.dropout
            if [float(r) for r in wanted] != list(saved_dropout):
                raise ValueError(f"--dropout {args.dropout} differs from the resumed model's {saved_dropout}; "
                                 "dropout is part of the saved network")
    else:
        n_out = data.n_classes if data.task == "classification" else (1 if y.ndim == 1 else y.shape[1])
        if data.task == "classification" and data.n_classes == 2 and args.output_activation == "sigmoid":
            n_out = 1
        layers = args.layers or ([1, 10, 10, 1] if args.dataset == "sine" else [X.shape[1], 64, n_out])
        if layers[0] != X.shape[1]:
            raise ValueError(f"--layers starts with {layers[0]} inputs but {args.dataset} has {X.shape[1]} features")
        if layers[-1] != n_out:
            raise ValueError(f"--layers ends with {layers[-1]} outputs but {args.dataset} needs {n_out}")
        output = args.output_activation or (
            "softmax" if data.task == "classification" else ("sigmoid" if args.dataset == "sine" else "linear")
        )
        _check_output_fits(data, output, args.loss)
        n_hidden = len(layers) - 2
        activation = [_activation_spec(a, args.leaky_slope) for a in args.activation]
        if len(activation) == 1:
            activation = activation[0]
        elif len(activation) != n_hidden:
            layers_text = f"{n_hidden} hidden layer{'s' if n_hidden != 1 else ''}"
            raise ValueError(
                f"--activation gives {len(activation)} names but the network has {layers_text}: give one "
                "name for every hidden layer" + (f", or one per hidden layer ({n_hidden})" if n_hidden > 1 else "")
            )
        dropout = 0.0 if args.dropout is None else (args.dropout[0] if len(args.dropout) == 1 else args.dropout)
        model = nx.MLP(layers, activation=activation, output_activation=output, init=args.init, dtype=args.dtype,
                       device=args.device, seed=args.seed, dropout=dropout)
        if args.standardize:
            model.preprocessing = fit_standardizer(X)
    if data.encoding is not None:  # imputation and one-hot categories, for predict to repeat
        model.preprocessing = {**(model.preprocessing or {}), "encoding": data.encoding}
    if _standardizer(model):
        X = standardize(X, model.preprocessing)
        X_test = standardize(X_test, model.preprocessing) if X_test is not None else None
    epochs = args.epochs
    callbacks = []
    if args.early_stopping:
        monitor = "val_loss" if args.validation_split else "loss"
        callbacks.append(EarlyStopping(monitor=monitor, patience=args.early_stopping, restore_best_weights=True))
    optimizer = (model.optimizer.label if args.resume and model.optimizer is not None and args.optimizer == "adam"
                 else _optimizer(args, model.parameters()))
    # A sigmoid output on regression targets (the sine) means MSE, not binary cross-entropy.
    loss = args.loss or ("mse" if data.task == "regression" else None)
    args.loss = loss
    started = time.perf_counter()
    history = model.fit(
        X, y, loss=loss, optimizer=optimizer, learning_rate=args.learning_rate, epochs=epochs,
        batch_size=None if args.full_batch else args.batch_size, validation_split=args.validation_split,
        callbacks=callbacks, verbose=0 if args.quiet else 1,
        verbose_epoch=args.verbose_epoch or max(1, epochs // 10), schedule=schedule, clip_norm=args.clip_norm,
        l2=args.l2 if args.l2 is not None else model.l2, distributed=comm,
    )
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
    if args.plot:
        from .plot import training_figure

        os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
        shown_X, shown_y = (X_test, y_test) if X_test is not None else (X, y)
        training_figure(model, shown_X, shown_y, path=args.plot)
        print(f"plot written to {args.plot}")
    if history.stop_reason == "interrupted":  # Ctrl-C: what was trained is written, and the exit says so
        print("nn-xp: interrupted", file=sys.stderr)
        return 130
    return 0


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


def _check_output_fits(data, output: str, loss) -> None:
    """A loss or output activation that cannot fit the data's targets: say what to change."""
    if data.task != "classification":
        return
    k = data.n_classes
    if loss == "mse":
        raise ValueError(
            f"--loss mse needs numeric targets, but {data.name or 'the dataset'} has {k} classes: drop --loss "
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


def _input_X(path, target, model, delimiter=None):
    from .datasets import encode, load_file

    encoding = (model.preprocessing or {}).get("encoding")
    if encoding is not None:  # the training file's columns by name, imputed and one-hot encoded alike
        data = encode(path, encoding, target=target, delimiter=delimiter, progress=True)
    else:
        data = load_file(path, target=target, delimiter=delimiter, progress=True)
    X = data.X
    if X.ndim != 2 or X.shape[1] != model.layer_sizes[0]:
        features = X.shape[-1] if X.ndim else 0
        raise ValueError(f"{path}: {features} features per sample, but the model expects {model.layer_sizes[0]}")
    return data, _apply_preprocessing(model, X)


def cmd_predict(args) -> int:
    import nn_xp as nx

    model = nx.load(args.model, device=args.device)
    _, X = _input_X(args.input, args.target, model, args.delimiter)
    result = model.predict_proba(X) if args.proba else model.predict(X)
    result = nx.to_numpy(result)
    if result.ndim == 1:
        result = result[:, None]
    fmt = "%d" if result.dtype.kind in "iu" else "%.8g"
    if args.output:
        if args.output.lower().endswith(".npy"):
            np.save(args.output, result)
        else:
            np.savetxt(args.output, result, delimiter=",", fmt=fmt)
        print(f"{len(result)} predictions written to {args.output}", file=sys.stderr)
    else:
        for row in result:
            print(",".join(fmt % v for v in row))
    return 0


def cmd_evaluate(args) -> int:
    import nn_xp as nx

    model = nx.load(args.model, device=args.device)
    if _is_file(args.data):
        data, X = _input_X(args.data, args.target, model, args.delimiter)
    else:
        data = _load_data(args.data)
        X = _apply_preprocessing(model, data.X)
    if data.y is None:
        raise ValueError(f"{args.data}: no targets to evaluate against (give --target COLUMN, or a 'y' member)")
    result = model.evaluate(X, data.y, loss="mse" if data.task == "regression" else None)
    print(json.dumps(result) if args.json else _format_metrics(result))
    if args.report:
        if not model.is_classifier:
            raise ValueError("--report gives per-class figures: it needs a classifier")
        try:
            from sklearn.metrics import classification_report
        except ImportError:
            raise ImportError("--report needs scikit-learn: pip install 'nn_xp[sklearn]'") from None
        predicted = nx.to_numpy(model.predict(X))
        names = [str(c) for c in data.class_names] if data.class_names is not None else None
        labels = list(range(len(names))) if names is not None else None
        print(classification_report(data.y, predicted, labels=labels, target_names=names, zero_division=0))
    return 0


def cmd_info(args) -> int:
    import numpy

    from . import __version__, backend

    count, why = backend.cuda_status()
    try:
        import cupy

        cupy_version = cupy.__version__
    except Exception:
        cupy_version = "not installed"
    print(f"nn_xp {__version__}")
    print(f"numpy {numpy.__version__}")
    print(f"cupy {cupy_version}")
    print(f"devices: {', '.join(backend.available_devices())}")
    print(f"default device: {backend.default_device()}")
    print(f"CUDA: {'usable, ' + str(count) + ' GPU(s)' if count else 'not usable: ' + why}")
    from .distributed import mpi_status, nccl_status
    from .numpy_ops import native_available, native_enabled

    state = "built, in use" if native_enabled() else ("built, turned off (NN_XP_NATIVE=0)" if native_available()
                                                       else "not built (no C compiler at install)")
    print(f"compiled loops (nn_xp/_native.c): {state}")
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
    from . import backend
    from .parity import parity_report

    data = _load_data(args.dataset, args.target, args.n_samples, args.seed)
    if data.y is None:
        raise ValueError(f"{args.dataset}: no targets found")
    n_out = data.n_outputs
    layers = args.layers or [data.X.shape[1], 512, 256, n_out]
    backend.set_tf32(bool(args.tf32))
    classification = data.task == "classification"
    report = parity_report(
        layers, data.X, data.y, devices=tuple(args.devices), steps=args.steps, batch_size=args.batch_size,
        dtype=args.dtype, output_activation="softmax" if classification else "linear",
        loss=None if classification else "mse", optimizer=args.optimizer, seed=args.seed,
    )
    print(report.to_markdown(every=max(1, args.steps // 10)))
    if args.output:
        with open(args.output, "w") as handle:
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
    print(f"ONNX graph (opset {proto.opset_import[0].version}; input X, {model.layer_sizes[0]} features, "
          f"{model.dtype}; outputs {outputs}) written to {args.output}")
    return 0


COMMANDS = {"train": cmd_train, "predict": cmd_predict, "evaluate": cmd_evaluate, "info": cmd_info,
            "parity": cmd_parity, "export": cmd_export}


def main(argv=None) -> int:
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
        message = str(error) if not isinstance(error, KeyError) else f"missing {error}"
        if isinstance(error, MemoryError):
            message = f"out of memory: {message or 'the data or the network is too large for this machine'}"
        print(f"nn-xp: error: {message}", file=sys.stderr)
        return 2
