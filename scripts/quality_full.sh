#!/bin/sh
# Produces benchmarks/results/quality.json exactly: the configurations run as three parallel
# processes (one BLAS thread each, niced), each compressing with `nmaccel.pack.compress_model`
# into $W/<config> and scoring the output; a final run merges their rows and prints the table.
# Usage: sh scripts/quality_full.sh [workdir]
# This is a reduced run (11 of the configurations in `python benchmarks/quality.py --list`): the
# full list takes several CPU-hours on the shared 2-core machine.
set -e
W=${1:-.nmaccel_cache/quality}
mkdir -p "$W"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NMACCEL_CACHE="$W/cache"
Q="nice -n 15 python benchmarks/quality.py --workdir $W"
run() { name=$1; shift; $Q --json "$W/$name.json" --resume --configs "$@" > "$W/$name.log" 2>&1; }
run part_a smol-int4-rtn,smol-int4-gptq,smol-4:8+int4-sparsegpt,mini-4:8+int4-sparsegpt &
run part_b smol-2:4+int4-sparsegpt,smol-2:4+int4-wanda-obs,smol-4:8+int4-magnitude,mini-4:8+int4-magnitude &
run part_c smol-2:4+int4-sparsegpt-pydoc,smol-2:4+int4-magnitude,smol-4:8+int4-wanda-obs &
wait
python benchmarks/quality.py --json benchmarks/results/quality.json \
  --configs smol-int4-rtn,smol-int4-gptq,smol-4:8+int4-magnitude,smol-4:8+int4-wanda-obs,smol-4:8+int4-sparsegpt,smol-2:4+int4-magnitude,smol-2:4+int4-wanda-obs,smol-2:4+int4-sparsegpt,smol-2:4+int4-sparsegpt-pydoc,mini-4:8+int4-magnitude,mini-4:8+int4-sparsegpt \
  --merge "$W"/part_a.json "$W"/part_b.json "$W"/part_c.json
