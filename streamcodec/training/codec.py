"""Training recipe of the voice codecs (``streamcodec train codec --config voice-700 ...``).

Trains the acoustic encoder + FSQ and the flow decoder jointly on the training
manifests (never dev/ or probe/); the semantic encoder and codebook are frozen
and their features are computed once per file and cached
(:mod:`streamcodec.training.codec_data`). Model, loss and EMA:
:mod:`streamcodec.training.codec_trainer`.

The run stops at ``--max-steps`` or when ``--budget-s`` seconds (from process start,
feature caching included) are used, and always leaves:

* ``<ckpt-dir>/last.pt``: model, EMA, optimiser, counters (``--resume auto`` continues);
* ``<out>/model.safetensors`` + ``<out>/config.json``: the EMA model in the shipped format
  (loadable with ``streamcodec.load("voice-700", weights=OUT)``); ``--init DIR`` starts a
  new run from such a directory;
* ``<out>/losses.csv`` (+ ``losses.png``), ``<out>/train.log``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from streamcodec.features import LogMel
from streamcodec.semantic.config import RATES
from streamcodec.semantic.tokenizer import WEIGHTS_DIR as SEMANTIC_WEIGHTS_DIR
from streamcodec.semantic.tokenizer import load_tokenizer
from streamcodec.training import recipe_main
from streamcodec.training.codec_data import (
    CodecCropSampler,
    Prefetcher,
    build_feature_corpus,
    semantic_ids,
)
from streamcodec.training.codec_trainer import PRESETS, CodecTrainer, TrainConfig, crop_frames
from streamcodec.training.data import DEFAULT_CACHE
from streamcodec.training.vocoder import _default_manifests, _device, _hardware
from streamcodec.voice.config import PRESETS as VOICE_PRESETS
from streamcodec.voice.config import VoiceConfig, read_config
from streamcodec.voice.model import VoiceModel, package_weights_dir
from streamcodec.voice.tiny import tiny_config

log = logging.getLogger(__name__)
_T0 = time.monotonic()
CSV_FIELDS = ["step", "wall_s", "lr", "loss", "codes_used", "grad_norm", "val_loss"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``streamcodec train codec``."""
    p.add_argument("--config", choices=sorted(VOICE_PRESETS), default="voice-700")
    p.add_argument("--out", required=True, type=Path, help="output directory (weights, CSV, log)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument(
        "--manifest",
        action="append",
        help="training manifest (repeatable); default: ../shared/data/train/{speech,music,noise}",
    )
    p.add_argument(
        "--semantic-weights",
        type=Path,
        default=SEMANTIC_WEIGHTS_DIR,
        help="semantic encoder + codebooks directory (default: the bundled one)",
    )
    p.add_argument(
        "--vocoder-weights",
        default=VoiceConfig.vocoder_weights,
        help="vocoder the exported config names",
    )
    p.add_argument("--max-hours", type=float, help="use a seeded subset of this many hours")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--budget-s", type=float, help="stop after this wall time (from start)")
    p.add_argument("--max-steps", type=int, help="stop at this global step")
    p.add_argument("--resume", default="auto", help="'auto' (ckpt-dir/last.pt), 'no', or a .pt")
    p.add_argument("--init", type=Path, help="start from exported weights (a weights directory)")
    p.add_argument("--ckpt-dir", type=Path, help="where last.pt goes (default: --out)")
    p.add_argument("--ckpt-every-s", type=float, default=600.0)
    p.add_argument("--log-every", type=int, default=25, help="steps per CSV row")
    p.add_argument("--val-every-s", type=float, default=600.0)
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="feature cache ('none': off)")
    p.add_argument("--workers", type=int, default=1, help="processes decoding the corpus")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--lr", type=float, help="override the preset's learning rate")
    p.add_argument("--steps", type=int, default=4, help="decoder steps the export defaults to")
    p.add_argument("--guidance", type=float, default=1.0, help="guidance the export defaults to")
    p.add_argument("--no-bf16", action="store_true", help="fp32 on CUDA")
    p.add_argument("--cache-only", action="store_true", help="build the feature cache and stop")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--no-progress", action="store_true")


def _part_ref(path: Path, bundled_name: str) -> str:
    """How an exported config names a shared part: the bundled name, or an absolute path."""
    if Path(path).resolve() == package_weights_dir(bundled_name).resolve():
        return bundled_name
    return str(Path(path).resolve())


