"""Opus through PyAV's ``libopus``: 16 kHz in, 20 ms frames, VBR, voip application.

FFmpeg's libopus decoder always outputs 48 kHz; the session brings it back to
16 kHz with a streaming :class:`~streamcodec.audio.FirResampler`.
"""

from __future__ import annotations

import av
import numpy as np

from streamcodec.audio import FirResampler
from streamcodec.baselines.pyav_codec import FrameEncoder, decode_packet, open_decoder, open_encoder
from streamcodec.codec import Codec, DecoderSession, EncoderSession, Frame
from streamcodec.concealment import RepeatFade

DECODER_RATE = 48000  # what FFmpeg's libopus decoder produces


class OpusCodec(Codec):
    """Opus at ``bitrate`` bit/s (variable-rate frames: ``bits_per_frame is None``)."""

    sample_rate = 16000
    frame_samples = 320  # 20 ms
    bits_per_frame = None

    def __init__(self, bitrate: int = 6000) -> None:
        if not isinstance(bitrate, int) or not 500 <= bitrate <= 512000:
            raise ValueError(f"Opus bitrate must be an int in [500, 512000], got {bitrate!r}")
        self.bitrate = bitrate
        self.name = f"opus-{bitrate // 1000}k" if bitrate % 1000 == 0 else f"opus-{bitrate}"
        self.options = {"application": "voip", "frame_duration": "20", "vbr": "on"}
        self.delay_samples = round(FirResampler(DECODER_RATE, 16000).delay_s * self.sample_rate)

    def encoder(self) -> EncoderSession:
        return _OpusEncoder(self)

    def decoder(self) -> DecoderSession:
        return _OpusDecoder(self)


class _OpusEncoder(EncoderSession):
    def __init__(self, codec: OpusCodec) -> None:
        super().__init__(codec)
        ctx = open_encoder("libopus", codec.sample_rate, codec.bitrate, codec.options)
        self._enc = FrameEncoder(ctx)

    def _encode_frame(self, pcm: np.ndarray) -> list[Frame]:
        return self._enc.encode(pcm)

    def _finish(self) -> list[Frame]:
        return self._enc.finish()


class _OpusDecoder(DecoderSession):
    def __init__(self, codec: OpusCodec) -> None:
        super().__init__(codec)
        self._ctx = open_decoder("libopus", DECODER_RATE)
        self._down = FirResampler(DECODER_RATE, codec.sample_rate)
        self._plc = RepeatFade(codec.frame_samples)

    def _decode_frame(self, frame: Frame) -> np.ndarray:
        try:
            pcm = decode_packet(self._ctx, frame)
        except av.error.FFmpegError as exc:
            raise ValueError(f"opus: undecodable frame of {len(frame)} bytes ({exc})") from exc
        return self._plc.good(self._down.process(pcm))

    def _conceal(self) -> np.ndarray:
        return self._plc.conceal()
