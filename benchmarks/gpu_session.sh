#!/usr/bin/env bash
# Everything the GPU issue needs measured, in one command on a lent GPU machine (see the
# developers' guide: run ../shared/tools/device-prep.sh here first, carry .whl, and start the
# device command with the line it prints). Logs and results go to $OUT (or ./gpu-out).
#
#   bash benchmarks/gpu_session.sh [all|tests|parity|seeds|profile|quick|bench]...
#
# tests:  the whole test suite on CuPy (NN_XP_DEVICE=cuda:0): pass/skip counts in pytest.log
# parity: parity reports for workload (a), float64 and float32 with TF32 off: parity-*.json,
#         and PyTorch's own CPU-vs-CUDA figures for the same run: torch-parity-float32.json
# quick:  a smoke run of the benchmark (seconds), to catch errors before the long run
# bench:  the benchmark suite against PyTorch CUDA eager: cuda-latest.md/json
# profile: where a step's time goes, nn_xp against torch (printed)
# seeds:  the float32 parity summary for seeds 1-4 (printed)
# distributed: 2 ranks sharing the GPU through the host-staged MPI path (tests/test_distributed.py;
#         needs mpi4py and mpich wheels for the machine's Python carried in .whl)
# The device tool brings back at most 8 files: everything else is printed, so run this as
#   bash benchmarks/gpu_session.sh ... 2>&1 | tee "$OUT/session.log"
# Each step has its own time limit (seconds, from the environment) so that one stuck step
# cannot eat the whole device call.
set -uo pipefail
out="${OUT:-gpu-out}"
mkdir -p "$out"
export NN_XP_DEVICE=cuda:0 PYTHONUNBUFFERED=1
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(all)
[ "${steps[0]}" = all ] && steps=(tests parity quick bench)
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
python3 -c "import sys, numpy, cupy, torch; print(sys.version); print('numpy', numpy.__version__, 'cupy', cupy.__version__, 'torch', torch.__version__)"
python3 -m nn_xp info
for step in "${steps[@]}"; do
  echo "=== $step ($(date +%T))"
  case "$step" in
    tests)
      timeout "${TESTS_LIMIT:-300}" python3 -m pytest -q -p no:cacheprovider -rfEs --durations=15 \
        --timeout=120 ${PYTEST_ARGS:-} \
        2>&1 | tee "$out/pytest.log" | grep -E "passed|failed|error" | tail -3 ;;
    parity)
      for dtype in float64 float32; do
        timeout "${PARITY_LIMIT:-120}" python3 -m nn_xp parity --devices cpu cuda:0 --dtype "$dtype" \
          --steps 100 --n-samples 4000 --output "$out/parity-$dtype.json" 2>&1
      done
      timeout "${PARITY_LIMIT:-120}" python3 -m benchmarks.torch_parity --dtype float32 \
        --output "$out/torch-parity-float32.json" 2>&1 ;;
    seeds)
      for seed in 1 2 3 4; do
        timeout "${PARITY_LIMIT:-120}" python3 -m nn_xp parity --devices cpu cuda:0 --dtype float32 \
          --steps 100 --n-samples 4000 --seed "$seed" 2>&1 | sed -n 3p
        timeout "${PARITY_LIMIT:-120}" python3 -m benchmarks.torch_parity --dtype float32 --seed "$seed" 2>&1 | head -n 1
      done ;;
    distributed)
      timeout "${DIST_LIMIT:-180}" python3 -m pytest -q -p no:cacheprovider -rfEs tests/test_distributed.py \
        2>&1 | tail -5 ;;
    profile)
      timeout "${PROFILE_LIMIT:-120}" python3 -m benchmarks.gpu_profile 2>&1 ;;
    quick)
      timeout "${QUICK_LIMIT:-120}" python3 -m benchmarks.run --quick --device cuda --out "$out" 2>&1 | tail -15 ;;
    bench)
      timeout "${BENCH_LIMIT:-400}" python3 -m benchmarks.run --device cuda --out "$out" ${BENCH_ARGS:-} 2>&1 ;;
    *) echo "unknown step $step" ;;
  esac
done
echo "=== done ($(date +%T))"
