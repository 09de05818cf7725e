"""The one dispatch point for the hot-path kernels: models call only these functions.

Rules (design note TRITON.md §6):

- a CUDA tensor goes to the Triton kernel when triton imports and the dtype
  (fp16/bf16/fp32) and shape are supported, and no input needs a gradient
  (the kernels are forward-only);
- everything else goes to the torch reference in ``streamcodec.kernels.*.reference``,
  which is also the production CPU path and the autograd path;
- inside ``torch.compile`` tracing the reference is used too (Inductor fuses it);
- ``STREAMCODEC_DISABLE_TRITON=1`` forces the reference;
- ``force_triton=True`` (tests only) runs the kernel on CPU tensors through
  Triton's interpreter (``TRITON_INTERPRET=1`` must be set before triton is
  imported); bf16 still goes to the reference off the GPU, because the
  interpreter computes bf16 on raw bit patterns (triton-lang/triton#11584).

Kernel modules (and triton itself) are imported on first use only.
:func:`last_backend` and :func:`backend_counts` say which path ran.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from collections import Counter
from types import ModuleType

import torch

from streamcodec.kernels.attention.reference import MASKS, attention_reference
from streamcodec.kernels.unet_step.reference import group_norm_modulate_silu_reference

log = logging.getLogger(__name__)

DISABLE_ENV = "STREAMCODEC_DISABLE_TRITON"
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
ATTENTION_HEAD_DIMS = (32, 64, 128)
MAX_GRID_X = 2**31 - 1  # CUDA limit on the first grid dimension (attention's only axis)

_counts: Counter[tuple[str, str]] = Counter()
_last: dict[str, str] = {}


def last_backend(op: str | None = None) -> str | None:
    """ "triton" or "reference" for the last call of ``op`` ("attention",
    "group_norm_modulate_silu"), or of any op when ``op`` is None."""
    return _last.get(op or "*")


def backend_counts() -> dict[tuple[str, str], int]:
    """Calls so far per (op, backend)."""
    return dict(_counts)


def reset_backend_counts() -> None:
    _counts.clear()
    _last.clear()


def _record(op: str, backend: str) -> None:
    _counts[(op, backend)] += 1
    _last[op] = backend
    _last["*"] = backend


@functools.cache
def triton_available() -> bool:
    """True when triton imports (checked once)."""
    try:
        importlib.import_module("triton")
    except Exception as exc:  # ImportError, or a broken install raising anything else
        log.info("triton unavailable, kernels use the torch reference: %s", exc)
        return False
    return True


def triton_disabled() -> bool:
    """True when ``STREAMCODEC_DISABLE_TRITON`` is set to anything but ''/'0'."""
    return os.environ.get(DISABLE_ENV, "") not in ("", "0")


_KERNELS: dict[str, ModuleType] = {}


def _kernel_module(name: str) -> ModuleType:
    module = _KERNELS.get(name)
    if module is None:
        module = _KERNELS[name] = importlib.import_module(f"streamcodec.kernels.{name}.kernel")
    return module


def _use_triton(main: torch.Tensor, others: tuple[torch.Tensor | None, ...], force: bool) -> bool:
    """Dispatch decision shared by all ops; ``main`` is the input whose dtype/device decide."""
    if not (main.is_cuda or force):  # the CPU production path: decided without env lookups
        return False
    if main.dtype not in TRITON_DTYPES or triton_disabled() or torch.compiler.is_compiling():
        return False
    if torch.is_grad_enabled() and (
        main.requires_grad or any(t is not None and t.requires_grad for t in others)
    ):
        return False
    if main.is_cuda:
        return triton_available()
    if not force or main.dtype == torch.bfloat16:
        return False
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            "force_triton=True on CPU tensors needs TRITON_INTERPRET=1, set before triton "
            "is imported"
        )
    return triton_available()


def _check_float(name: str, t: torch.Tensor | None, like: torch.Tensor) -> None:
    if t is None:
        return
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if t.device != like.device:
        raise ValueError(f"{name} is on {t.device} but x/q is on {like.device}")


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: str = "none",
    chunk_size: int | None = None,
    lookahead_chunks: int = 0,
    scale: float | None = None,
    force_triton: bool = False,
) -> torch.Tensor:
    """softmax(q kᵀ · scale + mask) v for queries that are the last Nq of Nk positions.

    q: [B, H, Nq, D], k, v: [B, H, Nk, D] with Nq <= Nk -> [B, H, Nq, D] in q's dtype.
    Query ``i`` sits at key position ``Nk - Nq + i`` (KV-cache offset).
    ``mask``: "none"; "causal" (a query at position p sees keys 0..p);
    "block_causal" (chunks of ``chunk_size`` aligned at key index 0; a query in
    chunk c sees keys in chunks <= c + ``lookahead_chunks``).
    ``scale`` defaults to D**-0.5. Triton for D in {32, 64, 128} and B·H <= 65535.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_float(name, t, q)
        if t.dim() != 4:
            raise ValueError(f"{name} must be [B, H, N, D], got shape {tuple(t.shape)}")
    if k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(
            f"shapes must be q [B, H, Nq, D], k = v [B, H, Nk, D]; got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    n_q, n_k = q.shape[2], k.shape[2]
    if n_q > n_k:
        raise ValueError(f"need Nq <= Nk (queries are the last Nq keys), got Nq={n_q}, Nk={n_k}")
    if mask not in MASKS:
        raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
    if mask == "block_causal":
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"block_causal needs an int chunk_size >= 1, got {chunk_size!r}")
        if not isinstance(lookahead_chunks, int) or lookahead_chunks < 0:
            raise ValueError(f"lookahead_chunks must be an int >= 0, got {lookahead_chunks!r}")
    kwargs = dict(mask=mask, chunk_size=chunk_size, lookahead_chunks=lookahead_chunks, scale=scale)

    if (
        n_q > 0
        and q.shape[3] in ATTENTION_HEAD_DIMS
        # one program per (query block, batch, head): bounded by one per query row
        and n_q * q.shape[0] * q.shape[1] <= MAX_GRID_X
        and _use_triton(q, (k, v), force_triton)
    ):
        q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
        out = _kernel_module("attention").attention_fwd(q, k, v, **kwargs)
        _record("attention", "triton")
        return out
    _record("attention", "reference")
    return attention_reference(q, k, v, **kwargs)


