"""Masked-autoencoder pretraining of the semantic encoder (AudioMAE-style, made block-causal).

Recipe (``streamcodec train mae``): random 4 s crops of ``train/`` speech, music and
noise (gain and noise augmentation); 75 % of the 40 ms chunks of each crop are
masked; the encoder runs on the visible chunks only, with their original token
positions (rotary) and its block-causal mask applied in visible order; a small
bidirectional decoder sees the encoded visible tokens plus a learned mask token
at every masked position and predicts the masked patches. Loss: mean squared
error on per-patch normalised log-mel patches of the masked tokens (He et al.,
2022; Huang et al., 2022).

Training is resumable (``ckpt.pt`` in the output folder, written every few
minutes and at the end), logs ``loss.csv``, stops cleanly at a step or
wall-time budget and exports ``encoder.safetensors`` (fp16) + ``config.json``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import math
import os
import platform
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from streamcodec.audio import load_audio
from streamcodec.manifest import read_manifest
from streamcodec.semantic.config import SemanticEncoderConfig
from streamcodec.semantic.encoder import Block, SemanticEncoder, count_parameters, rope_tables
from streamcodec.semantic.tokenizer import save_encoder
from streamcodec.training import recipe_main
from streamcodec.training.data import DEFAULT_CACHE, AudioCorpus, Augment, CropSampler

log = logging.getLogger(__name__)

_T_START = time.time()  # process start (module import), for --stop-after-s
DATA_ROOT = Path(os.environ.get("STREAMCODEC_DATA", "/work/shared/data"))


@dataclass(frozen=True)
class MAEConfig:
    encoder: SemanticEncoderConfig = field(default_factory=SemanticEncoderConfig)
    decoder_dim: int = 192
    decoder_heads: int = 3
    decoder_layers: int = 2
    mask_ratio: float = 0.75
    crop_s: float = 4.0
    batch_size: int = 16
    lr: float = 1e-3
    min_lr_frac: float = 0.05
    warmup_steps: int = 300
    weight_decay: float = 0.05
    max_steps: int = 100_000
    time_budget_s: float = 3600.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        chunk_s = self.encoder.chunk_samples / self.encoder.mel.sample_rate
        if abs(self.crop_s / chunk_s - round(self.crop_s / chunk_s)) > 1e-6:
            raise ValueError(f"crop_s {self.crop_s} is not a whole number of {chunk_s} s chunks")
        if self.crop_chunks > 2 * self.encoder.segment_chunks:
            raise ValueError(
                f"crop_s {self.crop_s} exceeds the inference context of 2 segments "
                f"({2 * self.encoder.segment_chunks} chunks)"
            )
        if self.visible_chunks < 1:
            raise ValueError(f"mask_ratio {self.mask_ratio} leaves no visible chunk")

    @property
    def crop_samples(self) -> int:
        return round(self.crop_s * self.encoder.mel.sample_rate)

    @property
    def crop_chunks(self) -> int:
        return self.crop_samples // self.encoder.chunk_samples

    @property
    def visible_chunks(self) -> int:
        return max(1, round(self.crop_chunks * (1.0 - self.mask_ratio)))


PRESETS: dict[str, dict] = {
    # ~60-90 min on 2 shared CPU cores
    "cpu": {"batch_size": 16, "lr": 5e-4, "warmup_steps": 300, "time_budget_s": 4500.0},
    # a short run on one large CUDA GPU (bf16 autocast)
    "gpu": {"batch_size": 256, "lr": 1.5e-3, "warmup_steps": 200, "time_budget_s": 120.0},
    # plumbing checks only
    "tiny": {
        "batch_size": 2,
        "lr": 1e-3,
        "warmup_steps": 2,
        "time_budget_s": 20.0,
        "encoder": SemanticEncoderConfig(
            d_model=64, n_heads=1, n_layers=2, lookahead_chunks=(1, 0), feature_layers=(0, 1)
        ),
        "decoder_dim": 64,
        "decoder_heads": 1,
        "decoder_layers": 1,
    },
}


class MAE(nn.Module):
    """Encoder + MAE decoder. ``forward(patches [B, N, P]) -> loss`` (scalar)."""

    def __init__(self, cfg: MAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        e = cfg.encoder
        self.encoder = SemanticEncoder(e)
        self.enc_norm = nn.LayerNorm(e.d_model)
        self.dec_embed = nn.Linear(e.d_model, cfg.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(cfg.decoder_dim))
        self.dec_blocks = nn.ModuleList(
            Block(cfg.decoder_dim, cfg.decoder_heads) for _ in range(cfg.decoder_layers)
        )
        self.dec_norm = nn.LayerNorm(cfg.decoder_dim)
        self.dec_pred = nn.Linear(cfg.decoder_dim, e.patch_dim)
        nn.init.normal_(self.mask_token, std=0.02)

    def sample_visible(
        self, batch: int, device: torch.device, gen: torch.Generator | None
    ) -> torch.Tensor:
        """Sorted visible chunk indices ``[B, visible_chunks]`` (random per crop)."""
        n = self.cfg.crop_chunks
        noise = torch.rand(batch, n, generator=gen, device="cpu").to(device)
        return noise.argsort(-1)[:, : self.cfg.visible_chunks].sort(-1).values

    def predict(
        self, patches: torch.Tensor, visible: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """patches: [B, N, P]; visible: [B, V] chunk indices -> (prediction [B, N, P] float32,
        masked [B, N] bool). Masked patches never reach the encoder."""
        e = self.cfg.encoder
        b, n, p = patches.shape
        c = e.chunk_tokens
        tok = (visible[:, :, None] * c + torch.arange(c, device=patches.device)).reshape(b, -1)
        vis_patches = patches.gather(1, tok[:, :, None].expand(-1, -1, p))
        hidden = self.encoder.forward_dense(vis_patches, tok)[-1]
        z = self.dec_embed(self.enc_norm(hidden))
        full = self.mask_token.to(z.dtype).expand(b, n, -1).clone()
        full.scatter_(1, tok[:, :, None].expand(-1, -1, z.shape[-1]), z)
        cos, sin = rope_tables(
            torch.arange(n, device=patches.device)[None],
            self.cfg.decoder_dim // self.cfg.decoder_heads,
            e.rope_base,
        )
        for blk in self.dec_blocks:
            full = blk(full, cos, sin)
        pred = self.dec_pred(self.dec_norm(full)).float()
        masked = torch.ones(b, n, dtype=torch.bool, device=patches.device)
        masked.scatter_(1, tok, False)
        return pred, masked

    def forward(self, patches: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Mean squared error on per-patch normalised masked patches (scalar)."""
        pred, masked = self.predict(patches, visible)
        target = patches.float()
        mu, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mu) / (var + 1e-6).sqrt()
        err = ((pred - target) ** 2).mean(-1)
        return (err * masked).sum() / masked.sum()


