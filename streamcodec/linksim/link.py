"""The impaired-link model of one direction: pure, seeded, deterministic, no I/O.

A datagram offered to the link at ``now_s`` goes through, in order:

1. **drop-tail byte queue** in front of a transmitter of ``rate_bps``: it is dropped
   when the bytes still queued (not yet fully sent) plus its own exceed
   ``queue_bytes``; otherwise it leaves after all queued bytes and its own
   serialisation time ``8 * (size + overhead_bytes) / rate_bps`` (real serialisation
   delay, as a tbf qdisc gives);
2. **outages**: a datagram whose transmission ends inside a scheduled outage is lost;
3. **loss**: Bernoulli (``loss``) and/or Gilbert-Elliott bursts (``burst``), drawn
   per transmitted datagram (it used the link's time, then got lost, as on a radio);
4. **delay** ``delay_ms`` plus **jitter** uniform in ``[-jitter_ms, +jitter_ms]``
   (never before the previous delivery, so jitter alone does not reorder);
5. **reordering**: with probability ``reorder`` a datagram is held back a further
   ``reorder_ms`` and later datagrams overtake it;
6. **duplication**: with probability ``duplicate`` a second copy follows 0.1 ms later.

Every datagram consumes the same six uniform draws from its own ``random.Random``
whatever happens to it, so the decisions depend only on the seed and the datagram's
position in the sequence. ``protected`` datagrams (the simulator uses it for DTLS
handshake records, whose retransmission timer runs on the real clock) still queue,
serialise and travel, but skip the queue limit, outages, loss and duplication.
"""

from __future__ import annotations

import json
import math
import random
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

#: IPv4 (20 B) + UDP (8 B) headers: the wire bytes a UDP payload of N bytes occupies is N + 28
IPV4_UDP_BYTES = 28
_DUPLICATE_GAP_S = 1e-4


