#!/usr/bin/env bash
# One GPU call for a session's device work, on a bare machine (torch + triton, no network):
# the parts named on the command line, one after the other, each with its own time budget.
#
#   bash benchmarks/gpu_session.sh OUT_DIR PART:SECONDS [PART:SECONDS ...]
#
# Parts:
#   kernels     the kernel benchmark + GPU kernel tests (benchmarks/run_gpu_kernels.sh)
#   train       MAE pretraining and vocoder GAN training side by side (gpu_train_mae.sh,
#               gpu_train_vocoder.sh), on .carry/train_subset
#   vocoder     vocoder GAN training alone (gpu_train_vocoder.sh; $VOCODER_ARGS, also used by
#               train), e.g. VOCODER_ARGS="--init streamcodec/weights/mel-vocoder
#               --disc-warmup-steps 200"
#   pairs       decoded-mel pairs for the vocoder (streamcodec.training.vocoder_pairs, on the
#               CPU cores) of .carry/train_subset/speech through $PAIRS_CODEC (default voice-700),
#               $PAIRS_HOURS (default 1.5) h, to ${TMPDIR:-/tmp}/gpu_session/pairs.npz (stays on
#               the machine; too big to bring back): run it before vocoder, with VOCODER_ARGS=
#               "--pairs /tmp/gpu_session/pairs.npz ..." (benchmarks/results/vocoder/README.md)
#   voicebench  batched voice decode, real-time streams per GPU (gpu_bench_voice.sh)
#   codec       voice codec training (gpu_train_codec.sh; $CODEC_CONFIGS, $CODEC_MANIFESTS)
# e.g. the session of 2026-11-27 (afternoon):
#   WHEELS=.carry/whl_gpu CODEC_CONFIGS="voice-350 voice-1400" CODEC_ARGS="--guidance 2" \
#   VOICEBENCH_ARGS="--streams 1 64 256 1024 4096 --steps 2 4 --chunks 12" \
#   CODEC_MANIFESTS=.carry/gpu_speech/manifest.tsv \
#       bash benchmarks/gpu_session.sh $OUT voicebench:120 codec:380
# CPU plumbing check: GPU_SESSION_CPU=1 PYTHON=.venv/bin/python bash benchmarks/gpu_session.sh \
#   /tmp/gs kernels:30 train:40 vocoder:40 voicebench:60 codec:60
#
# Each part's files are packed into OUT_DIR/PART.tgz as soon as the part ends (the device tool
# returns at most 8 files of 16 MiB), the codec part as OUT_DIR/codec-CONFIG.tgz per
# configuration; OUT_DIR/session.log has the timeline.
set -u
OUT=${1:?usage: gpu_session.sh OUT_DIR PART:SECONDS [PART:SECONDS ...]}
shift
[ $# -gt 0 ] || { echo "gpu_session: name at least one PART:SECONDS" >&2; exit 2; }
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"
export PYTHON=$PY
WORK=${TMPDIR:-/tmp}/gpu_session
mkdir -p "$OUT" "$WORK"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/session.log"
START=$(date +%s)
log() { echo "[$(($(date +%s) - START))s] $*" | tee -a "$LOG"; }
pack() { # pack NAME [PATH]: $WORK/PATH (default NAME) -> $OUT/NAME.tgz
    tar czf "$OUT/$1.tgz" -C "$WORK" "${2:-$1}" && log "packed $1 ($(du -h "$OUT/$1.tgz" | cut -f1))"
}
CPU=${GPU_SESSION_CPU:-0}
log "repo $REPO; parts $*"
{ nvidia-smi || true; "$PY" -c "import torch, triton; print(torch.__version__, triton.__version__)"; } \
    >>"$LOG" 2>&1

part_kernels() { # DIR SECONDS
    local mode=gpu
    [ "$CPU" = 1 ] && mode=--cpu-smoke
    BENCH_TOTAL_S=$2 timeout -k 10 $(($2 + 30)) \
        bash "$REPO/benchmarks/run_gpu_kernels.sh" "$1" $mode >"$1/stdout.log" 2>&1
}

part_train() { # DIR SECONDS: MAE and vocoder side by side
    mkdir -p "$1/mae" "$1/vocoder"
    if [ "$CPU" = 1 ]; then
        export DEVICE=cpu VOC_DEVICE=cpu VOC_WORKERS=2 EXTRA_ARGS="--batch-size 2"
    fi
    timeout -k 10 $(($2 + 45)) bash "$REPO/benchmarks/gpu_train_mae.sh" "$1/mae" "$2" \
        >"$1/mae/stdout.log" 2>&1 &
    local mae=$!
    part_vocoder "$1/vocoder" "$2" &
    local voc=$! rc=0
    wait $mae || rc=$?
    wait $voc || rc=$?
    return $rc
}

part_vocoder() { # DIR SECONDS: vocoder GAN training alone; $VOCODER_ARGS: more options, e.g.
    # "--init streamcodec/weights/mel-vocoder --disc-warmup-steps 200" (a folder from an earlier
    # run, with its discriminators.safetensors, continues the discriminators too)
    local extra=()
    read -r -a extra <<<"${VOCODER_ARGS:-}"
    mkdir -p "$1"
    if [ "$CPU" = 1 ]; then
        export VOC_DEVICE=cpu VOC_WORKERS=2
        extra+=(--batch-size 2)
    fi
    timeout -k 10 $(($2 + 45)) bash "$REPO/benchmarks/gpu_train_vocoder.sh" "$1" "$2" \
        "${extra[@]}" >"$1/stdout.log" 2>&1
}

part_pairs() { # DIR SECONDS: the npz goes beside the part's folder, only the log comes back
    local workers=16
    [ "$CPU" = 1 ] && workers=2
    timeout -k 10 "$2" "$PY" -m streamcodec.training.vocoder_pairs \
        --codec "${PAIRS_CODEC:-voice-700}" --hours "${PAIRS_HOURS:-1.5}" --workers $workers \
        --manifest "$REPO/.carry/train_subset/speech/manifest.tsv" --out "$WORK/pairs.npz" \
        --no-progress >"$1/stdout.log" 2>&1
}

part_voicebench() { # DIR SECONDS; $VOICEBENCH_ARGS: more bench_voice.py options
    local extra=()
    read -r -a extra <<<"${VOICEBENCH_ARGS:-}"
    [ "$CPU" = 1 ] && extra+=(--device cpu --streams 1 2 --chunks 5)
    timeout -k 10 "$2" bash "$REPO/benchmarks/gpu_bench_voice.sh" "$1" "${extra[@]}" \
        >"$1/stdout.log" 2>&1
}

part_codec() { # DIR SECONDS: the training budget ends 20 s before the part's, for the export;
    # $CODEC_ARGS: more `streamcodec train codec` options
    local extra=()
    read -r -a extra <<<"${CODEC_ARGS:-}"
    if [ "$CPU" = 1 ]; then
        extra+=(--preset tiny --max-steps 3)
        export CODEC_DEVICE=cpu CODEC_WORKERS=2
    fi
    CODEC_CKPT_DIR=$1/ckpt timeout -k 10 $(($2 + 30)) \
        bash "$REPO/benchmarks/gpu_train_codec.sh" "$1" $(($2 - 20)) "${extra[@]}" \
        >"$1/stdout.log" 2>&1
    rm -rf "$1/ckpt"  # optimiser state: too big to bring back
}

for SPEC in "$@"; do
    NAME=${SPEC%%:*}
    SECONDS_=${SPEC#*:}
    if ! declare -F "part_$NAME" >/dev/null || ! [[ $SECONDS_ =~ ^[0-9]+$ ]]; then
        log "bad part '$SPEC' (parts: kernels train vocoder pairs voicebench codec, as NAME:SECONDS)"
        continue
    fi
    rm -rf "${WORK:?}/$NAME"
    [ "$NAME" = pairs ] && rm -f "$WORK/pairs.npz"
    mkdir -p "$WORK/$NAME"
    log "$NAME: start (budget ${SECONDS_}s)"
    "part_$NAME" "$WORK/$NAME" "$SECONDS_"
    log "$NAME: done (rc $?)"
    if [ "$NAME" = codec ]; then  # one archive per configuration (~16 MB of weights each)
        for D in "$WORK"/codec/*/; do
            D=$(basename "$D")
            pack "codec-$D" "codec/$D"
        done
        cp "$WORK/codec/stdout.log" "$OUT/codec_stdout.log" 2>/dev/null
    elif [ "$NAME" = train ]; then  # MAE encoder + vocoder and its discriminators: > 16 MiB
        pack train-mae train/mae
        pack train-vocoder train/vocoder
    else
        pack "$NAME"
    fi
done
{ nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true; } >>"$LOG" 2>&1
log "session done"
