"""Codebook assignment, k-means, tokenizer streaming and weights round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from streamcodec.semantic.codebook import Codebook, usage_stats
from streamcodec.semantic.config import FORMAT_VERSION, RATES, SemanticEncoderConfig
from streamcodec.semantic.encoder import SemanticEncoder
from streamcodec.semantic.tokenizer import (
    WEIGHTS_DIR,
    load_encoder,
    load_tokenizer,
    pool_tokens,
    save_codebooks,
    save_encoder,
)
from streamcodec.training.kmeans import KMeansConfig, kmeans_plus_plus, minibatch_kmeans


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory):
    """A tiny random encoder + random 64-entry codebooks for every rate, written to disk."""
    torch.manual_seed(0)
    cfg = SemanticEncoderConfig(
        d_model=64, n_heads=1, n_layers=2, lookahead_chunks=(1, 0), feature_layers=(0, 1)
    )
    enc = SemanticEncoder(cfg)
    d = tmp_path_factory.mktemp("semantic")
    save_encoder(enc, d, {"training": {"steps": 0}})
    save_codebooks({n: torch.randn(64, 64) for n in RATES}, d / "codebooks.safetensors")
    return d


def test_nearest_centroid_equals_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    c = torch.randn(300, 24, generator=g)
    x = torch.randn(5000, 24, generator=g)
    ids = Codebook(c).assign(x, block_rows=777)
    brute = torch.cdist(x.double(), c.double()).argmin(-1)
    assert torch.equal(ids, brute)
    assert torch.equal(Codebook(c).assign(x.view(50, 100, 24)), brute.view(50, 100))
    # one row at a time (a streaming push) gives the same ids as the batch
    cb = Codebook(c)
    rows = torch.stack([cb.assign(x[i : i + 1])[0] for i in range(200)])
    assert torch.equal(rows, brute[:200])
    # the search layout is derived, not saved: the state dict holds only the centroids
    assert set(cb.state_dict()) == {"centroids", "half_sq_norm"}


def test_codebook_rejects_bad_inputs() -> None:
    cb = Codebook(torch.randn(8, 4))
    with pytest.raises(ValueError):
        cb.assign(torch.randn(3, 5))
    with pytest.raises(ValueError):
        cb.embed(torch.tensor([8]))
    with pytest.raises(TypeError):
        cb.embed(torch.tensor([1.0]))
    with pytest.raises(ValueError):
        Codebook(torch.randn(1, 4))
    with pytest.raises(ValueError):
        Codebook(torch.tensor([[0.0, float("nan")], [1.0, 1.0]]))


def test_usage_stats() -> None:
    u = usage_stats(torch.arange(16).repeat(4), 32)
    assert u["used"] == 16 and abs(u["perplexity"] - 16) < 1e-6 and abs(u["usage"] - 0.5) < 1e-6
    assert usage_stats(torch.zeros(10, dtype=torch.long), 8)["perplexity"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        usage_stats(torch.zeros(0, dtype=torch.long), 8)


def test_kmeans_recovers_blobs() -> None:
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(12, 8, generator=g) * 10
    x = centers[torch.randint(12, (6000,), generator=g)] + 0.2 * torch.randn(6000, 8, generator=g)
    fit, stats = minibatch_kmeans(
        x, KMeansConfig(n_clusters=12, batch_size=1024, epochs=5, init_points=6000)
    )
    # every true centre has a fitted centroid close by, and vice versa
    d = torch.cdist(centers, fit)
    assert d.min(1).values.max() < 0.2 and d.min(0).values.max() < 0.2
    assert stats["used"] == 12 and stats["mse"] < 8 * 0.2**2 * 1.5


def test_kmeans_reseeds_dead_centroids() -> None:
    # 4 tight blobs; start with one centroid on blob 0 and 7 duplicates far away: the
    # first duplicate wins blobs 1-3, the other six win nothing and must be re-seeded
    g = torch.Generator().manual_seed(1)
    centers = torch.tensor([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0], [50.0, 50.0]])
    x = centers[torch.randint(4, (4000,), generator=g)] + 0.1 * torch.randn(4000, 2, generator=g)
    init = torch.tensor([[0.0, 0.0]] + [[500.0, 500.0]] * 7)
    cfg = KMeansConfig(n_clusters=8, batch_size=512, epochs=4, reseed_every=2, lloyd_final=False)
    fit, stats = minibatch_kmeans(x, cfg, init=init)
    assert stats["reseeded"] >= 2
    assert torch.cdist(centers, fit).min(1).values.max() < 1.0
    # the same start without re-seeding leaves blobs without a centroid of their own
    cfg_off = KMeansConfig(
        n_clusters=8, batch_size=512, epochs=4, reseed_every=10**9, lloyd_final=False
    )
    fit_off, stats_off = minibatch_kmeans(x, cfg_off, init=init)
    assert stats_off["reseeded"] == 0
    assert torch.cdist(centers, fit_off).min(1).values.max() > 10.0


def test_kmeans_plus_plus_and_bad_inputs() -> None:
    x = torch.randn(10, 3)
    with pytest.raises(ValueError):
        kmeans_plus_plus(x, 11, torch.Generator())
    with pytest.raises(ValueError):
        minibatch_kmeans(torch.tensor([[float("inf"), 0.0]] * 4), KMeansConfig(n_clusters=2))
    with pytest.raises(ValueError):
        KMeansConfig(n_clusters=1)


def test_pool_tokens() -> None:
    f = torch.arange(10.0).view(1, 10, 1)
    assert pool_tokens(f, 4)[0, :, 0].tolist() == [1.5, 5.5]


def test_weights_roundtrip(weights_dir) -> None:
    enc = load_encoder(weights_dir)
    cfg = json.loads((weights_dir / "config.json").read_text())
    assert cfg["format_version"] == FORMAT_VERSION and cfg["training"]["steps"] == 0
    x = torch.randn(1, 3200) * 0.1
    with torch.no_grad():
        a = enc.forward_dense(enc.wave_to_patches(x))[-1]
    assert torch.isfinite(a).all()


def test_config_version_is_checked(weights_dir, tmp_path) -> None:
    cfg = json.loads((weights_dir / "config.json").read_text())
    cfg["format_version"] = 999
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "encoder.safetensors").write_bytes(
        (weights_dir / "encoder.safetensors").read_bytes()
    )
    with pytest.raises(ValueError, match="format_version"):
        load_encoder(tmp_path)


@pytest.mark.parametrize("name", sorted(RATES))
def test_tokenizer_stream_equals_offline(weights_dir, name: str) -> None:
    tok = load_tokenizer(name, weights_dir)
    assert tok.frames_per_s == {"semantic-350": 12.5, "semantic-700": 25, "semantic-1400": 50}[name]
    rng = np.random.default_rng(0)
    pcm = (0.1 * rng.standard_normal(16000 + 555)).astype(np.float32)
    ids = tok.encode(pcm)
    assert ids.shape == (int(np.ceil(pcm.size / tok.frame_samples)),)
    assert ids.dtype == torch.int64 and int(ids.max()) < tok.vocab_size
    for push in (160, 640, 1111):
        s = tok.stream()
        got = [s.push(pcm[i : i + push]) for i in range(0, pcm.size, push)] + [s.flush()]
        assert torch.equal(torch.cat([g.ids for g in got]), ids)
        feats = torch.cat([g.features for g in got])
        torch.testing.assert_close(feats, tok.features(pcm), atol=2e-5, rtol=1e-4)


def test_tokenizer_latency(weights_dir) -> None:
    lat = {n: load_tokenizer(n, weights_dir).latency_ms for n in RATES}
    assert lat == {"semantic-350": 120.0, "semantic-700": 80.0, "semantic-1400": 80.0}


def test_tokenizer_bad_inputs(weights_dir, tmp_path) -> None:
    tok = load_tokenizer("semantic-700", weights_dir)
    with pytest.raises(TypeError):
        tok.encode(np.zeros(100, dtype=np.int16))
    with pytest.raises(ValueError):
        tok.encode(np.zeros((2, 100), dtype=np.float32))
    with pytest.raises(ValueError):
        tok.encode(np.array([0.0, np.nan], dtype=np.float32))
    with pytest.raises(ValueError, match="unknown"):
        load_tokenizer("semantic-9000", weights_dir)
    with pytest.raises(TypeError):
        load_tokenizer(700)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        load_tokenizer("semantic-700", tmp_path)


@pytest.mark.skipif(
    not (WEIGHTS_DIR / "codebooks.safetensors").exists(), reason="no shipped semantic weights"
)
def test_shipped_tokenizers_load_and_stream() -> None:
    cfg = json.loads((WEIGHTS_DIR / "config.json").read_text())
    assert cfg["format_version"] == FORMAT_VERSION and cfg["training"]["steps"] > 0
    rng = np.random.default_rng(0)
    pcm = (0.05 * rng.standard_normal(8000)).astype(np.float32)
    for name in RATES:
        tok = load_tokenizer(name)
        assert tok.vocab_size == 8192 and tok.latency_ms <= 120
        ids = tok.encode(pcm)
        s = tok.stream()
        got = [s.push(pcm[i : i + 640]).ids for i in range(0, pcm.size, 640)] + [s.flush().ids]
        assert torch.equal(torch.cat(got), ids)
