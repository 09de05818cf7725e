"""Streaming (and offline) inference of the semantic encoder with a per-stream KV cache.

:class:`EncoderStream` owns everything that belongs to one stream (mel history,
samples not yet forming a token, per-layer KV caches and pending queries), so
one loaded :class:`~streamcodec.semantic.encoder.SemanticEncoder` serves any
number of concurrent streams. Offline extraction is the same code fed the whole
signal at once, so streamed features equal offline features up to float
rounding, for any chunking of the input.

Attention geometry (per layer, chunk ``C`` tokens, look-ahead ``L`` chunks,
segment ``G`` chunks): a query in chunk ``c`` of segment ``s = c // G`` sees
key chunks ``max(0, (s - 1) G) .. c + L``. The KV cache therefore never holds
more than ``2 G + L`` chunks. Queries handed to the attention op are always the
last rows of the key slice (those beyond the wanted chunks are computed and
dropped), which is the contract of :func:`streamcodec.ops.attention`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from streamcodec.ops import attention
from streamcodec.semantic.encoder import Block, SemanticEncoder


@dataclass
class _LayerState:
    """One layer's per-stream state. Token counts are absolute stream positions."""

    x: torch.Tensor | None = None  # [B, n, D] layer input of tokens not yet output
    q: torch.Tensor | None = None  # [B, H, n, Dh] their rotated queries
    k: torch.Tensor | None = None  # [B, H, Nk, Dh] rotated keys from cache_start_chunk
    v: torch.Tensor | None = None
    cache_start_chunk: int = 0
    out_next_chunk: int = 0  # first chunk whose output is not yet computed
    in_tokens: int = 0  # tokens received


def _cat(a: torch.Tensor | None, b: torch.Tensor, dim: int) -> torch.Tensor:
    return b if a is None else torch.cat([a, b], dim=dim)


