#!/usr/bin/env bash
# Keep bundled weights that a GPU job does not need from travelling to the device machine.
#
# The device tool uploads the checkout's tracked and not-ignored files plus the carried paths,
# 64 MiB in all; the bundled weights alone are ~68 MB. `on` untracks the listed weight folders
# in the index only (the files stay on disk) and ignores them in .git/info/exclude, so they
# stay behind; `off` restores the index and the exclude file. Nothing is committed: run `off`
# right after the device call, and never commit while `on`.
#
#   bash benchmarks/device_slim.sh on [FOLDER ...]   # default: voice-350 and voice-1400 weights
#   bash benchmarks/device_slim.sh off
#   bash benchmarks/device_slim.sh size              # MB that would travel (without carry)
set -euo pipefail
cd "$(dirname "$0")/.."
EXCLUDE=.git/info/exclude
LIST=.git/device_slim.list  # the exclude lines `on` added, for `off`
size() {
    { git ls-files -z; git ls-files -z --others --exclude-standard; } \
        | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {printf "%.1f MB\n", s / 1e6}'
}
case "${1:-}" in
    on)
        shift
        FOLDERS=("$@")
        [ ${#FOLDERS[@]} -gt 0 ] || FOLDERS=(streamcodec/weights/voice/voice-350 \
            streamcodec/weights/voice/voice-1400)
        if [ -e "$LIST" ]; then
            echo "device_slim: already on (run 'off' first)" >&2
            exit 1
        fi
        for F in "${FOLDERS[@]}"; do
            [ -d "$F" ] || { echo "device_slim: no folder $F" >&2; exit 2; }
            git rm -r -q --cached "$F"
            echo "/$F/" >>"$LIST"
            echo "/$F/" >>"$EXCLUDE"
        done
        echo "travels now: $(size)"
        ;;
    off)
        git reset -q
        if [ -e "$LIST" ]; then
            grep -vxF -f "$LIST" "$EXCLUDE" >"$EXCLUDE.tmp" || true
            mv "$EXCLUDE.tmp" "$EXCLUDE"
            rm -f "$LIST"
        fi
        echo "restored; travels: $(size)"
        ;;
    size) size ;;
    *)
        echo "usage: $0 on [FOLDER ...] | off | size" >&2
        exit 2
        ;;
esac
