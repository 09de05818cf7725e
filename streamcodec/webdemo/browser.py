"""Headless Chromium for the demo: a fake microphone that plays a WAV file, and the
DevTools protocol (over a websocket) to read page state and take screenshots.

Flags (no network services are needed or contacted)::

    --headless --no-sandbox --use-fake-ui-for-media-stream --use-fake-device-for-media-stream
    --use-file-for-fake-audio-capture=clip.wav%noloop --disable-gpu
    --disable-background-networking --disable-component-update --disable-sync --no-first-run
    --user-data-dir=<tmp> --autoplay-policy=no-user-gesture-required
    --allow-loopback-in-peer-connection
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

logger = logging.getLogger(__name__)

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary on ``PATH``, or ``None``."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_args(
    binary: str,
    url: str,
    user_data_dir: Path,
    fake_audio: Path | None = None,
    window: tuple[int, int] = (1200, 980),
    debug: bool = True,
) -> list[str]:
    args = [
        binary,
        "--headless",
        "--no-sandbox",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={user_data_dir}",
        "--autoplay-policy=no-user-gesture-required",
        "--allow-loopback-in-peer-connection",
        f"--window-size={window[0]},{window[1]}",
    ]
    if fake_audio is not None:
        args.append(f"--use-file-for-fake-audio-capture={fake_audio}%noloop")
    if debug:
        args.append("--remote-debugging-port=0")
    return [*args, url]


class HeadlessChromium:
    """``async with HeadlessChromium(url, fake_audio=wav) as browser:`` opens ``url``."""

    def __init__(
        self,
        url: str,
        fake_audio: Path | None = None,
        binary: str | None = None,
        window: tuple[int, int] = (1200, 980),
    ) -> None:
        found = binary or find_chromium()
        if found is None:
            raise FileNotFoundError(
                f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)}); "
                "install it, e.g. `apt-get install -y chromium`"
            )
        self.binary = found
        self.url = url
        self.fake_audio = fake_audio
        self.window = window
        self._tmp = Path(tempfile.mkdtemp(prefix="streamcodec-chromium-"))
        self._proc: asyncio.subprocess.Process | None = None
        self._page: ClientConnection | None = None
        self._ids = itertools.count(1)
        self.log_path = self._tmp / "chromium.log"

    async def start(self) -> HeadlessChromium:
        args = chromium_args(
            self.binary, self.url, self._tmp / "profile", self.fake_audio, self.window
        )
        log = open(self.log_path, "wb")  # noqa: SIM115 (kept open for the process' lifetime)
        self._proc = await asyncio.create_subprocess_exec(
            *args, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL
        )
        log.close()
        return self

    async def _devtools_port(self, timeout_s: float) -> int:
        marker = self._tmp / "profile" / "DevToolsActivePort"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if marker.exists():
                text = marker.read_text().split()
                if text:
                    return int(text[0])
            if self._proc is not None and self._proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
        raise TimeoutError(f"Chromium did not open its DevTools port; log: {self.tail_log()}")

    async def page(self, timeout_s: float = 20.0) -> ClientConnection:
        """The DevTools websocket of the page (connected on first use)."""
        if self._page is not None:
            return self._page
        port = await self._devtools_port(timeout_s)

        def targets() -> list[dict[str, Any]]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                return json.loads(r.read())

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            pages = [t for t in await asyncio.to_thread(targets) if t.get("type") == "page"]
            if pages or loop.time() > deadline:
                break
            await asyncio.sleep(0.1)
        if not pages:
            raise TimeoutError("Chromium opened no page")
        self._page = await connect(pages[0]["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024)
        return self._page

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; returns its ``result``."""
        ws = await self.page()
        msg_id = next(self._ids)
        await ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await ws.recv())
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout_s: float, poll_s: float = 0.25) -> Any:
        """Poll ``expression`` until it is truthy; ``TimeoutError`` after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if loop.time() > deadline:
                raise TimeoutError(f"waited {timeout_s:g} s for {expression!r}")
            await asyncio.sleep(poll_s)

    async def screenshot(self, path: Path) -> Path:
        result = await self.call("Page.captureScreenshot", format="png")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path

    def tail_log(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    async def close(self) -> None:
        if self._page is not None:
            with contextlib.suppress(Exception):
                await self._page.close()
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 5)
            except (TimeoutError, asyncio.TimeoutError):  # noqa: UP041
                self._proc.kill()
                await self._proc.wait()
        shutil.rmtree(self._tmp, ignore_errors=True)

    async def __aenter__(self) -> HeadlessChromium:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
