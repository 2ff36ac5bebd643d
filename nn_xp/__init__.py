"""nn_xp: multilayer perceptrons from scratch, one code path for NumPy (CPU) and CuPy (CUDA GPUs)."""

from . import optim
from ._version import __version__
from .backends import (
    available_devices,
    default_device,
    get_namespace,
    namespace,
    to_device,
    to_numpy,
)
from .data import datasets
from .data.preprocessing import Preprocessor
from .models.mlp import MLP, load
from .models.sequential import Sequential
from .nn import layers
from .nn.gradcheck import gradcheck
from .optim import schedules
from .parity import parity_report
from .training import callbacks, distributed

__all__ = [
    "MLP",
    "Preprocessor",
    "Sequential",
    "__version__",
    "available_devices",
    "callbacks",
    "datasets",
    "default_device",
    "distributed",
    "get_namespace",
    "gradcheck",
    "layers",
    "load",
    "namespace",
    "optim",
    "parity_report",
    "schedules",
    "to_device",
    "to_numpy",
]
