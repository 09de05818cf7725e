"""The semantic encoder: a block-causal ViT over 20 ms log-mel patches with rotary positions.

Shapes: B batch, T samples, M mel bins, F mel frames, N tokens (20 ms patches),
P patch values (``patch_frames * M``), D model width, H heads, Dh head width.

One module serves three callers:

- MAE pretraining (:meth:`SemanticEncoder.forward_dense`): any subset of whole
  chunks (the visible ones) with their original token positions, one
  block-causal attention call per layer over the whole crop;
- offline and streaming inference (:mod:`streamcodec.semantic.streaming`),
  which run the blocks chunk-group by chunk-group against a KV cache held in a
  per-stream state object, never in this module.

Rotary position angles are computed in float64 from absolute token indices, so
scores depend only on relative positions and stay exact for streams of any length.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from streamcodec.features import LogMel
from streamcodec.ops import attention
from streamcodec.semantic.config import SemanticEncoderConfig


def rope_tables(
    positions: torch.Tensor, head_dim: int, base: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables ``[..., Dh // 2]`` float32 for integer ``positions: [...]``."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = positions.to(torch.float64)[..., None] * inv_freq.to(positions.device)
    angles = torch.remainder(angles, 2 * math.pi)
    return torch.cos(angles).float(), torch.sin(angles).float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate half-pairs of ``x: [B, H, N, Dh]`` by ``cos, sin: [B|1, N, Dh // 2]``."""
    cos, sin = cos[:, None].to(x.dtype), sin[:, None].to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def mel_to_patches(mel: torch.Tensor, cfg: SemanticEncoderConfig) -> torch.Tensor:
    """Natural-log mel ``[B, M, F]`` -> normalised patches ``[B, F // patch_frames, P]``.

    A patch holds ``patch_frames`` consecutive frames, frame-major; trailing frames that
    do not fill a patch are dropped.
    """
    if mel.dim() != 3 or mel.shape[1] != cfg.mel.n_mels:
        raise ValueError(f"expected mel: [B, {cfg.mel.n_mels}, F], got {tuple(mel.shape)}")
    b, m, f = mel.shape
    n = f // cfg.patch_frames
    x = (mel[:, :, : n * cfg.patch_frames] - cfg.mel_mean) / cfg.mel_std
    return x.reshape(b, m, n, cfg.patch_frames).permute(0, 2, 3, 1).reshape(b, n, cfg.patch_dim)


class Block(nn.Module):
    """Pre-LN transformer block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``, ``x: [B, N, D]``."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        hidden = int(round(d_model * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(), nn.Linear(hidden, d_model))

    def qkv_heads(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x: [B, N, D]`` -> rotated q, rotated k, v, each ``[B, H, N, Dh]``."""
        b, n, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, self.n_heads, d // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def finish(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """Residual + projection of ``attn: [B, H, N, Dh]`` and the MLP; ``x: [B, N, D]``."""
        b, _, n, _ = attn.shape
        x = x + self.proj(attn.transpose(1, 2).reshape(b, n, -1))
        return x + self.mlp(self.norm2(x))

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: str = "none",
        chunk_size: int | None = None,
        lookahead_chunks: int = 0,
    ) -> torch.Tensor:
        q, k, v = self.qkv_heads(x, cos, sin)
        kwargs = {"chunk_size": chunk_size, "lookahead_chunks": lookahead_chunks}
        attn = attention(q, k, v, mask=mask, **(kwargs if mask == "block_causal" else {}))
        return self.finish(x, attn)


class SemanticEncoder(nn.Module):
    """Log-mel patch embedding + ``n_layers`` block-causal transformer blocks.

    Holds weights only; per-stream state lives in
    :class:`streamcodec.semantic.streaming.EncoderState`.
    """

    def __init__(self, cfg: SemanticEncoderConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or SemanticEncoderConfig()
        c = self.cfg
        self.logmel = LogMel(c.mel)
        self.patch_embed = nn.Linear(c.patch_dim, c.d_model)
        self.blocks = nn.ModuleList(
            Block(c.d_model, c.n_heads, c.mlp_ratio) for _ in range(c.n_layers)
        )
        self.apply(_init_weights)

    # ---- input side -------------------------------------------------------------------
    def patches(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[B, M, F]`` -> normalised patches ``[B, F // patch_frames, P]``."""
        return mel_to_patches(mel, self.cfg)

    def wave_to_patches(self, pcm: torch.Tensor) -> torch.Tensor:
        """``pcm: [B, T] float32`` (``T`` a multiple of ``token_samples``) -> ``[B, N, P]``."""
        return self.patches(self.logmel(pcm))

    def rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return rope_tables(positions, self.cfg.head_dim, self.cfg.rope_base)

    # ---- dense pass (training) --------------------------------------------------------
    def forward_dense(
        self, patches: torch.Tensor, positions: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Run all blocks over whole chunks in one block-causal call per layer.

        patches: [B, N, P] with ``N`` a multiple of ``chunk_tokens`` (whole chunks,
        e.g. the visible chunks of an MAE crop); positions: [B, N] or [N] int64
        token indices (default ``0..N-1``). Returns each block's output, ``n_layers``
        tensors ``[B, N, D]``. Unlike the streaming path the context does not slide
        by segments, so this equals inference only for ``N <= 2 * segment_chunks``
        chunks' worth of positions (training crops are shorter than that).
        """
        c = self.cfg
        if patches.dim() != 3 or patches.shape[-1] != c.patch_dim:
            raise ValueError(f"expected patches: [B, N, {c.patch_dim}], got {tuple(patches.shape)}")
        b, n, _ = patches.shape
        if n % c.chunk_tokens:
            raise ValueError(f"N={n} tokens is not a whole number of {c.chunk_tokens}-token chunks")
        if positions is None:
            positions = torch.arange(n, device=patches.device)
        if positions.dim() == 1:
            positions = positions[None]
        cos, sin = self.rope(positions)
        x = self.patch_embed(patches)
        outs = []
        for block, la in zip(self.blocks, c.lookahead_chunks, strict=True):
            x = block(x, cos, sin, "block_causal", c.chunk_tokens, la)
            outs.append(x)
        return outs

    def feature_trunk(self) -> SemanticEncoder:
        """A copy without the blocks after the last feature layer.

        Features depend only on blocks ``0..max(feature_layers)``; the rest served the MAE
        objective. The trunk gives identical features for a fraction of the compute and
        weights (the shipped tokenizer uses block 0 of 8).
        """
        c = self.cfg
        keep = max(c.feature_layers) + 1
        if keep == c.n_layers:
            return self
        cfg = replace(c, n_layers=keep, lookahead_chunks=c.lookahead_chunks[:keep])
        trunk = SemanticEncoder(cfg)
        state = {
            k: v
            for k, v in self.state_dict().items()
            if not k.startswith("blocks.") or int(k.split(".")[1]) < keep
        }
        trunk.load_state_dict(state)
        return trunk.train(self.training)

    def features_from_layers(self, layer_outputs: list[torch.Tensor]) -> torch.Tensor:
        """Mean of the parameter-free LayerNorm'd ``feature_layers`` outputs: ``[B, N, D]``."""
        d = self.cfg.d_model
        sel = [F.layer_norm(layer_outputs[i], (d,)) for i in self.cfg.feature_layers]
        return torch.stack(sel).mean(0)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
