"""Tiny random-init voice codec weights (tests, CLI smoke runs, plumbing checks).

``write_tiny_weights(dir, "voice-700")`` writes a self-contained weights directory:
``config.json`` + ``model.safetensors`` of a small acoustic encoder and decoder,
and ``semantic/`` (a 2-layer encoder, random codebooks) and ``mel-vocoder-voice/``
(a 1-layer vocoder) beside them, which the config references. Nothing is trained:
the output is noise-like, but every code path runs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from streamcodec.semantic.config import RATES, SemanticEncoderConfig
from streamcodec.semantic.encoder import SemanticEncoder
from streamcodec.semantic.tokenizer import save_codebooks, save_encoder
from streamcodec.vocoder.inference import Vocoder
from streamcodec.vocoder.model import VocoderConfig
from streamcodec.voice.config import VoiceConfig, preset
from streamcodec.voice.model import VoiceModel

TINY_SEM_DIM = 32
TINY_VOCAB = 8192  # the real 13-bit semantic ids, so frames have the real 26-bit layout


def tiny_config(name: str = "voice-700", **overrides: object) -> VoiceConfig:
    """The preset ``name`` shrunk: width 32, one layer each (vocabulary 8192 as shipped)."""
    base = preset(name)
    dec = replace(
        base.decoder, dim=32, n_layers=1, n_heads=1, norm_groups=4, cond_layers=1,
        cond_intermediate=32, sem_vocab=TINY_VOCAB, sem_dim=TINY_SEM_DIM, time_dim=16,
        context_chunks=3,
    )  # fmt: skip
    ac = replace(base.acoustic, sem_dim=TINY_SEM_DIM, dim=32, intermediate_dim=32, num_layers=1)
    cfg = replace(base, sem_vocab=TINY_VOCAB, decoder=dec, acoustic=ac, steps=2)
    return replace(cfg, **overrides)


def tiny_semantic_encoder() -> SemanticEncoder:
    cfg = SemanticEncoderConfig(
        d_model=TINY_SEM_DIM, n_heads=1, n_layers=2, lookahead_chunks=(1, 0), feature_layers=(0, 1)
    )
    return SemanticEncoder(cfg)


def write_tiny_weights(out_dir: str | Path, name: str = "voice-700", seed: int = 0) -> Path:
    """Write a random-init, self-contained weights directory for ``name``; returns it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    save_encoder(tiny_semantic_encoder(), out / "semantic", {"training": {"steps": 0}})
    g = torch.Generator().manual_seed(seed)
    books = {n: torch.randn(TINY_VOCAB, TINY_SEM_DIM, generator=g) for n in RATES}
    save_codebooks(books, out / "semantic" / "codebooks.safetensors")
    voc = Vocoder.from_config(VocoderConfig(dim=16, intermediate_dim=32, num_layers=1), seed=seed)
    cfg = tiny_config(name)
    voc.save(out / cfg.vocoder_weights, {"steps": 0})  # where the config looks for it
    model = VoiceModel(cfg)
    with torch.no_grad():  # the decoder's copy of the semantic centroids
        model.decoder.cond.sem_table.copy_(books[cfg.tokenizer])
    # the decoder's output layers start at zero; give them weights so outputs vary
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and not p.abs().any():
                p.normal_(0.0, 0.2)
    model.save(out, {"steps": 0, "note": "tiny random-init test model"})
    return out


__all__ = ["tiny_config", "tiny_semantic_encoder", "write_tiny_weights"]
