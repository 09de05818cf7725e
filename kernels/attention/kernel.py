"""Triton flash-attention forward with a KV-cache offset and block-causal masks.

One program computes ``BLOCK_M`` query rows of one (batch, head) and streams the
keys in tiles of ``BLOCK_N`` with the online softmax (running max ``m``, running
sum ``l``, exp2 with ``log2(e)`` folded into the scale). Masks are described by
the per-row exclusive key bound ``hi(p)`` (see ``reference.py``). Because
``hi`` is non-decreasing in the query position, a program splits its key range
into two loops:

1. tiles that every row of the block sees entirely (``< hi(first row)``): no
   mask arithmetic at all;
2. the remaining tiles up to ``hi(last row)``: per-element mask ``key < hi(row)``.

Tiles beyond ``hi(last row)`` are never loaded, so block-causal attention costs
only the visible chunks and a 8-query streaming chunk against a 500-key cache
runs one small program per head with no padding of the queries to 64 or 128.
Raw pointers with masks (no block pointers: removed in triton 3.9). Forward only.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

MASK_CODES = {"none": 0, "causal": 1, "block_causal": 2}
HEAD_DIMS = (32, 64, 128)


# Integer arguments whose value changes from call to call are not specialised,
# so a growing KV cache does not trigger a recompile per length.
@triton.jit(
    do_not_specialize=["H", "N_Q", "N_K", "CHUNK", "LOOKAHEAD", "NQ_KEY", "NK_KEY", "BH_KEY"]
)
def _attn_fwd(
    Q,
    K,
    V,
    Out,
    stride_qb,
    stride_qh,
    stride_qm,
    stride_kb,
    stride_kh,
    stride_kn,
    stride_vb,
    stride_vh,
    stride_vn,
    stride_ob,
    stride_oh,
    stride_om,
    H,
    N_Q,
    N_K,
    CHUNK,
    LOOKAHEAD,
    qk_scale,
    NQ_KEY,
    NK_KEY,
    BH_KEY,
    HEAD_D: tl.constexpr,
    MASK: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    # NQ_KEY/NK_KEY/BH_KEY are unused here: they only key the autotuner's cache.
    # one grid axis: query blocks x (batch, head) pairs, query blocks fastest (programs
    # running together share their K/V in L2); axis 0 takes 2^31 - 1 programs, where a
    # second axis for (batch, head) would stop at 65535
    num_m = tl.cdiv(N_Q, BLOCK_M)
    pid = tl.program_id(0)
    pid_m = pid % num_m
    pid_bh = pid // num_m
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    q_base = Q + b * stride_qb + h * stride_qh
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    o_base = Out + b * stride_ob + h * stride_oh

    offset = N_K - N_Q
    row0 = pid_m * BLOCK_M
    offs_m = row0 + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_D)
    row_ok = offs_m < N_Q
    q = tl.load(
        q_base + offs_m[:, None] * stride_qm + offs_d[None, :], mask=row_ok[:, None], other=0.0
    )

    # Key range of this block: all tiles below `full_end` are visible to every
    # row; tiles in [full_end, kv_end) need the per-element mask.
    first_pos = offset + row0
    last_pos = offset + tl.minimum(row0 + BLOCK_M, N_Q) - 1
    pos = offset + offs_m
    if MASK == 0:
        kv_end = N_K
        full_end = (N_K // BLOCK_N) * BLOCK_N
        hi_rows = tl.zeros([BLOCK_M], dtype=tl.int32) + N_K
    elif MASK == 1:
        kv_end = last_pos + 1
        full_end = ((first_pos + 1) // BLOCK_N) * BLOCK_N
        hi_rows = tl.minimum(pos + 1, N_K)
    else:
        kv_end = tl.minimum((last_pos // CHUNK + LOOKAHEAD + 1) * CHUNK, N_K)
        first_hi = tl.minimum((first_pos // CHUNK + LOOKAHEAD + 1) * CHUNK, N_K)
        full_end = (first_hi // BLOCK_N) * BLOCK_N
        hi_rows = tl.minimum((pos // CHUNK + LOOKAHEAD + 1) * CHUNK, N_K)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_D], dtype=tl.float32)

    for start_n in range(0, full_end, BLOCK_N):
        kn = start_n + offs_n
        k = tl.load(k_base + kn[:, None] * stride_kn + offs_d[None, :])
        qk = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.math.exp2(qk - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_base + kn[:, None] * stride_vn + offs_d[None, :])
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=PRECISION)
        m_i = m_new

    for start_n in range(full_end, kv_end, BLOCK_N):
        kn = start_n + offs_n
        key_ok = kn < N_K
        k = tl.load(
            k_base + kn[:, None] * stride_kn + offs_d[None, :], mask=key_ok[:, None], other=0.0
        )
        qk = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
        visible = (kn[None, :] < hi_rows[:, None]) & key_ok[None, :]
        qk = tl.where(visible, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.math.exp2(qk - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(
            v_base + kn[:, None] * stride_vn + offs_d[None, :], mask=key_ok[:, None], other=0.0
        )
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=PRECISION)
        m_i = m_new

    out = acc / l_i[:, None]
    o_ptrs = o_base + offs_m[:, None] * stride_om + offs_d[None, :]
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=row_ok[:, None])


#: (BLOCK_M, BLOCK_N, num_warps, num_stages) candidates on a GPU.
GPU_CONFIGS = (
    (16, 64, 4, 3),
    (16, 128, 4, 3),
    (32, 64, 4, 3),
    (64, 32, 4, 3),
    (64, 64, 4, 3),
    (128, 64, 8, 3),
    (128, 128, 8, 2),
)
#: fp32 inputs: fixed tiles per head dim, no autotune. IEEE fp32 dots run on FMA units and
#: need far more registers; TF32 tiles of fp32 need twice the shared memory of fp16 ones
#: (checked with ptxas for sm_90: no spills, shared memory within 227 KB).
FP32_CONFIGS = {
    "ieee": {32: (64, 32, 4, 2), 64: (64, 32, 8, 2), 128: (16, 32, 8, 2)},
    "tf32": {32: (64, 64, 4, 2), 64: (64, 64, 4, 2), 128: (32, 64, 4, 2)},
}
#: One pinned config for the interpreter (multi-config autotune needs a GPU).
INTERPRET_CONFIG = (32, 32, 4, 1)
AUTOTUNE_ENV = "STREAMCODEC_TRITON_AUTOTUNE"


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _prune(configs: list[triton.Config], named_args: dict, **kwargs: object) -> list[triton.Config]:
    """Keep the few candidates that suit the query count, key count and head dim.

    Query tiles no taller than the (bucketed) query count, so a streaming chunk
    of 8 queries is not padded to 64 rows; the two tallest such tiles, plus one
    shorter when there are too few programs to fill the SMs; key tiles no wider
    than the key count; 128-wide key tiles only for D <= 64 (register budget).
    """
    n_q, n_k, bh = named_args["NQ_KEY"], named_args["NK_KEY"], named_args["BH_KEY"]
    head_d = int(kwargs.get("HEAD_D", 64))
    kept = [
        c
        for c in configs
        if c.kwargs["BLOCK_M"] <= max(16, n_q)
        and c.kwargs["BLOCK_N"] <= max(32, n_k)
        and not (head_d > 64 and c.kwargs["BLOCK_N"] > 64)
    ]
    if not kept:
        return [configs[0]]
    tall = max(c.kwargs["BLOCK_M"] for c in kept)
    shortest = tall // 2
    if bh * _cdiv(n_q, tall) < 132 and tall >= 64:
        shortest = tall // 4
    return [c for c in kept if c.kwargs["BLOCK_M"] >= shortest]


def _quick_bench(fn, quantiles=None):
    """The tuner's timer: short warm-up and repetition (compiles dominate anyway)."""
    return triton.testing.do_bench(fn, warmup=5, rep=20, quantiles=quantiles)


