"""One call over an impaired link: connect two :class:`Call` peers through a
:class:`LinkRelay`, stream speech both ways (or one way) in real time on the loop's
clock, and record what happened: decoded audio, per-frame playout log, connection
states, link records and the calls' counters.

Works on an ordinary asyncio loop (real time) and on
:class:`~streamcodec.linksim.clock.VirtualClockLoop` (simulated time; DTLS handshake
datagrams are then spared from random loss, see that module).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field

import numpy as np

from streamcodec.codec import Codec
from streamcodec.linksim.clock import VirtualClockLoop
from streamcodec.linksim.link import LinkConfig, LinkModel
from streamcodec.linksim.relay import LinkRelay, is_dtls_handshake
from streamcodec.transport.jitter import JitterConfig
from streamcodec.transport.packetiser import PacketiserConfig
from streamcodec.transport.peer import PeerConfig
from streamcodec.transport.session import Call, CallConfig, CallStats

logger = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1",)


@dataclass(frozen=True)
class CallScenario:
    """What to run: a codec, the link each way, and the transport settings."""

    #: a→b link (``None``: no relay, the peers talk directly on loopback)
    forward: LinkConfig | None
    #: b→a link (``None``: the same as ``forward``)
    reverse: LinkConfig | None = None
    seed: int = 0
    #: packetiser settings (``None``: budget = the forward rate, RTT = twice the delay)
    packetiser: PacketiserConfig | None = None
    jitter: JitterConfig = JitterConfig()
    #: both peers talk (a call); otherwise only a sends
    two_way: bool = True
    #: send the input in chunks of this many ms, paced to the loop clock (a microphone)
    chunk_ms: float = 20.0
    connect_timeout_s: float = 60.0
    #: after the input ends, how long the receiver waits for packets still in flight
    end_wait_s: float = 1.5
    #: spare DTLS handshake datagrams from loss (``None``: only on a virtual clock)
    protect_handshake: bool | None = None
    consent_rto_s: float | None = 3.0

    def packetiser_config(self) -> PacketiserConfig:
        if self.packetiser is not None:
            return self.packetiser
        f = self.forward or LinkConfig()
        return PacketiserConfig(
            link_budget_bps=f.rate_bps,
            rtt_ms=2.0 * f.delay_ms,
            duplex=self.two_way,
        )

    def call_config(self) -> CallConfig:
        return CallConfig(
            packetiser=self.packetiser_config(),
            jitter=self.jitter,
            peer=PeerConfig(host_addresses=LOOPBACK, consent_rto_s=self.consent_rto_s),
            end_wait_s=self.end_wait_s,
            connect_timeout_s=self.connect_timeout_s,
        )


@dataclass
class FrameLog:
    """Frames released for playout at one receiver: time (s since media start), index, kind."""

    times_s: list[float] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)


@dataclass
class Direction:
    """One direction of a call (sender → receiver)."""

    name: str
    frame_s: float
    sample_rate: int
    sent_pcm: np.ndarray
    decoded: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    frames: FrameLog = field(default_factory=FrameLog)
    sender: CallStats | None = None
    receiver: CallStats | None = None
    link: LinkModel | None = None
    #: how late each input chunk was handed to the sender against its real-time schedule
    input_lateness_s: list[float] = field(default_factory=list)
    #: frames the sender encoded (sent, dropped by its pacer, or skipped by DTX)
    frames_total: int = 0

    def frames_by_kind(self, kind: str) -> int:
        return sum(1 for k in self.frames.kinds if k == kind)

    def playout_delays_s(self) -> np.ndarray:
        """Capture of a frame's last sample → its release for playout, for received frames."""
        out = [
            t - (i + 1) * self.frame_s
            for t, i, k in zip(
                self.frames.times_s, self.frames.indices, self.frames.kinds, strict=True
            )
            if k != "concealed" and i >= 0
        ]
        return np.asarray(out, dtype=np.float64)


@dataclass
class CallRecord:
    """Everything measured in one run of a :class:`CallScenario`."""

    scenario: CallScenario
    codec: str
    connected: bool = False
    connect_s: float = math.nan
    media_s: float = 0.0
    error: str | None = None
    #: (seconds since media start, peer, state); negative times are before media start
    states: list[tuple[float, str, str]] = field(default_factory=list)
    directions: list[Direction] = field(default_factory=list)
    virtual_clock: bool = False
    #: wall seconds the run took
    wall_s: float = 0.0

    @property
    def stayed_connected(self) -> bool:
        """Connected, and no peer reached ``failed`` or ``closed`` before hanging up."""
        return self.connected and not any(
            s in ("failed", "closed") and t < self.media_s for t, _, s in self.states
        )


async def _receive(call: Call, log: FrameLog, t0: float, timeout_s: float) -> np.ndarray:
    inner = call.recv_chunk

    async def logged(timeout: float | None = None):  # sees every frame recv_pcm returns
        chunk = await inner(timeout)
        if chunk is not None:
            log.times_s.append(chunk.time_s - t0)
            log.indices.append(chunk.index)
            log.kinds.append(chunk.kind)
        return chunk

    call.recv_chunk = logged  # type: ignore[method-assign]
    try:
        return await call.receive_all(timeout_s)
    except (TimeoutError, asyncio.TimeoutError):  # noqa: UP041 (distinct before 3.11)
        logger.warning("receiver timed out; keeping what arrived")
        return np.zeros(0, dtype=np.float32)


