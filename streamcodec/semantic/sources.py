"""Token sources for probes: our semantic tokenizers and two same-vocabulary baselines.

A token source turns ``pcm: [T] float32`` (16 kHz) into ``ids: [F]`` int64 and
``embeddings: [F, E]`` float32 (the centroid each id stands for). Names:

- ``semantic-350`` / ``semantic-700`` / ``semantic-1400``: the shipped tokenizer;
- ``mel-kmeans-350`` / ``-700`` / ``-1400`` (``mel-kmeans`` = ``-700``): k-means with
  the same vocabulary on raw normalised 20 ms log-mel patches, mean-pooled per
  token frame exactly like the encoder features;
- ``codec2-700c``: k-means with the same vocabulary on Codec 2 700C's 28 frame bits
  (one token per 40 ms frame).

Baseline codebooks are fitted with ``streamcodec train kmeans --features mel|codec2-700c``
into a baseline folder (default ``~/.cache/streamcodec/probe-baselines/<features>/``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from streamcodec.features import LogMel
from streamcodec.semantic.codebook import Codebook
from streamcodec.semantic.config import RATES, SemanticEncoderConfig
from streamcodec.semantic.encoder import mel_to_patches
from streamcodec.semantic.tokenizer import load_tokenizer, pool_tokens

BASELINE_DIR = (
    Path(os.environ.get("STREAMCODEC_CACHE", Path.home() / ".cache" / "streamcodec"))
    / "probe-baselines"
)

MEL_SOURCES = {f"mel-kmeans-{n.split('-')[1]}": n for n in RATES}
CODEC_SOURCES = {"codec2-700c": "codec2-700c"}


@dataclass
class TokenSource:
    name: str
    vocab_size: int
    frames_per_s: float
    fn: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

    def tokens(self, pcm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``pcm: [T]`` -> (ids ``[F]`` int64, embeddings ``[F, E]`` float32)."""
        return self.fn(pcm)


def source_names() -> list[str]:
    return sorted([*RATES, *MEL_SOURCES, "mel-kmeans", *CODEC_SOURCES])


# ---- baseline features (shared by the probe and the k-means recipe) -------------------
_MEL_CFG = SemanticEncoderConfig()  # 20 ms patches, fixed normalisation
_LOGMEL = LogMel(_MEL_CFG.mel)


def mel_features(pcm: torch.Tensor, pool: int) -> torch.Tensor:
    """Raw-log-mel baseline features: ``pcm: [B, T]`` -> ``[B, F, 160]`` (``F = T // (320 pool)``),
    normalised 20 ms patches mean-pooled ``pool`` at a time."""
    with torch.no_grad():
        return pool_tokens(mel_to_patches(_LOGMEL(pcm), _MEL_CFG), pool)


def codec_bit_vectors(codec_name: str, pcm: np.ndarray) -> np.ndarray:
    """Frames of a fixed-rate codec as bit vectors ``[F, bits_per_frame]`` float32 (0/1)."""
    from streamcodec.registry import load

    codec = load(codec_name)
    if codec.bits_per_frame is None:
        raise ValueError(f"codec {codec_name!r} is variable-rate; bit vectors need a fixed rate")
    frames = codec.encode(np.ascontiguousarray(pcm, dtype=np.float32))
    if not frames:
        return np.zeros((0, codec.bits_per_frame), np.float32)
    raw = np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(len(frames), -1)
    return np.unpackbits(raw, axis=1)[:, : codec.bits_per_frame].astype(np.float32)


def _load_baseline_book(features: str, name: str, baseline_dir: Path) -> Codebook:
    path = baseline_dir / features / "codebooks.safetensors"
    if not path.exists():
        raise FileNotFoundError(
            f"baseline codebook {path} not found; fit it with `streamcodec train kmeans "
            f"--features {features} --out {path.parent}`"
        )
    books = load_file(str(path))
    if name not in books:
        raise FileNotFoundError(f"{path} has no codebook {name!r} (has {sorted(books)})")
    return Codebook(books[name])


def load_source(
    name: str, baseline_dir: str | Path | None = None, weights_dir: str | Path | None = None
) -> TokenSource:
    """The token source called ``name`` (see :func:`source_names`)."""
    bdir = Path(baseline_dir) if baseline_dir is not None else BASELINE_DIR
    if name == "mel-kmeans":
        name = "mel-kmeans-700"
    if name in RATES:
        tok = load_tokenizer(name, weights_dir)
        assert tok.codebook is not None

        def semantic(pcm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            ids = tok.encode(pcm)
            return ids.numpy(), tok.codebook.embed(ids).numpy()

        return TokenSource(name, tok.vocab_size, tok.frames_per_s, semantic)
    if name in MEL_SOURCES:
        rate = MEL_SOURCES[name]
        book = _load_baseline_book("mel", rate, bdir)
        pool = RATES[rate].pool_tokens
        frame = pool * _MEL_CFG.token_samples

        def mel(pcm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            x = torch.from_numpy(np.pad(pcm, (0, -pcm.size % frame)))[None]
            ids = book.assign(mel_features(x, pool)[0])
            return ids.numpy(), book.embed(ids).numpy()

        return TokenSource(name, book.vocab_size, 16000 / frame, mel)
    if name in CODEC_SOURCES:
        book = _load_baseline_book(name, name, bdir)
        from streamcodec.registry import load

        fps = load(name).frames_per_s

        def codec(pcm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            ids = book.assign(torch.from_numpy(codec_bit_vectors(name, pcm)))
            return ids.numpy(), book.embed(ids).numpy()

        return TokenSource(name, book.vocab_size, fps, codec)
    raise ValueError(f"unknown token source {name!r}; known: {source_names()}")
