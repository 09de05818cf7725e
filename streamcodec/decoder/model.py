"""Flow-matching mel decoder: a transformer over log-mel patches with per-patch flow time.

Rectified flow: ``x_t = t x_1 + (1 - t) x_0`` between noise ``x_0 ~ N(0, I)``
(``t = 0``) and normalised log-mel patches ``x_1`` (``t = 1``); the network
predicts the velocity ``x_1 - x_0``. Every patch carries its own ``t``, which
enters each block through a per-patch modulated group norm
(:func:`streamcodec.ops.group_norm_modulate_silu` on ``[B·N, D, 1]``), so clean
context patches (``t = 1``) and noisy patches share one sequence.

Attention is "diffusion forcing with a clean context": the patches of decode
chunk ``c`` (noisy) see the *clean* patches of chunks ``c - W .. c - 1`` and
themselves; a clean patch of chunk ``c`` sees clean chunks ``c - W .. c``
(``W = context_chunks``). Training runs both copies of a crop in one sequence
(:meth:`FlowDecoder.forward_two_stream`, a boolean mask through torch SDPA, the
autograd path); inference runs chunk by chunk against a per-stream KV cache of
the clean context (:meth:`FlowDecoder.forward_cached`, through
:func:`streamcodec.ops.attention`; a decode chunk sees every key in the window, so no
mask). The two agree to float rounding (``tests/test_decoder.py``).

Shapes: B batch, N patches, P patch values (``patch_frames * M``), D width,
H heads, Dh head width, C patches per chunk.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from streamcodec.decoder.conditioning import CondEncoder
from streamcodec.decoder.config import DecoderConfig
from streamcodec.ops import attention, group_norm_modulate_silu
from streamcodec.semantic.encoder import apply_rope, rope_tables


def timestep_features(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of flow times ``t: [...]`` in [0, 1] -> ``[..., dim]``."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    ang = 1000.0 * t.float()[..., None] * freqs
    return torch.cat([torch.cos(ang), torch.sin(ang)], dim=-1)


def two_stream_mask(
    n: int, chunk: int, window: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Boolean ``[2N, 2N]`` (True = may attend) for the sequence ``[clean N; noisy N]``.

    With ``c(i) = i // chunk``: clean ``i`` sees clean ``j`` with
    ``c(i) - window <= c(j) <= c(i)``; noisy ``i`` sees clean ``j`` with
    ``c(i) - window <= c(j) < c(i)`` and noisy ``j`` with ``c(j) == c(i)``.
    """
    c = torch.arange(n, device=device) // chunk
    ci, cj = c[:, None], c[None, :]
    in_window = cj >= ci - window
    clean_clean = in_window & (cj <= ci)
    noisy_clean = in_window & (cj < ci)
    noisy_noisy = cj == ci
    top = torch.cat([clean_clean, torch.zeros_like(clean_clean)], dim=1)
    bottom = torch.cat([noisy_clean, noisy_noisy], dim=1)
    return torch.cat([top, bottom], dim=0)


def _modulated_norm(
    x: torch.Tensor, groups: int, scale: torch.Tensor, shift: torch.Tensor
) -> torch.Tensor:
    """Per-patch ``SiLU(GroupNorm(x)(1 + scale) + shift)``: ``x, scale, shift: [B, N, D]``."""
    b, n, d = x.shape
    y = group_norm_modulate_silu(
        x.reshape(b * n, d, 1), groups, scale=scale.reshape(b * n, d), shift=shift.reshape(b * n, d)
    )
    return y.reshape(b, n, d)


