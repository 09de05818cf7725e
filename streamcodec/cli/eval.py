"""``streamcodec eval``: run codecs over a manifest and write a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamcodec.eval import ALL_METRICS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate codecs on a manifest (quality, intelligibility, bitrate, speed)",
        description="Writes summary.json, per_file.csv and report.md (with spectrograms and "
        "clips) to --out. DIR holds a manifest.tsv.",
    )
    p.add_argument("--codec", required=True, help="codec name(s), comma-separated")
    p.add_argument(
        "--set", dest="set_dir", required=True, type=Path, help="directory with manifest.tsv"
    )
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--limit", type=int, default=None, help="only the first N files")
    p.add_argument(
        "--metrics",
        default=",".join(ALL_METRICS),
        help=f"comma-separated subset of {','.join(ALL_METRICS)} (default: all)",
    )
    p.add_argument(
        "--mode",
        choices=("auto", "speech", "audio"),
        default="auto",
        help="speech: ViSQOL speech mode, WER and speaker similarity; audio: ViSQOL audio "
        "mode, no WER (auto: speech when the manifest names speakers)",
    )
    p.add_argument("--whisper-model", default=None, help="faster-whisper model path or name")
    p.add_argument("--clips", type=int, default=2, help="files to keep decoded clips of")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="worker processes scoring files in parallel (RTFs are then measured under load)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamcodec.eval.harness import EvalConfig, run_eval, summary_table

    codecs = tuple(c.strip() for c in args.codec.split(",") if c.strip())
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    cfg = EvalConfig(
        codecs=codecs,
        set_dir=args.set_dir,
        out_dir=args.out,
        limit=args.limit,
        metrics=metrics,
        mode=args.mode,
        whisper_model=args.whisper_model,
        clips=args.clips,
        progress=not args.no_progress,
    )
    summary = run_eval(cfg, jobs=args.jobs)
    print(summary_table(summary))
    print(f"\nreport: {args.out / 'report.md'}")
    return 0