# ---- data -----------------------------------------------------------------------------
def _decode(path: str) -> np.ndarray:
    return (np.clip(load_audio(path, 16000), -1, 1) * 32767).astype(np.int16)


def load_corpus(
    manifests: Sequence[str | Path], workers: int = 0, cache_dir: Path | None = DEFAULT_CACHE
) -> AudioCorpus:
    """All files of ``manifests`` in one corpus: cached per manifest (``workers=0``), or
    decoded by a process pool without a cache (``workers>0``, e.g. on a GPU machine)."""
    if workers <= 0:
        parts = [
            AudioCorpus.from_manifests([m], cache_dir=cache_dir, progress=False) for m in manifests
        ]
    else:
        parts = []
        for m in manifests:
            entries = read_manifest(m)
            with ProcessPoolExecutor(workers) as pool:
                pcm = list(pool.map(_decode, [str(e.path) for e in entries], chunksize=16))
            offsets = np.cumsum([0] + [x.size for x in pcm]).astype(np.int64)
            parts.append(AudioCorpus(np.concatenate(pcm), offsets, entries))
    if len(parts) == 1:
        return parts[0]
    audio = np.concatenate([p.audio for p in parts])
    offsets, entries, base = [np.zeros(1, np.int64)], [], 0
    for p in parts:
        offsets.append(p.offsets[1:] + base)
        base += int(p.offsets[-1])
        entries += p.entries
    return AudioCorpus(audio, np.concatenate(offsets), entries)


