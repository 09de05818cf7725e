"""Sampling settings of a voice codec (decoder steps, guidance, noise scale) on dev files.

Each variant is one ``streamcodec eval`` run (the same harness and metrics) of the bundled
weights with other sampling settings, on the first ``--limit`` files; two variants run at
a time in separate processes (the harness's own workers are spawned and would not see a
codec registered here). The report compares every variant with the first one file by
file: mean difference ± its standard error. Variants already evaluated in ``--out`` are
reused.

    python benchmarks/sweep_voice_sampling.py --config voice-700 --limit 24 \\
        --variants 4,2,1 4,3,1 4,1.5,1 4,2,0.8 6,2,1 \\
        --out benchmarks/results/voice/voice-700/sampling_sweep
"""

from __future__ import annotations

import argparse
import csv
import math
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEV_SPEECH = REPO.parent / "shared" / "data" / "dev" / "speech"
LOWER_IS_BETTER = {"mel_distance", "stft_distance", "wer"}


def parse_variant(text: str) -> tuple[int, float, float]:
    try:
        steps, guidance, noise = text.split(",")
        v = int(steps), float(guidance), float(noise)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"variant {text!r} is not STEPS,GUIDANCE,NOISE_SCALE (e.g. 4,2,1)"
        ) from None
    if v[0] < 1 or v[1] < 1.0 or v[2] < 0:
        raise argparse.ArgumentTypeError(
            f"variant {text!r}: need steps >= 1, guidance >= 1, noise scale >= 0"
        )
    return v


def variant_name(config: str, v: tuple[int, float, float]) -> str:
    return f"{config}-s{v[0]}-g{v[1]:g}-n{v[2]:g}"


def run_one(args: argparse.Namespace) -> None:
    """Child process: register one variant and evaluate it."""
    from streamcodec import registry
    from streamcodec.eval.harness import EvalConfig, run_eval

    v = args.one
    name = variant_name(args.config, v)
    registry.register(
        name,
        "streamcodec.voice.codec:VoiceCodec",
        f"{args.config}, {v[0]} steps, guidance {v[1]:g}, noise scale {v[2]:g}",
        config=args.config,
        steps=v[0],
        guidance=v[1],
        noise_scale=v[2],
    )
    cfg = EvalConfig(
        codecs=(name,),
        set_dir=args.set,
        out_dir=args.out / name,
        limit=args.limit,
        metrics=tuple(args.metrics.split(",")),
        clips=0,
        progress=False,
    )
    run_eval(cfg, jobs=1)


def per_file(path: Path) -> dict[str, dict[str, float]]:
    """The codec's rows of a per_file.csv (not the reference's), by file."""
    rows = {}
    with path.open() as f:
        for r in csv.DictReader(f):
            if r["codec"] != "reference":
                rows[r["file"]] = {k: float(v) for k, v in r.items() if _is_number(v)}
    return rows


def _is_number(v: str) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def report(args: argparse.Namespace) -> str:
    names = [variant_name(args.config, v) for v in args.variants]
    data = {n: per_file(args.out / n / "per_file.csv") for n in names}
    base = names[0]
    metrics = [m for m in args.metric_columns if m in next(iter(data[base].values()))]
    lines = [
        f"# {args.config}: sampling settings on the first {args.limit} files of "
        f"{args.set.name if args.set.name != 'speech' else 'dev/speech'}",
        "",
        "Variant = decoder steps, classifier-free guidance, noise scale (`s4-g2-n1`: 4 steps, "
        "guidance 2, noise scale 1). Same weights, same noise seed, same harness as "
        "`streamcodec eval`. "
        f"Difference = variant - {base}, mean over the same files ± its standard error; "
        "**bold** where it is better by more than two standard errors.",
        "",
        "| variant | " + " | ".join(metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for n in names:
        cells = []
        for m in metrics:
            files = [f for f in data[base] if m in data[n].get(f, {}) and m in data[base][f]]
            vals = [data[n][f][m] for f in files]
            mean = sum(vals) / len(vals)
            if n == base:
                cells.append(f"{mean:.3f}")
                continue
            d = [data[n][f][m] - data[base][f][m] for f in files]
            md = sum(d) / len(d)
            var = sum((x - md) ** 2 for x in d) / max(len(d) - 1, 1)
            se = math.sqrt(var / len(d))
            better = -md if m in LOWER_IS_BETTER else md
            cell = f"{mean:.3f} ({md:+.3f} ± {se:.3f})"
            cells.append(f"**{cell}**" if better > 2 * se > 0 else cell)
        lines.append(f"| {n.removeprefix(args.config + '-')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="voice-700")
    p.add_argument("--set", type=Path, default=DEV_SPEECH)
    p.add_argument("--limit", type=int, default=24)
    p.add_argument("--variants", type=parse_variant, nargs="+", default=[(4, 2.0, 1.0)])
    p.add_argument("--metrics", default="mel_distance,stoi,visqol,dnsmos")
    p.add_argument("--parallel", type=int, default=2, help="variants evaluated at once")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--one", type=parse_variant, help=argparse.SUPPRESS)
    p.add_argument("--report-only", action="store_true", help="only rewrite sweep.md")
    args = p.parse_args()
    args.metric_columns = ["mel_distance", "stft_distance", "pesq_wb", "stoi", "visqol",
                           "dnsmos_sig", "dnsmos_ovrl", "wer", "spk_sim"]  # fmt: skip
    if args.one is not None:
        run_one(args)
        return
    if not args.report_only:
        # a variant already evaluated in --out is reused (delete its folder to redo it)
        pending = [
            v
            for v in args.variants
            if not (args.out / variant_name(args.config, v) / "per_file.csv").exists()
        ]
        running: list[tuple[subprocess.Popen, tuple]] = []
        while pending or running:
            while pending and len(running) < args.parallel:
                v = pending.pop(0)
                cmd = [sys.executable, __file__, "--config", args.config, "--set", str(args.set),
                       "--limit", str(args.limit), "--metrics", args.metrics, "--out",
                       str(args.out), "--one", ",".join(map(str, v))]  # fmt: skip
                print(f"start {variant_name(args.config, v)}", flush=True)
                running.append((subprocess.Popen(cmd), v))
            time.sleep(2)
            for proc, v in list(running):
                if proc.poll() is not None:
                    running.remove((proc, v))
                    if proc.returncode:
                        name = variant_name(args.config, v)
                        raise SystemExit(f"{name} failed (exit {proc.returncode})")
                    print(f"done {variant_name(args.config, v)}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.md").write_text(report(args))
    print((args.out / "sweep.md").read_text())


if __name__ == "__main__":
    main()
