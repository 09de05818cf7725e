"""Training data: manifests decoded once into memory, random crops with gain and noise augmentation.

The whole training corpus (~9 h at 16 kHz) is ~1 GB as int16, so it is decoded
once, cached as one ``.npy`` per manifest set, and sampled from memory: data
loading never limits a 2-core training run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from streamcodec.audio import load_audio
from streamcodec.manifest import ManifestEntry, read_manifest

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path(os.environ.get("STREAMCODEC_CACHE", Path.home() / ".cache" / "streamcodec"))


class AudioCorpus:
    """All files of some manifests as one int16 array plus offsets.

    ``audio: [total samples] int16``, file ``i`` is ``audio[offsets[i]:offsets[i + 1]]``.
    """

    def __init__(self, audio: np.ndarray, offsets: np.ndarray, entries: list[ManifestEntry]):
        if offsets.shape[0] != len(entries) + 1:
            raise ValueError(f"{len(entries)} entries need {len(entries) + 1} offsets")
        self.audio = audio
        self.offsets = offsets
        self.entries = entries

    @classmethod
    def from_manifests(
        cls,
        manifests: Sequence[str | Path],
        sample_rate: int = 16000,
        cache_dir: Path | None = DEFAULT_CACHE,
        min_duration_s: float = 0.0,
        progress: bool = True,
    ) -> AudioCorpus:
        """Decode every file of ``manifests`` (cached in ``cache_dir`` keyed by their content)."""
        entries = [e for m in manifests for e in read_manifest(m)]
        entries = [e for e in entries if not (e.duration_s < min_duration_s)]
        if not entries:
            raise ValueError(f"no audio files in manifests {list(manifests)}")
        key = hashlib.sha1(
            (
                "\n".join(f"{e.path}|{e.path.stat().st_size}" for e in entries) + f"|{sample_rate}"
            ).encode()
        ).hexdigest()[:16]
        cache = None if cache_dir is None else Path(cache_dir) / f"corpus-{key}.npz"
        if cache is not None and cache.exists():
            with np.load(cache) as z:
                log.info("loaded %d files from cache %s", len(entries), cache)
                return cls(z["audio"], z["offsets"], entries)
        chunks, offsets = [], [0]
        for e in tqdm(entries, desc="decoding corpus", disable=not progress, unit="file"):
            pcm = load_audio(e.path, sample_rate)
            chunks.append((np.clip(pcm, -1, 1) * 32767).astype(np.int16))
            offsets.append(offsets[-1] + pcm.size)
        audio = np.concatenate(chunks)
        offsets_arr = np.asarray(offsets, dtype=np.int64)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp.npz")
            np.savez(tmp, audio=audio, offsets=offsets_arr)
            tmp.replace(cache)
        return cls(audio, offsets_arr, entries)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def hours(self) -> float:
        return float(self.audio.shape[0]) / 16000 / 3600

    def file(self, i: int) -> np.ndarray:
        """File ``i`` as ``[T] float32``."""
        return self.audio[self.offsets[i] : self.offsets[i + 1]].astype(np.float32) / 32767.0


@dataclass(frozen=True)
class Augment:
    gain_db: tuple[float, float] = (-12.0, 6.0)  # uniform random gain
    noise_prob: float = 0.3  # chance of mixing a noise crop in
    snr_db: tuple[float, float] = (5.0, 40.0)
    peak_limit: float = 0.99  # crops are scaled down if they would clip


class CropSampler:
    """Random fixed-length crops ``[B, T] float32`` from a corpus, files weighted by length.

    Files shorter than a crop are zero-padded at a random position. ``noise`` is an
    optional second corpus mixed in at a random SNR (see :class:`Augment`).
    """

    def __init__(
        self,
        corpus: AudioCorpus,
        crop_samples: int,
        augment: Augment | None = Augment(),
        noise: AudioCorpus | None = None,
        seed: int = 0,
    ) -> None:
        if crop_samples <= 0:
            raise ValueError(f"crop_samples must be positive, got {crop_samples}")
        self.corpus = corpus
        self.crop_samples = crop_samples
        self.augment = augment
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        lengths = corpus.lengths.astype(np.float64)
        self._weights = lengths / lengths.sum()

    def _crop(self, corpus: AudioCorpus, i: int) -> np.ndarray:
        n = self.crop_samples
        start, stop = int(corpus.offsets[i]), int(corpus.offsets[i + 1])
        length = stop - start
        out = np.zeros(n, dtype=np.float32)
        if length >= n:
            s = start + int(self.rng.integers(0, length - n + 1))
            out[:] = corpus.audio[s : s + n]
        else:
            at = int(self.rng.integers(0, n - length + 1))
            out[at : at + length] = corpus.audio[start:stop]
        return out / 32767.0

    def sample(self, batch_size: int) -> torch.Tensor:
        """A batch ``[B, T] float32`` of augmented crops."""
        idx = self.rng.choice(len(self.corpus), size=batch_size, p=self._weights)
        crops = np.stack([self._crop(self.corpus, int(i)) for i in idx])
        aug = self.augment
        if aug is not None:
            for b in range(batch_size):
                x = crops[b]
                if self.noise is not None and self.rng.random() < aug.noise_prob:
                    nz = self._crop(self.noise, int(self.rng.integers(len(self.noise))))
                    p_sig = float(np.mean(x**2)) + 1e-8
                    p_noise = float(np.mean(nz**2)) + 1e-8
                    snr = self.rng.uniform(*aug.snr_db)
                    x = x + nz * np.sqrt(p_sig / (p_noise * 10 ** (snr / 10)))
                x = x * 10 ** (self.rng.uniform(*aug.gain_db) / 20)
                peak = float(np.abs(x).max())
                if peak > aug.peak_limit:
                    x = x * (aug.peak_limit / peak)
                crops[b] = x
        return torch.from_numpy(crops)


def copy_subset(
    manifests: Sequence[str | Path], out_dir: str | Path, max_mb: float, seed: int = 0
) -> Path:
    """Copy a random subset (≤ ``max_mb`` MB of files) of ``manifests`` to ``out_dir``.

    Writes ``out_dir/manifest.tsv`` with paths relative to ``out_dir`` and keeps
    the columns (licence, source) of the originals. Used to ship a training
    subset to a GPU machine. Returns the new manifest's path.
    """
    out_dir = Path(out_dir)
    entries = [e for m in manifests for e in read_manifest(m)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(entries))
    budget = max_mb * 1e6
    lines = ["path\tduration_s\tspeaker\tlabel_or_transcript\tlicence\tsource"]
    used = 0
    for i in order:
        e = entries[int(i)]
        size = e.path.stat().st_size
        if used + size > budget:
            continue
        used += size
        dest = out_dir / e.rel_path
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(e.path, dest)
        lines.append(
            "\t".join([e.rel_path, f"{e.duration_s:.3f}", e.speaker, e.label, e.licence, e.source])
        )
    manifest = out_dir / "manifest.tsv"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log.info("copied %d files, %.1f MB, to %s", len(lines) - 1, used / 1e6, out_dir)
    return manifest
