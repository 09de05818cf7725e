"""FSQ and the causal acoustic encoder (tiny random-init; CPU; seconds)."""

from __future__ import annotations

import pytest
import torch

from streamcodec.acoustic import FSQ, AcousticEncoder, AcousticEncoderConfig


def _inside_bin(fsq: FSQ, codes: torch.Tensor) -> torch.Tensor:
    """An encoder output whose bounded value lies inside each code's rounding bin."""
    r = fsq.codes_to_vectors(codes) * fsq._hw  # integer levels
    b = torch.where(r < 0, r + 0.3, r - 0.2)
    return torch.atanh((b + fsq._offset) / fsq._half) - fsq._shift


def test_fsq_codebook_size_and_bits() -> None:
    fsq = FSQ((8, 8, 8, 4, 4))
    assert fsq.codebook_size == 8192 and fsq.bits == 13 and fsq.dim == 5
    assert FSQ((3, 5)).codebook_size == 15 and FSQ((3, 5)).bits == 4


@pytest.mark.parametrize("levels", [(8, 8, 8, 4, 4), (3, 5, 4), (2, 7)], ids=str)
def test_fsq_codes_in_range_and_round_trip(levels: tuple[int, ...]) -> None:
    fsq = FSQ(levels)
    z = torch.randn(4000, fsq.dim) * 3
    q, codes = fsq(z)
    assert codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < fsq.codebook_size
    assert q.abs().max() <= 1.0
    # the values the codes stand for are exactly the quantised values
    torch.testing.assert_close(fsq.codes_to_vectors(codes), q, rtol=0, atol=1e-6)
    # an input inside the code's bin gives the code back
    _, codes2 = fsq(_inside_bin(fsq, codes))
    assert torch.equal(codes2, codes)


def test_fsq_every_code_reachable() -> None:
    fsq = FSQ((8, 8, 8, 4, 4))
    all_codes = torch.arange(fsq.codebook_size)
    _, codes = fsq(_inside_bin(fsq, all_codes))
    assert torch.equal(codes, all_codes)
    v = fsq.codes_to_vectors(all_codes)
    assert torch.unique(v, dim=0).shape[0] == fsq.codebook_size


def test_fsq_straight_through_gradient() -> None:
    fsq = FSQ((8, 4))
    z = torch.randn(10, 2, requires_grad=True)
    q, _ = fsq(z)
    q.sum().backward()
    assert z.grad is not None and z.grad.abs().min() > 0


def test_fsq_bad_inputs() -> None:
    with pytest.raises(ValueError):
        FSQ(())
    with pytest.raises(ValueError):
        FSQ((8, 1))
    fsq = FSQ((8, 4))
    with pytest.raises(ValueError):
        fsq(torch.zeros(3, 5))
    with pytest.raises(ValueError):
        fsq.codes_to_vectors(torch.tensor([32]))
    with pytest.raises(TypeError):
        fsq.codes_to_vectors(torch.tensor([1.0]))


def _tiny_encoder() -> AcousticEncoder:
    torch.manual_seed(0)
    cfg = AcousticEncoderConfig(sem_dim=16, n_mels=8, mel_frames_per_token=4, dim=24,
                                intermediate_dim=32, num_layers=2, kernel_size=3)  # fmt: skip
    return AcousticEncoder(cfg).eval()


@pytest.mark.parametrize("pushes", [[1] * 11, [3, 5, 3], [11], [2, 0, 9]], ids=str)
def test_acoustic_stream_equals_offline(pushes: list[int]) -> None:
    enc = _tiny_encoder()
    f = sum(pushes)
    feat, cen = torch.randn(1, f, 16), torch.randn(1, f, 16)
    mel = torch.randn(1, 8, 4 * f)
    with torch.no_grad():
        q_all, c_all, _ = enc(feat, cen, mel)
        state, qs, cs, i = None, [], [], 0
        for n in pushes:
            q, c, state = enc(
                feat[:, i : i + n], cen[:, i : i + n], mel[:, :, 4 * i : 4 * (i + n)], state
            )
            qs.append(q)
            cs.append(c)
            i += n
    torch.testing.assert_close(torch.cat(qs, 1), q_all, rtol=0, atol=1e-5)
    assert torch.equal(torch.cat(cs, 1), c_all)


def test_acoustic_is_causal() -> None:
    enc = _tiny_encoder()
    feat, cen, mel = torch.randn(1, 8, 16), torch.randn(1, 8, 16), torch.randn(1, 8, 32)
    feat2 = feat.clone()
    feat2[:, 5:] += 1.0
    with torch.no_grad():
        _, c1, _ = enc(feat, cen, mel)
        _, c2, _ = enc(feat2, cen, mel)
    assert torch.equal(c1[:, :5], c2[:, :5])


def test_acoustic_bad_shapes() -> None:
    enc = _tiny_encoder()
    with pytest.raises(ValueError):
        enc(torch.randn(1, 3, 16), torch.randn(1, 3, 15), torch.randn(1, 8, 12))
    with pytest.raises(ValueError):
        enc(torch.randn(1, 3, 16), torch.randn(1, 3, 16), torch.randn(1, 8, 11))
    cfg = AcousticEncoderConfig(fsq_levels=(8, 4))
    assert AcousticEncoderConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        AcousticEncoderConfig.from_dict({"bogus": 1})
