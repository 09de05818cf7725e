"""Where the vocoder loses quality, magnitude or phase, and what re-phasing (PGHI) buys.

On ``--limit`` files of a set (every ``--stride``-th, so that several speakers are in),
the bundled vocoder's copy synthesis (network phase) is compared with STFT swaps and with
its output re-phased by :mod:`streamcodec.vocoder.phase`:

- ``vocoder``: copy synthesis as the ``mel-vocoder`` codec makes it;
- ``ref-mag + vocoder-phase`` / ``vocoder-mag + ref-phase``: the STFT (Hann 1024, hop 256)
  magnitude of one signal with the phase of the other (where the loss sits);
- ``vocoder + pghi``: the vocoder's output re-phased (what ``mel-vocoder-pghi`` and the
  voice codecs with ``vocoder_phase = "pghi"`` do);
- ``ref + pghi``: the clean reference re-phased (the ceiling of magnitude-only phase).

Same scorers as ``streamcodec eval`` (PESQ-WB, STOI, DNSMOS); files are split over
``--jobs`` processes. Writes ``per_file.csv`` and ``README.md``-ready ``table.md`` to
``--out``; the table gives each variant's mean and its paired difference to ``vocoder``.

    python benchmarks/vocoder_phase.py --limit 16 --stride 9 --out benchmarks/results/vocoder/phase
"""

from __future__ import annotations

import argparse
import csv
import math
import multiprocessing
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEV_SPEECH = REPO.parent / "shared" / "data" / "dev" / "speech"
METRICS = ("pesq_wb", "stoi", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")
VARIANTS = (
    "vocoder",
    "ref-mag + vocoder-phase",
    "vocoder-mag + ref-phase",
    "vocoder + pghi",
    "ref + pghi",
)


def _swap(mag_of: np.ndarray, phase_of: np.ndarray) -> np.ndarray:
    win = torch.hann_window(1024)
    a = torch.stft(torch.from_numpy(mag_of), 1024, 256, window=win, return_complex=True)
    b = torch.stft(torch.from_numpy(phase_of), 1024, 256, window=win, return_complex=True)
    y = torch.istft(torch.polar(a.abs(), b.angle()), 1024, 256, window=win, length=len(mag_of))
    return y.numpy().astype(np.float32)


def _score_files(job: tuple[list[tuple[int, str, str]], str]) -> list[dict]:
    from streamcodec.audio import load_audio
    from streamcodec.eval.align import align_to
    from streamcodec.eval.metrics import Scorers
    from streamcodec.registry import load
    from streamcodec.vocoder.phase import PhaseRebuilder

    files, _ = job
    torch.set_num_threads(1)
    codec = load("mel-vocoder")
    rephase = PhaseRebuilder(codec.vocoder.cfg.n_fft, codec.vocoder.cfg.hop_samples)
    scorers = Scorers(("pesq_wb", "stoi", "dnsmos"), True, None)
    rows = []
    for index, path, rel in files:
        ref = load_audio(path, 16000)
        out = codec.decode(codec.encode(ref))
        voc, _ = align_to(ref, out, codec.delay_samples, 3200)
        voc = voc.astype(np.float32)
        with torch.inference_mode():
            pghi = rephase.process(torch.from_numpy(voc)[None])[0].numpy()
            ref_pghi = rephase.process(torch.from_numpy(ref)[None])[0].numpy()
        signals = {
            "vocoder": voc,
            "ref-mag + vocoder-phase": _swap(ref, voc),
            "vocoder-mag + ref-phase": _swap(voc, ref),
            "vocoder + pghi": pghi,
            "ref + pghi": ref_pghi,
        }
        for name, y in signals.items():
            row = {"variant": name, "index": index, "file": rel}
            row.update(scorers.intrusive(ref, y))
            row.update(scorers.non_intrusive(y))
            rows.append(row)
        print(f"{rel} done", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    by = {v: {r["file"]: r for r in rows if r["variant"] == v} for v in VARIANTS}
    base = by["vocoder"]
    lines = [
        "| variant | " + " | ".join(METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for v in VARIANTS:
        cells = []
        for m in METRICS:
            files = [f for f in base if f in by[v]]
            mean = sum(by[v][f][m] for f in files) / len(files)
            if v == "vocoder":
                cells.append(f"{mean:.3f}")
                continue
            d = [by[v][f][m] - base[f][m] for f in files]
            md = sum(d) / len(d)
            se = math.sqrt(sum((x - md) ** 2 for x in d) / max(len(d) - 1, 1) / len(d))
            cells.append(f"{mean:.3f} ({md:+.3f} ± {se:.3f})")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", type=Path, default=DEV_SPEECH)
    p.add_argument("--limit", type=int, default=16)
    p.add_argument("--stride", type=int, default=9, help="take every STRIDE-th file")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if args.limit < 2 or args.jobs < 1 or args.stride < 1:
        raise SystemExit(
            f"need --limit >= 2, --jobs >= 1, --stride >= 1; got {args.limit}, {args.jobs}, "
            f"{args.stride}"
        )
    from streamcodec.manifest import read_manifest

    entries = read_manifest(args.set)[:: args.stride][: args.limit]
    files = [(i, str(e.path), e.rel_path) for i, e in enumerate(entries)]
    jobs = [(files[k :: args.jobs], str(k)) for k in range(args.jobs)]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        rows = [r for part in pool.map(_score_files, jobs) for r in part]
    rows.sort(key=lambda r: (r["index"], VARIANTS.index(r["variant"])))
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "per_file.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["variant", "index", "file", *METRICS])
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in w.fieldnames})
    text = (
        f"{len(entries)} files of {args.set} (every {args.stride}th); mean (paired difference "
        "to `vocoder` "
        "± its standard error).\n\n" + table(rows)
    )
    (args.out / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
