"""MAE pretraining: masking never leaks, the loss learns, the recipe trains, resumes, exports."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from streamcodec.audio import save_audio
from streamcodec.semantic.tokenizer import load_encoder
from streamcodec.training.mae import MAE, PRESETS, MAEConfig, load_corpus, lr_at, train_mae


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(**kw) -> MAEConfig:
    return MAEConfig(**{**PRESETS["tiny"], "crop_s": 0.8, **kw})


def test_masked_patches_never_reach_the_model() -> None:
    torch.manual_seed(0)
    m = MAE(tiny()).eval()
    cfg = m.cfg
    n = cfg.crop_chunks * cfg.encoder.chunk_tokens
    patches = torch.randn(2, n, cfg.encoder.patch_dim)
    visible = m.sample_visible(2, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert visible.shape == (2, cfg.visible_chunks)
    with torch.no_grad():
        pred, masked = m.predict(patches, visible)
        changed = patches + 5.0 * masked[:, :, None] * torch.randn_like(patches)
        pred2, _ = m.predict(changed, visible)
        assert torch.equal(pred, pred2)
        # a visible patch does matter
        vis_changed = patches + 5.0 * (~masked)[:, :, None] * torch.randn_like(patches)
        assert not torch.allclose(pred, m.predict(vis_changed, visible)[0])
    assert int((~masked).sum()) == 2 * cfg.visible_chunks * cfg.encoder.chunk_tokens


def test_loss_decreases_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    m = MAE(tiny())
    t = torch.linspace(0, 1, m.cfg.crop_samples)
    wav = torch.stack([0.3 * torch.sin(2 * torch.pi * f * t) for f in (300.0, 900.0)])
    wav = wav * (1 + torch.sin(2 * torch.pi * 3 * t))  # amplitude modulation: some structure
    patches = m.encoder.wave_to_patches(wav)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(25):
        loss = m(patches, m.sample_visible(2, torch.device("cpu"), gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        tiny(mask_ratio=1.0)
    with pytest.raises(ValueError):
        tiny(crop_s=0.81)  # not whole 40 ms chunks
    with pytest.raises(ValueError):
        tiny(crop_s=20.0)  # longer than the encoder's inference context


def test_lr_schedule() -> None:
    cfg = tiny(lr=1.0, warmup_steps=10, max_steps=110, time_budget_s=1e9, min_lr_frac=0.1)
    assert lr_at(cfg, 0, 0) == pytest.approx(0.1)
    assert lr_at(cfg, 10, 0) == pytest.approx(0.1 + 0.45 * (1 + np.cos(np.pi * 10 / 110)))
    assert lr_at(cfg, 110, 0) == pytest.approx(0.1)
    # the wall-time budget also drives the decay
    assert lr_at(tiny(lr=1.0, warmup_steps=0, time_budget_s=10.0), 5, 10.0) == pytest.approx(0.05)


def _synthetic_manifest(folder: Path, n: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    lines = ["path\tduration_s\tspeaker\tlabel_or_transcript\tlicence\tsource"]
    for i in range(n):
        pcm = (0.1 * rng.standard_normal(16000 + 1000 * i)).astype(np.float32)
        save_audio(folder / f"f{i}.wav", pcm)
        lines.append(f"f{i}.wav\t{pcm.size / 16000:.3f}\ts{i}\t\tCC0-1.0\tsynthetic")
    (folder / "manifest.tsv").write_text("\n".join(lines) + "\n")
    return folder


def test_train_resume_and_export(tmp_path: Path) -> None:
    speech = _synthetic_manifest(tmp_path / "speech", 3, 0)
    noise = _synthetic_manifest(tmp_path / "noise", 2, 1)
    out = tmp_path / "run"
    cfg = tiny(max_steps=3, time_budget_s=60.0)
    kw = dict(device="cpu", progress=False, cache_dir=None)
    export = train_mae(cfg, out, [speech], [noise], **kw)
    enc = load_encoder(export)
    assert enc.cfg == cfg.encoder.__class__.from_dict(enc.cfg.to_dict())
    assert enc.cfg.mel_std != MAEConfig().encoder.mel_std  # measured on the data
    state = torch.load(out / "ckpt.pt", weights_only=False)
    assert state["step"] == 3
    # resuming continues from the checkpoint up to the new step budget
    train_mae(tiny(max_steps=5, time_budget_s=60.0), out, [speech], [noise], **kw)
    assert torch.load(out / "ckpt.pt", weights_only=False)["step"] == 5
    rows = list(csv.DictReader((out / "loss.csv").open()))
    assert rows and all(np.isfinite(float(r["loss"])) for r in rows)
    assert sorted(p.name for p in export.iterdir()) == ["config.json", "encoder.safetensors"]


def test_parallel_decode_equals_cached(tmp_path: Path) -> None:
    m = _synthetic_manifest(tmp_path / "a", 3, 2)
    a = load_corpus([m], workers=0, cache_dir=None)
    b = load_corpus([m, m], workers=2)
    assert np.array_equal(np.concatenate([a.audio, a.audio]), b.audio)
    assert b.offsets[-1] == 2 * a.offsets[-1] and len(b) == 6


def test_bf16_autocast_step() -> None:
    """The CUDA recipe trains under bf16 autocast; CPU autocast exercises the same casts."""
    torch.manual_seed(0)
    m = MAE(tiny())
    patches = m.encoder.wave_to_patches(torch.randn(2, m.cfg.crop_samples) * 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = m(patches, m.sample_visible(2, torch.device("cpu"), None))
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(p.grad is not None for p in m.encoder.parameters())
