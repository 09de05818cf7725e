"""One browser session of the WebRTC demo: browser ⇄ Python peer A → tokens → Python peer B.

::

    browser mic ──WebRTC audio (Opus RTP)──▶ A: aiortc track → encoder → packetiser
                                                │ codec tokens, unreliable data channel
                                                ▼  (optionally through the link relay)
    browser speaker ◀──WebRTC audio──── B: jitter buffer → decoder → DecodedAudioTrack

The browser's media connection is an ordinary aiortc ``RTCPeerConnection``; A and B
are the SDK's :class:`~streamcodec.transport.Call` pair (both in this process),
connected through :class:`~streamcodec.linksim.relay.LinkRelay` when a link is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from streamcodec.codec import Codec
from streamcodec.linksim.link import GilbertElliott, LinkConfig
from streamcodec.linksim.relay import LinkRelay
from streamcodec.transport.packetiser import PacketiserConfig
from streamcodec.transport.peer import PeerConfig, gather_on
from streamcodec.transport.session import Call, CallConfig, CallStats
from streamcodec.transport.signalling import LocalSignalling
from streamcodec.transport.track import DecodedAudioTrack, send_track

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkPreset:
    """A named link the page can pick (``link=None``: A and B talk directly)."""

    name: str
    link: LinkConfig | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label}

    @property
    def label(self) -> str:
        return "direct loopback (no impairment)" if self.link is None else self.link.label()


def bursty(rate_bps: float, loss: float, delay_ms: float) -> LinkConfig:
    burst = GilbertElliott.from_loss(loss, 3.0) if loss > 0 else None
    return LinkConfig(rate_bps=rate_bps, delay_ms=delay_ms, jitter_ms=5.0, burst=burst)


#: fraction of a simulated link's rate the packetiser plans for (one-way stream)
LINK_BUDGET_SHARE = 0.8

DEFAULT_PRESETS = (
    LinkPreset("direct", None),
    LinkPreset("16k-5", bursty(16000, 0.05, 50)),
    LinkPreset("8k-10", bursty(8000, 0.10, 50)),
    LinkPreset("4k-5", bursty(4000, 0.05, 100)),
)


def browser_host_addresses() -> tuple[str, ...]:
    """Loopback (a browser on this machine) plus aioice's usual IPv4 addresses."""
    return ("127.0.0.1", *aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False))


class BrowserBridge:
    """State of one browser: its peer connection, the A/B call and the link."""

    def __init__(self, codec: Codec, preset: LinkPreset, seed: int = 0) -> None:
        self.codec = codec
        self.preset = preset
        self.seed = seed
        self.relay: LinkRelay | None = None
        self.a: Call | None = None
        self.b: Call | None = None
        self.pc: RTCPeerConnection | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._history: deque[tuple[float, CallStats, CallStats]] = deque(maxlen=16)
        self.frames_from_browser = 0
        self.closed = asyncio.Event()

    async def start_call(self) -> None:
        """Connect A and B (through the relay when the preset has a link)."""
        link = self.preset.link
        budget = PacketiserConfig().link_budget_bps
        if link is not None and link.rate_bps is not None:
            # headroom for what the model leaves out: FORWARD-TSNs after losses, consent bursts
            budget = LINK_BUDGET_SHARE * link.rate_bps
        rtt = 2.0 * link.delay_ms if link is not None else 0.0
        config = CallConfig(
            packetiser=PacketiserConfig(link_budget_bps=budget, rtt_ms=rtt, duplex=False),
            peer=PeerConfig(host_addresses=("127.0.0.1",)),
            connect_timeout_s=60.0,
        )
        hooks_a: dict[str, Any] = {}
        hooks_b: dict[str, Any] = {}
        if link is not None:
            self.relay = await LinkRelay(link, seed=self.seed).start()
            hooks_a, hooks_b = self.relay.hooks_a, self.relay.hooks_b
        self.a = Call(self.codec, config, **hooks_a)
        self.b = Call(self.codec, config, **hooks_b)
        sig_a, sig_b = LocalSignalling.pair()
        await asyncio.gather(self.a.connect(sig_a, "offer"), self.b.connect(sig_b, "answer"))
        if self.relay is not None:
            self.relay.set_epoch()

    async def answer(self, offer_sdp: str) -> str:
        """Accept the browser's offer (audio, sendrecv); returns the answer SDP."""
        if self.a is None or self.b is None:
            raise RuntimeError("start_call() first")
        pc = self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        a = self.a

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                logger.info("browser audio track arrived")
                self._tasks.append(asyncio.create_task(self._feed(a, track)))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            logger.info("browser connection: %s", pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                self.closed.set()

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        pc.addTrack(DecodedAudioTrack(self.b))
        with gather_on(browser_host_addresses()):
            await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    async def _feed(self, call: Call, track: MediaStreamTrack) -> None:
        try:
            self.frames_from_browser = await send_track(call, track, end_input=False)
        except Exception:  # the browser went away mid-frame
            logger.exception("feeding the browser track failed")

    def stats(self) -> dict[str, Any]:
        """Live numbers for the page: rates over the last ~2 s, counters since the start."""
        assert self.a is not None and self.b is not None
        now = time.monotonic()
        sa, sb = self.a.stats(), self.b.stats()
        self._history.append((now, sa, sb))
        t0, a0, b0 = self._history[0]
        dt = max(now - t0, 1e-3)
        rx = sb.rx
        out: dict[str, Any] = {
            "type": "stats",
            "codec": self.codec.name,
            "link": self.preset.label,
            "frames_per_message": sa.plan.frames_per_message,
            "payload_bps": (sa.tx.payload_bits - a0.tx.payload_bits) / dt,
            "wire_bps": 8.0 * (sa.wire_sent.wire_bytes - a0.wire_sent.wire_bytes) / dt,
            "wire_reverse_bps": 8.0 * (sb.wire_sent.wire_bytes - b0.wire_sent.wire_bytes) / dt,
            "messages_per_s": (sa.tx.messages_sent - a0.tx.messages_sent) / dt,
            "packets_sent": sa.packets_sent,
            "packets_received": rx.packets_received,
            "packets_lost": rx.packets_lost,
            "loss_pct": 100.0 * rx.packets_lost / rx.packets_expected if rx.packets_expected else 0,
            "recent_loss_pct": _recent_loss(rx, b0.rx),
            "frames_played": rx.frames_played,
            "frames_concealed": rx.frames_concealed,
            "playout_margin_ms": rx.margin_ms,
        }
        if self.relay is not None:
            st = self.relay.forward.stats
            out["link_dropped"] = st.dropped
            out["link_offered"] = st.offered
        return out

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            if self.pc is not None:
                await self.pc.close()
        for call in (self.a, self.b):
            if call is not None:
                with contextlib.suppress(Exception):
                    await call.close()
        if self.relay is not None:
            await self.relay.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.closed.set()


def _recent_loss(now: Any, before: Any) -> float:
    expected = now.packets_expected - before.packets_expected
    received = now.packets_received - before.packets_received
    return 100.0 * max(expected - received, 0) / expected if expected > 0 else 0.0
