"""scikit-learn's array API estimator checks on nn_xp.sklearn's estimators, in a process of their own.

SciPy reads SCIPY_ARRAY_API when it is imported, and scikit-learn refuses array_api_dispatch
without it, so the checks run here, in a child process that sets it before importing anything (as
scikit-learn's own tests of array API conversions do); the test session's SciPy stays as it is.
Nothing at this module's top imports SciPy, so the test module can read `cases()` from it.
Run as a script, this prints one JSON list: {"case": id, "outcome": "passed" | "skipped" | "failed",
"detail": why}. `cases()` names the same checks without running them.
"""

import json
import os
import traceback
import warnings
from functools import partial
from unittest import SkipTest

# Small and quick: the checks fit each estimator several times per namespace.
SETTINGS = dict(hidden_layer_sizes=(5,), max_iter=5, learning_rate_init=0.01)


def estimators():
    from nn_xp.sklearn import MLPClassifier, MLPRegressor

    return {"MLPClassifier": MLPClassifier(**SETTINGS), "MLPRegressor": MLPRegressor(**SETTINGS)}


def cases() -> dict:
    """{case id: check(name, estimator)}: scikit-learn's array API checks, over its own lists of
    namespaces, devices and dtypes (yield_namespace_device_dtype_combinations) and of mixed inputs."""
    from sklearn.utils._array_api import (
        yield_mixed_namespace_input_permutations,
        yield_namespace_device_dtype_combinations,
    )
    from sklearn.utils.estimator_checks import (
        check_array_api_input,
        check_array_api_input_and_values,
        check_array_api_mixed_inputs,
        check_array_api_same_namespace,
    )

    checks = {}
    for namespace, device, dtype in yield_namespace_device_dtype_combinations():
        where = f"{namespace}-{device}-{dtype}"
        checks[f"check_array_api_input[{where}]"] = partial(
            check_array_api_input, array_namespace=namespace, device_name=device, dtype_name=dtype)
        checks[f"check_array_api_input_and_values[{where}]"] = partial(
            check_array_api_input_and_values, array_namespace=namespace, device_name=device,
            dtype_name=dtype or "float64")
    for other, X_where, label in yield_mixed_namespace_input_permutations():
        checks[f"check_array_api_mixed_inputs[{label}]"] = partial(
            check_array_api_mixed_inputs, X_ns_and_device=X_where, other_ns_and_device=other)
    checks["check_array_api_same_namespace[array_api_strict]"] = partial(
        check_array_api_same_namespace, array_namespace="array_api_strict")
    return checks


def run() -> list:
    results = []
    for name, estimator in estimators().items():
        for case, check in cases().items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ConvergenceWarning: 5 epochs on purpose
                try:
                    check(name, estimator)
                    outcome, detail = "passed", ""
                except SkipTest as skip:
                    outcome, detail = "skipped", str(skip)
                except Exception as error:
                    outcome, detail = "failed", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"
            results.append({"case": f"{name}-{case}", "outcome": outcome, "detail": detail})
    return results


if __name__ == "__main__":
    os.environ["SCIPY_ARRAY_API"] = "1"  # before SciPy is first imported (by scikit-learn, in run)
    print(json.dumps(run()))
