"""Few-step Euler sampling of the flow decoder, chunk by chunk, with a cached clean context.

Per decode chunk of ``C`` patches: draw noise ``x_0: [1, C, P]`` from the stream's
seeded generator, take ``steps`` Euler steps ``x += v(x, t) / steps`` at
``t = 0, 1/steps, ...``. Classifier-free guidance evaluates the conditional and
the unconditional (all-null) branch as one batch of two and mixes
``v = v_u + g (v_c - v_u)``; ``guidance = 1`` skips the unconditional branch.
The first step of a chunk also carries the previous chunk's generated patches at
``t = 1`` (the clean context), whose keys/values it commits to the cache, so a
chunk costs exactly ``steps`` network evaluations.

:func:`generate` is the offline decoder (conditioning of all frames in one pass);
:class:`streamcodec.decoder.stream.DecoderStream` is the same procedure fed
frame by frame; :func:`generate_uncached` recomputes the whole clean prefix at
every step with the training path, the ground truth for the cache.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch

from streamcodec.decoder.model import FlowDecoder, KVCache


@dataclass(frozen=True)
class SamplerConfig:
    """``steps`` network evaluations per chunk, guidance scale, noise seed and scale."""

    steps: int = 4
    guidance: float = 1.0
    seed: int = 0
    noise_scale: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {self.steps!r}")
        if not self.guidance >= 0:
            raise ValueError(f"guidance must be >= 0, got {self.guidance!r}")
        if not self.noise_scale >= 0:
            raise ValueError(f"noise_scale must be >= 0, got {self.noise_scale!r}")

    @property
    def guided(self) -> bool:
        return self.guidance != 1.0

    @property
    def branches(self) -> int:
        """Batch rows per stream: 2 with guidance (cond, uncond), else 1."""
        return 2 if self.guided else 1

    def to_json(self) -> str:
        return json.dumps(asdict(self))


DEFAULT_SAMPLER = SamplerConfig()


def branch_inputs(
    ids: torch.Tensor, q: torch.Tensor, keep: torch.Tensor, branches: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[F]``-shaped frame inputs -> ``[branches, F]`` (row 1: the all-null branch)."""
    ids, q, keep = ids[None], q[None], keep[None]
    if branches == 2:
        ids, q = ids.expand(2, -1), q.expand(2, -1, -1)
        keep = torch.cat([keep, torch.zeros_like(keep)])
    return ids, q, keep


def draw_noise(decoder: FlowDecoder, gen: torch.Generator, scale: float) -> torch.Tensor:
    c = decoder.cfg
    x = torch.randn(1, c.chunk_tokens, c.patch_dim, generator=gen)
    return (x * scale).to(decoder.mel_mean.device)


def time_table(decoder: FlowDecoder, steps: int) -> torch.Tensor:
    """Time modulation at ``t = 0, 1/steps, ..., (steps - 1)/steps`` and ``t = 1`` (the clean
    context): ``[steps + 1, mod_width]``; computed once per stream."""
    t = torch.tensor([k / steps for k in range(steps)] + [1.0], device=decoder.mel_mean.device)
    return decoder.time_modulation(t)


def sample_chunk(
    decoder: FlowDecoder,
    cond_feat: torch.Tensor,
    cache: KVCache,
    context: tuple[torch.Tensor, torch.Tensor] | None,
    noise: torch.Tensor,
    sampler: SamplerConfig,
    table: torch.Tensor,
) -> torch.Tensor:
    """Generate one chunk for ``S`` streams at once (``S = 1`` in a session).

    noise: [S, C, P]; cond_feat: [Bc·S, C, 7 D] (:meth:`FlowDecoder.cond_features` of
    the chunk's conditioning; the S conditional rows, then, with guidance, the S
    unconditional rows); context: (patches [S, C, P], cond_feat [Bc·S, C, 7 D]) of the
    previous chunk, or None; table: [steps + 1, mod_width] from :func:`time_table`.
    Returns normalised patches [S, C, P] and commits the context to ``cache``.
    """
    x = noise
    s = x.shape[0]
    bc = cond_feat.shape[0] // s
    n = sampler.steps
    for k in range(n):
        xin = x.repeat(bc, 1, 1) if bc > 1 else x
        if k == 0 and context is not None:
            prev, prev_feat = context
            c = prev.shape[1]
            tm = torch.cat([table[n].expand(c, -1), table[k].expand(x.shape[1], -1)])[None]
            v = decoder.forward_cached(
                torch.cat([prev.repeat(bc, 1, 1) if bc > 1 else prev, xin], 1),
                tm,
                torch.cat([prev_feat, cond_feat], 1),
                cache,
                n_clean=c,
            )
        else:
            v = decoder.forward_cached(xin, table[k][None, None], cond_feat, cache)
        if bc == 2:
            v = v[s:] + sampler.guidance * (v[:s] - v[s:])
        x = x + v / n
    return x