class DecoderBlock(nn.Module):
    """Modulated norm -> attention -> residual; modulated norm -> MLP -> residual.

    The four modulation vectors (scale/shift before attention and before the MLP) are
    computed outside (:meth:`FlowDecoder.modulation`) and passed in as ``mod: [B, N, 4D]``.
    """

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.n_heads, self.groups = cfg.n_heads, cfg.norm_groups
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        hidden = int(round(d * cfg.mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))
        for lin in (self.proj, self.mlp[2]):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def qkv_heads(
        self, x: torch.Tensor, mod: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x: [B, N, D]``, ``mod: [B, N, 4D]`` -> rotated q, k and v ``[B, H, N, Dh]``."""
        b, n, d = x.shape
        h = _modulated_norm(x, self.groups, mod[..., :d], mod[..., d : 2 * d])
        qkv = self.qkv(h).view(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        qk = apply_rope(qkv[:2].flatten(0, 1), cos, sin).view(2, b, self.n_heads, n, -1)
        return qk[0], qk[1], qkv[2]

    def finish(self, x: torch.Tensor, attn: torch.Tensor, mod: torch.Tensor) -> torch.Tensor:
        b, _, n, _ = attn.shape
        d = x.shape[-1]
        x = x + self.proj(attn.transpose(1, 2).reshape(b, n, -1))
        return x + self.mlp(
            _modulated_norm(x, self.groups, mod[..., 2 * d : 3 * d], mod[..., 3 * d :])
        )


@dataclass
class KVCache:
    """Per-stream keys/values of the clean context: per layer one preallocated buffer
    ``[B, H, C + W·C, Dh]`` (``W = context_chunks``). Rows ``[0, C)`` hold the chunk being
    computed; rows ``[C, C + W·C)`` are a ring of the last ``W`` committed clean chunks
    (absolute chunk ``j`` in ring slot ``j mod W``). Every query of a decode chunk sees
    every cached key and the keys carry their rotary positions, so the attention does not
    depend on the keys' order and the ring is never shifted: a chunk costs two row writes
    per layer instead of re-concatenating the cache."""

    k: list[torch.Tensor | None] = field(default_factory=list)
    v: list[torch.Tensor | None] = field(default_factory=list)
    chunks: int = 0  # clean chunks committed so far (absolute)

    @classmethod
    def empty(cls, n_layers: int) -> KVCache:
        return cls([None] * n_layers, [None] * n_layers, 0)

    def keys_values(
        self, i: int, k: torch.Tensor, v: torch.Tensor, window: int, committed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``i``: put a chunk's ``k, v: [B, H, C, Dh]`` in the scratch rows and return the
        keys/values it attends to: the scratch rows and the ring slots of ``committed``
        chunks (at most ``window``)."""
        b, h, c, dh = k.shape
        buf = self.k[i]
        if (
            buf is None
            or buf.shape != (b, h, c * (window + 1), dh)
            or buf.dtype != k.dtype
            or buf.device != k.device
        ):
            self.k[i] = k.new_empty(b, h, c * (window + 1), dh)
            self.v[i] = v.new_empty(b, h, c * (window + 1), dh)
        kb, vb = self.k[i], self.v[i]
        kb[:, :, :c].copy_(k)
        vb[:, :, :c].copy_(v)
        n = c * (1 + min(committed, window))
        return kb[:, :, :n], vb[:, :, :n]

    def commit(self, i: int, window: int) -> None:
        """Copy layer ``i``'s scratch rows (a clean chunk) into its ring slot."""
        kb, vb = self.k[i], self.v[i]
        c = kb.shape[2] // (window + 1)
        lo = c * (1 + self.chunks % window)
        kb[:, :, lo : lo + c].copy_(kb[:, :, :c])
        vb[:, :, lo : lo + c].copy_(vb[:, :, :c])


class FlowDecoder(nn.Module):
    """Conditioning encoder + flow transformer; owns the mel normalisation statistics.

    Modulation of block ``l`` is ``A(SiLU(temb(t))) + B(cond) + b_l`` ("adaLN-single",
    PixArt-alpha: one time projection shared by the blocks plus a learned per-block
    offset ``b_l``). The time part depends only on ``t`` (at inference a handful of
    values, tabulated once per stream), the conditioning part only on the chunk's
    conditioning (computed once per chunk together with the additive input
    conditioning), so a network evaluation at inference runs only the attention and
    MLP weights.
    """

    def __init__(self, cfg: DecoderConfig | None = None) -> None:
        super().__init__()
        self.cfg = c = cfg or DecoderConfig()
        d = c.dim
        self.cond = CondEncoder(c)
        self.in_proj = nn.Linear(c.patch_dim, d)
        self.time_mlp = nn.Sequential(nn.Linear(c.time_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.time_mod = nn.Linear(d, self.mod_width)
        self.block_mod = nn.Parameter(torch.zeros(c.n_layers, 4 * d))  # per-block offsets
        # conditioning: 4 D block modulation (shared), 2 D output-norm modulation, D input term
        self.cond_proj = nn.Linear(d, 7 * d)
        for lin in (self.time_mod, self.cond_proj):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        nn.init.normal_(self.cond_proj.weight[6 * d :], std=d**-0.5)
        self.blocks = nn.ModuleList(DecoderBlock(c) for _ in range(c.n_layers))
        self.out_proj = nn.Linear(d, c.patch_dim)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)
        # normalisation of the natural-log mel: (mel - mean) / std per bin (set from data)
        self.register_buffer("mel_mean", torch.full((c.n_mels,), -6.0))
        self.register_buffer("mel_std", torch.full((c.n_mels,), 3.0))

    @property
    def mod_width(self) -> int:
        """Time-modulation values per patch: 4 D for the blocks + 2 D for the output norm."""
        return 6 * self.cfg.dim

    # ---- mel <-> patches ------------------------------------------------------------------
    def normalise(self, mel: torch.Tensor) -> torch.Tensor:
        """Natural-log mel ``[B, M, T]`` -> normalised ``[B, M, T]``."""
        return (mel - self.mel_mean[:, None]) / self.mel_std[:, None]

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mel_std[:, None] + self.mel_mean[:, None]

    def to_patches(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, M, N * patch_frames]`` -> ``[B, N, P]`` (frame-major inside a patch)."""
        b, m, t = x.shape
        pf = self.cfg.patch_frames
        if m != self.cfg.n_mels or t % pf:
            raise ValueError(f"expected [B, {self.cfg.n_mels}, multiple of {pf}], got {x.shape}")
        return x.reshape(b, m, t // pf, pf).permute(0, 2, 3, 1).reshape(b, t // pf, pf * m)

    def from_patches(self, p: torch.Tensor) -> torch.Tensor:
        """``[B, N, P]`` -> ``[B, M, N * patch_frames]``."""
        b, n, _ = p.shape
        pf, m = self.cfg.patch_frames, self.cfg.n_mels
        return p.reshape(b, n, pf, m).permute(0, 3, 1, 2).reshape(b, m, n * pf)

    # ---- network pieces -------------------------------------------------------------------
    def time_modulation(self, t: torch.Tensor) -> torch.Tensor:
        """Time part of the modulation: ``t: [...]`` -> ``[..., mod_width]``."""
        temb = self.time_mlp(timestep_features(t, self.cfg.time_dim).to(self.in_proj.weight.dtype))
        return self.time_mod(F.silu(temb))

    def cond_features(self, cond: torch.Tensor) -> torch.Tensor:
        """Conditioning part, once per chunk: ``cond: [B, N, D]`` -> ``[B, N, 7 D]``
        (block modulation 4 D, output-norm modulation 2 D, additive input term D)."""
        return self.cond_proj(cond)

    def _run(
        self,
        x: torch.Tensor,
        time_mod: torch.Tensor,
        cond_feat: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        attend: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """Blocks and head; ``time_mod: [B | 1, N | 1, mod_width]``, ``cond_feat: [B, N, 7 D]``;
        ``attend(i, q, k, v) -> [B, H, N, Dh]`` does layer ``i``'s attention."""
        d = self.cfg.dim
        h = self.in_proj(x) + cond_feat[..., 6 * d :]
        shared = time_mod[..., : 4 * d] + cond_feat[..., : 4 * d]
        for i, block in enumerate(self.blocks):
            m = shared + self.block_mod[i]
            q, k, v = block.qkv_heads(h, m, *rope)
            h = block.finish(h, attend(i, q, k, v), m)
        m = time_mod[..., 4 * d :] + cond_feat[..., 4 * d : 6 * d]
        return self.out_proj(_modulated_norm(h, self.cfg.norm_groups, m[..., :d], m[..., d:]))

    # ---- training: both streams in one sequence ----------------------------------------------
    def forward_two_stream(
        self,
        clean: torch.Tensor,
        noisy: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor,
        t_clean: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Velocity for every noisy patch, all chunks at once.

        clean, noisy: [B, N, P] (``N`` a multiple of ``chunk_tokens``); t: [B, N] flow time
        of the noisy patches; cond: [B, N, D]; t_clean: [B, N] (default ones).
        Returns [B, N, P]. Patch ``i`` of either stream sits at position ``i``.
        """
        b, n, _ = noisy.shape
        c = self.cfg
        if clean.shape != noisy.shape or t.shape != (b, n) or cond.shape != (b, n, c.dim):
            raise ValueError(
                f"shape mismatch: clean {tuple(clean.shape)}, noisy {tuple(noisy.shape)}, "
                f"t {tuple(t.shape)}, cond {tuple(cond.shape)}"
            )
        if n % c.chunk_tokens:
            raise ValueError(f"N={n} is not a multiple of chunk_tokens={c.chunk_tokens}")
        if t_clean is None:
            t_clean = torch.ones_like(t)
        cf = self.cond_features(cond).repeat(1, 2, 1)
        # flow times repeat within chunks: run the time MLP once per distinct value
        tu, inv = torch.unique(torch.cat([t_clean, t], 1), return_inverse=True)
        tm = self.time_modulation(tu)[inv]
        pos = torch.arange(n, device=noisy.device).repeat(2)
        rope = self._rope(pos[None])
        mask = two_stream_mask(n, c.chunk_tokens, c.context_chunks, noisy.device)

        def attend(i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            # custom mask: the torch SDPA path (the reference; autograd)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

        out = self._run(torch.cat([clean, noisy], 1), tm, cf, rope, attend)
        return out[:, n:]

    # ---- inference: one chunk against the KV cache --------------------------------------------
    def forward_cached(
        self,
        x: torch.Tensor,
        time_mod: torch.Tensor,
        cond_feat: torch.Tensor,
        cache: KVCache,
        n_clean: int = 0,
    ) -> torch.Tensor:
        """One network evaluation for the decode chunk after the clean context.

        x: [B, n_clean + C, P]: optionally the ``C`` clean patches of the previous chunk
        (``n_clean = C``; their keys/values are committed to ``cache``, a ring of the last
        ``context_chunks`` chunks), then the ``C`` noisy patches of the current chunk;
        time_mod: [B | 1, n_clean + C | 1, mod_width] (:meth:`time_modulation` of the rows'
        flow times); cond_feat: [B, n_clean + C, 7 D] (:meth:`cond_features`).
        Returns the velocity of the noisy patches [B, C, P]. With ``n_clean = 0`` the
        cache is only read.
        """
        cfg = self.cfg
        chunk = cfg.chunk_tokens
        if n_clean not in (0, chunk) or x.shape[1] != n_clean + chunk:
            raise ValueError(
                f"x must hold [n_clean in (0, {chunk})] clean + {chunk} noisy patches, got "
                f"{x.shape[1]} rows with n_clean={n_clean}"
            )
        # rows start at chunk ``cache.chunks``: the clean chunk to commit, else the noisy one
        pos = torch.arange(x.shape[1], device=x.device) + cache.chunks * chunk
        rope = self._rope(pos[None])
        window = cfg.context_chunks

        def attend(i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            outs = []
            done = cache.chunks
            if n_clean:  # the clean chunk sees the ring before its slot is overwritten
                kc, vc = cache.keys_values(i, k[:, :, :n_clean], v[:, :, :n_clean], window, done)
                outs.append(attention(q[:, :, :n_clean], kc, vc))
                cache.commit(i, window)
                done += 1
            kn, vn = cache.keys_values(i, k[:, :, n_clean:], v[:, :, n_clean:], window, done)
            outs.append(attention(q[:, :, n_clean:], kn, vn))
            return torch.cat(outs, 2) if len(outs) > 1 else outs[0]

        out = self._run(x, time_mod, cond_feat, rope, attend)
        if n_clean:
            cache.chunks += 1
        return out[:, n_clean:]

    def _rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return rope_tables(positions, self.cfg.head_dim, self.cfg.rope_base)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
