"""The sequential core of PGHI (:mod:`streamcodec.vocoder.phase`), compiled with numba.

Per frame, bins are taken from a max-heap keyed on log-magnitude (ties: bins of the
previous frame first, then the lower bin): a previous-frame entry gives its bin a phase
by time integration, a current-frame entry gives its unvisited neighbours one by
frequency integration. When the heap runs empty with bins left (no bin of the previous
frame above the threshold, as after silence, or a new island), the largest remaining bin
starts by time integration. numba's ``cache=True`` keeps the compiled code beside this
file when it can write there; otherwise every process compiles on first use (about 7 s on
the 2-core VM).
"""

from __future__ import annotations

import math

import numba
import numpy as np

_TWO_PI = 2.0 * math.pi


@numba.njit(cache=True, inline="always")
def _less(k1: float, f1: int, j1: int, k2: float, f2: int, j2: int) -> bool:
    if k1 != k2:
        return k1 > k2  # larger magnitude first
    if f1 != f2:
        return f1 < f2  # previous frame (0) before current (1)
    return j1 < j2


@numba.njit(cache=True)
def _push(hk, hf, hj, size, key, flag, j):  # noqa: ANN001, ANN202 - numba arrays
    i = size
    hk[i], hf[i], hj[i] = key, flag, j
    while i > 0:
        parent = (i - 1) // 2
        if _less(hk[i], hf[i], hj[i], hk[parent], hf[parent], hj[parent]):
            hk[i], hk[parent] = hk[parent], hk[i]
            hf[i], hf[parent] = hf[parent], hf[i]
            hj[i], hj[parent] = hj[parent], hj[i]
            i = parent
        else:
            break
    return size + 1


@numba.njit(cache=True)
def _pop(hk, hf, hj, size):  # noqa: ANN001, ANN202 - numba arrays
    flag, j = hf[0], hj[0]
    size -= 1
    hk[0], hf[0], hj[0] = hk[size], hf[size], hj[size]
    i = 0
    while True:
        left, right, best = 2 * i + 1, 2 * i + 2, i
        if left < size and _less(hk[left], hf[left], hj[left], hk[best], hf[best], hj[best]):
            best = left
        if right < size and _less(hk[right], hf[right], hj[right], hk[best], hf[best], hj[best]):
            best = right
        if best == i:
            break
        hk[i], hk[best] = hk[best], hk[i]
        hf[i], hf[best] = hf[best], hf[i]
        hj[i], hj[best] = hj[best], hj[i]
        i = best
    return size, flag, j


@numba.njit(cache=True)
def integrate_frames(s, dt, df, s_last, dt_last, phase_last, log_tol, log_floor):  # noqa: ANN001, ANN201
    """Phases ``[F, K]`` (wrapped to ``[-pi, pi)``) for one stream.

    ``s``: log-magnitude ``[F, K]``; ``dt``: phase advance per frame at each bin; ``df``:
    phase step per bin; ``*_last``: the frame before the first (log-magnitude, advance,
    phase); ``log_tol``: log of the relative threshold below which bins are skipped;
    ``log_floor``: the log-magnitude of an empty bin. Empty bins get phase 0 and give none
    to the next frame, so a stream's output does not depend on how much silence led it in.
    """
    n_frames, k = s.shape
    out = np.empty((n_frames, k))
    prev_s, prev_dt, prev = s_last.copy(), dt_last.copy(), phase_last.copy()
    hk = np.empty(2 * k)
    hf = np.empty(2 * k, np.int64)
    hj = np.empty(2 * k, np.int64)
    done = np.empty(k, np.bool_)
    cur = np.empty(k)
    for n in range(n_frames):
        thr = max(s[n].max(), prev_s.max()) + log_tol
        remaining = 0
        for j in range(k):
            cur[j] = 0.0
            done[j] = s[n, j] <= thr or s[n, j] <= log_floor
            if not done[j]:
                remaining += 1
        size = 0
        for j in range(k):
            if prev_s[j] > thr and prev_s[j] > log_floor:
                size = _push(hk, hf, hj, size, prev_s[j], 0, j)
        while remaining > 0:
            if size == 0:  # a new island: its largest bin, integrated in time
                best, value = -1, -np.inf
                for j in range(k):
                    if not done[j] and s[n, j] > value:
                        best, value = j, s[n, j]
                cur[best] = prev[best] + 0.5 * (prev_dt[best] + dt[n, best])
                done[best] = True
                remaining -= 1
                size = _push(hk, hf, hj, size, s[n, best], 1, best)
                continue
            size, flag, j = _pop(hk, hf, hj, size)
            if flag == 0:  # from the previous frame: integrate in time
                if not done[j]:
                    cur[j] = prev[j] + 0.5 * (prev_dt[j] + dt[n, j])
                    done[j] = True
                    remaining -= 1
                    size = _push(hk, hf, hj, size, s[n, j], 1, j)
                continue
            for step in (1, -1):  # to the neighbours: integrate in frequency
                i = j + step
                if 0 <= i < k and not done[i]:
                    cur[i] = cur[j] + step * 0.5 * (df[n, j] + df[n, i])
                    done[i] = True
                    remaining -= 1
                    size = _push(hk, hf, hj, size, s[n, i], 1, i)
        for j in range(k):
            cur[j] = (cur[j] + math.pi) % _TWO_PI - math.pi
            out[n, j] = cur[j]
            prev[j] = cur[j]
            prev_s[j] = s[n, j]
            prev_dt[j] = dt[n, j]
    return out
