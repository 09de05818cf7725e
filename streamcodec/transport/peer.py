"""One WebRTC peer carrying token packets on an unreliable, unordered data channel.

Built on aiortc's ``RTCPeerConnection`` (design/notes/TRANSPORT.md):

* the channel is negotiated out of band on both sides (``negotiated=True, id=0``,
  ``ordered=False, maxRetransmits=0``): no DCEP handshake, no retransmission, no
  head-of-line blocking: a late frame is useless to a voice stream;
* ICE servers are configurable and **none by default** (aiortc would otherwise ask
  ``stun.l.google.com``);
* the slow-link fix: aioice sends each consent check once with a 0.5 s timeout and
  closes ICE after 6 failures, so links slower than ~4 kbit/s or with RTT > 0.5 s die
  after 25-35 s; ``consent_rto_s`` raises ``aioice.stun.RETRY_RTO`` (process-wide,
  as aioice reads it when each STUN transaction starts) to keep such links up;
* ``host_addresses`` overrides the local addresses aioice gathers host candidates on
  (aioice skips 127.0.0.1, so loopback tests pass ``("127.0.0.1",)``).

Seams for an impaired-link relay or loss injection: ``remote_sdp_hook`` rewrites each
received SDP (e.g. point the candidates at a relay), ``message_filter`` drops received
messages, and a :class:`DatagramTap` sees (and may drop) every UDP datagram.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import aioice.ice
import aioice.stun
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

logger = logging.getLogger(__name__)

_HOST_ADDRESSES: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "streamcodec_host_addresses", default=None
)
_original_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    override = _HOST_ADDRESSES.get()
    if override is None:
        return _original_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    return [a for a in override if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


# Installed once; without an override in the calling context it defers to aioice.
aioice.ice.get_host_addresses = _get_host_addresses


@contextlib.contextmanager
def gather_on(addresses: tuple[str, ...] | None) -> Iterator[None]:
    """Within this block, ICE gathering (``setLocalDescription``) of any aiortc
    ``RTCPeerConnection`` uses ``addresses`` for host candidates (``None``: aioice's)."""
    token = _HOST_ADDRESSES.set(addresses)
    try:
        yield
    finally:
        _HOST_ADDRESSES.reset(token)


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server, e.g. ``IceServer(("stun:stun.example.org:3478",))``."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True)
class PeerConfig:
    ice_servers: tuple[IceServer, ...] = ()
    #: local addresses for host candidates (``None``: aioice's own list, no loopback)
    host_addresses: tuple[str, ...] | None = None
    #: STUN transaction timeout (consent checks); ``None`` leaves aioice's 0.5 s
    consent_rto_s: float | None = 3.0
    channel_label: str = "tokens"
    channel_id: int = 0
    open_timeout_s: float = 20.0

    def __post_init__(self) -> None:
        if self.consent_rto_s is not None and not self.consent_rto_s > 0:
            raise ValueError(f"consent_rto_s must be > 0 or None, got {self.consent_rto_s}")
        if not 0 <= self.channel_id <= 65534:
            raise ValueError(f"channel_id must be in 0..65534, got {self.channel_id}")
        if self.open_timeout_s <= 0:
            raise ValueError(f"open_timeout_s must be > 0, got {self.open_timeout_s}")


def apply_consent_fix(rto_s: float | None) -> None:
    """Set aioice's STUN retransmission timeout (see the module docstring)."""
    if rto_s is not None and aioice.stun.RETRY_RTO != rto_s:
        logger.debug("aioice.stun.RETRY_RTO %s -> %s", aioice.stun.RETRY_RTO, rto_s)
        aioice.stun.RETRY_RTO = rto_s


@dataclass
class WireCounters:
    """UDP datagrams of one direction; ``wire_bytes`` adds IP + UDP headers."""

    datagrams: int = 0
    udp_bytes: int = 0
    wire_bytes: int = 0
    stun_datagrams: int = 0
    stun_wire_bytes: int = 0
    dropped: int = 0

    def add(self, data: bytes, addr: tuple) -> None:
        ip_udp = 48 if ":" in str(addr[0]) else 28
        self.datagrams += 1
        self.udp_bytes += len(data)
        self.wire_bytes += len(data) + ip_udp
        if data and data[0] < 4:  # RFC 7983 demultiplexing: 0-3 is STUN, 20-63 DTLS
            self.stun_datagrams += 1
            self.stun_wire_bytes += len(data) + ip_udp


@dataclass
class DatagramTap:
    """Sees every UDP datagram of a peer; the filters may drop one by returning False."""

    sent: WireCounters = field(default_factory=WireCounters)
    received: WireCounters = field(default_factory=WireCounters)
    send_filter: Callable[[bytes, tuple], bool] | None = None
    receive_filter: Callable[[bytes, tuple], bool] | None = None


class _TappedTransport:
    def __init__(self, inner: asyncio.DatagramTransport, tap: DatagramTap) -> None:
        self._inner = inner
        self._tap = tap

    def sendto(self, data: bytes, addr: tuple | None = None) -> None:
        if self._tap.send_filter is not None and not self._tap.send_filter(data, addr or ()):
            self._tap.sent.dropped += 1
            return
        self._tap.sent.add(data, addr or ("",))
        self._inner.sendto(data, addr)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


def _install_tap(pc: RTCPeerConnection, tap: DatagramTap) -> None:
    # aiortc 1.16 / aioice 0.13 internals: the ICE connection's UDP protocols.
    connection = pc.sctp.transport.transport.iceGatherer._connection
    for protocol in connection._protocols:
        if isinstance(protocol.transport, _TappedTransport):
            continue
        protocol.transport = _TappedTransport(protocol.transport, tap)
        inner = protocol.datagram_received

        def received(data: bytes, addr: tuple, _inner=inner) -> None:
            if tap.receive_filter is not None and not tap.receive_filter(data, addr):
                tap.received.dropped += 1
                return
            tap.received.add(data, addr)
            _inner(data, addr)

        protocol.datagram_received = received


@dataclass
class PeerStats:
    messages_sent: int = 0
    messages_received: int = 0
    messages_filtered: int = 0
    messages_unsent: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0


class Peer:
    """An ``RTCPeerConnection`` with one token data channel. Create it inside a running loop.

    ``on_message(data, arrival_s)`` is called for each received message, with
    ``arrival_s`` on the event loop's clock. ``on_state(state)`` listeners get the
    connection states (``new``, ``connecting``, ``connected``, ``failed``, ``closed``).
    """

    def __init__(
        self,
        config: PeerConfig = PeerConfig(),
        *,
        on_message: Callable[[bytes, float], None] | None = None,
        message_filter: Callable[[bytes], bool] | None = None,
        remote_sdp_hook: Callable[[str], str] | None = None,
        datagram_tap: DatagramTap | None = None,
    ) -> None:
        apply_consent_fix(config.consent_rto_s)
        self.config = config
        self.stats = PeerStats()
        self.tap = datagram_tap if datagram_tap is not None else DatagramTap()
        self._on_message = on_message
        self._message_filter = message_filter
        self._remote_sdp_hook = remote_sdp_hook
        self._state_listeners: list[Callable[[str], None]] = []
        self._loop = asyncio.get_running_loop()
        self._opened = asyncio.Event()
        self._closed = asyncio.Event()
        self._failed = asyncio.Event()
        servers = [
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in config.ice_servers
        ]
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self._channel = self._pc.createDataChannel(
            config.channel_label,
            ordered=False,
            maxRetransmits=0,
            negotiated=True,
            id=config.channel_id,
        )
        self._channel.on("open", self._opened.set)
        self._channel.on("message", self._received)
        self._channel.on("close", self._closed.set)
        self._pc.on("connectionstatechange", self._state_changed)

    # -- events -------------------------------------------------------------------------------
    def on_state(self, listener: Callable[[str], None]) -> None:
        self._state_listeners.append(listener)

    @property
    def state(self) -> str:
        return self._pc.connectionState

    @property
    def is_open(self) -> bool:
        return self._channel.readyState == "open"

    def _state_changed(self) -> None:
        state = self._pc.connectionState
        logger.debug("peer connection state: %s", state)
        if state in ("failed", "closed"):
            self._failed.set() if state == "failed" else None
            self._closed.set()
        for listener in list(self._state_listeners):
            try:
                listener(state)
            except Exception:  # a listener must not break the connection
                logger.exception("connection-state listener failed")

    def _received(self, message: bytes | str) -> None:
        arrival = self._loop.time()
        if isinstance(message, str):
            logger.warning("ignoring a text message on the token channel")
            return
        self.stats.messages_received += 1
        self.stats.bytes_received += len(message)
        if self._message_filter is not None and not self._message_filter(message):
            self.stats.messages_filtered += 1
            return
        if self._on_message is not None:
            self._on_message(message, arrival)

    # -- offer / answer -----------------------------------------------------------------------
    async def _set_local(self, description: RTCSessionDescription) -> str:
        token = _HOST_ADDRESSES.set(self.config.host_addresses)
        try:
            await self._pc.setLocalDescription(description)
        finally:
            _HOST_ADDRESSES.reset(token)
        _install_tap(self._pc, self.tap)
        return self._pc.localDescription.sdp

    async def _set_remote(self, sdp: str, kind: str) -> None:
        if not isinstance(sdp, str) or not sdp:
            raise ValueError(f"remote {kind} must be a non-empty SDP string")
        if self._remote_sdp_hook is not None:
            sdp = self._remote_sdp_hook(sdp)
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))

    async def create_offer(self) -> str:
        """Gather candidates and return the offer SDP (no trickle: candidates included)."""
        return await self._set_local(await self._pc.createOffer())

    async def accept_offer(self, sdp: str) -> str:
        """Apply the remote offer and return the answer SDP."""
        await self._set_remote(sdp, "offer")
        return await self._set_local(await self._pc.createAnswer())

    async def accept_answer(self, sdp: str) -> None:
        await self._set_remote(sdp, "answer")

    async def wait_open(self, timeout_s: float | None = None) -> None:
        """Wait until the channel is open; ``ConnectionError`` if the connection fails first."""
        timeout = self.config.open_timeout_s if timeout_s is None else timeout_s
        opened = asyncio.ensure_future(self._opened.wait())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            done, _ = await asyncio.wait(
                {opened, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            opened.cancel()
            closed.cancel()
        if self._opened.is_set() and not self._closed.is_set():
            return
        if not done:
            raise TimeoutError(f"data channel did not open within {timeout:g} s")
        raise ConnectionError(f"connection {self.state} before the data channel opened")

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # -- data ---------------------------------------------------------------------------------
    def send(self, data: bytes) -> bool:
        """Send one message; False (counted) when the channel is not open."""
        if self._channel.readyState != "open":
            self.stats.messages_unsent += 1
            return False
        self._channel.send(data)
        self.stats.messages_sent += 1
        self.stats.bytes_sent += len(data)
        return True

    async def drain(self, timeout_s: float = 1.0) -> None:
        """Wait until aiortc has handed every queued message to the network."""
        channel = self._channel
        if channel.readyState == "open" and channel.bufferedAmount > 0:
            drained = asyncio.Event()
            channel.bufferedAmountLowThreshold = 0
            channel.on("bufferedamountlow", drained.set)
            try:
                await asyncio.wait_for(drained.wait(), timeout_s)
            except (TimeoutError, asyncio.TimeoutError):  # noqa: UP041 (distinct before 3.11)
                logger.warning("%d bytes still queued at close", channel.bufferedAmount)
            finally:
                channel.remove_listener("bufferedamountlow", drained.set)
        await asyncio.sleep(0)  # let the flush task finish its last send

    async def close(self) -> None:
        """Close the channel and the connection (idempotent)."""
        await self._pc.close()
        self._closed.set()
