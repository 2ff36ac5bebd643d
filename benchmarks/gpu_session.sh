#!/usr/bin/env bash
# shellcheck disable=SC2329  # the step_* functions are called by name, "step_$step"
# Everything issue 15 needs measured on a lent GPU machine, in one command of at most 8 minutes.
#
#   bash benchmarks/gpu_session.sh [plan | all | STEP...]
#
# Before the call, on this machine: ../shared/tools/device-prep.sh (puts the wheels the GPU
# machine lacks into .whl/); carry .whl. The script installs them itself (into /tmp/site),
# points Python at this checkout, builds the compiled loops for the machine's Python, and writes
# to $OUT (./gpu-out without it). The device tool brings back at most 8 files; these are all:
#   session.log             everything printed (the script copies its own output there)
#   pytest.log              tests: the whole suite on CuPy (NN_XP_DEVICE=cuda:0)
#   parity.json             parity: `nn-xp parity` cpu vs cuda:0, float64 and float32 (TF32 off),
#                           100 Adam steps, and PyTorch's own CPU-vs-CUDA figures for the same run
#   launches.json, .md      launches: kernel launches per step, nn_xp (fused on/off) vs PyTorch
#   graph.json              graph: what CuPy can capture in a CUDA graph, and what a graph saves
#   cuda-latest.json, .md   bench: (a) and (b) against PyTorch eager, mixed_float16 against
#                           PyTorch AMP at (b), GPU memory; (c) and (d) after it, printed only
#
# Steps of `all`, most valuable first, each with a time limit in seconds (environment override):
#   tests 135 (TESTS_LIMIT), parity 40, launches 55, graph 15, bench 140, streaming 25,
#   distributed 30, after a preparation of at most 30 (PREP_LIMIT): 470 s in all. A step also
#   stops at TOTAL_LIMIT (470) seconds after the start, so the whole run stays under 8 minutes.
# Other steps: seeds (float32 parity for seeds 1-4, printed), profile (benchmarks.gpu_profile,
# printed), quick (a smoke run of the benchmark, printed). `plan` prints the steps and limits.
# Without a GPU every step says why it has nothing to do and the script exits 0; it exits 1
# when a step failed or ran out of time.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
PY="${PYTHON:-python3}"
DEFAULT_STEPS=(tests parity launches graph bench streaming distributed)
declare -A LIMIT=(
  [prep]="${PREP_LIMIT:-30}" [tests]="${TESTS_LIMIT:-135}" [parity]="${PARITY_LIMIT:-40}"
  [launches]="${LAUNCHES_LIMIT:-55}" [graph]="${GRAPH_LIMIT:-15}" [bench]="${BENCH_LIMIT:-140}"
  [streaming]="${STREAMING_LIMIT:-25}" [distributed]="${DIST_LIMIT:-30}"
  [seeds]="${SEEDS_LIMIT:-100}" [profile]="${PROFILE_LIMIT:-90}" [quick]="${QUICK_LIMIT:-90}"
)
TOTAL_LIMIT="${TOTAL_LIMIT:-470}"

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(all)
if [ "${steps[0]}" = plan ]; then
  total=${LIMIT[prep]}
  echo "prep ${LIMIT[prep]}"
  for step in "${DEFAULT_STEPS[@]}"; do
    echo "$step ${LIMIT[$step]}"
    total=$(( total + LIMIT[$step] ))
  done
  echo "total $total (every step also stops at TOTAL_LIMIT=$TOTAL_LIMIT s)"
  exit 0
fi
[ "${steps[0]}" = all ] && steps=("${DEFAULT_STEPS[@]}")
for step in "${steps[@]}"; do
  if [ -z "${LIMIT[$step]:-}" ] || [ "$step" = prep ]; then
    echo "unknown step '$step' (steps: ${DEFAULT_STEPS[*]} seeds profile quick; all; plan)"
    exit 2
  fi
done

out="${OUT:-gpu-out}"
mkdir -p "$out"
exec > >(tee -a "$out/session.log") 2>&1
tee_pid=$!
export PYTHONUNBUFFERED=1
deadline=$(( SECONDS + TOTAL_LIMIT ))
step_end=$deadline

