"""scikit-learn's array API dispatch for the estimators: which device trains, and where results go.

With `sklearn.set_config(array_api_dispatch=True)` the estimators follow X, as scikit-learn's
array-API estimators do: the network trains on the nn_xp device of X's arrays (`training_device`),
and the fitted arrays (`coefs_`, `intercepts_`) and the predictions come back in X's namespace, on
X's device. `y`, `sample_weight` and the validation set may come from any namespace: like X, they
are read on the host, where the estimators check data and binarize labels; the network then holds
its copy of the data on its own device. `classes_` stays a NumPy array (labels may be strings,
which other namespaces cannot hold), as scikit-learn's checks allow. Prediction with arrays of
another namespace or device than fit's raises scikit-learn's ValueError (`check_same_namespace`).

array-api-strict's devices ("CPU_DEVICE", "device1", ...) are all host memory: nn_xp's
"array_api_strict" device computes on its CPU_DEVICE, and the results are handed back on X's own
array-api-strict device.

Without dispatch nothing here changes anything: NumPy in, NumPy out.
"""

from __future__ import annotations

import contextlib

import array_api_compat
import numpy as np
import sklearn

from ..backends import device_of, get_namespace, is_sparse, to_device


def dispatching() -> bool:
    """True while scikit-learn's array_api_dispatch is on."""
    return bool(sklearn.get_config()["array_api_dispatch"])


@contextlib.contextmanager
def host_work():
    """Dispatch off for the estimators' own work on host arrays (validation, label encoding,
    metrics): it then runs exactly as without dispatch."""
    with sklearn.config_context(array_api_dispatch=False):
        yield


def _sklearn_array_api():
    """scikit-learn's helpers for moving arrays between namespaces (scikit-learn >= 1.9)."""
    try:
        from sklearn.utils._array_api import check_same_namespace, get_namespace_and_device, move_to
    except ImportError:
        raise ImportError(
            f"array_api_dispatch=True with nn_xp.sklearn needs scikit-learn >= 1.9, found {sklearn.__version__}"
        ) from None
    return check_same_namespace, get_namespace_and_device, move_to


def _is_foreign_array(data) -> bool:
    """An array of a library other than NumPy (scipy.sparse, DataFrames and lists are not)."""
    return (data is not None and not isinstance(data, (np.ndarray, np.generic)) and not is_sparse(data)
            and array_api_compat.is_array_api_obj(data))


def training_device(X) -> str:
    """The nn_xp device that holds arrays like X: "cpu" for NumPy, "array_api_strict" for
    array-api-strict, "cuda:N" for CuPy, and the torch:/jax: devices where nn_xp has them.

    Raises:
        ValueError: X's library is one nn_xp cannot train on.
        RuntimeError: X is on a GPU that nn_xp cannot use (the message says why).
    """
    if not _is_foreign_array(X):
        return "cpu"
    device = device_of(X)
    library = get_namespace(X)
    if get_namespace(to_device(np.zeros(0, dtype=np.float32), device)) is not library:
        raise ValueError(
            f"X is an array of {library.__name__}, which no nn_xp device holds (nn_xp.available_devices() "
            "lists them); pass X as one of their arrays, or turn array_api_dispatch off to train on a "
            "NumPy copy"
        )
    return device


def to_host(data):
    """An array of another library as a NumPy array (anything else as it is)."""
    if not _is_foreign_array(data):
        return data
    _, _, move_to = _sklearn_array_api()
    return move_to(data, xp=np, device="cpu")


def input_space(X):
    """(namespace, device) of X as scikit-learn sees them under dispatch; None without dispatch."""
    return space_of(X) if dispatching() else None


def space_of(array):
    """(namespace, device) of an array, as scikit-learn's dispatch sees them (dispatch on or off)."""
    _, get_namespace_and_device, _ = _sklearn_array_api()
    with sklearn.config_context(array_api_dispatch=True):
        xp, _, device = get_namespace_and_device(array)
    return xp, device


def reference(space):
    """An empty array in `space` (or None, for NumPy without dispatch): what fit's namespace and
    device were, kept on the estimator and compared with predict's X."""
    if space is None:
        return None
    xp, device = space
    return xp.zeros(0, device=device)


def to_space(result, space):
    """A NumPy result moved to `space` (namespace, device); labels that are not numbers (strings,
    objects) stay NumPy, as scikit-learn keeps such classes_."""
    if space is None or not isinstance(result, np.ndarray) or result.dtype.kind not in "biuf":
        return result
    _, _, move_to = _sklearn_array_api()
    return move_to(np.ascontiguousarray(result), xp=space[0], device=space[1])


def check_same_space(estimator, X, method: str) -> None:
    """scikit-learn's check that X has fit's namespace and device (only under dispatch)."""
    if not dispatching():
        return
    check_same_namespace, _, _ = _sklearn_array_api()
    check_same_namespace(X, estimator, attribute="_fit_reference", method=method)
