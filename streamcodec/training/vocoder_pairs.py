"""Decoded-mel pairs: a voice codec's generated log-mel beside the audio it was coded from.

A vocoder trained only on the log-mel of real audio meets a different input in a
voice codec: the flow decoder's mel is smoother (less fine spectral structure, less
frame-to-frame change). As TTS systems fine-tune their vocoder on the acoustic
model's mels, ``streamcodec train vocoder --pairs FILE`` fine-tunes on these pairs;
the codec's mel is frame-aligned with the audio (token frame ``i`` decodes to the
log-mel frames of samples ``i * frame_samples ...``), so the target is the original
waveform itself.

``streamcodec train vocoder-pairs --codec voice-700 --out pairs.npz`` encodes and
decodes (streaming, the codec's default sampling) training files up to ``--hours``
and writes one ``.npz``: ``audio`` (int16, all files concatenated), ``mel``
(float16 ``[M, frames]``), ``offsets`` (sample offsets, ``[files + 1]``, each file a
whole number of hops) and ``meta`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from streamcodec.manifest import read_manifest
from streamcodec.training import recipe_main
from streamcodec.training.data import Augment

_CODEC = None


def load_codec(spec: str):
    """A voice codec by name (``voice-700``) or from a weights directory."""
    from streamcodec.voice.codec import VoiceCodec

    if Path(spec).is_dir():
        return VoiceCodec(weights=spec)
    import streamcodec

    codec = streamcodec.load(spec)
    if not isinstance(codec, VoiceCodec):
        raise ValueError(f"{spec!r} is not a voice codec (no decoded mel to pair)")
    return codec


def _init_worker(codec_spec: str) -> None:
    global _CODEC
    torch.set_num_threads(1)
    _CODEC = load_codec(codec_spec)


def decode_mel(codec, pcm: np.ndarray) -> torch.Tensor:
    """``pcm [T] float32`` -> the codec's decoded natural log-mel ``[M, T // hop]`` (the mel
    its vocoder would receive: streaming encode, then the streaming flow decoder)."""
    from streamcodec.decoder.stream import DecoderStream

    frames = codec.encode(pcm)
    ids, acs = zip(*(codec.unpack(f) for f in frames), strict=True) if frames else ((), ())
    dec = DecoderStream(codec.model.decoder, codec.sampler)
    with torch.inference_mode():
        q = codec.model.acoustic.fsq.codes_to_vectors(torch.tensor(acs, dtype=torch.long))
        mel = torch.cat([dec.push(torch.tensor(ids, dtype=torch.long), q), dec.flush()], 1)
    n = pcm.shape[0] // codec.vocoder.cfg.mel.hop_length
    return mel[:, :n]


def _work(path: str) -> tuple[np.ndarray, np.ndarray]:
    from streamcodec.audio import load_audio

    codec = _CODEC
    hop = codec.vocoder.cfg.mel.hop_length
    x = load_audio(path).astype(np.float32)
    x = x[: x.shape[0] // hop * hop]
    mel = decode_mel(codec, x)
    n = mel.shape[1]
    audio = np.clip(np.round(x[: n * hop] * 32767.0), -32768, 32767).astype(np.int16)
    return audio, mel.numpy().astype(np.float16)


@dataclass
class PairCorpus:
    """Aligned (audio, decoded log-mel) of whole files; see the module docstring."""

    audio: np.ndarray  # int16 [samples]
    mel: np.ndarray  # float16 [M, frames]
    offsets: np.ndarray  # int64 [files + 1], sample offsets, multiples of hop
    hop: int
    meta: dict

    @classmethod
    def load(cls, path: str | Path) -> PairCorpus:
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            return cls(z["audio"], z["mel"], z["offsets"], int(meta["hop"]), meta)

    @property
    def hours(self) -> float:
        return float(self.audio.shape[0]) / 16000 / 3600

    def save(self, path: str | Path) -> None:
        with open(path, "wb") as fh:  # np.savez on a name would append ".npz"
            np.savez(
                fh,
                audio=self.audio,
                mel=self.mel,
                offsets=self.offsets,
                meta=np.array(json.dumps(self.meta)),
            )


class PairSampler:
    """Random crops of ``crop_frames`` mel frames: ``(audio [B, crop_frames * hop] float32,
    mel [B, M, crop_frames] float32)``, files weighted by length, the random gain of
    ``augment`` (default :class:`Augment`) applied to both (the log-mel shifts by the log
    of the gain, floored at ``log_floor``) within its peak limit. No noise is mixed in: the
    mel is the codec's."""

    def __init__(
        self,
        pairs: PairCorpus,
        crop_frames: int,
        log_floor: float,
        augment: Augment | None = None,
        seed: int = 0,
    ) -> None:
        lengths = np.diff(pairs.offsets) // pairs.hop
        keep = np.flatnonzero(lengths >= crop_frames)
        if keep.size == 0:
            raise ValueError(f"no file in the pairs has {crop_frames} mel frames")
        self.pairs, self.crop_frames = pairs, crop_frames
        self.floor = float(np.log(log_floor))
        self.augment = augment if augment is not None else Augment()
        self.files = keep
        self.weights = lengths[keep] / lengths[keep].sum()
        self.rng = np.random.default_rng(seed)

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        p, n, hop = self.pairs, self.crop_frames, self.pairs.hop
        xs, mels = [], []
        for i in self.rng.choice(self.files, size=batch_size, p=self.weights):
            f0 = int(p.offsets[i]) // hop
            frames = int(p.offsets[i + 1] - p.offsets[i]) // hop
            s = f0 + int(self.rng.integers(0, frames - n + 1))
            g_db = self.rng.uniform(*self.augment.gain_db)
            x = p.audio[s * hop : (s + n) * hop].astype(np.float32) / 32767.0
            peak = float(np.abs(x).max()) * 10 ** (g_db / 20)
            if peak > self.augment.peak_limit:
                g_db -= 20 * np.log10(peak / self.augment.peak_limit)
            xs.append(x * 10 ** (g_db / 20))
            mel = p.mel[:, s : s + n].astype(np.float32) + g_db / 20 * np.log(10)
            mels.append(np.maximum(mel, self.floor))
        return (
            torch.from_numpy(np.stack(xs).astype(np.float32)),
            torch.from_numpy(np.stack(mels).astype(np.float32)),
        )


