"""TF32: whether CuPy's float32 matrix products may use the tensor cores' 10-bit-mantissa format."""

from __future__ import annotations

import os

import numpy as np

from .libraries import cuda_status

_TF32 = {"enabled": None}


def tf32_enabled() -> bool:
    """Whether float32 matrix products on CUDA may use TF32 tensor cores (off unless asked for)."""
    if _TF32["enabled"] is None:
        return os.environ.get("NN_XP_TF32", "0").strip().lower() in ("1", "true", "yes", "on")
    return _TF32["enabled"]


def set_tf32(enabled: bool) -> None:
    """Allow (True) or forbid (False, the default) TF32 in CuPy's float32 matrix products.

    TF32 keeps 10 mantissa bits in the products: about 3x faster matrix work on Ampere and
    Hopper GPUs, at a relative error near 1e-3 instead of 1e-7. The environment variable
    NN_XP_TF32=1 turns it on for a whole run. It has no effect on the CPU.
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True or False, got {enabled!r}")
    _TF32["enabled"] = enabled
    apply_tf32()


def apply_tf32() -> None:
    """Push the TF32 choice into CuPy, if CuPy is loaded (called whenever a GPU is resolved)."""
    if cuda_status()[0] == 0:
        return
    try:
        from cupy._core import _routines_linalg as linalg
    except ImportError:  # a CuPy without this hook: it then follows CUPY_TF32 (default off)
        return
    mode = linalg.COMPUTE_TYPE_TF32 if tf32_enabled() else linalg.COMPUTE_TYPE_DEFAULT
    linalg.set_compute_type(np.float32, mode)
    linalg.set_compute_type(np.complex64, mode)
