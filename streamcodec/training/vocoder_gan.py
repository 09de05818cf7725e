"""Adversarial training state of the mel vocoder: configuration, presets and one training step.

Generator: :class:`streamcodec.vocoder.model.VocoderGenerator` on log-mel of audio
crops, with mild Gaussian noise on the log-mel (so the vocoder tolerates the
imperfect mels of the diffusion decoder). Losses: multi-resolution log-mel L1
from step 0; from ``gan_start_step`` on also hinge GAN losses of a multi-period
and a multi-resolution discriminator plus feature matching. The command-line
recipe around it is :mod:`streamcodec.training.vocoder`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from streamcodec.features import LogMel
from streamcodec.training.losses import (
    MultiResolutionMelLoss,
    PhaseDerivativeLoss,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
)
from streamcodec.vocoder.discriminators import (
    DiscriminatorConfig,
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
)
from streamcodec.vocoder.inference import Vocoder
from streamcodec.vocoder.istft import overlap_add
from streamcodec.vocoder.model import VocoderConfig, VocoderGenerator


@dataclass(frozen=True)
class TrainConfig:
    vocoder: VocoderConfig = field(default_factory=VocoderConfig)
    disc: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    batch_size: int = 8
    crop_s: float = 0.5
    lr_g: float = 5e-4
    lr_d: float = 5e-4
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.01
    warmup_steps: int = 200
    final_decay_frac: float = 0.3  # cosine-decay the lr over the last part of the run
    min_lr_ratio: float = 0.1
    gan_start_step: int = 2000
    # ... or once this fraction of the run (time budget / max steps) has passed, whichever
    # comes first: a budget-limited run on a slower device still gets adversarial steps
    gan_start_progress: float = 1.1
    mel_weight: float = 45.0
    adv_weight: float = 1.0
    mrd_weight: float = 0.5  # relative weight of the multi-resolution discriminator terms
    fm_weight: float = 2.0
    # PhaseDerivativeLoss (phase steps in time and frequency vs the target); 0: off
    phase_weight: float = 0.0
    mel_noise_prob: float = 0.5
    mel_noise_std: float = 0.2  # max std of Gaussian noise added to the log-mel input
    ema_decay: float = 0.999
    grad_clip: float = 100.0
    seed: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["vocoder"] = self.vocoder.to_dict()
        d["disc"] = self.disc.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        d["vocoder"] = VocoderConfig.from_dict(d["vocoder"])
        d["disc"] = DiscriminatorConfig.from_dict(d["disc"])
        d["betas"] = tuple(d["betas"])
        return cls(**d)


#: generator shared by the CPU and GPU presets, so either can resume the other
SHIPPED_GENERATOR = VocoderConfig(dim=256, intermediate_dim=768, num_layers=6)

PRESETS: dict[str, TrainConfig] = {
    # unit tests / plumbing checks: trains in seconds, learns nothing useful
    "tiny": TrainConfig(
        vocoder=VocoderConfig(dim=32, intermediate_dim=64, num_layers=2),
        disc=DiscriminatorConfig(
            periods=(2, 3), period_channels=(4, 8), resolutions=((256, 64),), resolution_channels=4
        ),
        batch_size=2,
        crop_s=0.25,
        warmup_steps=2,
        gan_start_step=2,
        ema_decay=0.9,
    ),
    # 2 CPU cores, 1-2 hours
    "cpu": TrainConfig(
        vocoder=SHIPPED_GENERATOR,
        disc=DiscriminatorConfig(period_channels=(16, 32, 64, 128), resolution_channels=16),
        batch_size=8,
        crop_s=0.5,
        warmup_steps=50,
        gan_start_step=4000,
    ),
    # one CUDA GPU (bf16 autocast), minutes
    "gpu": TrainConfig(
        vocoder=SHIPPED_GENERATOR,
        disc=DiscriminatorConfig(period_channels=(32, 64, 128, 256), resolution_channels=32),
        batch_size=32,
        crop_s=1.0,
        lr_g=8e-4,
        lr_d=8e-4,
        warmup_steps=300,
        gan_start_step=1500,
        gan_start_progress=0.35,
    ),
}


def integrated_phase_state(
    state: dict[str, torch.Tensor], generator: VocoderGenerator, fresh_phase: bool = False
) -> dict[str, torch.Tensor]:
    """A frame-phase generator's weights for ``generator`` (``integrate_phase``).

    By default they give the same output: the new step rows of the head predict
    ``delta = -bin_step`` (a zero total step), so fine-tuning starts from the shipped sound.
    That start keeps the frame-phase solution (the step rows hardly move in fine-tuning).
    ``fresh_phase`` instead keeps the backbone and the magnitude rows and starts the phase
    afresh: the phase rows are ``generator``'s own (random) ones and the steps are zero,
    i.e. each bin advances by its centre frequency until trained."""
    k = generator.n_bins
    state = dict(state)
    w, b = state["head.weight"], state["head.bias"]
    if w.shape[0] != 2 * k:
        raise ValueError(f"head has {w.shape[0]} outputs, expected {2 * k} (frame phase)")
    if fresh_phase:
        own_w, own_b = generator.head.weight.detach(), generator.head.bias.detach()
        state["head.weight"] = torch.cat(
            [w[:k], own_w[k : 2 * k].to(w), w.new_zeros(k, w.shape[1])]
        )
        state["head.bias"] = torch.cat([b[:k], own_b[k : 2 * k].to(b), b.new_zeros(k)])
        return state
    step = torch.remainder(generator.bin_step + math.pi, 2 * math.pi) - math.pi  # (-pi, pi]
    state["head.weight"] = torch.cat([w, w.new_zeros(k, w.shape[1])])
    state["head.bias"] = torch.cat([b, (-step / generator.cfg.phase_step_scale).to(b)])
    return state


class Trainer:
    """All training state of one run (generator, EMA, discriminators, optimisers, counters)."""

    def __init__(self, cfg: TrainConfig, device: torch.device, bf16: bool) -> None:
        self.cfg, self.device, self.bf16 = cfg, device, bf16
        torch.manual_seed(cfg.seed)
        self.gen = VocoderGenerator(cfg.vocoder).to(device)
        self.ema = VocoderGenerator(cfg.vocoder).to(device)
        self.ema.load_state_dict(self.gen.state_dict())
        self.ema.requires_grad_(False)
        self.mpd = MultiPeriodDiscriminator(cfg.disc).to(device)
        self.mrd = MultiResolutionDiscriminator(cfg.disc).to(device)
        self.opt_g = torch.optim.AdamW(
            self.gen.parameters(), cfg.lr_g, betas=cfg.betas, weight_decay=cfg.weight_decay
        )
        self.opt_d = torch.optim.AdamW(
            [*self.mpd.parameters(), *self.mrd.parameters()],
            cfg.lr_d,
            betas=cfg.betas,
            weight_decay=cfg.weight_decay,
        )
        self.logmel = LogMel(cfg.vocoder.mel).to(device)
        self.mel_loss = MultiResolutionMelLoss(sample_rate=cfg.vocoder.mel.sample_rate).to(device)
        self.phase_loss = PhaseDerivativeLoss().to(device)
        self.window = torch.hann_window(cfg.vocoder.n_fft, device=device)
        self.step = 0
        self.gan_steps = 0
        self.audio_s = 0.0  # seconds of audio through the generator
        self.wall_s = 0.0  # training wall time over all sessions
        self.history: list[dict] = []  # one record per training session
        # step the learning-rate warm-up counts from: 0, or where a run initialised from
        # shipped weights (fresh optimisers) started; a resumed run keeps its optimisers
        self.warmup_from = 0
        # how --init turned a frame-phase generator into this integrated-phase one, if it did
        self.phase_conversion: str | None = None
        self.rng = torch.Generator(device="cpu").manual_seed(cfg.seed + 1)

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "config": json.dumps(self.cfg.to_dict()),
            "gen": self.gen.state_dict(),
            "ema": self.ema.state_dict(),
            "mpd": self.mpd.state_dict(),
            "mrd": self.mrd.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "counters": json.dumps(self._counters()),
        }

    def _counters(self) -> dict:
        return {
            "step": self.step,
            "gan_steps": self.gan_steps,
            "audio_s": self.audio_s,
            "wall_s": self.wall_s,
            "history": self.history,
        }

    def load_state_dict(self, sd: dict) -> None:
        self.gen.load_state_dict(sd["gen"])
        self.ema.load_state_dict(sd["ema"])
        self.mpd.load_state_dict(sd["mpd"])
        self.mrd.load_state_dict(sd["mrd"])
        self.opt_g.load_state_dict(sd["opt_g"])
        self.opt_d.load_state_dict(sd["opt_d"])
        self._set_counters(json.loads(sd["counters"]))

    def _set_counters(self, c: dict) -> None:
        self.step = int(c.get("step", 0))
        self.gan_steps = int(c.get("gan_steps", 0))
        self.audio_s = float(c.get("audio_s", 0.0))
        self.wall_s = float(c.get("wall_s", 0.0))
        self.history = list(c.get("history", []))

    def init_from_shipped(self, path: Path, fresh_phase: bool = False) -> None:
        """Generator (and EMA) from a shipped weights directory; fresh D and optimisers.
        A frame-phase generator into an ``integrate_phase`` run is converted
        (:func:`integrated_phase_state`, ``fresh_phase`` passed on)."""
        v = Vocoder.from_pretrained(path, device=str(self.device))
        state = v.generator.state_dict()
        converts = (
            not v.cfg.integrate_phase and replace(v.cfg, integrate_phase=True) == self.cfg.vocoder
        )
        if fresh_phase and not converts:
            raise ValueError(
                f"fresh_phase needs a frame-phase generator at {path} and an integrate_phase run"
            )
        if converts:
            state = integrated_phase_state(state, self.gen, fresh_phase)
            self.phase_conversion = "fresh" if fresh_phase else "same output"
        elif v.cfg != self.cfg.vocoder:
            raise ValueError(f"{path}: generator config {v.cfg} differs from the run's")
        self.gen.load_state_dict(state)
        self.ema.load_state_dict(state)
        self._set_counters(v.training_info)
        self.warmup_from = self.step  # fresh optimisers: warm the learning rate up again

    def save_discriminators(self, path: Path) -> None:
        """The discriminators in fp16 safetensors (~6 MB for the GPU preset), with their
        config: a later run started with ``--init`` from the same folder continues training
        them instead of starting from chance (optimiser state is not kept)."""
        tensors = {
            f"{name}.{k}": v.detach().to("cpu", torch.float16).contiguous()
            for name, mod in (("mpd", self.mpd), ("mrd", self.mrd))
            for k, v in mod.state_dict().items()
        }
        meta = {"disc": json.dumps(self.cfg.disc.to_dict()), "step": str(self.step)}
        tmp = path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)

    def load_discriminators(self, path: Path) -> bool:
        """Discriminators from :meth:`save_discriminators`; False (nothing loaded) when their
        config differs from this run's (another preset)."""
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            if "disc" not in meta or (
                DiscriminatorConfig.from_dict(json.loads(meta["disc"])) != self.cfg.disc
            ):
                return False
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        for name, mod in (("mpd", self.mpd), ("mrd", self.mrd)):
            sd = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")}
            ref = mod.state_dict()
            mod.load_state_dict({k: v.to(ref[k].dtype) for k, v in sd.items()})
        return True

    def training_info(self) -> dict:
        return {
            **self._counters(),
            "audio_hours": self.audio_s / 3600,
            "wall_hours": self.wall_s / 3600,
        }

    # -- one step ------------------------------------------------------------------------------
    def lr_factor(self, progress: float, warm_up: bool = True) -> float:
        cfg = self.cfg
        warm = 1.0
        if warm_up:
            warm = min(1.0, (self.step - self.warmup_from + 1) / max(1, cfg.warmup_steps))
        start = 1.0 - cfg.final_decay_frac
        if progress <= start or cfg.final_decay_frac <= 0:
            return warm
        t = min(1.0, (progress - start) / cfg.final_decay_frac)
        return warm * (
            cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        )

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16)

    def generate(
        self, x: torch.Tensor, noisy: bool, mel: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: [B, T]`` -> (``y_hat: [B, T']``, target ``y: [B, T']``), T' = F * hop - delay.

        ``mel: [B, M, F]``: synthesise from this log-mel (frame-aligned with ``x``, e.g. a voice
        codec's decoded mel; used as given, no noise added) instead of the log-mel of ``x``."""
        cfg, vc = self.cfg, self.cfg.vocoder
        if mel is not None:
            if mel.shape[-1] * vc.hop_samples > x.shape[-1]:
                raise ValueError(
                    f"{mel.shape[-1]} mel frames need {mel.shape[-1] * vc.hop_samples} samples, "
                    f"x has {x.shape[-1]}"
                )
            mel = mel.to(self.device, non_blocking=True)
            noisy = False
        with torch.no_grad():
            if mel is None:
                mel = self.logmel(x)
            if noisy and cfg.mel_noise_std > 0:
                b = mel.shape[0]
                on = (torch.rand(b, 1, 1, generator=self.rng) < cfg.mel_noise_prob).float()
                std = torch.rand(b, 1, 1, generator=self.rng) * cfg.mel_noise_std * on
                noise = torch.randn(mel.shape, generator=self.rng) * std
                mel = mel + noise.to(mel.device)
        with self._autocast():
            spec, _ = self.gen(mel)
        y_syn = overlap_add(spec, self.window, vc.hop_samples)
        n_frames = mel.shape[-1]
        d = vc.delay_samples
        return y_syn[:, d : n_frames * vc.hop_samples], x[:, : n_frames * vc.hop_samples - d]

    def train_step(
        self,
        x: torch.Tensor,
        progress: float,
        update_generator: bool = True,
        mel: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """One optimisation step on ``x: [B, T]``; returns detached scalar tensors (no GPU sync).

        ``mel``: the generator's input, frame-aligned with ``x`` (see :meth:`generate`).

        ``update_generator=False``: a discriminator-only step (the generator, its EMA and the
        step counters stay as they are), used to let fresh discriminators catch up with a
        generator loaded from shipped weights before their gradients reach it.
        """
        cfg = self.cfg
        # discriminator-only steps do not move the step counter: no warm-up for them
        f = self.lr_factor(progress, warm_up=update_generator)
        for g in self.opt_g.param_groups:
            g["lr"] = cfg.lr_g * f
        for g in self.opt_d.param_groups:
            g["lr"] = cfg.lr_d * f
        x = x.to(self.device, non_blocking=True)
        with torch.set_grad_enabled(update_generator):
            y_hat, y = self.generate(x, noisy=True, mel=mel)
        out: dict[str, torch.Tensor] = {"lr": torch.tensor(cfg.lr_g * f)}
        gan = (
            self.step >= cfg.gan_start_step
            or progress >= cfg.gan_start_progress
            or not update_generator
        )
        if gan:
            with self._autocast():
                rp, _ = self.mpd(y)
                fp, _ = self.mpd(y_hat.detach())
                rr, _ = self.mrd(y)
                fr, _ = self.mrd(y_hat.detach())
                loss_d = discriminator_hinge_loss(
                    rp, fp
                ) + cfg.mrd_weight * discriminator_hinge_loss(rr, fr)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            torch.nn.utils.clip_grad_norm_(
                [*self.mpd.parameters(), *self.mrd.parameters()], cfg.grad_clip
            )
            self.opt_d.step()
            out["loss_d"] = loss_d.detach()
        if not update_generator:
            return out
        mel = self.mel_loss(y_hat, y)
        loss_g = cfg.mel_weight * mel
        if cfg.phase_weight > 0:
            phase = self.phase_loss(y_hat, y)
            loss_g = loss_g + cfg.phase_weight * phase
            out["phase"] = phase.detach()
        if gan:
            with self._autocast():
                with torch.no_grad():
                    _, rp_feat = self.mpd(y)
                    _, rr_feat = self.mrd(y)
                fp, fp_feat = self.mpd(y_hat)
                fr, fr_feat = self.mrd(y_hat)
                adv = generator_hinge_loss(fp) + cfg.mrd_weight * generator_hinge_loss(fr)
                fm = feature_matching_loss(
                    rp_feat, fp_feat
                ) + cfg.mrd_weight * feature_matching_loss(rr_feat, fr_feat)
            loss_g = loss_g + cfg.adv_weight * adv + cfg.fm_weight * fm
            out["adv"], out["fm"] = adv.detach(), fm.detach()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        out["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.gen.parameters(), cfg.grad_clip)
        self.opt_g.step()
        self._update_ema()
        self.step += 1
        self.gan_steps += int(gan)
        self.audio_s += x.shape[0] * x.shape[1] / cfg.vocoder.mel.sample_rate
        out["mel"], out["loss_g"] = mel.detach(), loss_g.detach()
        return out

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))
        ema_p = list(self.ema.parameters())
        torch._foreach_lerp_(ema_p, list(self.gen.parameters()), 1.0 - decay)

    @torch.no_grad()
    def validate(self, clips: list[torch.Tensor]) -> float:
        """Mean log-mel L1 (the shipped mel resolution) of EMA copy-synthesis on ``clips``."""
        vocoder = Vocoder(self.ema)
        errs = []
        for c in clips:
            x = c.to(self.device)[None]
            y = vocoder.synthesize(self.logmel(x))
            n = y.shape[-1]
            errs.append(float(torch.mean(torch.abs(self.logmel(y) - self.logmel(x[:, :n])))))
        self.ema.train(False)
        return float(np.mean(errs))
