#!/usr/bin/env bash
# Train the shipped prior photos64 on one accelerator inside a fixed budget (used on an H200:
# see experiments/priors/README.md). Writes photos64.npz and the run's log/summary to $OUT.
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
SECONDS_BUDGET="${SECONDS_BUDGET:-420}"
nvidia-smi -L || true
python3 -c "import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
timeout -s TERM $((SECONDS_BUDGET + 90)) python3 experiments/priors/train_prior.py \
  --config experiments/configs/photos64.py --workdir /tmp/photos64 --seconds "$SECONDS_BUDGET" \
  --probe 100 --dtype float16 --out "$OUT/photos64.npz" 2>&1 | grep -v "^W0000\|^I0000" | tail -40
for f in metrics.jsonl loss.png train_summary.json config.json; do
  cp "/tmp/photos64/$f" "$OUT/" 2>/dev/null || true
done
cp /tmp/photos64_probe/metrics.jsonl "$OUT/probe_metrics.jsonl" 2>/dev/null || true
ls -la "$OUT"
if [ -f "$OUT/photos64.npz" ]; then
  timeout 100 python3 experiments/priors/gpu_sampler_overhead.py "$OUT/photos64.npz" "$OUT/sampler_overhead_h200.json" 2>&1 | grep -v "^W0000\|^I0000" | tail -8
fi
