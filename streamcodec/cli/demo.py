"""``streamcodec demo``: the README's main job.

Codes the bundled speech clip (or ``--input``) through a codec, frame by frame
through a stream session pair as a live call would, writes the decoded audio
and prints payload bit/s, speed and quality figures.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def register(subparsers: argparse._SubParsersAction) -> None:
    from streamcodec.registry import DEFAULT_CODEC

    p = subparsers.add_parser(
        "demo", help="code a bundled speech clip and report bit/s and quality"
    )
    p.add_argument("--codec", default=DEFAULT_CODEC, help=f"codec name (default {DEFAULT_CODEC})")
    p.add_argument("--input", type=Path, default=None, help="audio file (default: bundled clip)")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamcodec import assets
    from streamcodec.audio import load_audio, save_audio
    from streamcodec.eval.align import align_to
    from streamcodec.eval.distances import mel_distance, stft_distance
    from streamcodec.registry import load

    src = args.input or assets.demo_clip()
    pcm = load_audio(src)
    codec = load(args.codec)
    duration_s = pcm.size / codec.sample_rate
    print(f"codec:    {codec!r}")
    print(f"input:    {src} ({duration_s:.2f} s)")

    # stream it: 20 ms of PCM at a time in, frames out, frames in, PCM out
    enc, dec = codec.encoder(), codec.decoder()
    chunk = codec.sample_rate // 50
    frames, out, t_enc, t_dec = [], [], 0.0, 0.0
    for start in range(0, pcm.size, chunk):
        t0 = time.perf_counter()
        new = enc.push(pcm[start : start + chunk])
        t1 = time.perf_counter()
        out += [dec.push(f) for f in new]
        t_dec += time.perf_counter() - t1
        t_enc += t1 - t0
        frames += new
    t0 = time.perf_counter()
    tail = enc.flush()
    t1 = time.perf_counter()
    out += [dec.push(f) for f in tail] + [dec.flush()]
    t_dec += time.perf_counter() - t1
    t_enc += t1 - t0
    frames += tail
    decoded = np.concatenate(out)
    aligned, lag = align_to(pcm, decoded, codec.delay_samples)

    args.out.mkdir(parents=True, exist_ok=True)
    dest = save_audio(args.out / f"decoded_{codec.name}.wav", aligned)
    bits = codec.payload_bits(frames)
    print(f"frames:   {len(frames)} x {1000 * codec.frame_duration_s:g} ms")
    print(f"payload:  {bits / duration_s:.0f} bit/s ({bits / 8:.0f} bytes for {duration_s:.2f} s)")
    print(f"speed:    encode RTF {t_enc / duration_s:.4f}, decode RTF {t_dec / duration_s:.4f}")
    print(f"delay:    {1000 * lag / codec.sample_rate:.1f} ms (cross-correlation)")
    print(
        f"quality:  mel distance {mel_distance(pcm, aligned):.3f}, "
        f"STFT distance {stft_distance(pcm, aligned):.3f} (0 = identical)"
    )
    try:
        from pesq import pesq
        from pystoi import stoi

        print(
            f"          PESQ-WB {pesq(16000, pcm, aligned, 'wb'):.2f}, "
            f"STOI {stoi(pcm, aligned, 16000):.3f}"
        )
    except ImportError:
        print("          (install the 'eval' extra for PESQ, STOI and more: streamcodec eval)")
    print(f"decoded:  {dest}")
    return 0
