"""Inference wrapper: load shipped weights, offline synthesis, streaming sessions.

Weights live in a directory holding ``model.safetensors`` (fp16 generator
weights) and ``config.json`` (``{"format_version", "kind", "vocoder", "training"}``).
Training code lives in :mod:`streamcodec.training.vocoder`; nothing here needs it.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from streamcodec.features import LogMel
from streamcodec.packed_linear import WeightPacker, pack_linears
from streamcodec.vocoder.istft import overlap_add, window_envelope
from streamcodec.vocoder.model import FORMAT_VERSION, VocoderConfig, VocoderGenerator
from streamcodec.vocoder.phase import PHASE_MODES, PhaseRebuilder, phase_delay_samples
from streamcodec.vocoder.streaming import VocoderStream
from streamcodec.vocoder.traced import TraceCache

log = logging.getLogger(__name__)

KIND = "mel-vocoder"


def bundled_weights_dir(name: str = "mel-vocoder") -> Path:
    """Directory of the weights shipped in the package under ``streamcodec/weights/<name>``."""
    return Path(str(resources.files("streamcodec").joinpath("weights", name)))


class Vocoder:
    """A loaded generator: ``synthesize(mel)`` offline, ``stream()`` for a streaming session.

    ``phase``: ``"network"`` (the generator's own phase) or ``"pghi"`` (its output is
    re-phased from its STFT magnitude, :mod:`streamcodec.vocoder.phase`; ``n_fft - hop``
    samples more delay; measured level on copy-synthesis DNSMOS, see
    ``benchmarks/results/vocoder/phase``). :attr:`delay_samples` counts both parts.
    """

    def __init__(
        self, generator: VocoderGenerator, training_info: dict | None = None, phase: str = "network"
    ) -> None:
        if phase not in PHASE_MODES:
            raise ValueError(f"phase must be one of {PHASE_MODES}, got {phase!r}")
        self.generator = generator.eval()
        # CPU inference reads fp16 weights (same values, half the bytes), the embedding
        # conv's GEMM of short streaming chunks included
        if pack_linears(generator):
            generator.embed_packer = WeightPacker()
        self.cfg = generator.cfg
        self.training_info = dict(training_info or {})
        device = next(generator.parameters()).device
        self.window = torch.hann_window(self.cfg.n_fft, device=device)
        self.synthesis_window = self.window / window_envelope(self.window, self.cfg.hop_samples)
        self.mel = LogMel(self.cfg.mel).to(device)
        self._trace = TraceCache(generator)
        self.phase = phase
        self.rephaser = (
            PhaseRebuilder(self.cfg.n_fft, self.cfg.hop_samples, device=device)
            if phase == "pghi"
            else None
        )

    @property
    def delay_samples(self) -> int:
        """Output sample ``n + delay_samples`` reproduces input sample ``n`` (generator's
        overlap-add and look-ahead, plus the phase stage's analysis window)."""
        cfg = self.cfg
        return cfg.delay_samples + phase_delay_samples(self.phase, cfg.n_fft, cfg.hop_samples)

    @property
    def latency_ms(self) -> float:
        """Algorithmic latency: the delay plus one hop of framing."""
        return 1000.0 * (self.delay_samples + self.cfg.hop_samples) / self.cfg.mel.sample_rate

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: VocoderConfig, seed: int = 0, phase: str = "network") -> Vocoder:
        """A random-init vocoder (tests, training start)."""
        torch.manual_seed(seed)
        return cls(VocoderGenerator(cfg), phase=phase)

    @classmethod
    def from_pretrained(
        cls, path: str | Path = "mel-vocoder", device: str = "cpu", phase: str = "network"
    ) -> Vocoder:
        """Load ``path`` (a weights directory) or a bundled model name such as ``"mel-vocoder"``;
        ``phase`` as in the class."""
        path = Path(path)
        if not path.exists() and len(path.parts) == 1:
            path = bundled_weights_dir(str(path))
        cfg_path, w_path = path / "config.json", path / "model.safetensors"
        if not cfg_path.exists() or not w_path.exists():
            raise FileNotFoundError(
                f"no vocoder weights at {path} (config.json, model.safetensors)"
            )
        meta = json.loads(cfg_path.read_text(encoding="utf-8"))
        if meta.get("kind") != KIND:
            raise ValueError(f"{cfg_path}: kind {meta.get('kind')!r}, expected {KIND!r}")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{cfg_path}: format_version {meta.get('format_version')!r} unsupported "
                f"(this streamcodec reads {FORMAT_VERSION})"
            )
        gen = VocoderGenerator(VocoderConfig.from_dict(meta["vocoder"]))
        state = {k: v.float() for k, v in load_file(str(w_path)).items()}
        gen.load_state_dict(state)
        log.info("loaded vocoder %s (%d parameters)", path, gen.num_parameters())
        return cls(gen.to(device), meta.get("training"), phase=phase)

    def save(self, path: str | Path, training_info: dict | None = None) -> Path:
        """Write ``model.safetensors`` (fp16) and ``config.json`` into directory ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {
            k: v.detach().to("cpu", torch.float16).contiguous()
            for k, v in self.generator.state_dict().items()
        }
        save_file(state, str(path / "model.safetensors"))
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": KIND,
            "vocoder": self.cfg.to_dict(),
            "training": dict(training_info if training_info is not None else self.training_info),
        }
        (path / "config.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return path

    # --- use ---------------------------------------------------------------------------------
    def check_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """Validate ``mel: [B, M, F]`` (or ``[M, F]``) and move it to the model's device."""
        if not isinstance(mel, torch.Tensor):
            raise TypeError(f"mel must be a torch.Tensor, got {type(mel).__name__}")
        if not mel.is_floating_point():
            raise TypeError(f"mel must be floating point, got {mel.dtype}")
        if mel.dim() == 2:
            mel = mel.unsqueeze(0)
        m = self.cfg.mel.n_mels
        if mel.dim() != 3 or mel.shape[1] != m:
            raise ValueError(f"expected mel: [B, {m}, F] or [{m}, F], got {tuple(mel.shape)}")
        return mel.to(self.window.device, torch.float32)

    def stream(self, batch_size: int = 1, threads: int | None = 1) -> VocoderStream:
        """A streaming session (``threads``: torch intra-op threads per step, ``None``: as is).

        On a CPU the session runs the generator's TorchScript trace (same outputs, about
        half the overhead per push; :mod:`streamcodec.vocoder.traced`), built here on first
        use, so that the first push does not pay for it.
        """
        return VocoderStream(self, batch_size, threads)

    def streaming_generator(self):
        """The generator streams call, ``(mel, state) -> (spec, state)``: the trace where it
        applies, else the module."""
        return self._trace.get() or self.generator

    @torch.inference_mode()
    def synthesize(self, mel: torch.Tensor) -> torch.Tensor:
        """Offline: ``mel: [B, M, F]`` -> audio ``[B, F * hop]``, aligned with the input."""
        mel = self.check_mel(mel)
        b, _, n = mel.shape
        if n == 0:
            return torch.zeros(b, 0, device=mel.device)
        cfg = self.cfg
        pad = torch.full(
            (b, cfg.mel.n_mels, cfg.lookahead_frames), cfg.silence_log_mel, device=mel.device
        )
        spec, _ = self.generator(torch.cat([mel, pad], dim=-1))
        y = overlap_add(spec, self.window, cfg.hop_samples, self.synthesis_window)
        y = y[:, cfg.delay_samples :].clamp(-1.0, 1.0)
        if self.rephaser is not None:
            y = self.rephaser.process(y).clamp(-1.0, 1.0)
        return y

    @torch.inference_mode()
    def copy_synthesis(self, audio: torch.Tensor) -> torch.Tensor:
        """``audio: [B, T]`` -> mel -> audio ``[B, (T // hop) * hop]`` (analysis-synthesis)."""
        if audio.dim() == 1:
            audio = audio.unsqueeze(0)
        return self.synthesize(self.mel(audio.to(self.window.device, torch.float32)))
