"""Spectral distances between a reference and a decoded signal, defined once for the project.

Both follow the multi-resolution style of the codec literature (SemantiCodec's and
DAC's tables): mean absolute difference of log10 magnitudes, averaged over several
STFT resolutions (Hann windows, hop = window / 4, centred frames).

- ``mel_distance``: 80-band Slaney mel magnitudes, windows 512 / 1024 / 2048 samples.
- ``stft_distance``: linear-frequency magnitudes, windows 256 / 512 / 2048 samples.

Lower is better; identical signals give 0.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from streamcodec.features import MelConfig, mel_filterbank

MEL_WINDOWS = (512, 1024, 2048)
STFT_WINDOWS = (256, 512, 2048)
_EPS = 1e-5


def _mag(x: torch.Tensor, win: int) -> torch.Tensor:
    return torch.stft(
        x,
        n_fft=win,
        hop_length=win // 4,
        window=torch.hann_window(win),
        center=True,
        return_complex=True,
    ).abs()


@lru_cache(maxsize=8)
def _fb(win: int, sample_rate: int) -> torch.Tensor:
    cfg = MelConfig(sample_rate=sample_rate, n_fft=win, win_length=win, f_max_hz=sample_rate / 2)
    return mel_filterbank(cfg)


def _pair(ref: np.ndarray, deg: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    n = min(ref.shape[-1], deg.shape[-1])
    if n == 0:
        raise ValueError("cannot compare empty signals")
    return (
        torch.as_tensor(np.asarray(ref[:n], dtype=np.float32)),
        torch.as_tensor(np.asarray(deg[:n], dtype=np.float32)),
    )


def mel_distance(ref: np.ndarray, deg: np.ndarray, sample_rate: int = 16000) -> float:
    """Multi-resolution log-mel L1 distance of two aligned ``[T]`` signals."""
    r, d = _pair(ref, deg)
    total = 0.0
    for win in MEL_WINDOWS:
        fb = _fb(win, sample_rate)
        mr = torch.log10(torch.clamp(fb @ _mag(r, win), min=_EPS))
        md = torch.log10(torch.clamp(fb @ _mag(d, win), min=_EPS))
        total += float((mr - md).abs().mean())
    return total / len(MEL_WINDOWS)


def stft_distance(ref: np.ndarray, deg: np.ndarray) -> float:
    """Multi-resolution log-magnitude STFT L1 distance of two aligned ``[T]`` signals."""
    r, d = _pair(ref, deg)
    total = 0.0
    for win in STFT_WINDOWS:
        mr = torch.log10(torch.clamp(_mag(r, win), min=_EPS))
        md = torch.log10(torch.clamp(_mag(d, win), min=_EPS))
        total += float((mr - md).abs().mean())
    return total / len(STFT_WINDOWS)
