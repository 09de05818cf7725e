"""Training recipe for the streaming mel vocoder (``streamcodec train vocoder ...``).

Generator: :class:`streamcodec.vocoder.model.VocoderGenerator` on log-mel of random
crops (gain / noise augmented, plus mild Gaussian noise on the log-mel so the
vocoder tolerates imperfect mels from the diffusion decoder). Losses: multi-
resolution log-mel L1 from step 0; after ``gan_start_step`` also hinge GAN losses
from a multi-period and a multi-resolution discriminator plus feature matching.

The run stops at ``--max-steps`` or when ``--budget-s`` seconds of wall time
(counted from process start, data decoding included) are used, whichever comes
first, always leaving a consistent checkpoint behind:

* ``<ckpt-dir>/last.pt``: generator, EMA generator, discriminators, optimisers,
  step counters (``--resume`` continues from it; ``auto`` does when it exists);
* ``<out>/model.safetensors`` + ``<out>/config.json``: the EMA generator in fp16,
  the shipped format (``--init DIR`` starts a new run from such a directory with
  fresh discriminators and optimisers, keeping the step count and history);
* ``<out>/losses.csv`` (and ``losses.png`` unless ``--no-plot``), ``<out>/train.log``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import platform
import queue
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from streamcodec.audio import load_audio
from streamcodec.features import LogMel
from streamcodec.manifest import read_manifest
from streamcodec.training.data import DEFAULT_CACHE, AudioCorpus, Augment, CropSampler
from streamcodec.training.losses import (
    MultiResolutionMelLoss,
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

log = logging.getLogger(__name__)

_T0 = time.monotonic()  # process start (for --budget-s)


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
    mel_weight: float = 45.0
    adv_weight: float = 1.0
    mrd_weight: float = 0.5  # relative weight of the multi-resolution discriminator terms
    fm_weight: float = 2.0
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
        gan_start_step=4000,
    ),
    # one CUDA GPU (bf16 autocast), minutes
    "gpu": TrainConfig(
        vocoder=SHIPPED_GENERATOR,
        disc=DiscriminatorConfig(period_channels=(32, 64, 128, 256), resolution_channels=32),
        batch_size=32,
        crop_s=1.0,
        lr_g=1e-3,
        lr_d=1e-3,
        warmup_steps=300,
        gan_start_step=1500,
    ),
}


# --- data ---------------------------------------------------------------------------------------
def _decode_one(args: tuple[str, int]) -> np.ndarray:
    path, sr = args
    return (np.clip(load_audio(path, sr), -1, 1) * 32767).astype(np.int16)


def load_corpus(
    manifests: list[str],
    workers: int,
    progress: bool = True,
    cache_dir: Path | None = DEFAULT_CACHE,
) -> AudioCorpus:
    """Decode ``manifests`` into an :class:`AudioCorpus`.

    ``workers`` <= 1: serially, one manifest at a time through the on-disk cache of
    :class:`AudioCorpus` (``cache_dir``; ``None`` disables it), so a set decoded once
    by any recipe is reused; ``workers`` > 1: a process pool, no cache.
    """
    if workers <= 1:
        parts = [
            AudioCorpus.from_manifests([m], cache_dir=cache_dir, progress=progress)
            for m in manifests
        ]
        return concat_corpora(parts)
    entries = [e for m in manifests for e in read_manifest(m)]
    if not entries:
        raise ValueError(f"no audio files in manifests {manifests}")
    with ProcessPoolExecutor(workers) as pool:
        chunks = list(
            tqdm(
                pool.map(_decode_one, [(str(e.path), 16000) for e in entries], chunksize=16),
                total=len(entries),
                desc="decoding corpus",
                disable=not progress,
                unit="file",
            )
        )
    offsets = np.concatenate([[0], np.cumsum([c.size for c in chunks])]).astype(np.int64)
    return AudioCorpus(np.concatenate(chunks), offsets, entries)


def concat_corpora(parts: list[AudioCorpus]) -> AudioCorpus:
    """One corpus holding the files of ``parts`` in order."""
    if len(parts) == 1:
        return parts[0]
    offsets, base = [np.zeros(1, np.int64)], 0
    for c in parts:
        offsets.append(c.offsets[1:] + base)
        base += int(c.offsets[-1])
    entries = [e for c in parts for e in c.entries]
    return AudioCorpus(np.concatenate([c.audio for c in parts]), np.concatenate(offsets), entries)


def subset_corpus(corpus: AudioCorpus, indices: list[int]) -> AudioCorpus:
    """A new corpus holding files ``indices`` of ``corpus`` (copied)."""
    if not indices:
        raise ValueError("empty subset")
    chunks = [corpus.audio[corpus.offsets[i] : corpus.offsets[i + 1]] for i in indices]
    offsets = np.concatenate([[0], np.cumsum([c.size for c in chunks])]).astype(np.int64)
    return AudioCorpus(np.concatenate(chunks), offsets, [corpus.entries[i] for i in indices])


class Prefetcher:
    """Draws batches from a :class:`CropSampler` in a background thread."""

    def __init__(self, sampler: CropSampler, batch_size: int, depth: int = 4) -> None:
        self.sampler, self.batch_size = sampler, batch_size
        self.q: queue.Queue[torch.Tensor] = queue.Queue(depth)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while not self._stop.is_set():
            batch = self.sampler.sample(self.batch_size).pin_memory()
            while not self._stop.is_set():
                try:
                    self.q.put(batch, timeout=0.5)
                    break
                except queue.Full:
                    continue

    def next(self) -> torch.Tensor:
        return self.q.get()

    def close(self) -> None:
        self._stop.set()


# --- model pieces --------------------------------------------------------------------------------
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
        self.window = torch.hann_window(cfg.vocoder.n_fft, device=device)
        self.step = 0
        self.gan_steps = 0
        self.audio_s = 0.0  # seconds of audio through the generator
        self.wall_s = 0.0  # training wall time over all sessions
        self.history: list[dict] = []  # one record per training session
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

    def init_from_shipped(self, path: Path) -> None:
        """Generator (and EMA) from a shipped weights directory; fresh D and optimisers."""
        v = Vocoder.from_pretrained(path, device=str(self.device))
        if v.cfg != self.cfg.vocoder:
            raise ValueError(f"{path}: generator config {v.cfg} differs from the run's")
        self.gen.load_state_dict(v.generator.state_dict())
        self.ema.load_state_dict(v.generator.state_dict())
        self._set_counters(v.training_info)

    def training_info(self) -> dict:
        return {
            **self._counters(),
            "audio_hours": self.audio_s / 3600,
            "wall_hours": self.wall_s / 3600,
        }

    # -- one step ------------------------------------------------------------------------------
    def lr_factor(self, progress: float) -> float:
        cfg = self.cfg
        warm = min(1.0, (self.step + 1) / max(1, cfg.warmup_steps))
        start = 1.0 - cfg.final_decay_frac
        if progress <= start or cfg.final_decay_frac <= 0:
            return warm
        t = min(1.0, (progress - start) / cfg.final_decay_frac)
        return warm * (
            cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        )

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16)

    def generate(self, x: torch.Tensor, noisy: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: [B, T]`` -> (``y_hat: [B, T']``, target ``y: [B, T']``), T' = F * hop - delay."""
        cfg, vc = self.cfg, self.cfg.vocoder
        with torch.no_grad():
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

    def train_step(self, x: torch.Tensor, progress: float) -> dict[str, torch.Tensor]:
        """One optimisation step on ``x: [B, T]``; returns detached scalar tensors (no GPU sync)."""
        cfg = self.cfg
        f = self.lr_factor(progress)
        for g in self.opt_g.param_groups:
            g["lr"] = cfg.lr_g * f
        for g in self.opt_d.param_groups:
            g["lr"] = cfg.lr_d * f
        x = x.to(self.device, non_blocking=True)
        y_hat, y = self.generate(x, noisy=True)
        out: dict[str, torch.Tensor] = {"lr": torch.tensor(cfg.lr_g * f)}
        gan = self.step >= cfg.gan_start_step
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
        mel = self.mel_loss(y_hat, y)
        loss_g = cfg.mel_weight * mel
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


