"""Speed of the mel vocoder on CPU: offline and streaming real-time factor, one stream.

Writes ``benchmarks/results/vocoder_speed.{json,md}``. RTF = processing time /
audio duration, median over ``--repeats`` runs. Streaming pushes ``n`` mel frames
(``n`` x 10 ms) per call through a :class:`VocoderStream`; the codec row runs the
whole ``mel-vocoder`` codec (streaming log-mel encoder + decoder sessions).

    python benchmarks/bench_vocoder.py                 # bundled weights, 1 and 2 threads
    python benchmarks/bench_vocoder.py --weights DIR --seconds 10
    python benchmarks/bench_vocoder.py --phase pghi    # -> vocoder_speed_pghi.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from streamcodec import packed_linear
from streamcodec.vocoder import Vocoder, VocoderConfig
from streamcodec.vocoder import traced as traced_mod
from streamcodec.vocoder.codec import MelVocoderCodec
from streamcodec.vocoder.phase import PHASE_MODES

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_times(fns: list, repeats: int) -> list[tuple[float, float]]:
    """Median (wall seconds, process CPU seconds) of each ``fn()`` over ``repeats`` calls,
    taken in turns over ``fns`` so that a slow spell of the shared machine does not land on
    one of them.

    On a shared machine the wall time includes waiting for a core; the CPU time
    (all threads summed) does not, so with one thread it approximates the wall
    time on an idle core.
    """
    for fn in fns:
        fn()  # warm-up (and the first stream builds the generator's trace)
    walls: list[list[float]] = [[] for _ in fns]
    cpus: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t, c = time.perf_counter(), time.process_time()
            fn()
            walls[i].append(time.perf_counter() - t)
            cpus[i].append(time.process_time() - c)
    return [(statistics.median(w), statistics.median(c)) for w, c in zip(walls, cpus, strict=True)]


def with_trace(fn, traced: bool):
    """``fn`` run with the vocoder's TorchScript trace on or off (streamcodec.vocoder.traced)."""

    def run() -> None:
        before = os.environ.get(traced_mod.TRACE_ENV)
        os.environ[traced_mod.TRACE_ENV] = "1" if traced else "0"
        try:
            fn()
        finally:
            if before is None:
                del os.environ[traced_mod.TRACE_ENV]
            else:
                os.environ[traced_mod.TRACE_ENV] = before

    return run


def trace_and_module(fn, repeats: int) -> list[tuple[bool, tuple[float, float]]]:
    """``(traced, (wall s, CPU s))`` of ``fn`` with the trace and with the module, in turns."""
    fns = [with_trace(fn, True), with_trace(fn, False)]
    return list(zip((True, False), median_times(fns, repeats), strict=True))


def row(mode: str, chunk_ms: float, traced: bool, times: tuple[float, float], dur: float) -> dict:
    t, c = times
    return {
        "mode": mode,
        "chunk_ms": chunk_ms,
        "traced": traced,
        "rtf": t / dur,
        "cpu_rtf": c / dur,
    }


