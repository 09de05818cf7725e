"""Log-mel features shared by the semantic encoder, the decoder, the vocoder and the metrics.

Framing is causal: with hop ``H`` and window ``W``, the signal is left-padded by
``W - H`` zeros, so mel frame ``f`` ends at sample ``(f + 1) * H`` and a signal
of ``T`` samples gives ``F = T // H`` frames. A streaming caller that keeps the
last ``W - H`` samples of history gets exactly the offline frames.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 16000
    n_fft: int = 640
    win_length: int = 640
    hop_length: int = 160
    n_mels: int = 80
    f_min_hz: float = 0.0
    f_max_hz: float = 8000.0
    log_floor: float = 1e-5

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def history_samples(self) -> int:
        """Samples of past context a streaming frontend must keep."""
        return self.win_length - self.hop_length


def _hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    mel = f / f_sp
    return torch.where(
        f >= min_log_hz, min_log_hz / f_sp + torch.log(f / min_log_hz) / logstep, mel
    )


def _mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return torch.where(
        m >= min_log_mel, min_log_hz * torch.exp(logstep * (m - min_log_mel)), f_sp * m
    )


def mel_filterbank(cfg: MelConfig) -> torch.Tensor:
    """Slaney-normalised triangular filters, ``[M, n_fft // 2 + 1]``."""
    n_freqs = cfg.n_fft // 2 + 1
    fft_hz = torch.linspace(0, cfg.sample_rate / 2, n_freqs, dtype=torch.float64)
    mels = torch.linspace(
        _hz_to_mel(torch.tensor(cfg.f_min_hz, dtype=torch.float64)).item(),
        _hz_to_mel(torch.tensor(cfg.f_max_hz, dtype=torch.float64)).item(),
        cfg.n_mels + 2,
        dtype=torch.float64,
    )
    pts = _mel_to_hz(mels)
    lower = (fft_hz[None, :] - pts[:-2, None]) / (pts[1:-1, None] - pts[:-2, None])
    upper = (pts[2:, None] - fft_hz[None, :]) / (pts[2:, None] - pts[1:-1, None])
    fb = torch.clamp(torch.minimum(lower, upper), min=0.0)
    fb *= (2.0 / (pts[2:] - pts[:-2]))[:, None]
    return fb.float()


class LogMel(nn.Module):
    """``x: [B, T] float32`` -> ``log-mel: [B, M, T // hop]`` (causal framing, natural log)."""

    def __init__(self, cfg: MelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or MelConfig()
        self.register_buffer("window", torch.hann_window(self.cfg.win_length), persistent=False)
        self.register_buffer("fb", mel_filterbank(self.cfg), persistent=False)

    def power_spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` -> magnitude spectrogram ``[B, n_fft // 2 + 1, T // hop]``."""
        cfg = self.cfg
        if x.dim() != 2:
            raise ValueError(f"expected x: [B, T], got shape {tuple(x.shape)}")
        n_frames = x.shape[-1] // cfg.hop_length
        x = nn.functional.pad(x[:, : n_frames * cfg.hop_length], (cfg.history_samples, 0))
        spec = torch.stft(
            x,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            win_length=cfg.win_length,
            window=self.window,
            center=False,
            return_complex=True,
        )
        return spec.abs()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mag = self.power_spectrogram(x)
        mel = torch.matmul(self.fb, mag)
        return torch.log(torch.clamp(mel, min=self.cfg.log_floor))
