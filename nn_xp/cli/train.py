"""`nn-xp train`: the optimizer, schedule and model its options ask for, the run, and what it writes."""

from __future__ import annotations

import os
import sys
import time
import warnings

from ..data import tabular
from ..data.preprocessing import Preprocessor
from ._common import _check_table_options, _format_metrics, _stored_drop
from .parser import DEFAULT_EPOCHS


def _optimizer(args, params):
    from ..optim import get_optimizer

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
    from ..optim.schedules import get_schedule

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


def cmd_train(args) -> int:
    import nn_xp as nx

    from ..training import NonFiniteLossWarning
    from ..training.callbacks import CSVLogger, EarlyStopping

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
        from ..plot import training_figure

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
    from ..nn.heads import loss_name

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


