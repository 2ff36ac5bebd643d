"""Batches of a host array copied to the device while the step before runs (streaming.py decides
when): on a GPU, through two page-locked (pinned) host buffers and two device buffers, the copies on
a second CUDA stream ordered by events; on the CPU backends, the same bookkeeping with plain copies.
"""

from __future__ import annotations

import numpy as np

from .devices import device_context, is_gpu
from .transfers import to_device


class HostBatches:
    """Batches of a host array X for a model on `device`, two in flight: `start(slot, rows)` gathers
    rows of X and sends them, `batch(slot, m)` gives the device array for the step, and
    `release(slot)` says the step that reads it has been issued. Slots alternate 0, 1, 0, ...

    rows: a 1-D NumPy array of row indices, or a slice (a run of consecutive rows).
    """

    def __init__(self, X, device: str, max_rows: int):
        self.X, self.device, self.max_rows = X, device, max_rows
        self.gpu = is_gpu(device)
        shape = (max_rows, X.shape[1])
        if self.gpu:
            import cupy
            import cupyx

            self._cupy = cupy
            with device_context(device):
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
            return host if self.device == "cpu" else to_device(host, self.device)
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
