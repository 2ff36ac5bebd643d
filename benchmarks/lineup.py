"""Which systems a workload runs, built from the same weights and batch order, and their parity check.

System names are `<system>-<kind>`, kind "cpu" or "cuda" (the GPU, whatever the library calls it),
so a row's ratio is taken against PyTorch eager on the same kind of device:

| name | what |
| --- | --- |
| nn_xp-cpu, nn_xp-cuda | nn_xp on NumPy ("cpu") and CuPy ("cuda:0") |
| nn_xp_torch-cpu, nn_xp_torch-cuda | nn_xp on PyTorch tensors ("torch:cpu", "torch:cuda:0") |
| nn_xp_jax-cpu, nn_xp_jax-cuda | nn_xp on JAX arrays ("jax:cpu", "jax:gpu:0") |
| nn_xp_mixed-cuda | nn_xp on CuPy in mixed_float16 |
| torch-cpu, torch-cuda | PyTorch eager |
| torch_compile-cpu, torch_compile-cuda | PyTorch, the step under torch.compile |
| torch_amp-cuda | PyTorch eager under AMP float16 |
| jax_jit-cpu, jax_scan-cpu (and -cuda) | hand-written JAX: jit of the step; jit + scan of the epoch |
| sklearn-cpu | scikit-learn's MLP |
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np

from .jax_systems import JaxJitSystem, JaxScanSystem
from .systems import NnxpSystem, SklearnSystem, TorchAmpSystem, TorchCompileSystem, TorchSystem, relative_difference

SYSTEMS = ("nn_xp", "torch", "torch_compile", "jax", "sklearn")
LIBRARIES = ("numpy", "torch", "jax")  # the array libraries nn_xp runs on
# nn_xp's device for each array library on each kind of device
NNXP_DEVICES = {
    "numpy": {"cpu": "cpu", "cuda": "cuda:0"},
    "torch": {"cpu": "torch:cpu", "cuda": "torch:cuda:0"},
    "jax": {"cpu": "jax:cpu", "cuda": "jax:gpu:0"},
}
MIXED_PRECISION = "mixed_float16"  # nn_xp's mixed rows; PyTorch AMP with float16 and a GradScaler beside them
MIXED_ON_CPU = ("nn_xp's float16 on NumPy is an emulation for tests (no BLAS for float16): mixed precision "
                "is benchmarked on a GPU only, and PyTorch AMP with it")
PARITY_STEPS = 3


def log(message: str) -> None:
    print(message, flush=True)


def _error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def nnxp_name(library: str, kind: str) -> str:
    return f"nn_xp-{kind}" if library == "numpy" else f"nn_xp_{library}-{kind}"


def is_listed(device: str, available) -> bool:
    """Whether `available` (nx.available_devices()) lists `device`, with or without its index 0
    ("torch:cuda:0" is listed as "torch:cuda:0" or "torch:cuda"; "jax:cpu" also as "jax:cpu:0")."""
    names = {device, device + ":0"}
    if device.endswith(":0"):
        names.add(device[:-2])
    return any(name in available for name in names)


def _nnxp_systems(nx, wanted, libraries, kinds, workload, X, y, dtype, refused, systems, skipped):
    """nn_xp on each array library and kind of device. A library's device that nx.available_devices()
    does not list, or that the model refuses, is skipped with one logged line, and remembered in
    `refused` so later workloads skip it without a word."""
    if "nn_xp" not in wanted:
        return
    for library in libraries:
        for kind in kinds:
            name, device = nnxp_name(library, kind), NNXP_DEVICES[library][kind]
            if name in refused:
                skipped[name] = refused[name]
                continue
            if library != "numpy":
                available = nx.available_devices()
                if not is_listed(device, available):
                    refused[name] = f"nx.available_devices() lacks {device!r} (it lists {available})"
                    skipped[name] = refused[name]
                    log(f"    {name} skipped: {refused[name]}")
                    continue
            try:
                systems[name] = NnxpSystem(nx, workload, X, y, device, dtype=dtype)
            except Exception as error:
                skipped[name] = f"nn_xp refused device {device!r}: {_error(error)}"
                if library != "numpy":
                    refused[name] = skipped[name]
                log(f"    {name} skipped: {skipped[name]}")


def build_systems(nx, torch, wanted, workload, X, y, use_cuda, cpu=True, mixed=False, *, jax=None,
                  libraries=("numpy",), dtype="float32", refused=None) -> tuple[dict, dict]:
    """{name: system} in a fixed order, and {name: why it is missing}.

    nn_xp goes first (on each of `libraries`): the others copy the first nn_xp system's initial
    weights and a copy of its shuffle generator (without one, an nn_xp NumPy model is made for them,
    untimed). cpu=False leaves out the CPU systems. mixed=True adds, on the GPU, nn_xp in
    mixed_float16 ("nn_xp_mixed-cuda") and PyTorch AMP ("torch_amp-cuda"), from the same weights on
    the same batches. `refused` ({name: why}, kept across workloads) holds the nn_xp devices found
    unusable, so each is reported once.
    """
    systems, skipped = {}, {}
    refused = {} if refused is None else refused
    kinds = (["cpu"] if cpu else []) + (["cuda"] if use_cuda else [])
    _nnxp_systems(nx, wanted, libraries, kinds, workload, X, y, dtype, refused, systems, skipped)
    if "nn_xp" in wanted and mixed and use_cuda:
        try:
            systems["nn_xp_mixed-cuda"] = NnxpSystem(nx, workload, X, y, "cuda:0", precision=MIXED_PRECISION)
        except Exception as error:
            skipped["nn_xp_mixed-cuda"] = _error(error)
    if mixed and not use_cuda:
        skipped["nn_xp_mixed-cpu"] = MIXED_ON_CPU
        skipped["torch_amp-cpu"] = "left out with nn_xp's mixed precision on the CPU (above)"
    reference = next(iter(systems.values()), None)  # the first nn_xp system
    others = {"torch", "torch_compile", "jax"} & set(wanted)
    if reference is None and others and nx is not None:
        try:  # the weights and batch order the others share, from an untimed nn_xp model
            reference = NnxpSystem(nx, workload, X, y, "cpu", dtype=dtype)
        except Exception as error:
            log(f"    no nn_xp model to take the initial weights from ({_error(error)})")
    # Without an nn_xp model, torch runs from its own weights (the JAX systems do not run).
    initial = reference.initial_parameters if reference else None
    rng = reference.shuffle_rng if reference else np.random.default_rng(workload.seed)

    if {"torch", "torch_compile"} & set(wanted):
        torch_kinds = ["cpu"] if cpu else []
        if torch is None:
            skipped["torch-cpu"] = "PyTorch is not importable"
            torch_kinds = []
        elif use_cuda:
            if torch.cuda.is_available():
                torch_kinds.append("cuda")
            else:
                for system in ("torch", "torch_compile"):
                    if system in wanted:
                        skipped[f"{system}-cuda"] = "this torch build has no CUDA"
        for kind in torch_kinds:
            for system, cls in (("torch", TorchSystem), ("torch_compile", TorchCompileSystem)):
                if system not in wanted:
                    continue
                name = f"{system}-{kind}"
                try:
                    systems[name] = cls(torch, workload, X, y, kind, dtype=dtype, initial_parameters=initial,
                                        shuffle_rng=copy.deepcopy(rng))
                except Exception as error:
                    skipped[name] = _error(error)
        if mixed and "cuda" in torch_kinds and "torch" in wanted:
            try:
                systems["torch_amp-cuda"] = TorchAmpSystem(torch, workload, X, y, "cuda", half="float16",
                                                           initial_parameters=initial,
                                                           shuffle_rng=copy.deepcopy(rng))
            except Exception as error:
                skipped["torch_amp-cuda"] = _error(error)
    if "jax" in wanted:
        for kind in kinds:
            for form, cls in (("jax_jit", JaxJitSystem), ("jax_scan", JaxScanSystem)):
                name = f"{form}-{kind}"
                if jax is None:
                    skipped[name] = "JAX is not importable"
                    continue
                try:
                    systems[name] = cls(jax, workload, X, y, kind, dtype=dtype, initial_parameters=initial,
                                        shuffle_rng=copy.deepcopy(rng))
                except Exception as error:
                    skipped[name] = _error(error)
    if "sklearn" in wanted and cpu:
        try:
            systems["sklearn-cpu"] = SklearnSystem(workload, X, y)
        except Exception as error:
            skipped["sklearn-cpu"] = _error(error)
    return systems, skipped


def is_jax_based(name: str) -> bool:
    return name.startswith(("jax_", "nn_xp_jax"))


def parity_check(reference, candidate, start: list) -> dict:
    """Train `candidate` one epoch; compare its parameters with `reference`'s (PyTorch eager, already
    trained the same epoch from the same weights `start` on the same batches)."""
    same_start = all(np.array_equal(a, b) for a, b in zip(candidate.parameters(), start))
    candidate.train(1)
    candidate.sync()
    mine, theirs = candidate.parameters(), reference.parameters()
    differences = [relative_difference(a, b) for a, b in zip(mine, theirs)]
    largest_difference = max(float(np.max(np.abs(a - b))) for a, b in zip(mine, theirs))
    largest_update = max(float(np.max(np.abs(b - b0))) for b, b0 in zip(theirs, start))
    loss, loss_torch = candidate.last_loss(), reference.last_loss()
    return {
        "same_initial_weights": same_start,
        "shuffled_same_order": True,
        "max_relative_parameter_difference": max(differences),
        "per_parameter": differences,
        # against how far the parameters moved, so a tiny difference cannot mean "nothing trained"
        "max_difference_over_update": largest_difference / max(largest_update, 1e-300),
        "max_update": largest_update,
        "loss": loss,
        "loss_torch": loss_torch,
        "loss_relative_difference": abs(loss - loss_torch) / max(abs(loss_torch), 1e-300),
        "device": str(getattr(candidate, "device", "")),
    }


def parity_checks(nx, torch, wanted, workload, X, y, use_cuda, cpu=True, *, jax=None, libraries=("numpy",),
                  refused=None) -> dict:
    """Every system against PyTorch eager on its kind of device: the same weights, `PARITY_STEPS`
    Adam steps on the same shuffled batches, in float64; the systems on JAX in float32 unless JAX's
    x64 switch is on (it is process-wide, and would change what the timed JAX systems compute).
    {name: the comparison's figures, with its dtype, steps and devices} (or {"error": ...})."""
    n = min(PARITY_STEPS * workload.batch_size, X.shape[0])
    small = replace(workload, n_samples=n)
    x64 = bool(jax is not None and jax.config.jax_enable_x64)
    candidates = [s for s in wanted if s in ("nn_xp", "torch_compile", "jax")]
    in_float64 = [lib for lib in libraries if x64 or lib != "jax"]
    runs = [("float64", [s for s in candidates if x64 or s != "jax"], in_float64)]
    if not x64 and ("jax" in wanted or "jax" in libraries):
        on_jax = [s for s in candidates if s in ("nn_xp", "jax")]
        runs.append(("float32", on_jax, [lib for lib in libraries if lib == "jax"]))
    out = {}
    for dtype, chosen, libs in runs:
        systems, _ = build_systems(nx, torch, chosen + ["torch"], small, X[:n].astype(dtype), y[:n], use_cuda, cpu,
                                   jax=jax, libraries=libs, dtype=dtype, refused=refused)
        for kind in ("cpu", "cuda"):
            reference = systems.pop(f"torch-{kind}", None)
            if reference is None:
                continue
            start = reference.parameters()
            reference.train(1)
            reference.sync()
            for name, system in systems.items():
                if not name.endswith(f"-{kind}") or (dtype == "float32") != (is_jax_based(name) and not x64):
                    continue
                try:
                    out[name] = {**parity_check(reference, system, start), "dtype": dtype,
                                 "steps": -(-n // workload.batch_size), "n_samples": n, "reference": f"torch-{kind}",
                                 "torch_device": str(reference.device)}
                except Exception as error:
                    out[name] = {"error": _error(error), "dtype": dtype}
    return out
