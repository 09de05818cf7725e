"""Frozen semantic codebooks: mini-batch k-means on encoder (or raw log-mel) features.

Own torch implementation, no library: k-means++ seeding (Arthur & Vassilvitskii,
2007) on a subsample, then mini-batch k-means with per-centroid learning rates
``1 / count`` (Sculley, 2010), re-seeding centroids that stopped winning points
with the batch points farthest from their centroid, and a final full Lloyd
step. Assignment uses the matmul form of :class:`streamcodec.semantic.codebook.Codebook`.

Recipe (``streamcodec train kmeans``): features of random crops of ``train/``
(never dev/ or probe/) from the shipped or a given encoder, pooled per rate
(``semantic-350/700/1400``), or raw log-mel patches (``--features mel``, the
probe baseline); writes ``codebooks.safetensors`` (fp16) + ``kmeans.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from streamcodec.semantic.codebook import Codebook, usage_stats
from streamcodec.semantic.config import RATES
from streamcodec.semantic.encoder import SemanticEncoder
from streamcodec.semantic.sources import CODEC_SOURCES, codec_bit_vectors, mel_features
from streamcodec.semantic.tokenizer import WEIGHTS_DIR, load_encoder, pool_tokens, save_codebooks
from streamcodec.training import recipe_main
from streamcodec.training.data import AudioCorpus, CropSampler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KMeansConfig:
    n_clusters: int = 8192
    batch_size: int = 16384
    epochs: float = 4.0  # passes over the points
    init_points: int = 65536  # k-means++ runs on this many points
    reseed_every: int = 10  # batches between dead-centroid checks
    lloyd_final: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_clusters < 2:
            raise ValueError(f"n_clusters must be >= 2, got {self.n_clusters}")
        if self.batch_size < 1 or self.epochs <= 0:
            raise ValueError(f"bad batch_size {self.batch_size} / epochs {self.epochs}")


def kmeans_plus_plus(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: ``x: [N, D]`` -> centroids ``[k, D]`` (``N >= k``)."""
    n = x.shape[0]
    if n < k:
        raise ValueError(f"need at least k={k} points, got {n}")
    sq = (x * x).sum(-1)
    first = int(torch.randint(n, (1,), generator=gen))
    centers = torch.empty(k, x.shape[1], dtype=x.dtype)
    centers[0] = x[first]
    d2 = (sq - 2 * x @ x[first] + sq[first]).clamp_min(0)
    for i in range(1, k):
        total = float(d2.sum())
        if total <= 0:  # fewer distinct points than k: duplicate at random
            idx = int(torch.randint(n, (1,), generator=gen))
        else:
            idx = int(torch.multinomial(d2 / total, 1, generator=gen))
        centers[i] = x[idx]
        d2 = torch.minimum(d2, (sq - 2 * x @ x[idx] + sq[idx]).clamp_min(0))
    return centers


def _reseed(
    centers: torch.Tensor,
    dead: torch.Tensor,
    batch: torch.Tensor,
    best: torch.Tensor,
    gen: torch.Generator,
) -> int:
    """Move ``dead`` centroids onto batch points by k-means++ sampling (probability ~ squared
    distance to the nearest centroid, updated after each pick), in place; returns the count."""
    d2 = ((batch * batch).sum(-1) - 2 * best).clamp_min(0)  # ||x - nearest centroid||^2
    for j in dead.tolist():
        total = float(d2.sum())
        if total <= 0:
            break
        i = int(torch.multinomial(d2 / total, 1, generator=gen))
        centers[j] = batch[i]
        d2 = torch.minimum(d2, ((batch - batch[i]) ** 2).sum(-1))
    return int(dead.numel())


def minibatch_kmeans(
    x: torch.Tensor,
    cfg: KMeansConfig,
    progress: bool = False,
    init: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """Fit ``cfg.n_clusters`` centroids to ``x: [N, D]`` float32; returns (centroids, stats).

    ``init: [n_clusters, D]`` replaces the k-means++ seeding (warm start).
    """
    if x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"x must be a float [N, D] tensor, got {x.dtype} {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN/Inf")
    x = x.float()
    n, k = x.shape[0], cfg.n_clusters
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.time()
    if init is not None:
        if init.shape != (k, x.shape[1]):
            raise ValueError(f"init must be [{k}, {x.shape[1]}], got {tuple(init.shape)}")
        centers = init.float().clone()
    else:
        init_idx = torch.randperm(n, generator=gen)[: max(k, min(n, cfg.init_points))]
        centers = kmeans_plus_plus(x[init_idx], k, gen)
    counts = torch.zeros(k, dtype=torch.float64)
    recent = torch.zeros(k)
    n_batches = max(1, int(cfg.epochs * n / cfg.batch_size))
    reseeded = 0
    bar = tqdm(range(n_batches), disable=not progress, desc="k-means", unit="batch")
    for it in bar:
        batch = x[torch.randint(n, (min(cfg.batch_size, n),), generator=gen)]
        scores = batch @ centers.T - 0.5 * (centers * centers).sum(-1)
        best, ids = scores.max(-1)
        b_counts = torch.bincount(ids, minlength=k).double()
        sums = torch.zeros_like(centers).index_add_(0, ids, batch)
        counts += b_counts
        hit = b_counts > 0
        rate = (b_counts[hit] / counts[hit]).float()[:, None]
        centers[hit] += rate * (sums[hit] / b_counts[hit].float()[:, None] - centers[hit])
        recent = 0.9 * recent + b_counts.float()
        if (it + 1) % cfg.reseed_every == 0:
            dead = (recent < 1e-3).nonzero().flatten()
            if dead.numel():
                reseeded += _reseed(centers, dead, batch, best, gen)
                counts[dead] = 1.0
                recent[dead] = 1.0
    if cfg.lloyd_final:
        ids = Codebook(centers).assign(x)
        b_counts = torch.bincount(ids, minlength=k)
        sums = torch.zeros_like(centers).index_add_(0, ids, x)
        hit = b_counts > 0
        centers[hit] = sums[hit] / b_counts[hit].float()[:, None]
    ids = Codebook(centers).assign(x)
    err = float(((x - centers[ids]) ** 2).sum(-1).mean())
    stats = {
        "points": n,
        "dim": int(x.shape[1]),
        "batches": n_batches,
        "reseeded": reseeded,
        "mse": err,
        "fit_s": round(time.time() - t0, 1),
        **usage_stats(ids, k),
    }
    return centers, stats


