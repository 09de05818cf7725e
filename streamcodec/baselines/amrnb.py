"""AMR-NB through PyAV's ``libopencore_amrnb`` (narrow-band; 16 <-> 8 kHz resampled).

Frames are the speech bits only: the one-byte table-of-contents header of the
storage format is stripped on encode and rebuilt on decode, so MR475 carries
95 bits per 20 ms = 4750 bit/s.
"""

from __future__ import annotations

import av
import numpy as np

from streamcodec.audio import FirResampler
from streamcodec.baselines.pyav_codec import FrameEncoder, decode_packet, open_decoder, open_encoder
from streamcodec.codec import Codec, DecoderSession, EncoderSession, Frame
from streamcodec.concealment import RepeatFade

#: mode -> (bit rate, frame type index, speech bits per frame) from 3GPP TS 26.101
MODES = {
    "MR475": (4750, 0, 95),
    "MR515": (5150, 1, 103),
    "MR59": (5900, 2, 118),
    "MR67": (6700, 3, 134),
    "MR74": (7400, 4, 148),
    "MR795": (7950, 5, 159),
    "MR102": (10200, 6, 204),
    "MR122": (12200, 7, 244),
}


class AmrNbCodec(Codec):
    sample_rate = 16000
    frame_samples = 320  # 20 ms

    def __init__(self, mode: str = "MR475") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown AMR-NB mode {mode!r}; expected one of {list(MODES)}")
        self.mode = mode
        self.bit_rate, self.frame_type, self.bits_per_frame = MODES[mode]
        self.name = f"amrnb-{self.bit_rate / 1000:g}"
        self.toc = bytes([(self.frame_type << 3) | 0x04])  # quality bit set
        self.delay_samples = round(2 * FirResampler(16000, 8000).delay_s * self.sample_rate)

    def encoder(self) -> EncoderSession:
        return _AmrEncoder(self)

    def decoder(self) -> DecoderSession:
        return _AmrDecoder(self)


class _AmrEncoder(EncoderSession):
    codec: AmrNbCodec

    def __init__(self, codec: AmrNbCodec) -> None:
        super().__init__(codec)
        ctx = open_encoder("libopencore_amrnb", 8000, codec.bit_rate)
        self._enc = FrameEncoder(ctx)
        self._down = FirResampler(16000, 8000)

    def _strip(self, packets: list[bytes]) -> list[Frame]:
        frames = []
        for p in packets:
            if p[:1] != self.codec.toc or len(p) != 1 + self.codec.frame_bytes:
                raise RuntimeError(
                    f"AMR-NB encoder produced an unexpected {len(p)}-byte frame "
                    f"with header {p[:1].hex()} (expected {self.codec.toc.hex()})"
                )
            frames.append(p[1:])
        return frames

    def _encode_frame(self, pcm: np.ndarray) -> list[Frame]:
        return self._strip(self._enc.encode(self._down.process(pcm)))

    def _finish(self) -> list[Frame]:
        return self._strip(self._enc.finish())


class _AmrDecoder(DecoderSession):
    codec: AmrNbCodec

    def __init__(self, codec: AmrNbCodec) -> None:
        super().__init__(codec)
        self._ctx = open_decoder("libopencore_amrnb", 8000)
        self._up = FirResampler(8000, 16000)
        self._plc = RepeatFade(codec.frame_samples // 2)

    def _decode_frame(self, frame: Frame) -> np.ndarray:
        try:
            nb = decode_packet(self._ctx, self.codec.toc + frame)
        except av.error.FFmpegError as exc:
            raise ValueError(f"amr-nb: undecodable frame ({exc})") from exc
        return self._up.process(self._plc.good(nb))

    def _conceal(self) -> np.ndarray:
        return self._up.process(self._plc.conceal())
