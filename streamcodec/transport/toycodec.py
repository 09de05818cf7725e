"""A tiny deterministic codec for transport tests and benchmarks (not for listening).

Each frame keeps two numbers of the input: its level (RMS, 6 bits over -90..0 dBFS)
and its zero-crossing rate; the decoder plays a sine of that level at a pitch set by
the crossing rate, phase-continuous within a decoder session. Decoding depends only
on the frames (no global state), so decoding the same frames in two sessions gives
bit-identical PCM, which the transport's "decoded == offline" tests need.

``bits_per_frame=None`` makes it variable-rate: a frame is 1-3 bytes depending on
the level, like an opaque VBR packet.
"""

from __future__ import annotations

import numpy as np

from streamcodec.codec import Codec, DecoderSession, EncoderSession, Frame

_LEVEL_BITS = 6


class ToyCodec(Codec):
    """``bits_per_frame`` (>= 7, or ``None`` = variable) bits every ``frame_ms``."""

    def __init__(self, bits_per_frame: int | None = 28, frame_ms: int = 40) -> None:
        if bits_per_frame is not None and not 7 <= bits_per_frame <= 64:
            raise ValueError(f"bits_per_frame must be in 7..64 or None, got {bits_per_frame}")
        if not 5 <= frame_ms <= 200:
            raise ValueError(f"frame_ms must be in 5..200, got {frame_ms}")
        self.sample_rate = 16000
        self.frame_samples = 16 * frame_ms
        self.bits_per_frame = bits_per_frame
        self.delay_samples = 0
        rate = "vbr" if bits_per_frame is None else f"{bits_per_frame}b"
        self.name = f"toy-{rate}-{frame_ms}ms"
        self._zcr_bits = 8 if bits_per_frame is None else min(bits_per_frame - _LEVEL_BITS, 16)

    def encoder(self) -> EncoderSession:
        return _ToyEncoder(self)

    def decoder(self) -> DecoderSession:
        return _ToyDecoder(self)

    def check_frame(self, frame: bytes) -> None:
        super().check_frame(frame)
        if self.bits_per_frame is None and len(frame) > 3:
            raise ValueError(f"{self.name}: frame has {len(frame)} bytes, at most 3")

    def pack(self, level: int, zcr: int) -> Frame:
        if (
            self.bits_per_frame is None
        ):  # 1-3 bytes: level, then the crossing rate (louder = longer)
            return bytes([level, zcr, zcr][: 1 + level // 24])
        bits = self.bits_per_frame
        value = (level << (bits - _LEVEL_BITS)) | (zcr << (bits - _LEVEL_BITS - self._zcr_bits))
        nbytes = self.frame_bytes or 0
        return (value << (8 * nbytes - bits)).to_bytes(nbytes, "big")

    def unpack(self, frame: Frame) -> tuple[int, int]:
        if self.bits_per_frame is None:
            return frame[0] & 63, frame[1] if len(frame) > 1 else 0
        bits = self.bits_per_frame
        value = int.from_bytes(frame, "big") >> (8 * len(frame) - bits)
        level = value >> (bits - _LEVEL_BITS)
        zcr = (value >> (bits - _LEVEL_BITS - self._zcr_bits)) & ((1 << self._zcr_bits) - 1)
        return level, zcr


class _ToyEncoder(EncoderSession):
    codec: ToyCodec

    def _encode_frame(self, pcm: np.ndarray) -> list[Frame]:
        c = self.codec
        rms = float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64))))
        db = 20.0 * np.log10(max(rms, 1e-5))
        level = int(np.clip(round((db + 90.0) / 90.0 * 63), 0, 63))
        crossings = int(np.count_nonzero(np.signbit(pcm[1:]) != np.signbit(pcm[:-1])))
        zcr = min(crossings, (1 << c._zcr_bits) - 1)
        return [c.pack(level, zcr)]


class _ToyDecoder(DecoderSession):
    codec: ToyCodec

    def __init__(self, codec: ToyCodec) -> None:
        super().__init__(codec)
        self._phase = 0.0
        self._last = (0, 0)
        self._fade = 1.0

    def _synth(self, level: int, zcr: int, gain: float) -> np.ndarray:
        c = self.codec
        amp = gain * 10.0 ** ((level / 63.0 * 90.0 - 90.0) / 20.0) * np.sqrt(2.0)
        freq = 100.0 + zcr * c.sample_rate / (2.0 * c.frame_samples)
        step = 2.0 * np.pi * min(freq, 7000.0) / c.sample_rate
        phases = self._phase + step * np.arange(1, c.frame_samples + 1)
        self._phase = float(phases[-1] % (2.0 * np.pi))
        return (amp * np.sin(phases)).astype(np.float32)

    def _decode_frame(self, frame: Frame) -> np.ndarray:
        self._last = self.codec.unpack(frame)
        self._fade = 1.0
        return self._synth(*self._last, 1.0)

    def _conceal(self) -> np.ndarray:
        self._fade *= 0.5
        return self._synth(*self._last, self._fade)
