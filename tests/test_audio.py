"""Audio I/O: formats, rates, channel counts, sources, resampling and bad input."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from streamcodec import assets
from streamcodec.audio import FirResampler, check_pcm, load_audio, resample, save_audio


def _tone(rate: int, seconds: float = 0.5, hz: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.5 * np.sin(2 * np.pi * hz * t)
    return np.stack([mono * (1 - 0.1 * c) for c in range(channels)]).astype(np.float32)


def _write_with_pyav(path: Path, pcm: np.ndarray, rate: int, codec: str, fmt: str) -> None:
    """Write ``pcm: [C, T]`` with any PyAV encoder (to make test inputs of many kinds)."""
    channels = pcm.shape[0]
    layout = {1: "mono", 2: "stereo", 6: "5.1"}[channels]
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        target = stream.codec_context.format.name
        resampler = av.AudioResampler(format=target, layout=layout, rate=rate)
        frame_size = stream.codec_context.frame_size or 1024
        data = (np.clip(pcm, -1, 1) * 32767).astype(np.int16)
        for i in range(0, data.shape[1], frame_size):
            chunk = np.ascontiguousarray(data[:, i : i + frame_size].T.reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=layout)
            frame.sample_rate = rate
            for f in resampler.resample(frame):
                out.mux(stream.encode(f))
        out.mux(stream.encode(None))


def _freq_of(pcm: np.ndarray, rate: int = 16000) -> float:
    spec = np.abs(np.fft.rfft(pcm * np.hanning(pcm.size)))
    return float(np.argmax(spec) * rate / pcm.size)


@pytest.mark.parametrize(
    ("suffix", "codec", "fmt", "rate", "channels"),
    [
        ("wav", "pcm_s16le", "wav", 8000, 1),
        ("wav", "pcm_s16le", "wav", 44100, 2),
        ("flac", "flac", "flac", 22050, 1),
        ("flac", "flac", "flac", 48000, 6),
        ("ogg", "libopus", "ogg", 48000, 2),
        ("mp3", "libmp3lame", "mp3", 44100, 2),
        ("m4a", "aac", "mp4", 32000, 1),
    ],
    ids=lambda v: str(v),
)
def test_load_audio_any_format_rate_channels(tmp_path, suffix, codec, fmt, rate, channels):
    path = tmp_path / f"tone.{suffix}"
    _write_with_pyav(path, _tone(rate, 0.5, 440.0, channels), rate, codec, fmt)
    pcm = load_audio(path)
    assert pcm.dtype == np.float32 and pcm.ndim == 1
    assert abs(pcm.size / 16000 - 0.5) < 0.06  # codec padding allowed
    assert abs(_freq_of(pcm) - 440.0) < 5.0
    assert 0.3 < np.abs(pcm[2000:6000]).max() < 0.6  # steady state (lossy codecs ring at onset)


def test_load_audio_from_bytes_and_file_object(tmp_path):
    path = tmp_path / "a.flac"
    save_audio(path, _tone(16000)[0])
    from_path = load_audio(path)
    np.testing.assert_array_equal(load_audio(path.read_bytes()), from_path)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(load_audio(f), from_path)
    np.testing.assert_array_equal(load_audio(io.BytesIO(path.read_bytes())), from_path)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".opus"])
def test_save_then_load_round_trip(tmp_path, suffix):
    x = load_audio(assets.speech_dir() / "1867-154075-0014.flac")
    path = save_audio(tmp_path / f"x{suffix}", x)
    y = load_audio(path)
    if suffix == ".opus":  # lossy and delayed: compare loosely
        assert abs(y.size - x.size) < 16000 * 0.05
        assert np.corrcoef(np.abs(x[:8000]), np.abs(y[:8000]))[0, 1] > 0.5
    else:  # 16-bit PCM: exact to quantisation
        assert y.size == x.size
        assert np.abs(y - x).max() <= 1.0 / 32767 + 1e-6


def test_load_audio_resamples_to_requested_rate():
    x16 = load_audio(assets.demo_clip())
    x8 = load_audio(assets.demo_clip(), sample_rate=8000)
    assert abs(x8.size * 2 - x16.size) <= 2


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        load_audio(tmp_path / "nope.wav")


def test_non_audio_file_is_value_error(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(ValueError, match="junk.wav"):
        load_audio(junk)
    with pytest.raises(ValueError):
        load_audio(b"\x00\x01garbage")
    with pytest.raises(ValueError, match="directory"):
        load_audio(tmp_path)


def test_empty_audio_is_value_error(tmp_path):
    path = tmp_path / "empty.wav"
    with wave.open(str(path), "wb") as w:  # a valid header with no samples
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
    with pytest.raises(ValueError, match="empty"):
        load_audio(path)
    with pytest.raises(ValueError, match="empty"):
        load_audio(b"")


def test_nan_inf_samples_rejected():
    x = np.zeros(100, dtype=np.float32)
    x[3] = np.nan
    x[7] = np.inf
    with pytest.raises(ValueError, match="2 NaN/Inf"):
        check_pcm(x)
    with pytest.raises(ValueError, match="NaN/Inf"):
        save_audio("/tmp/never.wav", x)


def test_float32_audio_file_with_nan_rejected(tmp_path):
    path = tmp_path / "nan.wav"
    data = np.zeros(1600, dtype=np.float32)
    data[10] = np.nan
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_f32le", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(data[None], format="flt", layout="mono")
        frame.sample_rate = 16000
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(ValueError, match="NaN/Inf"):
        load_audio(path)


@pytest.mark.parametrize(
    ("bad", "exc", "match"),
    [
        (np.zeros(10, dtype=np.int16), TypeError, "int16.*scale"),
        (np.zeros(10, dtype=np.complex64), TypeError, "complex64"),
        ([0.0, 0.1], TypeError, "numpy array"),
        (np.zeros((2, 10), dtype=np.float32), ValueError, r"shape \(2, 10\)"),
    ],
    ids=["int16", "complex", "list", "stereo"],
)
def test_check_pcm_bad_types(bad, exc, match):
    with pytest.raises(exc, match=match):
        check_pcm(bad)


def test_check_pcm_accepts_float64():
    out = check_pcm(np.zeros(4, dtype=np.float64))
    assert out.dtype == np.float32


def test_save_audio_rejects_unknown_suffix_and_empty(tmp_path):
    with pytest.raises(ValueError, match=".xyz"):
        save_audio(tmp_path / "a.xyz", np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="empty"):
        save_audio(tmp_path / "a.wav", np.zeros(0, np.float32))


def test_resample_bad_rates():
    with pytest.raises(ValueError, match="from_hz"):
        resample(np.zeros(10, np.float32), 0, 16000)


@pytest.mark.parametrize(("src", "dst"), [(16000, 8000), (8000, 16000), (48000, 16000)])
def test_fir_resampler_any_chunking_equals_one_call(src, dst):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(src // 2 + 7).astype(np.float32)
    whole = FirResampler(src, dst).process(x)
    r = FirResampler(src, dst)
    cuts = np.sort(rng.choice(np.arange(1, x.size), size=9, replace=False))
    parts = [r.process(p) for p in np.split(x, cuts)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert whole.size == (x.size * dst) // src or whole.size == -(-x.size * dst // src)


def test_fir_resampler_passes_tone_with_stated_delay():
    t = np.arange(16000) / 16000
    x = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    down, up = FirResampler(16000, 8000), FirResampler(8000, 16000)
    y = up.process(down.process(x))
    d = round((down.delay_s + up.delay_s) * 16000)
    err = np.abs(y[d:] - x[: x.size - d])[500:-500]
    assert err.max() < 1e-3


def test_fir_resampler_rejects_non_integer_ratio():
    with pytest.raises(ValueError, match="integer ratio"):
        FirResampler(44100, 16000)


@pytest.mark.parametrize(
    ("suffix", "codec", "fmt", "rate", "channels"),
    [
        ("wav", "pcm_s16le", "wav", 44100, 2),
        ("flac", "flac", "flac", 16000, 1),
        ("opus", "libopus", "ogg", 48000, 1),
    ],  # fmt: skip
    ids=lambda v: str(v),
)
def test_load_audio_without_pyav_reads_through_libsndfile(
    tmp_path, monkeypatch, suffix, codec, fmt, rate, channels
):
    """A bare training machine without PyAV still reads the corpus (via soundfile), with the
    same samples as PyAV up to the decoders' rounding (Opus: libsndfile decodes at the
    stream's input rate, FFmpeg at 48 kHz, so only a close match there)."""
    pytest.importorskip("soundfile")
    import streamcodec.audio as audio_mod

    path = tmp_path / f"tone.{suffix}"
    _write_with_pyav(path, _tone(rate, channels=channels, seconds=1.0), rate, codec, fmt)
    with_av = load_audio(path)
    monkeypatch.setattr(audio_mod, "av", None)
    without = audio_mod.load_audio(path)
    assert without.dtype == np.float32
    assert abs(_freq_of(without) - 440) < 5
    n = min(with_av.size, without.size)
    assert abs(with_av.size - without.size) <= 0.03 * rate  # Opus pre-skip handling may differ
    if suffix == "opus":
        # align (decoder delays differ) and compare the envelope of the tone
        lag = int(np.argmax(np.correlate(with_av[2000:6000], without[2000:6000], "full"))) - 3999
        a, b = with_av[2000 + max(lag, 0) :], without[2000 + max(-lag, 0) :]
        m = min(a.size, b.size) - 2000
        assert np.corrcoef(a[:m], b[:m])[0, 1] > 0.99
    else:
        np.testing.assert_allclose(without[:n], with_av[:n], atol=2e-3)
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        audio_mod.load_audio(tmp_path / "nope.wav")
    with pytest.raises(ValueError):
        audio_mod.load_audio(b"\x00\x01garbage" * 20)
