"""The cached flow decoder: mask geometry, cached == uncached (training path), streamed ==
offline, determinism, concealment input, bad inputs (tiny random-init; CPU; seconds)."""

from __future__ import annotations

import pytest
import torch

from streamcodec import ops
from streamcodec.decoder import (
    DecoderConfig,
    DecoderStream,
    FlowDecoder,
    KVCache,
    SamplerConfig,
    generate,
    generate_uncached,
    two_stream_mask,
)

TOL = dict(rtol=0, atol=1e-4)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_decoder(
    chunk_token_frames: int = 2, context_chunks: int = 2, seed: int = 0
) -> FlowDecoder:
    torch.manual_seed(seed)
    cfg = DecoderConfig(
        n_mels=8, patch_frames=2, mel_frames_per_token=4, sem_vocab=50, dim=32, n_layers=2,
        n_heads=2, norm_groups=4, time_dim=16, cond_layers=1, cond_intermediate=32,
        chunk_token_frames=chunk_token_frames, context_chunks=context_chunks,
    )  # fmt: skip
    dec = FlowDecoder(cfg).eval()
    with torch.no_grad():  # zero-initialised output layers would hide most of the network
        for p in dec.parameters():
            if not p.abs().any():
                p.normal_(0.0, 0.3)
    return dec


def frames(n: int, seed: int = 1, lost: tuple[int, ...] = ()) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 50, (n,), generator=g)
    q = torch.rand(n, 5, generator=g) * 2 - 1
    keep = torch.ones(n, dtype=torch.bool)
    keep[list(lost)] = False
    return ids, q, keep


def test_two_stream_mask_geometry() -> None:
    m = two_stream_mask(n=6, chunk=2, window=1)  # 3 chunks, context of 1 chunk
    clean_clean, clean_noisy = m[:6, :6], m[:6, 6:]
    noisy_clean, noisy_noisy = m[6:, :6], m[6:, 6:]
    assert not clean_noisy.any()
    # clean chunk 2 sees clean chunks 1..2 only (window 1)
    assert clean_clean[4].tolist() == [False, False, True, True, True, True]
    # noisy chunk 2 sees clean chunk 1 and itself; noisy chunk 0 sees only itself
    assert noisy_clean[4].tolist() == [False, False, True, True, False, False]
    assert noisy_noisy[4].tolist() == [False, False, False, False, True, True]
    assert not noisy_clean[0].any() and noisy_noisy[1].tolist()[:2] == [True, True]


@pytest.mark.parametrize("guidance", [1.0, 2.5])
@pytest.mark.parametrize("chunk_frames,window", [(1, 2), (2, 1), (2, 8)])
def test_cached_decode_equals_uncached(guidance: float, chunk_frames: int, window: int) -> None:
    """The per-stream KV cache of the clean prefix gives what recomputing the whole prefix
    with the training path (two-stream sequence, masked attention) gives; the window binds
    for the short contexts."""
    dec = tiny_decoder(chunk_frames, window)
    ids, q, keep = frames(9, lost=(3,))
    s = SamplerConfig(steps=3, guidance=guidance, seed=5)
    a = generate(dec, ids, q, keep, s)
    b = generate_uncached(dec, ids, q, keep, s)
    assert a.shape == (8, 9 * 4)
    torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("pushes", [[1] * 9, [2, 3, 4], [9], [4, 0, 5]], ids=str)
