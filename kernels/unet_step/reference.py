"""Torch reference for the fused UNet step ``SiLU(GroupNorm(x)·(1 + scale) + shift) + residual``.

The production CPU path, the autograd path and the ground truth of the Triton
kernel. Arguments are assumed validated by ``streamcodec.ops``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def group_norm_modulate_silu_reference(
    x: torch.Tensor,
    num_groups: int,
    *,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """y = SiLU(GroupNorm(x) * (1 + scale) + shift) + residual.

    x: [B, C, T] or [B, C, H, W]; weight, bias: [C] (GroupNorm affine);
    scale, shift: [B, C] (diffusion-time modulation); residual: like x.
    Returns a tensor like x (x's dtype).
    """
    extra = (1,) * (x.dim() - 2)
    if x.numel() == 0:
        y = F.group_norm(x, num_groups, weight, bias, eps)
    else:
        # GroupNorm without affine is a layer norm over each group's (C / G) x spatial values:
        # one fused op (faster than F.group_norm on CPU for the decoder's small tensors)
        bsz = x.shape[0]
        y = F.layer_norm(x.reshape(bsz, num_groups, -1), (x[0].numel() // num_groups,), eps=eps)
        y = y.reshape(x.shape)
        if weight is not None:
            y = y * weight.reshape(weight.shape + extra)
        if bias is not None:
            y = y + bias.reshape(bias.shape + extra)
    if scale is not None and shift is not None:
        y = torch.addcmul(
            shift.reshape(shift.shape + extra), y, 1 + scale.reshape(scale.shape + extra)
        )
    elif scale is not None:
        y = y * (1 + scale.reshape(scale.shape + extra))
    elif shift is not None:
        y = y + shift.reshape(shift.shape + extra)
    y = F.silu(y)
    if residual is not None:
        y = y + residual
    return y.to(x.dtype)
