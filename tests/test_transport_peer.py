"""aiortc peers on loopback: unreliable channel, state events, taps and filters, close."""

from __future__ import annotations

import asyncio

import aioice.stun
import pytest

from streamcodec.transport.peer import DatagramTap, IceServer, Peer, PeerConfig

LOOPBACK = PeerConfig(host_addresses=("127.0.0.1",))


def run(coro, timeout_s: float = 20.0):
    async def main():
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(main())


async def connect(a: Peer, b: Peer) -> None:
    await a.accept_answer(await b.accept_offer(await a.create_offer()))
    await asyncio.gather(a.wait_open(5), b.wait_open(5))


def test_peer_channel_is_unordered_unreliable_negotiated_and_sdp_has_only_loopback():
    async def main():
        a = Peer(LOOPBACK)
        offer = await a.create_offer()
        ch = a._channel
        assert (ch.ordered, ch.maxRetransmits, ch.negotiated, ch.id) == (False, 0, True, 0)
        assert ch.maxPacketLifeTime is None
        candidates = [line for line in offer.splitlines() if line.startswith("a=candidate")]
        assert candidates and all(" 127.0.0.1 " in c and "typ host" in c for c in candidates)
        assert "srflx" not in offer  # no STUN server asked (none configured)
        assert a._pc._RTCPeerConnection__configuration.iceServers == []
        await a.close()

    run(main())


def test_two_peers_exchange_messages_with_state_events_and_clean_close():
    async def main():
        got: list[tuple[bytes, float]] = []
        done = asyncio.Event()

        def on_message(data: bytes, t: float) -> None:
            got.append((data, t))
            if len(got) == 20:
                done.set()

        tap_a = DatagramTap()
        a = Peer(LOOPBACK, datagram_tap=tap_a)
        b = Peer(LOOPBACK, on_message=on_message)
        states_a: list[str] = []
        states_b: list[str] = []
        a.on_state(states_a.append)
        b.on_state(states_b.append)
        await connect(a, b)
        assert a.is_open and b.is_open and a.state == "connected"
        for i in range(20):
            assert a.send(bytes([i]) * (i + 1))
        await asyncio.wait_for(done.wait(), 5)
        # unordered channel, but loopback keeps order; every message arrives intact
        assert sorted(m for m, _ in got) == sorted(bytes([i]) * (i + 1) for i in range(20))
        assert a.stats.messages_sent == 20 and b.stats.messages_received == 20
        assert tap_a.sent.datagrams > 20 and tap_a.sent.wire_bytes > tap_a.sent.udp_bytes
        assert tap_a.sent.stun_datagrams >= 1  # ICE checks seen by the tap
        await a.close()
        await asyncio.wait_for(b.wait_closed(), 5)  # the remote notices the close
        assert not a.send(b"after close") and a.stats.messages_unsent == 1
        assert states_a[:2] == ["connecting", "connected"] and states_a[-1] == "closed"
        assert "connected" in states_b
        await b.close()
        await a.close()  # idempotent

    run(main())


def test_message_filter_and_datagram_drop_hooks():
    async def main():
        got: list[bytes] = []
        n_done = asyncio.Event()

        def on_message(data: bytes, t: float) -> None:
            got.append(data)
            if data == b"last":
                n_done.set()

        a = Peer(LOOPBACK)
        b = Peer(LOOPBACK, on_message=on_message, message_filter=lambda m: m[0] % 2 == 0)
        await connect(a, b)
        for i in range(10):
            a.send(bytes([i]))
        a.send(b"last")
        await asyncio.wait_for(n_done.wait(), 5)
        assert got == [bytes([i]) for i in range(0, 10, 2)] + [b"last"]
        assert b.stats.messages_filtered == 5
        # datagram-level drop: nothing of a's reaches b any more
        b.tap.receive_filter = lambda data, addr: False
        a.send(b"dropped")
        a.send(b"dropped too")
        await a.drain()
        await asyncio.sleep(0.1)  # give loopback time to deliver, if it would
        assert b"dropped" not in got and b.tap.received.dropped >= 1
        await a.close()
        await b.close()

    run(main())


def test_consent_fix_and_config_validation():
    async def main():
        Peer(PeerConfig(consent_rto_s=3.0))
        assert aioice.stun.RETRY_RTO == 3.0
        Peer(PeerConfig(ice_servers=(IceServer(("stun:192.0.2.1:3478",)),)))

    saved = aioice.stun.RETRY_RTO
    try:
        run(main())
    finally:
        aioice.stun.RETRY_RTO = saved
    with pytest.raises(ValueError):
        PeerConfig(consent_rto_s=0)
    with pytest.raises(ValueError):
        PeerConfig(channel_id=70000)


def test_wait_open_times_out_without_a_remote_and_rejects_bad_sdp():
    async def main():
        a = Peer(LOOPBACK)
        await a.create_offer()
        with pytest.raises(TimeoutError):
            await a.wait_open(0.2)
        with pytest.raises(ValueError):
            await a.accept_answer("")
        await a.close()
        with pytest.raises(ConnectionError):
            await a.wait_open(1)

    run(main())


def test_remote_sdp_hook_sees_and_can_rewrite_the_remote_description():
    async def main():
        seen: list[str] = []

        def hook(sdp: str) -> str:
            seen.append(sdp)
            return sdp

        a = Peer(LOOPBACK, remote_sdp_hook=hook)
        b = Peer(LOOPBACK)
        await connect(a, b)
        assert len(seen) == 1 and "a=candidate" in seen[0]
        await a.close()
        await b.close()

    run(main())
