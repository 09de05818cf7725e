"""Did the audio make the round trip? Compare loudness envelopes of what was sent and
what came back, after finding their lag (with :func:`streamcodec.eval.align.find_lag`).

A speech envelope (20 ms frames, dB) is a pattern of syllables and pauses that a
sub-kbps codec keeps even when it changes the waveform completely, so its Pearson
correlation with the input's envelope is high (> 0.6) for audio that went through the
codec and near zero for silence, noise or another utterance.
"""

from __future__ import annotations

import numpy as np

from streamcodec.eval.align import find_lag


def envelope_db(pcm: np.ndarray, sample_rate: int, frame_ms: float = 20.0) -> np.ndarray:
    """``[T]`` -> ``[F]`` RMS level per frame in dB, floored 50 dB below the peak frame."""
    n = max(1, int(sample_rate * frame_ms / 1000.0))
    frames = pcm[: pcm.size // n * n].reshape(-1, n)
    level = 10.0 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-10)
    if level.size:
        level = np.maximum(level, level.max() - 50.0)
    return level


def envelope_correlation(
    sent: np.ndarray,
    returned: np.ndarray,
    sample_rate: int,
    max_lag_s: float = 5.0,
    frame_ms: float = 20.0,
) -> tuple[float, float]:
    """``(correlation, lag_s)``: the returned audio's envelope against the sent one's, at
    the lag (``returned`` later by ``lag_s``) that maximises their cross-correlation."""
    a = envelope_db(sent, sample_rate, frame_ms)
    b = envelope_db(returned, sample_rate, frame_ms)
    if a.size < 10 or b.size < 10:
        return float("nan"), 0.0
    a0, b0 = a - a.mean(), b - b.mean()
    lag = find_lag(a0, b0, 0, int(max_lag_s * 1000.0 / frame_ms))
    start_a, start_b = max(-lag, 0), max(lag, 0)
    m = min(a.size - start_a, b.size - start_b)
    if m < 10:
        return float("nan"), lag * frame_ms / 1000.0
    x, y = a[start_a : start_a + m], b[start_b : start_b + m]
    if x.std() == 0 or y.std() == 0:
        return 0.0, lag * frame_ms / 1000.0
    return float(np.corrcoef(x, y)[0, 1]), lag * frame_ms / 1000.0
