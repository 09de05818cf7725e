#!/usr/bin/env bash
# MAE pretraining of the semantic encoder on one CUDA GPU, from a bare checkout.
#
# usage: benchmarks/gpu_train_mae.sh OUT_DIR [BUDGET_S=150] [DATA_DIR=.carry/train_subset]
#
# BUDGET_S is the wall time of the Python process: decoding the subset with a process
# pool (~10-40 s), then training until BUDGET_S - 10 s, then the export (a few s).
# The learning-rate schedule ends at that stop. Installing the audio wheels (if needed) and
# the import check come before, a few seconds.
# DATA_DIR holds {speech,music,noise}/manifest.tsv (train/ material only).
# Writes into OUT_DIR exactly:
#   encoder.safetensors  fp16 encoder weights (~12.7 MB)
#   config.json          format version, encoder config, training record (steps, hours, GPU)
#   loss.csv             step, elapsed_s, loss, lr, audio_h
#   train.log            the run's log (small)
# The resumable checkpoint (with optimiser state) stays in $WORK (default /tmp/mae_gpu_run,
# emptied first unless RESUME=1).
# Preset "gpu": d256 x 8 layers, batch 256 x 4 s crops, bf16 autocast, lr 1.5e-3.
set -euo pipefail

OUT=${1:?usage: $0 OUT_DIR [BUDGET_S] [DATA_DIR]}
BUDGET=${2:-150}
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"
DATA=${3:-$REPO/.carry/train_subset}
WORK=${WORK:-/tmp/mae_gpu_run}
DEVICE=${DEVICE:-cuda}          # DEVICE=cpu EXTRA_ARGS="--batch-size 4" tests the plumbing
EXTRA_ARGS=${EXTRA_ARGS:-}
mkdir -p "$OUT"

"$PY" -c "import numpy, torch, tqdm, safetensors, soxr
assert '$DEVICE' == 'cpu' or torch.cuda.is_available()" \
    || { echo "gpu_train_mae: missing a dependency or no CUDA" >&2; exit 3; }

WORKERS=$(( $(nproc) > 16 ? 16 : $(nproc) ))
[ "${RESUME:-0}" = 1 ] || rm -rf "$WORK"   # RESUME=1 continues $WORK/ckpt.pt
# the recipe module directly: `python -m streamcodec` would import every CLI command,
# and some need packages (aiortc, ...) that a bare GPU machine lacks
"$PY" -m streamcodec.training.mae --preset gpu --data "$DATA" --out "$WORK" \
    --time-budget-s "$BUDGET" --stop-after-s $((BUDGET - 10)) \
    --workers "$WORKERS" --device "$DEVICE" \
    --ckpt-every-s 100000 --no-progress $EXTRA_ARGS 2>&1 | tee "$OUT/train.log"

cp "$WORK/export/encoder.safetensors" "$WORK/export/config.json" "$WORK/loss.csv" "$OUT/"
ls -l "$OUT"
