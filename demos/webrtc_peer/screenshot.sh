#!/usr/bin/env bash
# Regenerate screenshot.png: headless Chromium with a fake microphone playing a 14.7 s dev
# clip (the bundled 9.3 s clip without ../shared), through a 16 kbit/s link with 5% bursty
# loss; also prints the round-trip envelope correlation. Needs `apt-get install chromium`.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
CLIP=../shared/data/dev/speech/1867/1867-154075-0000.flac
AUDIO=()
[ -f "$CLIP" ] && AUDIO=(--audio "$CLIP")
exec "$PY" -m streamcodec webrtc-demo --port 0 --link-rate 16000 --loss 5 "${AUDIO[@]}" \
    --seconds 14 --screenshot demos/webrtc_peer/screenshot.png "$@"
