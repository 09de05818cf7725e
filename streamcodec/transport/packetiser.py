"""Packetiser: codec frames in, packet bytes out, sized and paced by a link budget.

On aiortc data channels the message count, not the payload, sets the wire rate
(:mod:`streamcodec.transport.overhead`), so the packetiser groups ``n`` frames per
message. :func:`plan_packets` picks the smallest ``n`` whose message interval is at
least the RTT (an unreliable channel behaves best then) and whose modelled wire
rate fits the link budget. The sender also paces itself with a token bucket at the
budget: aiortc never expires queued messages and its ``bufferedAmount`` stays ~0
while a slow bottleneck queue fills, so a message that would overrun the budget is
dropped at the sender (counted) instead of queueing stale audio.

Optional DTX: frames marked inactive (by a voice-activity decision) are not sent;
the last message of a talkspurt carries the E flag and the timestamp jumps over the
silence, which the receiver tells apart from loss (its sequence numbers run on).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass

from streamcodec.transport.overhead import OverheadModel
from streamcodec.transport.packets import MAX_FRAMES, Packet, encode, packet_bytes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PacketiserConfig:
    """How a sender groups frames into messages. Serialisable with :meth:`to_json`."""

    #: wire bit/s the link carries in each direction (``None`` = unlimited)
    link_budget_bps: float | None = 16000.0
    #: round-trip time of the path; the message interval is kept >= this
    rtt_ms: float = 0.0
    #: fixed frames per message (overrides the budget-based choice)
    frames_per_message: int | None = None
    #: copies of the previous k frames carried in each message (0 = none)
    redundancy_frames: int = 0
    #: never wait longer than this to fill a message
    max_interval_ms: float = 1000.0
    #: budget also carries the SACKs of a peer sending the same stream back (a call)
    duplex: bool = True
    #: discontinuous transmission: send nothing for inactive frames
    dtx: bool = False
    #: drop messages that would exceed the budget (token bucket)
    pace: bool = True
    #: expected bytes per frame of a variable-rate codec (for planning only)
    variable_frame_bytes: float = 16.0
    #: share of the budget the plan leaves free for what loss adds on the wire
    #: (FORWARD-TSN chunks, extra SACKs): a plan filling the whole budget let the
    #: bottleneck queue grow to seconds at 10 % loss in the link simulation
    headroom: float = 0.15

    def __post_init__(self) -> None:
        if self.link_budget_bps is not None and not self.link_budget_bps > 0:
            raise ValueError(f"link_budget_bps must be > 0 or None, got {self.link_budget_bps}")
        if self.rtt_ms < 0 or self.max_interval_ms <= 0:
            raise ValueError(f"rtt_ms must be >= 0 and max_interval_ms > 0: {self}")
        fpm = self.frames_per_message
        if fpm is not None and not 1 <= fpm <= MAX_FRAMES:
            raise ValueError(f"frames_per_message must be in 1..{MAX_FRAMES}, got {fpm}")
        if not 0 <= self.redundancy_frames <= MAX_FRAMES:
            raise ValueError(f"redundancy_frames must be in 0..{MAX_FRAMES}")
        if self.variable_frame_bytes <= 0:
            raise ValueError(f"variable_frame_bytes must be > 0, got {self.variable_frame_bytes}")
        if not 0.0 <= self.headroom < 1.0:
            raise ValueError(f"headroom must be in [0, 1), got {self.headroom}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PacketiserConfig:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class PacketPlan:
    """The chosen grouping and its modelled cost."""

    frames_per_message: int
    interval_ms: float
    messages_per_s: float
    message_bytes: int
    payload_bps: float
    forward_wire_bps: float
    reverse_wire_bps: float
    #: wire bit/s the budget must carry (forward, plus reverse when duplex)
    needed_bps: float
    fits_budget: bool
    meets_rtt: bool


def plan_packets(
    frame_duration_s: float,
    bits_per_frame: int | None,
    config: PacketiserConfig = PacketiserConfig(),
    model: OverheadModel | None = None,
) -> PacketPlan:
    """Choose frames per message for a codec with ``frame_duration_s`` frames."""
    model = model or OverheadModel()
    if frame_duration_s <= 0:
        raise ValueError(f"frame_duration_s must be > 0, got {frame_duration_s}")
    frame_bits = 8 * config.variable_frame_bytes if bits_per_frame is None else bits_per_frame

    def cost(n: int) -> PacketPlan:
        interval_s = n * frame_duration_s
        rate = 1.0 / interval_s
        size = packet_bytes(
            n, min(config.redundancy_frames, 255), bits_per_frame, config.variable_frame_bytes
        )
        fwd = model.forward_bps(rate, size)
        rev = model.reverse_bps(rate)
        needed = fwd + rev if config.duplex else fwd
        budget = config.link_budget_bps
        return PacketPlan(
            frames_per_message=n,
            interval_ms=1000.0 * interval_s,
            messages_per_s=rate,
            message_bytes=size,
            payload_bps=frame_bits / frame_duration_s,
            forward_wire_bps=fwd,
            reverse_wire_bps=rev,
            needed_bps=needed,
            fits_budget=budget is None or needed <= budget * (1.0 - config.headroom),
            meets_rtt=1000.0 * interval_s >= config.rtt_ms,
        )

    if config.frames_per_message is not None:
        return cost(config.frames_per_message)
    n_max = max(1, min(MAX_FRAMES, int(config.max_interval_ms / 1000.0 / frame_duration_s)))
    for n in range(1, n_max + 1):
        plan = cost(n)
        if plan.meets_rtt and plan.fits_budget:
            return plan
    plan = cost(n_max)
    logger.warning(
        "no frames-per-message up to %d fits a %s bit/s budget with RTT %g ms; using %d "
        "(needs %.0f bit/s)",
        n_max,
        config.link_budget_bps,
        config.rtt_ms,
        n_max,
        plan.needed_bps,
    )
    return plan


class TokenBucket:
    """Token bucket in bits: ``allow(bits, now_s)`` spends tokens or refuses."""

    def __init__(self, rate_bps: float, depth_bits: float) -> None:
        if rate_bps <= 0 or depth_bits <= 0:
            raise ValueError(f"rate_bps and depth_bits must be > 0, got {rate_bps}, {depth_bits}")
        self.rate_bps = rate_bps
        self.depth_bits = depth_bits
        self._tokens = depth_bits
        self._last_s: float | None = None

    def allow(self, bits: float, now_s: float) -> bool:
        if self._last_s is not None:
            refill = (now_s - self._last_s) * self.rate_bps
            self._tokens = min(self.depth_bits, self._tokens + refill)
        self._last_s = now_s
        if bits > self._tokens:
            return False
        self._tokens -= bits
        return True


@dataclass
class PacketiserStats:
    messages_sent: int = 0
    frames_sent: int = 0
    #: frames not sent because DTX judged them silent
    frames_dtx: int = 0
    #: messages dropped by the pacer (would have exceeded the budget)
    messages_dropped: int = 0
    #: codec payload bits sent (primary frames only)
    payload_bits: int = 0
    #: bytes of all packets sent (headers and redundancy included)
    packet_bytes: int = 0
    #: modelled wire bytes of the messages sent (forward, consent excluded)
    model_wire_bytes: float = 0.0


class Packetiser:
    """Per-stream sender state: push frames, get encoded packets (bytes) to send.

    ``push(frame, active)`` returns the packets completed by that frame (usually
    zero or one); ``flush()`` sends what is pending and marks the end of a talkspurt.
    """

    def __init__(
        self,
        config_id: int,
        bits_per_frame: int | None,
        frame_duration_s: float,
        config: PacketiserConfig = PacketiserConfig(),
        model: OverheadModel | None = None,
    ) -> None:
        model = model or OverheadModel()
        self.config_id = config_id
        self.bits_per_frame = bits_per_frame
        self.config = config
        self.model = model
        self.plan = plan_packets(frame_duration_s, bits_per_frame, config, model)
        self.stats = PacketiserStats()
        self._seq = 0
        self._next_index = 0  # frame index of the next frame pushed
        self._pending: list[bytes] = []
        self._pending_start = 0
        self._history: list[bytes] = []  # the frames just before ``_pending_start``
        self._reset_next = True
        self._in_spurt = False
        self._bucket: TokenBucket | None = None
        budget = config.link_budget_bps
        if config.pace and budget is not None:
            share = budget - (model.reverse_bps(self.plan.messages_per_s) if config.duplex else 0)
            share = max(share - model.consent_bps, 0.25 * budget)
            depth = 3 * 8 * model.message_wire_bytes(self.plan.message_bytes)
            self._bucket = TokenBucket(share, depth)

    @property
    def frames_pushed(self) -> int:
        """Frames given to :meth:`push` so far (sent or skipped as silence)."""
        return self._next_index

    def reset(self) -> None:
        """Ask the receiver to reset its decoder (e.g. the encoder was restarted)."""
        self._reset_next = True
        self._history.clear()

    def push(self, frame: bytes, active: bool = True, now_s: float | None = None) -> list[bytes]:
        """Add the next codec frame; ``active=False`` (with DTX on) skips it as silence."""
        if not isinstance(frame, bytes):
            raise TypeError(f"frame must be bytes, got {type(frame).__name__}")
        out: list[bytes] = []
        index = self._next_index
        self._next_index += 1
        if self.config.dtx and not active:
            self.stats.frames_dtx += 1
            if self._pending or self._in_spurt:
                out += self._emit(end=True, now_s=now_s, empty_start=index)
            self._in_spurt = False
            self._history.clear()
            return out
        if not self._pending:
            self._pending_start = index
        self._in_spurt = True
        self._pending.append(frame)
        if len(self._pending) >= self.plan.frames_per_message:
            out += self._emit(end=False, now_s=now_s)
        return out

    def flush(self, now_s: float | None = None) -> list[bytes]:
        """Send pending frames with the E flag (end of talkspurt or of the stream)."""
        if not self._pending and not self._in_spurt:
            return []
        out = self._emit(end=True, now_s=now_s, empty_start=self._next_index)
        self._in_spurt = False
        self._history.clear()
        return out

    def _emit(self, end: bool, now_s: float | None, empty_start: int = 0) -> list[bytes]:
        k = self.config.redundancy_frames
        start = self._pending_start if self._pending else empty_start
        redundant = tuple(self._history[-k:]) if k and self._pending else ()
        packet = Packet(
            config_id=self.config_id,
            seq=self._seq & 0xFFFF,
            timestamp=start & 0xFFFF,
            frames=tuple(self._pending),
            redundant=redundant,
            reset=self._reset_next,
            end=end,
        )
        data = encode(packet, self.bits_per_frame)
        frames = self._pending
        self._history = (self._history + frames)[-max(k, 1) :]
        self._pending = []
        wire_bytes = self.model.message_wire_bytes(len(data))
        now = time.monotonic() if now_s is None else now_s
        if self._bucket is not None and not self._bucket.allow(8 * wire_bytes, now):
            self.stats.messages_dropped += 1
            logger.debug("pacer dropped message seq=%d (%d B) over budget", self._seq, len(data))
            return []
        self._seq += 1
        self._reset_next = False
        st = self.stats
        st.messages_sent += 1
        st.frames_sent += len(frames)
        st.payload_bits += (
            self.bits_per_frame * len(frames)
            if self.bits_per_frame is not None
            else 8 * sum(len(f) for f in frames)
        )
        st.packet_bytes += len(data)
        st.model_wire_bytes += wire_bytes
        return [data]
