"""Torch reference for masked attention with a KV-cache offset.

This is the production CPU path and the path autograd uses (the Triton kernel
is forward-only). It is also the ground truth the kernel is tested against.

Positions: ``q: [B, H, Nq, D]`` holds the *last* ``Nq`` of the ``Nk`` key
positions, so query ``i`` sits at key position ``p = Nk - Nq + i`` (the caller
keeps its KV cache chunk-aligned at key index 0). Masks, as the exclusive upper
bound ``hi(p)`` of the keys a query at ``p`` sees (keys ``0 .. hi(p) - 1``):

- ``"none"``: ``hi(p) = Nk``;
- ``"causal"``: ``hi(p) = p + 1``;
- ``"block_causal"``: ``hi(p) = min(Nk, (p // C + L + 1) * C)`` with chunk size
  ``C`` and ``L`` look-ahead chunks: a query in chunk ``c`` sees chunks ``<= c + L``.

Every query sees at least key 0, so no softmax row is empty.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MASKS = ("none", "causal", "block_causal")


def key_limits(
    n_q: int,
    n_k: int,
    mask: str,
    chunk_size: int | None = None,
    lookahead_chunks: int = 0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Exclusive key bound ``hi(p)`` for each query row: ``[Nq]`` int64."""
    pos = torch.arange(n_k - n_q, n_k, device=device)
    if mask == "none":
        return torch.full_like(pos, n_k)
    if mask == "causal":
        return pos + 1
    if mask == "block_causal":
        if chunk_size is None:
            raise ValueError("mask='block_causal' needs chunk_size")
        hi = (torch.div(pos, chunk_size, rounding_mode="floor") + lookahead_chunks + 1) * chunk_size
        return hi.clamp(max=n_k)
    raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")


def visible_mask(
    n_q: int,
    n_k: int,
    mask: str,
    chunk_size: int | None = None,
    lookahead_chunks: int = 0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Boolean ``[Nq, Nk]``: True where query row ``i`` may attend to key ``j``."""
    hi = key_limits(n_q, n_k, mask, chunk_size, lookahead_chunks, device)
    return torch.arange(n_k, device=device)[None, :] < hi[:, None]


def attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: str = "none",
    chunk_size: int | None = None,
    lookahead_chunks: int = 0,
    scale: float | None = None,
) -> torch.Tensor:
    """softmax(q kᵀ · scale + mask) v with the KV-cache offset ``Nk - Nq``.

    q: [B, H, Nq, D], k: [B, H, Nk, D], v: [B, H, Nk, D] -> [B, H, Nq, D] in q's dtype.
    Differentiable (torch SDPA); arguments are assumed validated by ``streamcodec.ops``.
    """
    n_q, n_k = q.shape[-2], k.shape[-2]
    if (
        mask == "none"
        or (mask == "causal" and n_q == 1)
        or _sees_all_keys(n_q, n_k, mask, chunk_size, lookahead_chunks)
    ):
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    if mask == "causal" and n_q == n_k:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    allowed = visible_mask(n_q, n_k, mask, chunk_size, lookahead_chunks, q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale)


def _sees_all_keys(
    n_q: int, n_k: int, mask: str, chunk_size: int | None, lookahead_chunks: int
) -> bool:
    """True when a block-causal mask hides nothing: the first query row (position
    ``Nk - Nq``) already sees every key, as when a streaming decoder's chunk of queries
    attends to its cache (then SDPA runs without building a mask)."""
    if mask != "block_causal" or not chunk_size or n_q == 0:
        return False
    return ((n_k - n_q) // chunk_size + lookahead_chunks + 1) * chunk_size >= n_k
