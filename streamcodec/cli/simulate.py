"""``streamcodec simulate``: codecs over an impaired WebRTC link, with a report.

::

    streamcodec simulate --out benchmarks/results/link_sim

Sweeps link rate × bursty loss × codec (the registered ones of ``voice-700``,
``codec2-700c``, ``opus-6k`` by default), each cell a two-way aiortc call through
the in-process link relay on a virtual clock, then runs the reliability cases
(30% bursty loss, a 5 s outage, 2 kbit/s with 1 s RTT) and N concurrent loopback
calls in real time. Writes ``report.md`` (tables, plots, spectrograms, audio),
``summary.json`` and ``grid.csv`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_METRICS = ("mel_distance", "stft_distance", "pesq_wb", "stoi")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in _floats(text))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="sweep codecs over a simulated impaired link and write a report",
        description="Link rate x bursty loss x codec through a real WebRTC data channel "
        "(in-process UDP relay, virtual clock), plus reliability and concurrency runs.",
    )
    p.add_argument("--out", type=Path, default=Path("link_sim_out"), help="output directory")
    p.add_argument(
        "--codecs",
        default=None,
        help="comma-separated (default: registered of voice-700, codec2-700c, opus-6k)",
    )
    p.add_argument(
        "--rates",
        type=_floats,
        default=(4000.0, 8000.0, 16000.0, 32000.0),
        help="link rates in wire bit/s (default 4000,8000,16000,32000)",
    )
    p.add_argument(
        "--losses",
        type=_floats,
        default=(0.0, 5.0, 10.0, 20.0),
        help="mean bursty loss in percent (default 0,5,10,20)",
    )
    p.add_argument("--burst", type=float, default=3.0, help="mean loss-burst length, datagrams")
    p.add_argument("--delay-ms", type=float, default=50.0, help="one-way delay (default 50)")
    p.add_argument("--jitter-ms", type=float, default=5.0, help="delay jitter (default ±5)")
    p.add_argument(
        "--set",
        type=Path,
        default=None,
        help="speech manifest dir (default ../shared/data/dev/speech, else bundled)",
    )
    p.add_argument("--clips", type=int, default=2, help="speech clips (a sends one, b another)")
    p.add_argument("--clip-seconds", type=float, default=8.0, help="clip length (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--metrics",
        default=",".join(DEFAULT_METRICS),
        help=f"quality metrics of streamcodec.eval (default {','.join(DEFAULT_METRICS)})",
    )
    p.add_argument(
        "--real-clock",
        action="store_true",
        help="run the grid in real time instead of on the virtual clock",
    )
    p.add_argument("--no-grid", action="store_true", help="skip the grid (and the clock check)")
    p.add_argument("--no-reliability", action="store_true", help="skip the reliability runs")
    p.add_argument(
        "--quick-reliability",
        action="store_true",
        help="reliability calls a quarter as long (smoke test)",
    )
    p.add_argument(
        "--concurrency",
        type=_ints,
        default=(1, 2, 4, 8, 16, 32),
        help="concurrent-call levels (default 1,2,4,8,16,32; stops after two levels in a "
        "row miss real time)",
    )
    p.add_argument("--no-concurrency", action="store_true", help="skip the concurrency runs")
    p.add_argument("--concurrency-seconds", type=float, default=8.0)
    p.add_argument(
        "--no-clock-check", action="store_true", help="skip rerunning one grid cell in real time"
    )
    p.add_argument(
        "--audio-seconds",
        type=float,
        default=4.0,
        help="length of the decoded clips written to the report",
    )
    p.set_defaults(func=run)


def _progress(message: str) -> None:
    print(message, flush=True)


def _clean(obj: Any) -> Any:
    """JSON-safe copy (NaN -> None, numpy scalars -> Python)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def run(args: argparse.Namespace) -> int:
    for name in ("aioice", "aiortc", "streamcodec.transport", "streamcodec.linksim"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from streamcodec.linksim import sweep

    started = time.monotonic()
    codecs = (
        tuple(c for c in args.codecs.split(",") if c) if args.codecs else sweep.default_codecs()
    )
    if not codecs:
        raise ValueError("no codec to simulate (none of the preferred codecs is registered)")
    set_dir = args.set or sweep.default_speech_dir()
    clips = sweep.speech_clips(set_dir, max(args.clips, 1), args.clip_seconds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    grid_cfg = sweep.GridConfig(
        codecs=codecs,
        rates_bps=args.rates,
        losses=tuple(x / 100.0 for x in args.losses),
        mean_burst_packets=args.burst,
        delay_ms=args.delay_ms,
        jitter_ms=args.jitter_ms,
        seed=args.seed,
        virtual_clock=not args.real_clock,
        metrics=tuple(m for m in args.metrics.split(",") if m),
    )
    pcms = [c for _, c in clips]
    print(f"clips: {', '.join(n for n, _ in clips)} from {set_dir}", flush=True)
    print(
        f"grid: {len(codecs)} codecs x {len(args.rates)} rates x {len(args.losses)} losses "
        f"({'real' if args.real_clock else 'virtual'} clock)",
        flush=True,
    )

    from streamcodec.eval.metrics import Scorers
    from streamcodec.registry import load

    scorers = Scorers(grid_cfg.metrics, True, None)
    offline, cells = {}, []
    t0 = time.monotonic()
    if not args.no_grid:
        offline = {c: sweep.offline_metrics(load(c), pcms, scorers) for c in codecs}
        cells = sweep.run_grid(grid_cfg, pcms, progress=_progress)
    grid_wall = time.monotonic() - t0

    clock_check = None
    if not args.no_clock_check and cells and not args.real_clock:
        rate = 16000.0 if 16000.0 in args.rates else args.rates[len(args.rates) // 2]
        loss = 0.1 if 0.1 in grid_cfg.losses else grid_cfg.losses[-1]
        real_cfg = replace(
            grid_cfg, codecs=codecs[:1], rates_bps=(rate,), losses=(loss,), virtual_clock=False
        )
        real = sweep.run_grid(real_cfg, pcms)[0]
        virt = next(
            c for c in cells if c.codec == codecs[0] and c.rate_bps == rate and c.loss == loss
        )
        clock_check = {
            "codec": codecs[0],
            "rate_bps": rate,
            "loss": loss,
            "virtual": virt.metrics,
            "real": real.metrics,
            "virtual_wall_s": virt.wall_s,
            "real_wall_s": real.wall_s,
        }
        _progress(
            f"clock check ({codecs[0]}, {rate / 1000:g} kbit/s, {100 * loss:g}%): "
            f"virtual {virt.wall_s:.1f} s wall vs real {real.wall_s:.1f} s"
        )

    reliability = []
    if not args.no_reliability:
        reliability = sweep.run_reliability(
            sweep.reliability_runs(quick=args.quick_reliability),
            codecs[0],
            pcms,
            metrics=grid_cfg.metrics,
            progress=_progress,
        )
    levels = []
    if not args.no_concurrency and args.concurrency:
        levels = sweep.run_concurrency(
            codecs[0], pcms, args.concurrency, args.concurrency_seconds, progress=_progress
        )

    total_wall = time.monotonic() - started
    from streamcodec.linksim.report import write_report

    meta = {
        "command": " ".join(["streamcodec simulate", *sys.argv[2:]]).strip(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "set": str(set_dir),
        "clips": [n for n, _ in clips],
        "clip_seconds": [round(c.size / 16000, 2) for c in pcms],
        "grid": _clean(asdict(grid_cfg)),
        "grid_wall_s": grid_wall,
        "total_wall_s": total_wall,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "nice": os.nice(0) if hasattr(os, "nice") else 0,
        "concurrency_codec": codecs[0],
    }
    summary = write_report(
        out, meta, cells, offline, clock_check, reliability, levels, pcms, args.audio_seconds
    )
    _write_csv(out / "grid.csv", summary["grid"])
    (out / "summary.json").write_text(json.dumps(_clean(summary), indent=1) + "\n")
    print(f"wrote {out / 'report.md'} (grid {grid_wall:.0f} s, total {total_wall:.0f} s)")
    return 0


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys = sorted({k for r in rows for k in r["metrics"]})
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["codec", "rate_bps", "loss", *keys])
        for r in rows:
            vals = [r["metrics"].get(k) for k in keys]
            w.writerow(
                [
                    r["codec"],
                    r["rate_bps"],
                    r["loss"],
                    *(
                        "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6g}"
                        for v in vals
                    ),
                ]
            )
