"""``voice-350`` / ``voice-700`` / ``voice-1400``: semantic + acoustic tokens, cached flow decoder.

Sender, per token frame (80 / 40 / 20 ms): the streaming semantic tokenizer gives
pooled features and a semantic id; the acoustic encoder turns (features,
centroid of the id, the frame's log-mel) into one FSQ code; the two are packed
into ``bits_per_frame`` = 26 bits. Receiver: the cached few-step flow decoder
turns token frames into log-mel one decode chunk at a time, the streaming
vocoder turns log-mel into PCM. A lost frame (``None``) is decoded with the null
condition for that token frame, so the decoder generates through the gap
(``concealment="generate"``, the default) or, for comparison, repeats the last
frame's tokens with the output faded by 6 dB per lost frame (``"repeat-fade"``).

State lives in the sessions (tokenizer stream, acoustic state, decoder stream
with its KV cache and noise generator, vocoder stream): one loaded codec serves
many streams, and ``decode`` of a session equals ``decode`` of another with the
same seed.
"""

from __future__ import annotations

import collections
import math
from pathlib import Path

import numpy as np
import torch

from streamcodec.codec import Codec, DecoderSession, EncoderSession, Frame
from streamcodec.decoder.sampling import SamplerConfig
from streamcodec.decoder.stream import DecoderStream
from streamcodec.features import LogMel
from streamcodec.packed_linear import pack_linears
from streamcodec.semantic.tokenizer import SemanticTokenizer, TokenFrames, load_tokenizer
from streamcodec.vocoder.inference import Vocoder
from streamcodec.vocoder.streaming import intra_op_threads
from streamcodec.voice.bitstream import pack_fields, unpack_fields
from streamcodec.voice.config import VoiceConfig
from streamcodec.voice.model import VoiceModel, bundled_voice_dir, resolve_part

CONCEALMENT = ("generate", "repeat-fade")