class Prefetcher:
    """Draws batches ``[B, T]`` from a :class:`CropSampler` in a background thread."""

    def __init__(self, sampler: CropSampler, batch_size: int, depth: int = 4) -> None:
        self._q: queue.Queue[torch.Tensor] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(sampler, batch_size), daemon=True)
        self._thread.start()

    def _run(self, sampler: CropSampler, batch_size: int) -> None:
        while not self._stop.is_set():
            batch = sampler.sample(batch_size)
            while not self._stop.is_set():
                try:
                    self._q.put(batch, timeout=0.5)
                    break
                except queue.Full:
                    continue

    def next(self) -> torch.Tensor:
        return self._q.get()

    def close(self) -> None:
        self._stop.set()


class _CropBatches(torch.utils.data.IterableDataset):
    """Endless augmented batches; each loader worker samples with its own seed."""

    def __init__(self, sampler: CropSampler, batch_size: int, seed: int) -> None:
        self.sampler, self.batch_size, self.seed = sampler, batch_size, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = info.id if info is not None else 0
        s = self.sampler
        own = CropSampler(s.corpus, s.crop_samples, s.augment, s.noise, self.seed + 7919 * wid)
        while True:
            yield own.sample(self.batch_size)


class LoaderPrefetcher:
    """Batches from ``workers`` forked processes (for a GPU that outruns one sampler)."""

    def __init__(self, sampler: CropSampler, batch_size: int, workers: int, seed: int) -> None:
        loader = torch.utils.data.DataLoader(
            _CropBatches(sampler, batch_size, seed),
            batch_size=None,
            num_workers=workers,
            pin_memory=torch.cuda.is_available(),
            prefetch_factor=4,
        )
        self._it = iter(loader)

    def next(self) -> torch.Tensor:
        return next(self._it)

    def close(self) -> None:
        del self._it


