"""fp16-weight CPU linear layers: nn.Linear's results, never stale, never used for autograd."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from streamcodec import packed_linear
from streamcodec.packed_linear import PackedLinear, pack_linears

pytestmark = pytest.mark.skipif(
    not packed_linear.available(), reason="this torch build has no fbgemm fp16 linear"
)


def fp16_exact_mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(24, 40), nn.GELU(), nn.Linear(40, 8, bias=False))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p.half().float())
    return m


def test_packed_matches_linear_and_keeps_parameters() -> None:
    ref = fp16_exact_mlp()
    m = copy.deepcopy(ref)
    assert pack_linears(m) == 2
    assert all(type(x) is PackedLinear for x in (m[0], m[2]))
    assert list(m.state_dict()) == list(ref.state_dict())
    x = torch.randn(3, 5, 24)
    with torch.inference_mode():
        got, want = m(x), ref(x)
    assert m[0].packer.packed and m[2].packer.packed  # the fbgemm path ran
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert not torch.equal(got, torch.zeros_like(got))


def test_weights_not_exact_in_fp16_are_not_packed() -> None:
    torch.manual_seed(1)
    lin = nn.Linear(16, 16)  # fp32 init: not representable in fp16
    ref = copy.deepcopy(lin)
    wrapped = nn.Sequential(lin)
    pack_linears(wrapped)
    x = torch.randn(4, 16)
    with torch.no_grad():
        assert torch.equal(wrapped(x), ref(x))
    assert not wrapped[0].packer.packed


def test_in_place_weight_change_repacks_and_grad_uses_linear() -> None:
    m = fp16_exact_mlp()
    pack_linears(m)
    x = torch.randn(2, 24)
    with torch.no_grad():
        before = m(x)
        m[0].weight.mul_(2.0)  # still fp16-exact: must be repacked, not served stale
        after = m(x)
        ref = nn.functional.linear(nn.functional.gelu(m[0](x)), m[2].weight)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, ref, rtol=0, atol=1e-5)
    y = m(x.requires_grad_())  # autograd: plain F.linear
    y.sum().backward()
    assert m[0].weight.grad is not None and m[0].weight.grad.abs().sum() > 0


def test_copies_and_pickles_drop_the_packed_handle() -> None:
    m = fp16_exact_mlp()
    pack_linears(m)
    x = torch.randn(2, 24)
    with torch.inference_mode():
        want = m(x)
        for other in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
            assert not other[0].packer.packed  # repacked from its own weight on first use
            torch.testing.assert_close(other(x), want, rtol=0, atol=0)


def test_env_turns_packing_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(packed_linear.DISABLE_ENV, "0")
    m = fp16_exact_mlp()
    assert pack_linears(m) == 0 and type(m[0]) is nn.Linear


def test_weight_packer_on_a_view_repacks_when_its_owner_changes() -> None:
    """A conv weight used as a GEMM matrix (the vocoder's embedding on short chunks)."""
    torch.manual_seed(2)
    conv = nn.Conv1d(6, 10, 3)
    with torch.no_grad():
        conv.weight.copy_(conv.weight.half().float())
    packer = packed_linear.WeightPacker()
    x = torch.randn(1, 4, 18)
    with torch.inference_mode():
        got = packer.linear(x, conv.weight.flatten(1), conv.bias, owner=conv.weight)
        want = nn.functional.linear(x, conv.weight.flatten(1), conv.bias)
        assert packer.packed
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    with torch.no_grad():
        conv.weight.mul_(0.5)  # in place, through the parameter the view came from
    with torch.inference_mode():
        got = packer.linear(x, conv.weight.flatten(1), conv.bias, owner=conv.weight)
        want = nn.functional.linear(x, conv.weight.flatten(1), conv.bias)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    copied = copy.deepcopy(packer)
    assert not copied.packed and packer.packed
