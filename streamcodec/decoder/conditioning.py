"""Conditioning of the decoder: token frames -> one vector per mel patch.

Per token frame ``f``: ``embedding(semantic id) + Linear(FSQ vector)``, or a
learned *null* vector where the frame is dropped (classifier-free guidance's
unconditional branch in training and inference, and lost frames: concealment).
The semantic embedding is a learned projection of the id's frozen k-means
centroid (the table is a buffer copied from the tokenizer's codebook), so ids
that are near in feature space start near, and 8192 ids need no 8192-row
trainable table. Causal mixing blocks over token frames add the recent past (no look-ahead);
the result is repeated for the ``patches_per_token`` patches of the frame, plus
a learned embedding of the patch's place inside the frame.

Shapes: ``ids: [B, F]`` int64, ``q: [B, F, K]`` FSQ values, ``keep: [B, F]`` bool
(False = null condition) -> ``[B, F * patches_per_token, D]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from streamcodec.decoder.blocks import CausalMixBlock
from streamcodec.decoder.config import DecoderConfig


@dataclass
class CondState:
    """Left context of each causal conditioning block (None at stream start)."""

    context: list[torch.Tensor | None]


class CondEncoder(nn.Module):
    """Token frames -> per-patch conditioning vectors (causal, streamable)."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        # centroids of the semantic codebook [V, D_s] (set from the tokenizer in training)
        self.register_buffer("sem_table", torch.randn(cfg.sem_vocab, cfg.sem_dim) * 0.1)
        self.sem_proj = nn.Linear(cfg.sem_dim, d)
        self.fsq_proj = nn.Linear(cfg.fsq_dim, d)
        self.null = nn.Parameter(torch.zeros(d))
        self.blocks = nn.ModuleList(
            CausalMixBlock(d, cfg.cond_intermediate, cfg.cond_kernel, 1.0 / max(1, cfg.cond_layers))
            for _ in range(cfg.cond_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.sub_embed = nn.Parameter(torch.zeros(cfg.patches_per_token, d))

    def initial_state(self) -> CondState:
        return CondState([None] * len(self.blocks))

    def frame_inputs(
        self, ids: torch.Tensor, q: torch.Tensor, keep: torch.Tensor | None
    ) -> torch.Tensor:
        """Per-frame input vectors ``[B, F, D]`` (null where ``keep`` is False)."""
        cfg = self.cfg
        if ids.dim() != 2 or q.shape != (*ids.shape, cfg.fsq_dim):
            raise ValueError(
                f"need ids: [B, F] and q: [B, F, {cfg.fsq_dim}], got {tuple(ids.shape)} and "
                f"{tuple(q.shape)}"
            )
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= cfg.sem_vocab):
            raise ValueError(f"semantic ids must be in [0, {cfg.sem_vocab})")
        x = self.sem_proj(self.sem_table[ids].to(self.null.dtype)) + self.fsq_proj(
            q.to(self.null.dtype)
        )
        if keep is not None:
            if keep.shape != ids.shape:
                raise ValueError(f"keep must be {tuple(ids.shape)}, got {tuple(keep.shape)}")
            x = torch.where(keep[..., None], x, self.null.to(x.dtype))
        return x

    def forward(
        self,
        ids: torch.Tensor,
        q: torch.Tensor,
        keep: torch.Tensor | None = None,
        state: CondState | None = None,
    ) -> tuple[torch.Tensor, CondState]:
        """Conditioning ``[B, F * patches_per_token, D]`` for ``F`` frames, and the new state.

        Chunked calls threading the state equal one call over the whole sequence.
        """
        x = self.frame_inputs(ids, q, keep)
        state = state or self.initial_state()
        if x.shape[1] == 0:
            return x, state
        ctx = state.context
        new_ctx: list[torch.Tensor | None] = []
        for block, c_in in zip(self.blocks, ctx, strict=True):
            x, c_out = block(x, c_in)
            new_ctx.append(c_out)
        x = self.norm(x)
        ppt = self.cfg.patches_per_token
        if ppt > 1:
            b, f, d = x.shape
            x = (x[:, :, None, :] + self.sub_embed).reshape(b, f * ppt, d)
        else:
            x = x + self.sub_embed
        return x, CondState(new_ctx)
