"""Decoded-mel pairs (``streamcodec train vocoder-pairs``) and vocoder fine-tuning on them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from streamcodec.audio import save_audio
from streamcodec.cli.train import recipe_parser
from streamcodec.features import LogMel, MelConfig
from streamcodec.training.vocoder_pairs import PairCorpus, PairSampler, build, decode_mel
from streamcodec.voice.codec import VoiceCodec
from streamcodec.voice.tiny import write_tiny_weights


def _manifest(root: Path, seconds: tuple[float, ...] = (1.0, 0.7, 1.3)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = ["path\tduration_s\tspeaker\tlabel_or_transcript\tlicence\tsource"]
    for i, s in enumerate(seconds):
        n = int(s * 16000) + 37  # not a whole number of hops
        t = np.arange(n) / 16000
        pcm = 0.2 * np.sin(2 * np.pi * (120 + 40 * i) * t) + 0.02 * rng.standard_normal(n)
        save_audio(root / f"f{i}.wav", pcm.astype(np.float32), 16000)
        lines.append(f"f{i}.wav\t{n / 16000:.4f}\ts{i}\t\tCC0\ttest")
    (root / "manifest.tsv").write_text("\n".join(lines) + "\n")
    return root / "manifest.tsv"


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_weights(tmp_path_factory.mktemp("tiny") / "voice-700")


def test_decoded_mel_is_what_the_codec_vocodes(tiny_weights: Path) -> None:
    codec = VoiceCodec(weights=tiny_weights)
    x = (0.1 * np.random.default_rng(1).standard_normal(16000 + 37)).astype(np.float32)
    mel = decode_mel(codec, x)
    hop = codec.vocoder.cfg.mel.hop_length
    assert mel.shape == (codec.vocoder.cfg.mel.n_mels, x.size // hop)
    # the codec's own decode = the vocoder on this mel, after the vocoder's delay
    y = codec.decode(codec.encode(x))
    with torch.inference_mode():
        z = codec.vocoder.synthesize(mel[None])[0].numpy()
    # (the codec decodes whole token frames: past the mel's last frames its vocoder has
    # more input than this synthesis, so the last window's overlap-add differs)
    d, n = codec.delay_samples, (mel.shape[1] - 4) * hop
    assert y.size >= d + n and z.size >= n
    np.testing.assert_allclose(y[d : d + n], z[:n], atol=1e-4)


def test_build_save_load_and_sample(tiny_weights: Path, tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "data")
    pairs = build(str(tiny_weights), [str(manifest)], hours=1.0, workers=1, progress=False)
    hop = pairs.hop
    assert len(pairs.offsets) == 4 and np.all(pairs.offsets % hop == 0)
    assert pairs.mel.shape[1] * hop == pairs.audio.shape[0] == pairs.offsets[-1]
    assert pairs.mel.dtype == np.float16 and pairs.audio.dtype == np.int16
    assert pairs.meta["codec"] == str(tiny_weights) and len(pairs.meta["files"]) == 3
    pairs.save(tmp_path / "pairs.bin")  # any name: nothing appended
    back = PairCorpus.load(tmp_path / "pairs.bin")
    assert np.array_equal(back.mel, pairs.mel) and back.meta == pairs.meta
    # only as many files as --hours asks for (at least one)
    few = build(str(tiny_weights), [str(manifest)], hours=1e-4, workers=1, progress=False)
    assert len(few.offsets) == 2


def test_sampler_crops_are_aligned_and_gain_shifts_the_log_mel() -> None:
    """With the real log-mel as the 'decoded' mel, a crop's mel must be the log-mel of its
    audio (past the framing history the crop lacks), at any random gain."""
    cfg = MelConfig()
    rng = np.random.default_rng(2)
    files = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000, 9600, 12800)]
    lm = LogMel(cfg)
    mels = [lm(torch.from_numpy(f)[None])[0].numpy() for f in files]
    audio = np.concatenate([np.round(f * 32767).astype(np.int16) for f in files])
    offsets = np.concatenate([[0], np.cumsum([f.size for f in files])])
    pairs = PairCorpus(
        audio, np.concatenate(mels, 1).astype(np.float16), offsets, cfg.hop_length, {}
    )
    sampler = PairSampler(pairs, crop_frames=40, log_floor=cfg.log_floor, seed=3)
    x, mel = sampler.sample(6)
    assert x.shape == (6, 40 * cfg.hop_length) and mel.shape == (6, cfg.n_mels, 40)
    assert x.dtype == mel.dtype == torch.float32 and float(x.abs().max()) <= 0.99 + 1e-6
    hist = cfg.history_samples // cfg.hop_length
    np.testing.assert_allclose(lm(x)[:, :, hist:], mel[:, :, hist:], atol=2e-2)
    with pytest.raises(ValueError, match="no file in the pairs has 200 mel frames"):
        PairSampler(pairs, crop_frames=200, log_floor=cfg.log_floor)


def test_trainer_takes_the_given_mel() -> None:
    from streamcodec.training.vocoder_gan import PRESETS, Trainer

    tr = Trainer(PRESETS["tiny"], torch.device("cpu"), bf16=False)
    x = torch.randn(2, 4000) * 0.1
    mel = tr.logmel(x)
    a, _ = tr.generate(x, noisy=False, mel=mel + 1.0)
    b, _ = tr.generate(x, noisy=False)
    assert not torch.allclose(a, b)
    c, _ = tr.generate(x, noisy=True, mel=mel)  # a given mel is used as is: no noise
    assert torch.allclose(c, b)
    with pytest.raises(ValueError, match="26 mel frames need 4160 samples, x has 4000"):
        tr.generate(x, noisy=False, mel=torch.zeros(2, mel.shape[1], 26))


def test_train_vocoder_on_pairs(tiny_weights: Path, tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "data")
    pairs_path = tmp_path / "pairs.npz"
    parser, module = recipe_parser("vocoder-pairs")
    argv = ["--codec", str(tiny_weights), "--out", str(pairs_path), "--manifest", str(manifest)]
    assert module.run(parser.parse_args([*argv, "--workers", "1", "--no-progress"])) == 0
    with pytest.raises(ValueError, match="'codec2-700c' is not a voice codec"):
        build("codec2-700c", [str(manifest)], hours=1.0, progress=False)
    with pytest.raises(SystemExit, match="--hours must be > 0, got 0.0"):
        module.run(parser.parse_args([*argv, "--hours", "0"]))
    parser, module = recipe_parser("vocoder")
    out = tmp_path / "run"
    common = ["--preset", "tiny", "--manifest", str(manifest), "--device", "cpu", "--out", str(out)]
    common += ["--no-progress", "--no-plot", "--log-every", "1", "--cache-dir", "none"]
    args = parser.parse_args([*common, "--max-steps", "3", "--pairs", str(pairs_path)])
    assert module.run(args) == 0
    ck = torch.load(out / "last.pt", weights_only=True)
    session = json.loads(ck["counters"])["history"][-1]
    assert session["pairs"] == str(pairs_path) and session["pairs_ratio"] == 0.75
    with open(out / "losses.csv") as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == [1, 2, 3]
    with pytest.raises(SystemExit, match=r"--pairs-ratio must be in \[0, 1\], got 1.5"):
        module.run(parser.parse_args([*common, "--pairs", str(pairs_path), "--pairs-ratio", "1.5"]))
    with pytest.raises(SystemExit, match="--pairs: no such file"):
        module.run(parser.parse_args([*common, "--pairs", str(tmp_path / "nope.npz")]))
