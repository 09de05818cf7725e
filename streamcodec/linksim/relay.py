"""An impaired UDP link between two aiortc peers in one process: an asyncio UDP relay.

::

    relay = LinkRelay(LinkConfig(rate_bps=8000, delay_ms=50, loss=0.05), seed=1)
    await relay.start()
    a, b = await Call.pair(codec, codec, config, hooks_a=relay.hooks_a, hooks_b=relay.hooks_b)

The relay owns two UDP sockets on ``host``: ``port_a`` faces peer *a*, ``port_b``
faces peer *b*. Each peer's ``remote_sdp_hook`` rewrites the other peer's candidate
to the relay socket facing it (and remembers the real address), so *a* sends
everything to ``port_a``; the relay pushes each datagram through the a→b
:class:`~streamcodec.linksim.link.LinkModel` and, at its delivery time, sends it
from ``port_b`` to *b*; the other way likewise. ICE, DTLS and SCTP run unchanged
end to end (the relay never reads past the first byte). Every datagram is
impaired, STUN consent checks and SACKs included, as on a real link.

Only one candidate per side is used: the first UDP candidate of each SDP (give the
peers ``host_addresses=("127.0.0.1",)``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamcodec.linksim.link import LinkConfig, LinkModel

logger = logging.getLogger(__name__)

_CANDIDATE_RE = re.compile(
    r"^a=candidate:(?P<foundation>\S+) (?P<component>\d+) (?P<transport>\S+) (?P<priority>\d+) "
    r"(?P<ip>\S+) (?P<port>\d+) (?P<rest>typ .*)$",
    re.IGNORECASE,
)


def is_dtls_handshake(data: bytes) -> bool:
    """True for a DTLS datagram whose first record is a handshake or change-cipher-spec."""
    return bool(data) and data[0] in (20, 22)


def rewrite_candidates(sdp: str, ip: str, port: int) -> tuple[str, tuple[str, int]]:
    """Point ``sdp`` at ``ip:port``; returns ``(new_sdp, (real_ip, real_port))``.

    Keeps only the first UDP candidate (with its foundation, priority and type) and
    rewrites its address, plus the ``c=`` and ``m=`` lines, which carry the default
    address. ``ValueError`` when the SDP has no UDP candidate.
    """
    lines = sdp.splitlines()
    out: list[str] = []
    real: tuple[str, int] | None = None
    for line in lines:
        m = _CANDIDATE_RE.match(line)
        if m is not None:
            if m["transport"].lower() != "udp" or real is not None:
                continue
            real = (m["ip"], int(m["port"]))
            rest = re.sub(r" raddr \S+ rport \d+", "", m["rest"])
            out.append(
                f"a=candidate:{m['foundation']} {m['component']} udp {m['priority']} "
                f"{ip} {port} {rest}"
            )
        elif line.startswith("c=IN IP"):
            out.append(f"c=IN IP{'6' if ':' in ip else '4'} {ip}")
        elif line.startswith("m="):
            parts = line.split(" ")
            parts[1] = str(port)
            out.append(" ".join(parts))
        else:
            out.append(line)
    if real is None:
        raise ValueError("the SDP has no UDP candidate to relay")
    return "\r\n".join(out) + "\r\n", real


@dataclass
class _Side:
    """One relay socket: what arrives on it goes through ``model`` to ``other``'s peer."""

    name: str
    model: LinkModel
    transport: asyncio.DatagramTransport | None = None
    port: int = 0
    peer_addr: tuple[str, int] | None = None  # the real address of the peer facing this socket
    unroutable: int = 0


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple], None]) -> None:
        self._on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable
        logger.debug("relay socket error: %s", exc)


class LinkRelay:
    """Two UDP sockets and a :class:`LinkModel` per direction (a→b ``forward``)."""

    def __init__(
        self,
        forward: LinkConfig | None = None,
        reverse: LinkConfig | None = None,
        *,
        seed: int = 0,
        host: str = "127.0.0.1",
        protect: Callable[[bytes], bool] | None = None,
        keep_records: bool = True,
    ) -> None:
        forward = LinkConfig() if forward is None else forward
        reverse = forward if reverse is None else reverse
        self.host = host
        self.protect = protect
        # distinct, reproducible streams of random numbers per direction
        self._a = _Side("a", LinkModel(forward, seed=2 * seed, keep_records=keep_records))
        self._b = _Side("b", LinkModel(reverse, seed=2 * seed + 1, keep_records=keep_records))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # -- set-up -------------------------------------------------------------------------------
    async def start(self) -> LinkRelay:
        self._loop = asyncio.get_running_loop()
        for side, other in ((self._a, self._b), (self._b, self._a)):
            transport, _ = await self._loop.create_datagram_endpoint(
                lambda side=side, other=other: _Protocol(
                    lambda data, addr: self._arrived(side, other, data, addr)
                ),
                local_addr=(self.host, 0),
            )
            side.transport = transport
            side.port = transport.get_extra_info("sockname")[1]
        self.set_epoch()
        return self

    @property
    def forward(self) -> LinkModel:
        """The a→b direction."""
        return self._a.model

    @property
    def reverse(self) -> LinkModel:
        """The b→a direction."""
        return self._b.model

    @property
    def ports(self) -> tuple[int, int]:
        return self._a.port, self._b.port

    def set_epoch(self, t_s: float | None = None) -> None:
        """Outage times count from ``t_s`` (default: now on the loop clock)."""
        assert self._loop is not None, "start() the relay first"
        t = self._loop.time() if t_s is None else t_s
        self._a.model.epoch_s = self._b.model.epoch_s = t

    def sdp_hook_a(self, sdp: str) -> str:
        """For the SDP peer *a* receives (b's): point it at the socket facing *a*."""
        new, self._b.peer_addr = rewrite_candidates(sdp, self.host, self._a.port)
        return new

    def sdp_hook_b(self, sdp: str) -> str:
        """For the SDP peer *b* receives (a's): point it at the socket facing *b*."""
        new, self._a.peer_addr = rewrite_candidates(sdp, self.host, self._b.port)
        return new

    @property
    def hooks_a(self) -> dict[str, Any]:
        """Keyword arguments for peer a's ``Call`` / ``Peer``."""
        return {"remote_sdp_hook": self.sdp_hook_a}

    @property
    def hooks_b(self) -> dict[str, Any]:
        return {"remote_sdp_hook": self.sdp_hook_b}

    # -- forwarding ---------------------------------------------------------------------------
    def _arrived(self, side: _Side, other: _Side, data: bytes, addr: tuple) -> None:
        if self._closed:
            return
        assert self._loop is not None
        dest = other.peer_addr
        if dest is None or other.transport is None:
            side.unroutable += 1
            return
        now = self._loop.time()
        protected = self.protect is not None and self.protect(data)
        for t in side.model.submit(now, len(data), protected):
            self._loop.call_at(t, self._deliver, other, data, dest)

    def _deliver(self, other: _Side, data: bytes, dest: tuple[str, int]) -> None:
        if other.transport is not None and not self._closed:
            other.transport.sendto(data, dest)

    async def close(self) -> None:
        self._closed = True  # deliveries still scheduled become no-ops
        for side in (self._a, self._b):
            if side.transport is not None:
                side.transport.close()
                side.transport = None
        await asyncio.sleep(0)

    async def __aenter__(self) -> LinkRelay:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