def _pad_frames(
    ids: torch.Tensor, q: torch.Tensor, keep: torch.Tensor, frames: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad ``[F]`` frame inputs with null frames to ``frames``."""
    pad = frames - ids.shape[0]
    if pad <= 0:
        return ids, q, keep
    return (
        torch.cat([ids, ids.new_zeros(pad)]),
        torch.cat([q, q.new_zeros(pad, q.shape[1])]),
        torch.cat([keep, keep.new_zeros(pad)]),
    )


def _check_frames(
    decoder: FlowDecoder, ids: torch.Tensor, q: torch.Tensor, keep: torch.Tensor | None
) -> torch.Tensor:
    k = decoder.cfg.fsq_dim
    if ids.dim() != 1 or q.shape != (ids.shape[0], k):
        raise ValueError(f"need ids: [F] and q: [F, {k}], got {tuple(ids.shape)}, {tuple(q.shape)}")
    if keep is None:
        return torch.ones_like(ids, dtype=torch.bool)
    if keep.shape != ids.shape or keep.dtype != torch.bool:
        raise ValueError(f"keep must be a bool tensor [{ids.shape[0]}]")
    return keep


@torch.inference_mode()
def generate(
    decoder: FlowDecoder,
    ids: torch.Tensor,
    q: torch.Tensor,
    keep: torch.Tensor | None = None,
    sampler: SamplerConfig = DEFAULT_SAMPLER,
) -> torch.Tensor:
    """Offline decode: ``ids: [F]``, ``q: [F, K]``, ``keep: [F]`` bool -> log-mel ``[M, F * k]``
    (natural log, ``k = mel_frames_per_token``). Same chunks and noise as a stream."""
    keep = _check_frames(decoder, ids, q, keep)
    cfg = decoder.cfg
    n_frames = ids.shape[0]
    cf = cfg.chunk_token_frames
    n_chunks = -(-n_frames // cf)
    ids, q, keep = _pad_frames(ids, q, keep, n_chunks * cf)
    cond, _ = decoder.cond(*branch_inputs(ids, q, keep, sampler.branches))
    feats = decoder.cond_features(cond)
    table = time_table(decoder, sampler.steps)
    gen = torch.Generator().manual_seed(sampler.seed)
    cache = KVCache.empty(cfg.n_layers)
    c = cfg.chunk_tokens
    context = None
    out = []
    for i in range(n_chunks):
        cf = feats[:, i * c : (i + 1) * c]
        noise = draw_noise(decoder, gen, sampler.noise_scale)
        x = sample_chunk(decoder, cf, cache, context, noise, sampler, table)
        context = (x, cf)
        out.append(x)
    if not out:
        return torch.zeros(cfg.n_mels, 0)
    mel = decoder.denormalise(decoder.from_patches(torch.cat(out, 1)))[0]
    return mel[:, : n_frames * cfg.mel_frames_per_token]


@torch.no_grad()
def generate_uncached(
    decoder: FlowDecoder,
    ids: torch.Tensor,
    q: torch.Tensor,
    keep: torch.Tensor | None = None,
    sampler: SamplerConfig = DEFAULT_SAMPLER,
) -> torch.Tensor:
    """:func:`generate` without a KV cache: every step reruns the whole clean prefix through
    :meth:`FlowDecoder.forward_two_stream` (the training path). Slow; for tests."""
    keep = _check_frames(decoder, ids, q, keep)
    cfg = decoder.cfg
    n_frames = ids.shape[0]
    cf, c = cfg.chunk_token_frames, cfg.chunk_tokens
    n_chunks = -(-n_frames // cf)
    ids, q, keep = _pad_frames(ids, q, keep, n_chunks * cf)
    cond, _ = decoder.cond(*branch_inputs(ids, q, keep, sampler.branches))
    bc = cond.shape[0]
    gen = torch.Generator().manual_seed(sampler.seed)
    done: list[torch.Tensor] = []
    for i in range(n_chunks):
        x = draw_noise(decoder, gen, sampler.noise_scale)
        n = (i + 1) * c
        for k in range(sampler.steps):
            clean = torch.cat([*done, torch.zeros_like(x)], 1).expand(bc, -1, -1)
            noisy = torch.cat([torch.zeros(1, i * c, x.shape[2]), x], 1).expand(bc, -1, -1)
            t = torch.full((bc, n), k / sampler.steps)
            v = decoder.forward_two_stream(clean, noisy, t, cond[:, :n])[:, -c:]
            if bc == 2:
                v = v[1:] + sampler.guidance * (v[:1] - v[1:])
            x = x + v / sampler.steps
        done.append(x)
    mel = decoder.denormalise(decoder.from_patches(torch.cat(done, 1)))[0]
    return mel[:, : n_frames * cfg.mel_frames_per_token]
