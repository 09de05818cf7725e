"""Masked attention with a KV-cache offset: torch reference here, Triton forward in ``kernel``.

``kernel`` imports triton; it is imported lazily by ``streamcodec.ops`` only.
"""

from streamcodec.kernels.attention.reference import (
    MASKS,
    attention_reference,
    key_limits,
    visible_mask,
)

__all__ = ["MASKS", "attention_reference", "key_limits", "visible_mask"]