class VoiceCodec(Codec):
    """A voice codec configuration with its weights loaded.

    ``config``: ``"voice-350"``, ``"voice-700"`` or ``"voice-1400"`` (selects the bundled
    weights); ``weights``: a weights directory instead of the bundled one; ``steps``,
    ``guidance``, ``noise_scale``: sampling (default: the config's); ``seed``: noise seed
    of every decoder session; ``concealment``: ``"generate"`` or ``"repeat-fade"``;
    ``threads``: torch intra-op threads during a session step (``None``: unchanged);
    ``vocoder_phase``: ``"network"`` or ``"pghi"`` (default: the config's;
    :mod:`streamcodec.vocoder.phase`).
    """

    def __init__(
        self,
        config: str = "voice-700",
        weights: str | Path | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        noise_scale: float | None = None,
        seed: int = 0,
        concealment: str = "generate",
        threads: int | None = 1,
        vocoder_phase: str | None = None,
    ) -> None:
        wdir = Path(weights) if weights is not None else bundled_voice_dir(config)
        if not (wdir / "config.json").exists():
            raise FileNotFoundError(
                f"{config}: no trained weights at {wdir}; train them with "
                f"`streamcodec train codec --config {config}` or pass weights=DIR"
            )
        model, self.training_info = VoiceModel.load(wdir)
        if weights is None and model.cfg.name != config:
            raise ValueError(f"{wdir} holds {model.cfg.name!r}, not {config!r}")
        tok = load_tokenizer(model.cfg.tokenizer, resolve_part(model.cfg.semantic_weights, wdir))
        vocoder = Vocoder.from_pretrained(
            resolve_part(model.cfg.vocoder_weights, wdir),
            phase=model.cfg.vocoder_phase if vocoder_phase is None else vocoder_phase,
        )
        self._setup(model, tok, vocoder, steps, guidance, noise_scale, seed, concealment, threads)

    @classmethod
    def from_parts(
        cls,
        model: VoiceModel,
        tokenizer: SemanticTokenizer,
        vocoder: Vocoder,
        steps: int | None = None,
        guidance: float | None = None,
        noise_scale: float | None = None,
        seed: int = 0,
        concealment: str = "generate",
        threads: int | None = 1,
    ) -> VoiceCodec:
        """A codec from already built parts (training, tests)."""
        self = cls.__new__(cls)
        self.training_info = {}
        self._setup(
            model, tokenizer, vocoder, steps, guidance, noise_scale, seed, concealment, threads
        )
        return self

    def _setup(
        self,
        model: VoiceModel,
        tokenizer: SemanticTokenizer,
        vocoder: Vocoder,
        steps: int | None,
        guidance: float | None,
        noise_scale: float | None,
        seed: int,
        concealment: str,
        threads: int | None,
    ) -> None:
        cfg = model.cfg
        if concealment not in CONCEALMENT:
            raise ValueError(f"concealment must be one of {CONCEALMENT}, got {concealment!r}")
        if tokenizer.frame_samples != cfg.frame_samples:
            raise ValueError(
                f"tokenizer {tokenizer.name} has {tokenizer.frame_samples}-sample frames, "
                f"{cfg.name} expects {cfg.frame_samples}"
            )
        if tokenizer.vocab_size > cfg.sem_vocab:
            raise ValueError(
                f"tokenizer vocabulary {tokenizer.vocab_size} exceeds {cfg.name}'s {cfg.sem_vocab}"
            )
        if tokenizer.encoder.cfg.d_model != cfg.acoustic.sem_dim:
            raise ValueError(
                f"semantic width {tokenizer.encoder.cfg.d_model} != acoustic.sem_dim "
                f"{cfg.acoustic.sem_dim}"
            )
        table = model.decoder.cond.sem_table
        cents = tokenizer.codebook.centroids.to(table.dtype)
        if table.shape[0] < cents.shape[0] or not torch.allclose(
            table[: cents.shape[0]], cents, rtol=1e-3, atol=1e-3
        ):
            raise ValueError(
                f"{cfg.name}: the decoder was trained with a different semantic codebook than "
                f"tokenizer {tokenizer.name!r} has"
            )
        if vocoder.cfg.mel != tokenizer.encoder.cfg.mel:
            raise ValueError("the vocoder and the semantic encoder use different mel settings")
        self.cfg = cfg
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.vocoder = vocoder
        # CPU inference reads fp16 weights (same values, half the bytes); the tokenizer and the
        # vocoder pack their own
        pack_linears(model)
        self.sampler = SamplerConfig(
            steps=cfg.steps if steps is None else steps,
            guidance=cfg.guidance if guidance is None else guidance,
            seed=seed,
            noise_scale=cfg.noise_scale if noise_scale is None else noise_scale,
        )
        self.concealment = concealment
        self.threads = threads
        self.name = cfg.name
        self.sample_rate = 16000
        self.frame_samples = cfg.frame_samples
        self.bits_per_frame = cfg.bits_per_frame
        self.delay_samples = vocoder.delay_samples
        self._widths = (cfg.sem_bits, cfg.acoustic_bits)
        self._mel = LogMel(vocoder.cfg.mel)

    # ---- bit layout ---------------------------------------------------------------------------
    def pack(self, sem_id: int, acoustic_id: int) -> Frame:
        return pack_fields((sem_id, acoustic_id), self._widths)

    def unpack(self, frame: Frame) -> tuple[int, int]:
        try:
            sem, ac = unpack_fields(frame, self._widths)
        except ValueError as exc:
            raise ValueError(f"{self.name}: {exc}") from None
        if sem >= self.tokenizer.vocab_size or ac >= self.model.acoustic.fsq.codebook_size:
            raise ValueError(f"{self.name}: token ids ({sem}, {ac}) out of range")
        return sem, ac

    def check_frame(self, frame: bytes) -> None:
        super().check_frame(frame)
        self.unpack(frame)

    # ---- latency ------------------------------------------------------------------------------
    def latency_ms(self) -> dict[str, float]:
        """Algorithmic latency from the configuration, by part, and its ``total``."""
        return latency_breakdown(
            self.tokenizer.latency_ms, self.cfg, 1000.0 * self.vocoder.delay_samples / 16000
        )

    def encoder(self) -> EncoderSession:
        return _VoiceEncoder(self)

    def decoder(self) -> DecoderSession:
        return _VoiceDecoder(self)


def latency_breakdown(encoder_ms: float, cfg: VoiceConfig, vocoder_delay_ms: float) -> dict:
    """Time from the first sample of a token frame until its output starts playing:
    semantic encoder (frame + look-ahead), the wait for the rest of a decode chunk,
    and the vocoder's synthesis delay."""
    chunk_wait = (cfg.decoder.chunk_token_frames - 1) * cfg.frame_ms
    parts = {
        "semantic_encoder_ms": encoder_ms,
        "decode_chunk_wait_ms": chunk_wait,
        "vocoder_delay_ms": vocoder_delay_ms,
    }
    parts["total_ms"] = sum(parts.values())
    return parts


