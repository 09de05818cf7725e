"""Vocoder training losses: multi-resolution log-mel L1, hinge GAN losses, feature matching.

All functions take waveforms ``[B, T] float32`` or discriminator outputs and return
a scalar tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from streamcodec.features import LogMel, MelConfig


class MultiResolutionMelLoss(nn.Module):
    """Mean over resolutions of ``|log-mel(y_hat) - log-mel(y)|`` (L1).

    ``resolutions``: ``(n_fft, hop, n_mels)`` triples at ``sample_rate``.
    """

    def __init__(
        self,
        resolutions: Sequence[tuple[int, int, int]] = (
            (320, 80, 40),
            (640, 160, 80),
            (1280, 320, 128),
        ),
        sample_rate: int = 16000,
    ) -> None:
        super().__init__()
        self.mels = nn.ModuleList(
            LogMel(
                MelConfig(sample_rate=sample_rate, n_fft=n, win_length=n, hop_length=h, n_mels=m)
            )
            for n, h, m in resolutions
        )

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y_hat.shape != y.shape:
            raise ValueError(f"shape mismatch: y_hat {tuple(y_hat.shape)} vs y {tuple(y.shape)}")
        y_hat, y = y_hat.float(), y.float()
        losses = [torch.mean(torch.abs(m(y_hat) - m(y))) for m in self.mels]
        return torch.stack(losses).mean()


def discriminator_hinge_loss(
    real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor]
) -> torch.Tensor:
    """``sum_d mean(relu(1 - D(y))) + mean(relu(1 + D(y_hat)))`` over sub-discriminators."""
    loss = real[0].new_zeros(())
    for r, f in zip(real, fake, strict=True):
        loss = loss + torch.relu(1 - r.float()).mean() + torch.relu(1 + f.float()).mean()
    return loss / len(real)


def generator_hinge_loss(fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """``mean_d mean(relu(1 - D(y_hat)))``."""
    return torch.stack([torch.relu(1 - f.float()).mean() for f in fake]).mean()


def feature_matching_loss(
    real: Sequence[Sequence[torch.Tensor]], fake: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """Mean L1 between discriminator feature maps of real (detached) and generated audio,
    each map's term normalised by the mean magnitude of the real map."""
    terms = []
    for rs, fs in zip(real, fake, strict=True):
        for r, f in zip(rs, fs, strict=True):
            r = r.detach().float()
            terms.append(torch.mean(torch.abs(r - f.float())) / (r.abs().mean() + 1e-5))
    return torch.stack(terms).mean()
