"""Vocoder training losses: the phase-step loss's defining properties."""

from __future__ import annotations

import math

import pytest
import torch

from streamcodec.training.losses import PhaseDerivativeLoss


def _tone(f_hz: float, phase: float, n: int = 8000, sr: int = 16000) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64) / sr
    return (0.5 * torch.sin(2 * math.pi * f_hz * t + phase)).float()[None]


def test_phase_loss_zero_for_equal_phase_steps_and_large_for_noise() -> None:
    loss = PhaseDerivativeLoss()
    y = _tone(440.0, 0.0) + 0.3 * _tone(1210.0, 1.0)
    assert float(loss(y, y)) < 1e-3  # (bins below eps carry |unit| < 1)
    # a constant phase offset leaves the steps in time and frequency as they are
    shifted = _tone(440.0, 2.0) + 0.3 * _tone(1210.0, 3.0)
    assert float(loss(shifted, y)) < 0.02
    # another frequency changes the step in time; noise has no structure at all
    assert float(loss(_tone(452.0, 0.0) + 0.3 * _tone(1210.0, 1.0), y)) > 0.1
    noise = torch.randn(y.shape, generator=torch.Generator().manual_seed(0)) * 0.3
    assert float(loss(noise, y)) > 0.4
    # scale-free in the prediction (only phase is compared)
    assert float(loss(3.0 * noise, y)) == pytest.approx(float(loss(noise, y)), rel=1e-4)


def test_phase_loss_gradients_are_finite_on_silence() -> None:
    loss = PhaseDerivativeLoss()
    y_hat = torch.zeros(2, 4000, requires_grad=True)
    value = loss(y_hat, torch.randn(2, 4000) * 0.1)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(y_hat.grad).all()


def test_phase_loss_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"shape mismatch: y_hat \(1, 4000\) vs y \(1, 3999\)"):
        PhaseDerivativeLoss()(torch.zeros(1, 4000), torch.zeros(1, 3999))
