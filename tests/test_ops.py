"""Dispatch rules of streamcodec.ops: which path runs, argument checks, autograd, imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import triton_interpreting
from streamcodec.kernels.attention import attention_reference
from streamcodec.kernels.unet_step import group_norm_modulate_silu_reference

from streamcodec import ops

pytestmark = pytest.mark.filterwarnings(
    "ignore:Conversion of an array with ndim:DeprecationWarning"
)
interpreted = pytest.mark.skipif(not triton_interpreting(), reason="CPU interpreter only")


def _qkv(dtype=torch.float32, device="cpu", n_q=6, n_k=10, head_d=32):
    gen = torch.Generator().manual_seed(0)
    return tuple(
        torch.randn(1, 2, n, head_d, generator=gen).to(device=device, dtype=dtype)
        for n in (n_q, n_k, n_k)
    )


def _gn_args(dtype=torch.float32, device="cpu"):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 8, 6, generator=gen).to(device=device, dtype=dtype)
    kw = {"scale": torch.randn(2, 8, generator=gen), "shift": torch.randn(2, 8, generator=gen)}
    return x, {n: t.to(device=device, dtype=dtype) for n, t in kw.items()}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ops.DISABLE_ENV, raising=False)
    ops.reset_backend_counts()


def test_cpu_tensors_use_the_reference():
    q, k, v = _qkv()
    out = ops.attention(q, k, v, mask="block_causal", chunk_size=4, lookahead_chunks=1)
    assert ops.last_backend("attention") == "reference"
    want = attention_reference(q, k, v, mask="block_causal", chunk_size=4, lookahead_chunks=1)
    torch.testing.assert_close(out, want, atol=0, rtol=0)
    x, kw = _gn_args()
    y = ops.group_norm_modulate_silu(x, 4, **kw)
    assert ops.last_backend("group_norm_modulate_silu") == "reference"
    torch.testing.assert_close(y, group_norm_modulate_silu_reference(x, 4, **kw), atol=0, rtol=0)
    assert ops.backend_counts() == {
        ("attention", "reference"): 1,
        ("group_norm_modulate_silu", "reference"): 1,
    }


@interpreted
def test_force_triton_runs_the_kernel_on_cpu():
    q, k, v = _qkv()
    out = ops.attention(q, k, v, mask="causal", force_triton=True)
    assert ops.last_backend() == "triton"
    torch.testing.assert_close(out, attention_reference(q, k, v, mask="causal"))
    x, kw = _gn_args()
    ops.group_norm_modulate_silu(x, 4, **kw, force_triton=True)
    assert ops.last_backend("group_norm_modulate_silu") == "triton"


@interpreted
def test_kill_switch_forces_the_reference(monkeypatch):
    monkeypatch.setenv(ops.DISABLE_ENV, "1")
    q, k, v = _qkv()
    ops.attention(q, k, v, force_triton=True)
    assert ops.last_backend("attention") == "reference"
    x, kw = _gn_args()
    ops.group_norm_modulate_silu(x, 4, **kw, force_triton=True)
    assert ops.last_backend("group_norm_modulate_silu") == "reference"
    monkeypatch.setenv(ops.DISABLE_ENV, "0")
    ops.attention(q, k, v, force_triton=True)
    assert ops.last_backend("attention") == "triton"


def test_bf16_off_the_gpu_goes_to_the_reference():
    q, k, v = _qkv(torch.bfloat16)
    out = ops.attention(q, k, v, force_triton=True)
    assert ops.last_backend("attention") == "reference" and out.dtype == torch.bfloat16
    x, kw = _gn_args(torch.bfloat16)
    y = ops.group_norm_modulate_silu(x, 4, **kw, force_triton=True)
    assert ops.last_backend("group_norm_modulate_silu") == "reference" and y.dtype == torch.bfloat16


def test_unsupported_head_dim_and_dtype_go_to_the_reference():
    q, k, v = _qkv(head_d=48)
    ops.attention(q, k, v, force_triton=True)
    assert ops.last_backend("attention") == "reference"
    q, k, v = _qkv(torch.float64)
    ops.attention(q, k, v, force_triton=True)
    assert ops.last_backend("attention") == "reference"


def test_force_triton_without_interpreter_is_an_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    q, k, v = _qkv()
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        ops.attention(q, k, v, force_triton=True)


def test_gradients_use_the_reference_path(kernel_device):
    """Training calls the ops with requires_grad: the reference runs and backward works,
    also on CUDA tensors and with force_triton."""
    q, k, v = (t.requires_grad_() for t in _qkv(device=kernel_device))
    ops.attention(q, k, v, mask="causal", force_triton=True).square().sum().backward()
    assert ops.last_backend("attention") == "reference"
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (q, k, v))
    x, kw = _gn_args(device=kernel_device)
    w = torch.ones(8, device=kernel_device, requires_grad=True)
    ops.group_norm_modulate_silu(x, 4, weight=w, **kw, force_triton=True).sum().backward()
    assert ops.last_backend("group_norm_modulate_silu") == "reference" and w.grad is not None


@interpreted
def test_torch_compile_tracing_uses_the_reference(monkeypatch):
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    q, k, v = _qkv()
    ops.attention(q, k, v, force_triton=True)
    assert ops.last_backend("attention") == "reference"


@interpreted
def test_no_grad_context_allows_the_kernel():
    q, k, v = (t.requires_grad_() for t in _qkv())
    with torch.no_grad():
        ops.attention(q, k, v, force_triton=True)
    assert ops.last_backend("attention") == "triton"


@pytest.mark.parametrize(
    "kwargs, n_q, error",
    [
        ({"mask": "sliding"}, 6, ValueError),
        ({"mask": "block_causal"}, 6, ValueError),
        ({"mask": "block_causal", "chunk_size": 4, "lookahead_chunks": -1}, 6, ValueError),
        ({}, 12, ValueError),
    ],
    ids=["unknown-mask", "no-chunk-size", "negative-lookahead", "more-queries-than-keys"],
)
def test_attention_rejects_bad_arguments(kwargs, n_q, error):
    q, k, v = _qkv(n_q=n_q)
    with pytest.raises(error):
        ops.attention(q, k, v, **kwargs)


def test_attention_rejects_bad_shapes_and_types():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="shapes"):
        ops.attention(q, k[:, :1], v[:, :1])
    with pytest.raises(ValueError, match=r"\[B, H, N, D\]"):
        ops.attention(q[0], k, v)
    with pytest.raises(TypeError):
        ops.attention(q.half(), k, v)
    with pytest.raises(TypeError):
        ops.attention(q.long(), k.long(), v.long())


def test_group_norm_rejects_bad_arguments():
    x, kw = _gn_args()
    with pytest.raises(ValueError, match="num_groups"):
        ops.group_norm_modulate_silu(x, 3)
    with pytest.raises(ValueError, match="scale"):
        ops.group_norm_modulate_silu(x, 4, scale=torch.zeros(8))
    with pytest.raises(ValueError, match="residual"):
        ops.group_norm_modulate_silu(x, 4, residual=x[:, :, :2])
    with pytest.raises(ValueError, match=r"\[B, C, T\]"):
        ops.group_norm_modulate_silu(x[0], 4)
    with pytest.raises(TypeError):
        ops.group_norm_modulate_silu(x, 4, weight=torch.ones(8, dtype=torch.int64))


def test_ops_imports_without_the_audio_stack():
    """The GPU benchmark box has torch and triton but no PyAV/soxr: importing ops and
    the kernels must not import them (and must not need an installed package)."""
    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys, importlib.util; import streamcodec.ops; "
        "bad = {'av', 'soxr', 'streamcodec.audio'} & set(sys.modules); assert not bad, bad; "
        "assert importlib.util.find_spec('streamcodec.kernels.unet_step.kernel'); "
        "print(streamcodec.kernels.__file__)"
    )
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd="/", capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).parent == root / "kernels"


# --- compiled kernels on a GPU -------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_tensors_use_triton_unless_disabled(monkeypatch):
    q, k, v = _qkv(torch.float16, "cuda")
    ops.attention(q, k, v)
    assert ops.last_backend("attention") == "triton"
    x, kw = _gn_args(torch.bfloat16, "cuda")
    ops.group_norm_modulate_silu(x, 4, **kw)
    assert ops.last_backend("group_norm_modulate_silu") == "triton"
    monkeypatch.setenv(ops.DISABLE_ENV, "1")
    ops.attention(q, k, v)
    assert ops.last_backend("attention") == "reference"


@pytest.mark.gpu
def test_more_than_65535_batch_head_pairs_stay_on_triton():
    """(batch, head) pairs share grid axis 0 with the query blocks: no 65535 cap (the decoder's
    guided batch of 8192 streams x 2 x 6 heads has 98304 pairs)."""
    gen = torch.Generator().manual_seed(3)
    q, k, v = (
        torch.randn(16384, 6, n, 32, generator=gen).to("cuda", torch.float16) for n in (2, 5, 5)
    )
    out = ops.attention(q, k, v, mask="causal")
    assert ops.last_backend("attention") == "triton"
    want = attention_reference(q.float(), k.float(), v.float(), mask="causal")
    torch.testing.assert_close(out.float(), want, atol=2e-3, rtol=2e-3)