def build(
    codec_name: str,
    manifests: list[str],
    hours: float,
    workers: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> PairCorpus:
    """Pairs of the first ``hours`` of a seeded shuffle of the manifests' files."""
    codec = load_codec(codec_name)
    hop = codec.vocoder.cfg.mel.hop_length
    entries = [e for m in manifests for e in read_manifest(m)]
    if not entries:
        raise ValueError(f"no files in {manifests}")
    order = np.random.default_rng(seed).permutation(len(entries))
    chosen, total = [], 0.0
    for i in order:
        if total >= hours * 3600:
            break
        chosen.append(entries[int(i)])
        total += entries[int(i)].duration_s
    t0 = time.monotonic()
    audio, mels = [], []
    paths = [str(e.path) for e in chosen]
    with get_context("fork").Pool(workers, _init_worker, (codec_name,)) as pool:
        for a, m in tqdm(
            pool.imap(_work, paths), total=len(paths), desc="decoded mels", disable=not progress
        ):
            audio.append(a)
            mels.append(m)
    offsets = np.concatenate([[0], np.cumsum([a.shape[0] for a in audio])]).astype(np.int64)
    meta = {
        "codec": codec_name,
        "sampler": {
            "steps": codec.sampler.steps,
            "guidance": codec.sampler.guidance,
            "noise_scale": codec.sampler.noise_scale,
        },
        "manifests": [str(m) for m in manifests],
        "files": paths,
        "hop": hop,
        "seed": seed,
        "wall_s": round(time.monotonic() - t0, 1),
    }
    return PairCorpus(np.concatenate(audio), np.concatenate(mels, 1), offsets, hop, meta)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--codec",
        default="voice-700",
        help="voice codec (name or weights directory) whose decoder makes the mel",
    )
    p.add_argument("--out", required=True, type=Path, help="output .npz")
    p.add_argument(
        "--manifest",
        action="append",
        help="training manifest (repeatable); default: ../shared/data/train/speech",
    )
    p.add_argument("--hours", type=float, default=1.0, help="audio to code (files, shuffled)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    if not args.hours > 0:
        raise SystemExit(f"--hours must be > 0, got {args.hours}")
    if args.workers < 1:
        raise SystemExit(f"--workers must be >= 1, got {args.workers}")
    manifests = args.manifest or [
        str(Path(__file__).resolve().parents[2].parent / "shared/data/train/speech/manifest.tsv")
    ]
    pairs = build(args.codec, manifests, args.hours, args.workers, args.seed, not args.no_progress)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pairs.save(args.out)
    print(
        f"{len(pairs.offsets) - 1} files, {pairs.hours:.2f} h, decoded by {args.codec} in "
        f"{pairs.meta['wall_s']:.0f} s -> {args.out}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return recipe_main("streamcodec.training.vocoder_pairs", add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