def _run_layer(
    block: Block,
    st: _LayerState,
    x_new: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    chunk: int,
    lookahead: int,
    segment: int,
    final: bool,
) -> torch.Tensor:
    """Feed ``x_new: [B, n, D]`` (whole chunks unless ``final``) to one layer; return the
    outputs ``[B, m, D]`` of every chunk that has become computable."""
    if x_new.shape[1]:
        q, k, v = block.qkv_heads(x_new, cos, sin)
        st.x, st.q = _cat(st.x, x_new, 1), _cat(st.q, q, 2)
        st.k, st.v = _cat(st.k, k, 2), _cat(st.v, v, 2)
        st.in_tokens += x_new.shape[1]
    in_chunks = -(-st.in_tokens // chunk) if final else st.in_tokens // chunk
    out_end = in_chunks if final else max(st.out_next_chunk, in_chunks - lookahead)
    if out_end <= st.out_next_chunk or st.x is None:
        return x_new[:, :0]
    base_tok = st.out_next_chunk * chunk  # token index of st.x / st.q row 0
    attn_rows = []
    g0 = st.out_next_chunk
    while g0 < out_end:
        seg = g0 // segment
        g1 = min(out_end, (seg + 1) * segment)
        k_lo = max(0, (seg - 1) * segment) * chunk
        k_hi = min(st.in_tokens, (g1 + lookahead) * chunk)
        c0 = st.cache_start_chunk * chunk
        q_rows = st.q[:, :, g0 * chunk - base_tok : k_hi - base_tok]
        out = attention(
            q_rows,
            st.k[:, :, k_lo - c0 : k_hi - c0],
            st.v[:, :, k_lo - c0 : k_hi - c0],
            mask="block_causal",
            chunk_size=chunk,
            lookahead_chunks=lookahead,
        )
        attn_rows.append(out[:, :, : min(g1 * chunk, st.in_tokens) - g0 * chunk])
        g0 = g1
    n_out = min(out_end * chunk, st.in_tokens) - base_tok
    y = block.finish(st.x[:, :n_out], torch.cat(attn_rows, dim=2))
    st.x, st.q = st.x[:, n_out:], st.q[:, :, n_out:]
    st.out_next_chunk = out_end
    keep_from = max(0, (out_end // segment - 1) * segment)
    if keep_from > st.cache_start_chunk:
        drop = (keep_from - st.cache_start_chunk) * chunk
        st.k, st.v = st.k[:, :, drop:], st.v[:, :, drop:]
        st.cache_start_chunk = keep_from
    return y


@dataclass
class EncoderStream:
    """One stream through a shared encoder: ``push(pcm) -> features``, then ``flush()``.

    ``pcm: [B, T] float32`` at the encoder's sample rate, any ``T`` per push;
    features come out as ``[B, N, D]`` for every 20 ms token that has become
    computable (``N`` may be 0). ``flush()`` zero-pads the tail to a whole token
    and returns the rest. ``positions`` counts tokens emitted so far.
    """

    encoder: SemanticEncoder
    batch_size: int = 1
    _history: torch.Tensor = field(init=False)
    _leftover: torch.Tensor = field(init=False)
    _layers: list[_LayerState] = field(init=False)
    _feature_bufs: dict[int, torch.Tensor] = field(init=False)
    _tokens_in: int = field(default=0, init=False)
    _pending: torch.Tensor | None = field(default=None, init=False)  # patches < 1 chunk
    positions: int = field(default=0, init=False)
    finished: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        cfg = self.encoder.cfg
        dev = next(self.encoder.parameters()).device
        self._history = torch.zeros(self.batch_size, cfg.mel.history_samples, device=dev)
        self._leftover = torch.zeros(self.batch_size, 0, device=dev)
        self._layers = [_LayerState() for _ in range(cfg.n_layers)]
        self._feature_bufs = {
            i: torch.zeros(self.batch_size, 0, cfg.d_model, device=dev) for i in cfg.feature_layers
        }

    @torch.no_grad()
    def push(self, pcm: torch.Tensor) -> torch.Tensor:
        """Append samples ``[B, T]``; return features ``[B, N, D]`` now computable."""
        if self.finished:
            raise ValueError("stream already flushed; start a new EncoderStream")
        pcm = self._check(pcm)
        patches = self._patches(torch.cat([self._leftover, pcm], dim=1))
        chunk = self.encoder.cfg.chunk_tokens
        patches = _cat(self._pending, patches, 1)
        n_whole = patches.shape[1] // chunk * chunk
        self._pending = patches[:, n_whole:]
        return self._advance(patches[:, :n_whole], final=False)

    @torch.no_grad()
    def flush(self) -> torch.Tensor:
        """Zero-pad the tail to a whole token, finish the stream, return the rest ``[B, N, D]``."""
        if self.finished:
            raise ValueError("stream already flushed")
        ts = self.encoder.cfg.token_samples
        tail = self._leftover
        if tail.shape[1]:
            tail = F.pad(tail, (0, ts - tail.shape[1]))
        patches = _cat(self._pending, self._patches(tail), 1)
        self._pending = None
        self.finished = True
        return self._advance(patches, final=True)

    # ---- internals --------------------------------------------------------------------
    def _check(self, pcm: torch.Tensor) -> torch.Tensor:
        if not isinstance(pcm, torch.Tensor):
            raise TypeError(f"pcm must be a torch.Tensor [B, T], got {type(pcm).__name__}")
        if pcm.dim() != 2 or pcm.shape[0] != self.batch_size:
            raise ValueError(f"pcm must be [{self.batch_size}, T], got {tuple(pcm.shape)}")
        if not pcm.is_floating_point():
            raise TypeError(f"pcm must be floating point in [-1, 1], got {pcm.dtype}")
        return pcm.to(self._history.device, torch.float32)

    def _patches(self, samples: torch.Tensor) -> torch.Tensor:
        """Cut whole tokens from ``samples``; keep the rest and the mel history."""
        cfg = self.encoder.cfg
        n_tok = samples.shape[1] // cfg.token_samples
        use = n_tok * cfg.token_samples
        self._leftover = samples[:, use:]
        if n_tok == 0:
            return samples.new_zeros(self.batch_size, 0, cfg.patch_dim)
        sig = torch.cat([self._history, samples[:, :use]], dim=1)
        self._history = sig[:, sig.shape[1] - cfg.mel.history_samples :]
        n_frames = n_tok * cfg.patch_frames
        mel = self.encoder.logmel(sig)[:, :, -n_frames:]
        return self.encoder.patches(mel)

    def _advance(self, patches: torch.Tensor, final: bool) -> torch.Tensor:
        enc, cfg = self.encoder, self.encoder.cfg
        x = enc.patch_embed(patches)
        for i, (block, st) in enumerate(zip(enc.blocks, self._layers, strict=True)):
            pos = torch.arange(st.in_tokens, st.in_tokens + x.shape[1], device=x.device)
            cos, sin = enc.rope(pos[None])
            x = _run_layer(
                block,
                st,
                x,
                cos,
                sin,
                cfg.chunk_tokens,
                cfg.lookahead_chunks[i],
                cfg.segment_chunks,
                final,
            )
            if i in self._feature_bufs:
                normed = F.layer_norm(x, (cfg.d_model,))
                self._feature_bufs[i] = torch.cat([self._feature_bufs[i], normed], dim=1)
        n = min(buf.shape[1] for buf in self._feature_bufs.values())
        feats = torch.stack([buf[:, :n] for buf in self._feature_bufs.values()]).mean(0)
        self._feature_bufs = {i: buf[:, n:] for i, buf in self._feature_bufs.items()}
        self.positions += n
        return feats


@torch.no_grad()
def extract_features(encoder: SemanticEncoder, pcm: torch.Tensor) -> torch.Tensor:
    """Offline features: ``pcm: [B, T]`` -> ``[B, ceil(T / token_samples), D]``."""
    stream = EncoderStream(encoder, batch_size=pcm.shape[0] if pcm.dim() == 2 else 1)
    first = stream.push(pcm)
    return torch.cat([first, stream.flush()], dim=1)
