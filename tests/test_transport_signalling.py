"""Websockets signalling: rooms of two, relay, token, and no crash on any input."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from streamcodec.transport.signalling import (
    MAX_MESSAGE_BYTES,
    LocalSignalling,
    SignallingClient,
    SignallingError,
    SignallingServer,
    SignallingServerConfig,
    check_message,
)


def run(coro, timeout_s: float = 20.0):
    async def main():
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(main())


def server_config(**kw) -> SignallingServerConfig:
    return SignallingServerConfig(host="127.0.0.1", port=0, **kw)


async def recv_json(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


HELLO = {"type": "hello", "version": 1, "streams": [{"id": 3, "config": {}}]}


def test_two_peers_get_roles_and_relay_hello_offer_answer_bye():
    async def main():
        async with SignallingServer(server_config()) as server:
            a = await SignallingClient.join(server.url, "r1")
            b = await SignallingClient.join(server.url, "r1")
            assert await b.wait_ready(5) == "offer"
            assert await a.wait_ready(5) == "answer"
            await b.send(HELLO)
            assert await asyncio.wait_for(a.recv(), 5) == HELLO
            await b.send({"type": "offer", "sdp": "v=0 offer"})
            assert (await asyncio.wait_for(a.recv(), 5))["sdp"] == "v=0 offer"
            await a.send({"type": "answer", "sdp": "v=0 answer"})
            assert (await asyncio.wait_for(b.recv(), 5))["sdp"] == "v=0 answer"
            await a.send({"type": "bye", "packets_sent": 12})
            assert await asyncio.wait_for(b.recv(), 5) == {"type": "bye", "packets_sent": 12}
            await a.close()
            assert (await asyncio.wait_for(b.recv(), 5))["type"] == "peer-left"
            await b.close()

    run(main())


def test_room_full_wrong_token_and_not_joined_are_errors():
    async def main():
        async with SignallingServer(server_config(token="s3cret")) as server:
            url = server.url
            with pytest.raises(SignallingError, match="unauthorised"):
                await SignallingClient.join(server.url, "r", token="wrong")
            with pytest.raises(SignallingError, match="unauthorised"):
                await SignallingClient.join(server.url, "r")
            a = await SignallingClient.join(server.url, "r", token="s3cret")
            b = await SignallingClient.join(server.url, "r", token="s3cret")
            with pytest.raises(SignallingError, match="room-full"):
                await SignallingClient.join(server.url, "r", token="s3cret")
            async with connect(server.url) as ws:
                await ws.send(json.dumps({"type": "offer", "sdp": "x"}))
                assert (await recv_json(ws))["code"] == "not-joined"
            await a.close()
            await b.close()
        with pytest.raises(ConnectionError):
            await SignallingClient.join(url, "r")  # server gone

    run(main())


BAD_MESSAGES = [
    "not json",
    "[1, 2]",
    '"just a string"',
    "{}",
    '{"type": 5}',
    '{"type": "launch"}',
    '{"type": "offer"}',
    '{"type": "offer", "sdp": 5}',
    '{"type": "offer", "sdp": ""}',
    '{"type": "hello", "version": 9, "streams": []}',
    '{"type": "hello", "version": 1, "streams": [{"id": 300, "config": {}}]}',
    '{"type": "bye", "packets_sent": -1}',
    '{"type": "join", "room": "again"}',
    "[" * 5000 + "]" * 5000,
    json.dumps({"type": "offer", "sdp": "x" * 20000}),
    "x" * (MAX_MESSAGE_BYTES + 1),
]


def test_malformed_messages_are_answered_with_errors_and_the_connection_survives(caplog):
    async def main():
        async with SignallingServer(server_config()) as server:
            async with connect(server.url) as ws1, connect(server.url) as ws2:
                await ws1.send(json.dumps({"type": "join", "room": "m"}))
                await ws2.send(json.dumps({"type": "join", "room": "m"}))
                assert (await recv_json(ws1))["type"] == "joined"
                assert (await recv_json(ws1))["type"] == "ready"
                for _ in range(2):
                    await recv_json(ws2)
                for bad in [*BAD_MESSAGES, b"\x00binary"]:
                    await ws1.send(bad)
                    reply = await recv_json(ws1)
                    assert reply["type"] == "error", bad
                    assert isinstance(reply["code"], str) and reply["message"]
                # still relaying after all that
                await ws1.send(json.dumps({"type": "offer", "sdp": "ok"}))
                assert (await recv_json(ws2))["sdp"] == "ok"
            assert server.errors_sent == len(BAD_MESSAGES) + 1

    with caplog.at_level("ERROR", logger="streamcodec.transport.signalling"):
        run(main())
    assert not caplog.records


def test_join_errors_then_recovery_and_bad_room_names():
    async def main():
        async with SignallingServer(server_config()) as server:
            async with connect(server.url) as ws:
                for bad in ["{", '{"type": "join", "room": "has space"}', '{"type": "join"}']:
                    await ws.send(bad)
                    assert (await recv_json(ws))["type"] == "error"
                await ws.send(json.dumps({"type": "join", "room": "ok-room_1.x"}))
                assert (await recv_json(ws))["type"] == "joined"
            with pytest.raises(SignallingError):
                await SignallingClient.join(server.url, "bad room")
            with pytest.raises(ValueError):
                await SignallingClient.join("http://x", "r")

    run(main())


def test_join_timeout_closes_the_connection():
    async def main():
        config = SignallingServerConfig(host="127.0.0.1", port=0, join_timeout_s=0.2)
        async with SignallingServer(config) as server:
            async with connect(server.url) as ws:
                reply = await recv_json(ws)
                assert reply["code"] == "join-timeout"
                await asyncio.wait_for(ws.wait_closed(), 5)

    run(main())


@settings(max_examples=150, deadline=None)
@given(
    st.text(max_size=200)
    | st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda k: st.lists(k, max_size=4) | st.dictionaries(st.text(max_size=8), k, max_size=4),
        max_leaves=10,
    ).map(json.dumps)
    | st.fixed_dictionaries(
        {"type": st.sampled_from(["join", "hello", "offer", "answer", "bye", "x"])},
        optional={"room": st.text(max_size=70), "sdp": st.none() | st.text(max_size=5),
                  "streams": st.lists(st.dictionaries(st.text(max_size=3), st.integers())),
                  "version": st.integers(), "packets_sent": st.integers() | st.text()},
    ).map(json.dumps)
)  # fmt: skip
def test_check_message_fuzz_only_signalling_errors(raw):
    try:
        msg = check_message(raw)
    except SignallingError as exc:
        assert exc.code in ("bad-message", "bad-json", "unexpected", "too-big")
        return
    assert isinstance(msg, dict) and msg["type"] in ("join", "hello", "offer", "answer", "bye")


def test_server_fuzzed_connections_never_crash_it(caplog):
    import random

    rng = random.Random(7)
    pieces = [*BAD_MESSAGES, '{"type": "join", "room": "f"}', '{"type": "offer", "sdp": "s"}',
              '{"type": "bye"}', json.dumps(HELLO), "\u0000", "{}" * 100]  # fmt: skip

    async def one(url: str) -> None:
        try:
            async with connect(url) as ws:
                for _ in range(rng.randint(1, 8)):
                    await ws.send(rng.choice(pieces))
                    await asyncio.wait_for(ws.recv(), 2)
        except Exception:
            pass  # the server may close us (room full, bad token): that is allowed

    async def main():
        async with SignallingServer(server_config()) as server:
            await asyncio.gather(*(one(server.url) for _ in range(30)))
            a = await SignallingClient.join(server.url, "after")
            b = await SignallingClient.join(server.url, "after")
            assert await b.wait_ready(5) == "offer"
            await a.close()
            await b.close()

    with caplog.at_level("ERROR", logger="streamcodec.transport.signalling"):
        run(main(), 60)
    assert not caplog.records  # no handler raised (the catch-all logs at ERROR)


def test_local_signalling_pair():
    async def main():
        a, b = LocalSignalling.pair()
        await a.send(HELLO)
        assert await b.recv() == HELLO
        with pytest.raises(SignallingError):
            await a.send({"type": "nonsense"})
        await a.close()
        with pytest.raises(ConnectionError):
            await b.recv()
        with pytest.raises(ConnectionError):
            await b.send(HELLO)

    run(main())
