"""``streamcodec demo``: the README's main job, a loopback call through a codec.

Two peers in this process join a call over a real WebRTC data channel on
127.0.0.1 (ICE, DTLS, SCTP; no signalling server, no outside network). Peer a
streams the bundled speech clip (or ``--input``) in 20 ms chunks in real time,
through the codec's encoder session, the link-budget packetiser
and the data channel; peer b's jitter buffer plays the frames out through the
decoder session. Writes what b heard and prints payload and wire bit/s, frames
delivered and lost, latency and quality against the input.

``--no-call`` skips the network and runs the same encoder/decoder sessions
back to back (a file round trip).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import numpy as np


def register(subparsers: argparse._SubParsersAction) -> None:
    from streamcodec.registry import DEFAULT_CODEC

    p = subparsers.add_parser(
        "demo", help="loopback call through a codec on a bundled speech clip; bit/s and quality"
    )
    p.add_argument("--codec", default=DEFAULT_CODEC, help=f"codec name (default {DEFAULT_CODEC})")
    p.add_argument("--input", type=Path, default=None, help="audio file (default: bundled clip)")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory")
    p.add_argument(
        "--link-budget", type=float, default=16000.0, metavar="BPS",
        help="wire bit/s the loopback link may use each way (default 16000; 0 = unlimited)",
    )  # fmt: skip
    p.add_argument("--no-call", action="store_true", help="file round trip, no WebRTC call")
    p.set_defaults(func=run)


def round_trip(codec, pcm: np.ndarray) -> tuple[np.ndarray, list[bytes], float, float]:
    """Encoder and decoder sessions back to back, 20 ms of PCM per push."""
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
    return np.concatenate(out), frames, t_enc, t_dec


async def loopback_call(codec, pcm: np.ndarray, budget_bps: float | None):
    """Peer a sends ``pcm`` to peer b over WebRTC on 127.0.0.1; returns (heard, a, b stats)."""
    from streamcodec.transport.packetiser import PacketiserConfig
    from streamcodec.transport.peer import PeerConfig
    from streamcodec.transport.session import Call, CallConfig

    cfg = CallConfig(
        packetiser=PacketiserConfig(link_budget_bps=budget_bps),
        peer=PeerConfig(host_addresses=("127.0.0.1",)),
        end_wait_s=0.5,
    )
    a, b = await Call.pair(codec, codec, cfg)
    try:
        _, heard = await asyncio.gather(a.send_realtime(pcm), b.receive_all(30.0))
        return heard, a.stats(), b.stats()
    finally:
        await a.close()
        await b.close()


def run(args: argparse.Namespace) -> int:
    from streamcodec import assets
    from streamcodec.audio import load_audio, save_audio
    from streamcodec.eval.align import align_to
    from streamcodec.eval.distances import mel_distance, stft_distance
    from streamcodec.registry import load

    if args.link_budget < 0:
        raise SystemExit(f"streamcodec demo: --link-budget must be >= 0, got {args.link_budget}")
    src = args.input or assets.demo_clip()
    pcm = load_audio(src)
    codec = load(args.codec)
    duration_s = pcm.size / codec.sample_rate
    print(f"codec:    {codec!r}")
    print(f"input:    {src} ({duration_s:.2f} s)")

    # offline: the same sessions back to back (payload, speed, and the reference decode)
    offline, frames, t_enc, t_dec = round_trip(codec, pcm)
    bits = codec.payload_bits(frames)
    print(f"frames:   {len(frames)} x {1000 * codec.frame_duration_s:g} ms")
    print(f"payload:  {bits / duration_s:.0f} bit/s ({bits / 8:.0f} bytes for {duration_s:.2f} s)")
    print(f"speed:    encode RTF {t_enc / duration_s:.4f}, decode RTF {t_dec / duration_s:.4f}")

    if args.no_call:
        decoded = offline
    else:
        budget = args.link_budget or None
        print("call:     loopback WebRTC data channel on 127.0.0.1, in real time ...", flush=True)
        try:
            import aiortc  # noqa: F401
        except ImportError:
            raise SystemExit(
                "streamcodec demo: the call needs the 'webrtc' extra "
                "(pip install 'streamcodec[webrtc]'), or pass --no-call"
            ) from None
        from streamcodec.cli.call import quiet_libraries

        quiet_libraries(args)
        decoded, sa, sb = asyncio.run(loopback_call(codec, pcm, budget))
        plan, rx = sa.plan, sb.rx
        wire_bps = 8 * sa.wire_sent.wire_bytes / max(sa.elapsed_s, 1e-9)
        print(
            f"link:     {plan.frames_per_message} frames per message every "
            f"{plan.interval_ms:g} ms; planned wire {plan.forward_wire_bps:.0f} bit/s, "
            f"measured {wire_bps:.0f} bit/s (a -> b, all datagrams over {sa.elapsed_s:.1f} s)"
        )
        print(
            f"received: {sb.rx.packets_received}/{sa.packets_sent} messages, "
            f"{rx.frames_played} frames played, {rx.frames_concealed} concealed, "
            f"{rx.packets_lost} messages lost; playout margin {rx.margin_ms:.0f} ms"
        )
    aligned, lag = align_to(pcm, decoded, codec.delay_samples)
    args.out.mkdir(parents=True, exist_ok=True)
    dest = save_audio(args.out / f"decoded_{codec.name}.wav", aligned)
    print(f"delay:    {1000 * lag / codec.sample_rate:.1f} ms codec delay (cross-correlation)")
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
