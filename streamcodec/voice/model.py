"""The trainable part of a voice codec (acoustic encoder + flow decoder) and its files.

A weights directory holds ``config.json`` (:func:`streamcodec.voice.config.write_config`)
and ``model.safetensors`` (fp16). The shared frozen parts are referenced by the
config: ``semantic_weights`` (semantic encoder + codebooks) and
``vocoder_weights``, each a directory relative to the weights directory or a
name under the package's ``streamcodec/weights/``.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from streamcodec.acoustic.encoder import AcousticEncoder
from streamcodec.decoder.model import FlowDecoder
from streamcodec.voice.config import VoiceConfig, read_config, write_config

log = logging.getLogger(__name__)


def package_weights_dir(*parts: str) -> Path:
    """``streamcodec/weights/<parts...>`` inside the installed package."""
    return Path(str(resources.files("streamcodec").joinpath("weights", *parts)))


def bundled_voice_dir(name: str) -> Path:
    return package_weights_dir("voice", name)


def resolve_part(ref: str, base: Path) -> Path:
    """A shared part's directory: ``base / ref`` when it exists, else the bundled ``ref``."""
    local = base / ref
    if local.is_dir():
        return local
    return package_weights_dir(ref)


class VoiceModel(nn.Module):
    """``acoustic`` (:class:`AcousticEncoder`) + ``decoder`` (:class:`FlowDecoder`)."""

    def __init__(self, cfg: VoiceConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.acoustic = AcousticEncoder(cfg.acoustic)
        self.decoder = FlowDecoder(cfg.decoder)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save(self, out_dir: str | Path, training: dict | None = None) -> Path:
        """Write ``model.safetensors`` (fp16; mel statistics in fp32) and ``config.json``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        state = {}
        for k, v in self.state_dict().items():
            keep32 = k.endswith(("mel_mean", "mel_std"))
            state[k] = v.detach().to("cpu", torch.float32 if keep32 else torch.float16).contiguous()
        save_file(state, str(out / "model.safetensors"))
        write_config(out / "config.json", self.cfg, training)
        return out

    @classmethod
    def load(cls, weights_dir: str | Path) -> tuple[VoiceModel, dict]:
        """Load a weights directory -> (model in eval mode, fp32; training info)."""
        d = Path(weights_dir)
        cfg_path, w_path = d / "config.json", d / "model.safetensors"
        if not cfg_path.exists() or not w_path.exists():
            raise FileNotFoundError(
                f"no voice codec weights at {d} (config.json, model.safetensors)"
            )
        cfg, training = read_config(cfg_path)
        model = cls(cfg)
        state = {k: v.float() for k, v in load_file(str(w_path)).items()}
        model.load_state_dict(state)
        log.info("loaded %s from %s (%d parameters)", cfg.name, d, model.num_parameters())
        return model.eval(), training