# --- run ------------------------------------------------------------------------------------------
def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available")
    return torch.device(name)


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    threads = torch.get_num_threads()
    return f"{cpu} ({os.cpu_count()} cores), {threads} threads, torch {torch.__version__}"


def _save_checkpoint(tr: Trainer, ckpt_dir: Path, out: Path) -> None:
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tmp = ckpt_dir / "last.pt.tmp"
    torch.save(tr.state_dict(), tmp)
    os.replace(tmp, ckpt_dir / "last.pt")
    Vocoder(tr.ema).save(out, tr.training_info())
    tr.ema.train(False)


def _plot(csv_path: Path, png_path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib not installed: no loss plot")
        return
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    keys = [k for k in ("mel", "val_mel", "adv", "fm", "loss_d") if any(r.get(k) for r in rows)]
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.2 * len(keys)), sharex=True, squeeze=False)
    for ax, k in zip(axes[:, 0], keys, strict=True):
        pts = [(int(r["step"]), float(r[k])) for r in rows if r.get(k)]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], ".-" if k == "val_mel" else "-")
        ax.set_ylabel(k)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


CSV_FIELDS = ["step", "wall_s", "lr", "mel", "adv", "fm", "loss_d", "grad_norm", "val_mel"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``streamcodec train vocoder``."""
    p.add_argument("--out", required=True, type=Path, help="output directory (weights, CSV, log)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument(
        "--manifest",
        action="append",
        help="training manifest (repeatable); default: ../shared/data/train/{speech,music,noise}",
    )
    p.add_argument("--noise-manifest", help="manifest of noise to mix in (default: the noise one)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--budget-s", type=float, default=None, help="stop after this wall time")
    p.add_argument("--max-steps", type=int, default=None, help="stop at this global step")
    p.add_argument(
        "--resume", default="auto", help="'auto' (ckpt-dir/last.pt if present), 'no', or a .pt"
    )
    p.add_argument(
        "--init", type=Path, help="start from shipped weights (model dir or bundled name)"
    )
    p.add_argument("--ckpt-dir", type=Path, help="where last.pt goes (default: --out)")
    p.add_argument("--ckpt-every-s", type=float, default=600.0)
    p.add_argument("--log-every", type=int, default=25, help="steps per CSV row")
    p.add_argument("--val-manifest", help="copy-synthesis check on a few files of this manifest")
    p.add_argument("--val-files", type=int, default=4)
    p.add_argument("--val-every-s", type=float, default=900.0)
    p.add_argument("--workers", type=int, default=1, help="processes decoding the corpus")
    p.add_argument(
        "--cache-dir", default=str(DEFAULT_CACHE), help="decoded-corpus cache ('none': off)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--gan-start-step", type=int, help="override the preset's GAN start step")
    p.add_argument("--no-bf16", action="store_true", help="fp32 on CUDA")
    p.add_argument("--compile", action="store_true", help="torch.compile the generator (CUDA)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--no-progress", action="store_true")


def _default_manifests() -> list[str]:
    root = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "train"
    return [str(root / k / "manifest.tsv") for k in ("speech", "music", "noise")]


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir: Path = args.ckpt_dir or out
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root_log = logging.getLogger()
    root_log.addHandler(handler)
    root_log.setLevel(min(root_log.level or logging.INFO, logging.INFO))
    try:
        return _run(args, out, ckpt_dir)
    finally:
        root_log.removeHandler(handler)
        handler.close()


def _make_trainer(args: argparse.Namespace, ckpt_dir: Path) -> tuple[Trainer, bool]:
    """The run's :class:`Trainer`, resumed or initialised as asked; (trainer, resumed)."""
    device = _device(args.device)
    bf16 = device.type == "cuda" and not args.no_bf16
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    cfg = PRESETS[args.preset]
    if args.batch_size:
        cfg = replace(cfg, batch_size=args.batch_size)
    if args.gan_start_step is not None:
        cfg = replace(cfg, gan_start_step=args.gan_start_step)
    resume_path: Path | None = None
    if args.resume == "auto" and (ckpt_dir / "last.pt").exists():
        resume_path = ckpt_dir / "last.pt"
    elif args.resume not in ("auto", "no"):
        resume_path = Path(args.resume)
    if resume_path is not None:
        ckpt = torch.load(resume_path, map_location="cpu", weights_only=True)
        saved = TrainConfig.from_dict(json.loads(ckpt["config"]))
        # the checkpoint fixes the models; batch size and GAN start may change between sessions
        tr = Trainer(
            replace(saved, batch_size=cfg.batch_size, gan_start_step=cfg.gan_start_step),
            device,
            bf16,
        )
        tr.load_state_dict(ckpt)
        print(f"resumed from {resume_path} at step {tr.step}")
    elif args.init is not None:
        tr = Trainer(replace(cfg, vocoder=Vocoder.from_pretrained(args.init).cfg), device, bf16)
        tr.init_from_shipped(args.init)
        print(f"initialised generator from {args.init} (step {tr.step}); fresh discriminators")
    else:
        tr = Trainer(cfg, device, bf16)
    if args.compile:
        tr.gen.forward = torch.compile(tr.gen.forward)  # type: ignore[method-assign]
    return tr, resume_path is not None


def _make_data(
    args: argparse.Namespace, tr: Trainer
) -> tuple[CropSampler, list[torch.Tensor], dict]:
    """(crop sampler, validation clips, data description) for the run."""
    cfg = tr.cfg
    manifests = args.manifest or _default_manifests()
    cache = None if args.cache_dir in ("", "none") else Path(args.cache_dir)
    corpus = load_corpus(manifests, args.workers, not args.no_progress, cache)
    noise_manifest = args.noise_manifest or next((m for m in manifests if "noise" in m), None)
    noise = None
    if noise_manifest:
        noise_paths = {e.path for e in read_manifest(noise_manifest)}
        idx = [i for i, e in enumerate(corpus.entries) if e.path in noise_paths]
        if len(idx) == len(noise_paths):  # already decoded as part of the training corpus
            noise = subset_corpus(corpus, idx)
        else:
            noise = load_corpus([noise_manifest], args.workers, False, cache)
    crop = int(round(cfg.crop_s * cfg.vocoder.mel.sample_rate))
    sampler = CropSampler(corpus, crop, Augment(), noise=noise, seed=cfg.seed + tr.step)
    val_clips: list[torch.Tensor] = []
    if args.val_manifest:
        for e in read_manifest(args.val_manifest)[: args.val_files]:
            val_clips.append(torch.from_numpy(load_audio(e.path)[: 4 * 16000].copy()))
    data = {
        "data": [str(m) for m in manifests],
        "data_hours": round(corpus.hours, 3),
        "data_files": len(corpus),
    }
    return sampler, val_clips, data


def _run(args: argparse.Namespace, out: Path, ckpt_dir: Path) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    tr, resumed = _make_trainer(args, ckpt_dir)
    cfg, device = tr.cfg, tr.device
    sampler, val_clips, data = _make_data(args, tr)
    print(
        f"vocoder training: preset {args.preset}, {tr.gen.num_parameters() / 1e6:.2f} M generator "
        f"parameters, {data['data_hours']:.2f} h of audio in {data['data_files']} files, "
        f"device {device}{' (bf16)' if tr.bf16 else ''}, delay {cfg.vocoder.delay_samples} samples"
    )
    log.info("config %s", json.dumps(cfg.to_dict()))

    prefetch = Prefetcher(sampler, cfg.batch_size) if device.type == "cuda" else None
    csv_path = out / "losses.csv"
    new_csv = not csv_path.exists() or not resumed
    csv_fh = open(csv_path, "w" if new_csv else "a", newline="")  # noqa: SIM115
    writer = csv.DictWriter(csv_fh, CSV_FIELDS)
    if new_csv:
        writer.writeheader()
    session = {
        "start_step": tr.step,
        "device": _hardware(device),
        "preset": args.preset,
        **data,
    }
    tr.history.append(session)
    budget = args.budget_s
    reserve_s = 15.0  # time kept back for the final checkpoint and export
    t_start = time.monotonic()
    base_wall_s = tr.wall_s
    last_ckpt = last_val = t_start
    acc: dict[str, list[torch.Tensor]] = {}
    bar = tqdm(desc="vocoder", unit="step", disable=args.no_progress, mininterval=5)
    reason = "max steps"
    try:
        while args.max_steps is None or tr.step < args.max_steps:
            now = time.monotonic()
            progress = 0.0
            if budget:
                used = now - _T0
                if used >= budget - reserve_s:
                    reason = "time budget"
                    break
                progress = max(
                    progress, (now - t_start) / max(1e-6, budget - reserve_s - (t_start - _T0))
                )
            if args.max_steps:
                progress = max(progress, tr.step / args.max_steps)
            x = prefetch.next() if prefetch else sampler.sample(cfg.batch_size)
            stats = tr.train_step(x, progress)
            for k, v in stats.items():
                acc.setdefault(k, []).append(v)
            bar.update(1)
            if tr.step % args.log_every == 0:
                row = {
                    k: f"{torch.stack([t.float().cpu() for t in v]).mean().item():.5g}"
                    for k, v in acc.items()
                }
                row.update(step=tr.step, wall_s=f"{base_wall_s + time.monotonic() - t_start:.1f}")
                if val_clips and time.monotonic() - last_val >= args.val_every_s:
                    row["val_mel"] = f"{tr.validate(val_clips):.5g}"
                    last_val = time.monotonic()
                writer.writerow({k: row.get(k, "") for k in CSV_FIELDS})
                csv_fh.flush()
                bar.set_postfix(mel=row.get("mel"), adv=row.get("adv", "-"))
                log.info("step %d %s", tr.step, row)
                acc = {}
            if time.monotonic() - last_ckpt >= args.ckpt_every_s:
                tr.wall_s = base_wall_s + time.monotonic() - t_start
                session.update(end_step=tr.step, wall_s=round(time.monotonic() - t_start, 1))
                _save_checkpoint(tr, ckpt_dir, out)
                last_ckpt = time.monotonic()
    except KeyboardInterrupt:
        reason = "interrupted"
    finally:
        bar.close()
        if prefetch:
            prefetch.close()
    session_s = time.monotonic() - t_start
    tr.wall_s = base_wall_s + session_s
    session.update(end_step=tr.step, wall_s=round(session_s, 1), stop=reason)
    if val_clips:
        val = tr.validate(val_clips)
        writer.writerow({"step": tr.step, "wall_s": f"{tr.wall_s:.1f}", "val_mel": f"{val:.5g}"})
        session["val_mel"] = round(val, 5)
    csv_fh.close()
    _save_checkpoint(tr, ckpt_dir, out)
    if not args.no_plot:
        _plot(csv_path, out / "losses.png")
    print(
        f"stopped ({reason}) at step {tr.step} ({tr.gan_steps} adversarial) "
        f"after {session_s:.0f} s; "
        f"{tr.audio_s / 3600:.2f} h of audio seen in total; weights in {out}"
    )
    return 0