@dataclass(frozen=True)
class GilbertElliott:
    """Two-state bursty loss: Good/Bad with per-datagram transition and loss probabilities."""

    p_good_to_bad: float
    p_bad_to_good: float
    loss_good: float = 0.0
    loss_bad: float = 1.0

    def __post_init__(self) -> None:
        for name in ("p_good_to_bad", "p_bad_to_good", "loss_good", "loss_bad"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.p_bad_to_good == 0.0 and self.p_good_to_bad > 0.0:
            raise ValueError("p_bad_to_good must be > 0 (the Bad state would never end)")

    @classmethod
    def from_loss(cls, loss: float, mean_burst_packets: float = 3.0) -> GilbertElliott:
        """Bursts of mean length ``mean_burst_packets`` (all lost) averaging ``loss``."""
        if not 0.0 <= loss < 1.0:
            raise ValueError(f"loss must be in [0, 1), got {loss}")
        if mean_burst_packets < 1.0:
            raise ValueError(f"mean_burst_packets must be >= 1, got {mean_burst_packets}")
        r = 1.0 / mean_burst_packets
        # stationary P(Bad) = p / (p + r) = loss
        p = loss * r / (1.0 - loss)
        if p > 1.0:
            raise ValueError(f"loss {loss} is unreachable with bursts of {mean_burst_packets}")
        return cls(p_good_to_bad=p, p_bad_to_good=r)

    @property
    def mean_loss(self) -> float:
        """Long-run fraction of datagrams lost."""
        p, r = self.p_good_to_bad, self.p_bad_to_good
        if p + r == 0.0:
            return self.loss_good
        bad = p / (p + r)
        return bad * self.loss_bad + (1.0 - bad) * self.loss_good

    @property
    def mean_burst_packets(self) -> float:
        return math.inf if self.p_bad_to_good == 0.0 else 1.0 / self.p_bad_to_good


@dataclass(frozen=True)
class Outage:
    """The link delivers nothing from ``start_s`` for ``duration_s`` (link-epoch seconds)."""

    start_s: float
    duration_s: float

    def __post_init__(self) -> None:
        if self.duration_s <= 0:
            raise ValueError(f"outage duration_s must be > 0, got {self.duration_s}")

    def covers(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.start_s + self.duration_s


@dataclass(frozen=True)
class LinkConfig:
    """Impairments of one direction. Serialisable with :meth:`to_json`."""

    #: transmitter rate in wire bit/s (``None``: unlimited, no serialisation delay)
    rate_bps: float | None = None
    #: drop-tail queue limit in bytes (``None``: max(2000 B, 0.5 s at ``rate_bps``))
    queue_bytes: int | None = None
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    #: Bernoulli loss probability per datagram
    loss: float = 0.0
    #: Gilbert-Elliott bursty loss (applied as well as ``loss``)
    burst: GilbertElliott | None = None
    reorder: float = 0.0
    reorder_ms: float = 0.0
    duplicate: float = 0.0
    outages: tuple[Outage, ...] = ()
    #: bytes each datagram costs on the wire beyond its UDP payload (IPv4 + UDP)
    overhead_bytes: int = IPV4_UDP_BYTES

    def __post_init__(self) -> None:
        if self.rate_bps is not None and not self.rate_bps > 0:
            raise ValueError(f"rate_bps must be > 0 or None, got {self.rate_bps}")
        if self.queue_bytes is not None and self.queue_bytes < 1:
            raise ValueError(f"queue_bytes must be >= 1 or None, got {self.queue_bytes}")
        for name in ("delay_ms", "jitter_ms", "reorder_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("loss", "reorder", "duplicate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.overhead_bytes < 0:
            raise ValueError(f"overhead_bytes must be >= 0, got {self.overhead_bytes}")

    @property
    def queue_limit_bytes(self) -> int | None:
        if self.queue_bytes is not None:
            return self.queue_bytes
        if self.rate_bps is None:
            return None
        return max(2000, math.ceil(self.rate_bps * 0.5 / 8))

    @property
    def mean_loss(self) -> float:
        """Long-run random loss (outages and queue drops excluded)."""
        burst = self.burst.mean_loss if self.burst is not None else 0.0
        return 1.0 - (1.0 - self.loss) * (1.0 - burst)

    def label(self) -> str:
        """A short human description, e.g. ``8 kbit/s, 50 ms, 10% bursty``."""
        parts = ["unlimited" if self.rate_bps is None else f"{self.rate_bps / 1000:g} kbit/s"]
        if self.delay_ms or self.jitter_ms:
            parts.append(
                f"{self.delay_ms:g} ms" + (f" ±{self.jitter_ms:g}" if self.jitter_ms else "")
            )
        if self.loss:
            parts.append(f"{100 * self.loss:g}% loss")
        if self.burst is not None:
            parts.append(
                f"{100 * self.burst.mean_loss:.3g}% bursty (mean burst "
                f"{self.burst.mean_burst_packets:.3g})"
            )
        if self.reorder:
            parts.append(f"{100 * self.reorder:g}% reordered")
        if self.duplicate:
            parts.append(f"{100 * self.duplicate:g}% duplicated")
        for o in self.outages:
            parts.append(f"outage {o.start_s:g}-{o.start_s + o.duration_s:g} s")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinkConfig:
        data = dict(data)
        if data.get("burst") is not None:
            data["burst"] = GilbertElliott(**data["burst"])
        data["outages"] = tuple(Outage(**o) for o in data.get("outages", ()))
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LinkConfig:
        return cls.from_dict(json.loads(text))


@dataclass
class LinkStats:
    offered: int = 0
    offered_bytes: int = 0
    delivered: int = 0
    delivered_bytes: int = 0
    dropped_queue: int = 0
    dropped_outage: int = 0
    dropped_loss: int = 0
    duplicated: int = 0
    reordered: int = 0
    max_queue_bytes: int = 0

    @property
    def dropped(self) -> int:
        return self.dropped_queue + self.dropped_outage + self.dropped_loss


@dataclass(frozen=True)
class DatagramRecord:
    """What happened to one offered datagram (times in the caller's clock, seconds)."""

    offered_s: float
    wire_bytes: int
    #: "delivered", "queue", "outage" or "loss"
    outcome: str
    #: delivery times of the copies that arrive (two when duplicated)
    delivered_s: tuple[float, ...] = ()


@dataclass
class LinkModel:
    """State of one direction. ``submit()`` returns the delivery times of a datagram."""

    config: LinkConfig
    seed: int = 0
    #: outage times are relative to this (seconds in the caller's clock)
    epoch_s: float = 0.0
    keep_records: bool = True
    stats: LinkStats = field(default_factory=LinkStats)
    records: list[DatagramRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._queue: deque[tuple[float, int]] = deque()  # (transmission end, wire bytes)
        self._queued_bytes = 0
        self._busy_until_s = -math.inf
        self._last_delivery_s = -math.inf
        self._bad = False

    def queued_bytes(self, now_s: float) -> int:
        """Bytes not yet fully transmitted at ``now_s``."""
        while self._queue and self._queue[0][0] <= now_s:
            self._queued_bytes -= self._queue.popleft()[1]
        return self._queued_bytes

    def submit(self, now_s: float, payload_bytes: int, protected: bool = False) -> list[float]:
        """Offer a datagram of ``payload_bytes`` at ``now_s``; returns its delivery times."""
        cfg = self.config
        u_loss, u_state, u_burst, u_jitter, u_reorder, u_dup = (
            self._rng.random() for _ in range(6)
        )
        size = payload_bytes + cfg.overhead_bytes
        st = self.stats
        st.offered += 1
        st.offered_bytes += size

        # 1. drop-tail queue and serialisation
        limit = cfg.queue_limit_bytes
        queued = self.queued_bytes(now_s)
        if limit is not None and not protected and queued + size > limit:
            st.dropped_queue += 1
            return self._record(now_s, size, "queue", ())
        if cfg.rate_bps is None:
            sent_s = now_s
        else:
            sent_s = max(now_s, self._busy_until_s) + 8.0 * size / cfg.rate_bps
            self._busy_until_s = sent_s
            self._queue.append((sent_s, size))
            self._queued_bytes += size
            st.max_queue_bytes = max(st.max_queue_bytes, self._queued_bytes)

        # 2.-3. outages, then random loss (the Gilbert-Elliott state moves on every datagram)
        lost = u_loss < cfg.loss
        if cfg.burst is not None:
            ge = cfg.burst
            self._bad = (u_state >= ge.p_bad_to_good) if self._bad else (u_state < ge.p_good_to_bad)
            lost = lost or u_burst < (ge.loss_bad if self._bad else ge.loss_good)
        if not protected:
            rel = sent_s - self.epoch_s
            if any(o.covers(rel) for o in cfg.outages):
                st.dropped_outage += 1
                return self._record(now_s, size, "outage", ())
            if lost:
                st.dropped_loss += 1
                return self._record(now_s, size, "loss", ())

        # 4.-6. delay, jitter (order kept), reordering, duplication
        jitter_s = cfg.jitter_ms / 1000.0 * (2.0 * u_jitter - 1.0)
        t = max(sent_s + cfg.delay_ms / 1000.0 + jitter_s, sent_s)
        if cfg.reorder and u_reorder < cfg.reorder and not protected:
            t = max(t, self._last_delivery_s) + cfg.reorder_ms / 1000.0
            st.reordered += 1
        else:
            t = max(t, self._last_delivery_s)
            self._last_delivery_s = t
        times = [t]
        if cfg.duplicate and u_dup < cfg.duplicate and not protected:
            times.append(t + _DUPLICATE_GAP_S)
            st.duplicated += 1
        st.delivered += len(times)
        st.delivered_bytes += size * len(times)
        return self._record(now_s, size, "delivered", tuple(times))

    def _record(
        self, now_s: float, size: int, outcome: str, times: tuple[float, ...]
    ) -> list[float]:
        if self.keep_records:
            self.records.append(DatagramRecord(now_s, size, outcome, times))
        return list(times)
