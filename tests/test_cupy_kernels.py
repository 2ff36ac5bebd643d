"""The fused CUDA kernels' source (nn_xp/backends/cupy_kernels.cu), checked without a GPU:
- every instantiation that cupy_ops launches compiles with nvcc for sm_90, in both modules (the main
  one and bfloat16's), and the object holds exactly those kernels;
- the constants cupy_ops mirrors agree with the source, and the launch shapes cover the arrays;
- set_fused takes a bool, NN_XP_FUSED=0 turns the kernels off, and importing cupy_ops imports no CuPy.
Their numbers are checked against the standard twins in tests/test_cupy_ops.py: on a GPU, and on the
CPU through tests/cuda_on_cpu.py.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nn_xp.backends import cupy_ops

KERNELS = Path(cupy_ops.__file__).resolve().with_name("cupy_kernels.cu")
NVCC = shutil.which("nvcc") or next((p for p in ["/usr/local/cuda/bin/nvcc"] if os.path.exists(p)), None)


@pytest.mark.skipif(NVCC is None, reason="nvcc (the CUDA toolkit) is not installed: it compiles the kernels here")
@pytest.mark.parametrize("bfloat16", [False, True], ids=["main", "bfloat16"])
def test_every_kernel_instantiation_compiles_with_nvcc(tmp_path, bfloat16):
    """Taking each name expression's address instantiates it, as NVRTC's name expressions do at run
    time; nvcc then compiles it to sm_90 code (ptxas included), warnings as errors."""
    names = cupy_ops.name_expressions(bfloat16)
    source = tmp_path / "instances.cu"
    source.write_text(f'#include "{KERNELS}"\n\nvoid* nn_xp_instances[] = {{\n'
                      + "".join(f"    (void*)&{name},\n" for name in names) + "};\n")
    options = cupy_ops.BFLOAT16_OPTIONS if bfloat16 else cupy_ops.OPTIONS
    command = [NVCC, "-c", "-arch=sm_90", *options, "--Werror", "all-warnings", "--keep", "--keep-dir",
               str(tmp_path), str(source), "-o", str(tmp_path / "instances.o")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stderr}"
    entries = re.findall(r"^\.visible \.entry (\w+)\(", (tmp_path / "instances.ptx").read_text(), re.MULTILINE)
    assert len(entries) == len(names)
    if shutil.which("c++filt"):  # and they are the ones named, nothing else
        demangled = subprocess.run(["c++filt"], input="\n".join(entries), capture_output=True, text=True,
                                   check=True).stdout.splitlines()
        assert sorted(re.sub(r"^void (.*)\(.*\)$", r"\1", d) for d in demangled) == sorted(names)


def test_the_python_mirrors_of_the_kernel_constants_agree_with_the_source():
    source = KERNELS.read_text()
    enum = re.search(r"enum Activation \{([^}]*)\}", source).group(1)
    codes = {name.strip().lower(): int(value) for name, value in re.findall(r"(\w+)\s*=\s*(\d+)", enum)}
    assert codes == cupy_ops.ACTIVATION_CODES
    constants = dict(re.findall(r"constexpr int (\w+) = (\d+);", source))
    assert {name: int(value) for name, value in constants.items()} == {
        "TILE": cupy_ops.TILE, "ROWS": cupy_ops.ROWS, "BLOCK": cupy_ops.BLOCK}
    assert cupy_ops.kernel_source() == source  # what RawModule compiles is this file (package data)


@pytest.mark.parametrize("n", [1, 7, 128, 257, 4096, 10**6, 10**8])
@pytest.mark.parametrize("k", [1, 10, 64, 129, 512, 1000])
@pytest.mark.parametrize("multiprocessors", [1, 132])
def test_launch_shapes_cover_the_arrays_within_cudas_limits(n, k, multiprocessors):
    tiles, chunks, chunk = cupy_ops.backward_bias_grid(n, k, multiprocessors)
    assert tiles * cupy_ops.TILE >= k > (tiles - 1) * cupy_ops.TILE
    assert chunks * chunk >= n > (chunks - 1) * chunk  # every row in one chunk, no empty chunk
    assert chunks <= 65535 and chunks <= max(1, 4 * multiprocessors)
    blocks, group = cupy_ops.softmax_grid(n, k, multiprocessors)
    assert group in (1, 2, 4, 8, 16, 32) and (group == 32 or group >= k / 4)
    assert 1 <= blocks <= 8 * multiprocessors and (blocks - 1) * (cupy_ops.BLOCK // group) < n  # each has rows
    assert 1 <= cupy_ops.elementwise_grid(n * k, multiprocessors) <= 8 * multiprocessors


def test_set_fused_takes_a_bool_and_returns_the_previous_setting():
    previous = cupy_ops.set_fused(True)
    try:
        with pytest.raises(TypeError, match="flag must be True or False"):
            cupy_ops.set_fused(1)
        assert cupy_ops.set_fused(False) is True
        assert not cupy_ops.fused_enabled()
        assert cupy_ops.set_fused(True) is False
        assert cupy_ops.fused_enabled()
    finally:
        cupy_ops.set_fused(previous)


@pytest.mark.parametrize("value, enabled", [("0", False), ("off", False), ("1", True)])
def test_the_environment_can_turn_the_fused_kernels_off_and_importing_needs_no_cupy(value, enabled):
    code = "import sys; from nn_xp.backends import cupy_ops; print(cupy_ops.fused_enabled(), 'cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, NN_XP_FUSED=value), capture_output=True,
                         text=True, check=True)
    assert out.stdout.split() == [str(enabled), "False"]
