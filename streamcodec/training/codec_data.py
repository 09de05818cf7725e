"""Voice codec training data: frozen semantic features computed once, crops from memory.

The semantic encoder's forward pass is the expensive part on a CPU (~0.2 s per
second of audio on the shared 2-core machine), and it is frozen, so it runs
once per file (streaming path, whole file: exactly what the codec computes)
and its 20 ms token features are cached on disk (fp16) beside the decoded audio.
A crop then pools the features to the configuration's token frames, looks up
the semantic ids (also cached per rate) and computes the crop's log-mel on the fly.

Cache files in ``cache_dir`` (key: the files, their sizes and the encoder weights):
``semfeat-<key>.npz`` with ``features [N_tokens, D] fp16``, ``token_offsets``,
``audio`` (int16) and ``offsets``; ``semids-<key>-<rate>.npy`` per tokenizer rate.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from streamcodec.features import LogMel
from streamcodec.manifest import ManifestEntry, read_manifest
from streamcodec.semantic.codebook import Codebook
from streamcodec.semantic.encoder import SemanticEncoder
from streamcodec.semantic.streaming import extract_features
from streamcodec.training.data import DEFAULT_CACHE, AudioCorpus
from streamcodec.training.vocoder import load_corpus

log = logging.getLogger(__name__)


def select_entries(
    manifests: Sequence[str | Path], max_hours: float | None, seed: int = 0
) -> list[ManifestEntry]:
    """All entries of ``manifests``, or a seeded random subset of each holding at most
    ``max_hours`` x its share of the total duration."""
    per = [read_manifest(m) for m in manifests]
    if max_hours is None:
        return [e for es in per for e in es]
    total = sum(e.duration_s for es in per for e in es) / 3600
    frac = min(1.0, max_hours / max(total, 1e-9))
    rng = np.random.default_rng(seed)
    out = []
    for es in per:
        budget = frac * sum(e.duration_s for e in es)
        used = 0.0
        for i in rng.permutation(len(es)):
            e = es[int(i)]
            if used + e.duration_s <= budget:
                out.append(e)
                used += e.duration_s
    return out


def _write_subset_manifest(entries: list[ManifestEntry], path: Path) -> Path:
    lines = ["path\tduration_s\tspeaker\tlabel_or_transcript\tlicence\tsource"]
    for e in entries:
        lines.append(f"{e.path}\t{e.duration_s:.3f}\t{e.speaker}\t\t{e.licence}\t{e.source}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _weights_key(encoder: SemanticEncoder) -> str:
    h = hashlib.sha1()
    for k, v in sorted(encoder.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes()[:4096])
        h.update(str(float(v.float().sum())).encode())
    return h.hexdigest()[:12]


@dataclass
class FeatureCorpus:
    """Audio (int16) and 20 ms semantic token features (fp16) of the same files."""

    corpus: AudioCorpus
    features: np.ndarray  # [N_tokens, D] float16
    token_offsets: np.ndarray  # [files + 1]
    key: str
    token_samples: int = 320

    @property
    def hours(self) -> float:
        return self.corpus.hours

    def file_tokens(self, i: int) -> np.ndarray:
        return self.features[self.token_offsets[i] : self.token_offsets[i + 1]]


def build_feature_corpus(
    manifests: Sequence[str | Path],
    encoder: SemanticEncoder,
    cache_dir: Path | None = DEFAULT_CACHE,
    max_hours: float | None = None,
    workers: int = 1,
    device: str | torch.device = "cpu",
    progress: bool = True,
    seed: int = 0,
) -> FeatureCorpus:
    """Decode the manifests' audio and run the frozen semantic encoder over every file once
    (cached on disk when ``cache_dir`` is set)."""
    entries = select_entries(manifests, max_hours, seed)
    if not entries:
        raise ValueError(f"no audio files in manifests {list(manifests)}")
    wkey = _weights_key(encoder)
    key = hashlib.sha1(
        ("\n".join(f"{e.path}|{e.path.stat().st_size}" for e in entries) + wkey).encode()
    ).hexdigest()[:16]
    cache = None if cache_dir is None else Path(cache_dir) / f"semfeat-{key}.npz"
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            log.info("semantic features of %d files from %s", len(entries), cache)
            corpus = AudioCorpus(z["audio"], z["offsets"], entries)
            return FeatureCorpus(corpus, z["features"], z["token_offsets"], key)
    tmp_dir = Path(cache_dir) if cache_dir is not None else Path("/tmp")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    manifest = _write_subset_manifest(entries, tmp_dir / f"subset-{key}.tsv")
    corpus = load_corpus([str(manifest)], workers, progress, cache_dir)
    enc = encoder.to(device).eval()
    ts = enc.cfg.token_samples
    feats, tok_off = [], [0]
    for i in tqdm(range(len(corpus)), desc="semantic features", disable=not progress, unit="file"):
        pcm = torch.from_numpy(corpus.file(i))[None].to(device)
        with torch.inference_mode():
            f = extract_features(enc, pcm)[0]
        n = -(-pcm.shape[1] // ts)
        assert f.shape[0] == n, (f.shape, n)
        feats.append(f.to("cpu", torch.float16).numpy())
        tok_off.append(tok_off[-1] + n)
    features = np.concatenate(feats) if feats else np.zeros((0, enc.cfg.d_model), np.float16)
    token_offsets = np.asarray(tok_off, dtype=np.int64)
    if cache is not None:
        part = cache.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(
            part,
            audio=corpus.audio,
            offsets=corpus.offsets,
            features=features,
            token_offsets=token_offsets,
        )
        part.replace(cache)
    return FeatureCorpus(corpus, features, token_offsets, key)


def semantic_ids(
    fc: FeatureCorpus,
    codebook: Codebook,
    pool: int,
    rate_name: str,
    cache_dir: Path | None = DEFAULT_CACHE,
    block: int = 65536,
) -> list[np.ndarray]:
    """Per file, the semantic ids ``[F_i]`` int16/int32 of the rate pooling ``pool`` tokens
    (frame ``f`` = mean of tokens ``f*pool .. f*pool+pool-1``, as the tokenizer pools)."""
    cb_key = hashlib.sha1(codebook.centroids.numpy().tobytes()).hexdigest()[:8]
    path = (
        None if cache_dir is None else Path(cache_dir) / f"semids-{fc.key}-{rate_name}-{cb_key}.npz"
    )
    if path is not None and path.exists():
        with np.load(path) as z:
            ids, off = z["ids"], z["offsets"]
    else:
        pooled, off = [], [0]
        for i in range(len(fc.corpus)):
            t = fc.file_tokens(i).astype(np.float32)
            n = t.shape[0] // pool
            pooled.append(t[: n * pool].reshape(n, pool, -1).mean(1))
            off.append(off[-1] + n)
        allp = torch.from_numpy(np.concatenate(pooled))
        ids = np.concatenate(
            [codebook.assign(allp[j : j + block]).numpy() for j in range(0, allp.shape[0], block)]
        ).astype(np.int32)
        off = np.asarray(off, dtype=np.int64)
        if path is not None:
            np.savez(path, ids=ids, offsets=off)
    return [ids[off[i] : off[i + 1]] for i in range(len(off) - 1)]


@dataclass
class CodecBatch:
    """A training batch of ``B`` crops of ``F`` token frames (``k`` mel frames each).

    feat: [B, F, D] pooled semantic features; ids: [B, F] int64; mel: [B, M, F * k]
    natural-log mel (causal framing with the true history); valid: [B, F] bool
    (False on padding after the end of a short file).
    """

    feat: torch.Tensor
    ids: torch.Tensor
    mel: torch.Tensor
    valid: torch.Tensor

    def to(self, device: torch.device) -> CodecBatch:
        return CodecBatch(
            *(t.to(device, non_blocking=True) for t in (self.feat, self.ids, self.mel, self.valid))
        )


class CodecCropSampler:
    """Random crops aligned to the token-frame grid; short files are padded at the end."""

    def __init__(
        self,
        fc: FeatureCorpus,
        ids: list[np.ndarray],
        pool: int,
        crop_frames: int,
        mel: LogMel,
        files: Sequence[int] | None = None,
        seed: int = 0,
    ) -> None:
        if crop_frames < 1:
            raise ValueError(f"crop_frames must be >= 1, got {crop_frames}")
        self.fc, self.ids, self.pool, self.crop_frames, self.mel = fc, ids, pool, crop_frames, mel
        self.files = np.asarray(files if files is not None else range(len(ids)), dtype=np.int64)
        self.files = self.files[[len(ids[i]) > 0 for i in self.files]]
        if self.files.size == 0:
            raise ValueError("no file has a whole token frame")
        lengths = np.asarray([len(ids[i]) for i in self.files], dtype=np.float64)
        self._p = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)
        self.frame_samples = pool * fc.token_samples

    def sample(self, batch_size: int) -> CodecBatch:
        fs, n, pool = self.frame_samples, self.crop_frames, self.pool
        hist = self.mel.cfg.history_samples
        hop = self.mel.cfg.hop_length
        d = self.fc.features.shape[1]
        feat = np.zeros((batch_size, n, d), np.float32)
        ids = np.zeros((batch_size, n), np.int64)
        audio = np.zeros((batch_size, hist + n * fs), np.float32)
        valid = np.zeros((batch_size, n), bool)
        for b, i in enumerate(self.rng.choice(self.files, size=batch_size, p=self._p)):
            fid = self.ids[int(i)]
            f0 = int(self.rng.integers(0, max(1, len(fid) - n + 1)))
            m = min(n, len(fid) - f0)
            ids[b, :m] = fid[f0 : f0 + m]
            tok = self.fc.file_tokens(int(i))[f0 * pool : (f0 + m) * pool].astype(np.float32)
            feat[b, :m] = tok.reshape(m, pool, d).mean(1)
            valid[b, :m] = True
            a0, a1 = (int(x) for x in self.fc.corpus.offsets[int(i) : int(i) + 2])
            s0, s1 = f0 * fs - hist, (f0 + m) * fs  # relative to the file start
            lo = max(s0, 0)
            seg = self.fc.corpus.audio[a0 + lo : min(a0 + s1, a1)]  # the codec zero-pads the tail
            audio[b, lo - s0 : lo - s0 + seg.shape[0]] = seg / 32767.0
        dev = self.mel.fb.device  # the log-mel runs where the LogMel module lives
        with torch.no_grad():
            mel = self.mel(torch.from_numpy(audio).to(dev))[:, :, hist // hop :]
        return CodecBatch(
            torch.from_numpy(feat), torch.from_numpy(ids), mel, torch.from_numpy(valid)
        )


class Prefetcher:
    """Draws batches from a :class:`CodecCropSampler` in a background thread."""

    def __init__(self, sampler: CodecCropSampler, batch_size: int, depth: int = 4) -> None:
        self.sampler, self.batch_size = sampler, batch_size
        self.q: queue.Queue[CodecBatch] = queue.Queue(depth)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while not self._stop.is_set():
            batch = self.sampler.sample(self.batch_size)
            while not self._stop.is_set():
                try:
                    self.q.put(batch, timeout=0.5)
                    break
                except queue.Full:
                    continue

    def next(self) -> CodecBatch:
        return self.q.get()

    def close(self) -> None:
        self._stop.set()
