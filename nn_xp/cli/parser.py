"""The nn-xp command line's options: `build_parser` and the helpers that spell its options."""

from __future__ import annotations

import argparse

import numpy as np

from ..data.columns import MAX_CATEGORIES
from ..data.labels import MAX_INFERRED_CLASSES

DEFAULT_EPOCHS = {"sine": 1000}
DEVICE_HELP = ("where the arrays live, and which library's they are: cpu or numpy (NumPy), cuda[:N] or "
               "cupy[:N] (CuPy), torch:cpu, torch:cuda[:N], torch:mps (PyTorch), jax:cpu, jax:gpu[:N] (JAX), "
               "or auto: $NN_XP_DEVICE, else cuda:0 when a GPU answers, else cpu (default auto)")


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
    from .. import __version__
    from ..data.datasets import DATASETS
    from ..nn.activations import ACTIVATIONS
    from ..nn.heads import LOSSES
    from ..nn.initializers import INIT_NAMES
    from ..optim import OPTIMIZERS
    from ..optim.schedules import SCHEDULES

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
    net.add_argument("--device", default="auto", help=DEVICE_HELP)
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
    predict.add_argument("--device", default="auto", help=DEVICE_HELP)
    _add_table_options(predict)
    predict.add_argument("--debug", action="store_true")

    evaluate = sub.add_parser("evaluate", help="loss and metrics of a saved model on labelled data")
    evaluate.add_argument("model", help="a model file written by --save")
    evaluate.add_argument("data", help="a dataset name or a .csv/.npz file with targets")
    evaluate.add_argument("--target", help="CSV column holding the targets")
    evaluate.add_argument("--device", default="auto", help=DEVICE_HELP)
    _add_table_options(evaluate)
    evaluate.add_argument("--json", action="store_true", help="print the result as JSON")
    evaluate.add_argument("--held-out", action="store_true",
                          help="score only the test rows held out when the model was trained (--test-size)")
    evaluate.add_argument("--report", action="store_true",
                          help="per-class precision, recall and F1 (scikit-learn's classification_report)")
    evaluate.add_argument("--debug", action="store_true")

    parity = sub.add_parser(
        "parity", help="train one model on several devices and compare them step by step",
        description="Train the same model from the same seed on several devices and report, per step, the "
        "largest relative difference of loss, gradients and parameters of each device against the first "
        "(default: workload (a) of the benchmarks, 784-512-256-10 on synthetic data, 100 Adam steps, cpu "
        "against cuda).")
    parity.add_argument("--devices", nargs="+", default=["cpu", "cuda"], metavar="DEVICE",
                        help="the reference device, then one or more to compare with it, e.g. "
                        "cpu torch:cpu jax:cpu array_api_strict (default: cpu cuda)")
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

    from ..io.onnx_export import DEFAULT_OPSET  # no onnx import: the module imports it when exporting

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


