"""NCCL's collectives between the ranks' GPUs (CuPy's `cupy.cuda.nccl`): the device side of
distributed training. MPI, which starts the ranks and hands NCCL its unique id, is in
nn_xp/distributed.py.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .devices import device_context
from .libraries import cuda_status


def nccl_status() -> tuple[bool, str]:
    """(whether CuPy's NCCL bindings are there, their version or why not). Never raises."""
    count, why = cuda_status()
    if count == 0:
        return False, f"no usable GPU ({why})"
    try:
        from cupy.cuda import nccl

        return bool(nccl.available), f"NCCL {nccl.get_version()}"
    except Exception as error:  # any failure means: not usable
        return False, f"CuPy has no NCCL ({type(error).__name__}: {error})"


class NcclGroup:
    """One rank of an NCCL communicator of `size` ranks, on the GPU `device` ("cuda:N").

    share_id: gives every rank rank 0's unique id (rank 0 passes its own, the others None), e.g.
        MPI's broadcast.
    """

    def __init__(self, size: int, rank: int, device: str, share_id: Callable):
        import cupy
        from cupy.cuda import nccl

        self.cupy, self.nccl = cupy, nccl
        with device_context(device):
            uid = share_id(nccl.get_unique_id() if rank == 0 else None)
            self.comm = nccl.NcclCommunicator(size, uid, rank)

    def _type(self, array):
        nccl = self.nccl
        kinds = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}
        return kinds[np.dtype(array.dtype)]

    def allreduce(self, array):
        """Sum the CuPy `array` (contiguous) over the ranks, in place, on the current stream."""
        stream = self.cupy.cuda.get_current_stream().ptr
        self.comm.allReduce(array.data.ptr, array.data.ptr, array.size, self._type(array), self.nccl.NCCL_SUM, stream)
        return array

    def broadcast(self, array, root: int = 0):
        """Overwrite the CuPy `array` (contiguous) on every rank with root's, on the current stream."""
        stream = self.cupy.cuda.get_current_stream().ptr
        self.comm.bcast(array.data.ptr, array.size, self._type(array), root, stream)
        return array