async def run_call(
    scenario: CallScenario,
    codec: Codec,
    pcm_a: np.ndarray,
    pcm_b: np.ndarray | None = None,
) -> CallRecord:
    """Connect a and b through the scenario's link; a sends ``pcm_a`` (b sends ``pcm_b``).

    ``pcm_*: [T] float32`` at ``codec.sample_rate``. Never raises for network trouble:
    a failed connection is reported in the record (``connected``, ``error``).
    """
    import time

    loop = asyncio.get_running_loop()
    virtual = isinstance(loop, VirtualClockLoop) and loop.virtual
    protect = scenario.protect_handshake if scenario.protect_handshake is not None else virtual
    rec = CallRecord(scenario=scenario, codec=codec.name, virtual_clock=virtual)
    wall0 = time.monotonic()
    relay = None
    if scenario.forward is not None:
        relay = LinkRelay(
            scenario.forward,
            scenario.reverse,
            seed=scenario.seed,
            protect=is_dtls_handshake if protect else None,
        )
        await relay.start()
    t_start = loop.time()
    media_t0 = [t_start]
    config = scenario.call_config()
    a = Call(codec, config, **(relay.hooks_a if relay else {}))
    b = Call(codec, config, **(relay.hooks_b if relay else {}))
    for name, call in (("a", a), ("b", b)):
        call.on_state(
            lambda state, name=name: rec.states.append((loop.time() - media_t0[0], name, state))
        )
    try:
        from streamcodec.transport.signalling import LocalSignalling

        sig_a, sig_b = LocalSignalling.pair()
        await asyncio.gather(a.connect(sig_a, "offer"), b.connect(sig_b, "answer"))
        rec.connected = True
        rec.connect_s = loop.time() - t_start
        media_t0[0] = loop.time()
        rec.states = [(t - rec.connect_s, p, s) for t, p, s in rec.states]
        if relay is not None:
            relay.set_epoch(media_t0[0])
        two_way = scenario.two_way and pcm_b is not None
        ab = Direction("a→b", codec.frame_duration_s, codec.sample_rate, pcm_a)
        ba = Direction(
            "b→a",
            codec.frame_duration_s,
            codec.sample_rate,
            pcm_b if pcm_b is not None else np.zeros(0, np.float32),
        )
        longest = max(pcm_a.size, pcm_b.size if two_way and pcm_b is not None else 0)
        timeout = longest / codec.sample_rate + 30.0 + 4 * scenario.end_wait_s
        jobs = [
            a.send_realtime(pcm_a, scenario.chunk_ms, ab.input_lateness_s, media_t0[0]),
            _receive(b, ab.frames, media_t0[0], timeout),
        ]
        if two_way:
            assert pcm_b is not None
            jobs += [
                b.send_realtime(pcm_b, scenario.chunk_ms, ba.input_lateness_s, media_t0[0]),
                _receive(a, ba.frames, media_t0[0], timeout),
            ]
        else:
            jobs.append(b.end_input())
        results = await asyncio.gather(*jobs)
        ab.decoded = results[1]
        rec.media_s = loop.time() - media_t0[0]
        ab.sender, ab.receiver, ab.link = a.stats(), b.stats(), relay.forward if relay else None
        ab.frames_total = a.frames_total
        rec.directions.append(ab)
        if two_way:
            ba.decoded = results[3]
            ba.sender, ba.receiver, ba.link = b.stats(), a.stats(), relay.reverse if relay else None
            ba.frames_total = b.frames_total
            rec.directions.append(ba)
    except (ConnectionError, TimeoutError, asyncio.TimeoutError) as exc:  # noqa: UP041
        rec.error = f"{type(exc).__name__}: {exc}"
        logger.info("call failed: %s", rec.error)
    finally:
        await asyncio.gather(a.close(), b.close(), return_exceptions=True)
        if relay is not None:
            await relay.close()
        rec.wall_s = time.monotonic() - wall0
    return rec


def link_rates(
    model: LinkModel, t0_s: float, duration_s: float, bin_s: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offered and delivered wire bit/s in ``bin_s`` bins: ``(t_s, offered, delivered)``.

    Times are relative to ``t0_s`` (the link epoch), over ``[0, duration_s)``.
    """
    n = max(1, int(math.ceil(duration_s / bin_s)))
    offered = np.zeros(n)
    delivered = np.zeros(n)
    for r in model.records:
        k = int((r.offered_s - t0_s) // bin_s)
        if 0 <= k < n:
            offered[k] += 8 * r.wire_bytes
        for t in r.delivered_s:
            k = int((t - t0_s) // bin_s)
            if 0 <= k < n:
                delivered[k] += 8 * r.wire_bytes
    t = (np.arange(n) + 0.5) * bin_s
    return t, offered / bin_s, delivered / bin_s
