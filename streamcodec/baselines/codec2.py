"""Codec 2 (700C, 1200, 1600, 3200) via ``pycodec2`` (bundles libcodec2).

Codec 2 is narrow-band: 16 kHz input is decimated to 8 kHz and the output
interpolated back with :class:`~streamcodec.audio.FirResampler`, whose
state lives in the session, so streams and offline calls give identical frames.

Decoding is *not* sample-exact across runs: libcodec2 synthesises unvoiced
phases from one process-wide pseudo-random generator (not per decoder state),
so two decodes of the same frames differ in fine waveform detail while sounding
the same (their mel distance is ~0.07, vs ~0.9 to the input).
"""

from __future__ import annotations

import numpy as np

from streamcodec.audio import FirResampler
from streamcodec.codec import Codec, DecoderSession, EncoderSession, Frame
from streamcodec.concealment import RepeatFade

MODES = {"700C": 700, "1200": 1200, "1600": 1600, "3200": 3200}


def _new_state(mode: str):
    import pycodec2  # optional dependency, imported on first use

    return pycodec2.Codec2(MODES[mode])


def _to_int16(pcm: np.ndarray) -> np.ndarray:
    return (np.clip(pcm, -1.0, 1.0) * 32767.0).round().astype(np.int16)


class Codec2(Codec):
    """Codec 2 in one of :data:`MODES`; frames are the codec's packed bits (MSB first)."""

    sample_rate = 16000

    def __init__(self, mode: str = "700C") -> None:
        mode = str(mode).upper()
        if mode not in MODES:
            raise ValueError(f"unknown Codec 2 mode {mode!r}; expected one of {sorted(MODES)}")
        self.mode = mode
        self.name = f"codec2-{mode.lower()}"
        state = _new_state(mode)
        self.nb_frame_samples = state.samples_per_frame()  # at 8 kHz
        self.frame_samples = 2 * self.nb_frame_samples
        self.bits_per_frame = state.bits_per_frame()
        # group delay of the two resampling filters; Codec 2's own delay is left to alignment
        self.delay_samples = round(2 * FirResampler(16000, 8000).delay_s * self.sample_rate)
        pad = 8 * self.frame_bytes - self.bits_per_frame
        self._pad_mask = (0xFF << pad) & 0xFF

    def encoder(self) -> EncoderSession:
        return _Codec2Encoder(self)

    def decoder(self) -> DecoderSession:
        return _Codec2Decoder(self)

    def mask_padding(self, frame: bytes) -> bytes:
        """Zero the unused low bits of the last byte (the interface's padding rule)."""
        return frame[:-1] + bytes([frame[-1] & self._pad_mask])


class _Codec2Encoder(EncoderSession):
    codec: Codec2

    def __init__(self, codec: Codec2) -> None:
        super().__init__(codec)
        self._state = _new_state(codec.mode)
        self._down = FirResampler(16000, 8000)

    def _encode_frame(self, pcm: np.ndarray) -> list[Frame]:
        nb = self._down.process(pcm)
        assert nb.size == self.codec.nb_frame_samples
        return [self.codec.mask_padding(bytes(self._state.encode(_to_int16(nb))))]


class _Codec2Decoder(DecoderSession):
    codec: Codec2

    def __init__(self, codec: Codec2) -> None:
        super().__init__(codec)
        self._state = _new_state(codec.mode)
        self._up = FirResampler(8000, 16000)
        self._plc = RepeatFade(codec.nb_frame_samples)

    def _decode_frame(self, frame: Frame) -> np.ndarray:
        nb = self._state.decode(frame).astype(np.float32) / 32768.0
        return self._up.process(self._plc.good(nb))

    def _conceal(self) -> np.ndarray:
        return self._up.process(self._plc.conceal())
