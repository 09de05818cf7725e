#!/usr/bin/env bash
# Train the voice codecs (acoustic encoder + flow decoder) on one CUDA GPU for a wall-time budget.
#
#   benchmarks/gpu_train_codec.sh OUT_DIR BUDGET_S [extra `streamcodec train codec` options]
#
# CODEC_CONFIGS (default "voice-700 voice-350 voice-1400") are trained one after the other,
# each for BUDGET_S / (number of configs) seconds counted from the start of its Python process
# (the first one also computes the frozen semantic features of the subset on the GPU, cached in
# $CODEC_CACHE, default /tmp/codec_cache, for the others). Writes OUT_DIR/<config>/:
#   model.safetensors  EMA acoustic encoder + decoder, fp16 (~14 MB)  } the shipped format:
#   config.json        configuration + training info                   } streamcodec.load(
#   losses.csv, train.log                                                "voice-700", weights=DIR)
# The full checkpoint (optimiser, raw weights) goes to $CODEC_CKPT_DIR/<config>
# (default /tmp/codec_ckpt), not to OUT_DIR; pass `--init OUT_DIR/<config>` later to continue.
# Data: the manifests in $CODEC_MANIFESTS (space-separated; default
# .carry/train_subset/{speech,music,noise}/manifest.tsv), train/ material only (never dev/ or
# probe/). Needs the semantic weights in streamcodec/weights/semantic (encoder + codebooks),
# torch with CUDA, numpy, tqdm, safetensors; the audio wheels come from $WHEELS when missing
# (benchmarks/gpu_env.sh).
# $PYTHON picks the interpreter (default python3). CODEC_DEVICE=cpu tests the plumbing without
# a GPU (with e.g. --preset tiny --max-steps 3).
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
    || { echo "gpu_train_codec: a dependency is missing" >&2; exit 3; }
S=$REPO/.carry/train_subset
read -r -a MANIFESTS <<<"${CODEC_MANIFESTS:-$S/speech/manifest.tsv $S/music/manifest.tsv $S/noise/manifest.tsv}"
MANIFEST_ARGS=()
for M in "${MANIFESTS[@]}"; do MANIFEST_ARGS+=(--manifest "$M"); done
CONFIGS=${CODEC_CONFIGS:-"voice-700 voice-350 voice-1400"}
N=$(echo $CONFIGS | wc -w)
EACH=$((BUDGET / N))
mkdir -p "$OUT"
STATUS=0
for CFG in $CONFIGS; do
    echo "== $CFG: ${EACH} s" >&2
    # the recipe module directly: `python -m streamcodec` imports every CLI command, and
    # some need packages (aiortc, ...) that a bare GPU machine lacks
    "$PY" -m streamcodec.training.codec \
        --config "$CFG" --out "$OUT/$CFG" --preset gpu --device "${CODEC_DEVICE:-cuda}" \
        "${MANIFEST_ARGS[@]}" \
        --budget-s "$EACH" --workers "${CODEC_WORKERS:-16}" \
        --cache-dir "${CODEC_CACHE:-/tmp/codec_cache}" \
        --ckpt-dir "${CODEC_CKPT_DIR:-/tmp/codec_ckpt}/$CFG" --ckpt-every-s 120 \
        --val-every-s 60 --log-every 50 --no-plot --no-progress "$@" || STATUS=$?
done
exit $STATUS
