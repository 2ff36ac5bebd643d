"""Training data that stays in host memory: each batch is gathered on the host and copied to the
device while the step before it runs (`fit(..., streaming=...)`).

A model on a GPU normally trains on a copy of X in GPU memory, made once. When X is larger than
the GPU's memory (or on request), X stays where it is (a NumPy array, or a np.memmap of a file
larger than the host's memory) and:
- each batch's rows are gathered on the host into one of two page-locked (pinned) buffers;
- the buffer is copied into one of two device buffers on a second CUDA stream, so the copy of
  batch i + 1 overlaps the computation of batch i;
- the training step waits for its batch's copy on the device (an event, not a host wait), and the
  copy into a device buffer waits until the step that read it before is done.
The targets and sample weights, small beside X, are on the device as usual. A batch holds the same
values either way, so the results are those of the resident path, bitwise.

On the CPU backends the host is the device: `streaming=True` there runs the same bookkeeping with
plain copies (what the tests use to check it against the resident path).
"""

from __future__ import annotations

import numpy as np

from .. import backends
from ..backends.host_batches import HostBatches

__all__ = ["HostBatches", "check_streaming", "needs_streaming", "use_streaming"]


def check_streaming(streaming) -> None:
    if not (streaming is True or streaming is False or (isinstance(streaming, str) and streaming == "auto")):
        raise ValueError(f"streaming must be 'auto', True or False, got {streaming!r}")


def needs_streaming(data_bytes: int, free_bytes: int | None) -> bool:
    """True when the training data would take more than half of the device's free memory (the
    other half is left for the model, its workspace, the targets and the validation data)."""
    return free_bytes is not None and data_bytes > free_bytes // 2


def use_streaming(streaming, X, device: str, dtype: str, *, full_batch: bool = False) -> bool:
    """Whether fit keeps X in host memory: the answer to `streaming` ("auto", True, False) for this
    X and device. Raises ValueError where streaming was asked for and cannot be done."""
    check_streaming(streaming)
    if streaming is False:
        return False
    on_host = backends.is_host(X) and not backends.is_sparse(X)
    if streaming is True:
        if backends.library_of(device) in ("torch", "jax"):
            raise ValueError(f"streaming=True copies batches through pinned host buffers to a CuPy GPU ('cuda'), "
                             f"which the {device!r} device does not have; use streaming=False (X is moved whole)")
        if not on_host:
            where = "sparse" if backends.is_sparse(X) else f"already on {backends.device_of(X)}"
            raise ValueError(f"streaming=True needs X as a dense host array (NumPy or np.memmap); X is {where}")
        if full_batch:
            raise ValueError("streaming=True trains in mini-batches; optimizer='lbfgs' needs the whole data "
                             "on the device")
        return True
    if not on_host or full_batch or not backends.is_gpu(device):
        return False
    shape = np.shape(X)
    data_bytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return needs_streaming(data_bytes, backends.free_memory(device))
