"""Signalling: how two peers find each other and swap offer/answer, over websockets.

Protocol (JSON text messages, one object each, at most ``max_message_bytes``)::

    client -> server  {"type": "join", "room": R, "token": T?}
    server -> client  {"type": "joined", "room": R, "peers": 1 | 2}
    server -> both    {"type": "ready", "role": "answer"}  (first in the room)
                      {"type": "ready", "role": "offer"}   (second in the room)
    relayed as is     {"type": "hello", "version": 1, "streams": [...], ...}
                      {"type": "offer" | "answer", "sdp": ...}
                      {"type": "bye", "packets_sent": n?, "frames": f?}
    server -> client  {"type": "peer-left"}
                      {"type": "error", "code": ..., "message": ...}

Rooms hold two peers. A malformed or unexpected message is answered with an
``error`` and the connection stays up; a bad token or a full room is answered with
an ``error`` and the connection is closed. With a shared-secret ``token`` set, a
``join`` must carry the same token. The server never crashes on input: every
message is checked by :func:`check_message` before it is acted on or relayed.

:class:`SignallingServer` runs in-process (``await server.start()``) or from
``streamcodec serve``; :class:`SignallingClient` is its client, and
:class:`LocalSignalling` pairs two peers in one process without a server.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

logger = logging.getLogger(__name__)

SIGNALLING_VERSION = 1
MAX_MESSAGE_BYTES = 32 * 1024
MAX_SDP_CHARS = 16 * 1024
MAX_STREAMS = 16
_ROOM_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
RELAYED = ("hello", "offer", "answer", "bye")
CLIENT_TYPES = ("join", *RELAYED)
SERVER_TYPES = ("joined", "ready", "peer-left", "error", *RELAYED)


class SignallingError(ValueError):
    """A malformed or unexpected signalling message, or an error answered by the server."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.detail = message


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise SignallingError("bad-message", message)