def make_tuned(
    configs: tuple[tuple[int, int, int, int], ...] = GPU_CONFIGS, do_bench=_quick_bench
) -> triton.runtime.Autotuner:
    """The autotuned kernel over ``configs`` (pruned per shape by :func:`_prune`)."""
    return triton.autotune(
        configs=[
            triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
            for bm, bn, w, s in configs
        ],
        key=["NQ_KEY", "NK_KEY", "BH_KEY", "HEAD_D", "MASK", "PRECISION"],
        prune_configs_by={"early_config_prune": _prune},
        do_bench=do_bench,
    )(_attn_fwd)


def autotune_enabled() -> bool:
    """fp16/bf16 GPU launches autotune unless ``STREAMCODEC_TRITON_AUTOTUNE=0``
    (then :func:`heuristic_config`)."""
    return os.environ.get(AUTOTUNE_ENV, "1") != "0"


def heuristic_config(n_q: int, n_k: int, bh: int) -> tuple[int, int, int, int]:
    """A fixed fp16/bf16 (BLOCK_M, BLOCK_N, warps, stages) from ``GPU_CONFIGS``, no tuning."""
    if n_q <= 16:
        return (16, 64, 4, 3)
    if n_q <= 32:
        return (32, 64, 4, 3)
    if n_k <= 32:
        return (64, 32, 4, 3)
    if n_q <= 64 or bh * _cdiv(n_q, 128) < 132:
        return (64, 64, 4, 3)
    return (128, 64, 8, 3)


