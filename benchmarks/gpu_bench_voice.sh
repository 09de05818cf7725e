#!/usr/bin/env bash
# Batched voice decode on one CUDA GPU: real-time streams per GPU, with and without Triton.
#
#   benchmarks/gpu_bench_voice.sh OUT_DIR [extra bench_voice.py options]
#
# Runs `benchmarks/bench_voice.py --gpu-batched` for voice-700 (override with --configs ...):
# S streams (default 1 16 64 256 1024) decoded together, chunk by chunk (KV-cached decoder,
# guided pair in the same batch, batched vocoder), at 1, 2 and 4 steps, guidance 1 and 2,
# fp32 and bf16, each with the Triton kernels and with STREAMCODEC_DISABLE_TRITON=1.
# Uses trained weights from streamcodec/weights/voice/<config> when present, else the same
# architecture at random init (speed does not depend on the weights). Writes to OUT_DIR:
#   voice_gpu.json / voice_gpu.md (fp32),  bf16/voice_gpu.json / bf16/voice_gpu.md
# (a few KB). Needs torch with CUDA, triton, numpy, safetensors; no av/soxr, no data.
# $PYTHON picks the interpreter (default python3).
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 OUT_DIR [extra options]" >&2
    exit 2
fi
OUT=$1
shift
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT/bf16"
COMMON=(--gpu-batched --configs voice-700 --steps 1 2 4 --guidance 1 2 --chunks 20)
"$PY" "$REPO/benchmarks/bench_voice.py" "${COMMON[@]}" --dtype fp32 --results "$OUT" "$@"
"$PY" "$REPO/benchmarks/bench_voice.py" "${COMMON[@]}" --dtype bf16 --results "$OUT/bf16" "$@"
