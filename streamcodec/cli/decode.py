"""``streamcodec decode IN.sc OUT.wav``: decode a ``.sc`` token file to audio."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "decode",
        help="decode a .sc file to audio",
        description="The codec is named in the .sc file. The output is trimmed to the encoded "
        "signal's length and aligned with it (the codec's delay removed).",
    )
    p.add_argument("input", type=Path, help=".sc file")
    p.add_argument("output", type=Path, help="audio file to write (.wav, .flac, ...)")
    p.add_argument("--weights", type=Path, help="voice codec weights directory")
    p.add_argument("--steps", type=int, help="voice codecs: decoder steps per chunk")
    p.add_argument("--guidance", type=float, help="voice codecs: guidance scale")
    p.add_argument("--seed", type=int, help="voice codecs: noise seed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from streamcodec.audio import save_audio
    from streamcodec.cli.encode import load_codec
    from streamcodec.voice.scfile import read_sc

    sc = read_sc(args.input)
    codec = load_codec(
        sc.codec, args.weights, steps=args.steps, guidance=args.guidance, seed=args.seed
    )
    if sc.bits_per_frame != codec.bits_per_frame or sc.sample_rate != codec.sample_rate:
        raise ValueError(
            f"{args.input}: {sc.bits_per_frame} bits/frame at {sc.sample_rate} Hz does not match "
            f"{codec.name} ({codec.bits_per_frame} bits/frame at {codec.sample_rate} Hz)"
        )
    pcm = codec.decode(list(sc.frames))
    d = codec.delay_samples
    out = pcm[d : d + sc.num_samples]
    if out.size < sc.num_samples:
        out = np.concatenate([out, np.zeros(sc.num_samples - out.size, dtype=np.float32)])
    save_audio(args.output, out, codec.sample_rate)
    print(f"{args.input} -> {args.output}: {sc.codec}, {len(sc.frames)} frames, {out.size} samples")
    return 0
