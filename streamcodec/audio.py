"""Audio I/O on PyAV: read anything FFmpeg decodes to 16 kHz mono float32, write WAV/FLAC/Opus.

Resampling uses ``soxr`` (the SoX resampler, "VHQ" quality): a well-kept library
with a better anti-aliasing filter than libswresample's defaults, and the same
one the corpus itself was prepared with.

Where PyAV is not installed (a bare GPU training machine that received only the
training recipe and a few wheels), :func:`load_audio` reads files through
libsndfile (the ``soundfile`` package: WAV, FLAC, Ogg Vorbis/Opus) instead; every
other function here needs PyAV.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soxr

try:
    import av
except ImportError:  # only load_audio works then, through soundfile (see the module docstring)
    av = None

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
AudioSource = str | os.PathLike | bytes | bytearray | BinaryIO

#: file suffix -> (container format, codec name)
_WRITERS = {
    ".wav": ("wav", "pcm_s16le"),
    ".flac": ("flac", "flac"),
    ".opus": ("ogg", "libopus"),
    ".ogg": ("ogg", "libopus"),
}


def check_pcm(pcm: object, name: str = "pcm") -> np.ndarray:
    """Validate a mono signal and return it as a contiguous ``[T] float32`` array.

    Raises ``TypeError`` for non-arrays and non-float dtypes (integer PCM must be
    scaled to [-1, 1] first) and ``ValueError`` for wrong shapes or NaN/Inf.
    """
    if not isinstance(pcm, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(pcm).__name__}")
    if pcm.dtype not in (np.float32, np.float64):
        hint = " (scale integer PCM to [-1, 1] floats first)" if pcm.dtype.kind in "iu" else ""
        raise TypeError(f"{name} must be float32 or float64, got dtype {pcm.dtype}{hint}")
    if pcm.ndim != 1:
        raise ValueError(f"{name} must be mono with shape [T], got shape {tuple(pcm.shape)}")
    if not np.isfinite(pcm).all():
        bad = int((~np.isfinite(pcm)).sum())
        raise ValueError(f"{name} has {bad} NaN/Inf samples")
    return np.ascontiguousarray(pcm, dtype=np.float32)


def resample(pcm: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Resample ``pcm: [T] float32`` from ``from_hz`` to ``to_hz`` (soxr VHQ)."""
    for label, rate in (("from_hz", from_hz), ("to_hz", to_hz)):
        if not isinstance(rate, (int, np.integer)) or rate <= 0:
            raise ValueError(f"{label} must be a positive integer rate, got {rate!r}")
    pcm = check_pcm(pcm)
    if from_hz == to_hz:
        return pcm
    return soxr.resample(pcm, from_hz, to_hz, quality="VHQ").astype(np.float32, copy=False)


def _open_input(src: AudioSource) -> tuple[av.container.InputContainer, str]:
    if isinstance(src, (bytes, bytearray)):
        if len(src) == 0:
            raise ValueError("audio bytes are empty")
        return av.open(io.BytesIO(bytes(src)), mode="r"), "<bytes>"
    if isinstance(src, (str, os.PathLike)):
        path = _audio_file(src)
        return av.open(str(path), mode="r"), str(path)
    if hasattr(src, "read"):
        return av.open(src, mode="r"), getattr(src, "name", "<file object>")
    raise TypeError(
        f"audio source must be a path, bytes or a binary file object, got {type(src).__name__}"
    )