def _is_int(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def check_message(raw: str | bytes, allowed: tuple[str, ...] = CLIENT_TYPES) -> dict[str, Any]:
    """Decode and validate one signalling message; raise :class:`SignallingError`."""
    if isinstance(raw, bytes):
        raise SignallingError("bad-message", "binary messages are not accepted; send JSON text")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise SignallingError("too-big", f"message of {len(raw)} chars > {MAX_MESSAGE_BYTES}")
    try:
        msg = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise SignallingError("bad-json", f"not JSON: {exc}") from None
    _need(isinstance(msg, dict), f"a message must be a JSON object, got {type(msg).__name__}")
    kind = msg.get("type")
    _need(isinstance(kind, str), "missing string field 'type'")
    if kind not in allowed:
        raise SignallingError("unexpected", f"message type {kind!r} is not one of {allowed}")
    if kind == "join":
        _need(
            isinstance(msg.get("room"), str) and bool(_ROOM_RE.match(msg["room"])),
            "'room' must be 1-64 chars of A-Z a-z 0-9 _ . -",
        )
        _need(msg.get("token") is None or isinstance(msg["token"], str), "'token' must be a str")
    elif kind in ("offer", "answer"):
        sdp = msg.get("sdp")
        _need(
            isinstance(sdp, str) and 0 < len(sdp) <= MAX_SDP_CHARS,
            f"'sdp' must be a non-empty str of at most {MAX_SDP_CHARS} chars",
        )
    elif kind == "hello":
        _need(
            msg.get("version") == SIGNALLING_VERSION,
            f"hello 'version' must be {SIGNALLING_VERSION}",
        )
        streams = msg.get("streams")
        _need(
            isinstance(streams, list) and 0 < len(streams) <= MAX_STREAMS,
            f"hello 'streams' must be a list of 1..{MAX_STREAMS}",
        )
        for s in streams:
            _need(
                isinstance(s, dict)
                and _is_int(s.get("id"), 0, 255)
                and isinstance(s.get("config"), dict),
                "each hello stream needs an int 'id' in 0..255 and an object 'config'",
            )
    elif kind == "bye":
        for key in ("packets_sent", "frames"):
            n = msg.get(key)
            _need(n is None or _is_int(n, 0, 2**53), f"{key!r} must be an int >= 0")
    elif kind == "ready":
        _need(msg.get("role") in ("offer", "answer"), "'role' must be 'offer' or 'answer'")
    elif kind == "error":
        _need(isinstance(msg.get("code"), str), "error needs a string 'code'")
    return msg


def _error(code: str, message: str) -> str:
    return json.dumps({"type": "error", "code": code, "message": message})


@dataclass(frozen=True)
class SignallingServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    #: shared secret every ``join`` must carry (``None``: open server)
    token: str | None = None
    max_rooms: int = 1024
    join_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.token is not None and not self.token:
            raise ValueError("token must be a non-empty str or None")


class SignallingServer:
    """Rooms of two peers; relays hello/offer/answer/bye between them."""

    def __init__(self, config: SignallingServerConfig = SignallingServerConfig()) -> None:
        self.config = config
        self.rooms: dict[str, list[ServerConnection]] = {}
        self._server: Server | None = None
        self.errors_sent = 0

    async def start(self) -> tuple[str, int]:
        """Start listening; returns the bound ``(host, port)`` (port 0 picks a free one)."""
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            max_size=4 * MAX_MESSAGE_BYTES,
            max_queue=16,
        )
        sock = next(iter(self._server.sockets))
        host, port = sock.getsockname()[:2]
        logger.info("signalling server on ws://%s:%d", host, port)
        return host, port

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("server not started")
        host, port = next(iter(self._server.sockets)).getsockname()[:2]
        return f"ws://{host}:{port}"

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SignallingServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _send_error(self, ws: ServerConnection, code: str, message: str) -> None:
        self.errors_sent += 1
        try:
            await ws.send(_error(code, message))
        except ConnectionClosed:
            pass

    async def _handle(self, ws: ServerConnection) -> None:
        room: str | None = None
        try:
            room = await self._join(ws)
            if room is None:
                return
            async for raw in ws:
                await self._relay(ws, room, raw)
        except (TimeoutError, asyncio.TimeoutError):  # noqa: UP041 (distinct before 3.11)
            await self._send_error(ws, "join-timeout", "no valid join message in time")
            await ws.close(1008, "join timeout")
        except ConnectionClosed:
            pass
        except Exception:  # never let one connection take the server down
            logger.exception("signalling connection failed")
        finally:
            if room is not None:
                await self._leave(ws, room)

    async def _join(self, ws: ServerConnection) -> str | None:
        """Wait for a valid join; returns the room, or None after closing ``ws``."""
        deadline = asyncio.get_running_loop().time() + self.config.join_timeout_s
        while True:
            left = deadline - asyncio.get_running_loop().time()
            raw = await asyncio.wait_for(ws.recv(), max(left, 0.0))
            try:
                msg = check_message(raw, ("join",))
                break
            except SignallingError as exc:
                code = "not-joined" if exc.code == "unexpected" else exc.code
                await self._send_error(ws, code, f"{exc.detail} (send a join first)")
        token = self.config.token
        if token is not None and not hmac.compare_digest(
            (msg.get("token") or "").encode(), token.encode()
        ):
            await self._send_error(ws, "unauthorised", "missing or wrong token")
            await ws.close(1008, "unauthorised")
            return None
        name = msg["room"]
        peers = self.rooms.get(name, [])
        if len(peers) >= 2:
            await self._send_error(ws, "room-full", f"room {name!r} already has two peers")
            await ws.close(1008, "room full")
            return None
        if not peers and len(self.rooms) >= self.config.max_rooms:
            await self._send_error(ws, "server-full", "too many rooms")
            await ws.close(1013, "server full")
            return None
        peers.append(ws)
        self.rooms[name] = peers
        members = list(peers)  # snapshot: others may join or leave while we await below
        await ws.send(json.dumps({"type": "joined", "room": name, "peers": len(members)}))
        if len(members) == 2:
            for peer, role in zip(members, ("answer", "offer"), strict=True):
                try:
                    await peer.send(json.dumps({"type": "ready", "role": role}))
                except ConnectionClosed:
                    pass
        return name

    async def _relay(self, ws: ServerConnection, room: str, raw: str | bytes) -> None:
        try:
            msg = check_message(raw, CLIENT_TYPES)
        except SignallingError as exc:
            await self._send_error(ws, exc.code, exc.detail)
            return
        if msg["type"] == "join":
            await self._send_error(ws, "unexpected", f"already joined room {room!r}")
            return
        others = [p for p in self.rooms.get(room, []) if p is not ws]
        if not others:
            await self._send_error(ws, "no-peer", f"nobody else is in room {room!r} yet")
            return
        try:
            await others[0].send(json.dumps(msg))
        except ConnectionClosed:
            await self._send_error(ws, "no-peer", "the other peer has left")

    async def _leave(self, ws: ServerConnection, room: str) -> None:
        peers = self.rooms.get(room, [])
        if ws in peers:
            peers.remove(ws)
        if not peers:
            self.rooms.pop(room, None)
        for peer in peers:
            try:
                await peer.send(json.dumps({"type": "peer-left"}))
            except ConnectionClosed:
                pass


