"""The notebooks' figures: loss curves, actual against predicted, a confusion matrix, and the
"results at different epochs" grid. Needs matplotlib (pip install 'nn_xp[plot]').

Every function draws into the axes or figure it is given (or a new one) and returns it; nothing is
shown on screen, so the module works the same on a headless server.
"""

from __future__ import annotations

import os

import numpy as np

from . import backends


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'nn_xp[plot]'") from None
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "cairo") and not _has_display():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _has_display() -> bool:
    import os

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _axes(ax):
    if ax is not None:
        return ax
    return _pyplot().subplots(figsize=(5, 3))[1]


def plot_history(history, ax=None):
    """Training (and validation) loss per epoch."""
    ax = _axes(ax)
    records = history.history
    ax.plot(history.epoch, records["loss"], color="b", label="training loss")
    if "val_loss" in records:
        ax.plot(history.epoch, records["val_loss"], color="r", linestyle="--", label="validation loss")
    ax.set_title("Epoch loss over time")
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Loss")
    if min(records["loss"]) > 0 and max(records["loss"]) / min(records["loss"]) > 100:
        ax.set_yscale("log")
    ax.grid(True)
    ax.legend()
    return ax


def plot_actual_vs_predicted(model, X, y, ax=None, title="Actual vs predicted"):
    """Regression: with one input feature, both curves over the sorted input (the notebooks'
    figure); otherwise predicted against actual with the identity line."""
    ax = _axes(ax)
    predicted = backends.to_numpy(model.predict(X)).reshape(len(X), -1)[:, 0]
    X = np.asarray(backends.to_numpy(model._inputs(X)), dtype=float)  # a table's encoded columns
    actual = np.asarray(backends.to_numpy(model._targets(y)), dtype=float).reshape(len(X), -1)[:, 0]
    if X.shape[1] == 1:
        order = np.argsort(X[:, 0])
        ax.plot(X[order, 0], actual[order], label="Actual")
        ax.plot(X[order, 0], predicted[order], linestyle="dashed", color="r", label="Predicted")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    else:
        ax.scatter(actual, predicted, s=8, alpha=0.6)
        low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
        ax.plot([low, high], [low, high], color="k", linewidth=1, label="perfect")
        ax.set_xlabel("Actual")
        ax.set_ylabel("Predicted")
    ax.set_title(title)
    ax.grid(True)
    ax.legend()
    return ax


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def plot_confusion_matrix(model, X, y, ax=None, class_names=None):
    """Classification: the confusion matrix of the model's predictions on (X, y)."""
    ax = _axes(ax)
    y_true = model._targets(y)  # the labels as class indices, as the model reads them
    y_true = np.asarray(backends.to_numpy(y_true))
    if y_true.ndim == 2 and y_true.shape[1] > 1:
        y_true = y_true.argmax(axis=1)
    y_true = y_true.reshape(-1).astype(np.int64)
    y_pred = np.asarray(backends.to_numpy(model.predict(X))).reshape(-1)
    if model.classes is not None:
        y_pred = model.preprocessor.encode_target(y_pred, "predictions")
    n = max(model.layer_sizes[-1], 2)
    matrix = confusion_matrix(y_true, y_pred, n)
    image = ax.imshow(matrix, cmap="Blues")
    ax.figure.colorbar(image, ax=ax, fraction=0.046)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black", fontsize=8)
    labels = class_names if class_names is not None else [str(k) for k in range(n)]
    ax.set_xticks(range(n), labels)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(f"Confusion matrix (accuracy {np.mean(y_true == y_pred):.1%})")
    return ax


def plot_results_at_epochs(model, X, y, epochs_list=(10, 50, 100, 500, 1000), **fit_kwargs):
    """The notebooks' grid: train on, and draw actual against predicted after each total of epochs.

    `model` is trained in place, up to max(epochs_list) epochs in all; fit_kwargs go to `fit`.
    Returns the figure.
    """
    plt = _pyplot()
    epochs_list = sorted(int(e) for e in epochs_list)
    columns = 3
    rows = -(-len(epochs_list) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(15, 4 * rows), squeeze=False)
    fit_kwargs.setdefault("verbose", 0)
    done = 0
    for index, total in enumerate(epochs_list):
        if total > done:
            model.fit(X, y, epochs=total - done, **fit_kwargs)
            done = total
        plot_actual_vs_predicted(model, X, y, ax=axes.flat[index], title=f"Actual vs predicted for {total} epochs")
    for ax in list(axes.flat)[len(epochs_list):]:
        ax.set_visible(False)
    figure.tight_layout()
    return figure


def training_figure(model, X, y, path=None, class_names=None, on_training_data=False):
    """The figure `nn-xp train --plot` writes: loss curves beside actual-vs-predicted (regression)
    or the confusion matrix (classification), labelled with the model's class names where it has
    them, and saying so in the title when drawn on the training data. Saved to `path` when given;
    returns the figure."""
    if class_names is None and getattr(model, "classes", None) is not None:
        class_names = [str(c) for c in model.classes]
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    if model.history is not None and len(model.history):
        plot_history(model.history, ax=left)
    if model.is_classifier:
        plot_confusion_matrix(model, X, y, ax=right, class_names=class_names)
    else:
        plot_actual_vs_predicted(model, X, y, ax=right)
    if on_training_data:
        right.set_title(right.get_title() + " - on the training data")
    figure.tight_layout()
    if path is not None:
        from .files import atomic_write

        try:
            # Through an open file, so the format comes from the target's suffix, not the temporary name's.
            file_format = os.path.splitext(os.fspath(path))[1][1:].lower() or None
            with atomic_write(path, what="plot") as handle:
                figure.savefig(handle, dpi=110, format=file_format)
        finally:
            plt.close(figure)
    return figure
