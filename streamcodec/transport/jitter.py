"""Receiver jitter buffer: reorder, de-duplicate, time the playout, conceal losses.

Frames are keyed by their (unwrapped) frame index; frame ``i`` plays at
``i * frame_duration_s + offset_s`` on the receiver's clock. The offset is set when a
talkspurt starts (the first packet, or the first after DTX silence or a stall):

    offset = min recent transit + margin,   margin = clamp(max(2 J, p95 deviation))

where transit = arrival time - first frame index * frame duration, J is the RFC 3550
interarrival jitter (``J += (|D| - J) / 16``) and the deviation is transit minus the
minimum over the last ``history_packets`` packets; with redundancy the margin also
covers one packet interval (a frame's copy rides in the next packet). Within a
talkspurt the offset only grows, by the lateness of a late packet (``adapt_on_late``).

A missing frame due for playout is taken from a redundant copy when one arrived,
otherwise emitted as ``frame=None`` (the codec conceals it). After an E packet the
missing frames are DTX silence, not loss: playout pauses until the next talkspurt.
With no later frame known, concealment stops after ``reset_after_ms`` (the stream
stalled); the next real frame then asks for a decoder reset, as does the K flag.

Loss is counted per packet from sequence numbers as in RFC 3550:
``lost = expected - received``; ``late`` and ``duplicate`` packets are counted apart
(late ones are received, but their frames were already concealed).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

from streamcodec.transport.packets import Packet

FrameKind = Literal["packet", "redundancy", "concealed"]


@dataclass(frozen=True)
class JitterConfig:
    #: playout margin for the first talkspurt, before any jitter statistics exist
    initial_delay_ms: float = 60.0
    min_delay_ms: float = 10.0
    max_delay_ms: float = 1000.0
    #: packets of transit history behind the margin estimate
    history_packets: int = 64
    #: conceal at most this long without any later frame; a longer gap resets the decoder
    reset_after_ms: float = 200.0
    #: frames further ahead of playout than this are dropped (memory bound)
    max_buffered_frames: int = 6000
    #: grow the playout delay when a packet arrives late
    adapt_on_late: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.min_delay_ms <= self.max_delay_ms:
            raise ValueError(f"need 0 <= min_delay_ms <= max_delay_ms, got {self}")
        if self.initial_delay_ms < 0 or self.reset_after_ms < 0:
            raise ValueError(f"initial_delay_ms and reset_after_ms must be >= 0: {self}")
        if self.history_packets < 1 or self.max_buffered_frames < 1:
            raise ValueError(f"history_packets and max_buffered_frames must be >= 1: {self}")


@dataclass(frozen=True)
class PlayoutFrame:
    """One frame for the decoder: ``frame`` is ``None`` when it must be concealed."""

    index: int
    frame: bytes | None
    kind: FrameKind
    #: start a fresh decoder before this frame
    reset: bool = False


@dataclass
class JitterStats:
    packets_received: int = 0
    packets_expected: int = 0
    packets_late: int = 0
    packets_duplicate: int = 0
    frames_played: int = 0
    frames_recovered: int = 0
    frames_concealed: int = 0
    frames_late: int = 0
    frames_overflow: int = 0
    decoder_resets: int = 0
    talkspurts: int = 0
    jitter_ms: float = 0.0
    margin_ms: float = 0.0

    @property
    def packets_lost(self) -> int:
        return max(self.packets_expected - self.packets_received, 0)


def _unwrap16(value: int, reference: int) -> int:
    return reference + ((value - reference + 0x8000) & 0xFFFF) - 0x8000


class JitterBuffer:
    """Per-stream receive state. Times are seconds on one monotonic clock."""

    def __init__(self, frame_duration_s: float, config: JitterConfig = JitterConfig()) -> None:
        if frame_duration_s <= 0:
            raise ValueError(f"frame_duration_s must be > 0, got {frame_duration_s}")
        self.fd = frame_duration_s
        self.config = config
        self.stats = JitterStats()
        # frame index -> (frame, from redundancy, reset flag, arrival_s)
        self._frames: dict[int, tuple[bytes, bool, bool, float]] = {}
        self._spurt_ends: set[int] = set()
        self._playing = False
        self._next: int | None = None  # next frame index to play
        self._offset_s = 0.0
        self._max_index: int | None = None
        self._conceal_run = 0
        self._pending_reset = False
        self._seq_high: int | None = None
        self._seq_first = 0
        self._seen: set[int] = set()
        self._total_sent: int | None = None
        self._transits: deque[float] = deque(maxlen=config.history_packets)
        self._last_transit: float | None = None
        self._jitter_s = 0.0
        self._redundancy_s = 0.0  # extra playout delay so redundant copies arrive in time

    # -- input --------------------------------------------------------------------------------
    def push(self, packet: Packet, arrival_s: float) -> None:
        """Add one parsed packet that arrived at ``arrival_s``."""
        st = self.stats
        if self._seq_high is None:
            ext = packet.seq
            self._seq_high = self._seq_first = ext
        else:
            ext = _unwrap16(packet.seq, self._seq_high)
        if ext in self._seen:
            st.packets_duplicate += 1
            return
        self._seen.add(ext)
        if len(self._seen) > 8192:
            floor = self._seq_high - 4096
            self._seen = {s for s in self._seen if s >= floor}
        st.packets_received += 1
        self._seq_high = max(self._seq_high, ext)
        self._seq_first = min(self._seq_first, ext)
        self._update_expected()

        ref = self._max_index if self._max_index is not None else packet.timestamp
        i0 = _unwrap16(packet.timestamp, ref)
        n = len(packet.frames)
        if packet.end:
            self._spurt_ends.add(i0 + n - 1)
        if packet.redundant and n and self._redundancy_s < n * self.fd:
            # a copy of frame i arrives one packet later than frame i would: wait for it
            grow = n * self.fd - self._redundancy_s
            self._redundancy_s = n * self.fd
            if self._playing:
                self._grow_offset(grow)
        if n:
            self._note_transit(arrival_s - i0 * self.fd)
            if self._next is not None and i0 < self._next:
                st.packets_late += 1
                lateness = arrival_s - (i0 * self.fd + self._offset_s)
                if self._playing and self.config.adapt_on_late and lateness > 0:
                    self._grow_offset(lateness)
        r = len(packet.redundant)
        for j, frame in enumerate(packet.redundant):
            self._store(i0 - r + j, frame, True, False, arrival_s)
        for j, frame in enumerate(packet.frames):
            self._store(i0 + j, frame, False, packet.reset and j == 0, arrival_s)
        if not self._playing:
            self._anchor()

    def expect_total(self, packets_sent: int) -> None:
        """The sender's final count (sequence numbers 0..packets_sent-1) for trailing losses."""
        if packets_sent < 0:
            raise ValueError(f"packets_sent must be >= 0, got {packets_sent}")
        self._total_sent = packets_sent
        self._update_expected()

    def _update_expected(self) -> None:
        seen = 0 if self._seq_high is None else self._seq_high - self._seq_first + 1
        if self._total_sent is not None:
            seen = max(seen, self._total_sent)
        self.stats.packets_expected = seen

    @property
    def last_packet_arrived(self) -> bool:
        """True once the sender's final count is known and its last packet has arrived."""
        if self._total_sent is None:
            return False
        return self._total_sent == 0 or (
            self._seq_high is not None and self._seq_high + 1 >= self._total_sent
        )

    def _store(self, index: int, frame: bytes, redundant: bool, reset: bool, arrival: float):
        st = self.stats
        if self._next is not None and index < self._next:
            if not redundant:
                st.frames_late += 1
            return
        if self._next is not None and index >= self._next + self.config.max_buffered_frames:
            st.frames_overflow += 1
            return
        old = self._frames.get(index)
        if old is not None and (redundant or not old[1]):
            return  # keep a primary copy over a redundant one
        self._frames[index] = (frame, redundant, reset, arrival)
        if self._max_index is None or index > self._max_index:
            self._max_index = index

    def _note_transit(self, transit_s: float) -> None:
        if self._last_transit is not None:
            d = abs(transit_s - self._last_transit)
            self._jitter_s += (d - self._jitter_s) / 16.0
        self._last_transit = transit_s
        self._transits.append(transit_s)
        self.stats.jitter_ms = 1000.0 * self._jitter_s

    def _margin_s(self) -> float:
        cfg = self.config
        if len(self._transits) < 2:
            margin = cfg.initial_delay_ms / 1000.0
        else:
            base = min(self._transits)
            devs = sorted(t - base for t in self._transits)
            p95 = devs[min(len(devs) - 1, math.ceil(0.95 * len(devs)) - 1)]
            margin = max(2.0 * self._jitter_s, p95)
        margin += self._redundancy_s
        return min(max(margin, cfg.min_delay_ms / 1000.0), cfg.max_delay_ms / 1000.0)

    def _grow_offset(self, by_s: float) -> None:
        if not self._transits:
            return
        cap = min(self._transits) + self.config.max_delay_ms / 1000.0
        self._offset_s = min(self._offset_s + by_s, max(cap, self._offset_s))
        self.stats.margin_ms = 1000.0 * (self._offset_s - min(self._transits))

    def _anchor(self) -> None:
        """Start a talkspurt at the earliest buffered frame, if any."""
        if not self._frames:
            return
        first = min(self._frames)
        arrival = self._frames[first][3]
        transit = arrival - first * self.fd
        margin = self._margin_s()
        base = min(self._transits) if len(self._transits) >= 2 else transit
        self._offset_s = max(base + margin, transit + self.config.min_delay_ms / 1000.0)
        self.stats.margin_ms = 1000.0 * (self._offset_s - base)
        self._next = first
        self._playing = True
        self._conceal_run = 0
        self.stats.talkspurts += 1

    # -- output -------------------------------------------------------------------------------
    @property
    def next_due_s(self) -> float | None:
        """Receiver time at which the next frame is due, ``None`` while idle."""
        if not self._playing or self._next is None:
            return None
        return self._next * self.fd + self._offset_s

    def pop(self, now_s: float) -> list[PlayoutFrame]:
        """Frames due for playout by ``now_s``, in order."""
        out: list[PlayoutFrame] = []
        while self._playing and self._next is not None:
            if self._next * self.fd + self._offset_s > now_s:
                break
            frame = self._take(final=False)
            if frame is not None:
                out.append(frame)
        return out

    def flush(self) -> list[PlayoutFrame]:
        """End of stream: everything still buffered, in order, gaps inside talkspurts concealed."""
        out: list[PlayoutFrame] = []
        if not self._playing:
            self._anchor()
        while self._playing and self._next is not None:
            if self._max_index is None or self._next > self._max_index:
                break
            frame = self._take(final=True)
            if frame is not None:
                out.append(frame)
        self._playing = False
        return out

    def _take(self, final: bool) -> PlayoutFrame | None:
        """Play frame ``_next`` (or decide why it is missing); advances ``_next``."""
        assert self._next is not None
        i = self._next
        st = self.stats
        item = self._frames.pop(i, None)
        if len(self._spurt_ends) > 64:
            self._spurt_ends = {e for e in self._spurt_ends if e >= i - 1}
        if item is not None:
            frame, redundant, reset, _ = item
            gap_s = self._conceal_run * self.fd
            reset = reset or self._pending_reset or gap_s * 1000.0 > self.config.reset_after_ms
            self._pending_reset = False
            self._conceal_run = 0
            self._next = i + 1
            st.frames_played += 1
            st.frames_recovered += int(redundant)
            st.decoder_resets += int(reset)
            return PlayoutFrame(i, frame, "redundancy" if redundant else "packet", reset)
        if (i - 1) in self._spurt_ends:  # DTX: the talkspurt ended at i - 1
            self._playing = False
            self._skip_to_buffered()
            return None
        later_known = self._max_index is not None and self._max_index > i
        run_limit = self.config.reset_after_ms / 1000.0 / self.fd
        if later_known or (not final and self._conceal_run < run_limit):
            self._conceal_run += 1
            self._next = i + 1
            st.frames_concealed += 1
            return PlayoutFrame(i, None, "concealed")
        # stalled: nothing later known, concealed long enough
        self._playing = False
        self._pending_reset = True
        return None

    def _skip_to_buffered(self) -> None:
        if self._frames:  # the next talkspurt already arrived (all buffered frames are >= _next)
            self._anchor()
