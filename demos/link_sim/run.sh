#!/usr/bin/env bash
# The link-simulation sweep and reliability runs; writes report.md, plots, audio, summary.json
# and grid.csv to the directory given first (default benchmarks/results/link_sim).
# About 6 minutes on 2 cores. Extra arguments go to `streamcodec simulate`.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
OUT=${1:-benchmarks/results/link_sim}
exec "$PY" -m streamcodec simulate --out "$OUT" "${@:2}"
