"""Exact (heap) phase-gradient integration as a slow reference, and its effect on a codec.

The algorithm (Průša, Balazs & Søndergaard 2017, with the causal gradients of its
real-time form), offline and in plain Python, as the reference that
``streamcodec/vocoder/phase.py`` (the same heap compiled with numba, streaming) was
checked against (spectral convergence of a re-phased dev file 0.212 here, 0.211 there):
per frame, bins are visited in decreasing magnitude from a max-heap
that starts with the previous frame's bins; a bin reached from the previous frame takes
its phase by time integration, one reached from a neighbour by frequency integration.
Pure Python (``heapq``): real-time factor ~0.2 on this project's CPU, for measurement only.

    python benchmarks/pghi_heap.py --codec mel-vocoder --out DIR [--stride S] [--limit N]

decodes each file of ``--set`` through ``--codec``, re-phases the output (Hann 640, hop
160) and scores it with ``streamcodec eval``'s scorers (PESQ-WB, STOI, DNSMOS): writes
``DIR/per_file.csv`` (pair it file by file with the codec's own ``streamcodec eval`` run).
"""

from __future__ import annotations

import argparse
import csv
import heapq
import multiprocessing
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEV_SPEECH = REPO.parent / "shared" / "data" / "dev" / "speech"
METRICS = ("pesq_wb", "stoi", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")
HANN_GAMMA = 0.25645


def rtpghi_heap(mag: np.ndarray, win: int, hop: int, tol: float = 1e-5) -> np.ndarray:
    """Phase ``[F, K]`` for magnitudes ``mag: [F, K]`` (Hann window ``win`` = FFT size),
    in the frame-start convention of ``torch.stft``; causal (backward time difference)."""
    n_frames, k = mag.shape
    gamma = HANN_GAMMA * win**2
    s = np.log(np.maximum(mag, 1e-10))
    m = np.arange(k)
    ds_f = np.zeros_like(s)
    ds_f[:, 1:-1] = (s[:, 2:] - s[:, :-2]) / 2
    dt = (hop * win / gamma) * ds_f + 2 * np.pi * hop * m[None, :] / win
    ds_t = np.zeros_like(s)
    ds_t[1:] = s[1:] - s[:-1]
    df = -(gamma / (hop * win)) * ds_t
    rng = np.random.default_rng(0)
    phase = np.zeros((n_frames, k))
    prev = np.zeros(k)
    for n in range(n_frames):
        thr = max(s[n].max(), s[n - 1].max() if n else -np.inf) + np.log(tol)
        cur = np.zeros(k)
        done = s[n] <= thr
        cur[done] = rng.uniform(-np.pi, np.pi, int(done.sum()))
        heap = [(-s[n - 1, j], 0, j) for j in np.nonzero(s[n - 1] > thr)[0]] if n else []
        heapq.heapify(heap)
        remaining = int((~done).sum())
        while remaining:
            if not heap:  # a new island: start at the largest bin not done
                j = int(np.argmax(np.where(done, -np.inf, s[n])))
                cur[j] = 0.0 if n == 0 else prev[j] + (dt[n - 1, j] + dt[n, j]) / 2
                done[j] = True
                remaining -= 1
                heapq.heappush(heap, (-s[n, j], 1, j))
                continue
            _, current, j = heapq.heappop(heap)
            if not current:  # from the previous frame: integrate in time
                if not done[j]:
                    cur[j] = prev[j] + (dt[n - 1, j] + dt[n, j]) / 2
                    done[j] = True
                    remaining -= 1
                    heapq.heappush(heap, (-s[n, j], 1, j))
                continue
            for i, sign in ((j + 1, 1), (j - 1, -1)):  # to the neighbours: in frequency
                if 0 <= i < k and not done[i]:
                    cur[i] = cur[j] + sign * (df[n, j] + df[n, i]) / 2
                    done[i] = True
                    remaining -= 1
                    heapq.heappush(heap, (-s[n, i], 1, i))
        phase[n] = cur
        prev = cur
    return phase + np.pi * m[None, :]  # window centre n_fft / 2 after the frame start


def rephase(x: np.ndarray, win: int = 640, hop: int = 160) -> np.ndarray:
    w = torch.hann_window(win)
    spec = torch.stft(torch.from_numpy(x), win, hop, window=w, return_complex=True).T.numpy()
    mag = np.abs(spec).astype(np.float64)
    new = mag * np.exp(1j * rtpghi_heap(mag, win, hop))
    y = torch.istft(torch.from_numpy(new.T.copy()).to(torch.complex64), win, hop, window=w,
                    length=len(x))  # fmt: skip
    return y.numpy().astype(np.float32)


def _score(job: tuple[str, list[tuple[str, str]]]) -> list[dict]:
    from streamcodec.audio import load_audio
    from streamcodec.eval.align import align_to
    from streamcodec.eval.metrics import Scorers
    from streamcodec.registry import load

    name, files = job
    torch.set_num_threads(1)
    codec = load(name)
    scorers = Scorers(("pesq_wb", "stoi", "dnsmos"), True, None)
    rows = []
    for path, rel in files:
        ref = load_audio(path, 16000)
        deg, _ = align_to(ref, codec.decode(codec.encode(ref)), codec.delay_samples, 3200)
        y = rephase(deg.astype(np.float32))
        row = {"codec": f"{name}+heap-pghi", "file": rel}
        row.update(scorers.intrusive(ref, y))
        row.update(scorers.non_intrusive(y))
        rows.append(row)
        print(f"{rel} done", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--codec", default="mel-vocoder")
    p.add_argument("--set", type=Path, default=DEV_SPEECH)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--stride", type=int, default=1, help="take every STRIDE-th file")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if args.jobs < 1 or args.stride < 1:
        raise SystemExit(f"--jobs and --stride must be >= 1, got {args.jobs}, {args.stride}")
    from streamcodec.manifest import read_manifest

    entries = read_manifest(args.set)[:: args.stride][: args.limit]
    files = [(str(e.path), e.rel_path) for e in entries]
    jobs = [(args.codec, files[k :: args.jobs]) for k in range(args.jobs)]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        rows = [r for part in pool.map(_score, jobs) for r in part]
    order = {rel: i for i, (_, rel) in enumerate(files)}
    rows.sort(key=lambda r: order[r["file"]])
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "per_file.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["codec", "file", *METRICS])
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in w.fieldnames})
    for m in METRICS:
        print(f"{m}: {np.mean([r[m] for r in rows]):.3f}")


if __name__ == "__main__":
    main()
