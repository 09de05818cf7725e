"""Semantic tokenizer: encoder features pooled per token frame, assigned to frozen centroids.

``tok = load_tokenizer("semantic-700")`` gives 25 token frames/s (40 ms) from 16 kHz
audio. Offline: ``tok.encode(pcm) -> ids [F]``; streaming: ``s = tok.stream()``,
``s.push(pcm) -> TokenFrames`` any number of times, then ``s.flush()``. The
encoder (shared, read-only) is loaded once per process and shared by all rates.

Shipped weights live in ``streamcodec/weights/semantic/``: ``config.json``
(format version, encoder config, rates), ``encoder.safetensors`` and
``codebooks.safetensors`` (one ``[V, D]`` fp16 tensor per tokenizer name).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from streamcodec.audio import check_pcm
from streamcodec.packed_linear import pack_linears
from streamcodec.semantic.codebook import Codebook
from streamcodec.semantic.config import (
    FORMAT_VERSION,
    RATES,
    RateConfig,
    SemanticEncoderConfig,
    read_versioned_json,
    write_json,
)
from streamcodec.semantic.encoder import SemanticEncoder
from streamcodec.semantic.streaming import EncoderStream

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights" / "semantic"
ENCODER_KIND = "semantic-encoder"


@dataclass(frozen=True)
class TokenFrames:
    """Token frames of one push: ``ids: [F]`` int64 and pooled ``features: [F, D]`` float32."""

    ids: torch.Tensor
    features: torch.Tensor


def pool_tokens(features: torch.Tensor, pool: int) -> torch.Tensor:
    """Mean of ``pool`` consecutive token features: ``[B, N, D]`` -> ``[B, N // pool, D]``."""
    b, n, d = features.shape
    n = n // pool * pool
    return features[:, :n].reshape(b, n // pool, pool, d).mean(2)


class SemanticTokenizer:
    """One rate of the semantic tokenizer over a shared encoder and a frozen codebook."""

    def __init__(
        self, encoder: SemanticEncoder, rate: RateConfig, codebook: Codebook | None, name: str
    ) -> None:
        if codebook is not None and codebook.dim != encoder.cfg.d_model:
            raise ValueError(
                f"codebook width {codebook.dim} != encoder width {encoder.cfg.d_model}"
            )
        self.encoder = encoder.eval()
        pack_linears(encoder)  # CPU inference reads fp16 weights (same values, half the bytes)
        self.rate = rate
        self.codebook = codebook
        self.name = name

    @property
    def sample_rate(self) -> int:
        return self.encoder.cfg.mel.sample_rate

    @property
    def frame_samples(self) -> int:
        return self.rate.pool_tokens * self.encoder.cfg.token_samples

    @property
    def frames_per_s(self) -> float:
        return self.sample_rate / self.frame_samples

    @property
    def latency_ms(self) -> float:
        """Algorithmic latency: frame + wait for its last chunk + encoder look-ahead."""
        return self.encoder.cfg.latency_ms(self.rate.pool_tokens)

    @property
    def vocab_size(self) -> int:
        if self.codebook is None:
            raise ValueError(f"tokenizer {self.name!r} has no codebook (features only)")
        return self.codebook.vocab_size

    def stream(self) -> TokenizerStream:
        """A new per-stream session."""
        return TokenizerStream(self)

    def features(self, pcm: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Offline pooled features ``[F, D]``, ``F = ceil(T / frame_samples)``."""
        return self._offline(pcm).features

    def encode(self, pcm: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Offline token ids ``[F]`` int64 for ``pcm: [T]`` float at 16 kHz."""
        return self._offline(pcm).ids

    def _offline(self, pcm: np.ndarray | torch.Tensor) -> TokenFrames:
        s = self.stream()
        a, b = s.push(pcm), s.flush()
        return TokenFrames(torch.cat([a.ids, b.ids]), torch.cat([a.features, b.features]))


@dataclass
class TokenizerStream:
    """Per-stream state: ``push(pcm [T]) -> TokenFrames``; ``flush()`` pads to a whole frame."""

    tokenizer: SemanticTokenizer
    _enc: EncoderStream = field(init=False)
    _buf: torch.Tensor = field(init=False)  # token features not yet pooled, [1, n, D]
    _samples: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._enc = EncoderStream(self.tokenizer.encoder, batch_size=1)
        self._buf = torch.zeros(1, 0, self.tokenizer.encoder.cfg.d_model)

    def push(self, pcm: np.ndarray | torch.Tensor) -> TokenFrames:
        x = _as_tensor(pcm)
        self._samples += x.shape[0]
        return self._pool(self._enc.push(x[None]))

    def flush(self) -> TokenFrames:
        fs = self.tokenizer.frame_samples
        pad = -self._samples % fs
        out = self._pool(self._enc.push(torch.zeros(1, pad))) if pad else None
        last = self._pool(self._enc.flush())
        if out is None:
            return last
        return TokenFrames(torch.cat([out.ids, last.ids]), torch.cat([out.features, last.features]))

    def _pool(self, feats: torch.Tensor) -> TokenFrames:
        self._buf = torch.cat([self._buf, feats], dim=1)
        pool = self.tokenizer.rate.pool_tokens
        n = self._buf.shape[1] // pool * pool
        pooled = pool_tokens(self._buf[:, :n], pool)[0]
        self._buf = self._buf[:, n:]
        cb = self.tokenizer.codebook
        ids = cb.assign(pooled) if cb is not None else torch.zeros(0, dtype=torch.long)
        return TokenFrames(ids, pooled)


def _as_tensor(pcm: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(pcm, torch.Tensor):
        if pcm.dim() != 1 or not pcm.is_floating_point():
            raise ValueError(f"pcm must be a float tensor [T], got {pcm.dtype} {tuple(pcm.shape)}")
        if not torch.isfinite(pcm).all():
            raise ValueError("pcm has NaN/Inf samples")
        return pcm.float()
    return torch.from_numpy(check_pcm(pcm))


# ---- weights on disk ------------------------------------------------------------------
def save_encoder(encoder: SemanticEncoder, out_dir: str | Path, extra: dict | None = None) -> None:
    """Write ``encoder.safetensors`` (fp16) and ``config.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().to("cpu", torch.float16).contiguous() for k, v in encoder.state_dict().items()
    }
    save_file(state, str(out / "encoder.safetensors"))
    payload = {
        "format_version": FORMAT_VERSION,
        "kind": ENCODER_KIND,
        "encoder": encoder.cfg.to_dict(),
        **(extra or {}),
    }
    write_json(out / "config.json", payload)


def load_encoder(weights_dir: str | Path = WEIGHTS_DIR) -> SemanticEncoder:
    """Load ``config.json`` + ``encoder.safetensors`` from ``weights_dir`` (fp32, eval mode)."""
    d = Path(weights_dir)
    payload = read_versioned_json(d / "config.json", ENCODER_KIND)
    enc = SemanticEncoder(SemanticEncoderConfig.from_dict(payload["encoder"]))
    state = {k: v.float() for k, v in load_file(str(d / "encoder.safetensors")).items()}
    enc.load_state_dict(state)
    return enc.eval()


def save_codebooks(codebooks: dict[str, torch.Tensor], path: str | Path) -> None:
    """Write ``{name: centroids [V, D]}`` as fp16 safetensors."""
    save_file(
        {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in codebooks.items()},
        str(path),
    )


@functools.lru_cache(maxsize=4)
def _shared_encoder(weights_dir: str) -> SemanticEncoder:
    enc = load_encoder(weights_dir)
    for p in enc.parameters():
        p.requires_grad_(False)
    return enc


def available_tokenizers() -> list[str]:
    return sorted(RATES)


def load_tokenizer(
    name: str = "semantic-700", weights_dir: str | Path | None = None
) -> SemanticTokenizer:
    """The shipped tokenizer ``name`` (``semantic-350``, ``semantic-700``, ``semantic-1400``)."""
    if not isinstance(name, str):
        raise TypeError(f"tokenizer name must be a str, got {type(name).__name__}")
    if name not in RATES:
        raise ValueError(f"unknown semantic tokenizer {name!r}; known: {available_tokenizers()}")
    d = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    cb_path = d / "codebooks.safetensors"
    if not (d / "encoder.safetensors").exists():
        raise FileNotFoundError(f"semantic encoder weights not found in {d}")
    encoder = _shared_encoder(str(d.resolve()))
    codebook = None
    if cb_path.exists():
        books = load_file(str(cb_path))
        if name in books:
            codebook = Codebook(books[name])
    if codebook is None:
        raise FileNotFoundError(f"no codebook {name!r} in {cb_path}")
    rate = RATES[name]
    if codebook.vocab_size != rate.vocab_size:
        rate = RateConfig(rate.name, rate.pool_tokens, rate.pooling, codebook.vocab_size)
    return SemanticTokenizer(encoder, rate, codebook, name)
