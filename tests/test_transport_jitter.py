"""Jitter buffer: reordering, duplicates, late drop, redundancy recovery, concealment, DTX."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamcodec.transport.jitter import JitterBuffer, JitterConfig, PlayoutFrame
from streamcodec.transport.packets import Packet

FD = 0.04


def frame(i: int) -> bytes:
    return i.to_bytes(4, "big")


def make_packets(
    n_frames: int, per: int, k: int = 0, seq0: int = 0, ts0: int = 0, end: bool = True
) -> list[Packet]:
    out = []
    for seq, start in enumerate(range(0, n_frames, per)):
        idx = list(range(start, min(start + per, n_frames)))
        out.append(
            Packet(
                config_id=1,
                seq=(seq0 + seq) & 0xFFFF,
                timestamp=(ts0 + start) & 0xFFFF,
                frames=tuple(frame(i) for i in idx),
                redundant=tuple(frame(i) for i in range(max(start - k, 0), start)),
                reset=seq == 0,
                end=end and idx[-1] == n_frames - 1,
            )
        )
    return out


def sent_time(p: Packet, per: int, ts0: int = 0) -> float:
    """When the sender emits packet ``p`` (after its last frame)."""
    first = (p.timestamp - ts0) & 0xFFFF
    return (first + len(p.frames)) * FD


def simulate(
    jb: JitterBuffer, arrivals: list[tuple[float, Packet]], until_s: float, flush: bool = True
) -> list[PlayoutFrame]:
    """Push packets at their arrival times and pop every 10 ms until ``until_s``."""
    arrivals = sorted(arrivals, key=lambda a: a[0])
    out: list[PlayoutFrame] = []
    t, j = 0.0, 0
    while t <= until_s:
        while j < len(arrivals) and arrivals[j][0] <= t:
            jb.push(arrivals[j][1], arrivals[j][0])
            j += 1
        out += jb.pop(t)
        t += 0.01
    return out + (jb.flush() if flush else [])


def real(frames: list[PlayoutFrame]) -> list[bytes]:
    return [f.frame for f in frames if f.frame is not None]


def test_in_order_plays_every_frame_once_in_order_at_a_steady_delay():
    pk = make_packets(50, 2)
    jb = JitterBuffer(FD, JitterConfig(initial_delay_ms=60))
    out = simulate(jb, [(sent_time(p, 2) + 0.02, p) for p in pk], 3.0, flush=False)
    assert [f.index for f in out] == list(range(50))
    assert real(out) == [frame(i) for i in range(50)]
    assert out[0].reset and not any(f.reset for f in out[1:])
    st_ = jb.stats
    assert (st_.packets_received, st_.packets_lost, st_.frames_concealed) == (25, 0, 0)
    assert st_.talkspurts == 1


def test_reordered_and_duplicated_packets():
    pk = make_packets(40, 2)
    arrivals = [(sent_time(p, 2) + 0.02, p) for p in pk]
    arrivals[5], arrivals[6] = (arrivals[6][0], arrivals[5][1]), (arrivals[5][0], arrivals[6][1])
    arrivals += [(arrivals[3][0] + 0.005, pk[3]), (arrivals[9][0] + 0.01, pk[9])]
    jb = JitterBuffer(FD, JitterConfig(initial_delay_ms=120))  # reordering by 80 ms
    out = simulate(jb, arrivals, 2.5)
    assert real(out) == [frame(i) for i in range(40)]
    assert jb.stats.packets_duplicate == 2 and jb.stats.packets_lost == 0
    assert jb.stats.frames_concealed == 0


def test_loss_is_concealed_and_counted():
    pk = make_packets(40, 2)
    lost = {4, 11, 12}
    jb = JitterBuffer(FD)
    out = simulate(jb, [(sent_time(p, 2) + 0.02, p) for p in pk if p.seq not in lost], 2.5)
    assert [f.index for f in out] == list(range(40))
    concealed = [f.index for f in out if f.frame is None]
    assert concealed == [8, 9, 22, 23, 24, 25]
    assert all(f.kind == "concealed" for f in out if f.frame is None)
    s = jb.stats
    assert (s.packets_received, s.packets_lost, s.frames_concealed) == (17, 3, 6)
    assert s.packets_received + s.packets_lost == len(pk)


def test_redundancy_recovers_single_losses():
    pk = make_packets(40, 2, k=2)
    jb = JitterBuffer(FD)
    out = simulate(jb, [(sent_time(p, 2) + 0.02, p) for p in pk if p.seq not in (4, 12)], 2.5)
    assert real(out) == [frame(i) for i in range(40)]
    assert [f.index for f in out if f.kind == "redundancy"] == [8, 9, 24, 25]
    assert jb.stats.frames_recovered == 4 and jb.stats.frames_concealed == 0
    assert jb.stats.packets_lost == 2


def test_late_packet_is_dropped_counted_and_grows_the_delay():
    pk = make_packets(60, 2)
    arrivals = [(sent_time(p, 2) + 0.02, p) for p in pk]
    arrivals[10] = (arrivals[10][0] + 0.5, pk[10])  # 500 ms late
    jb = JitterBuffer(FD, JitterConfig(initial_delay_ms=40))
    out = simulate(jb, arrivals, 4.0)
    assert [f.index for f in out] == list(range(60))
    assert [f.index for f in out if f.frame is None] == [20, 21]
    s = jb.stats
    assert s.packets_late == 1 and s.frames_late == 2 and s.packets_lost == 0
    assert s.margin_ms > 400  # the playout delay grew by the lateness


def test_dtx_gap_is_silence_not_loss():
    first = make_packets(10, 2)
    second = [
        Packet(1, seq=5 + j, timestamp=30 + 2 * j, frames=(frame(30 + 2 * j), frame(31 + 2 * j)),
               end=j == 4)
        for j in range(5)
    ]  # fmt: skip
    arrivals = [(sent_time(p, 2) + 0.02, p) for p in first + second]
    jb = JitterBuffer(FD)
    out = simulate(jb, arrivals, 3.0, flush=False)
    assert [f.index for f in out] == list(range(10)) + list(range(30, 40))
    assert jb.stats.frames_concealed == 0 and jb.stats.packets_lost == 0
    assert jb.stats.talkspurts == 2


def test_stall_conceals_briefly_then_resets_the_decoder():
    pk = make_packets(40, 2, end=False)
    arrivals = [(sent_time(p, 2) + 0.02, p) for p in pk if not 5 <= p.seq < 15]
    jb = JitterBuffer(FD, JitterConfig(reset_after_ms=200))
    out = simulate(jb, arrivals, 1.0, flush=False)  # the gap is open: nothing later known
    concealed = [f.index for f in out if f.frame is None]
    assert concealed == list(range(10, 15))  # 200 ms of 40 ms frames, then it stops
    out2 = simulate(jb, [(a, p) for a, p in arrivals if p.seq >= 15], 3.0)
    assert out2[0].index == 30 and out2[0].reset
    assert jb.stats.packets_lost == 10 and jb.stats.decoder_resets == 2


def test_sequence_and_timestamp_wrap_around():
    pk = make_packets(40, 4, seq0=65533, ts0=65500)
    jb = JitterBuffer(FD)
    out = simulate(jb, [(sent_time(p, 4, 65500) + 0.02, p) for p in pk], 3.0)
    assert real(out) == [frame(i) for i in range(40)]
    assert out[-1].index - out[0].index == 39
    assert jb.stats.packets_lost == 0 and jb.stats.packets_received == 10


def test_trailing_losses_count_once_the_sender_total_is_known():
    pk = make_packets(20, 2)
    jb = JitterBuffer(FD)
    simulate(jb, [(sent_time(p, 2) + 0.02, p) for p in pk[:-3]], 2.0)
    assert jb.stats.packets_lost == 0
    jb.expect_total(len(pk))
    assert jb.stats.packets_lost == 3 and not jb.last_packet_arrived
    jb.push(pk[-1], 3.0)  # the last one did come after all
    assert jb.stats.packets_lost == 2 and jb.last_packet_arrived
    with pytest.raises(ValueError):
        jb.expect_total(-1)


def test_flush_returns_everything_buffered_in_order():
    pk = make_packets(20, 5)
    jb = JitterBuffer(FD)
    for p in pk:
        jb.push(p, 0.0)  # all at once, nothing popped
    out = jb.flush()
    assert real(out) == [frame(i) for i in range(20)]
    assert jb.flush() == []


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    per=st.integers(1, 4),
    k=st.integers(0, 2),
    loss=st.floats(0, 0.4),
    dup=st.floats(0, 0.2),
    jitter_ms=st.floats(0, 30),
)
def test_random_network_invariants(seed, per, k, loss, dup, jitter_ms):
    rng = random.Random(seed)
    n_frames = 60
    pk = make_packets(n_frames, per, k=k)
    arrivals = []
    for p in pk:
        if rng.random() < loss:
            continue
        t = sent_time(p, per) + 0.01 + rng.random() * jitter_ms / 1000
        arrivals.append((t, p))
        if rng.random() < dup:
            arrivals.append((t + rng.random() * 0.05, p))
    jb = JitterBuffer(FD, JitterConfig(initial_delay_ms=80))
    out = simulate(jb, arrivals, n_frames * FD + 1.0, flush=False)
    jb.expect_total(len(pk))
    out += jb.flush()
    idx = [f.index for f in out]
    assert idx == sorted(set(idx))  # strictly increasing, no frame twice
    for f in out:
        if f.frame is not None:
            assert f.frame == frame(f.index)  # the right frame at the right place
    s = jb.stats
    assert s.packets_received + s.packets_lost == len(pk)
    assert s.packets_received == len({p.seq for _, p in arrivals})
    assert s.frames_played + s.frames_concealed == len(out)
    for a, b in zip(out, out[1:], strict=False):  # a skip (no DTX here) only after a stall
        if b.index != a.index + 1:
            assert b.reset and b.frame is not None
            run = 0
            for f in reversed(out[: out.index(a) + 1]):
                if f.frame is not None:
                    break
                run += 1
            assert run * FD * 1000 >= jb.config.reset_after_ms


def test_config_validation():
    with pytest.raises(ValueError):
        JitterConfig(min_delay_ms=50, max_delay_ms=10)
    with pytest.raises(ValueError):
        JitterBuffer(0.0)