left() {  # seconds left to the current step (and to the whole run)
  local end=$step_end
  (( deadline < end )) && end=$deadline
  echo $(( end - SECONDS ))
}

t() {  # t CMD...: CMD under what is left of the step's time (less the grace to stop); 124 when none is
  # left. T_SIGNAL=INT for pytest: interrupted, it still prints the summary of what ran.
  local grace=${T_GRACE:-3} n
  n=$(( $(left) - grace ))
  if (( n < 2 )); then
    echo "  (out of time, not run: $(printf '%s ' "$@" | tr '\n' ' ' | cut -c 1-100))"
    return 124
  fi
  timeout -s "${T_SIGNAL:-TERM}" -k "$grace" "$n" "$@"
}

begin() {  # begin NAME: the step's clock starts
  step_end=$(( SECONDS + LIMIT[$1] ))
  echo "=== $1 (limit $(left) s, $(date +%T), $(( SECONDS )) s into the run)"
}

# ---- preparation: wheels, this checkout on the path, compiled loops, versions --------------------
begin prep
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" > /dev/null; then
  t "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
if ! "$PY" -c "import nn_xp.backends._native" 2> /dev/null; then
  echo "building nn_xp's compiled loops for this Python"
  t "$PY" setup.py -q build_ext --inplace > /dev/null 2>&1 || echo "  (not built: nn_xp runs without them)"
fi
failed=0
if ! "$PY" -c "import nn_xp" 2> /dev/null; then
  echo "ERROR: nn_xp does not import here: $("$PY" -c "import nn_xp" 2>&1 | tail -n 1)"
  echo "       (carry .whl, made by ../shared/tools/device-prep.sh)"
  failed=1
fi
if command -v nvidia-smi > /dev/null; then
  t nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
else
  echo "nvidia-smi: not on this machine"
fi
t "$PY" -c "
import sys, numpy
print(sys.version.split()[0], 'numpy', numpy.__version__, end=' ')
for name in ('cupy', 'torch'):
    try:
        print(name, __import__(name).__version__, end=' ')
    except ImportError:
        print(name, 'absent', end=' ')
print()"
t "$PY" -m nn_xp info
why=$("$PY" -c "from nn_xp import backends; n, why = backends.cuda_status(); print('ok' if n else why)" 2>&1 | tail -n 1)
if [ "$why" = ok ]; then
  gpu=1
  export NN_XP_DEVICE=cuda:0
else
  gpu=0
  echo "no GPU for nn_xp: ${why%%;*}"
  if command -v nvidia-smi > /dev/null; then
    echo "ERROR: this machine has a GPU (nvidia-smi) that nn_xp cannot use"
    failed=1
  fi
fi

needs_gpu() {  # `needs_gpu || return`: a step that needs the GPU, where there is none, is skipped (3)
  [ "$gpu" = 1 ] && return 0
  echo "  skipped: no GPU for nn_xp (${why%%;*})"
  return 3
}

# ---- the steps (called by name below) -----------------------------------------------------------
step_tests() {
  needs_gpu || return
  local args=${PYTEST_ARGS-}
  if [ -z "${PYTEST_ARGS+set}" ] && "$PY" -c "import xdist" 2> /dev/null; then
    args="-n 8"  # 8 workers x 2 BLAS threads on the 16 cores
  fi
  "$PY" -c "import pytest_timeout" 2> /dev/null && args="$args --timeout=100"  # one stuck test fails alone
  # shellcheck disable=SC2086  # args is a list of options
  OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2 T_SIGNAL=INT T_GRACE=10 t "$PY" -m pytest -q -p no:cacheprovider -rfEs \
    --durations=15 $args > "$out/pytest.log" 2>&1
  local rc=$?
  grep -E "^(FAILED|ERROR)" "$out/pytest.log" | head -n 30
  tail -n 1 "$out/pytest.log"
  return "$rc"
}

