"""Finite scalar quantisation (FSQ; Mentzer et al. 2023, arXiv 2309.15505).

Each of ``K`` channels is squashed into a bounded range and rounded to one of
``L_k`` levels; the code is the mixed-radix number of the per-channel levels, so
the codebook has ``prod(L_k)`` entries (``(8, 8, 8, 4, 4)`` -> 8192 = 13 bits),
every entry is reachable, and there is nothing to learn or to collapse.
Rounding passes gradients straight through.

Shapes: ``z: [..., K]`` unbounded encoder output; ``q: [..., K]`` quantised
values in ``[-1, 1]``; ``codes: [...]`` int64 in ``[0, prod(L))``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class FSQ(nn.Module):
    """Finite scalar quantiser with per-channel ``levels`` (each >= 2)."""

    def __init__(self, levels: tuple[int, ...] = (8, 8, 8, 4, 4), eps: float = 1e-3) -> None:
        super().__init__()
        if not levels or any(not isinstance(lv, int) or lv < 2 for lv in levels):
            raise ValueError(f"levels must be a non-empty tuple of ints >= 2, got {levels!r}")
        self.levels = tuple(levels)
        lv = torch.tensor(levels, dtype=torch.float32)
        basis = torch.cumprod(torch.tensor([1, *levels[:-1]], dtype=torch.int64), 0)
        half = (lv - 1) * (1 - eps) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0)
        self.register_buffer("_levels", lv, persistent=False)
        self.register_buffer("_basis", basis, persistent=False)
        self.register_buffer("_half", half, persistent=False)
        self._half_width = [lv // 2 for lv in levels]
        self.register_buffer("_offset", offset, persistent=False)
        # centres the even-level grid on z = 0 (tan, as in the reference implementation)
        self.register_buffer("_shift", torch.tan(offset / half), persistent=False)
        self.register_buffer(
            "_hw", torch.tensor(self._half_width, dtype=torch.float32), persistent=False
        )

    @property
    def dim(self) -> int:
        """Channels ``K``."""
        return len(self.levels)

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    @property
    def bits(self) -> int:
        """Bits of one code (``ceil(log2(codebook_size))``)."""
        return max(1, math.ceil(math.log2(self.codebook_size)))

    def _bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash into ``L`` rounding bins around 0 (shifted by 1/2 for even ``L``)."""
        return torch.tanh(z + self._shift) * self._half - self._offset

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z: [..., K]`` -> (``q: [..., K]`` in [-1, 1], straight-through; ``codes: [...]``)."""
        if z.shape[-1] != self.dim:
            raise ValueError(f"expected z: [..., {self.dim}], got {tuple(z.shape)}")
        b = self._bound(z.float())
        r = torch.round(b)
        levels = b + (r - b).detach()  # straight-through estimator
        q = levels / self._hw
        return q.to(z.dtype), self._levels_to_codes(r)

    def _levels_to_codes(self, r: torch.Tensor) -> torch.Tensor:
        digits = (r + self._hw).long()
        return (digits * self._basis).sum(-1)

    def codes_to_vectors(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes: [...]`` int -> quantised values ``[..., K]`` float32 in [-1, 1]."""
        if codes.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"codes must be int32/int64, got {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(
                f"codes must be in [0, {self.codebook_size}), got range "
                f"[{int(codes.min())}, {int(codes.max())}]"
            )
        digits = (codes.long()[..., None] // self._basis) % self._levels.long()
        return (digits.float() - self._hw) / self._hw