def bench(
    vocoder: Vocoder, seconds: float, chunks: list[int], repeats: int, threads: int
) -> list[dict]:
    """Offline, then each streaming mode with the trace and with the module (``traced``)."""
    n_frames = int(seconds * 100)
    g = torch.Generator().manual_seed(0)
    mel = torch.randn(1, vocoder.cfg.mel.n_mels, n_frames, generator=g) - 4.0
    audio_s = n_frames * vocoder.cfg.hop_samples / vocoder.cfg.mel.sample_rate
    (offline,) = median_times([lambda: vocoder.synthesize(mel)], repeats)
    rows = [row("offline", audio_s * 1000, False, offline, audio_s)]
    for n in chunks:

        def run_stream(n: int = n) -> None:
            s = vocoder.stream(threads=threads)
            for i in range(0, n_frames, n):
                s.push(mel[..., i : i + n])
            s.flush()

        rows += [
            row("stream", 10 * n, tr, t, audio_s) for tr, t in trace_and_module(run_stream, repeats)
        ]
    codec = MelVocoderCodec(vocoder=vocoder, threads=threads)
    pcm = (np.random.default_rng(0).standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)

    def run_codec() -> None:
        enc, dec = codec.encoder(), codec.decoder()
        for i in range(0, pcm.size, codec.frame_samples):
            for f in enc.push(pcm[i : i + codec.frame_samples]):
                dec.push(f)
        dec.flush()

    dur = pcm.size / 16000
    ms = 1000 * codec.frame_duration_s
    rows += [row("codec enc+dec", ms, tr, t, dur) for tr, t in trace_and_module(run_codec, repeats)]
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default="mel-vocoder", help="weights dir or bundled name")
    ap.add_argument("--random-init", action="store_true", help="shipped config, random weights")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument(
        "--chunks", type=int, nargs="+", default=[1, 2, 4, 8], help="mel frames per push"
    )
    ap.add_argument(
        "--phase", choices=PHASE_MODES, default="network", help="streamcodec.vocoder.phase"
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if args.random_init:
        vocoder = Vocoder.from_config(VocoderConfig(), phase=args.phase)
        source = "random init (shipped config)"
    else:
        vocoder = Vocoder.from_pretrained(args.weights, phase=args.phase)
        source = str(args.weights)
    stem = "vocoder_speed" if args.phase == "network" else f"vocoder_speed_{args.phase}"
    cfg = vocoder.cfg
    results = []
    for th in args.threads:
        torch.set_num_threads(th)
        for row in bench(vocoder, args.seconds, args.chunks, args.repeats, th):
            results.append({"threads": th, **row})
            print(
                f"threads {th} {row['mode']:14s} {row['chunk_ms']:7.0f} ms  "
                f"{'trace ' if row['traced'] else 'module'}  "
                f"RTF {row['rtf']:.4f}  CPU-time RTF {row['cpu_rtf']:.4f}"
            )
    report = {
        "weights": source,
        "parameters": vocoder.generator.num_parameters(),
        "config": cfg.to_dict(),
        "phase": args.phase,
        "delay_samples": vocoder.delay_samples,
        "delay_ms": 1000 * vocoder.delay_samples / cfg.mel.sample_rate,
        "latency_ms": vocoder.latency_ms,
        "audio_s": args.seconds,
        "repeats": args.repeats,
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "load_avg_1_5_15": os.getloadavg(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu_fp16_linear": packed_linear.enabled(),
        },
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# mel-vocoder speed (CPU, one stream; phase: {args.phase})",
        "",
        f"Weights: {source}; {report['parameters'] / 1e6:.2f} M parameters; "
        f"delay {report['delay_ms']:.0f} ms (+ 10 ms hop framing = {vocoder.latency_ms:.0f} ms "
        f"algorithmic latency). {args.seconds:g} s of audio, median of {args.repeats}.",
        f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, torch "
        f"{torch.__version__}; load average at the end "
        f"{', '.join(f'{x:.1f}' for x in report['machine']['load_avg_1_5_15'])} "
        "(the machine is shared: a high load inflates the numbers); "
        f"{'fp16' if report['machine']['cpu_fp16_linear'] else 'fp32'} weights in the linear "
        "layers (streamcodec/packed_linear.py).",
        "",
        "RTF = wall time / audio time; CPU-time RTF = process CPU time (all threads) / audio time. "
        "Streams run the generator as a frozen TorchScript trace (the default, "
        "streamcodec/vocoder/traced.py) or as the nn.Module (`STREAMCODEC_TRACE_VOCODER=0`), "
        "measured in turns.",
        "",
        "| threads | mode | chunk (ms) | generator | RTF (wall) | CPU-time RTF |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['threads']} | {r['mode']} | {r['chunk_ms']:.0f} "
            f"| {'trace' if r['traced'] else 'module'} | {r['rtf']:.4f} "
            f"| {r['cpu_rtf']:.4f} |"
        )
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / f'{stem}.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
