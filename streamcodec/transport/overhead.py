"""Wire-cost model of aiortc data-channel messages (loss-free link).

Measured with aiortc 1.16 / aioice 0.13 (design/notes/TRANSPORT.md §2): each
message is its own IP/UDP/DTLS/SCTP packet, 93 B of headers on IPv4
(IP 20 + UDP 8 + DTLS 13 + AES-GCM 24 + SCTP 12 + DATA chunk 16) plus the payload
padded to 4 B; the receiver answers every message with a 93 B SACK; consent
checks cost ~333 bit/s in each direction. So, for ``r`` messages/s of ``N`` bytes::

    forward bit/s = 8 r (93 + pad4(N)) + 333
    reverse bit/s = 8 r 93 + 333

``benchmarks/bench_transport.py`` measures the same quantities on loopback.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class OverheadModel:
    """Per-message and background wire costs of one data-channel direction."""

    #: IP + UDP + DTLS record + AES-GCM + SCTP common header + DATA chunk header
    message_overhead_bytes: int = 93
    #: one SCTP SACK per received message, travelling the other way
    ack_bytes: int = 93
    #: STUN consent checks (request + response every ~5 s), each direction
    consent_bps: float = 333.0
    #: SCTP pads each DATA chunk to this many bytes
    payload_align_bytes: int = 4

    @classmethod
    def ipv6(cls) -> OverheadModel:
        """The same costs over IPv6 (40 B instead of 20 B of IP header)."""
        return cls(message_overhead_bytes=113, ack_bytes=113, consent_bps=333.0 + 64.0)

    def padded(self, payload_bytes: float) -> float:
        a = self.payload_align_bytes
        return -(-payload_bytes // a) * a

    def message_wire_bytes(self, payload_bytes: float) -> float:
        """Bytes one message of ``payload_bytes`` occupies on the wire."""
        return self.message_overhead_bytes + self.padded(payload_bytes)

    def forward_bps(self, messages_per_s: float, payload_bytes: float) -> float:
        """Sender -> receiver wire bit/s for ``messages_per_s`` messages of ``payload_bytes``."""
        return 8.0 * messages_per_s * self.message_wire_bytes(payload_bytes) + self.consent_bps

    def reverse_bps(self, messages_per_s: float) -> float:
        """Receiver -> sender wire bit/s (SACKs + consent) for that message stream."""
        return 8.0 * messages_per_s * self.ack_bytes + self.consent_bps

    def to_dict(self) -> dict[str, float]:
        return asdict(self)
