"""The app-facing call: PCM in, PCM out, codec tokens over a WebRTC data channel.

::

    codec = streamcodec.load("codec2-700c")
    call = await Call.join("ws://127.0.0.1:8765", "room1", codec)   # via `streamcodec serve`
    await call.send_pcm(pcm_chunk)        # [T] float32 at codec.sample_rate, any T
    out = await call.recv_pcm()           # [T] float32, None once the remote stream ended
    await call.end_input(); await call.close()

Send path: encoder session -> (optional VAD for DTX) -> :class:`Packetiser` -> peer.
Receive path: peer -> :func:`parse` -> :class:`JitterBuffer` -> a playout task that
pops due frames on the event-loop clock -> decoder session (``None`` frames are
concealed by the codec) -> a queue of :class:`DecodedChunk`.

At the end of its input a side sends ``bye`` with its packet count over signalling
(reliable), so the receiver also counts trailing losses: sent = received + lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from streamcodec.audio import check_pcm
from streamcodec.codec import Codec, DecoderSession
from streamcodec.registry import load
from streamcodec.transport.jitter import JitterBuffer, JitterConfig, JitterStats, PlayoutFrame
from streamcodec.transport.overhead import OverheadModel
from streamcodec.transport.packetiser import (
    Packetiser,
    PacketiserConfig,
    PacketiserStats,
    PacketPlan,
)
from streamcodec.transport.packets import PacketError, parse
from streamcodec.transport.peer import DatagramTap, Peer, PeerConfig, PeerStats, WireCounters
from streamcodec.transport.signalling import (
    SIGNALLING_VERSION,
    LocalSignalling,
    Signalling,
    SignallingClient,
)
from streamcodec.transport.streamconfig import StreamConfig
from streamcodec.transport.vad import EnergyVad, VadConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallConfig:
    packetiser: PacketiserConfig = PacketiserConfig()
    jitter: JitterConfig = JitterConfig()
    peer: PeerConfig = PeerConfig()
    vad: VadConfig = VadConfig()
    #: after the remote ``bye``, wait at most this long for packets still in flight
    end_wait_s: float = 1.0
    #: limit for the hello / offer / answer exchange and the channel opening
    connect_timeout_s: float = 20.0


@dataclass(frozen=True)
class DecodedChunk:
    """Decoded PCM of one frame: ``pcm: [frame_samples] float32`` (more after a reset)."""

    index: int
    pcm: np.ndarray
    kind: str
    #: event-loop time the frame was released for playout
    time_s: float


@dataclass(frozen=True)
class CallStats:
    elapsed_s: float
    plan: PacketPlan
    tx: PacketiserStats
    rx: JitterStats
    peer: PeerStats
    wire_sent: WireCounters
    wire_received: WireCounters
    malformed_packets: int
    decode_errors: int
    packets_sent: int


@dataclass
class _Remote:
    config: StreamConfig
    config_id: int
    codec: Codec
    jitter: JitterBuffer
    decoder: DecoderSession | None = None
    out_index: int | None = None
    formats: dict[int, int | None] = field(default_factory=dict)


class Call:
    """One two-way call. Create inside a running event loop, then :meth:`connect`."""

    def __init__(
        self,
        codec: Codec,
        config: CallConfig = CallConfig(),
        *,
        message_filter: Callable[[bytes], bool] | None = None,
        remote_sdp_hook: Callable[[str], str] | None = None,
        datagram_tap: DatagramTap | None = None,
        codec_loader: Callable[[str], Codec] = load,
    ) -> None:
        if not isinstance(codec, Codec):
            raise TypeError(f"codec must be a streamcodec Codec, got {type(codec).__name__}")
        self.codec = codec
        self.config = config
        self.stream = StreamConfig.from_codec(codec)
        self.config_id = self.stream.config_id
        self._codec_loader = codec_loader
        self._loop = asyncio.get_running_loop()
        self._started_s = self._loop.time()
        self.packetiser = Packetiser(
            self.config_id,
            codec.bits_per_frame,
            codec.frame_duration_s,
            config.packetiser,
            OverheadModel(),
        )
        self._encoder = codec.encoder()
        self._vad = EnergyVad(codec.frame_duration_s, config.vad) if config.packetiser.dtx else None
        self._vad_pcm = np.zeros(0, dtype=np.float32)
        self.peer = Peer(
            config.peer,
            on_message=self._on_message,
            message_filter=message_filter,
            remote_sdp_hook=remote_sdp_hook,
            datagram_tap=datagram_tap,
        )
        self.peer.on_state(self._on_peer_state)
        self._signalling: Signalling | None = None
        self._remote: _Remote | None = None
        self._early: list[tuple[bytes, float]] = []
        self._malformed = 0
        self._decode_errors = 0
        self._wake = asyncio.Event()
        self._output: asyncio.Queue[DecodedChunk | None] = asyncio.Queue()
        self.remote_ended = asyncio.Event()
        self._bye_count: int | None = None
        self._bye_frames: int | None = None
        self._bye_received = asyncio.Event()
        self._peer_closed = asyncio.Event()
        self._signalling_done = asyncio.Event()
        self._input_ended = False
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    # -- setup --------------------------------------------------------------------------------
    @classmethod
    async def join(
        cls,
        url: str,
        room: str,
        codec: Codec,
        config: CallConfig = CallConfig(),
        *,
        token: str | None = None,
        **hooks: Any,
    ) -> Call:
        """Join ``room`` on a signalling server, wait for the other peer, connect."""
        client = await SignallingClient.join(url, room, token, timeout_s=config.connect_timeout_s)
        call = None
        try:
            role = await client.wait_ready()
            call = cls(codec, config, **hooks)
            await call.connect(client, role)
        except BaseException:
            if call is not None:
                await call.close()
            await client.close()
            raise
        return call

    @classmethod
    async def pair(
        cls,
        codec_a: Codec,
        codec_b: Codec,
        config: CallConfig = CallConfig(),
        *,
        hooks_a: dict[str, Any] | None = None,
        hooks_b: dict[str, Any] | None = None,
    ) -> tuple[Call, Call]:
        """Two calls connected to each other in this process (no server); a offers."""
        sig_a, sig_b = LocalSignalling.pair()
        a = cls(codec_a, config, **(hooks_a or {}))
        b = cls(codec_b, config, **(hooks_b or {}))
        await asyncio.gather(a.connect(sig_a, "offer"), b.connect(sig_b, "answer"))
        return a, b

    def hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "version": SIGNALLING_VERSION,
            "streams": [{"id": self.config_id, "config": self.stream.to_dict()}],
            "frames_per_message": self.packetiser.plan.frames_per_message,
            "redundancy_frames": self.config.packetiser.redundancy_frames,
        }

    async def connect(self, signalling: Signalling, role: str) -> None:
        """Exchange hello and offer/answer over ``signalling``; wait for the channel."""
        if role not in ("offer", "answer"):
            raise ValueError(f"role must be 'offer' or 'answer', got {role!r}")
        self._signalling = signalling
        timeout = self.config.connect_timeout_s
        await signalling.send(self.hello())
        remote_hello = await asyncio.wait_for(self._expect(signalling, "hello"), timeout)
        try:
            self._set_remote(remote_hello)
        except ValueError:
            await self._send_bye()  # tell the other side instead of leaving it waiting
            raise
        if role == "offer":
            await signalling.send({"type": "offer", "sdp": await self.peer.create_offer()})
            answer = await asyncio.wait_for(self._expect(signalling, "answer"), timeout)
            await self.peer.accept_answer(answer["sdp"])
        else:
            offer = await asyncio.wait_for(self._expect(signalling, "offer"), timeout)
            answer_sdp = await self.peer.accept_offer(offer["sdp"])
            await signalling.send({"type": "answer", "sdp": answer_sdp})
        await self.peer.wait_open(timeout)
        self._tasks.append(asyncio.create_task(self._playout_loop(), name="playout"))
        self._tasks.append(asyncio.create_task(self._signalling_loop(), name="signalling"))

    @staticmethod
    async def _expect(signalling: Signalling, kind: str) -> dict[str, Any]:
        while True:
            msg = await signalling.recv()
            if msg["type"] == kind:
                return msg
            if msg["type"] == "error":
                raise ConnectionError(f"signalling error {msg['code']}: {msg.get('message', '')}")
            if msg["type"] in ("peer-left", "bye"):
                raise ConnectionError(f"the other peer left while waiting for {kind!r}")
            logger.debug("ignoring %s while waiting for %s", msg["type"], kind)

    def _set_remote(self, hello: dict[str, Any]) -> None:
        entry = hello["streams"][0]
        config = StreamConfig.from_dict(entry["config"])
        if config == self.stream:
            codec = self.codec
        else:
            codec = self._codec_loader(config.codec)
            if StreamConfig.from_codec(codec) != config:
                raise ValueError(
                    f"remote stream {config} does not match the local {config.codec!r} codec "
                    f"{StreamConfig.from_codec(codec)}"
                )
        self._remote = _Remote(
            config=config,
            config_id=entry["id"],
            codec=codec,
            jitter=JitterBuffer(config.frame_duration_s, self.config.jitter),
            formats={entry["id"]: config.bits_per_frame},
        )
        for data, arrival in self._early:
            self._on_message(data, arrival)
        self._early.clear()

    # -- sending ------------------------------------------------------------------------------
    async def send_pcm(self, pcm: np.ndarray) -> int:
        """Encode and send ``pcm: [T] float32`` (codec rate); returns packets sent now."""
        if self._input_ended:
            raise ValueError("send_pcm() after end_input()")
        pcm = check_pcm(pcm)
        frames = self._encoder.push(pcm)
        return self._send_frames(frames, pcm)

    def _send_frames(self, frames: list[bytes], pcm: np.ndarray | None) -> int:
        active = [True] * len(frames)
        if self._vad is not None:
            n = self.codec.frame_samples
            buf = np.concatenate([self._vad_pcm, pcm]) if pcm is not None else self._vad_pcm
            for k in range(len(frames)):
                chunk = buf[k * n : (k + 1) * n]
                active[k] = self._vad(chunk) if chunk.size else True
            self._vad_pcm = buf[len(frames) * n :].copy()
        sent = 0
        now = self._loop.time()
        for frame, is_active in zip(frames, active, strict=True):
            for data in self.packetiser.push(frame, is_active, now):
                sent += int(self.peer.send(data))
        return sent

    async def end_input(self) -> None:
        """End of this side's audio: flush the encoder and tell the peer (``bye``)."""
        if self._input_ended:
            return
        self._input_ended = True
        sent = self._send_frames(self._encoder.flush(), None)
        for data in self.packetiser.flush(self._loop.time()):
            sent += int(self.peer.send(data))
        await self._send_bye()

    async def send_realtime(
        self,
        pcm: np.ndarray,
        chunk_ms: float = 20.0,
        lateness_s: list[float] | None = None,
        start_s: float | None = None,
    ) -> None:
        """Send ``pcm`` in ``chunk_ms`` pieces at real-time pace on the loop clock (as a
        microphone would), then :meth:`end_input`. ``lateness_s`` collects how late each
        chunk went out against its schedule. ``start_s``: the loop time the first sample was
        captured (default: now); a caller that started the microphone earlier passes it, and
        chunks already due go out at once."""
        rate = self.codec.sample_rate
        step = max(1, int(rate * chunk_ms / 1000.0))
        start = self._loop.time() if start_s is None else start_s
        for i in range(0, pcm.size, step):
            if lateness_s is not None:
                lateness_s.append(self._loop.time() - (start + i / rate))
            await self.send_pcm(pcm[i : i + step])
            wait = start + (i + step) / rate - self._loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        await self.end_input()

    async def _send_bye(self) -> None:
        if self._signalling is None:
            return
        try:
            bye = {"type": "bye", "packets_sent": self.packets_sent, "frames": self.frames_total}
            await self._signalling.send(bye)
        except ConnectionError:
            logger.info("signalling gone; bye not sent")

    @property
    def packets_sent(self) -> int:
        return self.packetiser.stats.messages_sent

    @property
    def frames_total(self) -> int:
        """Frames this side has encoded (sent or skipped by DTX)."""
        return self.packetiser.frames_pushed

    # -- receiving ----------------------------------------------------------------------------
    def _on_message(self, data: bytes, arrival_s: float) -> None:
        remote = self._remote
        if remote is None:
            if len(self._early) < 64:
                self._early.append((data, arrival_s))
            return
        try:
            packet = parse(data, remote.formats)
        except PacketError as exc:
            self._malformed += 1
            logger.debug("dropping a malformed packet: %s", exc)
            return
        remote.jitter.push(packet, arrival_s)
        self._wake.set()

    def _on_peer_state(self, state: str) -> None:
        if state in ("failed", "closed"):
            self._peer_closed.set()
            self._wake.set()

    async def _signalling_loop(self) -> None:
        assert self._signalling is not None
        try:
            while True:
                msg = await self._signalling.recv()
                if msg["type"] == "bye":
                    self._bye_count = msg.get("packets_sent")
                    self._bye_frames = msg.get("frames")
                    self._bye_received.set()
                    self._wake.set()
                elif msg["type"] == "peer-left":
                    self._bye_received.set()
                    self._wake.set()
                    return
                elif msg["type"] == "error":
                    logger.warning("signalling error %s: %s", msg["code"], msg.get("message"))
        except ConnectionError:
            logger.debug("signalling channel closed")
        finally:
            self._signalling_done.set()

    async def _playout_loop(self) -> None:
        remote = self._remote
        assert remote is not None
        jitter = remote.jitter
        try:
            while not (self._bye_received.is_set() or self._peer_closed.is_set()):
                due = jitter.next_due_s
                timeout = None if due is None else max(due - self._loop.time(), 0.0)
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except (TimeoutError, asyncio.TimeoutError):  # noqa: UP041 (distinct before 3.11)
                    pass
                self._wake.clear()
                self._play(jitter.pop(self._loop.time()))
            wait_s = self.config.end_wait_s
            if not self._bye_received.is_set() and not self._signalling_done.is_set():
                # the connection closed first: the bye (with the packet count) may be on its way
                await self._wait_any((self._bye_received, self._signalling_done), wait_s)
            if self._bye_count is not None:
                jitter.expect_total(self._bye_count)
                deadline = self._loop.time() + wait_s
                while not jitter.last_packet_arrived and not self._peer_closed.is_set():
                    left = deadline - self._loop.time()
                    if left <= 0:
                        break
                    await self._wait_any((self._peer_closed,), left, wake=True)
            self._play(jitter.flush())
            if remote.decoder is not None:
                tail = remote.decoder.flush()
                if tail.size:
                    self._output.put_nowait(DecodedChunk(-1, tail, "flush", self._loop.time()))
        finally:
            self._output.put_nowait(None)
            self.remote_ended.set()

    async def _wait_any(
        self, events: tuple[asyncio.Event, ...], timeout_s: float, wake: bool = False
    ) -> None:
        """Wait until one of ``events`` is set (or a packet arrives, with ``wake``)."""
        waits = [asyncio.ensure_future(e.wait()) for e in events]
        if wake:
            self._wake.clear()
            waits.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    def _play(self, frames: list[PlayoutFrame]) -> None:
        remote = self._remote
        assert remote is not None
        now = self._loop.time()
        for f in frames:
            prefix = np.zeros(0, dtype=np.float32)
            if remote.decoder is None or f.reset:
                if remote.decoder is not None:
                    prefix = remote.decoder.flush()
                remote.decoder = remote.codec.decoder()
            try:
                pcm = remote.decoder.push(f.frame)
            except (ValueError, TypeError) as exc:  # a frame the codec rejects: conceal it
                logger.debug("decoder rejected frame %d: %s", f.index, exc)
                self._decode_errors += 1
                pcm = remote.decoder.push(None)
            if prefix.size:
                pcm = np.concatenate([prefix, pcm])
            self._output.put_nowait(DecodedChunk(f.index, pcm, f.kind, now))

    async def recv_chunk(self, timeout_s: float | None = None) -> DecodedChunk | None:
        """Next decoded frame with its index; ``None`` once the remote stream ended."""
        if self._output.empty() and self.remote_ended.is_set():
            return None
        return await asyncio.wait_for(self._output.get(), timeout_s)

    async def recv_pcm(self, timeout_s: float | None = None) -> np.ndarray | None:
        """Next decoded PCM ``[T] float32``, with silence for skipped frames (DTX, stalls).

        Returns ``None`` once the remote stream has ended and everything was returned.
        """
        chunk = await self.recv_chunk(timeout_s)
        remote = self._remote
        if chunk is None:
            # pad trailing DTX silence up to the frame count the remote announced in its bye
            total = self._bye_frames
            if remote is None or total is None or (remote.out_index or 0) >= total:
                return None
            gap = total - (remote.out_index or 0)
            remote.out_index = total
            return np.zeros(gap * remote.config.frame_samples, dtype=np.float32)
        assert remote is not None
        gap = 0
        if chunk.index >= 0:
            if remote.out_index is not None and chunk.index > remote.out_index:
                gap = chunk.index - remote.out_index
            elif remote.out_index is None:
                gap = chunk.index
            remote.out_index = chunk.index + 1
        if gap:
            silence = np.zeros(gap * remote.config.frame_samples, dtype=np.float32)
            return np.concatenate([silence, chunk.pcm])
        return chunk.pcm

    async def receive_all(self, timeout_s: float | None = None) -> np.ndarray:
        """All decoded PCM until the remote stream ends (``[T] float32``)."""
        parts = []
        while (pcm := await self.recv_pcm(timeout_s)) is not None:
            parts.append(pcm)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    # -- status -------------------------------------------------------------------------------
    def on_state(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(state)`` on each connection-state change (``connected``, ...)."""
        self.peer.on_state(listener)

    def stats(self) -> CallStats:
        rx = replace(self._remote.jitter.stats) if self._remote is not None else JitterStats()
        return CallStats(
            elapsed_s=self._loop.time() - self._started_s,
            plan=self.packetiser.plan,
            tx=replace(self.packetiser.stats),
            rx=rx,
            peer=replace(self.peer.stats),
            wire_sent=replace(self.peer.tap.sent),
            wire_received=replace(self.peer.tap.received),
            malformed_packets=self._malformed,
            decode_errors=self._decode_errors,
            packets_sent=self.packets_sent,
        )

    @property
    def remote_stream(self) -> StreamConfig | None:
        return None if self._remote is None else self._remote.config

    async def close(self) -> None:
        """Say bye (if not yet), close the connection and the signalling; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.peer.drain()
        if not self._input_ended:
            self._input_ended = True
            await self._send_bye()
        self._bye_received.set()
        self._wake.set()
        await self.peer.close()
        for task in self._tasks:
            if task.get_name() == "signalling":
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._signalling is not None:
            await self._signalling.close()
        if not self._tasks:
            self._output.put_nowait(None)
            self.remote_ended.set()

    async def __aenter__(self) -> Call:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
