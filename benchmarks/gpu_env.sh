# Sourced by the gpu_*.sh scripts (bash): the interpreter ($PY, from $PYTHON, default python3),
# PYTHONPATH with the checkout, and the audio wheels a bare GPU machine lacks.
#
# Reading the training corpus needs soxr and a decoder: PyAV, or soundfile (libsndfile; far
# smaller, so it fits beside the data in the 64 MiB that travel to the device machine).
# When they are missing, every wheel in $WHEELS (default .carry/whl) is installed into
# /tmp/site, which goes in front of PYTHONPATH.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
_gpu_env_audio_ok() {
    "$PY" -c "import importlib.util as u, soxr
assert u.find_spec('av') or u.find_spec('soundfile')" 2>/dev/null
}
if ! _gpu_env_audio_ok; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site \
        "${WHEELS:-$REPO/.carry/whl}"/*.whl
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
    _gpu_env_audio_ok || echo "gpu_env: no audio decoder (av or soundfile) after installing wheels" >&2
fi
