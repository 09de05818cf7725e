"""What ``streamcodec info voice-700`` prints: rates and latency from the configuration files.

Reads only JSON (the voice config, the semantic encoder's and the vocoder's
configs), never the weights, so it works before a model is trained (the preset
and the bundled/default part configs are used where files are missing).
"""

from __future__ import annotations

import json
from pathlib import Path

from streamcodec.semantic.config import RATES, SemanticEncoderConfig
from streamcodec.vocoder.model import VocoderConfig
from streamcodec.vocoder.phase import phase_delay_samples
from streamcodec.voice.codec import latency_breakdown
from streamcodec.voice.config import preset, read_config
from streamcodec.voice.model import bundled_voice_dir, resolve_part


def voice_info(name: str, weights: str | Path | None = None) -> dict:
    """Configuration summary of voice codec ``name`` (weights dir optional)."""
    wdir = Path(weights) if weights is not None else bundled_voice_dir(name)
    trained = (wdir / "config.json").exists() and (wdir / "model.safetensors").exists()
    if trained:
        cfg, training = read_config(wdir / "config.json")
    else:
        cfg, training = preset(name), {}
    sem_path = resolve_part(cfg.semantic_weights, wdir) / "config.json"
    enc = (
        SemanticEncoderConfig.from_dict(json.loads(sem_path.read_text())["encoder"])
        if sem_path.exists()
        else SemanticEncoderConfig()
    )
    voc_path = resolve_part(cfg.vocoder_weights, wdir) / "config.json"
    voc = (
        VocoderConfig.from_dict(json.loads(voc_path.read_text())["vocoder"])
        if voc_path.exists()
        else VocoderConfig()
    )
    pool = RATES[cfg.tokenizer].pool_tokens
    voc_delay = voc.delay_samples + phase_delay_samples(
        cfg.vocoder_phase, voc.n_fft, voc.hop_samples
    )
    latency = latency_breakdown(enc.latency_ms(pool), cfg, 1000.0 * voc_delay / voc.mel.sample_rate)
    return {
        "name": cfg.name,
        "weights": str(wdir) if trained else None,
        "token_frame_ms": cfg.frame_ms,
        "frames_per_s": 1000.0 / cfg.frame_ms,
        "bits_per_frame": cfg.bits_per_frame,
        "bits": {"semantic": cfg.sem_bits, "acoustic": cfg.acoustic_bits},
        "payload_bps": cfg.payload_bps,
        "decode_chunk_ms": cfg.decoder.chunk_token_frames * cfg.frame_ms,
        "steps": cfg.steps,
        "guidance": cfg.guidance,
        "vocoder_phase": cfg.vocoder_phase,
        "latency_ms": latency,
        "training": {k: v for k, v in training.items() if k != "history"},
    }
