"""Training recipe for the streaming mel vocoder (``streamcodec train vocoder ...``).

Data: random crops of the manifests' audio (gain / noise augmented). Model, losses
and presets: :mod:`streamcodec.training.vocoder_gan`.

The run stops at ``--max-steps`` or when ``--budget-s`` seconds of wall time
(counted from process start, data decoding included) are used, whichever comes
first, always leaving a consistent checkpoint behind:

* ``<ckpt-dir>/last.pt``: generator, EMA generator, discriminators, optimisers,
  step counters (``--resume`` continues from it; ``auto`` does when it exists);
* ``<out>/model.safetensors`` + ``<out>/config.json``: the EMA generator in fp16,
  the shipped format (``--init DIR`` starts a new run from such a directory with
  fresh optimisers, keeping the step count and history);
* ``<out>/discriminators.safetensors``: the discriminators in fp16 (not shipped in the
  package); ``--init`` loads them when present and of the run's preset, else the
  discriminators start fresh (then ``--disc-warmup-steps`` lets them catch up first);
* ``<out>/losses.csv`` (and ``losses.png`` unless ``--no-plot``), ``<out>/train.log``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import queue
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from streamcodec.audio import load_audio
from streamcodec.manifest import read_manifest
from streamcodec.training import recipe_main
from streamcodec.training.data import DEFAULT_CACHE, AudioCorpus, Augment, CropSampler
from streamcodec.training.vocoder_gan import PRESETS, TrainConfig, Trainer
from streamcodec.training.vocoder_pairs import PairCorpus, PairSampler
from streamcodec.vocoder.inference import Vocoder, bundled_weights_dir

log = logging.getLogger(__name__)

_T0 = time.monotonic()  # process start (for --budget-s)
#: discriminators beside the exported generator, so ``--init`` can continue training them
DISC_FILE = "discriminators.safetensors"


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
    tr.save_discriminators(out / DISC_FILE)
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
    keys = [
        k for k in ("mel", "val_mel", "phase", "adv", "fm", "loss_d") if any(r.get(k) for r in rows)
    ]
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


CSV_FIELDS = ["step", "wall_s", "lr", "mel", "phase", "adv", "fm", "loss_d", "grad_norm", "val_mel"]


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
    p.add_argument(
        "--lr", type=float, help="override the preset's peak learning rate (generator and D)"
    )
    p.add_argument(
        "--disc-warmup-steps",
        type=int,
        default=0,
        help="first train only the discriminators for this many steps of the session "
        "(generator frozen): for fresh discriminators beside a generator from --init",
    )
    p.add_argument(
        "--pairs",
        type=Path,
        help="decoded-mel pairs (.npz of `streamcodec train vocoder-pairs`): fine-tune on a "
        "voice codec's generated log-mel, target the original audio",
    )
    p.add_argument(
        "--pairs-ratio",
        type=float,
        default=0.75,
        help="with --pairs: share of batches drawn from the pairs (the rest: real log-mel)",
    )
    p.add_argument(
        "--phase-weight",
        type=float,
        help="override the preset's weight of the phase-step loss (PhaseDerivativeLoss; 0: off)",
    )
    p.add_argument(
        "--integrate-phase",
        action="store_true",
        help="a generator with integrated phase (VocoderConfig.integrate_phase); with --init "
        "from a frame-phase vocoder, converted so that it starts from the same output",
    )
    p.add_argument(
        "--fresh-phase",
        action="store_true",
        help="with --integrate-phase and --init from a frame-phase vocoder: keep its backbone "
        "and magnitude, learn the phase afresh (see integrated_phase_state)",
    )
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
    if args.lr is not None:
        cfg = replace(cfg, lr_g=args.lr, lr_d=args.lr)
    if args.phase_weight is not None:
        cfg = replace(cfg, phase_weight=args.phase_weight)
    if args.integrate_phase:
        cfg = replace(cfg, vocoder=replace(cfg.vocoder, integrate_phase=True))
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
            replace(
                saved,
                batch_size=cfg.batch_size,
                gan_start_step=cfg.gan_start_step,
                **({"phase_weight": cfg.phase_weight} if args.phase_weight is not None else {}),
                **({"lr_g": cfg.lr_g, "lr_d": cfg.lr_d} if args.lr is not None else {}),
            ),
            device,
            bf16,
        )
        tr.load_state_dict(ckpt)
        print(f"resumed from {resume_path} at step {tr.step}")
    elif args.init is not None:
        vcfg = Vocoder.from_pretrained(args.init).cfg
        if args.integrate_phase:
            vcfg = replace(vcfg, integrate_phase=True)
        tr = Trainer(replace(cfg, vocoder=vcfg), device, bf16)
        tr.init_from_shipped(args.init, fresh_phase=args.fresh_phase)
        init_dir = Path(args.init)
        if not init_dir.exists() and len(init_dir.parts) == 1:
            init_dir = bundled_weights_dir(args.init)
        disc = init_dir / DISC_FILE
        if disc.exists() and tr.load_discriminators(disc):
            print(f"initialised generator and discriminators from {args.init} (step {tr.step})")
        else:
            print(f"initialised generator from {args.init} (step {tr.step}); fresh discriminators")
    else:
        tr = Trainer(cfg, device, bf16)
    if args.compile:
        tr.gen.forward = torch.compile(tr.gen.forward)  # type: ignore[method-assign]
    return tr, resume_path is not None


@dataclass
class _Data:
    corpus: AudioCorpus
    noise: AudioCorpus | None
    val_clips: list[torch.Tensor]
    info: dict


def _load_data(args: argparse.Namespace) -> _Data:
    """Decode the training (and noise, validation) audio. Runs before CUDA is initialised,
    so the decoding process pool may fork safely."""
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
    val_clips: list[torch.Tensor] = []
    if args.val_manifest:
        for e in read_manifest(args.val_manifest)[: args.val_files]:
            val_clips.append(torch.from_numpy(load_audio(e.path)[: 4 * 16000].copy()))
    info = {
        "data": [str(m) for m in manifests],
        "data_hours": round(corpus.hours, 3),
        "data_files": len(corpus),
    }
    return _Data(corpus, noise, val_clips, info)


def _run(args: argparse.Namespace, out: Path, ckpt_dir: Path) -> int:
    # bad options fail before the corpus is decoded (minutes on a large manifest)
    if args.disc_warmup_steps < 0:
        raise SystemExit(f"--disc-warmup-steps must be >= 0, got {args.disc_warmup_steps}")
    if args.lr is not None and not args.lr > 0:
        raise SystemExit(f"--lr must be > 0, got {args.lr}")
    if args.phase_weight is not None and not args.phase_weight >= 0:
        raise SystemExit(f"--phase-weight must be >= 0, got {args.phase_weight}")
    if not 0.0 <= args.pairs_ratio <= 1.0:
        raise SystemExit(f"--pairs-ratio must be in [0, 1], got {args.pairs_ratio}")
    if args.fresh_phase and not (args.integrate_phase and args.init is not None):
        raise SystemExit("--fresh-phase needs --integrate-phase and --init")
    if args.pairs is not None and not args.pairs.is_file():
        raise SystemExit(f"--pairs: no such file {args.pairs}")
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = _load_data(args)
    tr, resumed = _make_trainer(args, ckpt_dir)
    cfg, device = tr.cfg, tr.device
    crop = int(round(cfg.crop_s * cfg.vocoder.mel.sample_rate))
    sampler = CropSampler(
        loaded.corpus, crop, Augment(), noise=loaded.noise, seed=cfg.seed + tr.step
    )
    val_clips, data = loaded.val_clips, loaded.info
    pair_sampler, mix_rng = None, np.random.default_rng(cfg.seed + tr.step + 1)
    if args.pairs is not None:
        pairs = PairCorpus.load(args.pairs)
        pair_sampler = PairSampler(
            pairs,
            crop // cfg.vocoder.hop_samples,
            cfg.vocoder.mel.log_floor,
            seed=cfg.seed + tr.step + 2,
        )
        data = {
            **data,
            "pairs": str(args.pairs),
            "pairs_codec": pairs.meta.get("codec"),
            "pairs_hours": round(pairs.hours, 3),
            "pairs_ratio": args.pairs_ratio,
        }
        print(
            f"pairs: {pairs.hours:.2f} h decoded by {pairs.meta.get('codec')}, "
            f"{args.pairs_ratio:.0%} of batches"
        )
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
        "lr": cfg.lr_g,
        "phase_weight": cfg.phase_weight,
        "disc_warmup_steps": args.disc_warmup_steps,
        **({"phase_conversion": tr.phase_conversion} if tr.phase_conversion else {}),
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
    d_warm_done, d_acc = 0, []  # discriminator-only steps of this session (--disc-warmup-steps)
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
            mel = None
            if pair_sampler is not None and mix_rng.random() < args.pairs_ratio:
                x, mel = pair_sampler.sample(cfg.batch_size)
            else:
                x = prefetch.next() if prefetch else sampler.sample(cfg.batch_size)
            if d_warm_done < args.disc_warmup_steps:
                d_loss = tr.train_step(x, progress, update_generator=False, mel=mel)["loss_d"]
                d_warm_done += 1
                d_acc.append(d_loss)
                bar.update(1)
                if d_warm_done % args.log_every == 0 or d_warm_done == args.disc_warmup_steps:
                    mean_d = torch.stack(d_acc).float().mean().item()
                    log.info(
                        "discriminator warm-up %d/%d: loss_d %.4g",
                        d_warm_done,
                        args.disc_warmup_steps,
                        mean_d,
                    )
                    bar.set_postfix(d_warmup=d_warm_done, loss_d=f"{mean_d:.4g}")
                    d_acc = []
                continue
            stats = tr.train_step(x, progress, mel=mel)
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


def main(argv: list[str] | None = None) -> int:
    return recipe_main("streamcodec.training.vocoder", add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
