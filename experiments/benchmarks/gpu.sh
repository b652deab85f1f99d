#!/usr/bin/env bash
# Issue 7 on one GPU (H200: about 2 minutes including compiles). Writes $OUT/perf_gpu.{json,md}.
# Usage (device tool): OUT=$OUT bash experiments/benchmarks/gpu.sh
set -euo pipefail
: "${OUT:?set OUT to an output directory}"
cd "$(dirname "$0")/../.."
python -c "import jax; print('jax', jax.__version__, jax.devices())"
timeout 150 python experiments/benchmarks/gpu.py --net small --batch 64 --n 20,100 --budget 95 "$@"
