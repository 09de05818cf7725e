"""Joint training of the acoustic encoder + FSQ and the flow decoder (the semantic part is frozen).

One step: the acoustic encoder codes each token frame of a crop (straight-through
FSQ); the conditioning is dropped for whole sequences (classifier-free guidance,
``p_uncond``) and for random spans of frames (concealment, ``p_frame_drop``);
every decode chunk gets its own flow time ``t ~ U(0, 1)``; the decoder sees the
clean crop (optionally slightly noised, ``ctx_noise``, against exposure bias) as
context and the noisy crop, and regresses the velocity ``x_1 - x_0`` (MSE over
valid patches). EMA weights are what gets exported.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, fields

import torch

from streamcodec.training.codec_data import CodecBatch
from streamcodec.voice.config import VoiceConfig
from streamcodec.voice.model import VoiceModel


@dataclass(frozen=True)
class TrainConfig:
    config: str = "voice-700"
    batch_size: int = 8
    crop_s: float = 3.0
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 300
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    p_uncond: float = 0.1  # whole sequence without conditioning (CFG)
    p_frame_drop: float = 0.03  # chance a frame starts a dropped span (concealment)
    drop_span_frames: float = 3.0  # mean length of a dropped span
    ctx_noise: float = 0.1  # clean context noised to t in [1 - ctx_noise, 1] ...
    p_ctx_noise: float = 0.5  # ... for this share of sequences
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


PRESETS: dict[str, TrainConfig] = {
    "tiny": TrainConfig(batch_size=2, crop_s=0.8, warmup_steps=2, ema_decay=0.9),
    "cpu": TrainConfig(batch_size=8, crop_s=2.0, lr=5e-4, warmup_steps=200, ema_decay=0.998),
    "gpu": TrainConfig(batch_size=64, crop_s=4.0, lr=5e-4, warmup_steps=500, ema_decay=0.9995),
}


def crop_frames(cfg: TrainConfig, voice: VoiceConfig) -> int:
    """Token frames per crop: ``crop_s`` rounded down to whole decode chunks (>= 2 chunks)."""
    cf = voice.decoder.chunk_token_frames
    chunks = max(2, int(cfg.crop_s * 1000 / voice.frame_ms) // cf)
    return chunks * cf


def drop_mask(
    valid: torch.Tensor, p_uncond: float, p_frame: float, span: float, gen: torch.Generator | None
) -> torch.Tensor:
    """``keep: [B, F]`` bool: False on padding, on whole sequences (``p_uncond``) and on spans
    of frames (each frame starts a span with ``p_frame``, lengths geometric with mean ``span``)."""
    b, f = valid.shape
    dev = valid.device
    keep = valid.clone()
    keep &= (torch.rand(b, 1, generator=gen) >= p_uncond).to(dev)
    if p_frame > 0 and f:
        starts = torch.rand(b, f, generator=gen) < p_frame
        lengths = torch.ceil(
            torch.log(torch.rand(b, f, generator=gen).clamp_min(1e-9)) / math.log(1 - 1 / span)
        ).clamp(1, f)
        dropped = torch.zeros(b, f, dtype=torch.bool)
        for bi, fi in starts.nonzero().tolist():
            dropped[bi, fi : fi + int(lengths[bi, fi])] = True
        keep &= ~dropped.to(dev)
    return keep


class CodecTrainer:
    """Model, EMA copy, optimiser and counters of one training run."""

    def __init__(
        self,
        cfg: TrainConfig,
        voice: VoiceConfig,
        centroids: torch.Tensor,
        device: torch.device,
        bf16: bool = False,
    ) -> None:
        self.cfg, self.voice, self.device, self.bf16 = cfg, voice, device, bf16
        torch.manual_seed(cfg.seed)
        self.model = VoiceModel(voice).to(device)
        self.ema = copy.deepcopy(self.model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.centroids = centroids.float().to(device)
        decay, no_decay = [], []
        for n, p in self.model.named_parameters():
            no_wd = p.dim() < 2 or any(k in n for k in ("null", "sub_embed", "block_mod"))
            (no_decay if no_wd else decay).append(p)
        self.opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=cfg.lr,
            betas=(0.9, 0.99),
        )
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.warmup_from = 0  # step the LR warm-up starts at (a fresh optimiser's first step)
        self.audio_s = 0.0
        self.wall_s = 0.0
        self.history: list[dict] = []

    # ---- set-up from data ---------------------------------------------------------------------
    @torch.no_grad()
    def init_from_data(self, batches: list[CodecBatch]) -> dict:
        """Per-bin log-mel statistics from the first batches, and the decoder's copy of the
        semantic centroids; returns the statistics."""
        mels = torch.cat([_valid_mel(b) for b in batches], 1)
        mean, std = mels.mean(1), mels.std(1).clamp_min(0.5)
        for m in (self.model, self.ema):
            m.decoder.mel_mean.copy_(mean)
            m.decoder.mel_std.copy_(std)
            m.decoder.cond.sem_table.copy_(self.centroids[: m.decoder.cfg.sem_vocab])
        return {"mel_mean": mean.mean().item(), "mel_std": std.mean().item()}

    # ---- loss ---------------------------------------------------------------------------------
    def loss(
        self,
        model: VoiceModel,
        batch: CodecBatch,
        gen: torch.Generator,
        t_fixed: float | None = None,
        drop: bool = True,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg, dev = self.cfg, self.device
        dec = model.decoder
        b = batch.to(dev)
        mel_n = dec.normalise(b.mel)
        centroid = self.centroids[b.ids]
        q, codes, _ = model.acoustic(b.feat, centroid, mel_n)
        if drop:
            keep = drop_mask(
                b.valid.cpu(), cfg.p_uncond, cfg.p_frame_drop, cfg.drop_span_frames, gen
            )
        else:
            keep = b.valid.cpu()
        cond, _ = dec.cond(b.ids, q, keep.to(dev))
        x1 = dec.to_patches(mel_n)
        bsz, n, _ = x1.shape
        c = dec.cfg.chunk_tokens
        if n % c:
            raise ValueError(f"crop of {n} patches is not a whole number of {c}-patch chunks")
        if t_fixed is None:
            t = torch.rand(bsz, n // c, generator=gen)
        else:
            t = torch.full((bsz, n // c), t_fixed)
        t = t.repeat_interleave(c, 1).to(dev)
        x0 = torch.randn(x1.shape, generator=gen).to(dev)
        xt = t[..., None] * x1 + (1 - t[..., None]) * x0
        t_ctx = torch.ones(bsz)
        if drop and cfg.ctx_noise > 0:
            noisy = torch.rand(bsz, generator=gen) < cfg.p_ctx_noise
            t_ctx = torch.where(noisy, 1 - cfg.ctx_noise * torch.rand(bsz, generator=gen), t_ctx)
        t_ctx = t_ctx.to(dev)[:, None, None]
        ctx = t_ctx * x1 + (1 - t_ctx) * torch.randn(x1.shape, generator=gen).to(dev)
        v = dec.forward_two_stream(ctx, xt, t, cond, t_ctx[..., 0].expand(bsz, n))
        w = b.valid.repeat_interleave(dec.cfg.patches_per_token, 1).float()
        err = ((v.float() - (x1 - x0)) ** 2).mean(-1)
        loss = (err * w).sum() / w.sum().clamp_min(1)
        used = codes[b.valid]
        stats = {
            "loss": loss.detach(),
            "codes_used": torch.tensor(float(used.unique().numel()) / max(1, used.numel())),
        }
        return loss, stats

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def lr_at(self, step: int) -> float:
        """Linear warm-up over ``warmup_steps`` from :attr:`warmup_from` (0, or the step a run
        started from exported weights with a fresh optimiser), then constant."""
        return self.cfg.lr * min(1.0, (step - self.warmup_from + 1) / max(1, self.cfg.warmup_steps))

    def train_step(self, batch: CodecBatch) -> dict[str, torch.Tensor]:
        self.model.train()
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step)
        with self._autocast():
            loss, stats = self.loss(self.model, batch, self.gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self._update_ema()
        self.step += 1
        self.audio_s += batch.valid.sum().item() * self.voice.frame_ms / 1000
        stats["grad_norm"] = gn.detach()
        stats["lr"] = torch.tensor(self.lr_at(self.step - 1))
        return stats

    @torch.no_grad()
    def _update_ema(self) -> None:
        d = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))
        for pe, pm in zip(self.ema.parameters(), self.model.parameters(), strict=True):
            pe.lerp_(pm.detach(), 1 - d)

    @torch.no_grad()
    def validate(self, batches: list[CodecBatch], ema: bool = True) -> float:
        """Flow loss of the EMA (or the raw) model on fixed batches at t = 0.05, 0.35, 0.65,
        0.95 with fixed noise, conditioning kept."""
        gen = torch.Generator().manual_seed(1234)
        model = self.ema if ema else self.model
        was_training = model.training
        model.eval()
        losses = []
        with self._autocast():
            for b in batches:
                for t in (0.05, 0.35, 0.65, 0.95):
                    losses.append(self.loss(model, b, gen, t_fixed=t, drop=False)[0].float())
        model.train(was_training)
        return float(torch.stack(losses).mean())

    # ---- checkpoints --------------------------------------------------------------------------
    def training_info(self) -> dict:
        return {
            "step": self.step,
            "audio_hours": round(self.audio_s / 3600, 3),
            "wall_hours": round(self.wall_s / 3600, 3),
            "train_config": self.cfg.to_dict(),
            "history": self.history,
        }

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "gen": self.gen.get_state(),
            "config": json.dumps(self.cfg.to_dict()),
            "voice": json.dumps(self.voice.to_dict()),
            "counters": json.dumps(
                {
                    "step": self.step,
                    "warmup_from": self.warmup_from,
                    "audio_s": self.audio_s,
                    "wall_s": self.wall_s,
                    "history": self.history,
                }
            ),
        }

    def load_state_dict(self, sd: dict) -> None:
        self.model.load_state_dict(sd["model"])
        self.ema.load_state_dict(sd["ema"])
        self.opt.load_state_dict(sd["opt"])
        self.gen.set_state(sd["gen"])
        c = json.loads(sd["counters"])
        self.warmup_from = c.get("warmup_from", 0)
        self.step, self.audio_s, self.wall_s, self.history = (
            c["step"], c["audio_s"], c["wall_s"], c["history"]
        )  # fmt: skip


def _valid_mel(b: CodecBatch) -> torch.Tensor:
    """The log-mel frames of valid token frames: ``[M, n]``."""
    k = b.mel.shape[2] // b.valid.shape[1]
    mask = b.valid.to(b.mel.device).repeat_interleave(k, 1)  # [B, F * k]
    return b.mel.permute(1, 0, 2)[:, mask]