step_parity() {
  needs_gpu || return
  local parts rc=0
  parts=$(mktemp -d)
  for dtype in float64 float32; do
    t "$PY" -m nn_xp parity --devices cpu cuda:0 --dtype "$dtype" --steps 100 --n-samples 4000 \
      --output "$parts/parity-$dtype.json" | sed -n 3p || rc=$?  # the verdict line
  done
  t "$PY" -m benchmarks.torch_parity --dtype float32 --output "$parts/torch-parity-float32.json" | head -n 1 \
    || rc=$?
  "$PY" - "$parts" "$out/parity.json" << 'EOF'
import json, pathlib, sys
parts, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
combined = {p.stem: json.loads(p.read_text()) for p in sorted(parts.glob("*.json"))}
target.write_text(json.dumps(combined, indent=1) + "\n")
print(f"  parity.json holds {', '.join(combined) or 'nothing'}")
EOF
  return "$rc"
}

step_launches() {  # runs without a GPU too: it says why it counts nothing
  t "$PY" -m benchmarks.launches --out "$out" || return
  [ "$gpu" = 1 ] || return 3
}

step_graph() {
  t "$PY" -m benchmarks.graph_probe --out "$out" || return
  [ "$gpu" = 1 ] || return 3
}

step_bench() {
  needs_gpu || return
  # (a) and (b) carry every target, the mixed rows and the GPU memory: first, into $OUT.
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of options
  t "$PY" -m benchmarks.run --device cuda --gpu-only --systems nn_xp,torch --libraries numpy --workloads a,b --repeats 5 \
    --epochs a=3,b=20 --no-scaling --out "$out" ${BENCH_ARGS:-}
  local rc=$?
  if (( $(left) > 25 )); then  # (c) and (d) with what is left, printed only (the 8-file limit)
    t "$PY" -m benchmarks.run --device cuda --gpu-only --systems nn_xp,torch --libraries numpy --workloads c,d --repeats 5 \
      --epochs c=10,d=1 --no-scaling --no-memory --mixed "" --out /tmp/gpu-bench-cd | sed -n '/^# nn_xp training benchmark/,/^## Do the systems/p'
  else
    echo "  (c) and (d): not enough time left"
  fi
  return "$rc"
}

step_streaming() {
  needs_gpu || return
  if [ ! -f tests/test_streaming.py ]; then
    echo "  skipped: tests/test_streaming.py is not in this checkout yet"
    return 3
  fi
  T_SIGNAL=INT t "$PY" -m pytest -q -p no:cacheprovider -rfEs tests/test_streaming.py 2>&1 | tail -n 15
}

step_distributed() {
  needs_gpu || return
  # 2 ranks sharing the GPU through the host-staged MPI path (needs mpi4py and an MPI library)
  T_SIGNAL=INT t "$PY" -m pytest -q -p no:cacheprovider -rfEs tests/test_distributed.py 2>&1 | tail -n 8
}

step_seeds() {
  needs_gpu || return
  for seed in 1 2 3 4; do
    t "$PY" -m nn_xp parity --devices cpu cuda:0 --dtype float32 --steps 100 --n-samples 4000 --seed "$seed" \
      | sed -n 3p
    t "$PY" -m benchmarks.torch_parity --dtype float32 --seed "$seed" | head -n 1
  done
}

step_profile() {
  needs_gpu || return
  t "$PY" -m benchmarks.gpu_profile
}

step_quick() {
  needs_gpu || return
  t "$PY" -m benchmarks.run --quick --device cuda --out /tmp/gpu-quick | tail -n 25
}

summary=()
for step in "${steps[@]}"; do
  begin "$step"
  started=$SECONDS
  "step_$step"
  rc=$?
  case $rc in
    0) state=ok ;;
    3) state=skipped ;;
    124 | 137) state="out of time"; failed=1 ;;
    *) state="failed (exit $rc)"; failed=1 ;;
  esac
  summary+=("$(printf '%-12s %-18s %4d s' "$step" "$state" $(( SECONDS - started )))")
done

echo "=== done ($(date +%T), $SECONDS s)"
printf '%s\n' "${summary[@]}"
mapfile -t files < <(find "$out" -type f | sort)
echo "files in $out (${#files[@]}; the device tool brings back 8):"
printf '  %s\n' "${files[@]}"
(( ${#files[@]} <= 8 )) || echo "WARNING: more than 8 files in $out: some will not come back"
exec 1>&- 2>&-
wait "$tee_pid"
exit $failed
