"""Speed and latency of the semantic tokenizer on this machine's CPU.

Streams 20 s of audio through one tokenizer session per setting (push size,
threads), reports real-time factor (processing time / audio time, median of
repeats), the configured algorithmic latency per rate, and model sizes. Writes
``benchmarks/results/semantic_speed.json`` and ``.md``. Never asserted.

    python benchmarks/bench_semantic.py [--weights-dir DIR] [--seconds 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from streamcodec.semantic import RATES, load_tokenizer
from streamcodec.semantic.encoder import count_parameters

OUT = Path(__file__).resolve().parent / "results"


def stream_rtf(tok, pcm: np.ndarray, push: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        s = tok.stream()
        t0 = time.perf_counter()
        for i in range(0, pcm.size, push):
            s.push(pcm[i : i + push])
        s.flush()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) / (pcm.size / 16000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--weights-dir", default=None)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    pcm = (0.1 * rng.standard_normal(int(args.seconds * 16000))).astype(np.float32)
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name in ("semantic-700", "semantic-1400"):
            tok = load_tokenizer(name, args.weights_dir)
            for push_ms in (20, 40, 80):
                rtf = stream_rtf(tok, pcm, push_ms * 16, args.repeats)
                rows.append(
                    {
                        "tokenizer": name,
                        "threads": threads,
                        "push_ms": push_ms,
                        "rtf": round(rtf, 4),
                    }
                )
                print(rows[-1])
    tok = load_tokenizer("semantic-700", args.weights_dir)
    enc = tok.encoder
    report = {
        "machine": f"{platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at start",
        "torch": torch.__version__,
        "audio_s": args.seconds,
        "encoder_parameters": count_parameters(enc),
        "encoder_fp16_mb": round(2 * count_parameters(enc) / 1e6, 2),
        "latency_ms": {n: load_tokenizer(n, args.weights_dir).latency_ms for n in RATES},
        "chunk_ms": enc.cfg.chunk_ms,
        "lookahead_ms": enc.cfg.lookahead_ms,
        "context_ms": list(enc.cfg.context_ms),
        "stream_rtf": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "semantic_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Semantic tokenizer speed (CPU, one stream)",
        "",
        f"{report['machine']}; torch {report['torch']}; {args.seconds:.0f} s of audio, "
        f"median of {args.repeats}.",
        f"Encoder: {report['encoder_parameters'] / 1e6:.2f} M parameters "
        f"({report['encoder_fp16_mb']} MB fp16); chunk {report['chunk_ms']:.0f} ms, look-ahead "
        f"{report['lookahead_ms']:.0f} ms; algorithmic latency "
        + ", ".join(f"{k} {v:.0f} ms" for k, v in report["latency_ms"].items())
        + ".",
        "",
        "| tokenizer | threads | push (ms) | real-time factor |",
        "|---|---|---|---|",
        *[f"| {r['tokenizer']} | {r['threads']} | {r['push_ms']} | {r['rtf']:.4f} |" for r in rows],
    ]
    (out / "semantic_speed.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
