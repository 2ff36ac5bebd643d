"""GPU memory of one training process, read the same way for CuPy and PyTorch.

Two numbers per library, each with the same meaning on both sides:
- peak live bytes: the most bytes that arrays/tensors held at once. PyTorch counts it itself
  (`torch.cuda.max_memory_allocated`); CuPy keeps no peak, so `CupyPeak` hooks the default memory
  pool and reads `used_bytes()` after every allocation (frees only lower it, so that is where the
  peaks are).
- bytes held: what the library's allocator took from the driver, live or cached for reuse.
  CuPy's pool never gives memory back unless asked, so `total_bytes()` after training is its peak;
  PyTorch's is `torch.cuda.max_memory_reserved`.
Both are rounded to each allocator's blocks (512 bytes and up) and include the training data once
it is on the GPU. Neither counts the CUDA context, loaded kernels, or memory that libraries take
outside the allocator (cuBLAS's own workspace under CuPy; PyTorch routes its cuBLAS workspace
through its allocator, so there it is counted). `device_used` (total - free from
cudaMemGetInfo) counts all of that, for every process on the GPU.
"""

from __future__ import annotations

MB = 2**20


class CupyPeak:
    """`with CupyPeak() as peak: ...` then `peak.bytes`: the default pool's largest used_bytes()."""

    def __init__(self):
        import cupy

        self.pool = cupy.get_default_memory_pool()
        self.bytes = self.pool.used_bytes()
        pool = self.pool

        class _Hook(cupy.cuda.MemoryHook):
            name = "nn_xp_benchmark_peak"

            def malloc_postprocess(hook, **kwargs):
                self.bytes = max(self.bytes, pool.used_bytes())

        self._hook = _Hook()

    def __enter__(self):
        self._hook.__enter__()
        return self

    def __exit__(self, *exc):
        return self._hook.__exit__(*exc)


def _device_used_mb(runtime_mem_get_info) -> float:
    free, total = runtime_mem_get_info()
    return (total - free) / MB


def cupy_memory(peak: CupyPeak, used_after_setup: int) -> dict:
    """This process's CuPy figures after training (MB)."""
    import cupy

    return {
        "allocator": "cupy default memory pool",
        "gpu_after_setup_mb": used_after_setup / MB,
        "gpu_peak_mb": peak.bytes / MB,
        "gpu_held_mb": peak.pool.total_bytes() / MB,
        "gpu_device_used_mb": _device_used_mb(cupy.cuda.runtime.memGetInfo),
    }


def torch_memory(torch, allocated_after_setup: int) -> dict:
    """This process's PyTorch figures after training (MB)."""
    return {
        "allocator": "torch caching allocator",
        "gpu_after_setup_mb": allocated_after_setup / MB,
        "gpu_peak_mb": torch.cuda.max_memory_allocated() / MB,
        "gpu_held_mb": torch.cuda.max_memory_reserved() / MB,
        "gpu_device_used_mb": _device_used_mb(torch.cuda.mem_get_info),
    }


MEANING = (
    "GPU after setup: live bytes once the data and model are on the GPU, before training. "
    "GPU peak: the most bytes live at once during setup and training (torch.cuda.max_memory_allocated; for "
    "CuPy, the default pool's used_bytes() read after every allocation by a memory hook). GPU held: what the "
    "allocator took from the driver, live or cached (torch.cuda.max_memory_reserved; CuPy's pool total_bytes(), "
    "which never shrinks). Neither counts the CUDA context or cuBLAS's own workspace under CuPy (PyTorch's "
    "cuBLAS workspace is in its allocator, so it is counted); 'device used' (cudaMemGetInfo total - free) "
    "counts everything on the GPU."
)
