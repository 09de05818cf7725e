"""``streamcodec encode IN OUT.sc``: encode an audio file to a ``.sc`` token file."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "encode",
        help="encode audio to a .sc file",
        description="Reads any audio file PyAV decodes (resampled to 16 kHz mono) and writes "
        "the codec's frames to a versioned .sc file.",
    )
    p.add_argument("input", type=Path, help="audio file")
    p.add_argument("output", type=Path, help=".sc file to write")
    p.add_argument("--codec", default=None, help="codec name (default: the default codec)")
    p.add_argument("--weights", type=Path, help="voice codec weights directory")
    p.set_defaults(func=run)


def load_codec(name: str, weights: Path | None = None, **sampling: object):
    """``streamcodec.load(name)`` with a weights directory / sampling options for voice codecs."""
    from streamcodec.registry import load

    kwargs = {k: v for k, v in sampling.items() if v is not None}
    if weights is not None:
        kwargs["weights"] = weights
    if kwargs and not name.startswith("voice-"):
        raise ValueError(f"options {sorted(kwargs)} only apply to voice-* codecs, not {name!r}")
    return load(name, **kwargs)


def run(args: argparse.Namespace) -> int:
    from streamcodec.audio import load_audio
    from streamcodec.registry import DEFAULT_CODEC
    from streamcodec.voice.scfile import ScFile, write_sc

    name = args.codec or DEFAULT_CODEC
    codec = load_codec(name, args.weights)
    pcm = load_audio(args.input, codec.sample_rate)
    frames = codec.encode(pcm)
    sc = ScFile(name, codec.sample_rate, int(pcm.size), codec.bits_per_frame, tuple(frames))
    write_sc(args.output, sc)
    bits = codec.payload_bits(frames)
    dur = pcm.size / codec.sample_rate
    print(
        f"{args.input} -> {args.output}: {name}, {len(frames)} frames, {dur:.2f} s, "
        f"{bits} payload bits ({bits / max(dur, 1e-9):.0f} bit/s), "
        f"{args.output.stat().st_size} bytes on disk"
    )
    return 0
