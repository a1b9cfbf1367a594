#!/usr/bin/env bash
# GPU tests + benchmark on the GPU machine (python3 with torch/triton/cupy; no install: PYTHONPATH=.).
# Usage (repository root): scripts/gpu_run.sh [test|bench|all] [extra gpu_bench.py args]
# Results: benchmarks/results/gpu_<gpu>.{json,md} (e.g. gpu_h100); copies and logs go to $OUT when set.
# A device python without gguf / yaml (imported by nmaccel.models): carry .venv/lib/python3.11/site-packages/{gguf,yaml}
# and set PYTHONPATH=.venv/lib/python3.11/site-packages (only those two packages travel).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
what=${1:-all}; shift || true
out=${OUT:-}
log() { if [ -n "$out" ]; then tee -a "$out/$1"; else cat; fi; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ "$what" = test ] || [ "$what" = all ]; then
  $PY -m pytest tests/test_gpu.py -q -p no:cacheprovider 2>&1 | log gpu_tests.log
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  NMACCEL_BENCH_COMMAND="scripts/gpu_run.sh $what $*" $PY benchmarks/gpu_bench.py "$@" 2>&1 | log gpu_bench.log
  if [ -n "$out" ]; then cp benchmarks/results/gpu_*.json benchmarks/results/gpu_*.md "$out"/; fi
fi
