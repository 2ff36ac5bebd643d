"""nn_xp's CUDA kernels on the CPU, for machines without a GPU.

`build(directory)` compiles nn_xp/backends/cupy_kernels.cu with the host's C++ compiler and cuda_on_cpu.h (a
block at a time, one std::thread per CUDA thread: see that header for what it can and cannot show),
every instantiation that cupy_ops launches, into a library. `fake_cupy(library)` is a stand-in
`cupy` module: NumPy arrays of a subclass `ndarray`, and a `RawModule` whose kernels run in that
library, launched as the GPU launches them (a pointer to each argument's bytes), after checking each
argument against the kernel's parameter list. With it CupyOps' own code runs unchanged: its checks,
launch shapes, argument order and types, scratch arrays and fallbacks.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import types
from pathlib import Path

import numpy as np

from nn_xp.backends import cupy_ops

HERE = Path(__file__).resolve().parent
KERNELS = Path(cupy_ops.__file__).resolve().with_name("cupy_kernels.cu")
CUDA_INCLUDE = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"
MULTIPROCESSORS = 8  # few, so that the emulated grids stay small, yet several blocks and chunks


def all_names() -> list[str]:
    return cupy_ops.name_expressions() + cupy_ops.name_expressions(bfloat16=True)


def build(directory: Path):
    """The compiled library, or a string saying why there is none."""
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        return "no C++ compiler (g++) to run the CUDA kernels on the CPU"
    if not (CUDA_INCLUDE / "cuda_fp16.h").exists():
        return f"no CUDA headers at {CUDA_INCLUDE} (cuda_fp16.h); set CUDA_HOME"
    lines = ['#include "cuda_on_cpu.h"', f'#include "{KERNELS}"']
    for index, name in enumerate(all_names()):
        lines.append(f'extern "C" void launch_{index}(unsigned gx, unsigned gy, unsigned bx, unsigned by, '
                     f"void** params) {{ launch_packed(&{name}, dim3{{gx, gy, 1}}, dim3{{bx, by, 1}}, params); }}")
        lines.append(f'extern "C" const char* signature_{index}()'
                     f" {{ static const std::string s = signature(&{name}); return s.c_str(); }}")
    source = directory / "kernels_on_cpu.cpp"
    source.write_text("\n".join(lines) + "\n")
    library = directory / "kernels_on_cpu.so"
    # No _FORTIFY_SOURCE: its longjmp check refuses the jumps between fiber stacks (cuda_on_cpu.h).
    command = [compiler, "-std=c++20", "-O1", "-U_FORTIFY_SOURCE", "-shared", "-fPIC", "-DNN_XP_BFLOAT16",
               f"-I{HERE}", f"-I{CUDA_INCLUDE}", str(source), "-o", str(library)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"building the CPU kernels failed:\n{' '.join(command)}\n{result.stderr[-4000:]}")
    return ctypes.CDLL(str(library))


class Device:
    id = 0
    attributes = {"MultiProcessorCount": MULTIPROCESSORS}

    def __init__(self, device_id=0):
        self.id = device_id

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class ndarray(np.ndarray):
    """A NumPy array that looks like a CuPy one where CupyOps looks."""

    @property
    def device(self):
        return Device(0)

    def get(self):
        return np.array(self)


class Kernel:
    """One instantiation, called as a cupy.RawKernel is: kernel(grid, block, args)."""

    def __init__(self, library, name: str):
        index = all_names().index(name)
        self.name = name
        self._launch = getattr(library, f"launch_{index}")
        signature = getattr(library, f"signature_{index}")
        signature.restype = ctypes.c_char_p
        self.parameters = signature().decode().split()

    def __call__(self, grid, block, args, shared_mem=0, stream=None):
        grid, block = (*grid, 1, 1)[:3], (*block, 1, 1)[:3]
        if len(args) != len(self.parameters):
            raise TypeError(f"{self.name} takes {len(self.parameters)} arguments, got {len(args)}")
        holders = []
        for position, (argument, parameter) in enumerate(zip(args, self.parameters)):
            where = f"{self.name} argument {position}"
            if parameter[0] == "p":
                if argument is not None:
                    if not isinstance(argument, ndarray):
                        raise TypeError(f"{where}: a pointer parameter needs a device array, got {type(argument)}")
                    if argument.itemsize != int(parameter[1:]) or not argument.flags.c_contiguous:
                        raise TypeError(f"{where}: {argument.dtype} array for a {parameter} pointer")
                holders.append(ctypes.c_void_p(None if argument is None else argument.ctypes.data))
            else:
                kind = "f" if isinstance(argument, np.floating) else "i" if isinstance(argument, np.integer) else None
                if kind is None or f"{kind}{argument.itemsize}" != parameter:
                    raise TypeError(f"{where}: {argument!r} ({type(argument).__name__}) for a {parameter} parameter")
                holders.append(ctypes.create_string_buffer(argument.tobytes(), argument.itemsize))
        params = (ctypes.c_void_p * len(holders))(*[ctypes.addressof(h) for h in holders])
        self._launch(ctypes.c_uint(grid[0]), ctypes.c_uint(grid[1]), ctypes.c_uint(block[0]),
                     ctypes.c_uint(block[1]), params)


def fake_cupy(library):
    """A `cupy` module backed by NumPy whose RawModule runs the kernels in `library`."""
    cupy = types.ModuleType("cupy")
    cupy.__getattr__ = lambda name: getattr(np, name)
    cupy.ndarray = ndarray
    cupy.asarray = lambda a, dtype=None: np.array(a, dtype=dtype).view(ndarray)
    cupy.empty = lambda shape, dtype=float: np.empty(shape, dtype).view(ndarray)
    cupy.zeros = lambda shape, dtype=float: np.zeros(shape, dtype).view(ndarray)
    stream = types.SimpleNamespace(ptr=0)
    cupy.cuda = types.SimpleNamespace(Device=Device, get_current_stream=lambda: stream)

    class RawModule:
        def __init__(self, code, options, name_expressions):
            bfloat16 = "-DNN_XP_BFLOAT16" in options
            if code != KERNELS.read_text() or "--std=c++17" not in options:
                raise ValueError("RawModule gets cupy_kernels.cu with --std=c++17")
            if list(name_expressions) != cupy_ops.name_expressions(bfloat16):
                raise ValueError(f"unexpected name expressions {name_expressions}")
            self.names = set(name_expressions)

        def get_function(self, name):
            if name not in self.names:
                raise KeyError(f"{name} is not a name expression of this module")
            return Kernel(library, name)

    cupy.RawModule = RawModule
    return cupy
