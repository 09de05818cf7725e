"""Copy a seeded subset of a training manifest that fits beside the checkout on the GPU machine.

The device tool sends at most 64 MiB (the tracked checkout + carried paths), so the GPU
training scripts read a subset of ``train/``: files in a seeded random order, each kept while
the total stays under ``--max-mb``. Writes ``OUT/manifest.tsv`` (paths relative to OUT, as
in the corpus) and the audio files beneath it.

    python benchmarks/make_gpu_subset.py ../shared/data/train/speech/manifest.tsv \
        .carry/gpu_speech --max-mb 15.5 --seed 7

(the subset the voice-350/1400 GPU runs of 2026-11-27 used: 1234 files, 1.46 h).
"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("manifest", type=Path, help="a corpus manifest.tsv (train/ only)")
    p.add_argument("out", type=Path, help="output folder (emptied first)")
    p.add_argument("--max-mb", type=float, default=15.5, help="size budget of the audio, MB")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    if "dev" in args.manifest.parts or "probe" in args.manifest.parts:
        raise SystemExit(f"refusing a non-training manifest: {args.manifest}")
    lines = args.manifest.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    root = args.manifest.parent.parent.parent  # manifest paths start at the corpus root
    if not (root / rows[0].split("\t")[0]).exists():
        raise SystemExit(f"cannot find {rows[0].split(chr(9))[0]} under {root}")
    random.Random(args.seed).shuffle(rows)
    total, kept = 0, []
    for row in rows:
        size = (root / row.split("\t")[0]).stat().st_size
        if total + size <= args.max_mb * 1e6:
            total += size
            kept.append(row)
    if args.out.exists():
        shutil.rmtree(args.out)
    for row in kept:
        rel = row.split("\t")[0]
        (args.out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / rel, args.out / rel)
    (args.out / "manifest.tsv").write_text("\n".join([header, *sorted(kept)]) + "\n")
    hours = sum(float(r.split("\t")[1]) for r in kept) / 3600
    print(f"{len(kept)} files, {total / 1e6:.1f} MB, {hours:.2f} h -> {args.out}")


if __name__ == "__main__":
    main()
