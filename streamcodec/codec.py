"""The one codec interface every codec implements (ours and the classic baselines).

Shape glossary used across the package: B batch, T samples, F token frames,
M mel bins, N tokens, D width, H heads.

A *frame* is the unit a codec emits every ``frame_samples`` samples: a ``bytes``
object. For fixed-rate codecs (``bits_per_frame`` is an int) the frame holds
exactly ``bits_per_frame`` bits, MSB first, zero-padded to whole bytes, so a
packetiser may pack frames at bit granularity. For variable-rate codecs
(``bits_per_frame is None``, e.g. Opus) the frame is an opaque packet.

State lives in *sessions*, never in the codec object: ``codec.encoder()`` and
``codec.decoder()`` return a fresh session per stream, so one loaded codec
serves many concurrent streams.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence

import numpy as np

from streamcodec.audio import check_pcm

Frame = bytes


class EncoderSession(ABC):
    """Per-stream encoder state: push PCM, get whole frames out."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self._pending = np.zeros(0, dtype=np.float32)
        self._closed = False

    def push(self, pcm: np.ndarray) -> list[Frame]:
        """Feed ``pcm: [T] float32 in [-1, 1]`` (any T); return the frames completed by it."""
        if self._closed:
            raise ValueError("push() after flush(): this encoder session is closed")
        pcm = check_pcm(pcm)
        n = self.codec.frame_samples
        buf = np.concatenate([self._pending, pcm]) if self._pending.size else pcm
        whole = (buf.shape[0] // n) * n
        self._pending = buf[whole:].copy()
        frames: list[Frame] = []
        for i in range(0, whole, n):
            frames += self._encode_frame(buf[i : i + n])
        return frames

    def flush(self) -> list[Frame]:
        """End the stream: zero-pad the last partial frame (if any) and return what is left."""
        if self._closed:
            return []
        self._closed = True
        frames: list[Frame] = []
        if self._pending.size:
            pad = np.zeros(self.codec.frame_samples, dtype=np.float32)
            pad[: self._pending.size] = self._pending
            self._pending = np.zeros(0, dtype=np.float32)
            frames += self._encode_frame(pad)
        return frames + self._finish()

    @abstractmethod
    def _encode_frame(self, pcm: np.ndarray) -> list[Frame]:
        """Encode exactly ``frame_samples`` samples (``[frame_samples] float32``).

        Returns the frames completed so far: normally one, none while a codec with
        look-ahead fills its pipeline (those come out of ``_finish``).
        """

    def _finish(self) -> list[Frame]:
        """Frames held back by look-ahead, emitted at end of stream (default: none)."""
        return []


class DecoderSession(ABC):
    """Per-stream decoder state: push a frame (or ``None`` for a lost one), get PCM out."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec

    def push(self, frame: Frame | None) -> np.ndarray:
        """Decode one frame; ``None`` marks a lost frame and asks for concealment.

        Returns ``[T] float32`` (normally ``frame_samples`` samples; a decoder with
        look-ahead may return fewer at the start and the rest from ``flush``).
        """
        if frame is not None and not isinstance(frame, (bytes, bytearray, memoryview)):
            raise TypeError(f"frame must be bytes or None, got {type(frame).__name__}")
        if frame is None:
            return self._conceal()
        frame = bytes(frame)
        self.codec.check_frame(frame)
        return self._decode_frame(frame)

    def flush(self) -> np.ndarray:
        """End of stream: return any samples still held back (default: none)."""
        return np.zeros(0, dtype=np.float32)

    @abstractmethod
    def _decode_frame(self, frame: Frame) -> np.ndarray: ...

    @abstractmethod
    def _conceal(self) -> np.ndarray:
        """PCM for one lost frame."""


class Codec(ABC):
    """A speech/audio codec: offline ``encode``/``decode`` plus per-stream sessions.

    Subclasses set ``name``, ``sample_rate``, ``frame_samples``, ``bits_per_frame``
    and ``delay_samples`` and implement ``encoder()`` and ``decoder()``.
    """

    name: str
    #: rate of the PCM the codec takes and returns (Hz)
    sample_rate: int = 16000
    #: samples per frame at ``sample_rate``
    frame_samples: int
    #: payload bits per frame, or ``None`` for a variable-rate codec
    bits_per_frame: int | None
    #: output sample ``n + delay_samples`` of ``decode(encode(x))`` corresponds to input sample n
    delay_samples: int = 0

    @property
    def frame_duration_s(self) -> float:
        return self.frame_samples / self.sample_rate

    @property
    def frames_per_s(self) -> float:
        return self.sample_rate / self.frame_samples

    @property
    def payload_bps(self) -> float | None:
        """Nominal payload bit rate from the configuration; ``None`` when variable."""
        if self.bits_per_frame is None:
            return None
        return self.bits_per_frame * self.frames_per_s

    @property
    def frame_bytes(self) -> int | None:
        """Bytes of one fixed-rate frame (``bits_per_frame`` rounded up), else ``None``."""
        return None if self.bits_per_frame is None else (self.bits_per_frame + 7) // 8

    @abstractmethod
    def encoder(self) -> EncoderSession:
        """A fresh encoder session for one stream."""

    @abstractmethod
    def decoder(self) -> DecoderSession:
        """A fresh decoder session for one stream."""

    def check_frame(self, frame: bytes) -> None:
        """Raise ``ValueError`` if ``frame`` cannot be a frame of this codec."""
        if self.frame_bytes is not None and len(frame) != self.frame_bytes:
            raise ValueError(
                f"{self.name}: frame has {len(frame)} bytes, expected {self.frame_bytes}"
            )
        if self.frame_bytes is None and len(frame) == 0:
            raise ValueError(f"{self.name}: empty frame")

    def encode(self, pcm: np.ndarray) -> list[Frame]:
        """Encode a whole signal ``pcm: [T] float32 in [-1, 1]`` to frames."""
        session = self.encoder()
        return session.push(pcm) + session.flush()

    def decode(self, frames: Iterable[Frame | None]) -> np.ndarray:
        """Decode frames (``None`` = lost) to ``[T] float32``; see ``delay_samples``."""
        session = self.decoder()
        parts = [session.push(f) for f in frames]
        parts.append(session.flush())
        return np.concatenate(parts).astype(np.float32, copy=False)

    def payload_bits(self, frames: Sequence[Frame]) -> int:
        """Payload bits of ``frames`` as a bit-packing packetiser would send them."""
        if self.bits_per_frame is not None:
            return self.bits_per_frame * len(frames)
        return 8 * sum(len(f) for f in frames)

    def __repr__(self) -> str:
        rate = self.payload_bps
        rate_s = "variable" if rate is None else f"{rate:g} bit/s"
        return (
            f"<{type(self).__name__} {self.name!r} {self.sample_rate} Hz, "
            f"{1000 * self.frame_duration_s:g} ms frames, {rate_s}>"
        )
