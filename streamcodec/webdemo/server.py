"""The demo's web server: the page over HTTP and its signalling over a websocket, on one port.

``GET /`` serves ``static/index.html`` (and ``/demo.js``); ``/ws`` is a websocket
speaking JSON::

    server -> page  {"type": "hello", "codec": ..., "presets": [{"name", "label"}], "preset": ...}
    page -> server  {"type": "offer", "sdp": ..., "preset": name?}
    server -> page  {"type": "answer", "sdp": ...}
    server -> page  {"type": "stats", ...}                  (every ``stats_interval_s``)
    page -> server  {"type": "recording", "mime": ..., "data": base64}   (optional)

Each websocket is one :class:`~streamcodec.webdemo.bridge.BrowserBridge`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import dataclass, field
from http import HTTPStatus
from importlib.resources import files
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from streamcodec.codec import Codec
from streamcodec.webdemo.bridge import DEFAULT_PRESETS, BrowserBridge, LinkPreset

logger = logging.getLogger(__name__)

_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/demo.js": ("demo.js", "text/javascript; charset=utf-8"),
}
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # a recording of a few seconds, base64


@dataclass
class Recording:
    """Audio the page recorded from the returned track and sent back."""

    mime: str
    data: bytes
    seconds: float | None = None


@dataclass
class DemoServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    presets: tuple[LinkPreset, ...] = DEFAULT_PRESETS
    #: preset used when the page does not pick one
    default_preset: str = "direct"
    stats_interval_s: float = 0.25
    seed: int = 0
    extra_presets: list[LinkPreset] = field(default_factory=list)

    def preset(self, name: str | None) -> LinkPreset:
        table = {p.name: p for p in (*self.extra_presets, *self.presets)}
        key = name or self.default_preset
        if key not in table:
            raise ValueError(f"unknown link preset {key!r}; known: {sorted(table)}")
        return table[key]

    def all_presets(self) -> list[LinkPreset]:
        return [*self.extra_presets, *self.presets]


def _static(name: str) -> bytes:
    return (files("streamcodec.webdemo") / "static" / name).read_bytes()


class DemoServer:
    """``async with DemoServer(codec, config) as server:``; ``server.url`` is the page."""

    def __init__(self, codec: Codec, config: DemoServerConfig | None = None) -> None:
        self.codec = codec
        self.config = config or DemoServerConfig()
        self.recordings: list[Recording] = []
        self.bridges: list[BrowserBridge] = []
        self._server: Server | None = None
        self.port = self.config.port

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}/"

    async def start(self) -> DemoServer:
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._http,
            max_size=MAX_MESSAGE_BYTES,
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        return self

    async def close(self) -> None:
        for bridge in list(self.bridges):
            await bridge.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> DemoServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- HTTP ---------------------------------------------------------------------------------
    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/ws":
            return None  # the websocket handshake goes on
        if path not in _STATIC:
            return connection.respond(HTTPStatus.NOT_FOUND, f"not found: {path}\n")
        name, ctype = _STATIC[path]
        body = _static(name)
        headers = Headers(
            [
                ("Content-Type", ctype),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
                ("Connection", "close"),
            ]
        )
        return Response(200, "OK", headers, body)

    # -- websocket ----------------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        bridge: BrowserBridge | None = None
        stats_task: asyncio.Task[None] | None = None
        try:
            await ws.send(
                json.dumps(
                    {
                        "type": "hello",
                        "codec": self.codec.name,
                        "presets": [p.to_dict() for p in self.config.all_presets()],
                        "preset": self.config.preset(None).name,
                    }
                )
            )
            async for raw in ws:
                msg = _parse(raw)
                if msg is None:
                    continue
                kind = msg.get("type")
                if kind == "offer" and bridge is None:
                    preset = self.config.preset(msg.get("preset"))
                    bridge = BrowserBridge(self.codec, preset, self.config.seed)
                    self.bridges.append(bridge)
                    await bridge.start_call()
                    answer = await bridge.answer(str(msg.get("sdp", "")))
                    await ws.send(json.dumps({"type": "answer", "sdp": answer}))
                    stats_task = asyncio.create_task(self._stats(ws, bridge))
                elif kind == "recording":
                    self._recording(msg)
                elif kind == "bye":
                    break
        except ConnectionClosed:
            pass
        except (ValueError, ConnectionError, TimeoutError) as exc:
            logger.warning("demo session failed: %s", exc)
            try:
                await ws.send(json.dumps({"type": "error", "message": str(exc)}))
            except ConnectionClosed:
                pass
        finally:
            if stats_task is not None:
                stats_task.cancel()
            if bridge is not None:
                await bridge.close()
                self.bridges.remove(bridge)

    async def _stats(self, ws: ServerConnection, bridge: BrowserBridge) -> None:
        try:
            while True:
                await asyncio.sleep(self.config.stats_interval_s)
                await ws.send(json.dumps(bridge.stats()))
        except ConnectionClosed:
            pass

    def _recording(self, msg: dict[str, Any]) -> None:
        try:
            data = base64.b64decode(str(msg.get("data", "")), validate=True)
        except ValueError:
            logger.warning("ignoring a recording that is not base64")
            return
        seconds = msg.get("seconds")
        self.recordings.append(
            Recording(
                str(msg.get("mime", "")),
                data,
                float(seconds) if isinstance(seconds, int | float) else None,
            )
        )
        logger.info("recording of %d bytes from the page", len(data))


def _parse(raw: str | bytes) -> dict[str, Any] | None:
    if isinstance(raw, bytes):
        return None
    try:
        msg = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return msg if isinstance(msg, dict) else None
