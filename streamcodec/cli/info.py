"""``streamcodec info NAME``: a codec's rates, frame layout and algorithmic latency."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info",
        help="show a codec's bit rate, frame layout and algorithmic latency",
        description="For voice-* codecs the latency is computed from the configuration files "
        "(no weights needed).",
    )
    p.add_argument("name", help="codec name, e.g. voice-700")
    p.add_argument("--weights", type=Path, help="voice codec weights directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamcodec.registry import describe, list_codecs

    if args.name not in list_codecs():
        raise ValueError(f"unknown codec {args.name!r}; available: {', '.join(list_codecs())}")
    if args.name.startswith("voice-"):
        from streamcodec.voice.info import voice_info

        info = voice_info(args.name, args.weights)
    else:
        from streamcodec.registry import load

        codec = load(args.name)
        info = {
            "name": codec.name,
            "frame_ms": 1000 * codec.frame_duration_s,
            "bits_per_frame": codec.bits_per_frame,
            "payload_bps": codec.payload_bps,
            "delay_ms": 1000 * codec.delay_samples / codec.sample_rate,
        }
    info["description"] = describe(args.name)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['name']}: {info['description']}")
    if "latency_ms" in info:
        lat = info["latency_ms"]
        print(
            f"  token frame {info['token_frame_ms']:g} ms ({info['frames_per_s']:g} frames/s), "
            f"{info['bits_per_frame']} bits/frame (semantic {info['bits']['semantic']} + "
            f"acoustic {info['bits']['acoustic']}) -> {info['payload_bps']:g} bit/s"
        )
        print(
            f"  decoder: {info['decode_chunk_ms']:g} ms chunks, {info['steps']} steps, "
            f"guidance {info['guidance']:g}"
        )
        print(
            f"  algorithmic latency {lat['total_ms']:g} ms = semantic encoder (frame + "
            f"look-ahead) {lat['semantic_encoder_ms']:g} + decode-chunk wait "
            f"{lat['decode_chunk_wait_ms']:g} + vocoder delay {lat['vocoder_delay_ms']:g}"
        )
        print(f"  weights: {info['weights'] or 'not trained yet (preset configuration)'}")
    else:
        rate = info["payload_bps"]
        print(
            f"  frame {info['frame_ms']:g} ms, "
            f"{'variable' if rate is None else f'{rate:g} bit/s'}, delay {info['delay_ms']:g} ms"
        )
    return 0
