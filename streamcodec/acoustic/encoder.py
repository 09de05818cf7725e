"""Acoustic encoder: per token frame, what the semantic token misses -> one FSQ code.

Input per token frame ``f`` (SemantiCodec's recipe, made causal):
the pooled semantic features ``feat: [D_s]`` (continuous), the centroid of the
assigned semantic id ``centroid: [D_s]`` (its quantised copy, so the network sees
the quantisation residual), and the normalised log-mel frames of that token frame
flattened ``mel: [k * M]``. A linear projection, causal mixing blocks over token
frames (left context only, no look-ahead beyond the frame) and a projection to
the FSQ channels give one code of ``prod(levels)`` entries per frame.

Per-stream state is the left context of the causal convs
(:class:`AcousticState`), owned by the caller's session.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from streamcodec.acoustic.fsq import FSQ
from streamcodec.decoder.blocks import CausalMixBlock


@dataclass(frozen=True)
class AcousticEncoderConfig:
    """Shape of the acoustic encoder (serialised in the voice codec's ``config.json``)."""

    sem_dim: int = 256  # D_s, width of the semantic features / centroids
    n_mels: int = 80
    mel_frames_per_token: int = 4  # k: mel frames (10 ms) per token frame
    dim: int = 256
    intermediate_dim: int = 512
    num_layers: int = 3
    kernel_size: int = 3  # token frames of causal context per block
    fsq_levels: tuple[int, ...] = (8, 8, 8, 4, 4)

    def __post_init__(self) -> None:
        for name in ("sem_dim", "n_mels", "mel_frames_per_token", "dim", "intermediate_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"AcousticEncoderConfig.{name} must be >= 1")
        if self.num_layers < 0 or self.kernel_size < 1:
            raise ValueError(
                f"num_layers must be >= 0 and kernel_size >= 1, got {self.num_layers}, "
                f"{self.kernel_size}"
            )

    @property
    def input_dim(self) -> int:
        return 2 * self.sem_dim + self.mel_frames_per_token * self.n_mels

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fsq_levels"] = list(self.fsq_levels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AcousticEncoderConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown AcousticEncoderConfig keys {sorted(unknown)}")
        d = dict(d)
        if "fsq_levels" in d:
            d["fsq_levels"] = tuple(int(v) for v in d["fsq_levels"])
        return cls(**d)


@dataclass
class AcousticState:
    """Last ``kernel_size - 1`` normalised inputs of each causal block (None at stream start)."""

    context: list[torch.Tensor | None]


class AcousticEncoder(nn.Module):
    """``(feat, centroid, mel)`` per token frame -> FSQ values and codes."""

    def __init__(self, cfg: AcousticEncoderConfig | None = None) -> None:
        super().__init__()
        self.cfg = c = cfg or AcousticEncoderConfig()
        self.proj_in = nn.Linear(c.input_dim, c.dim)
        self.blocks = nn.ModuleList(
            CausalMixBlock(c.dim, c.intermediate_dim, c.kernel_size, 1.0 / max(1, c.num_layers))
            for _ in range(c.num_layers)
        )
        self.norm = nn.LayerNorm(c.dim)
        self.fsq = FSQ(c.fsq_levels)
        self.proj_out = nn.Linear(c.dim, self.fsq.dim)

    def initial_state(self) -> AcousticState:
        return AcousticState([None] * len(self.blocks))

    def inputs(self, feat: torch.Tensor, centroid: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """Concatenate ``feat, centroid: [B, F, D_s]`` and ``mel: [B, M, F * k]`` (normalised)
        into ``[B, F, input_dim]``."""
        c = self.cfg
        b, f, d = feat.shape
        if d != c.sem_dim or centroid.shape != feat.shape:
            raise ValueError(
                f"feat and centroid must both be [B, F, {c.sem_dim}], got {tuple(feat.shape)} "
                f"and {tuple(centroid.shape)}"
            )
        k = c.mel_frames_per_token
        if mel.shape != (b, c.n_mels, f * k):
            raise ValueError(f"mel must be [{b}, {c.n_mels}, {f * k}], got {tuple(mel.shape)}")
        mel_tok = mel.transpose(1, 2).reshape(b, f, k * c.n_mels)
        return torch.cat([feat, centroid, mel_tok], dim=-1)

    def forward(
        self,
        feat: torch.Tensor,
        centroid: torch.Tensor,
        mel: torch.Tensor,
        state: AcousticState | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, AcousticState]:
        """Encode ``F`` token frames (see :meth:`inputs` for shapes).

        Returns (``q: [B, F, K]`` FSQ values, straight-through; ``codes: [B, F]`` int64;
        the new state). ``state=None`` starts a stream; chunked calls that thread the
        state equal one call over the whole sequence.
        """
        x = self.proj_in(self.inputs(feat, centroid, mel))
        state = state or self.initial_state()
        if x.shape[1] == 0:  # nothing to encode: the state is unchanged
            q, codes = self.fsq(self.proj_out(x))
            return q, codes, state
        ctx = state.context
        new_ctx: list[torch.Tensor | None] = []
        for block, c_in in zip(self.blocks, ctx, strict=True):
            x, c_out = block(x, c_in)
            new_ctx.append(c_out)
        q, codes = self.fsq(self.proj_out(self.norm(x)))
        return q, codes, AcousticState(new_ctx)