class Signalling(ABC):
    """What a call needs from signalling: send and receive JSON messages with the peer."""

    @abstractmethod
    async def send(self, message: dict[str, Any]) -> None: ...

    @abstractmethod
    async def recv(self) -> dict[str, Any]:
        """Next message; ``ConnectionError`` once the signalling channel is gone."""

    @abstractmethod
    async def close(self) -> None: ...


class SignallingClient(Signalling):
    """Client of :class:`SignallingServer`. Use :meth:`join`."""

    def __init__(self, ws: ClientConnection, room: str) -> None:
        self._ws = ws
        self.room = room
        self.role: str | None = None

    @classmethod
    async def join(
        cls, url: str, room: str, token: str | None = None, timeout_s: float = 10.0
    ) -> SignallingClient:
        """Connect to ``url`` (``ws://host:port``) and join ``room``."""
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise ValueError(f"signalling URL must start with ws:// or wss://, got {url!r}")
        join = {"type": "join", "room": room, **({"token": token} if token else {})}
        check_message(json.dumps(join), ("join",))
        try:
            ws = await asyncio.wait_for(connect(url, max_size=4 * MAX_MESSAGE_BYTES), timeout_s)
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError, asyncio.TimeoutError) as exc:  # noqa: UP041
            raise ConnectionError(f"cannot reach signalling server {url}: {exc}") from exc
        client = cls(ws, room)
        await ws.send(json.dumps(join))
        reply = await asyncio.wait_for(client.recv(), timeout_s)
        if reply["type"] == "error":
            await ws.close()
            raise SignallingError(reply["code"], reply.get("message", ""))
        if reply["type"] != "joined":
            await ws.close()
            raise SignallingError("unexpected", f"expected 'joined', got {reply['type']!r}")
        return client

    async def wait_ready(self, timeout_s: float | None = None) -> str:
        """Wait for the second peer; returns this peer's role (``offer`` or ``answer``)."""
        while True:
            msg = await asyncio.wait_for(self.recv(), timeout_s)
            if msg["type"] == "ready":
                self.role = msg["role"]
                return self.role
            if msg["type"] == "error":
                raise SignallingError(msg["code"], msg.get("message", ""))
            logger.debug("ignoring %s before ready", msg["type"])

    async def send(self, message: dict[str, Any]) -> None:
        text = json.dumps(message)
        check_message(text, CLIENT_TYPES)
        try:
            await self._ws.send(text)
        except ConnectionClosed as exc:
            raise ConnectionError("signalling connection closed") from exc

    async def recv(self) -> dict[str, Any]:
        while True:
            try:
                raw = await self._ws.recv()
            except ConnectionClosed as exc:
                raise ConnectionError("signalling connection closed") from exc
            try:
                return check_message(raw, SERVER_TYPES)
            except SignallingError as exc:
                logger.warning("ignoring a malformed signalling message: %s", exc)

    async def close(self) -> None:
        await self._ws.close()


class LocalSignalling(Signalling):
    """Two in-process endpoints joined by queues (tests, or both peers in one app)."""

    def __init__(self) -> None:
        self._inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._other: LocalSignalling | None = None

    @classmethod
    def pair(cls) -> tuple[LocalSignalling, LocalSignalling]:
        a, b = cls(), cls()
        a._other, b._other = b, a
        return a, b

    async def send(self, message: dict[str, Any]) -> None:
        text = json.dumps(message)
        check_message(text, CLIENT_TYPES)
        if self._other is None:
            raise ConnectionError("local signalling closed")
        self._other._inbox.put_nowait(json.loads(text))

    async def recv(self) -> dict[str, Any]:
        msg = await self._inbox.get()
        if msg is None:
            raise ConnectionError("local signalling closed")
        return msg

    async def close(self) -> None:
        if self._other is not None:
            self._other._inbox.put_nowait(None)
            self._other._other = None
            self._other = None
        self._inbox.put_nowait(None)
