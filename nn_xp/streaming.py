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

from . import backend


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
    on_host = backend.is_host(X) and not backend.is_sparse(X)
    if streaming is True:
        if not on_host:
            where = "sparse" if backend.is_sparse(X) else f"already on {backend.device_of(X)}"
            raise ValueError(f"streaming=True needs X as a dense host array (NumPy or np.memmap); X is {where}")
        if full_batch:
            raise ValueError("streaming=True trains in mini-batches; optimizer='lbfgs' needs the whole data "
                             "on the device")
        return True
    if not on_host or full_batch or not device.startswith("cuda"):
        return False
    shape = np.shape(X)
    data_bytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return needs_streaming(data_bytes, backend.free_memory(device))


class HostBatches:
    """Batches of a host array X for a model on `device`, two in flight: `start(slot, rows)` gathers
    rows of X and sends them, `batch(slot, m)` gives the device array for the step, and
    `release(slot)` says the step that reads it has been issued. Slots alternate 0, 1, 0, ...

    rows: a 1-D NumPy array of row indices, or a slice (a run of consecutive rows).
    """

    def __init__(self, X, device: str, max_rows: int):
        self.X, self.device, self.max_rows = X, device, max_rows
        self.gpu = device.startswith("cuda")
        shape = (max_rows, X.shape[1])
        if self.gpu:
            import cupy
            import cupyx

            self._cupy = cupy
            with backend.device_context(device):
                self.copy_stream = cupy.cuda.Stream(non_blocking=True)
                self.host = [cupyx.empty_pinned(shape, dtype=X.dtype) for _ in range(2)]
                self.device_buffers = [cupy.empty(shape, dtype=X.dtype) for _ in range(2)]
        else:
            self.host = [np.empty(shape, dtype=X.dtype) for _ in range(2)]
        self.copied = [None, None]  # events: the copy into each device buffer is complete
        self.released = [None, None]  # events: the step that read each device buffer is complete

    def start(self, slot: int, rows) -> None:
        """Gather `rows` of X into the slot's host buffer and copy them towards the device."""
        if self.copied[slot] is not None:  # the buffer's last copy must be out before it is refilled
            self.copied[slot].synchronize()
        m = _count(rows)
        if m > self.max_rows:
            raise ValueError(f"a batch of {m} rows does not fit buffers of {self.max_rows}")
        host = self.host[slot][:m]
        if isinstance(rows, slice):
            host[...] = self.X[rows]
        else:
            np.take(self.X, rows, axis=0, out=host, mode="clip")  # rows are valid: checked by their maker
        if not self.gpu or m == 0:
            return
        stream = self.copy_stream
        if self.released[slot] is not None:  # the step before that read this device buffer
            stream.wait_event(self.released[slot])
        self.device_buffers[slot][:m].set(host, stream=stream)
        self.copied[slot] = stream.record()

    def batch(self, slot: int, m: int):
        """The slot's batch on the device, for the step about to be issued."""
        if not self.gpu:
            host = self.host[slot][:m]
            return host if self.device == "cpu" else backend.to_device(host, self.device)
        if m:
            self._cupy.cuda.get_current_stream().wait_event(self.copied[slot])
        return self.device_buffers[slot][:m]

    def release(self, slot: int) -> None:
        """The step reading the slot's batch has been issued (on the current stream)."""
        if self.gpu:
            self.released[slot] = self._cupy.cuda.get_current_stream().record()

    def close(self) -> None:
        """Wait for copies still in flight (an epoch stopped early), before the buffers may go."""
        if self.gpu:
            self.copy_stream.synchronize()


def _count(rows) -> int:
    if isinstance(rows, slice):
        return rows.stop - rows.start
    return int(rows.shape[0])