class _VoiceEncoder(EncoderSession):
    codec: VoiceCodec

    def __init__(self, codec: VoiceCodec) -> None:
        super().__init__(codec)
        self._tok = codec.tokenizer.stream()
        mel_cfg = codec.vocoder.cfg.mel
        self._history = torch.zeros(mel_cfg.history_samples)
        self._mel = torch.zeros(mel_cfg.n_mels, 0)  # normalised log-mel not yet encoded
        self._state = codec.model.acoustic.initial_state()

    def _encode_frame(self, pcm: np.ndarray) -> list[Frame]:
        with intra_op_threads(self.codec.threads), torch.inference_mode():
            x = torch.from_numpy(pcm)
            buf = torch.cat([self._history, x])
            self._history = buf[buf.shape[0] - self._history.shape[0] :]
            k = self.codec.cfg.decoder.mel_frames_per_token
            mel = self.codec._mel(buf[None])[0, :, -k:]
            self._mel = torch.cat([self._mel, self.codec.model.decoder.normalise(mel[None])[0]], 1)
            return self._emit(self._tok.push(x))

    def _finish(self) -> list[Frame]:
        with intra_op_threads(self.codec.threads), torch.inference_mode():
            return self._emit(self._tok.flush())

    def _emit(self, tf: TokenFrames) -> list[Frame]:
        n = int(tf.ids.shape[0])
        if n == 0:
            return []
        codec, k = self.codec, self.codec.cfg.decoder.mel_frames_per_token
        if self._mel.shape[1] < n * k:  # cannot happen: features lag the mel
            raise RuntimeError("semantic frames ahead of the log-mel")
        mel, self._mel = self._mel[:, : n * k], self._mel[:, n * k :]
        centroid = codec.tokenizer.codebook.embed(tf.ids)
        _, codes, self._state = codec.model.acoustic(
            tf.features[None], centroid[None], mel[None], self._state
        )
        return [codec.pack(int(s), int(a)) for s, a in zip(tf.ids, codes[0], strict=True)]


class _VoiceDecoder(DecoderSession):
    codec: VoiceCodec

    def __init__(self, codec: VoiceCodec) -> None:
        super().__init__(codec)
        self._dec = DecoderStream(codec.model.decoder, codec.sampler)
        self._voc = codec.vocoder.stream(threads=None)
        self._fade: collections.deque[float] = collections.deque()  # log-gain per pending frame
        self._last: tuple[int, int] | None = None
        self._lost = 0
        self._silence = codec.vocoder.cfg.silence_log_mel

    def _decode_frame(self, frame: Frame) -> np.ndarray:
        sem, ac = self.codec.unpack(frame)
        self._last, self._lost = (sem, ac), 0
        return self._push(sem, ac, True, 0.0)

    def _conceal(self) -> np.ndarray:
        self._lost += 1
        if self.codec.concealment == "generate" or self._last is None:
            return self._push(0, 0, False, 0.0)
        return self._push(*self._last, True, self._lost * math.log(0.5))

    def _push(self, sem: int, ac: int, keep: bool, log_gain: float) -> np.ndarray:
        codec = self.codec
        with intra_op_threads(codec.threads), torch.inference_mode():
            q = codec.model.acoustic.fsq.codes_to_vectors(torch.tensor([ac]))
            self._fade.append(log_gain)
            mel = self._dec.push(torch.tensor([sem]), q, torch.tensor([keep]))
            return self._vocode(mel)

    def _vocode(self, mel: torch.Tensor) -> np.ndarray:
        if mel.shape[1] == 0:
            return np.zeros(0, dtype=np.float32)
        k = self.codec.cfg.decoder.mel_frames_per_token
        gains = [self._fade.popleft() for _ in range(mel.shape[1] // k)]
        if any(gains):
            g = torch.tensor(gains).repeat_interleave(k)
            mel = (mel + g).clamp(min=self._silence)
        return self._voc.push(mel[None])[0].numpy()

    def flush(self) -> np.ndarray:
        with intra_op_threads(self.codec.threads), torch.inference_mode():
            head = self._vocode(self._dec.flush())
            return np.concatenate([head, self._voc.flush()[0].numpy()]).astype(np.float32)
