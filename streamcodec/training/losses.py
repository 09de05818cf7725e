"""Vocoder training losses: multi-resolution log-mel L1, phase derivatives, hinge GAN losses,
feature matching.

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


class PhaseDerivativeLoss(nn.Module):
    """Errors of the STFT phase's time and frequency differences (instantaneous frequency,
    group delay), after APNet's phase losses (Ai & Ling 2023), on the output's own STFT.

    Per resolution ``(n_fft, hop)`` (Hann, frames from the start): for neighbouring bins
    ``a, b`` (next frame, next bin) the phase step of ``y_hat`` is compared with that of
    ``y`` as ``1 - cos(step_hat - step)`` (periodic, so wrapping needs no special case),
    weighted by ``(|Y_a| |Y_b|) ** (power / 2)`` of the target ``y`` (the phase of a bin
    without energy is noise) and averaged by those weights. 0 for matching phase steps,
    about 1 for random phase. The absolute phase is not compared: a causal vocoder cannot
    know it from the log-mel, but the steps follow from pitch and formants.
    """

    def __init__(
        self,
        resolutions: Sequence[tuple[int, int]] = ((640, 160), (320, 80)),
        eps: float = 1e-5,
        power: float = 1.0,
    ) -> None:
        super().__init__()
        self.resolutions = tuple(resolutions)
        self.eps = eps
        self.power = power
        for n, _ in self.resolutions:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    @staticmethod
    def _unit(z: torch.Tensor, eps: torch.Tensor | float) -> torch.Tensor:
        return z / z.abs().clamp_min(eps)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y_hat.shape != y.shape:
            raise ValueError(f"shape mismatch: y_hat {tuple(y_hat.shape)} vs y {tuple(y.shape)}")
        losses = []
        for n, hop in self.resolutions:
            w = getattr(self, f"window_{n}")
            s_hat, s = (
                torch.stft(v.float(), n, hop, window=w, center=False, return_complex=True)
                for v in (y_hat, y)
            )
            mag = s.abs().detach()
            eps = self.eps * mag.amax() + 1e-12  # relative to the loudest bin: scale-free
            u_hat, u = self._unit(s_hat, eps), self._unit(s, eps)
            weight = mag**self.power
            for dim in (1, 2):  # along frequency, along time
                k = s.shape[dim] - 1
                step_hat = u_hat.narrow(dim, 1, k) * u_hat.narrow(dim, 0, k).conj()
                step = u.narrow(dim, 1, k) * u.narrow(dim, 0, k).conj()
                wgt = (weight.narrow(dim, 1, k) * weight.narrow(dim, 0, k)).sqrt()
                err = 1.0 - (step_hat * step.conj()).real  # 1 - cos(step difference)
                losses.append((err * wgt).sum() / (wgt.sum() + 1e-12))
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
