#!/usr/bin/env bash
# Train the mel vocoder on one CUDA GPU for a fixed wall-time budget.
#
#   benchmarks/gpu_train_vocoder.sh OUT_DIR BUDGET_S [extra `streamcodec train vocoder` options]
#
# BUDGET_S counts from the start of the Python process (corpus decoding included);
# the run stops ~15 s before it to write its files. Writes to OUT_DIR:
#   model.safetensors  EMA generator, fp16 (~7 MB)     } the shipped format; pass OUT_DIR to
#   config.json        generator config + training info} `--init` to continue training later
#   losses.csv         losses every 50 steps
#   train.log          log
# The full checkpoint (discriminators, optimisers) goes to $VOC_CKPT_DIR
# (default /tmp/vocoder_ckpt), not to OUT_DIR.
# Data: .carry/train_subset/{speech,music,noise}/manifest.tsv (never dev/ or probe/).
# Needs torch with CUDA, numpy, tqdm, safetensors; the audio wheels come from $WHEELS when
# missing (benchmarks/gpu_env.sh). $PYTHON picks the interpreter (default python3).
# VOC_DEVICE=cpu tests the plumbing without a GPU (add e.g. --batch-size 2).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 OUT_DIR BUDGET_S [extra options]" >&2
    exit 2
fi
OUT=$1
BUDGET=$2
shift 2
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"
"$PY" -c "import numpy, torch, tqdm, safetensors, soxr" \
    || { echo "gpu_train_vocoder: a dependency is missing" >&2; exit 3; }
S="$REPO/.carry/train_subset"
mkdir -p "$OUT"
# the recipe module directly: `python -m streamcodec` imports every CLI command, and
# some need packages (aiortc, ...) that a bare GPU machine lacks
exec "$PY" -m streamcodec.training.vocoder \
    --out "$OUT" --preset gpu --device "${VOC_DEVICE:-cuda}" \
    --manifest "$S/speech/manifest.tsv" --manifest "$S/music/manifest.tsv" \
    --manifest "$S/noise/manifest.tsv" --noise-manifest "$S/noise/manifest.tsv" \
    --budget-s "$BUDGET" --workers "${VOC_WORKERS:-16}" \
    --ckpt-dir "${VOC_CKPT_DIR:-/tmp/vocoder_ckpt}" --ckpt-every-s 120 \
    --log-every 50 --no-plot --no-progress "$@"