def voice_config(args: argparse.Namespace, vocab: int, sem_dim: int) -> VoiceConfig:
    """The configuration to train: the preset (tiny for ``--preset tiny``) fitted to the
    tokenizer's vocabulary and width, naming the shared parts it was trained with."""
    base = tiny_config(args.config) if args.preset == "tiny" else VOICE_PRESETS[args.config]
    return replace(
        base,
        sem_vocab=vocab,
        decoder=replace(base.decoder, sem_vocab=vocab, sem_dim=sem_dim),
        acoustic=replace(base.acoustic, sem_dim=sem_dim),
        steps=args.steps,
        guidance=args.guidance,
        semantic_weights=_part_ref(args.semantic_weights, "semantic"),
        vocoder_weights=args.vocoder_weights,
    )


def _val_files(n: int, entries: list) -> tuple[list[int], list[int]]:
    """A fixed ~1 % of the files (2..40) for the validation loss, by path hash."""
    scored = sorted(
        range(n), key=lambda i: hashlib.sha1(str(entries[i].rel_path).encode()).hexdigest()
    )
    k = min(40, max(2, n // 100)) if n >= 4 else 0
    val = sorted(scored[:k])
    vs = set(val)
    return [i for i in range(n) if i not in vs], val


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root_log = logging.getLogger()
    root_log.addHandler(handler)
    root_log.setLevel(min(root_log.level or logging.INFO, logging.INFO))
    try:
        return _run(args, out, args.ckpt_dir or out)
    finally:
        root_log.removeHandler(handler)
        handler.close()


def _make_trainer(
    args: argparse.Namespace, voice: VoiceConfig, centroids: torch.Tensor, ckpt_dir: Path
) -> tuple[CodecTrainer, bool]:
    device = _device(args.device)
    bf16 = device.type == "cuda" and not args.no_bf16
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    cfg = replace(PRESETS[args.preset], config=args.config)
    if args.batch_size:
        cfg = replace(cfg, batch_size=args.batch_size)
    if args.lr:
        cfg = replace(cfg, lr=args.lr)
    resume = None
    if args.resume == "auto" and (ckpt_dir / "last.pt").exists():
        resume = ckpt_dir / "last.pt"
    elif args.resume not in ("auto", "no"):
        resume = Path(args.resume)
    if resume is not None:
        ckpt = torch.load(resume, map_location="cpu", weights_only=True)
        saved = TrainConfig.from_dict(json.loads(ckpt["config"]))
        voice = replace(
            VoiceConfig.from_dict(json.loads(ckpt["voice"])),
            steps=voice.steps,
            guidance=voice.guidance,
            semantic_weights=voice.semantic_weights,
            vocoder_weights=voice.vocoder_weights,
        )
        tr = CodecTrainer(
            replace(saved, batch_size=cfg.batch_size, lr=cfg.lr), voice, centroids, device, bf16
        )
        tr.load_state_dict(ckpt)
        print(f"resumed from {resume} at step {tr.step}")
        return tr, True
    if args.init is not None:
        init_cfg, info = read_config(args.init / "config.json")
        voice = replace(init_cfg, steps=voice.steps, guidance=voice.guidance)
        tr = CodecTrainer(cfg, voice, centroids, device, bf16)
        model, _ = VoiceModel.load(args.init)
        tr.model.load_state_dict(model.state_dict())
        tr.ema.load_state_dict(model.state_dict())
        tr.step = tr.warmup_from = int(info.get("step", 0))  # fresh optimiser: warm up again
        tr.audio_s = float(info.get("audio_hours", 0)) * 3600
        tr.wall_s = float(info.get("wall_hours", 0)) * 3600
        tr.history = list(info.get("history", []))
        print(f"initialised from {args.init} (step {tr.step}); fresh optimiser")
        return tr, True
    return CodecTrainer(cfg, voice, centroids, device, bf16), False


def _run(args: argparse.Namespace, out: Path, ckpt_dir: Path) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    cache = None if args.cache_dir in ("", "none") else Path(args.cache_dir)
    tok_name = next(n for n, r in RATES.items() if r.name == args.config)
    tok = load_tokenizer(tok_name, args.semantic_weights)
    manifests = args.manifest or _default_manifests()
    device = _device(args.device)
    t_feat = time.monotonic()
    fc = build_feature_corpus(
        manifests, tok.encoder, cache, args.max_hours, args.workers,
        device if device.type == "cuda" else "cpu", not args.no_progress,
    )  # fmt: skip
    ids = semantic_ids(fc, tok.codebook, tok.rate.pool_tokens, tok_name, cache)
    print(
        f"features of {len(fc.corpus)} files ({fc.hours:.2f} h) ready in "
        f"{time.monotonic() - t_feat:.0f} s"
    )
    if args.cache_only:
        return 0
    voice = voice_config(args, tok.vocab_size, tok.encoder.cfg.d_model)
    tr, resumed = _make_trainer(args, voice, tok.codebook.centroids, ckpt_dir)
    voice = tr.voice
    train_files, val_files = _val_files(len(fc.corpus), fc.corpus.entries)
    n_frames = crop_frames(tr.cfg, voice)
    mel = LogMel(tok.encoder.cfg.mel).to(tr.device)  # crops' log-mel on the training device
    sampler = CodecCropSampler(
        fc, ids, tok.rate.pool_tokens, n_frames, mel, train_files, seed=tr.cfg.seed + tr.step
    )
    val_batches = []
    if val_files:
        vs = CodecCropSampler(fc, ids, tok.rate.pool_tokens, n_frames, mel, val_files, seed=7)
        val_batches = [vs.sample(min(8, tr.cfg.batch_size)) for _ in range(2)]
    if not resumed:
        stats = tr.init_from_data([sampler.sample(tr.cfg.batch_size) for _ in range(4)])
        log.info("initialised from data: %s", stats)
    print(
        f"codec training: {voice.name}, preset {args.preset}, "
        f"{tr.model.num_parameters() / 1e6:.2f} M parameters (acoustic "
        f"{sum(p.numel() for p in tr.model.acoustic.parameters()) / 1e6:.2f} M), crops of "
        f"{n_frames} frames x {tr.cfg.batch_size}, {len(train_files)} train / {len(val_files)} "
        f"val files, device {tr.device}{' (bf16)' if tr.bf16 else ''}"
    )
    csv_path = out / "losses.csv"
    new_csv = not csv_path.exists() or not resumed
    csv_fh = open(csv_path, "w" if new_csv else "a", newline="")  # noqa: SIM115
    writer = csv.DictWriter(csv_fh, CSV_FIELDS)
    if new_csv:
        writer.writeheader()
    session = {
        "start_step": tr.step,
        "device": _hardware(tr.device),
        "preset": args.preset,
        "data": [str(m) for m in manifests],
        "data_hours": round(fc.hours, 3),
        "data_files": len(fc.corpus),
    }
    tr.history.append(session)
    prefetch = Prefetcher(sampler, tr.cfg.batch_size) if tr.device.type == "cuda" else None
    reserve_s = 20.0
    t_start = time.monotonic()
    base_wall = tr.wall_s
    last_ckpt = last_val = t_start
    acc: dict[str, list[torch.Tensor]] = {}
    bar = tqdm(desc=voice.name, unit="step", disable=args.no_progress, mininterval=5)
    reason = "max steps"

    def save() -> None:
        tr.wall_s = base_wall + time.monotonic() - t_start
        session.update(end_step=tr.step, wall_s=round(time.monotonic() - t_start, 1))
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        tmp = ckpt_dir / "last.pt.tmp"
        torch.save(tr.state_dict(), tmp)
        os.replace(tmp, ckpt_dir / "last.pt")
        tr.ema.save(out, tr.training_info())
        write_model_card(out, tr)

    try:
        while args.max_steps is None or tr.step < args.max_steps:
            if args.budget_s and time.monotonic() - _T0 >= args.budget_s - reserve_s:
                reason = "time budget"
                break
            batch = prefetch.next() if prefetch else sampler.sample(tr.cfg.batch_size)
            stats = tr.train_step(batch)
            for k, v in stats.items():
                acc.setdefault(k, []).append(v)
            bar.update(1)
            if tr.step % args.log_every == 0:
                row = {
                    k: f"{torch.stack([t.float().cpu() for t in v]).mean():.5g}"
                    for k, v in acc.items()
                }
                row.update(step=tr.step, wall_s=f"{base_wall + time.monotonic() - t_start:.1f}")
                if val_batches and time.monotonic() - last_val >= args.val_every_s:
                    row["val_loss"] = f"{tr.validate(val_batches):.5g}"
                    last_val = time.monotonic()
                writer.writerow({k: row.get(k, "") for k in CSV_FIELDS})
                csv_fh.flush()
                bar.set_postfix(loss=row.get("loss"))
                log.info("step %d %s", tr.step, row)
                acc = {}
            if time.monotonic() - last_ckpt >= args.ckpt_every_s:
                save()
                last_ckpt = time.monotonic()
    except KeyboardInterrupt:
        reason = "interrupted"
    finally:
        bar.close()
        if prefetch:
            prefetch.close()
    session["stop"] = reason
    if val_batches:
        val = tr.validate(val_batches)
        wall = base_wall + time.monotonic() - t_start
        writer.writerow({"step": tr.step, "wall_s": f"{wall:.1f}", "val_loss": f"{val:.5g}"})
        session["val_loss"] = round(val, 5)
    csv_fh.close()
    save()
    if not args.no_plot:
        _plot_losses(csv_path, out / "losses.png")
    print(
        f"stopped ({reason}) at step {tr.step} after {time.monotonic() - t_start:.0f} s; "
        f"{tr.audio_s / 3600:.2f} h of audio seen in total; weights in {out}"
    )
    return 0


def write_model_card(out: Path, tr: CodecTrainer) -> None:
    """``MODEL_CARD.md`` beside the exported weights: architecture, data, training sessions."""
    v, info = tr.voice, tr.training_info()
    ac = sum(p.numel() for p in tr.ema.acoustic.parameters())
    dec = tr.ema.decoder.num_parameters()
    d = v.decoder
    rows = [
        f"| {h.get('start_step')}-{h.get('end_step', '?')} | {h.get('preset')} | {h.get('device')} "
        f"| {h.get('wall_s', '?')} | {h.get('data_hours')} | {h.get('stop', '')} |"
        for h in info["history"]
    ]
    text = f"""# {v.name}

Semantic + acoustic tokens, cached few-step flow-matching decoder (streamcodec issue 5).
Token frame {v.frame_ms:g} ms: semantic id ({v.sem_bits} bits, frozen tokenizer
`{v.tokenizer}`) + acoustic FSQ code ({v.acoustic_bits} bits, levels
{list(v.acoustic.fsq_levels)}) = {v.bits_per_frame} bits/frame, {v.payload_bps:g} bit/s.

- acoustic encoder: {ac:,} parameters (causal, {v.acoustic.num_layers} mixing blocks, width
  {v.acoustic.dim}); decoder: {dec:,} parameters (conditioning encoder + transformer, width
  {d.dim}, {d.n_layers} layers, {d.n_heads} heads, 20 ms patches of {d.patch_frames} mel frames,
  decode chunks of {d.chunk_token_frames} token frame(s), clean context {d.context_chunks} chunks)
- sampling defaults: {v.steps} Euler steps per chunk, guidance {v.guidance:g}, noise scale
  {v.noise_scale:g}
- shared parts: semantic encoder + codebooks `{v.semantic_weights}`, vocoder `{v.vocoder_weights}`
- training: {info["step"]} steps, {info["audio_hours"]} h of audio seen (EMA weights, fp16)

| steps | preset | hardware | wall (s) | data hours | stop |
|---|---|---|---|---|---|
{chr(10).join(rows)}

Data: the project corpus `train/` manifests only (never `dev/` or `probe/`); semantic
features of each file computed once with the frozen encoder. Recipe:
`streamcodec train codec --config {v.name}` (CPU) or `benchmarks/gpu_train_codec.sh` (GPU);
continue with `--init <this directory>`.
"""
    (out / "MODEL_CARD.md").write_text(text, encoding="utf-8")


def _plot_losses(csv_path: Path, png_path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib not installed: no loss plot")
        return
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    keys = [k for k in ("loss", "val_loss", "codes_used") if any(r.get(k) for r in rows)]
    if not keys:
        return
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.2 * len(keys)), sharex=True, squeeze=False)
    for ax, k in zip(axes[:, 0], keys, strict=True):
        pts = [(int(r["step"]), float(r[k])) for r in rows if r.get(k)]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], ".-" if k == "val_loss" else "-")
        ax.set_ylabel(k)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    return recipe_main("streamcodec.training.codec", add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
