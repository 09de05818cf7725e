"""Configuration of the voice codecs ``voice-350`` / ``voice-700`` / ``voice-1400``.

A :class:`VoiceConfig` names the semantic tokenizer rate, the acoustic encoder
and decoder shapes, the sampling defaults and where the shared parts (semantic
encoder + codebooks, vocoder) live. It is serialised to ``config.json`` beside
the weights with a format version; unknown versions are rejected.

Payload per token frame: semantic id (``ceil(log2 V_sem)`` bits) + acoustic FSQ
code (``ceil(log2 prod(levels))`` bits), packed MSB first: 13 + 13 = 26 bits.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from streamcodec.acoustic.encoder import AcousticEncoderConfig
from streamcodec.decoder.config import DecoderConfig
from streamcodec.vocoder.phase import PHASE_MODES

#: Bump when the meaning of a field or of the weights changes.
FORMAT_VERSION = 1
KIND = "voice-codec"
MEL_HOP_SAMPLES = 160  # the shared LogMel hop (10 ms at 16 kHz)


@dataclass(frozen=True)
class VoiceConfig:
    name: str = "voice-700"
    tokenizer: str = "semantic-700"
    sem_vocab: int = 8192
    acoustic: AcousticEncoderConfig = field(default_factory=AcousticEncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    steps: int = 4  # network evaluations per decode chunk (default of the sessions)
    guidance: float = 1.0  # classifier-free guidance scale (1 = no unconditional branch)
    noise_scale: float = 1.0
    semantic_weights: str = "semantic"  # directory (relative to the weights dir) or bundled name
    vocoder_weights: str = "mel-vocoder-voice"
    # "network": the vocoder's own phase; "pghi": re-phased from its output's magnitude
    # (streamcodec.vocoder.phase; +30 ms delay)
    vocoder_phase: str = "network"

    def __post_init__(self) -> None:
        a, d = self.acoustic, self.decoder
        if a.mel_frames_per_token != d.mel_frames_per_token:
            raise ValueError(
                f"acoustic and decoder disagree on mel frames per token: "
                f"{a.mel_frames_per_token} vs {d.mel_frames_per_token}"
            )
        if d.sem_vocab != self.sem_vocab:
            raise ValueError(f"decoder.sem_vocab {d.sem_vocab} != sem_vocab {self.sem_vocab}")
        if d.sem_dim != a.sem_dim:
            raise ValueError(f"decoder.sem_dim {d.sem_dim} != acoustic.sem_dim {a.sem_dim}")
        if d.fsq_dim != len(a.fsq_levels):
            raise ValueError(f"decoder.fsq_dim {d.fsq_dim} != {len(a.fsq_levels)} FSQ channels")
        if self.sem_vocab < 2:
            raise ValueError(f"sem_vocab must be >= 2, got {self.sem_vocab}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {self.steps!r}")
        if self.vocoder_phase not in PHASE_MODES:
            raise ValueError(
                f"vocoder_phase must be one of {PHASE_MODES}, got {self.vocoder_phase!r}"
            )

    # ---- derived ----------------------------------------------------------------------------
    @property
    def frame_samples(self) -> int:
        return self.decoder.mel_frames_per_token * MEL_HOP_SAMPLES

    @property
    def frame_ms(self) -> float:
        return 1000.0 * self.frame_samples / 16000

    @property
    def sem_bits(self) -> int:
        return max(1, math.ceil(math.log2(self.sem_vocab)))

    @property
    def acoustic_bits(self) -> int:
        return max(1, math.ceil(math.log2(math.prod(self.acoustic.fsq_levels))))

    @property
    def bits_per_frame(self) -> int:
        return self.sem_bits + self.acoustic_bits

    @property
    def payload_bps(self) -> float:
        return self.bits_per_frame * 16000 / self.frame_samples

    # ---- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["acoustic"] = self.acoustic.to_dict()
        d["decoder"] = self.decoder.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VoiceConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown VoiceConfig keys {sorted(unknown)}")
        d = dict(d)
        if "acoustic" in d:
            d["acoustic"] = AcousticEncoderConfig.from_dict(d["acoustic"])
        if "decoder" in d:
            d["decoder"] = DecoderConfig.from_dict(d["decoder"])
        return cls(**d)


def _preset(name: str, tokenizer: str, mel_frames: int, chunk_frames: int) -> VoiceConfig:
    # 80 ms decode chunks for every rate (measured: per-chunk overhead dominates on a
    # 2-core CPU), 2 s of clean context
    context = max(1, 2000 // (10 * mel_frames * chunk_frames))
    return VoiceConfig(
        name=name,
        tokenizer=tokenizer,
        acoustic=AcousticEncoderConfig(mel_frames_per_token=mel_frames),
        decoder=DecoderConfig(
            mel_frames_per_token=mel_frames, chunk_token_frames=chunk_frames, context_chunks=context
        ),
    )


#: The shipped configurations (architecture; sampling defaults may be overridden by the
#: ``config.json`` of trained weights).
PRESETS: dict[str, VoiceConfig] = {
    "voice-350": _preset("voice-350", "semantic-350", 8, 1),
    "voice-700": _preset("voice-700", "semantic-700", 4, 2),
    "voice-1400": _preset("voice-1400", "semantic-1400", 2, 4),
}


def preset(name: str, **overrides: object) -> VoiceConfig:
    """The preset ``name`` with top-level fields replaced by ``overrides``."""
    if name not in PRESETS:
        raise ValueError(f"unknown voice configuration {name!r}; known: {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


def write_config(path: str | Path, cfg: VoiceConfig, training: dict | None = None) -> None:
    payload = {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "voice": cfg.to_dict(),
        "training": training or {},
    }
    Path(path).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def read_config(path: str | Path) -> tuple[VoiceConfig, dict]:
    """Read ``config.json`` -> (config, training info); checks kind and format version."""
    payload = json.loads(Path(path).read_text(encoding="utf-8"))
    if payload.get("kind") != KIND:
        raise ValueError(f"{path}: kind {payload.get('kind')!r}, expected {KIND!r}")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format_version {payload.get('format_version')!r} is not supported "
            f"(this streamcodec reads {FORMAT_VERSION})"
        )
    return VoiceConfig.from_dict(payload["voice"]), payload.get("training", {})
