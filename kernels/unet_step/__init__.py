"""Fused UNet step SiLU(GroupNorm(x)·(1 + scale) + shift) + residual: torch reference here,
Triton kernels in ``kernel`` (imported lazily by ``streamcodec.ops`` only)."""

from streamcodec.kernels.unet_step.reference import group_norm_modulate_silu_reference

__all__ = ["group_norm_modulate_silu_reference"]
