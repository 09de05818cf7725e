#!/usr/bin/env bash
# Serve the WebRTC peer demo page (then open http://127.0.0.1:8080/ in a browser).
# Extra arguments go to `streamcodec webrtc-demo`, e.g. --link-rate 8000 --loss 10 --codec opus-6k
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
exec "$PY" -m streamcodec webrtc-demo "$@"
