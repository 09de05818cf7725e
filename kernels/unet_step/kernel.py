"""Triton kernels for ``SiLU(GroupNorm(x)·(1 + scale) + shift) + residual``.

x is viewed as ``[B, C, S]`` (``S = T`` or ``H·W``); group ``g`` of sample
``b`` is the contiguous run of ``M = (C/G)·S`` elements starting at
``(b·C + g·C/G)·S``. Statistics are in fp32 and exact two-pass within a tile
(``Σ(x - mean)²``, no ``E[x²] - E[x]²`` cancellation). Per channel the
affine, modulation and shift fold into one FMA: ``y = x·a + c`` with
``a = rstd·w·(1 + scale)`` and ``c = (bias - mean·rstd·w)·(1 + scale) + shift``.

Two paths:

- **one pass** (the group fits one tile, ``≤ ONE_PASS_MAX`` elements; every
  decoder shape): one program per (b, g) reads x once and writes y once, one launch;
- **split** (large groups): ``_gn_stats`` gives each group ``NSPLIT`` programs
  that write partial (mean, M2), enough to fill the GPU at batch 1; then
  ``_gn_apply`` runs one program per (b, c, tile of S), merges its group's
  partials (Chan et al. parallel variance) and applies the FMA + SiLU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

#: largest group (elements, padded to powers of two per axis) done in one pass.
ONE_PASS_MAX = 8192
#: partial statistics per group at most (a power of two).
MAX_SPLITS = 256
#: at least this many elements per statistics program.
MIN_SPLIT_ELEMS = 4096


@triton.jit
def _channel_params(
    W, Bias, Scale, Shift, b, ch, ch_ok, C,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr,
):  # fmt: skip
    """(w, bias, 1 + scale, shift) in fp32 for channel(s) ``ch`` of sample ``b``; 1 or 0 where
    absent. Called before x is loaded, so these small loads overlap the big one."""
    w = 1.0
    bias = 0.0
    s1 = 1.0
    shift = 0.0
    if HAS_W:
        w = tl.load(W + ch, mask=ch_ok, other=1.0).to(tl.float32)
    if HAS_B:
        bias = tl.load(Bias + ch, mask=ch_ok, other=0.0).to(tl.float32)
    if HAS_SCALE:
        s1 = 1.0 + tl.load(Scale + b * C + ch, mask=ch_ok, other=0.0).to(tl.float32)
    if HAS_SHIFT:
        shift = tl.load(Shift + b * C + ch, mask=ch_ok, other=0.0).to(tl.float32)
    return w, bias, s1, shift


@triton.jit(do_not_specialize=["C", "G", "CG", "S", "eps"])
def _gn_one_pass(
    X, Y, W, Bias, Scale, Shift, Res,
    C, G, CG, S, eps,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_SCALE: tl.constexpr,
    HAS_SHIFT: tl.constexpr, HAS_RES: tl.constexpr,
    S_ALIGN: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
):  # fmt: skip
    """One program per (b, g): the whole [C/G, S] group as one [BLOCK_C, BLOCK_S] tile."""
    pid = tl.program_id(0)
    b = pid // G
    g = pid % G
    S = (S // S_ALIGN) * S_ALIGN  # same value; tells the compiler S % S_ALIGN == 0
    offs_c = tl.arange(0, BLOCK_C)
    offs_s = tl.arange(0, BLOCK_S)
    c_ok = offs_c < CG
    ok = c_ok[:, None] & (offs_s < S)[None, :]
    ch = g * CG + offs_c
    w, bias, s1, shift = _channel_params(
        W, Bias, Scale, Shift, b, ch, c_ok, C, HAS_W, HAS_B, HAS_SCALE, HAS_SHIFT
    )
    row = (b * C + ch).to(tl.int64) * S
    ptrs = row[:, None] + offs_s[None, :]
    x = tl.load(X + ptrs, mask=ok, other=0.0).to(tl.float32)
    if HAS_RES:
        res = tl.load(Res + ptrs, mask=ok, other=0.0).to(tl.float32)
    n = (CG * S).to(tl.float32)
    mean = tl.sum(tl.sum(x, 1), 0) / n
    d = tl.where(ok, x - mean, 0.0)
    var = tl.sum(tl.sum(d * d, 1), 0) / n
    rstd = tl.math.rsqrt(var + eps)
    zero = tl.zeros([BLOCK_C], dtype=tl.float32)
    a = zero + rstd * w * s1  # y = x·a + c per channel
    c = zero + (bias - mean * rstd * w) * s1 + shift
    y = x * a[:, None] + c[:, None]
    y = y * tl.sigmoid(y)
    if HAS_RES:
        y = y + res
    tl.store(Y + ptrs, y.to(Y.dtype.element_ty), mask=ok)


@triton.jit(do_not_specialize=["M", "SPLIT_LEN", "NSPLIT"])
def _gn_stats(X, Mean, M2, M, SPLIT_LEN, NSPLIT, M_ALIGN: tl.constexpr, BLOCK: tl.constexpr):
    """Program (group, split): (mean, M2) of elements [split·SPLIT_LEN, +SPLIT_LEN) of the group."""
    grp = tl.program_id(0)
    split = tl.program_id(1)
    # Same values; they tell the compiler M % M_ALIGN == 0 and SPLIT_LEN % BLOCK == 0, so
    # the masked loads below can be vectorised.
    M = (M // M_ALIGN) * M_ALIGN
    SPLIT_LEN = (SPLIT_LEN // BLOCK) * BLOCK
    base = grp.to(tl.int64) * M
    lo = split * SPLIT_LEN
    hi = tl.minimum(lo + SPLIT_LEN, M)
    offs = tl.arange(0, BLOCK)
    n_a = 0.0
    mean_a = 0.0
    m2_a = 0.0
    for start in range(lo, hi, BLOCK):
        idx = start + offs
        ok = idx < hi
        x = tl.load(X + base + idx, mask=ok, other=0.0).to(tl.float32)
        n_b = tl.sum(ok.to(tl.float32), 0)
        mean_b = tl.sum(x, 0) / n_b
        d = tl.where(ok, x - mean_b, 0.0)
        m2_b = tl.sum(d * d, 0)
        n = n_a + n_b
        delta = mean_b - mean_a
        mean_a = mean_a + delta * (n_b / n)
        m2_a = m2_a + m2_b + delta * delta * (n_a * n_b / n)
        n_a = n
    out = grp.to(tl.int64) * NSPLIT + split
    tl.store(Mean + out, mean_a)
    tl.store(M2 + out, m2_a)


@triton.jit(do_not_specialize=["C", "G", "CG", "S", "M", "SPLIT_LEN", "NSPLIT", "eps"])
def _gn_apply(
    X, Y, W, Bias, Scale, Shift, Res, Mean, M2,
    C, G, CG, S, M, SPLIT_LEN, NSPLIT, eps,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_SCALE: tl.constexpr,
    HAS_SHIFT: tl.constexpr, HAS_RES: tl.constexpr,
    S_ALIGN: tl.constexpr, SPLITS_P2: tl.constexpr, BLOCK_S: tl.constexpr,
):  # fmt: skip
    """Program (b·C + c, tile of S): merge the group's partials, then y = SiLU(x·a + c) + res."""
    row = tl.program_id(0)
    b = row // C
    ch = row % C
    S = (S // S_ALIGN) * S_ALIGN  # same value; tells the compiler S % S_ALIGN == 0
    grp = b * G + ch // CG
    w, bias, s1, shift = _channel_params(
        W, Bias, Scale, Shift, b, ch, ch < C, C, HAS_W, HAS_B, HAS_SCALE, HAS_SHIFT
    )
    offs = tl.program_id(1) * BLOCK_S + tl.arange(0, BLOCK_S)
    ok = offs < S
    ptrs = row.to(tl.int64) * S + offs
    x = tl.load(X + ptrs, mask=ok, other=0.0).to(tl.float32)
    if HAS_RES:
        res = tl.load(Res + ptrs, mask=ok, other=0.0).to(tl.float32)
    i = tl.arange(0, SPLITS_P2)
    i_ok = i < NSPLIT
    cnt = tl.where(i_ok, tl.minimum(SPLIT_LEN, M - i * SPLIT_LEN), 0).to(tl.float32)
    part = grp.to(tl.int64) * NSPLIT + i
    mean_i = tl.load(Mean + part, mask=i_ok, other=0.0)
    m2_i = tl.load(M2 + part, mask=i_ok, other=0.0)
    n = M.to(tl.float32)
    mean = tl.sum(cnt * mean_i, 0) / n
    dm = mean_i - mean
    var = tl.sum(m2_i + cnt * dm * dm, 0) / n
    rstd = tl.math.rsqrt(var + eps)
    a = rstd * w * s1  # y = x·a + c
    c = (bias - mean * rstd * w) * s1 + shift
    y = x * a + c
    y = y * tl.sigmoid(y)
    if HAS_RES:
        y = y + res
    tl.store(Y + ptrs, y.to(Y.dtype.element_ty), mask=ok)


def _align(n: int) -> int:
    """Largest power of two <= 16 dividing n (a divisibility hint for the compiler)."""
    a = 1
    while a < 16 and n % (2 * a) == 0:
        a *= 2
    return a


_SM_COUNT: dict[int, int] = {}


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 132  # interpreter: plan as for an H100/H200
    idx = device.index if device.index is not None else torch.cuda.current_device()
    if idx not in _SM_COUNT:
        _SM_COUNT[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    return _SM_COUNT[idx]


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)  # plain Python: triton.cdiv is a slow constexpr_function on the host


def _pow2(n: int) -> int:
    """Next power of two >= n."""
    return 1 << max(n - 1, 0).bit_length()


def _warps(n_elems: int) -> int:
    return 1 if n_elems <= 256 else 2 if n_elems <= 512 else 4 if n_elems <= 2048 else 8


def plan_splits(bg: int, m: int, block: int, sm_count: int) -> tuple[int, int]:
    """(NSPLIT, SPLIT_LEN) for ``bg`` groups of ``m`` elements: ~4 programs per SM in
    all, each at least ``MIN_SPLIT_ELEMS`` (and one ``block``) long, at most ``MAX_SPLITS``."""
    want = _cdiv(4 * sm_count, bg)
    most = max(1, m // max(MIN_SPLIT_ELEMS, block))
    nsplit = max(1, min(want, most, MAX_SPLITS))
    split_len = _cdiv(_cdiv(m, nsplit), block) * block
    return _cdiv(m, split_len), split_len


def group_norm_modulate_silu_fwd(
    x: torch.Tensor,
    num_groups: int,
    *,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
    eps: float = 1e-5,
    out: torch.Tensor | None = None,
    one_pass: bool | None = None,
    stats_block: int | None = None,
    apply_block: int | None = None,
    nsplit: int | None = None,
) -> torch.Tensor:
    """Launch the fused step. x: [B, C, T] or [B, C, H, W] -> like x.

    Arguments are assumed validated by ``streamcodec.ops``; non-contiguous
    inputs are made contiguous. ``out`` (contiguous, like x) is written in
    place when given. ``one_pass``/``stats_block``/``apply_block``/``nsplit``
    override the automatic plan (tests).
    """
    x = x.contiguous()
    bsz, chans = x.shape[0], x.shape[1]
    s = x.numel() // max(1, bsz * chans)
    cg = chans // num_groups
    m = cg * s
    if out is None:
        out = torch.empty_like(x)
    dummy = x  # never read: the HAS_* flag is off
    w = weight.contiguous() if weight is not None else dummy
    bi = bias.contiguous() if bias is not None else dummy
    sc = scale.contiguous() if scale is not None else dummy
    sh = shift.contiguous() if shift is not None else dummy
    res = residual.contiguous() if residual is not None else dummy
    flags = {
        "HAS_W": weight is not None,
        "HAS_B": bias is not None,
        "HAS_SCALE": scale is not None,
        "HAS_SHIFT": shift is not None,
        "HAS_RES": residual is not None,
        "S_ALIGN": _align(s),
    }
    block_c, block_s = _pow2(cg), _pow2(s)
    if one_pass is None:
        one_pass = block_c * block_s <= ONE_PASS_MAX
    if one_pass:
        _gn_one_pass[(bsz * num_groups,)](
            x, out, w, bi, sc, sh, res, chans, num_groups, cg, s, float(eps),
            **flags, BLOCK_C=block_c, BLOCK_S=block_s, num_warps=_warps(block_c * block_s),
        )  # fmt: skip
        return out

    bg = bsz * num_groups
    sblock = stats_block or min(4096, _pow2(m))
    if nsplit is None:
        n_split, split_len = plan_splits(bg, m, sblock, _sm_count(x.device))
    else:
        split_len = _cdiv(_cdiv(m, nsplit), sblock) * sblock
        n_split = _cdiv(m, split_len)
    stats = torch.empty((2, bg * n_split), dtype=torch.float32, device=x.device)
    mean, m2 = stats[0], stats[1]
    _gn_stats[(bg, n_split)](
        x, mean, m2, m, split_len, n_split, M_ALIGN=_align(m), BLOCK=sblock,
        num_warps=_warps(sblock),
    )  # fmt: skip
    ablock = apply_block or min(2048, block_s)
    _gn_apply[(bsz * chans, _cdiv(s, ablock))](
        x, out, w, bi, sc, sh, res, mean, m2, chans, num_groups, cg, s, m, split_len, n_split,
        float(eps), **flags, SPLITS_P2=max(2, _pow2(n_split)), BLOCK_S=ablock,
        num_warps=_warps(ablock),
    )  # fmt: skip
    return out
