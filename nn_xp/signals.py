"""SIGTERM handled as Ctrl-C is, for the command line.

A scheduler, `timeout` or `kill` stops a process with SIGTERM, whose default ends it at once and
loses the run. While `TerminateAsInterrupt` is active a SIGTERM is passed to whatever handles
Ctrl-C at that moment: during `fit` that is training's `Interrupt` (stop after the current step,
a second signal stops at once), elsewhere Python's KeyboardInterrupt. `received` tells the caller,
which exits 143 (128 + SIGTERM) where Ctrl-C exits 130.
"""

from __future__ import annotations

import signal
import threading


class TerminateAsInterrupt:
    """Context manager: SIGTERM goes to the current SIGINT handler; `received` says one came."""

    def __init__(self):
        self.received = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM"):
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = True
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:  # SIGINT ignored or left to the system: stop as an unhandled Ctrl-C would
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False
