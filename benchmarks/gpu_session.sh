#!/usr/bin/env bash
# One GPU call for the session's device work, on a bare machine (torch + triton, no network):
#   1. the kernel benchmark + GPU kernel tests (alone on the GPU, so timings are clean);
#   2. MAE pretraining of the semantic encoder and vocoder GAN training, side by side.
#
#   bash benchmarks/gpu_session.sh OUT_DIR [KERNEL_S=200] [TRAIN_S=300]
#   CPU plumbing check: GPU_SESSION_CPU=1 PYTHON=.venv/bin/python bash benchmarks/gpu_session.sh /tmp/gs 30 40
#
# Each part's files are packed into one archive in OUT_DIR as soon as the part ends
# (the device tool returns at most 8 files): kernels.tgz, mae.tgz, vocoder.tgz, session.log.
set -u
OUT=${1:?usage: gpu_session.sh OUT_DIR [KERNEL_S] [TRAIN_S]}
KERNEL_S=${2:-200}
TRAIN_S=${3:-300}
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${TMPDIR:-/tmp}/gpu_session
PY=${PYTHON:-python3}
mkdir -p "$OUT" "$WORK"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/session.log"
START=$(date +%s)
log() { echo "[$(($(date +%s) - START))s] $*" | tee -a "$LOG"; }
pack() { # pack NAME: $WORK/NAME -> $OUT/NAME.tgz
    tar czf "$OUT/$1.tgz" -C "$WORK" "$1" && log "packed $1 ($(du -h "$OUT/$1.tgz" | cut -f1))"
}

rm -rf "$WORK"/{kernels,mae,vocoder}
mkdir -p "$WORK"/{kernels,mae,vocoder}
log "repo $REPO"
{ nvidia-smi || true; "$PY" -c "import torch, triton; print(torch.__version__, triton.__version__)"; } \
    >>"$LOG" 2>&1
if ! "$PY" -c "import av, soxr" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --target /tmp/site "$REPO"/.carry/whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

if [ "${GPU_SESSION_CPU:-0}" = 1 ]; then
    KMODE=--cpu-smoke
    export DEVICE=cpu VOC_DEVICE=cpu VOC_WORKERS=2 EXTRA_ARGS="--batch-size 2"
else
    KMODE=gpu
fi

log "kernels: start (budget ${KERNEL_S}s)"
BENCH_TOTAL_S=$KERNEL_S PYTHON=$PY timeout -k 10 $((KERNEL_S + 30)) \
    bash "$REPO/benchmarks/run_gpu_kernels.sh" "$WORK/kernels" $KMODE >>"$WORK/kernels/stdout.log" 2>&1
log "kernels: done (rc $?)"
pack kernels

log "training: MAE and vocoder side by side (budget ${TRAIN_S}s each)"
PYTHON=$PY timeout -k 10 $((TRAIN_S + 45)) \
    bash "$REPO/benchmarks/gpu_train_mae.sh" "$WORK/mae" "$TRAIN_S" >"$WORK/mae/stdout.log" 2>&1 &
MAE_PID=$!
timeout -k 10 $((TRAIN_S + 45)) \
    bash "$REPO/benchmarks/gpu_train_vocoder.sh" "$WORK/vocoder" "$TRAIN_S" >"$WORK/vocoder/stdout.log" 2>&1 &
VOC_PID=$!
wait $MAE_PID
log "mae: done (rc $?)"
pack mae
wait $VOC_PID
log "vocoder: done (rc $?)"
pack vocoder
{ nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true; } >>"$LOG" 2>&1
log "session done"
