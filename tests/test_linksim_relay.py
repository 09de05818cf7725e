"""The UDP relay between two aiortc peers, on the virtual clock and in real time."""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
import pytest

from streamcodec.linksim import clock
from streamcodec.linksim.link import GilbertElliott, LinkConfig, Outage
from streamcodec.linksim.relay import LinkRelay, is_dtls_handshake, rewrite_candidates
from streamcodec.linksim.scenario import CallScenario, run_call
from streamcodec.linksim.sweep import recovery_s
from streamcodec.transport.packetiser import PacketiserConfig
from streamcodec.transport.peer import Peer, PeerConfig
from streamcodec.transport.toycodec import ToyCodec


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise bursts with a syllable-rate envelope (the toy codec codes level and pitch)."""
    rng = np.random.default_rng(seed)
    n = int(16000 * seconds)
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * np.arange(n) / 16000)
    return (0.3 * env * rng.standard_normal(n)).astype(np.float32)


def test_virtual_clock_jumps_over_sleeps_and_waits_for_threads_in_real_time():
    async def main():
        loop = asyncio.get_running_loop()
        t0, w0 = loop.time(), time.monotonic()
        await asyncio.sleep(1000.0)
        slept_virtual, slept_wall = loop.time() - t0, time.monotonic() - w0
        t1 = loop.time()
        await loop.run_in_executor(None, time.sleep, 0.2)  # real work takes real time
        return slept_virtual, slept_wall, loop.time() - t1

    virtual, wall, threaded = clock.run(main)
    assert virtual == pytest.approx(1000.0, abs=1e-6) and wall < 1.0
    assert 0.15 < threaded < 5.0


def test_virtual_clock_reaches_a_deadline_one_float_step_ahead():
    """The call's playout loop waits ``deadline - now`` and then checks ``now >= deadline``.
    With the deadline one float step (~7e-12 s at a clock of 45,000 s) ahead, asyncio runs
    the timer early (within its clock resolution) while the wait's new task keeps the
    selector at timeout 0, so a virtual clock that never moved would spin forever (seen as
    a rare hang of the relay tests on a loaded machine)."""

    async def main():
        loop = asyncio.get_running_loop()
        loop.advance(45463.09369415 - loop.time())
        deadline = math.nextafter(loop.time(), math.inf)
        wake = asyncio.Event()
        for turns in range(1, 1001):
            try:
                await asyncio.wait_for(wake.wait(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                pass
            if loop.time() >= deadline:
                return turns
        raise AssertionError("the virtual clock never reached the deadline")

    assert clock.run(main) <= 2


def test_rewrite_candidates_points_the_sdp_at_the_relay():
    async def main():
        peer = Peer(PeerConfig(host_addresses=("127.0.0.1",)))
        sdp = await peer.create_offer()
        await peer.close()
        return sdp

    sdp = asyncio.run(main())
    new, real = rewrite_candidates(sdp, "127.0.0.1", 40000)
    cands = [line for line in new.splitlines() if line.startswith("a=candidate")]
    assert len(cands) == 1 and " 127.0.0.1 40000 typ host" in cands[0]
    assert real[0] == "127.0.0.1" and f" {real[1]} " in sdp and real[1] != 40000
    assert any(line.startswith("m=application 40000 ") for line in new.splitlines())
    with pytest.raises(ValueError, match="no UDP candidate"):
        rewrite_candidates("v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n", "x", 1)
    assert is_dtls_handshake(bytes([22, 254, 253])) and not is_dtls_handshake(bytes([23, 254]))


def test_clean_relayed_call_is_bit_exact_and_faster_than_real_time():
    codec = ToyCodec(28, 40)
    x, y = speechlike(3.0, 1), speechlike(3.0, 2)
    scenario = CallScenario(forward=LinkConfig(rate_bps=32000, delay_ms=40))
    wall0 = time.monotonic()
    rec = clock.run(lambda: run_call(scenario, codec, x, y))
    wall = time.monotonic() - wall0
    assert rec.connected and rec.stayed_connected and rec.error is None
    assert rec.virtual_clock and rec.media_s >= 3.0 and wall < rec.connect_s + rec.media_s
    for d, sent in zip(rec.directions, (x, y), strict=True):
        assert np.array_equal(d.decoded, codec.decode(codec.encode(sent)))  # streamed == offline
        assert d.link.stats.dropped == 0 and d.link.stats.delivered == d.link.stats.offered
        assert d.frames_by_kind("concealed") == 0 and len(d.frames.kinds) == d.frames_total
        delays = d.playout_delays_s()
        assert delays.min() > 0.040  # at least the link delay: the relay really sat in between
    # the a→b link carried a's data, SACKs for b's data and consent checks: all counted
    ab = rec.directions[0]
    assert ab.link.stats.offered > ab.sender.tx.messages_sent


def test_bursty_loss_on_the_link_shows_up_as_lost_packets():
    codec = ToyCodec(28, 40)
    x = speechlike(4.0, 3)
    link = LinkConfig(rate_bps=16000, delay_ms=30, burst=GilbertElliott.from_loss(0.3, 3))
    scenario = CallScenario(forward=link, reverse=LinkConfig(delay_ms=30), two_way=False, seed=2)
    rec = clock.run(lambda: run_call(scenario, codec, x))
    (d,) = rec.directions
    assert rec.stayed_connected
    st = d.link.stats
    assert 0.15 < st.dropped_loss / st.offered < 0.45
    rx = d.receiver.rx
    assert rx.packets_lost > 0 and rx.packets_received + rx.packets_lost == d.sender.packets_sent
    assert d.frames_by_kind("concealed") > 0
    assert d.frames_by_kind("packet") < d.frames_total


def test_outage_mid_call_recovers_on_the_virtual_clock():
    codec = ToyCodec(28, 40)
    x = speechlike(5.0, 4)
    link = LinkConfig(rate_bps=16000, delay_ms=30, outages=(Outage(1.5, 2.0),))
    scenario = CallScenario(
        forward=link,
        two_way=False,
        packetiser=PacketiserConfig(link_budget_bps=None, frames_per_message=2),
    )
    rec = clock.run(lambda: run_call(scenario, codec, x))
    (d,) = rec.directions
    assert rec.stayed_connected and d.link.stats.dropped_outage > 0
    assert 0.0 <= recovery_s(d, 3.5) < 0.5
    idx = np.asarray(d.frames.indices)
    kinds = np.asarray(d.frames.kinds)
    played = set(idx[kinds == "packet"].tolist())
    # captured during the outage (frames 40-84 end 1.64-3.40 s; the last message of them
    # leaves at 3.44 s): none delivered. The sender's schedule starts at the link epoch
    leaked = sorted(played & set(range(40, 85)))
    late = max(d.input_lateness_s)
    assert not leaked, f"played frames {leaked}; sender at most {late * 1e3:.1f} ms late"
    assert len(played & set(range(95, 120))) >= 20  # after it: nearly all


def test_relay_in_real_time_with_an_ordinary_loop():
    codec = ToyCodec(28, 40)
    x = speechlike(1.0, 5)
    scenario = CallScenario(forward=LinkConfig(rate_bps=32000, delay_ms=20), two_way=False)
    rec = asyncio.run(run_call(scenario, codec, x))
    (d,) = rec.directions
    assert not rec.virtual_clock and rec.stayed_connected
    assert np.array_equal(d.decoded, codec.decode(codec.encode(x)))
    assert rec.wall_s >= 1.0  # real time: the 1 s clip took at least 1 s


def test_relay_counts_unroutable_datagrams_before_the_sdp_is_seen():
    async def main():
        relay = await LinkRelay(LinkConfig()).start()
        loop = asyncio.get_running_loop()
        tr, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, ("127.0.0.1", 0))
        tr.sendto(b"\x00\x01hello", ("127.0.0.1", relay.ports[0]))
        await asyncio.sleep(0.05)
        tr.close()
        await relay.close()
        return relay._a.unroutable, relay.forward.stats.offered

    assert asyncio.run(main()) == (1, 0)


def test_seeded_virtual_runs_repeat_the_same_drops_and_playout():
    from streamcodec.linksim.sweep import run_seeded

    codec = ToyCodec(28, 40)
    x, y = speechlike(2.0, 6), speechlike(2.0, 7)
    link = LinkConfig(rate_bps=8000, delay_ms=50, jitter_ms=5, burst=GilbertElliott.from_loss(0.1))
    scenario = CallScenario(forward=link, seed=3)

    def once():
        rec = run_seeded(lambda: run_call(scenario, codec, x, y), True, 3)
        return [
            ([r.outcome for r in d.link.records], d.frames.kinds, np.asarray(d.frames.times_s))
            for d in rec.directions
        ]

    first, second = once(), once()
    for (out1, kinds1, t1), (out2, kinds2, t2) in zip(first, second, strict=True):
        assert out1 == out2 and kinds1 == kinds2
        # DTLS handshake datagrams differ by a byte between runs (ECDSA signature length),
        # which moves the 8 kbit/s serialisation by a millisecond at most
        assert t1.shape == t2.shape and np.abs(t1 - t2).max() < 0.005
    assert any(o == "loss" for o in first[0][0] + first[1][0])
