"""Align a decoded signal to its reference before intrusive metrics."""

from __future__ import annotations

import numpy as np


def find_lag(ref: np.ndarray, deg: np.ndarray, delay_hint: int = 0, max_shift: int = 1600) -> int:
    """The lag ``k`` (samples) maximising the cross-correlation ``sum_n deg[n + k] * ref[n]``.

    Only ``k`` in ``[delay_hint - max_shift, delay_hint + max_shift]`` is searched,
    so a codec's known delay narrows the search.
    """
    n = ref.size + deg.size
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(deg, size) * np.conj(np.fft.rfft(ref, size)), size)
    lags = np.arange(delay_hint - max_shift, delay_hint + max_shift + 1)
    lags = lags[(lags > -ref.size) & (lags < deg.size)]
    if lags.size == 0:
        return 0
    return int(lags[np.argmax(corr[lags % size])])


def align_to(
    ref: np.ndarray, deg: np.ndarray, delay_hint: int = 0, max_shift: int = 1600
) -> tuple[np.ndarray, int]:
    """Shift ``deg`` so it lines up with ``ref``; returns ``(aligned, lag)``.

    ``aligned`` has ``ref``'s length (zero-padded where ``deg`` has no samples).
    """
    lag = find_lag(ref, deg, delay_hint, max_shift)
    out = np.zeros(ref.size, dtype=np.float32)
    src = deg[max(lag, 0) :]
    dst_start = max(-lag, 0)
    m = min(src.size, ref.size - dst_start)
    if m > 0:
        out[dst_start : dst_start + m] = src[:m]
    return out, lag
