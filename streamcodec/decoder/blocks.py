"""A causal mixing block over token frames, shared by the acoustic encoder and the conditioning.

``y_f = x_f + gamma * W2 GELU(W1 [LN(x_{f-k+1}); ...; LN(x_f)])``: a dense causal
convolution of kernel ``k`` written as one matmul over a window of normalised
frames (no look-ahead). At 12.5-50 frames/s the sequences are short, and a
plain matmul trains several times faster on a CPU than a convolution op. The
per-stream state is the last ``k - 1`` normalised input frames.

Shapes: ``x: [B, F, D]``, ``context: [B, k - 1, D]`` (None at stream start).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalMixBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, kernel_size: int, scale: float = 1.0) -> None:
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
        self.kernel_size = kernel_size
        self.norm = nn.LayerNorm(dim)
        self.w1 = nn.Linear(kernel_size * dim, hidden)
        self.w2 = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), scale))

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: [B, F, D]`` -> (``[B, F, D]``, new context ``[B, k - 1, D]``)."""
        b, f, d = x.shape
        k = self.kernel_size
        if context is None:
            context = x.new_zeros(b, k - 1, d)
        h = torch.cat([context, self.norm(x)], dim=1)  # [B, k - 1 + F, D]
        new_context = h[:, h.shape[1] - (k - 1) :]
        if f == 0:
            return x, new_context
        win = h.unfold(1, k, 1).transpose(2, 3).reshape(b, f, k * d)  # oldest frame first
        return x + self.gamma * self.w2(F.gelu(self.w1(win))), new_context
