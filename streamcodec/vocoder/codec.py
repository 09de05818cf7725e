"""``mel-vocoder``: analysis-synthesis codec (log-mel frames in fp16, vocoder out).

It measures the vocoder through the same harness as every codec. Its "bitstream"
is the unquantised log-mel: each codec frame carries ``mel_frames_per_frame``
mel frames of ``n_mels`` fp16 values (little-endian, frame-major), so
``bits_per_frame = 16 * n_mels * mel_frames_per_frame`` (128 kbit/s at the
defaults). It is an upper bound for what our tokens + decoder can reach, not a
low-rate codec.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from streamcodec.codec import Codec, DecoderSession, EncoderSession, Frame
from streamcodec.vocoder.inference import Vocoder
from streamcodec.vocoder.streaming import VocoderStream, intra_op_threads


class MelVocoderCodec(Codec):
    """Log-mel analysis + streaming neural vocoder.

    ``weights``: a weights directory or a bundled model name (default ``"mel-vocoder"``);
    ``vocoder``: an already loaded :class:`Vocoder` (then ``weights`` is ignored);
    ``threads``: torch intra-op threads the sessions use per frame (``None``: leave as is);
    ``phase``: ``"network"`` or ``"pghi"`` (:class:`Vocoder`; ignored with ``vocoder``);
    ``name``: default ``"mel-vocoder"``, ``"mel-vocoder-pghi"`` with ``phase="pghi"``.
    """

    def __init__(
        self,
        weights: str | Path = "mel-vocoder",
        mel_frames_per_frame: int = 4,
        vocoder: Vocoder | None = None,
        name: str | None = None,
        threads: int | None = 1,
        phase: str = "network",
    ) -> None:
        if not isinstance(mel_frames_per_frame, int) or mel_frames_per_frame < 1:
            raise ValueError(
                f"mel_frames_per_frame must be an int >= 1, got {mel_frames_per_frame!r}"
            )
        self.threads = threads
        self.vocoder = (
            vocoder if vocoder is not None else Vocoder.from_pretrained(weights, phase=phase)
        )
        cfg = self.vocoder.cfg
        self.name = name or ("mel-vocoder-pghi" if self.vocoder.phase == "pghi" else "mel-vocoder")
        self.sample_rate = cfg.mel.sample_rate
        self.mel_frames_per_frame = mel_frames_per_frame
        self.frame_samples = cfg.hop_samples * mel_frames_per_frame
        self.bits_per_frame = 16 * cfg.mel.n_mels * mel_frames_per_frame
        self.delay_samples = self.vocoder.delay_samples

    def encoder(self) -> EncoderSession:
        return _MelEncoder(self)

    def decoder(self) -> DecoderSession:
        return _VocoderDecoder(self)

    def frame_to_mel(self, frame: Frame) -> torch.Tensor:
        """Bytes of one frame -> ``[1, M, mel_frames_per_frame]`` float32."""
        m = self.vocoder.cfg.mel.n_mels
        arr = np.frombuffer(frame, dtype="<f2").reshape(self.mel_frames_per_frame, m)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{self.name}: frame holds non-finite mel values")
        return torch.from_numpy(arr.astype(np.float32).T.copy())[None]


class _MelEncoder(EncoderSession):
    codec: MelVocoderCodec

    def __init__(self, codec: MelVocoderCodec) -> None:
        super().__init__(codec)
        mel_cfg = codec.vocoder.cfg.mel
        self._history = np.zeros(mel_cfg.history_samples, dtype=np.float32)

    def _encode_frame(self, pcm: np.ndarray) -> list[Frame]:
        with intra_op_threads(self.codec.threads), torch.inference_mode():
            return self._analyse(pcm)

    def _analyse(self, pcm: np.ndarray) -> list[Frame]:
        buf = np.concatenate([self._history, pcm])
        self._history = buf[buf.shape[0] - self._history.shape[0] :].copy()
        n = self.codec.mel_frames_per_frame
        # LogMel zero-pads the left itself; its last n frames have the true history
        mel = self.codec.vocoder.mel(torch.from_numpy(buf)[None])[0, :, -n:]
        return [mel.T.numpy().astype("<f2").tobytes()]


class _VocoderDecoder(DecoderSession):
    codec: MelVocoderCodec

    def __init__(self, codec: MelVocoderCodec) -> None:
        super().__init__(codec)
        self._stream: VocoderStream = codec.vocoder.stream(threads=codec.threads)
        self._last_mel: torch.Tensor | None = None
        self._lost = 0

    def _decode_frame(self, frame: Frame) -> np.ndarray:
        mel = self.codec.frame_to_mel(frame)
        self._last_mel, self._lost = mel, 0
        return self._stream.push(mel)[0].numpy()

    def _conceal(self) -> np.ndarray:
        """Repeat the last received mel frames, 6 dB quieter per lost frame (silence if none)."""
        cfg = self.codec.vocoder.cfg
        self._lost += 1
        if self._last_mel is None:
            mel = torch.full(
                (1, cfg.mel.n_mels, self.codec.mel_frames_per_frame), cfg.silence_log_mel
            )
        else:
            mel = (self._last_mel + self._lost * np.log(0.5)).clamp(min=cfg.silence_log_mel)
        return self._stream.push(mel)[0].numpy()

    def flush(self) -> np.ndarray:
        return self._stream.flush()[0].numpy()
