"""``streamcodec call``: a two-way voice call over WebRTC with any registered codec.

Two terminals on one machine::

    streamcodec call --serve --room demo --input a.wav --output a_heard.wav --codec codec2-700c
    streamcodec call --room demo --input b.wav --output b_heard.wav --codec codec2-700c

(``--serve`` hosts the signalling server inside the first call; with a separate
``streamcodec serve`` both calls leave it out.) Prints live payload and wire bit/s
and the loss counters while the call runs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from streamcodec.audio import load_audio, resample, save_audio
from streamcodec.registry import list_codecs, load
from streamcodec.transport.packetiser import PacketiserConfig
from streamcodec.transport.peer import IceServer, PeerConfig
from streamcodec.transport.session import Call, CallConfig, CallStats
from streamcodec.transport.signalling import (
    SignallingError,
    SignallingServer,
    SignallingServerConfig,
)

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_MIC_DEFAULTS = {"linux": ("default", "alsa"), "darwin": (":0", "avfoundation")}


def quiet_libraries(args: argparse.Namespace) -> None:
    """Keep aioice/aiortc/websockets INFO chatter out of the call output unless -v."""
    if not getattr(args, "verbose", False):
        for name in ("aioice", "aiortc", "websockets", "streamcodec.transport"):
            logging.getLogger(name).setLevel(logging.WARNING)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "call",
        help="call another `streamcodec call` through a signalling server",
        description="Two-way voice call: codec tokens over a WebRTC data channel.",
    )
    p.add_argument("--server", default="ws://127.0.0.1:8765", help="signalling server URL")
    p.add_argument("--room", required=True, help="room name shared by the two callers")
    p.add_argument("--token", default=None, help="shared secret of the signalling server")
    p.add_argument("--serve", action="store_true", help="also host the signalling server")
    p.add_argument("--input", required=True, help="audio file to send, or 'mic'")
    p.add_argument("--output", required=True, help="file to write what you hear, or 'speaker'")
    p.add_argument("--codec", default="codec2-700c", help=f"one of: {', '.join(list_codecs())}")
    p.add_argument(
        "--link-budget",
        type=float,
        default=16000.0,
        metavar="BPS",
        help="wire bit/s the link carries each way (default 16000; 0 = unlimited)",
    )
    p.add_argument("--rtt-ms", type=float, default=0.0, help="path RTT; interval >= RTT")
    p.add_argument("--frames-per-message", type=int, default=None, help="override the budget")
    p.add_argument(
        "--redundancy",
        type=int,
        default=0,
        metavar="K",
        help="repeat the previous K frames in each message",
    )
    p.add_argument("--dtx", action="store_true", help="send nothing in silence (energy VAD)")
    p.add_argument("--duration", type=float, default=None, help="hang up after this many s")
    p.add_argument("--stats-interval", type=float, default=1.0, help="s between status lines")
    p.add_argument(
        "--host-address",
        action="append",
        default=None,
        metavar="ADDR",
        help="local address for ICE host candidates (repeatable; default: all "
        "non-loopback, or 127.0.0.1 when the server is on loopback)",
    )
    p.add_argument(
        "--ice-server",
        action="append",
        default=[],
        metavar="URL",
        help="STUN/TURN URL (repeatable; default none)",
    )
    p.add_argument("--mic-device", default=None, help="PyAV input device for 'mic'")
    p.add_argument("--mic-format", default=None, help="PyAV input format for 'mic' (alsa, ...)")
    p.add_argument("--speaker-device", default="default", help="PyAV output device")
    p.add_argument("--speaker-format", default="alsa", help="PyAV output format for 'speaker'")
    p.set_defaults(func=run)


def _call_config(args: argparse.Namespace) -> CallConfig:
    host = urlparse(args.server).hostname or ""
    addresses = args.host_address
    if addresses is None and host in _LOOPBACK_HOSTS:
        addresses = ["127.0.0.1"]
    return CallConfig(
        packetiser=PacketiserConfig(
            link_budget_bps=args.link_budget or None,
            rtt_ms=args.rtt_ms,
            frames_per_message=args.frames_per_message,
            redundancy_frames=args.redundancy,
            dtx=args.dtx,
        ),
        peer=PeerConfig(
            ice_servers=tuple(IceServer((url,)) for url in args.ice_server),
            host_addresses=tuple(addresses) if addresses else None,
        ),
    )


def _status(now: CallStats, before: CallStats | None) -> str:
    dt = now.elapsed_s - (before.elapsed_s if before else 0.0)
    dt = max(dt, 1e-3)

    def rate(get) -> float:
        return 8.0 * (get(now) - (get(before) if before else 0)) / dt

    payload = rate(lambda s: s.tx.payload_bits / 8)
    out = rate(lambda s: s.wire_sent.wire_bytes)
    inn = rate(lambda s: s.wire_received.wire_bytes)
    rx = now.rx
    return (
        f"{now.elapsed_s:6.1f} s | send {payload:6.0f} b/s payload, {out / 1000:5.1f} kb/s wire"
        f" ({now.tx.messages_sent} msgs) | recv {inn / 1000:5.1f} kb/s wire | "
        f"pkts {rx.packets_received} lost {rx.packets_lost} late {rx.packets_late} | "
        f"frames recovered {rx.frames_recovered} concealed {rx.frames_concealed}"
    )


def _open_mic(args: argparse.Namespace):
    """The microphone as an aiortc ``MediaPlayer`` (opened before joining, to fail early)."""
    from aiortc.contrib.media import MediaPlayer

    device, fmt = _MIC_DEFAULTS.get(sys.platform, ("default", "alsa"))
    device, fmt = args.mic_device or device, args.mic_format or fmt
    try:
        player = MediaPlayer(device, format=fmt)
    except Exception as exc:  # PyAV raises its own error types per platform
        raise ValueError(f"cannot open microphone {device!r} ({fmt}): {exc}") from exc
    if player.audio is None:
        raise ValueError(f"no audio stream on input device {device!r} ({fmt})")
    return player


async def _send_mic(call: Call, player) -> None:
    from streamcodec.transport.track import send_track

    await send_track(call, player.audio)


def _open_speaker(args: argparse.Namespace, rate: int):
    """A PyAV output device (``--speaker-format``, e.g. alsa) taking s16 mono at ``rate``."""
    import av

    try:
        out = av.open(args.speaker_device, "w", format=args.speaker_format)
        stream = out.add_stream("pcm_s16le", rate=rate, layout="mono")
    except Exception as exc:
        raise ValueError(
            f"cannot open speaker {args.speaker_device!r} ({args.speaker_format}): {exc}"
        ) from exc
    return out, stream, rate


async def _play_speaker(call: Call, speaker) -> None:
    import av

    out, stream, rate = speaker
    remote_rate = call.remote_stream.sample_rate if call.remote_stream else rate
    try:
        pts = 0
        while (pcm := await call.recv_pcm()) is not None:
            if remote_rate != rate:
                pcm = resample(pcm, remote_rate, rate)
            pcm16 = (np.clip(pcm, -1, 1) * 32767).round().astype(np.int16)[None, :]
            frame = av.AudioFrame.from_ndarray(pcm16, format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, pts
            pts += pcm16.shape[1]
            for packet in stream.encode(frame):
                await asyncio.to_thread(out.mux, packet)  # the device paces the writes
    finally:
        out.close()


async def _collect(call: Call, parts: list[np.ndarray]) -> None:
    while (pcm := await call.recv_pcm()) is not None:
        parts.append(pcm)


async def _main(args: argparse.Namespace) -> int:
    codec = load(args.codec)
    if args.output != "speaker" and Path(args.output).suffix.lower() not in (".wav", ".flac"):
        raise ValueError(f"--output must be a .wav/.flac file or 'speaker', got {args.output!r}")
    pcm_in = mic = speaker = None
    if args.input == "mic":
        mic = _open_mic(args)
    else:
        pcm_in = load_audio(args.input, sample_rate=codec.sample_rate)
    if args.output == "speaker":
        speaker = _open_speaker(args, codec.sample_rate)
    server = None
    if args.serve:
        url = urlparse(args.server)
        server = SignallingServer(
            SignallingServerConfig(
                host=url.hostname or "127.0.0.1", port=url.port or 8765, token=args.token
            )
        )
        await server.start()
        print(f"hosting the signalling server at {args.server}", flush=True)
    try:
        print(
            f"joining room {args.room!r} at {args.server}; waiting for the other peer...",
            flush=True,
        )
        started = time.monotonic()
        call = await Call.join(args.server, args.room, codec, _call_config(args), token=args.token)
        plan = call.packetiser.plan
        print(
            f"connected in {time.monotonic() - started:.1f} s; sending {codec.name} "
            f"({plan.payload_bps:.0f} b/s), {plan.frames_per_message} frames/message "
            f"every {plan.interval_ms:.0f} ms; modelled wire {plan.forward_wire_bps / 1000:.1f} "
            f"kb/s data + {plan.reverse_wire_bps / 1000:.1f} kb/s acks each way; remote sends "
            f"{call.remote_stream.codec}",
            flush=True,
        )
        return await _run_call(call, pcm_in, mic, speaker, args)
    finally:
        if server is not None:
            await server.close()


async def _run_call(
    call: Call, pcm_in: np.ndarray | None, mic, speaker, args: argparse.Namespace
) -> int:
    parts: list[np.ndarray] = []
    sender = asyncio.create_task(
        call.send_realtime(pcm_in) if pcm_in is not None else _send_mic(call, mic)
    )
    receiver = asyncio.create_task(
        _collect(call, parts) if speaker is None else _play_speaker(call, speaker)
    )
    closed = asyncio.create_task(call.peer.wait_closed())
    hang_up = asyncio.Event()  # Ctrl-C ends the call cleanly (the output file is still written)
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, hang_up.set)
    except (NotImplementedError, RuntimeError):  # no signal handlers (Windows, threads)
        pass
    stop = asyncio.create_task(hang_up.wait())
    deadline = None if args.duration is None else time.monotonic() + args.duration
    before: CallStats | None = None
    try:
        while not stop.done() and not (sender.done() and receiver.done()):
            if deadline is not None and time.monotonic() >= deadline:
                break
            if closed.done():  # connection gone: nothing more to send; play what arrived
                sender.cancel()
            timeout = args.stats_interval
            if deadline is not None:
                timeout = min(timeout, max(deadline - time.monotonic(), 0.0))
            pending = {t for t in (sender, receiver, closed, stop) if not t.done()}
            await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            now = call.stats()
            if before is None or now.elapsed_s - before.elapsed_s >= 0.95 * args.stats_interval:
                print(_status(now, before), flush=True)
                before = now
            for task in (sender, receiver):
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
    finally:
        await call.close()  # ends the remote stream: the receiver gets what is left, then ends
        for task in (sender, closed, stop):
            task.cancel()
        try:
            await asyncio.wait_for(receiver, 5.0)
        except (asyncio.TimeoutError, TimeoutError, asyncio.CancelledError):  # noqa: UP041
            receiver.cancel()
        except Exception:  # already reported above, or failing while hanging up
            pass
        await asyncio.gather(sender, receiver, closed, stop, return_exceptions=True)
    final = call.stats()
    if args.output != "speaker":
        if parts:
            save_audio(args.output, np.concatenate(parts), call.remote_stream.sample_rate)
            print(f"wrote {args.output}")
        else:
            print("nothing received; no output written")
    rx = final.rx
    print(
        f"done: sent {final.tx.messages_sent} messages ({final.tx.frames_sent} frames, "
        f"{final.tx.frames_dtx} DTX); received {rx.packets_received} of {rx.packets_expected}, "
        f"lost {rx.packets_lost}, late {rx.packets_late}, recovered {rx.frames_recovered}, "
        f"concealed {rx.frames_concealed} frames"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    quiet_libraries(args)
    try:
        return asyncio.run(_main(args))
    except KeyboardInterrupt:
        print("hung up")
        return 0
    except (ConnectionError, TimeoutError, SignallingError) as exc:
        print(f"streamcodec call: {exc}", file=sys.stderr)
        return 1