def group_norm_modulate_silu(
    x: torch.Tensor,
    num_groups: int,
    *,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
    eps: float = 1e-5,
    force_triton: bool = False,
) -> torch.Tensor:
    """The fused UNet step y = SiLU(GroupNorm(x)·(1 + scale) + shift) + residual.

    x: [B, C, T] or [B, C, H, W]; weight, bias: [C] GroupNorm affine;
    scale, shift: [B, C] from the diffusion-time embedding; residual: like x.
    All optional arguments may be None. Returns a tensor like x.
    """
    _check_float("x", x, x)
    if x.dim() not in (3, 4):
        raise ValueError(f"x must be [B, C, T] or [B, C, H, W], got shape {tuple(x.shape)}")
    bsz, chans = x.shape[0], x.shape[1]
    if not isinstance(num_groups, int) or num_groups < 1 or chans % num_groups:
        raise ValueError(f"num_groups must be an int >= 1 dividing C={chans}, got {num_groups!r}")
    for name, t, shape in (
        ("weight", weight, (chans,)),
        ("bias", bias, (chans,)),
        ("scale", scale, (bsz, chans)),
        ("shift", shift, (bsz, chans)),
        ("residual", residual, x.shape),
    ):
        if t is not None:
            _check_float(name, t, x)
            if t.shape != shape:
                raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    extras = (weight, bias, scale, shift, residual)
    if x.numel() > 0 and _use_triton(x, extras, force_triton):
        out = _kernel_module("unet_step").group_norm_modulate_silu_fwd(
            x, num_groups, weight=weight, bias=bias, scale=scale, shift=shift,
            residual=residual, eps=eps,
        )  # fmt: skip
        _record("group_norm_modulate_silu", "triton")
        return out
    _record("group_norm_modulate_silu", "reference")
    return group_norm_modulate_silu_reference(
        x, num_groups, weight=weight, bias=bias, scale=scale, shift=shift, residual=residual,
        eps=eps,
    )  # fmt: skip