# ---- training loop --------------------------------------------------------------------
def lr_at(cfg: MAEConfig, step: int, elapsed_s: float) -> float:
    """Linear warm-up, then cosine decay over the larger of step and time progress."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, max(step / cfg.max_steps, elapsed_s / cfg.time_budget_s))
    floor = cfg.lr * cfg.min_lr_frac
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def mel_stats(
    encoder: SemanticEncoder, sampler: CropSampler, n_crops: int = 64
) -> tuple[float, float]:
    """Mean and std of the natural-log mel over ``n_crops`` training crops."""
    mel = encoder.logmel(sampler.sample(n_crops))
    return float(mel.mean()), float(mel.std())


def train_mae(
    cfg: MAEConfig,
    out_dir: str | Path,
    manifests: Sequence[str | Path],
    noise_manifests: Sequence[str | Path] = (),
    device: str | None = None,
    workers: int = 0,
    ckpt_every_s: float = 300.0,
    progress: bool = True,
    cache_dir: Path | None = DEFAULT_CACHE,
    deadline: float | None = None,
) -> Path:
    """Train (or resume) an MAE in ``out_dir``; returns the exported weights folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ckpt_path = out / "ckpt.pt"
    state = (
        torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ckpt_path.exists()
        else None
    )
    if state is not None:
        saved = state["cfg"]
        enc_cfg = SemanticEncoderConfig.from_dict(saved.pop("encoder"))
        # a resumed run keeps its model and normalisation but takes the new budget
        keep = {
            k: saved[k]
            for k in (
                "decoder_dim",
                "decoder_heads",
                "decoder_layers",
                "mask_ratio",
                "crop_s",
                "seed",
            )
        }
        cfg = dataclasses.replace(cfg, encoder=enc_cfg, **keep)
        log.info("resuming from %s at step %d", ckpt_path, state["step"])

    t_load = time.time()
    corpus = load_corpus(manifests, workers, cache_dir)
    noise = load_corpus(noise_manifests, workers, cache_dir) if noise_manifests else None
    sampler = CropSampler(
        corpus,
        cfg.crop_samples,
        Augment(),
        noise=noise,
        seed=cfg.seed + (state["step"] if state else 0),
    )
    log.info(
        "corpus: %d files, %.2f h (loaded in %.0f s)",
        len(corpus),
        corpus.hours,
        time.time() - t_load,
    )

    if state is None:
        probe = SemanticEncoder(cfg.encoder)
        mean, std = mel_stats(probe, sampler)
        cfg = dataclasses.replace(
            cfg,
            encoder=dataclasses.replace(
                cfg.encoder, mel_mean=round(mean, 4), mel_std=round(std, 4)
            ),
        )
        log.info("log-mel normalisation: mean %.3f std %.3f", mean, std)
    torch.manual_seed(cfg.seed)
    model = MAE(cfg).to(dev)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.95),
        **({"fused": True} if dev.type == "cuda" else {}),
    )
    step, elapsed, audio_s = 0, 0.0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, elapsed, audio_s = state["step"], state["elapsed_s"], state["audio_s"]
    if deadline is not None:
        # a hard wall-clock stop (set-up included): the lr schedule ends with it
        remaining = deadline - time.time()
        if remaining <= 0:
            raise ValueError("the deadline passed before training could start")
        cfg = dataclasses.replace(cfg, time_budget_s=min(cfg.time_budget_s, elapsed + remaining))
        log.info("deadline: %.0f s of training left", remaining)
    log.info(
        "MAE: encoder %.2f M, total %.2f M parameters, device %s",
        count_parameters(model.encoder) / 1e6,
        count_parameters(model) / 1e6,
        dev,
    )

    csv_path = out / "loss.csv"
    new_csv = not csv_path.exists()
    csv_file = csv_path.open("a", newline="")
    writer = csv.writer(csv_file)
    if new_csv:
        writer.writerow(["step", "elapsed_s", "loss", "lr", "audio_h"])
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + step)
    prefetch: Prefetcher | LoaderPrefetcher
    if workers > 0:
        prefetch = LoaderPrefetcher(sampler, cfg.batch_size, min(workers, 8), cfg.seed + step)
    else:
        prefetch = Prefetcher(sampler, cfg.batch_size)
    amp = dev.type == "cuda"
    bar = tqdm(
        total=cfg.max_steps,
        initial=step,
        disable=not progress,
        desc="mae",
        unit="step",
        mininterval=5.0,
    )
    t0, last_ckpt, running = time.time() - elapsed, time.time(), None
    hardware = (
        torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else f"CPU ({platform.machine()}, {os.cpu_count()} cores shared, "
        f"{torch.get_num_threads()} torch threads)"
    )
    record = {
        "hardware": hardware,
        "corpus_hours": round(corpus.hours, 3),
        "corpus_files": len(corpus),
        "manifests": [str(m) for m in manifests],
        "noise_manifests": [str(m) for m in noise_manifests],
        "torch": torch.__version__,
    }
    if state is not None and state.get("record", {}).get("hardware", hardware) != hardware:
        record["hardware"] = f"{state['record']['hardware']}, then {hardware}"

    def save_ckpt() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(
            {
                "cfg": _cfg_dict(cfg),
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "step": step,
                "elapsed_s": time.time() - t0,
                "audio_s": audio_s,
                "loss_ema": running,
                "record": record,
            },
            tmp,
        )
        tmp.replace(ckpt_path)
        csv_file.flush()

    try:
        model.train()
        while step < cfg.max_steps and time.time() - t0 < cfg.time_budget_s:
            lr = lr_at(cfg, step, time.time() - t0)
            for g in opt.param_groups:
                g["lr"] = lr
            wav = prefetch.next().to(dev, non_blocking=True)
            with torch.no_grad():
                patches = model.encoder.wave_to_patches(wav)
            visible = model.sample_visible(wav.shape[0], dev, gen)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                loss = model(patches, visible)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            audio_s += wav.shape[0] * cfg.crop_s
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"MAE loss became {value} at step {step}")
            running = value if running is None else 0.98 * running + 0.02 * value
            if step % 10 == 0 or step == 1:
                writer.writerow(
                    [
                        step,
                        f"{time.time() - t0:.1f}",
                        f"{value:.5f}",
                        f"{lr:.3e}",
                        f"{audio_s / 3600:.3f}",
                    ]
                )
                bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr:.1e}")
            bar.update(1)
            if time.time() - last_ckpt > ckpt_every_s:
                save_ckpt()
                last_ckpt = time.time()
    finally:
        prefetch.close()
        bar.close()
        save_ckpt()
        csv_file.close()

    export = export_checkpoint(ckpt_path, out / "export")
    log.info(
        "exported encoder to %s after %d steps (%.1f h of audio)", export, step, audio_s / 3600
    )
    return export


