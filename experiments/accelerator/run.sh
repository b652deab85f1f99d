#!/usr/bin/env bash
# The accelerator check of issue 19, on whatever accelerator is present (GPU or TPU):
#   1. the whole test suite at the backend's DEFAULT precision (no JAX_DEFAULT_MATMUL_PRECISION),
#   2. the performance benchmarks (experiments/benchmarks/gpu.py: the train step, flat and tree
#      layouts, against forward+backward, small U-Net, batch 64; samplers against their network
#      as far as its budget goes),
#   3. the full train step's rate and model FLOP utilisation, float32 and bfloat16 compute
#      (python -m jaxir.bench._perf_train mfu: the base U-Net, batch 128),
#   4. the small U-Net's forward / forward+backward in float32 against bfloat16 compute,
# and one markdown report, $OUT/accelerator_report.md (raw logs and JSON beside it).
#
# Usage, from the repository root (device tool: the repo is the working directory):
#   OUT=$OUT bash experiments/accelerator/run.sh
# Sized for one H200 run of at most 8 minutes: suite <= SUITE_TIMEOUT (250 s), benchmarks <=
# PERF_TIMEOUT (90 s), train rate / MFU <= MFU_TIMEOUT (90 s), dtype timing <= DTYPE_TIMEOUT
# (60 s), and every stage after the suite is cut to what is left before DEADLINE (460 s after
# the start, leaving the report and the machine's start-up inside 8 minutes) or skipped when
# less than 20 s are left. Each can be overridden from the environment.
# ACCEL_DRY_RUN=1 checks the script end to end on a CPU: a few test files, tiny benchmarks.
set -uo pipefail  # no -e: every stage runs and is reported even when an earlier one fails
: "${OUT:?set OUT to an output directory}"
cd "$(dirname "$0")/../.."
mkdir -p "$OUT"
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }
DRY=${ACCEL_DRY_RUN:-0}
if [ "$DRY" = 1 ]; then DEADLINE=${DEADLINE:-1200}; else DEADLINE=${DEADLINE:-460}; fi
# cap WANT: the stage's timeout cut to what is left before DEADLINE (15 s kept for the report)
cap() { local left=$(( DEADLINE - $(elapsed) - 15 )); echo $(( $1 < left ? $1 : left )); }
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=3
# pytest-xdist runs several processes on one accelerator: none may grab most of its memory
export XLA_PYTHON_CLIENT_PREALLOCATE=false
unset JAX_DEFAULT_MATMUL_PRECISION  # the point: the default precision

