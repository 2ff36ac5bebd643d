"""nn_xp: multilayer perceptrons from scratch, one code path for NumPy (CPU) and CuPy (CUDA GPUs)."""

__version__ = "0.1.0"

from .backend import (  # noqa: E402
    available_devices,
    default_device,
    get_namespace,
    namespace,
    to_device,
    to_numpy,
)
from .gradcheck import gradcheck  # noqa: E402
from .model import MLP, Sequential, load  # noqa: E402
from .parity import parity_report  # noqa: E402
from . import callbacks, datasets, layers, optim, schedules  # noqa: E402

__all__ = [
    "MLP",
    "Sequential",
    "__version__",
    "available_devices",
    "default_device",
    "get_namespace",
    "gradcheck",
    "load",
    "parity_report",
    "callbacks",
    "datasets",
    "layers",
    "optim",
    "schedules",
    "namespace",
    "to_device",
    "to_numpy",
]