@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_stream_equals_offline(pushes: list[int], guidance: float) -> None:
    dec = tiny_decoder(2, 2)
    ids, q, keep = frames(9, lost=(0, 4, 5))
    s = SamplerConfig(steps=2, guidance=guidance, seed=3)
    offline = generate(dec, ids, q, keep, s)
    st = DecoderStream(dec, s)
    out, i = [], 0
    for n in pushes:
        mel = st.push(ids[i : i + n], q[i : i + n], keep[i : i + n])
        assert mel.shape[1] == 4 * ((i + n) // 2 * 2 - i // 2 * 2)  # whole chunks only
        out.append(mel)
        i += n
    assert st.pending_frames == 1
    out.append(st.flush())
    torch.testing.assert_close(torch.cat(out, 1), offline, **TOL)
    assert st.flush().shape[1] == 0
    with pytest.raises(ValueError):
        st.push(ids[:1], q[:1])


def test_long_stream_cache_stays_bounded() -> None:
    dec = tiny_decoder(1, 3)
    st = DecoderStream(dec, SamplerConfig(steps=1))
    ids, q, _ = frames(40)
    for i in range(40):
        st.push(ids[i : i + 1], q[i : i + 1])
    cache = st._cache
    # one scratch chunk + a ring of context_chunks (3) chunks of chunk_tokens (2) patches
    assert cache.chunks == 39 and all(k.shape[2] == (1 + 3) * 2 for k in cache.k)


def test_seed_determinism_and_conditioning_matters() -> None:
    dec = tiny_decoder()
    ids, q, keep = frames(6)
    a = generate(dec, ids, q, keep, SamplerConfig(steps=2, seed=0))
    assert torch.equal(a, generate(dec, ids, q, keep, SamplerConfig(steps=2, seed=0)))
    assert not torch.allclose(a, generate(dec, ids, q, keep, SamplerConfig(steps=2, seed=1)))
    ids2 = (ids + 1) % 50
    assert not torch.allclose(a, generate(dec, ids2, q, keep, SamplerConfig(steps=2, seed=0)))
    # a lost frame (null condition) changes that frame's output but nothing before it
    lost = keep.clone()
    lost[4] = False
    b = generate(dec, ids, q, lost, SamplerConfig(steps=2, seed=0))
    torch.testing.assert_close(a[:, :16], b[:, :16], rtol=0, atol=0)
    assert not torch.allclose(a[:, 16:], b[:, 16:])


def test_decoder_goes_through_the_dispatch_point() -> None:
    dec = tiny_decoder()
    ids, q, keep = frames(4)
    ops.reset_backend_counts()
    generate(dec, ids, q, keep, SamplerConfig(steps=2))
    counts = ops.backend_counts()
    assert counts.get(("attention", "reference"), 0) > 0
    assert counts.get(("group_norm_modulate_silu", "reference"), 0) > 0


def test_training_path_gradients_reach_every_part() -> None:
    dec = tiny_decoder()
    dec.train()
    ids, q, keep = frames(4)
    q = q.clone().requires_grad_(True)
    cond, _ = dec.cond(ids[None], q[None], keep[None])
    x = torch.randn(1, 8, dec.cfg.patch_dim)
    v = dec.forward_two_stream(x, torch.randn_like(x), torch.rand(1, 8), cond)
    v.square().mean().backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert dec.cond.sem_proj.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in dec.blocks.parameters())


def test_patches_round_trip_and_normalisation() -> None:
    dec = tiny_decoder()
    mel = torch.randn(2, 8, 12)
    torch.testing.assert_close(dec.from_patches(dec.to_patches(mel)), mel, rtol=0, atol=0)
    torch.testing.assert_close(dec.denormalise(dec.normalise(mel)), mel)


def test_bad_inputs() -> None:
    dec = tiny_decoder()
    ids, q, keep = frames(4)
    with pytest.raises(ValueError):
        generate(dec, ids, q[:, :4], keep)
    with pytest.raises(ValueError):
        generate(dec, torch.tensor([50, 1, 2, 3]), q, keep)
    with pytest.raises(ValueError):
        generate(dec, ids, q, keep[:3])
    with pytest.raises(ValueError):
        SamplerConfig(steps=0)
    with pytest.raises(ValueError):
        SamplerConfig(guidance=-1.0)
    c = dec.cfg.chunk_tokens
    x = torch.zeros(1, c + 1, dec.cfg.patch_dim)
    with pytest.raises(ValueError):
        dec.forward_cached(x, torch.zeros(1, 1, dec.mod_width), torch.zeros(1, c + 1, 7 * 32),
                           KVCache.empty(2), n_clean=1)  # fmt: skip
    with pytest.raises(ValueError):
        DecoderConfig(mel_frames_per_token=3, patch_frames=2)
    with pytest.raises(ValueError):
        DecoderConfig.from_dict({"nope": 1})
    assert DecoderConfig.from_dict(dec.cfg.to_dict()) == dec.cfg
    assert generate(dec, ids[:0], q[:0], keep[:0]).shape == (8, 0)