# pure-Python packages the device lacks (dm-pix: SSIM; tqdm: training progress), from wheels
# shipped in the repo; installed only where missing, without dependencies or network
for whl in experiments/accelerator/wheels/*.whl; do
  mod=$(basename "$whl" | cut -d- -f1)
  if ! "$PY" -c "import $mod" 2>/dev/null; then
    "$PY" -m pip install --no-deps --no-index --quiet "$whl" && echo "installed $(basename "$whl")"
  fi
done

# platforms: tests/conftest.py defaults to JAX_PLATFORMS=cpu, so name the accelerator first and
# keep the CPU (host callbacks and eqx.error_if need it; the multi-device and multi-process
# tests pin JAX_PLATFORMS=cpu in their own subprocesses: they need fake host devices)
if [ "$DRY" = 1 ]; then
  export JAX_PLATFORMS=cpu
elif [ -z "${JAX_PLATFORMS:-}" ]; then
  ACC=$(env -u JAX_PLATFORMS "$PY" - <<'EOF' 2>/dev/null
import jax
d = jax.devices()[0]
if d.platform == "gpu":
    print("rocm" if "rocm" in getattr(d.client, "platform_version", "").lower() else "cuda")
elif d.platform != "cpu":
    print(d.platform)
EOF
)
  export JAX_PLATFORMS=${ACC:+$ACC,}cpu
elif [[ ",$JAX_PLATFORMS," != *,cpu,* ]]; then
  export JAX_PLATFORMS=$JAX_PLATFORMS,cpu  # given without the CPU: keep it anyway
fi
echo "JAX_PLATFORMS=$JAX_PLATFORMS  ($(elapsed) s)"
"$PY" experiments/accelerator/report.py env --out "$OUT"

# 1. the suite (default precision); -v lines let a timed-out run still be counted
if [ "$DRY" = 1 ]; then
  TESTS=${DRY_TESTS:-"tests/test_schedules.py tests/test_precision.py::test_levels_scope_and_errors tests/test_precision.py::test_operator_transforms_request_highest"}
  WORKERS=${PYTEST_WORKERS:-2}
  SUITE_TIMEOUT=${SUITE_TIMEOUT:-240}
else
  TESTS=${TESTS:-tests}
  WORKERS=${PYTEST_WORKERS:-8}
  SUITE_TIMEOUT=${SUITE_TIMEOUT:-250}
fi
echo "suite: $TESTS, $WORKERS workers, timeout $SUITE_TIMEOUT s  ($(elapsed) s)"
# shellcheck disable=SC2086
timeout --kill-after=10 "$SUITE_TIMEOUT" "$PY" -m pytest $TESTS -n "$WORKERS" --dist loadfile \
  -p no:cacheprovider -v -rfEs --durations=20 --junitxml="$OUT/junit.xml" \
  > "$OUT/pytest.log" 2>&1
echo $? > "$OUT/pytest.rc"
tail -n 3 "$OUT/pytest.log"

# 2. performance benchmarks (partial JSON is written after every sampler); the train step
#    (flat and tree layouts: two compilations, ~30 s each on an H200) keeps its reserve
if [ "$DRY" = 1 ]; then
  PERF_ARGS="--net tiny --batch 2 --n 5,10 --budget 40 --train-reserve 20"
  PERF_TIMEOUT=${PERF_TIMEOUT:-240}
else
  PERF_ARGS="--net small --batch 64 --n 20,100 --budget 80 --train-reserve 70"
  PERF_TIMEOUT=${PERF_TIMEOUT:-90}
fi
T=$(cap "$PERF_TIMEOUT")
if [ "$T" -ge 20 ]; then
  echo "perf: $PERF_ARGS, timeout $T s  ($(elapsed) s)"
  # shellcheck disable=SC2086
  OUT="$OUT/perf" timeout --kill-after=5 "$T" "$PY" experiments/benchmarks/gpu.py \
    $PERF_ARGS > "$OUT/perf.log" 2>&1
  echo $? > "$OUT/perf.rc"
else
  echo "skipped: $(elapsed) s of $DEADLINE s gone" > "$OUT/perf.log"
fi

# 3. the full train step's rate and MFU, float32 then bfloat16 compute (mfu.json after each)
if [ "$DRY" = 1 ]; then
  MFU_ARGS="tiny 2 3"; MFU_TIMEOUT=${MFU_TIMEOUT:-300}
else
  MFU_ARGS="base 128 20"; MFU_TIMEOUT=${MFU_TIMEOUT:-90}
fi
T=$(cap "$MFU_TIMEOUT")
if [ "$T" -ge 20 ]; then
  echo "train rate / MFU: $MFU_ARGS, timeout $T s  ($(elapsed) s)"
  # shellcheck disable=SC2086
  timeout --kill-after=5 "$T" "$PY" -m jaxir.bench._perf_train mfu $MFU_ARGS "$OUT/mfu.json" \
    > "$OUT/mfu.log" 2>&1
  echo $? > "$OUT/mfu.rc"
else
  echo "skipped: $(elapsed) s of $DEADLINE s gone" > "$OUT/mfu.log"
fi

# 4. float32 against bfloat16 compute for the network itself
if [ "$DRY" = 1 ]; then  # bfloat16 compiles slowly on a CPU
  DTYPE_ARGS="--net tiny --batch 2 --size 16"; DTYPE_TIMEOUT=${DTYPE_TIMEOUT:-240}
else
  DTYPE_ARGS="--net small --batch 64 --size 32"; DTYPE_TIMEOUT=${DTYPE_TIMEOUT:-60}
fi
T=$(cap "$DTYPE_TIMEOUT")
if [ "$T" -ge 20 ]; then
  echo "dtype timing, timeout $T s  ($(elapsed) s)"
  # shellcheck disable=SC2086
  timeout --kill-after=5 "$T" "$PY" experiments/accelerator/report.py dtype \
    --out "$OUT" $DTYPE_ARGS > "$OUT/dtype.log" 2>&1
  echo $? > "$OUT/dtype.rc"
else
  echo "skipped: $(elapsed) s of $DEADLINE s gone" > "$OUT/dtype.log"
fi

echo "report  ($(elapsed) s)"
"$PY" experiments/accelerator/report.py report --out "$OUT" --elapsed "$(elapsed)" \
  --tests "$TESTS" --workers "$WORKERS" --suite-timeout "$SUITE_TIMEOUT"
echo "done in $(elapsed) s: $OUT/accelerator_report.md"