_attn_fwd_tuned = make_tuned()
#: tuning key -> chosen (BLOCK_M, BLOCK_N, warps, stages); later calls with the same key
#: launch the plain kernel directly, skipping the autotuner's Python overhead.
_CHOSEN: dict[tuple, tuple[int, int, int, int]] = {}
_LOG2E = math.log2(math.e)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)  # plain Python: triton.cdiv is a slow constexpr_function on the host


def _bucket(n: int, cap: int) -> int:
    """Next power of two >= n, at most cap."""
    return min(1 << max(n - 1, 0).bit_length(), cap)


def _precision(dtype: torch.dtype) -> str:
    """fp32 inputs follow torch's matmul precision setting: TF32 unless 'highest'."""
    if dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest":
        return "ieee"
    return "tf32"


def attention_fwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: str = "none",
    chunk_size: int | None = None,
    lookahead_chunks: int = 0,
    scale: float | None = None,
    out: torch.Tensor | None = None,
    config: tuple[int, int, int, int] | None = None,
) -> torch.Tensor:
    """Launch the kernel. q: [B, H, Nq, D], k/v: [B, H, Nk, D] -> [B, H, Nq, D].

    Arguments are assumed validated by ``streamcodec.ops.attention``; the last
    dimension must be contiguous (other strides are free, e.g. ``[B, N, H, D]``
    views transposed to ``[B, H, N, D]``). ``out`` (``[B, H, Nq, D]``, q's dtype)
    is written in place when given. ``config = (BLOCK_M, BLOCK_N, warps, stages)``
    bypasses the autotuner (tests); the interpreter always uses ``INTERPRET_CONFIG``.
    """
    bsz, heads, n_q, head_d = q.shape
    n_k = k.shape[2]
    if out is None:
        out = torch.empty_like(q, memory_format=torch.contiguous_format)
    sq, sk, sv, so = q.stride(), k.stride(), v.stride(), out.stride()
    mask_code = MASK_CODES[mask]
    qk_scale = (head_d**-0.5 if scale is None else float(scale)) * _LOG2E
    precision = _precision(q.dtype)
    nq_key, nk_key, bh_key = _bucket(n_q, 256), _bucket(n_k, 4096), _bucket(bsz * heads, 512)
    args = (
        q, k, v, out, sq[0], sq[1], sq[2], sk[0], sk[1], sk[2], sv[0], sv[1], sv[2],
        so[0], so[1], so[2], heads, n_q, n_k, chunk_size or 1, lookahead_chunks, qk_scale,
        nq_key, nk_key, bh_key,
    )  # fmt: skip
    meta = {"HEAD_D": head_d, "MASK": mask_code, "PRECISION": precision}
    if config is None:
        if _interpreting():
            config = INTERPRET_CONFIG
        elif q.dtype == torch.float32:
            config = FP32_CONFIGS[precision][head_d]
        elif not autotune_enabled():
            config = heuristic_config(n_q, n_k, bsz * heads)
        else:
            key = (nq_key, nk_key, bh_key, head_d, mask_code, precision, q.dtype, q.device.index)
            config = _CHOSEN.get(key)
            if config is None:  # first call for this key: tune (and run), then remember
                grid_fn = lambda m: (_cdiv(n_q, m["BLOCK_M"]) * bsz * heads,)  # noqa: E731
                _attn_fwd_tuned[grid_fn](*args, **meta)
                best = _attn_fwd_tuned.best_config
                _CHOSEN[key] = (
                    best.kwargs["BLOCK_M"],
                    best.kwargs["BLOCK_N"],
                    best.num_warps,
                    best.num_stages,
                )
                return out
    bm, bn, w, s = config
    _attn_fwd[(_cdiv(n_q, bm) * bsz * heads,)](
        *args, **meta, BLOCK_M=bm, BLOCK_N=bn, num_warps=w, num_stages=s
    )
    return out


def chosen_configs() -> dict[tuple, tuple[int, int, int, int]]:
    """Tuning key -> chosen (BLOCK_M, BLOCK_N, warps, stages), for benchmark reports."""
    return dict(_CHOSEN)
