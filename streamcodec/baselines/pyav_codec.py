"""Shared plumbing for codecs run through PyAV's ``CodecContext`` (Opus, AMR-NB)."""

from __future__ import annotations

import av
import numpy as np


def open_encoder(
    codec_name: str, sample_rate: int, bit_rate: int, options: dict[str, str] | None = None
) -> av.CodecContext:
    ctx = av.CodecContext.create(codec_name, "w")
    ctx.sample_rate = sample_rate
    ctx.layout = "mono"
    ctx.format = "s16"
    ctx.bit_rate = bit_rate
    if options:
        ctx.options = dict(options)
    ctx.open()
    return ctx


def open_decoder(codec_name: str, sample_rate: int) -> av.CodecContext:
    ctx = av.CodecContext.create(codec_name, "r")
    ctx.sample_rate = sample_rate
    ctx.layout = "mono"
    ctx.open()
    return ctx


class FrameEncoder:
    """Feeds fixed-size int16 frames to an encoder context and collects its packets."""

    def __init__(self, ctx: av.CodecContext) -> None:
        self.ctx = ctx
        self._pts = 0

    def encode(self, pcm: np.ndarray) -> list[bytes]:
        """``pcm: [n] float32`` (one codec frame) -> the packets it completes."""
        pcm16 = (np.clip(pcm, -1.0, 1.0) * 32767.0).round().astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm16[None, :], format="s16", layout="mono")
        frame.sample_rate = self.ctx.sample_rate
        frame.pts = self._pts
        self._pts += pcm16.size
        return [bytes(p) for p in self.ctx.encode(frame)]

    def finish(self) -> list[bytes]:
        """Drain the encoder's look-ahead at end of stream."""
        return [bytes(p) for p in self.ctx.encode(None)]


def decode_packet(ctx: av.CodecContext, data: bytes) -> np.ndarray:
    """Decode one packet to ``[n] float32`` mono."""
    out = []
    for frame in ctx.decode(av.Packet(data)):
        arr = frame.to_ndarray()
        if arr.dtype == np.int16:
            arr = arr.astype(np.float32) / 32768.0
        out.append(arr.reshape(-1).astype(np.float32, copy=False))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
