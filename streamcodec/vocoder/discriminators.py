"""Discriminators for adversarial vocoder training (training only; not used at inference).

* :class:`MultiPeriodDiscriminator` (HiFi-GAN idea): the waveform folded into
  ``[B, 1, T / p, p]`` for several primes ``p``, 2-D convs along time.
* :class:`MultiResolutionDiscriminator` (UnivNet / Vocos idea): 2-D convs over
  log-magnitude STFTs at several resolutions.

Each returns, per sub-discriminator, its logits and its intermediate feature
maps (for the feature-matching loss).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

Logits = list[torch.Tensor]
Features = list[list[torch.Tensor]]


@dataclass(frozen=True)
class DiscriminatorConfig:
    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    period_channels: tuple[int, ...] = (32, 64, 128, 256)
    resolutions: tuple[tuple[int, int], ...] = ((256, 64), (512, 128), (1024, 256))  # (n_fft, hop)
    resolution_channels: int = 32

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DiscriminatorConfig:
        return cls(
            periods=tuple(d["periods"]),
            period_channels=tuple(d["period_channels"]),
            resolutions=tuple(tuple(r) for r in d["resolutions"]),
            resolution_channels=int(d["resolution_channels"]),
        )


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.period = period
        chans = (1, *channels)
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(cin, cout, (5, 1), (3, 1), padding=(2, 0)))
            for cin, cout in zip(chans[:-1], chans[1:], strict=True)
        )
        self.convs.append(weight_norm(nn.Conv2d(chans[-1], chans[-1], (5, 1), padding=(2, 0))))
        self.post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``x: [B, T]`` -> (logits ``[B, N]``, feature maps)."""
        b, t = x.shape
        if t % self.period:
            x = F.pad(x, (0, self.period - t % self.period), mode="reflect")
        h = x.reshape(b, 1, -1, self.period)
        feats = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.1)
            feats.append(h)
        h = self.post(h)
        feats.append(h)
        return h.flatten(1), feats


class ResolutionDiscriminator(nn.Module):
    def __init__(self, n_fft: int, hop: int, channels: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        c = channels
        self.convs = nn.ModuleList(
            [
                weight_norm(nn.Conv2d(1, c, (3, 9), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, (3, 3), padding=(1, 1))),
            ]
        )
        self.post = weight_norm(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``x: [B, T]`` -> (logits ``[B, N]``, feature maps); 2-D convs over [frames, bins]."""
        spec = torch.stft(
            x.float(), self.n_fft, self.hop, window=self.window, center=True, return_complex=True
        )
        h = torch.log1p(spec.abs()).transpose(1, 2).unsqueeze(1)
        feats = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.1)
            feats.append(h)
        h = self.post(h)
        feats.append(h)
        return h.flatten(1), feats


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.discs = nn.ModuleList(PeriodDiscriminator(p, cfg.period_channels) for p in cfg.periods)

    def forward(self, x: torch.Tensor) -> tuple[Logits, Features]:
        outs = [d(x) for d in self.discs]
        return [o[0] for o in outs], [o[1] for o in outs]


class MultiResolutionDiscriminator(nn.Module):
    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.discs = nn.ModuleList(
            ResolutionDiscriminator(n, h, cfg.resolution_channels) for n, h in cfg.resolutions
        )

    def forward(self, x: torch.Tensor) -> tuple[Logits, Features]:
        outs = [d(x) for d in self.discs]
        return [o[0] for o in outs], [o[1] for o in outs]
