"""Configuration of the semantic encoder and tokenizer (frozen dataclasses, JSON round-trip).

Glossary: a *token* is one 20 ms log-mel patch (``patch_frames`` mel frames x all
mel bins); a *chunk* is ``chunk_tokens`` consecutive tokens, the unit of
block-causal attention; a *segment* is ``segment_chunks`` chunks, the unit in
which the attention context slides (a query in segment ``s`` sees keys from the
start of segment ``s - 1``), which bounds the per-stream KV cache; a *token
frame* of a bitrate configuration pools ``pool_tokens`` consecutive tokens.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from streamcodec.features import MelConfig

#: Bump when the meaning of a config field or of the weights changes.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SemanticEncoderConfig:
    """Shape and streaming geometry of the block-causal ViT over log-mel patches."""

    mel: MelConfig = field(default_factory=MelConfig)
    patch_frames: int = 2  # mel frames per token (2 x 10 ms = 20 ms)
    d_model: int = 256
    n_heads: int = 4
    n_layers: int = 8
    mlp_ratio: float = 4.0
    chunk_tokens: int = 2  # block-causal chunk (2 tokens = 40 ms)
    # Look-ahead in chunks for each layer; look-ahead compounds over layers, so
    # only the first layer looks ahead by default.
    lookahead_chunks: tuple[int, ...] = (1, 0, 0, 0, 0, 0, 0, 0)
    segment_chunks: int = 64  # context slides by segments: 2.56 s, context 2.56-5.12 s
    rope_base: float = 10000.0
    # Feature = mean of parameter-free LayerNorm'd outputs of these blocks (0-based).
    feature_layers: tuple[int, ...] = (5, 6, 7)
    # Input normalisation of the natural-log mel: (logmel - mel_mean) / mel_std.
    mel_mean: float = -6.0
    mel_std: float = 3.0

    def __post_init__(self) -> None:
        for name in ("patch_frames", "d_model", "n_heads", "n_layers", "chunk_tokens"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError(f"head dim {self.d_model // self.n_heads} must be even for RoPE")
        if len(self.lookahead_chunks) != self.n_layers:
            raise ValueError(
                f"lookahead_chunks needs one entry per layer ({self.n_layers}), "
                f"got {self.lookahead_chunks}"
            )
        if any(la < 0 for la in self.lookahead_chunks):
            raise ValueError(f"lookahead_chunks must be >= 0, got {self.lookahead_chunks}")
        if self.segment_chunks <= max(self.lookahead_chunks):
            raise ValueError(
                f"segment_chunks {self.segment_chunks} must exceed the look-ahead "
                f"{max(self.lookahead_chunks)}"
            )
        if not self.feature_layers or any(not 0 <= i < self.n_layers for i in self.feature_layers):
            raise ValueError(
                f"feature_layers must be block indices in [0, {self.n_layers}), "
                f"got {self.feature_layers}"
            )
        if self.mel_std <= 0:
            raise ValueError(f"mel_std must be positive, got {self.mel_std}")

    # ---- derived geometry -------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def patch_dim(self) -> int:
        """Values per token: ``patch_frames * n_mels``."""
        return self.patch_frames * self.mel.n_mels

    @property
    def token_samples(self) -> int:
        return self.patch_frames * self.mel.hop_length

    @property
    def token_ms(self) -> float:
        return 1000.0 * self.token_samples / self.mel.sample_rate

    @property
    def chunk_samples(self) -> int:
        return self.chunk_tokens * self.token_samples

    @property
    def chunk_ms(self) -> float:
        return self.chunk_tokens * self.token_ms

    @property
    def total_lookahead_chunks(self) -> int:
        """Look-ahead of the whole stack: per-layer look-aheads add up."""
        return int(sum(self.lookahead_chunks))

    @property
    def lookahead_ms(self) -> float:
        return self.total_lookahead_chunks * self.chunk_ms

    @property
    def context_ms(self) -> tuple[float, float]:
        """(min, max) past context a query sees once the stream is longer than a segment."""
        seg = self.segment_chunks * self.chunk_ms
        return seg, 2 * seg

    def latency_ms(self, pool_tokens: int = 1) -> float:
        """Algorithmic latency of a token frame of ``pool_tokens`` tokens.

        Time from the first sample of a token frame until its features can be
        computed: the frame itself, the wait until its last chunk is complete,
        plus the stack's look-ahead. The worst case over frame positions.
        """
        if pool_tokens <= 0:
            raise ValueError(f"pool_tokens must be positive, got {pool_tokens}")
        c = self.chunk_tokens
        worst = 0
        # the pattern of frame/chunk alignment repeats with period lcm(c, pool)
        for f in range(c * pool_tokens):
            first, last = f * pool_tokens, (f + 1) * pool_tokens - 1
            ready_token = (last // c + 1 + self.total_lookahead_chunks) * c
            worst = max(worst, ready_token - first)
        return worst * self.token_ms

    # ---- JSON -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["lookahead_chunks"] = list(self.lookahead_chunks)
        d["feature_layers"] = list(self.feature_layers)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SemanticEncoderConfig:
        d = dict(d)
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown SemanticEncoderConfig fields {sorted(unknown)}")
        if "mel" in d:
            d["mel"] = MelConfig(**d["mel"])
        for key in ("lookahead_chunks", "feature_layers"):
            if key in d:
                d[key] = tuple(int(v) for v in d[key])
        return cls(**d)


@dataclass(frozen=True)
class RateConfig:
    """One bitrate configuration: how many 20 ms tokens one token frame pools, and how."""

    name: str  # e.g. "voice-700"
    pool_tokens: int  # 4 / 2 / 1 -> 80 / 40 / 20 ms token frames
    pooling: str = "mean"  # "mean" of the pooled token features (keeps the width D)
    vocab_size: int = 8192

    def __post_init__(self) -> None:
        if self.pool_tokens <= 0:
            raise ValueError(f"pool_tokens must be positive, got {self.pool_tokens}")
        if self.pooling != "mean":
            raise ValueError(f"unknown pooling {self.pooling!r}; expected 'mean'")
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {self.vocab_size}")


#: The three rates of ARCHITECTURE.md §2 (semantic token name -> rate).
RATES: dict[str, RateConfig] = {
    "semantic-350": RateConfig("voice-350", pool_tokens=4),
    "semantic-700": RateConfig("voice-700", pool_tokens=2),
    "semantic-1400": RateConfig("voice-1400", pool_tokens=1),
}


def write_json(path: str | Path, payload: dict) -> None:
    Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_versioned_json(path: str | Path, kind: str) -> dict:
    """Read a JSON config written with ``{"format_version", "kind", ...}`` and check both."""
    payload = json.loads(Path(path).read_text(encoding="utf-8"))
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format_version {version!r} is not supported (expected {FORMAT_VERSION})"
        )
    if payload.get("kind") != kind:
        raise ValueError(f"{path}: kind {payload.get('kind')!r}, expected {kind!r}")
    return payload
