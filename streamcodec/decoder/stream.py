"""Per-stream decoder session: token frames in, log-mel out, one decode chunk at a time.

The session owns everything of one stream: the conditioning encoder's causal
state (computed once per chunk and kept), the KV cache of the clean context,
the previous chunk's generated patches (the next chunk's context), the frames
waiting to fill a chunk and the seeded noise generator. One loaded
:class:`~streamcodec.decoder.model.FlowDecoder` serves any number of streams.
The concatenated output of ``push`` ... ``flush`` equals
:func:`streamcodec.decoder.sampling.generate` of the same frames.
"""

from __future__ import annotations

import torch

from streamcodec.decoder.conditioning import CondState
from streamcodec.decoder.model import FlowDecoder, KVCache
from streamcodec.decoder.sampling import (
    DEFAULT_SAMPLER,
    SamplerConfig,
    _check_frames,
    _pad_frames,
    branch_inputs,
    draw_noise,
    sample_chunk,
    time_table,
)


class DecoderStream:
    """``push(ids [F], q [F, K], keep [F]) -> log-mel [M, n]``; ``flush()`` at the end."""

    def __init__(self, decoder: FlowDecoder, sampler: SamplerConfig = DEFAULT_SAMPLER) -> None:
        self.decoder = decoder
        self.sampler = sampler
        cfg = decoder.cfg
        self._gen = torch.Generator().manual_seed(sampler.seed)
        with torch.inference_mode():
            self._table = time_table(decoder, sampler.steps)
        self._cache = KVCache.empty(cfg.n_layers)
        self._cond_state: CondState | None = None
        self._context: tuple[torch.Tensor, torch.Tensor] | None = None
        self._ids = torch.zeros(0, dtype=torch.long)
        self._q = torch.zeros(0, cfg.fsq_dim)
        self._keep = torch.zeros(0, dtype=torch.bool)
        self._closed = False
        self.frames_in = 0

    @property
    def pending_frames(self) -> int:
        """Token frames received but not yet decoded (less than a chunk)."""
        return int(self._ids.shape[0])

    @torch.inference_mode()
    def push(
        self, ids: torch.Tensor, q: torch.Tensor, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Add ``F`` token frames (``keep`` False = lost frame: null condition); return the
        natural log-mel ``[M, n]`` of every chunk now complete (``n`` may be 0)."""
        if self._closed:
            raise ValueError("push() after flush(): this decoder stream is closed")
        keep = _check_frames(self.decoder, ids, q, keep)
        self.frames_in += ids.shape[0]
        self._ids = torch.cat([self._ids, ids.long()])
        self._q = torch.cat([self._q, q.float()])
        self._keep = torch.cat([self._keep, keep])
        cf = self.decoder.cfg.chunk_token_frames
        n = self._ids.shape[0] // cf * cf
        out = self._decode(self._ids[:n], self._q[:n], self._keep[:n])
        self._ids, self._q, self._keep = self._ids[n:], self._q[n:], self._keep[n:]
        return out

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """End of stream: decode the last partial chunk (padded with null frames) and return
        the log-mel of its real frames ``[M, n]``."""
        if self._closed:
            return torch.zeros(self.decoder.cfg.n_mels, 0)
        self._closed = True
        n = self._ids.shape[0]
        if n == 0:
            return torch.zeros(self.decoder.cfg.n_mels, 0)
        cf = self.decoder.cfg.chunk_token_frames
        mel = self._decode(*_pad_frames(self._ids, self._q, self._keep, cf))
        return mel[:, : n * self.decoder.cfg.mel_frames_per_token]

    def _decode(self, ids: torch.Tensor, q: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        dec, cfg, sampler = self.decoder, self.decoder.cfg, self.sampler
        if ids.shape[0] == 0:
            return torch.zeros(cfg.n_mels, 0)
        dev = dec.mel_mean.device
        cond, self._cond_state = dec.cond(
            *(t.to(dev) for t in branch_inputs(ids, q, keep, sampler.branches)),
            state=self._cond_state,
        )
        feats = dec.cond_features(cond)
        c = cfg.chunk_tokens
        out = []
        for i in range(cond.shape[1] // c):
            cf = feats[:, i * c : (i + 1) * c]
            noise = draw_noise(dec, self._gen, sampler.noise_scale)
            x = sample_chunk(dec, cf, self._cache, self._context, noise, sampler, self._table)
            self._context = (x, cf)
            out.append(x)
        mel = dec.denormalise(dec.from_patches(torch.cat(out, 1)))
        return mel[0].cpu()
