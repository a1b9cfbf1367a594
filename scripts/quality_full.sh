#!/bin/sh
# Full quality benchmark as committed in benchmarks/results/quality.json: the configurations run as
# parallel processes (one BLAS thread each), then one merging run prints the tables and writes the JSON.
# Usage: sh scripts/quality_full.sh [workdir]   (about 15 min on an idle 2-core machine)
set -e
W=${1:-.nmaccel_cache/quality}
mkdir -p "$W"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
Q="python benchmarks/quality.py"
run() { name=$1; shift; $Q --json "$W/$name.json" --resume "$@" > "$W/$name.log" 2>&1; }
run main_a --configs int8-channel,int4-g128,lloyd-max-4b-g128,2:4-magnitude,2:4+int4-magnitude,4:8+int4-magnitude,2:4-wanda,2:4+int4-wanda,4:8+int4-wanda &
run main_b --configs 2:4+int4-sparsegpt,2:4+int4-sparsegpt-rtn &
run main_c --configs 4:8+int4-sparsegpt,2:4-sparsegpt &
wait
run v_damp1_a --damp 1.0 --configs 2:4-sparsegpt,2:4+int4-sparsegpt &
run v_damp1_b --damp 1.0 --configs 4:8+int4-sparsegpt &
run v_oneshot --one-shot --configs 2:4-sparsegpt &
wait
run v_skip1 --skip-first 1 --configs 2:4-sparsegpt,2:4-wanda &
run v_calib4096 --calib-tokens 4096 --configs 2:4+int4-sparsegpt &
run v_clip99_a --clip-tokens 0.99 --configs 2:4-sparsegpt,2:4-wanda,2:4+int4-wanda,4:8+int4-wanda &
wait
run v_clip99_b --clip-tokens 0.99 --configs 2:4+int4-sparsegpt &
run v_clip99_c --clip-tokens 0.99 --configs 4:8+int4-sparsegpt &
run v_clip90 --clip-tokens 0.9 --configs 2:4-sparsegpt &
wait
$Q --json benchmarks/results/quality.json --merge "$W"/main_*.json \
   --variants "$W"/v_*.json
