#!/usr/bin/env bash
# Everything the GPU issue needs measured, in one command on a lent GPU machine (see the
# developers' guide: run ../shared/tools/device-prep.sh here first, carry .whl, and start the
# device command with the line it prints). Logs and results go to $OUT (or ./gpu-out).
#
#   bash benchmarks/gpu_session.sh
#
# 1. the whole test suite on CuPy (NN_XP_DEVICE=cuda:0): pass/skip counts in pytest.log
# 2. parity reports for workload (a), float64 and float32 with TF32 off: parity-*.md/json
# 3. the benchmark suite against PyTorch CUDA eager: cuda-latest.md/json
set -uo pipefail
out="${OUT:-gpu-out}"
mkdir -p "$out"
export NN_XP_DEVICE=cuda:0 PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import numpy, cupy; print('numpy', numpy.__version__, 'cupy', cupy.__version__)"
  python3 -m nn_xp info
} > "$out/machine.txt" 2>&1
python3 -m pytest -q -p no:cacheprovider 2>&1 | tee "$out/pytest.log" | tail -5
for dtype in float64 float32; do
  python3 -m nn_xp parity --devices cpu cuda:0 --dtype "$dtype" --steps 100 --n-samples 4000 \
    --output "$out/parity-$dtype.json" > "$out/parity-$dtype.md" 2>&1
  tail -n 3 "$out/parity-$dtype.md"
done
python3 -m benchmarks.run --device cuda --out "$out" 2>&1 | tee "$out/bench.log" | tail -40
