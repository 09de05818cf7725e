"""Packetiser: frames-per-message from budget and RTT, packing, redundancy, DTX, pacing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamcodec.transport.overhead import OverheadModel
from streamcodec.transport.packetiser import (
    Packetiser,
    PacketiserConfig,
    TokenBucket,
    plan_packets,
)
from streamcodec.transport.packets import parse

FD = 0.04  # Codec 2 700C: 28 bits per 40 ms


def frame(i: int) -> bytes:
    return ((i * 2654435761) & 0x0FFFFFFF).to_bytes(4, "big")[:3] + bytes([(i * 16) & 0xF0])


def test_default_plan_leaves_headroom_in_the_budget():
    for budget in (30000, 12000, 7000, 4000, 2500):
        plan = plan_packets(FD, 28, PacketiserConfig(link_budget_bps=budget, duplex=False))
        assert plan.fits_budget and plan.forward_wire_bps <= 0.85 * budget
        tight = plan_packets(
            FD, 28, PacketiserConfig(link_budget_bps=budget, duplex=False, headroom=0.0)
        )
        assert tight.frames_per_message <= plan.frames_per_message
    with pytest.raises(ValueError, match="headroom"):
        PacketiserConfig(headroom=1.0)


def test_plan_picks_smallest_grouping_that_fits_budget():
    plans = {
        b: plan_packets(FD, 28, PacketiserConfig(link_budget_bps=b, duplex=False, headroom=0.0))
        for b in (30000, 12000, 7000, 4000, 2500)
    }
    assert [plans[b].frames_per_message for b in (30000, 12000, 7000, 4000, 2500)] == [
        1, 2, 4, 7, 14,
    ]  # fmt: skip  # e.g. 4000: n=7 -> 32 B at 25/7 Hz = 3904 bit/s; n=6 -> 28 B = 4366
    for budget, plan in plans.items():
        assert plan.fits_budget and plan.forward_wire_bps <= budget
        if plan.frames_per_message > 1:  # one frame fewer would not fit
            smaller = plan_packets(
                FD, 28, PacketiserConfig(frames_per_message=plan.frames_per_message - 1)
            )
            assert smaller.forward_wire_bps > budget
    # the model: 2 frames of 28 bits + 7 B header = 14 B, padded to 16, at 12.5 Hz
    p = plans[12000]
    assert p.message_bytes == 14
    assert p.forward_wire_bps == pytest.approx(8 * 12.5 * (93 + 16) + 333)
    assert p.reverse_wire_bps == pytest.approx(8 * 12.5 * 93 + 333)
    assert p.payload_bps == pytest.approx(700)


def test_plan_duplex_counts_acks_and_rtt_sets_minimum_interval():
    simplex = plan_packets(FD, 28, PacketiserConfig(link_budget_bps=12000, duplex=False))
    duplex = plan_packets(FD, 28, PacketiserConfig(link_budget_bps=12000, duplex=True))
    assert duplex.frames_per_message > simplex.frames_per_message
    assert duplex.needed_bps == pytest.approx(duplex.forward_wire_bps + duplex.reverse_wire_bps)
    slow = plan_packets(FD, 28, PacketiserConfig(link_budget_bps=None, rtt_ms=300))
    assert slow.frames_per_message == 8 and slow.interval_ms >= 300
    hopeless = plan_packets(FD, 28, PacketiserConfig(link_budget_bps=500))
    assert not hopeless.fits_budget and hopeless.interval_ms <= 1000


def test_plan_variable_rate_uses_expected_frame_bytes():
    p = plan_packets(0.02, None, PacketiserConfig(frames_per_message=5, variable_frame_bytes=15))
    assert p.message_bytes == 7 + 5 * 16
    assert p.payload_bps == pytest.approx(6000)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 8),
    k=st.integers(0, 3),
    count=st.integers(0, 40),
    bits=st.sampled_from([28, None]),
)
def test_packetiser_streamed_frames_equal_offline_frames(n, k, count, bits):
    frames = [frame(i) if bits else bytes(range(1 + i % 5)) for i in range(count)]
    cfg = PacketiserConfig(frames_per_message=n, redundancy_frames=k, link_budget_bps=None)
    pk = Packetiser(7, bits, FD, cfg)
    wires = [w for i, f in enumerate(frames) for w in pk.push(f, now_s=i * FD)]
    wires += pk.flush()
    got, ts = [], 0
    for seq, w in enumerate(wires):
        p = parse(w, {7: bits})
        assert p.seq == seq and p.timestamp == ts and p.reset == (seq == 0)
        assert len(p.frames) <= n
        assert p.redundant == tuple(frames[max(ts - k, 0) : ts])[-k:] if k and p.frames else True
        got += p.frames
        ts += len(p.frames)
    assert got == frames
    assert parse(wires[-1], {7: bits}).end if wires else count == 0
    assert pk.stats.frames_sent == count and pk.stats.messages_sent == len(wires)
    assert pk.stats.packet_bytes == sum(len(w) for w in wires)


def test_packetiser_dtx_skips_silence_and_marks_talkspurt_end():
    pk = Packetiser(
        1, 28, FD, PacketiserConfig(frames_per_message=3, dtx=True, link_budget_bps=None)
    )
    active = [True] * 4 + [False] * 10 + [True] * 3
    wires = [w for i, a in enumerate(active) for w in pk.push(frame(i), a)] + pk.flush()
    ps = [parse(w, {1: 28}) for w in wires]
    assert [(p.seq, p.timestamp, len(p.frames), p.end) for p in ps] == [
        (0, 0, 3, False),
        (1, 3, 1, True),  # talkspurt ends at frame 3
        (2, 14, 3, False),  # timestamps jump over the silence, seq runs on
        (3, 17, 0, True),  # end of stream: an empty E packet
    ]
    assert pk.stats.frames_dtx == 10 and pk.stats.frames_sent == 7


def test_packetiser_dtx_silence_at_message_boundary_sends_empty_end_packet():
    pk = Packetiser(
        1, 28, FD, PacketiserConfig(frames_per_message=2, dtx=True, link_budget_bps=None)
    )
    wires = [w for i, a in enumerate([True, True, False, False]) for w in pk.push(frame(i), a)]
    ps = [parse(w, {1: 28}) for w in wires]
    assert [(p.timestamp, len(p.frames), p.end) for p in ps] == [(0, 2, False), (2, 0, True)]


def test_packetiser_pacer_drops_over_budget_and_counts():
    # 1 frame per message at 25 Hz needs ~21 kbit/s; a 6 kbit/s budget lets ~1/3 through
    cfg = PacketiserConfig(frames_per_message=1, link_budget_bps=6000, duplex=False)
    pk = Packetiser(1, 28, FD, cfg)
    sent = [w for i in range(250) for w in pk.push(frame(i), now_s=i * FD)]
    model = OverheadModel()
    bits = 8 * model.message_wire_bytes(len(sent[0]))
    rate = len(sent) * bits / (250 * FD)
    assert pk.stats.messages_dropped == 250 - len(sent) > 0
    assert rate <= 6000 - model.consent_bps + bits / (250 * FD) * 3  # within the bucket depth
    assert [parse(w, {1: 28}).seq for w in sent] == list(range(len(sent)))  # no seq gaps


def test_token_bucket():
    b = TokenBucket(1000, 500)
    assert b.allow(500, 0.0) and not b.allow(1, 0.0)
    assert not b.allow(300, 0.2) and b.allow(300, 0.3)
    with pytest.raises(ValueError):
        TokenBucket(0, 1)


def test_config_json_round_trip_and_validation():
    cfg = PacketiserConfig(link_budget_bps=8000, redundancy_frames=2, dtx=True)
    assert PacketiserConfig.from_json(cfg.to_json()) == cfg
    for bad in ({"link_budget_bps": 0}, {"frames_per_message": 0}, {"rtt_ms": -1}):
        with pytest.raises(ValueError):
            PacketiserConfig(**bad)
    with pytest.raises(TypeError):
        Packetiser(1, 28, FD).push("x")  # type: ignore[arg-type]
