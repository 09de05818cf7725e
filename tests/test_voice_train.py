"""The voice codec training recipe on a tiny corpus and tiny random-init parts (CPU; seconds)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import streamcodec
from streamcodec.audio import save_audio
from streamcodec.cli.train import RECIPES, recipe_parser
from streamcodec.features import LogMel
from streamcodec.semantic.tokenizer import load_tokenizer
from streamcodec.training.codec_data import CodecCropSampler, build_feature_corpus, semantic_ids
from streamcodec.training.codec_trainer import PRESETS, CodecTrainer, drop_mask
from streamcodec.voice.tiny import tiny_config, write_tiny_weights


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("vtrain")
    rng = np.random.default_rng(1)
    data = root / "data"
    data.mkdir()
    lines = ["path\tduration_s\tspeaker\tlabel_or_transcript\tlicence\tsource"]
    for i, n in enumerate([8000, 24000, 30000, 5000, 20000]):
        t = np.arange(n) / 16000
        pcm = 0.3 * np.sin(2 * np.pi * (150 + 50 * i) * t) + 0.01 * rng.standard_normal(n)
        save_audio(data / f"a{i}.wav", pcm.astype(np.float32), 16000)
        lines.append(f"a{i}.wav\t{n / 16000}\ts{i}\t\tCC0\ttest")
    (data / "manifest.tsv").write_text("\n".join(lines) + "\n")
    return data / "manifest.tsv", write_tiny_weights(root / "parts")


def _train(argv: list[str]) -> None:
    parser, module = recipe_parser("codec")
    assert module.run(parser.parse_args(argv)) == 0


def test_recipe_registered() -> None:
    assert "codec" in RECIPES


def test_train_resume_export_and_init(setup: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, parts = setup
    out = tmp_path / "run"
    common = [
        "--preset", "tiny", "--config", "voice-700", "--manifest", str(manifest),
        "--semantic-weights", str(parts / "semantic"), "--vocoder-weights",
        str(parts / "mel-vocoder-voice"), "--device", "cpu", "--no-progress", "--no-plot",
        "--log-every", "1", "--cache-dir", str(tmp_path / "cache"), "--steps", "1",
    ]  # fmt: skip
    _train(["--out", str(out), "--max-steps", "2", *common])
    assert len(list((tmp_path / "cache").glob("semfeat-*.npz"))) == 1
    ck = torch.load(out / "last.pt", weights_only=True)
    assert json.loads(ck["counters"])["step"] == 2
    _train(["--out", str(out), "--max-steps", "3", *common])  # resumes (feature cache reused)
    ck2 = torch.load(out / "last.pt", weights_only=True)
    counters = json.loads(ck2["counters"])
    assert counters["step"] == 3 and len(counters["history"]) == 2
    with open(out / "losses.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["loss"]]
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    # the export is a loadable codec
    codec = streamcodec.load("voice-700", weights=out)
    assert codec.training_info["step"] == 3 and codec.sampler.steps == 1
    y = codec.decode(codec.encode(np.zeros(3000, np.float32)))
    assert np.all(np.isfinite(y))
    # pretend the initial weights took 10 h, so that the carried wall time is not lost in the
    # rounding of a tiny run's seconds to hours
    cfg_path = out / "config.json"
    meta = json.loads(cfg_path.read_text())
    meta["training"]["wall_hours"] = 10.0
    cfg_path.write_text(json.dumps(meta))
    out2 = tmp_path / "run2"
    _train(["--out", str(out2), "--init", str(out), "--max-steps", "4", *common])
    assert streamcodec.load("voice-700", weights=out2).training_info["step"] == 4
    # the totals carry on from the initial weights: audio seen and wall time
    counters3 = json.loads(torch.load(out2 / "last.pt", weights_only=True)["counters"])
    assert counters3["audio_s"] > counters["audio_s"] > 0
    assert counters3["wall_s"] > 10 * 3600
    # a fresh optimiser warms its learning rate up again (not full LR on Adam's first step)
    with open(out2 / "losses.csv") as fh:
        lr_after_init = {int(r["step"]): float(r["lr"]) for r in csv.DictReader(fh) if r["lr"]}
    assert lr_after_init[4] == float(rows[0]["lr"]) < float(rows[-1]["lr"])


def test_trainer_fits_one_batch(setup: tuple[Path, Path]) -> None:
    manifest, parts = setup
    tok = load_tokenizer("semantic-700", parts / "semantic")
    fc = build_feature_corpus([manifest], tok.encoder, cache_dir=None, progress=False)
    ids = semantic_ids(fc, tok.codebook, 2, "semantic-700", cache_dir=None)
    # features and ids equal what the streaming tokenizer gives for the whole file
    pcm = fc.corpus.file(1)
    torch.testing.assert_close(
        torch.from_numpy(ids[1]).long(), tok.encode(pcm)[: len(ids[1])], rtol=0, atol=0
    )
    sampler = CodecCropSampler(fc, ids, 2, 10, LogMel(tok.encoder.cfg.mel), seed=0)
    batch = sampler.sample(2)
    assert batch.feat.shape == (2, 10, 32) and batch.mel.shape == (2, 80, 40)
    torch.manual_seed(0)
    cfg = tiny_config("voice-700")
    train_cfg = replace(PRESETS["tiny"], lr=3e-3, p_uncond=0.0, p_frame_drop=0.0)
    tr = CodecTrainer(train_cfg, cfg, tok.codebook.centroids, torch.device("cpu"))
    tr.init_from_data([batch])
    first = tr.validate([batch], ema=False)
    for _ in range(20):
        tr.train_step(batch)
    assert tr.validate([batch], ema=False) < 0.95 * first


def test_crop_mel_equals_codec_frontend(setup: tuple[Path, Path]) -> None:
    """A crop's log-mel (with its true history) is what the encoder session computes."""
    manifest, parts = setup
    tok = load_tokenizer("semantic-700", parts / "semantic")
    fc = build_feature_corpus([manifest], tok.encoder, cache_dir=None, progress=False)
    ids = semantic_ids(fc, tok.codebook, 2, "semantic-700", cache_dir=None)
    mel = LogMel(tok.encoder.cfg.mel)
    n = len(ids[2])  # a crop of the whole file starts at frame 0
    b = CodecCropSampler(fc, ids, 2, n, mel, files=[2], seed=3).sample(1)
    pcm = torch.from_numpy(fc.corpus.file(2))[None]
    full = mel(pcm)[0]  # the file's last partial frame is zero-padded in the crop, as in the codec
    assert b.valid.all() and full.shape[1] <= 4 * n
    torch.testing.assert_close(b.mel[0, :, : full.shape[1]], full, rtol=0, atol=1e-4)
    tokens = torch.from_numpy(fc.file_tokens(2)[: 2 * n].astype(np.float32))
    torch.testing.assert_close(b.feat[0], tokens.view(n, 2, -1).mean(1))


def test_drop_mask() -> None:
    valid = torch.ones(200, 50, dtype=torch.bool)
    valid[:, 40:] = False
    g = torch.Generator().manual_seed(0)
    keep = drop_mask(valid, 0.1, 0.05, 3.0, g)
    assert not keep[:, 40:].any()
    whole = (~keep[:, :40]).all(1).float().mean().item()
    assert 0.05 < whole < 0.16
    partial = (~keep[:, :40]).float().mean().item()
    assert partial > whole  # spans drop frames beyond the whole-sequence drops
    assert drop_mask(valid, 0.0, 0.0, 3.0, g).equal(valid)
