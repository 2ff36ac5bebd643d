"""`nn-xp info` (versions, devices, what is compiled in) and `nn-xp parity` (devices against the first)."""

from __future__ import annotations

import json

from ..files import atomic_write
from ._common import _load_data


def cmd_info(args) -> int:
    import numpy

    from .. import __version__, backends

    count, why = backends.cuda_status()
    cupy_version = backends.cupy_version()
    print(f"nn_xp {__version__}")
    print(f"numpy {numpy.__version__}")
    print(f"cupy {cupy_version}")
    for library in ("torch", "jax"):
        found, why = backends.library_status(library)
        print(f"{library} {backends.library_version(library)}" + ("" if found else f" ({why})"))
    print(f"devices: {', '.join(backends.available_devices())}")
    print(f"default device: {backends.default_device()}")
    print(f"CUDA: {'usable, ' + str(count) + ' GPU(s)' if count else 'not usable: ' + why}")
    from ..backends.numpy_ops import native_available, native_enabled
    from ..training.distributed import mpi_status, nccl_status

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
    from .. import backends
    from ..parity import parity_report

    if len(args.devices) < 2:
        raise ValueError(f"--devices must name two or more devices (the reference first), got {args.devices}")
    for device in args.devices:  # an unknown or unusable device is refused before the data is read
        backends.resolve_device(device, "--devices")
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