def load_audio(src: AudioSource, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode ``src`` (path, bytes or binary file object; any format, rate, channels).

    Returns ``[T] float32`` mono at ``sample_rate`` (channels averaged).
    Raises ``FileNotFoundError`` for a missing path and ``ValueError`` for data
    that is not audio, holds no samples, or decodes to NaN/Inf.
    """
    if av is None:
        return _load_libsndfile(src, sample_rate)
    try:
        container, label = _open_input(src)
    except (av.error.InvalidDataError, av.error.FFmpegError) as exc:
        raise ValueError(f"not a readable audio file: {_label(src)} ({exc})") from exc
    with container:
        if not container.streams.audio:
            raise ValueError(f"no audio stream in {label}")
        stream = container.streams.audio[0]
        chunks: list[np.ndarray] = []
        in_rate = stream.rate or stream.codec_context.sample_rate
        try:
            for frame in container.decode(stream):
                chunks.append(_frame_to_mono(frame))
                in_rate = frame.sample_rate
        except (av.error.InvalidDataError, av.error.FFmpegError) as exc:
            raise ValueError(f"could not decode audio in {label} ({exc})") from exc
    if not chunks or sum(c.size for c in chunks) == 0:
        raise ValueError(f"audio in {label} is empty (no samples decoded)")
    pcm = np.concatenate(chunks)
    if not np.isfinite(pcm).all():
        raise ValueError(f"audio in {label} holds NaN/Inf samples")
    return resample(pcm, int(in_rate), sample_rate)


def _load_libsndfile(src: AudioSource, sample_rate: int) -> np.ndarray:
    """:func:`load_audio` without PyAV: decode with libsndfile (``soundfile``)."""
    try:
        import soundfile
    except ImportError as exc:
        raise ImportError("reading audio needs PyAV (`pip install av`) or soundfile") from exc
    if isinstance(src, (str, os.PathLike)):
        src = str(_audio_file(src))
    elif isinstance(src, (bytes, bytearray)):
        src = io.BytesIO(bytes(src))
    try:
        data, in_rate = soundfile.read(src, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        raise ValueError(f"not a readable audio file: {_label(src)} ({exc})") from exc
    if data.size == 0:
        raise ValueError(f"audio in {_label(src)} is empty (no samples decoded)")
    pcm = data.mean(axis=1)
    if not np.isfinite(pcm).all():
        raise ValueError(f"audio in {_label(src)} holds NaN/Inf samples")
    return resample(pcm, int(in_rate), sample_rate)


def _audio_file(src: str | os.PathLike) -> Path:
    """``src`` as a path to an existing file (FileNotFoundError / ValueError otherwise)."""
    path = Path(src)
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    if path.is_dir():
        raise ValueError(f"expected an audio file, got a directory: {path}")
    return path


def _label(src: AudioSource) -> str:
    return str(src) if isinstance(src, (str, os.PathLike)) else f"<{type(src).__name__}>"


def _frame_to_mono(frame: av.AudioFrame) -> np.ndarray:
    """One decoded frame -> ``[T] float32`` mono (mean over channels)."""
    data = frame.to_ndarray()
    fmt = frame.format
    if data.dtype.kind in "iu":
        scale = float(2 ** (8 * data.dtype.itemsize - 1))
        data = data.astype(np.float32) / scale
        if data.dtype.kind == "u":  # unsigned 8-bit PCM is offset-binary
            data = data - 1.0
    data = data.astype(np.float32, copy=False)
    channels = len(frame.layout.channels)
    if fmt.is_planar:
        data = data.reshape(channels, -1)
    else:
        data = data.reshape(-1, channels).T
    return data.mean(axis=0)


def save_audio(path: str | os.PathLike, pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write ``pcm: [T] float32 in [-1, 1]`` to WAV (16-bit), FLAC (16-bit) or Opus (.opus/.ogg).

    The format follows the suffix. Samples beyond [-1, 1] are clipped.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _WRITERS:
        raise ValueError(f"cannot write {suffix!r} files; use one of {sorted(_WRITERS)}")
    pcm = check_pcm(pcm)
    if pcm.size == 0:
        raise ValueError("refusing to write empty audio")
    fmt, codec_name = _WRITERS[suffix]
    if codec_name == "libopus" and sample_rate not in (8000, 12000, 16000, 24000, 48000):
        pcm, sample_rate = resample(pcm, sample_rate, 48000), 48000
    pcm16 = (np.clip(pcm, -1.0, 1.0) * 32767.0).round().astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format=fmt) as out:
        stream = out.add_stream(codec_name, rate=sample_rate, layout="mono")
        if codec_name == "libopus":
            stream.bit_rate = 32000
        # flac and pcm_s16le take s16 directly; libopus does too
        step = 960 if codec_name == "libopus" else 4096
        resampler = None
        target_fmt = stream.codec_context.format.name if stream.codec_context.format else "s16"
        if target_fmt != "s16":
            resampler = av.AudioResampler(format=target_fmt, layout="mono", rate=sample_rate)
        pts = 0
        for start in range(0, pcm16.size, step):
            chunk = pcm16[start : start + step]
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="s16", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = pts
            pts += chunk.size
            frames = resampler.resample(frame) if resampler else [frame]
            for f in frames:
                out.mux(stream.encode(f))
        if resampler:
            for f in resampler.resample(None):
                out.mux(stream.encode(f))
        out.mux(stream.encode(None))
    return path


class FirResampler:
    """Streaming resampler by an integer ratio (e.g. 16 -> 8, 8 -> 16, 48 -> 16 kHz).

    A linear-phase Kaiser-windowed sinc FIR designed at the higher rate, with its
    history kept between calls, so any chunking of the input gives exactly the
    output of one call on the whole signal. Unlike soxr's streaming mode it holds
    nothing back: the only latency is the filter's group delay,
    ``delay_s = (taps - 1) / 2 / max(from_hz, to_hz)``. Used by the narrow-band
    baselines (Codec 2, AMR-NB) and to bring libopus's 48 kHz output to 16 kHz.
    """

    def __init__(self, from_hz: int, to_hz: int, taps_per_ratio: int = 48) -> None:
        hi, lo = max(from_hz, to_hz), min(from_hz, to_hz)
        if lo <= 0 or hi % lo:
            raise ValueError(
                f"rates must be positive with an integer ratio, got {from_hz}->{to_hz}"
            )
        self.ratio = hi // lo
        self.up = to_hz > from_hz
        taps = 2 * taps_per_ratio * self.ratio + 1
        self.delay_s = (taps - 1) / 2 / hi
        n = np.arange(taps) - (taps - 1) / 2
        fc = 0.4625 * lo / hi  # cutoff 0.925 x the low rate's Nyquist, normalised to hi
        h = 2 * fc * np.sinc(2 * fc * n) * np.kaiser(taps, 8.0)
        self._h = h / h.sum()
        self._history = np.zeros(taps - 1, dtype=np.float64)
        self._phase = 0  # index (mod ratio) of the next high-rate sample, for decimation

    def process(self, pcm: np.ndarray) -> np.ndarray:
        """Feed ``[T] float32``; returns the resampled ``[T'] float32`` for it."""
        x = np.asarray(pcm, dtype=np.float64)
        if self.ratio == 1:
            return x.astype(np.float32)
        if self.up:
            stuffed = np.zeros(self.ratio * x.size, dtype=np.float64)
            stuffed[:: self.ratio] = self.ratio * x
            x = stuffed
        buf = np.concatenate([self._history, x])
        y = np.convolve(buf, self._h, mode="valid")
        self._history = buf[buf.size - self._history.size :]
        if not self.up:
            y = y[(-self._phase) % self.ratio :: self.ratio]
            self._phase = (self._phase + x.size) % self.ratio
        return y.astype(np.float32)
