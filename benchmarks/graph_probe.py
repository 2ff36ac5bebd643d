"""Can CuPy capture nn_xp's training step in a CUDA graph? A probe of CuPy's stream capture.

A graph replays a captured sequence of kernels with one launch, so a step of dozens of small
kernels stops paying ~10 us of Python and driver time for each. The step's buffers are fixed by
the workspace, which capture needs. But CuPy (cupy#6290; 14.2.0 as of writing) refuses cuBLAS
calls while a stream captures: `cublas.setStream` raises NotImplementedError('calling cuBLAS API
during stream capture is currently unsupported'), and every matmul goes through it. This probe
captures, on a non-blocking stream, each of:
- elementwise: an in-place add (a CuPy elementwise kernel);
- matmul float32 and float16: `cupy.matmul(A, B, out=C)`;
- raw cuBLAS sgemm: `cupy_backends.cuda.libs.cublas.sgemm` on the device's handle, its stream set
  to the capturing stream before the capture began (whether the check sits in the wrapper);
then replays each captured graph and checks its result against the same work done eagerly. It
also times N in-place adds launched one by one against one replay of their captured graph: the
difference per kernel is what a captured step would save per launch.

    python -m benchmarks.graph_probe [--kernels 200] [--repeats 20] [--out DIR]

Prints one line per probe and writes DIR/graph.json. Without CuPy or a GPU it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def _error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def capture(cupy, stream, work) -> tuple:
    """Capture `work()` on `stream`: (graph or None, {"captured", "error", "end_error"})."""
    result = {"captured": False, "error": None, "end_error": None}
    graph = None
    with stream:
        stream.begin_capture()
        try:
            work()
        except Exception as error:
            result["error"] = _error(error)
        try:  # end the capture whatever happened, so the stream is usable again
            graph = stream.end_capture()
        except Exception as error:
            result["end_error"] = _error(error)
    result["captured"] = result["error"] is None and result["end_error"] is None
    return (graph if result["captured"] else None), result


def settle(cupy) -> None:
    """Wait for every stream: the capturing stream is non-blocking, so it does not wait for work
    done on the default stream (array fills, comparisons) by itself."""
    cupy.cuda.Device().synchronize()


def probe_elementwise(cupy, stream) -> dict:
    a = cupy.zeros(1024, dtype=cupy.float32)
    cupy.add(a, 1.0, out=a)  # compiled and loaded before the capture
    graph, result = capture(cupy, stream, lambda: cupy.add(a, 1.0, out=a))
    if graph is not None:
        a[...] = 0
        settle(cupy)
        for _ in range(3):
            graph.launch(stream)
        stream.synchronize()
        result["replay_correct"] = bool(cupy.all(a == 3.0))
    return result


def probe_matmul(cupy, stream, dtype: str) -> dict:
    rng = np.random.default_rng(0)
    A = cupy.asarray(rng.standard_normal((256, 128)).astype(dtype))
    B = cupy.asarray(rng.standard_normal((128, 64)).astype(dtype))
    C = cupy.empty((256, 64), dtype=dtype)
    expected = cupy.matmul(A, B)  # handle, algorithm and workspace made before the capture
    settle(cupy)
    graph, result = capture(cupy, stream, lambda: cupy.matmul(A, B, out=C))
    if graph is not None:
        C[...] = cupy.nan
        settle(cupy)
        graph.launch(stream)
        stream.synchronize()
        result["replay_correct"] = bool(cupy.allclose(C, expected, rtol=1e-2 if dtype == "float16" else 1e-5))
    return result


def probe_raw_sgemm(cupy, stream) -> dict:
    from cupy_backends.cuda.libs import cublas

    rng = np.random.default_rng(1)
    m, n, k = 64, 32, 48  # column-major C (m, n) = A (m, k) @ B (k, n), as cuBLAS sees it
    A = cupy.asarray(rng.standard_normal((k, m)).astype(np.float32))  # row-major (k, m) = column-major (m, k)
    B = cupy.asarray(rng.standard_normal((n, k)).astype(np.float32))
    C = cupy.zeros((n, m), dtype=np.float32)
    alpha, beta = np.array(1.0, np.float32), np.array(0.0, np.float32)
    handle = cupy.cuda.device.get_cublas_handle()
    scalars = (1.0, 0.0)  # CuPy versions differ: alpha and beta as floats, or as host pointers

    def gemm():
        cublas.sgemm(handle, cublas.CUBLAS_OP_N, cublas.CUBLAS_OP_N, m, n, k, scalars[0], A.data.ptr, m,
                     B.data.ptr, k, scalars[1], C.data.ptr, m)

    cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
    with stream:
        try:
            gemm()
        except TypeError:  # a float where a pointer (size_t) is expected
            scalars = (alpha.ctypes.data, beta.ctypes.data)
            gemm()
    stream.synchronize()
    expected = B @ A  # row-major (n, m): the same numbers
    settle(cupy)
    eager_correct = bool(cupy.allclose(C, expected, rtol=1e-5, atol=1e-5))
    cublas.setStream(handle, stream.ptr)
    graph, result = capture(cupy, stream, gemm)
    result["eager_correct"] = eager_correct
    if graph is not None:
        C[...] = cupy.nan
        settle(cupy)
        graph.launch(stream)
        stream.synchronize()
        result["replay_correct"] = bool(cupy.allclose(C, expected, rtol=1e-5, atol=1e-5))
    return result


def time_launches(cupy, stream, kernels: int, repeats: int) -> dict:
    """Per-kernel host time of `kernels` in-place adds, launched eagerly vs one graph replay."""
    a = cupy.zeros(1024, dtype=cupy.float32)

    def eager():
        for _ in range(kernels):
            cupy.add(a, 1.0, out=a)

    with stream:
        eager()
    stream.synchronize()
    graph, result = capture(cupy, stream, eager)
    if graph is None:
        return {"error": result["error"] or result["end_error"]}
    graph.upload(stream)

    def timed(run):
        times = []
        for _ in range(repeats):
            stream.synchronize()
            start = time.perf_counter()
            run()
            stream.synchronize()
            times.append((time.perf_counter() - start) / kernels * 1e6)
        return statistics.median(times)

    def eager_on_stream():
        with stream:
            eager()

    a[...] = 0
    settle(cupy)
    eager_us = timed(eager_on_stream)
    graph_us = timed(lambda: graph.launch(stream))
    total = float(a[0])
    return {"kernels": kernels, "repeats": repeats, "eager_us_per_kernel": eager_us,
            "graph_us_per_kernel": graph_us, "saved_us_per_kernel": eager_us - graph_us,
            "all_kernels_ran": total == 2 * repeats * kernels}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.graph_probe", description=__doc__.split("\n")[0])
    parser.add_argument("--kernels", type=int, default=200, help="kernels in the timed graph (default 200)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs of each, median (default 20)")
    parser.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for graph.json")
    args = parser.parse_args(argv)
    if args.kernels < 1 or args.repeats < 1:
        parser.error("--kernels and --repeats must be >= 1")
    try:
        import cupy
    except ImportError as error:
        print(f"graph_probe: CuPy is not installed ({error}); nothing to probe")
        return 0
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
    except Exception as error:
        print(f"graph_probe: CuPy sees no GPU ({_error(error)}); nothing to probe")
        return 0
    stream = cupy.cuda.Stream(non_blocking=True)
    out = {"cupy": cupy.__version__, "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
           "gpu": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(), "probes": {}}
    probes = {
        "elementwise": lambda: probe_elementwise(cupy, stream),
        "matmul_float32": lambda: probe_matmul(cupy, stream, "float32"),
        "matmul_float16": lambda: probe_matmul(cupy, stream, "float16"),
        "raw_cublas_sgemm": lambda: probe_raw_sgemm(cupy, stream),
    }
    print(f"CuPy {out['cupy']}, CUDA runtime {out['cuda_runtime']}, {out['gpu']}")
    for name, probe in probes.items():
        try:
            result = probe()
        except Exception as error:  # the probe itself broke, outside the capture
            result = {"captured": False, "error": f"outside the capture: {_error(error)}", "end_error": None}
        out["probes"][name] = result
        verdict = "captured" if result["captured"] else "NOT captured"
        replay = f", replay correct: {result['replay_correct']}" if "replay_correct" in result else ""
        why = "".join(f"; {key}: {result[key]}" for key in ("error", "end_error") if result.get(key))
        print(f"  {name:18s} {verdict}{replay}{why}")
    failed = False
    try:
        out["timing"] = time_launches(cupy, stream, args.kernels, args.repeats)
    except Exception as error:
        out["timing"] = {"error": _error(error)}
        failed = True
    timing = out["timing"]
    if "error" in timing:
        print(f"  timing failed: {timing['error']}")
    else:
        print(f"  {timing['kernels']} in-place adds of 1024 floats: eager {timing['eager_us_per_kernel']:.2f} us per "
              f"kernel, one graph replay {timing['graph_us_per_kernel']:.2f} us per kernel (saves "
              f"{timing['saved_us_per_kernel']:.2f} us per launch; all ran: {timing['all_kernels_ran']})")
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "graph.json").write_text(json.dumps(out, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
