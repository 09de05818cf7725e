"""Inverse STFT by windowed overlap-add, offline and streaming (identical results).

Synthesis frame ``g`` covers samples ``[g * hop, g * hop + n_fft)`` of the output
("synthesis time"). Frames are ``irfft`` -> Hann window -> overlap-add -> divided
by the constant interior window envelope ``sum_k w(n + k * hop)^2``, so the STFT
of a signal (Hann analysis, ``center=False``) is inverted exactly away from the
edges. A fixed normaliser (not the edge-dependent envelope) keeps streaming and
offline outputs identical.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def window_envelope(window: torch.Tensor, hop: int) -> float:
    """Interior value of ``sum_k window[n + k * hop] ** 2`` (constant for a COLA window)."""
    n = window.shape[0]
    if n % hop:
        raise ValueError(f"window length {n} must be a multiple of hop {hop}")
    sq = (window.double() ** 2).reshape(n // hop, hop).sum(0)
    return float(sq.mean())


def frames_to_signal(
    spec: torch.Tensor, window: torch.Tensor, hop: int, synthesis_window: torch.Tensor | None = None
) -> torch.Tensor:
    """``spec: [B, K, F] complex`` -> windowed time frames ``[B, F, N]`` (N = 2 (K - 1)).

    ``synthesis_window``: ``window / window_envelope(window, hop)`` computed once by the
    caller (a streaming session calls this every few milliseconds); ``None``: computed here.
    """
    n_fft = window.shape[0]
    if spec.shape[1] != n_fft // 2 + 1:
        raise ValueError(f"spec has {spec.shape[1]} bins, expected {n_fft // 2 + 1}")
    frames = torch.fft.irfft(spec.transpose(1, 2), n=n_fft, dim=-1)
    if synthesis_window is None:
        synthesis_window = window / window_envelope(window, hop)
    return frames * synthesis_window


def overlap_add(
    spec: torch.Tensor, window: torch.Tensor, hop: int, synthesis_window: torch.Tensor | None = None
) -> torch.Tensor:
    """Offline iSTFT: ``spec: [B, K, F]`` -> ``[B, (F - 1) * hop + n_fft]`` float32."""
    frames = frames_to_signal(spec, window, hop, synthesis_window)  # [B, F, N]
    n_frames, n_fft = frames.shape[1], frames.shape[2]
    length = (n_frames - 1) * hop + n_fft
    out = F.fold(
        frames.transpose(1, 2), output_size=(1, length), kernel_size=(1, n_fft), stride=(1, hop)
    )
    return out.reshape(frames.shape[0], length)


def overlap_add_stream(
    spec: torch.Tensor,
    tail: torch.Tensor | None,
    window: torch.Tensor,
    hop: int,
    synthesis_window: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Streaming iSTFT step: ``spec: [B, K, n]`` -> (complete samples ``[B, n * hop]``, tail).

    ``tail: [B, n_fft - hop]`` is the partial sum carried between calls (``None`` = zeros);
    ``synthesis_window`` as in :func:`frames_to_signal`.
    """
    n_fft = window.shape[0]
    if spec.shape[-1] == 0:
        if tail is None:
            tail = spec.new_zeros(spec.shape[0], n_fft - hop, dtype=window.dtype)
        return tail.new_zeros(tail.shape[0], 0), tail
    y = overlap_add(spec, window, hop, synthesis_window)  # [B, (n - 1) * hop + n_fft]
    if tail is not None:
        y = torch.cat([y[:, : n_fft - hop] + tail, y[:, n_fft - hop :]], dim=1)
    n_out = spec.shape[-1] * hop
    return y[:, :n_out], y[:, n_out:]