def export_checkpoint(ckpt_path: str | Path, out_dir: str | Path) -> Path:
    """Write a checkpoint's encoder (fp16 safetensors + config.json with its training record)."""
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    saved = dict(state["cfg"])
    enc_cfg = SemanticEncoderConfig.from_dict(saved.pop("encoder"))
    encoder = SemanticEncoder(enc_cfg)
    prefix = "encoder."
    encoder.load_state_dict(
        {k[len(prefix) :]: v for k, v in state["model"].items() if k.startswith(prefix)}
    )
    info = {
        "training": {
            "recipe": "mae",
            "steps": state["step"],
            "wall_s": round(state["elapsed_s"], 1),
            "audio_hours_seen": round(state["audio_s"] / 3600, 2),
            "final_loss_ema": state.get("loss_ema"),
            **state.get("record", {}),
            "mae": saved,
        }
    }
    save_encoder(encoder.float(), out_dir, info)
    return Path(out_dir)


def _cfg_dict(cfg: MAEConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["encoder"] = cfg.encoder.to_dict()
    return d


# ---- CLI recipe (``streamcodec train mae``) -------------------------------------------
def default_manifests(root: Path = DATA_ROOT) -> tuple[list[Path], list[Path]]:
    """(content, noise-for-augmentation) manifests of ``root/train/`` (or of ``root`` itself
    when it holds ``speech/``, ``music/``, ``noise/``, as a training subset does)."""
    train = root / "train" if (root / "train").is_dir() else root
    return [train / "speech", train / "music", train / "noise"], [train / "noise"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (checkpoint, loss.csv, export/)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument(
        "--data",
        default=str(DATA_ROOT),
        help="corpus root holding train/{speech,music,noise}/manifest.tsv",
    )
    p.add_argument(
        "--time-budget-s", type=float, default=None, help="training-loop wall-time budget"
    )
    p.add_argument(
        "--stop-after-s",
        type=float,
        default=None,
        help="hard stop this many seconds after the process started (data decoding included)",
    )
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="decode with a process pool of this size instead of the cache, and draw "
        "batches in up to 8 loader processes",
    )
    p.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    p.add_argument("--ckpt-every-s", type=float, default=300.0)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (1 is fastest on a shared, oversubscribed machine)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--export-only",
        action="store_true",
        help="only export OUT/ckpt.pt's encoder to OUT/export (e.g. while a run goes on)",
    )


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.export_only:
        export = export_checkpoint(Path(args.out) / "ckpt.pt", Path(args.out) / "export")
        print(f"encoder weights: {export}")
        return 0
    overrides = dict(PRESETS[args.preset])
    for key in ("time_budget_s", "max_steps", "batch_size"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    cfg = MAEConfig(**overrides)
    manifests, noise = default_manifests(Path(args.data))
    for m in manifests:
        if "dev" in m.parts or "probe" in m.parts:
            raise ValueError(f"refusing to train on held-out data {m}")
    export = train_mae(
        cfg,
        args.out,
        manifests,
        noise,
        args.device,
        args.workers,
        args.ckpt_every_s,
        not args.no_progress,
        deadline=None if args.stop_after_s is None else _T_START + args.stop_after_s,
    )
    print(f"encoder weights: {export}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return recipe_main("streamcodec.training.mae", add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