# ---- features of training crops -------------------------------------------------------
Featurizer = Callable[[torch.Tensor], dict[str, torch.Tensor]]


def encoder_featurizer(encoder: SemanticEncoder, pools: dict[str, int]) -> Featurizer:
    """Encoder features of crops ``[B, T]`` pooled per rate: ``{name: [B * F, D]}``.

    Crops must fit the encoder's context (``<= 2 * segment_chunks`` chunks), where
    the dense pass equals streaming inference.
    """

    def fn(wav: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = encoder.features_from_layers(encoder.forward_dense(encoder.wave_to_patches(wav)))
        return {n: pool_tokens(feats, p).reshape(-1, feats.shape[-1]) for n, p in pools.items()}

    return fn


def mel_featurizer(pools: dict[str, int]) -> Featurizer:
    """Raw-log-mel baseline: normalised 20 ms patches pooled per rate."""

    def fn(wav: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: mel_features(wav, p).reshape(-1, 160) for n, p in pools.items()}

    return fn


def codec_featurizer(codec_name: str) -> Featurizer:
    """A fixed-rate codec's frame bits as 0/1 vectors (one per codec frame)."""

    def fn(wav: torch.Tensor) -> dict[str, torch.Tensor]:
        vecs = [codec_bit_vectors(codec_name, w.numpy()) for w in wav]
        return {codec_name: torch.from_numpy(np.concatenate(vecs))}

    return fn


@torch.no_grad()
def training_features(
    featurize: Featurizer,
    corpus: AudioCorpus,
    hours: float,
    crop_samples: int = 64000,
    batch: int = 16,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Features ``{name: [N, D]}`` of ``hours`` of random un-augmented crops of ``corpus``."""
    sampler = CropSampler(corpus, crop_samples, augment=None, seed=seed)
    n_batches = max(1, round(hours * 3600 * 16000 / (crop_samples * batch)))
    out: dict[str, list[torch.Tensor]] = {}
    for _ in tqdm(range(n_batches), disable=not progress, desc="features", unit="batch"):
        for name, f in featurize(sampler.sample(batch)).items():
            out.setdefault(name, []).append(f)
    return {name: torch.cat(v) for name, v in out.items()}


# ---- CLI recipe (``streamcodec train kmeans``) ----------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder for codebooks.safetensors")
    p.add_argument(
        "--features",
        choices=("encoder", "mel", *CODEC_SOURCES),
        default="encoder",
        help="encoder features, or a same-vocabulary probe baseline",
    )
    p.add_argument(
        "--encoder-dir",
        default=str(WEIGHTS_DIR),
        help="folder with the encoder's config.json + encoder.safetensors",
    )
    p.add_argument("--data", default="/work/shared/data")
    p.add_argument("--hours", type=float, default=4.0, help="hours of train/ audio to featurise")
    p.add_argument("--rates", default=",".join(RATES), help="comma-separated tokenizer names")
    p.add_argument("--clusters", type=int, default=8192)
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument(
        "--max-points", type=int, default=300_000, help="random subsample per rate (0: all)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from streamcodec.training.mae import load_corpus

    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.rates.split(",") if n.strip()]
    unknown = [n for n in names if n not in RATES]
    if unknown:
        raise ValueError(f"unknown rates {unknown}; known {sorted(RATES)}")
    train = Path(args.data) / "train"
    corpus = load_corpus([train / "speech", train / "music", train / "noise"])
    pools = {n: RATES[n].pool_tokens for n in names}
    if args.features == "encoder":
        encoder = load_encoder(args.encoder_dir)
        featurize = encoder_featurizer(encoder, pools)
    elif args.features == "mel":
        featurize = mel_featurizer(pools)
    else:
        featurize = codec_featurizer(args.features)
    feats = training_features(
        featurize, corpus, args.hours, seed=args.seed, progress=not args.no_progress
    )
    cfg = KMeansConfig(n_clusters=args.clusters, epochs=args.epochs, seed=args.seed)
    books, report = (
        {},
        {
            "features": args.features,
            "hours": args.hours,
            "max_points": args.max_points,
            "config": asdict(cfg),
            "encoder_dir": args.encoder_dir if args.features == "encoder" else None,
            "rates": {},
        },
    )
    gen = torch.Generator().manual_seed(args.seed)
    for name in feats:
        x = feats[name]
        if 0 < args.max_points < x.shape[0]:
            x = x[torch.randperm(x.shape[0], generator=gen)[: args.max_points]]
        centers, stats = minibatch_kmeans(x, cfg, progress=not args.no_progress)
        books[name] = centers
        report["rates"][name] = stats
        print(
            f"{name}: {stats['points']} points, usage {stats['usage']:.3f}, "
            f"mse {stats['mse']:.4f}, {stats['fit_s']} s"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_codebooks(books, out / "codebooks.safetensors")
    (out / "kmeans.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"codebooks: {out / 'codebooks.safetensors'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return recipe_main("streamcodec.training.kmeans", add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
