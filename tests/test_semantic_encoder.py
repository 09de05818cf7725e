"""Semantic encoder: geometry, streamed == offline, block-causal look-ahead bound, bad inputs."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from streamcodec.semantic.config import SemanticEncoderConfig
from streamcodec.semantic.encoder import SemanticEncoder
from streamcodec.semantic.streaming import EncoderStream, extract_features

TOK = 320  # samples per 20 ms token


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny ops: one thread is several times faster than two on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_cfg(**kw) -> SemanticEncoderConfig:
    base = dict(
        d_model=64,
        n_heads=2,
        n_layers=3,
        lookahead_chunks=(1, 0, 1),
        segment_chunks=3,
        feature_layers=(1, 2),
    )
    base.update(kw)
    return SemanticEncoderConfig(**base)


@pytest.fixture(scope="module")
def enc() -> SemanticEncoder:
    torch.manual_seed(0)
    return SemanticEncoder(tiny_cfg()).eval()


def _stream(enc: SemanticEncoder, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    s = EncoderStream(enc, batch_size=x.shape[0])
    outs, i, k = [], 0, 0
    while i < x.shape[1]:
        n = sizes[k % len(sizes)]
        outs.append(s.push(x[:, i : i + n]))
        i, k = i + n, k + 1
    outs.append(s.flush())
    return torch.cat(outs, dim=1)


def test_config_latency_and_json_roundtrip() -> None:
    cfg = SemanticEncoderConfig()
    assert cfg.token_ms == 20 and cfg.chunk_ms == 40 and cfg.lookahead_ms == 40
    # 20 ms frames wait for their 40 ms chunk + 40 ms look-ahead; 80 ms frames span 2 chunks
    assert cfg.latency_ms(1) == 80 and cfg.latency_ms(2) == 80 and cfg.latency_ms(4) == 120
    assert SemanticEncoderConfig.from_dict(cfg.to_dict()) == cfg
    c2 = tiny_cfg()
    assert c2.total_lookahead_chunks == 2 and c2.latency_ms(2) == 40 + 80


@pytest.mark.parametrize(
    "kw",
    [
        {"d_model": 65},
        {"lookahead_chunks": (1, 0)},
        {"lookahead_chunks": (-1, 0, 0)},
        {"feature_layers": (3,)},
        {"segment_chunks": 1},
        {"mel_std": 0.0},
    ],
    ids=["width", "la-len", "la-neg", "feat-layer", "segment", "std"],
)
def test_config_rejects_bad_values(kw: dict) -> None:
    with pytest.raises(ValueError):
        tiny_cfg(**kw)


def test_config_from_dict_rejects_unknown_field() -> None:
    with pytest.raises(ValueError, match="unknown"):
        SemanticEncoderConfig.from_dict({**SemanticEncoderConfig().to_dict(), "bogus": 1})


def test_offline_shapes(enc: SemanticEncoder) -> None:
    x = torch.randn(2, 5 * TOK + 17) * 0.1
    f = extract_features(enc, x)
    assert f.shape == (2, 6, 64)
    assert torch.isfinite(f).all()


@pytest.mark.parametrize(
    "sizes",
    [[997], [160], [320, 77, 1000], [641], [7 * TOK]],
    ids=["997", "160", "mixed", "641", "2240"],
)
def test_streamed_equals_offline(enc: SemanticEncoder, sizes: list[int]) -> None:
    torch.manual_seed(1)
    # 1.1 s: several segments of 3 chunks, partial last token and chunk
    x = torch.randn(2, 17_000 + 123) * 0.1
    off = extract_features(enc, x)
    got = _stream(enc, x, sizes)
    assert got.shape == off.shape
    torch.testing.assert_close(got, off, atol=2e-5, rtol=1e-4)


def test_stream_cache_is_bounded(enc: SemanticEncoder) -> None:
    cfg = enc.cfg
    s = EncoderStream(enc)
    x = torch.randn(1, 60 * TOK) * 0.1
    for i in range(0, x.shape[1], 4 * TOK):
        s.push(x[:, i : i + 4 * TOK])
    bound = (2 * cfg.segment_chunks + max(cfg.lookahead_chunks)) * cfg.chunk_tokens
    assert max(st.k.shape[2] for st in s._layers) <= bound


def test_dense_pass_equals_offline_within_context() -> None:
    torch.manual_seed(2)
    e = SemanticEncoder(tiny_cfg(segment_chunks=40)).eval()
    x = torch.randn(1, 24 * TOK) * 0.1
    with torch.no_grad():
        dense = e.features_from_layers(e.forward_dense(e.wave_to_patches(x)))
    torch.testing.assert_close(dense, extract_features(e, x), atol=1e-5, rtol=1e-4)


def test_future_input_does_not_leak_beyond_lookahead(enc: SemanticEncoder) -> None:
    cfg = enc.cfg
    torch.manual_seed(3)
    x = torch.randn(1, 40 * TOK) * 0.1
    cut_chunk = 12  # perturb everything from this chunk on
    y = x.clone()
    y[:, cut_chunk * cfg.chunk_samples :] += torch.randn_like(y[:, cut_chunk * cfg.chunk_samples :])
    fx, fy = extract_features(enc, x), extract_features(enc, y)
    diff = (fx - fy).abs().amax(-1)[0]  # [N]
    # mel frames look back 30 ms, so the perturbation reaches the token holding the cut
    first_changed_chunk = cut_chunk
    safe_tokens = (first_changed_chunk - cfg.total_lookahead_chunks) * cfg.chunk_tokens
    assert diff[:safe_tokens].max() == 0.0
    # ... and the look-ahead is real: the chunk right before the safe bound does change
    assert diff[safe_tokens : safe_tokens + cfg.chunk_tokens].min() > 0
    assert diff[cut_chunk * cfg.chunk_tokens :].min() > 0


def test_segments_bound_the_past_context() -> None:
    torch.manual_seed(4)
    e = SemanticEncoder(tiny_cfg(lookahead_chunks=(0, 0, 0))).eval()
    cfg = e.cfg
    x = torch.randn(1, 30 * TOK) * 0.1
    y = x.clone()
    y[:, : cfg.chunk_samples] += 0.5  # change the first chunk only
    fx, fy = extract_features(e, x), extract_features(e, y)
    diff = (fx - fy).abs().amax(-1)[0]
    g = cfg.segment_chunks * cfg.chunk_tokens
    assert diff[:g].min() > 0  # segment 0 sees chunk 0
    assert diff[g : 2 * g].min() > 0  # segment 1 sees segment 0
    # each layer reaches one segment further back, so n_layers segments later it is gone
    assert diff[2 * g : cfg.n_layers * g].max() > 0
    assert diff[(cfg.n_layers + 1) * g :].max() == 0.0


def test_stream_bad_inputs(enc: SemanticEncoder) -> None:
    s = EncoderStream(enc, batch_size=1)
    with pytest.raises(ValueError):
        s.push(torch.zeros(2, 100))
    with pytest.raises(ValueError):
        s.push(torch.zeros(100))
    with pytest.raises(TypeError):
        s.push(torch.zeros(1, 100, dtype=torch.int16))
    with pytest.raises(TypeError):
        s.push([0.0] * 100)  # type: ignore[arg-type]
    s.flush()
    with pytest.raises(ValueError, match="flushed"):
        s.push(torch.zeros(1, 100))
    with pytest.raises(ValueError):
        EncoderStream(enc, batch_size=0)


def test_dense_rejects_partial_chunks(enc: SemanticEncoder) -> None:
    with pytest.raises(ValueError, match="chunks"):
        enc.forward_dense(torch.zeros(1, 3, enc.cfg.patch_dim))
    with pytest.raises(ValueError):
        enc.forward_dense(torch.zeros(1, 4, 7))
    with pytest.raises(ValueError):
        enc.patches(torch.zeros(1, 10, 8))


def test_feature_trunk_drops_unused_blocks_and_keeps_features() -> None:
    torch.manual_seed(0)
    cfg = SemanticEncoderConfig(
        d_model=32,
        n_heads=2,
        n_layers=4,
        lookahead_chunks=(1, 1, 0, 0),
        feature_layers=(0, 1),
        segment_chunks=4,
    )
    full = SemanticEncoder(cfg).eval()
    trunk = full.feature_trunk()
    assert trunk.cfg.n_layers == 2 and trunk.cfg.lookahead_chunks == (1, 1)
    assert len(trunk.blocks) == 2 and not trunk.training
    assert sum(p.numel() for p in trunk.parameters()) < sum(p.numel() for p in full.parameters())
    pcm = 0.1 * torch.randn(1, 16000)
    torch.testing.assert_close(extract_features(trunk, pcm), extract_features(full, pcm))
    # nothing to drop: the same module comes back
    last = SemanticEncoder(replace(cfg, feature_layers=(3,)))
    assert last.feature_trunk() is last
