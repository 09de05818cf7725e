"""Configuration of the flow-matching mel decoder (frozen dataclass, JSON round trip).

Geometry: the decoder works on *patches* of ``patch_frames`` log-mel frames
(10 ms each); a token frame of the codec holds ``mel_frames_per_token`` mel
frames, i.e. ``patches_per_token`` patches; a *decode chunk* is
``chunk_token_frames`` token frames (``chunk_tokens`` patches), the unit that is
generated at once and the block of the block-causal attention. Each chunk sees
the clean (already generated) patches of the ``context_chunks`` chunks before it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class DecoderConfig:
    n_mels: int = 80
    patch_frames: int = 2
    mel_frames_per_token: int = 4  # 40 ms token frames (voice-700)
    sem_vocab: int = 8192
    sem_dim: int = 256  # width of the semantic codebook's centroids
    fsq_dim: int = 5
    dim: int = 256
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: float = 2.0
    norm_groups: int = 8
    time_dim: int = 128  # sinusoidal features of the flow time
    cond_layers: int = 2  # causal mixing blocks of the conditioning encoder
    cond_kernel: int = 3  # token frames of left context per conditioning block
    cond_intermediate: int = 512
    chunk_token_frames: int = 1
    context_chunks: int = 50  # attention window of clean context, in chunks
    rope_base: float = 10000.0

    def __post_init__(self) -> None:
        for name in (
            "n_mels", "patch_frames", "mel_frames_per_token", "sem_vocab", "sem_dim", "fsq_dim",
            "dim", "n_layers", "n_heads", "norm_groups", "time_dim", "cond_kernel",
            "cond_intermediate", "chunk_token_frames", "context_chunks",
        ):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"DecoderConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.cond_layers < 0:
            raise ValueError(f"cond_layers must be >= 0, got {self.cond_layers}")
        if self.mel_frames_per_token % self.patch_frames:
            raise ValueError(
                f"mel_frames_per_token {self.mel_frames_per_token} is not a multiple of "
                f"patch_frames {self.patch_frames}"
            )
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ValueError(
                f"dim {self.dim} must split into n_heads {self.n_heads} heads of even width"
            )
        if self.dim % self.norm_groups:
            raise ValueError(f"norm_groups {self.norm_groups} must divide dim {self.dim}")
        if self.time_dim % 2:
            raise ValueError(f"time_dim must be even, got {self.time_dim}")

    @property
    def patch_dim(self) -> int:
        """Values per patch: ``patch_frames * n_mels``."""
        return self.patch_frames * self.n_mels

    @property
    def patches_per_token(self) -> int:
        return self.mel_frames_per_token // self.patch_frames

    @property
    def chunk_tokens(self) -> int:
        """Patches per decode chunk."""
        return self.chunk_token_frames * self.patches_per_token

    @property
    def chunk_mel_frames(self) -> int:
        return self.chunk_token_frames * self.mel_frames_per_token

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DecoderConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown DecoderConfig keys {sorted(unknown)}")
        return cls(**d)
