#!/usr/bin/env bash
# Kernel benchmark + GPU tests end to end on a bare GPU box (torch + triton, no install,
# no network), within a total time budget (BENCH_TOTAL_S, default 280 s; the summary
# adds at most 15 s).
#
#   bash benchmarks/run_gpu_kernels.sh OUT_DIR            # GPU run
#   PYTHON=.venv/bin/python bash benchmarks/run_gpu_kernels.sh OUT_DIR --cpu-smoke
#                                                         # plumbing test: tiny shapes, interpreter
#
# Each part runs in its own process under `timeout`, with a deadline that is cumulative
# (slack from a fast part goes to the later ones); every part writes its rows as it goes,
# so a part cut short still leaves results. Writes to OUT_DIR: env.json, copy.csv,
# launch.csv, pytest.txt, pytest.xml, gn.csv, attention.csv, kernels.md, run.log.
set -u
OUT=${1:?usage: run_gpu_kernels.sh OUT_DIR [--cpu-smoke]}
MODE=${2:-gpu}
PY=${PYTHON:-python3}
TOTAL_S=${BENCH_TOTAL_S:-280}
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/run.log"

# `streamcodec` imports from the checkout: streamcodec/__init__.py maps `streamcodec.kernels`
# to the top-level kernels/ folder when the package is not installed.
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
CACHE=${TMPDIR:-/tmp}/streamcodec-kernel-bench
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$CACHE/triton}
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$CACHE/inductor}

BENCH=("$PY" "$REPO/benchmarks/bench_kernels.py")
EXTRA=()
if [ "$MODE" = "--cpu-smoke" ]; then
  export TRITON_INTERPRET=1
  EXTRA=(--device cpu --dry-run --no-compile)
fi

# Hard per-part limit (the parts also stop themselves at PART_BUDGET_S).
HAVE_TIMEOUT=$(command -v timeout >/dev/null && echo 1 || echo 0)
limited() { # limited SECONDS CMD...
  local t=$1
  shift
  if [ "$HAVE_TIMEOUT" = 1 ]; then timeout -k 10 "$t" "$@"; else "$@"; fi
}

START=$(date +%s)
log() { echo "[$(($(date +%s) - START))s] $*" | tee -a "$LOG"; }

# run_part NAME END_S CMD...: run CMD with a timeout that ends END_S seconds after start
# (scaled to TOTAL_S); returns without failing the script.
run_part() {
  local name=$1 end_s=$2
  shift 2
  local limit=$((end_s * TOTAL_S / 280 - ($(date +%s) - START)))
  if [ "$limit" -lt 10 ]; then
    log "$name: skipped (no time left)"
    return 0
  fi
  log "$name: start (limit ${limit}s)"
  # Parts read the budget they may spend measuring from PART_BUDGET_S.
  PART_BUDGET_S=$((limit > 40 ? limit - 20 : limit / 2)) \
    limited "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    log "$name: killed at its time limit (rc $rc); partial results kept"
  else
    log "$name: done (rc $rc)"
  fi
  return 0
}

log "repo $REPO, python $("$PY" -c 'import sys; print(sys.version.split()[0])' 2>&1), mode $MODE"
run_part env 20 "${BENCH[@]}" env --out "$OUT" "${EXTRA[@]}"
run_part copy 35 "${BENCH[@]}" copy --out "$OUT" "${EXTRA[@]}"
run_part launch 45 "${BENCH[@]}" launch --out "$OUT" "${EXTRA[@]}"

if "$PY" -c "import pytest" 2>/dev/null; then
  # Compiled kernels vs the references (interpreter-only tests skip themselves on a GPU).
  run_part pytest 115 bash -c "\"$PY\" -m pytest -q -p no:cacheprovider -rfEs \
    \"$REPO/tests/test_kernels_attention.py\" \"$REPO/tests/test_kernels_unet_step.py\" \
    \"$REPO/tests/test_ops.py\" --junitxml=\"$OUT/pytest.xml\" 2>&1 | tee \"$OUT/pytest.txt\"; \
    exit \${PIPESTATUS[0]}"
else
  echo "pytest is not installed on this machine: GPU tests not run" | tee "$OUT/pytest.txt" >>"$LOG"
fi

# The UNet step first (its bar is against torch.compile, whose compiles take time), then
# attention, which the per-shape autotuning makes the longer part.
run_part gn 185 bash -c "\"\$@\" --budget-s \$PART_BUDGET_S --compile-budget-s \
  \$((PART_BUDGET_S * 2 / 3))" _ "${BENCH[@]}" gn --out "$OUT" "${EXTRA[@]}"
run_part attention 280 bash -c "\"\$@\" --budget-s \$PART_BUDGET_S --compile-budget-s \
  \$((PART_BUDGET_S / 2))" _ "${BENCH[@]}" attention --out "$OUT" "${EXTRA[@]}"
log "summary: start"
limited 15 "${BENCH[@]}" summary --out "$OUT" >>"$LOG" 2>&1
log "summary: done (rc $?)"
[ "$HAVE_TIMEOUT" = 1 ] || log "warning: no 'timeout' command; parts ran without hard limits"
log "finished; results in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
